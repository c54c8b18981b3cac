"""E-mail notifications of device events: an event definition's `notify` settings, who gets
the mail, and what it says.

`notify` is stored as JSON text by provisioning (`{"email": [...], "period": s}`); it is read
here defensively all the same (a store written by another version, a hand-edited database):
anything malformed means no mail. Recipients are addresses or `owner` (the device owner's
e-mail; a device without an owner drops that recipient). At most one mail per event code and
device is sent per `period` seconds: `DEFAULT_PERIOD_S` when unset, never less than
`MIN_PERIOD_S` (Blynk: notifications at least 5 s apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

DEFAULT_PERIOD_S = 60
MIN_PERIOD_S = 5
MAX_RECIPIENTS = 20
OWNER = "owner"
ADDRESS_PATTERN = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}"
"""A bare e-mail address (`is_address`), for schemas too: RFC 5322's atoms and dots before the
`@`, a host name after it. Spelled out without the whitespace class, which Python and the JSON
Schema validators that read the schemas disagree on."""
_ADDRESS = re.compile(ADDRESS_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    emails: tuple[str, ...]
    """Addresses and `owner`, as defined."""
    period_s: int


def parse_notify(text: str | None) -> NotifySettings | None:
    """The settings of a stored `notify`; None when there are none or they are malformed."""
    if not text:
        return None
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    emails = raw.get("email")
    period = raw.get("period", DEFAULT_PERIOD_S)
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        return None
    if not isinstance(period, int) or isinstance(period, bool):
        return None
    listed = tuple(e for e in emails if e == OWNER or is_address(e))[:MAX_RECIPIENTS]
    return NotifySettings(listed, max(period, MIN_PERIOD_S)) if listed else None


def is_address(text: str) -> bool:
    """A bare e-mail address, with nothing a mail header could be tricked by."""
    return _ADDRESS.fullmatch(text) is not None


def recipients(settings: NotifySettings, owner_email: str | None) -> list[str]:
    """The addresses to mail, in order, each once."""
    found: list[str] = []
    for item in settings.emails:
        address = owner_email if item == OWNER else item
        if address is not None and is_address(address) and address not in found:
            found.append(address)
    return found


def one_line(text: str, limit: int = 200) -> str:
    """Text fit for a header: control characters (CR, LF) become spaces, cut to `limit`."""
    return _CONTROL.sub(" ", text).strip()[:limit]


def compose(
    device_name: str, event_name: str, code: str, description: str | None, ts: int
) -> tuple[str, str]:
    """(subject, body) of an event's mail; the time in UTC."""
    at = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    subject = one_line(f"{event_name} on {device_name}")
    body = (
        f"Device: {device_name}\n"
        f"Event: {event_name} ({code})\n"
        f"Time: {at}\n"
        f"Description: {description or '-'}\n"
    )
    return subject, body
