"""IANA timezones: checking a name (the fleet file's `timezone` keys) and loading a zone for
`domain.utc`, with its POSIX TZ rule.

Names are checked against the zones this system knows (`zoneinfo.available_timezones`), so a
path, `localtime` or `posixrules` is refused, whatever files the zone directories hold. The POSIX
rule is the footer of the zone's TZif file (version 2 and later end with it); a zone whose file
has none is described by its current fixed offset.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import zoneinfo
from datetime import UTC, datetime

from pinbase.domain.errors import Invalid
from pinbase.domain.utc import DEFAULT_TIMEZONE, Zone

MAX_TZIF_BYTES = 1 << 20


class UnknownTimezone(ValueError):
    """Not an IANA timezone name this system knows."""


NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
"""Files of the zone directories that are not IANA timezones."""


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if name not in NOT_ZONES and not name.startswith(("posix/", "right/"))
    )


def check_timezone(name: str) -> str:
    """`name` when it names an IANA timezone, else UnknownTimezone."""
    if not isinstance(name, str) or name not in _known():
        raise UnknownTimezone(f"'{name}' is not an IANA timezone name (such as Europe/Kyiv)")
    return name


def _tzif(name: str) -> bytes | None:
    for directory in zoneinfo.TZPATH:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as file:
                return file.read(MAX_TZIF_BYTES)
    try:
        package, _, leaf = f"tzdata.zoneinfo/{name}".rpartition("/")
        resource = importlib.resources.files(package.replace("/", ".")).joinpath(leaf)
        return resource.read_bytes()
    except (ImportError, OSError, ValueError):
        return None


def posix_rule(data: bytes | None) -> str | None:
    """The POSIX TZ rule in a TZif file's footer, or None."""
    if not data or not data.startswith(b"TZif") or data[4:5] in (b"\0", b""):
        return None
    lines = data.rstrip(b"\n").rsplit(b"\n", 1)
    footer = lines[-1] if len(lines) == 2 else b""
    if not footer or not footer.isascii() or not footer.strip() or b"\0" in footer:
        return None
    return footer.decode("ascii")


def fixed_rule(info: zoneinfo.ZoneInfo) -> str:
    offset = datetime.now(UTC).astimezone(info).utcoffset()
    minutes = 0 if offset is None else int(offset.total_seconds()) // 60
    sign = "-" if minutes >= 0 else "+"  # POSIX counts west of UTC as positive
    hours, rest = divmod(abs(minutes), 60)
    name = f"<{'+' if minutes >= 0 else '-'}{hours:02d}{rest:02d}>"
    return f"{name}{sign}{hours}" + (f":{rest:02d}" if rest else "")


@functools.lru_cache(maxsize=1024)
def query_zone(name: str | None, parameter: str = "tz") -> Zone:
    """`load_zone` for a query parameter: an unknown name is a 400 naming `parameter`."""
    try:
        return load_zone(name)
    except UnknownTimezone as exc:
        raise Invalid(f"Query parameter '{parameter}': {exc}.") from None


def load_zone(name: str | None) -> Zone:
    """The zone `name` (UTC when None); UnknownTimezone when the system does not know it."""
    name = check_timezone(name or DEFAULT_TIMEZONE)
    info = zoneinfo.ZoneInfo(name)
    rule = posix_rule(_tzif(name)) or fixed_rule(info)
    return Zone(name, info, rule)
