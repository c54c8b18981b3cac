"""A device's time and timezone as Blynk answers it (`InternalPinUTC`, MQTT `get/utc/all/json`).

Pure: the zone comes loaded (`Zone`: its IANA name, its rules as a `tzinfo`, its POSIX TZ
rule) and the time is given, in epoch milliseconds. Loading zones is the app layer's
(`app/timezones.py`).

The answers, per request (`utc\\0<what>`), as the fields after `<what>`:
- `time`: epoch milliseconds;
- `iso`: the local time, ISO 8601 to the second with its offset (`2026-11-30T09:00:00+02:00`);
- `tz`: the standard offset and the daylight-saving offset in effect, in minutes east of UTC
  (Kyiv in summer: `120`, `60`);
- `tz_name`: the IANA name;
- `tz_rule`: the POSIX TZ rule (`EET-2EEST,M3.5.0/3,M10.5.0/4`);
- `dst_next`: up to two coming offset changes within `DST_HORIZON_DAYS`, each as the Unix
  second it takes effect and the total offset from then on, in minutes (nothing when the zone
  has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

UTC_REQUESTS = ("time", "iso", "tz", "tz_name", "tz_rule", "dst_next")
DST_HORIZON_DAYS = 400
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    """The IANA name (`Europe/Kyiv`)."""
    info: tzinfo
    rule: str
    """The POSIX TZ rule (`EET-2EEST,M3.5.0/3,M10.5.0/4`)."""


def _minutes(delta: timedelta | None) -> int:
    return 0 if delta is None else int(delta.total_seconds()) // 60


def _offset_at(zone: tzinfo, seconds: int) -> int:
    return _minutes(datetime.fromtimestamp(seconds, UTC).astimezone(zone).utcoffset())


def next_changes(zone: tzinfo, now_s: int, count: int = 2) -> list[tuple[int, int]]:
    """Up to `count` offset changes after `now_s` (Unix seconds) within `DST_HORIZON_DAYS`:
    (the first second of the new offset, the new offset in minutes)."""
    changes: list[tuple[int, int]] = []
    start = now_s
    offset = _offset_at(zone, start)
    day = 86_400
    while len(changes) < count and start - now_s < DST_HORIZON_DAYS * day:
        step = start + day
        if _offset_at(zone, step) == offset:
            start = step
            continue
        low, high = start, step  # offset(low) is the old one, offset(high) the new one
        while high - low > 1:
            mid = (low + high) // 2
            if _offset_at(zone, mid) == offset:
                low = mid
            else:
                high = mid
        offset = _offset_at(zone, high)
        changes.append((high, offset))
        start = high
    return changes


def utc_answer(what: str, zone: Zone, now_ms: int) -> list[str] | None:
    """The fields answering `utc\\0<what>` (starting with `what`), or None for a request this
    server does not know."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone.info)
    if what == "time":
        return [what, str(now_ms)]
    if what == "iso":
        return [what, local.replace(microsecond=0).isoformat()]
    if what == "tz":
        total, dst = _minutes(local.utcoffset()), _minutes(local.dst())
        return [what, str(total - dst), str(dst)]
    if what == "tz_name":
        return [what, zone.name]
    if what == "tz_rule":
        return [what, zone.rule]
    if what == "dst_next":
        fields = [what]
        for second, offset in next_changes(zone.info, now_ms // 1000):
            fields += [str(second), str(offset)]
        return fields
    return None


def utc_all(zone: Zone, now_ms: int) -> dict[str, object]:
    """Every answer at once, as MQTT's `downlink/utc/all/json` carries them: `time`, `iso`,
    `tz` and `dst` (minutes), `tz_name`, `tz_rule`, `dst_next` (a list of [second, offset])."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone.info)
    total, dst = _minutes(local.utcoffset()), _minutes(local.dst())
    return {
        "time": now_ms,
        "iso": local.replace(microsecond=0).isoformat(),
        "tz": total - dst,
        "dst": dst,
        "tz_name": zone.name,
        "tz_rule": zone.rule,
        "dst_next": [list(change) for change in next_changes(zone.info, now_ms // 1000)],
    }
