"""Device events: their definitions in a product, the system events, and Blynk's limits.

A product (a root product; its variants share it) defines the events its devices may log, by
`code`. The server itself records two system events, ONLINE and OFFLINE, which need no
definition. The limits are Blynk's: `MAX_PER_DAY` events per device per UTC day (system events
are not counted), at most one event per code and device within `MIN_GAP_MS`, and descriptions
of at most `MAX_DESCRIPTION` characters. They are enforced where the event is stored (see
`pinbase.store.base.Store.log_event`), so they hold across server processes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from pinbase.domain.errors import DomainError, Invalid

MAX_PER_DAY = 100
MIN_GAP_MS = 1_000
MAX_DESCRIPTION = 300
MAX_COMMENT = 1024
"""A resolution's comment."""
MAX_CODE = 200
MAX_NAME = 200
MAX_DEFINITION_DESCRIPTION = 1024
DAY_MS = 86_400_000

CODE = re.compile(r"[A-Za-z0-9_-]{1,200}")


class EventType(enum.StrEnum):
    INFORMATION = "INFORMATION"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    CONTENT = "CONTENT"
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


DEFINABLE = (EventType.INFORMATION, EventType.WARNING, EventType.CRITICAL, EventType.CONTENT)
"""The types a product's events may have; ONLINE and OFFLINE are the system events'."""
SYSTEM_EVENT_TYPES = frozenset({EventType.ONLINE, EventType.OFFLINE})
"""Recorded by the server, never refused, not counted against the daily limit."""
RESOLVABLE = frozenset({EventType.WARNING, EventType.CRITICAL})
"""Only warnings and critical events can be resolved (as in Blynk's Console)."""


@dataclass(frozen=True, slots=True)
class EventDefinition:
    id: int
    code: str
    name: str
    type: EventType
    description: str | None = None
    timeline: bool = True
    """Whether logged events show on the device timeline (they are stored either way)."""
    notify: str | None = None
    """The notification settings as JSON text (`{"email": [...], "period": s}`), read by
    `pinbase.domain.notifications`."""


ONLINE = EventDefinition(-1, "ONLINE", "Online", EventType.ONLINE)
OFFLINE = EventDefinition(-2, "OFFLINE", "Offline", EventType.OFFLINE)
SYSTEM_EVENTS = (ONLINE, OFFLINE)
"""Built into every product, with negative ids no defined event can have."""


class EventLimit(DomainError):
    """An event over one of the limits (HTTP 429); `reason` names which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


PER_DAY = "per_day"
PER_CODE = "per_second"
TOO_MANY_PER_DAY = f"Too many events from this device today (at most {MAX_PER_DAY})."
TOO_FAST = "Only one event per second with this code is allowed."


def limit_error(reason: str) -> EventLimit:
    return EventLimit(reason, TOO_MANY_PER_DAY if reason == PER_DAY else TOO_FAST)


def check_description(description: str | None) -> str | None:
    """The description as stored: None when empty; Invalid beyond MAX_DESCRIPTION characters."""
    if not description:
        return None
    if len(description) > MAX_DESCRIPTION:
        raise Invalid(f"Event description is longer than {MAX_DESCRIPTION} characters.")
    if "\x00" in description:
        raise Invalid("Event description must not contain NUL characters.")
    return description


def day_start(ts: int) -> int:
    """The start (epoch ms) of the UTC day holding `ts`: the daily limit's window."""
    return ts - ts % DAY_MS
