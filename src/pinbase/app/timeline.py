"""A device's timeline: the events it logged, newest first (the API's and the live stream's
shape of a logged event)."""

from __future__ import annotations

from typing import Any

from pinbase.app.caller import Caller
from pinbase.app.paging import Page
from pinbase.domain.errors import Invalid
from pinbase.domain.events import EventType
from pinbase.domain.model import INT64_MAX
from pinbase.domain.permissions import covered_device
from pinbase.store.records import LoggedEvent

MAX_PAGE_SIZE = 100


def timeline_item(entry: LoggedEvent) -> dict[str, Any]:
    return {
        "id": entry.id,
        "deviceId": entry.device_id,
        "eventId": entry.event_id,
        "eventCode": entry.code,
        "eventType": entry.type,
        "description": entry.description,
        "ts": entry.ts,
        "isResolved": entry.resolved_at is not None,
        "resolvedAt": entry.resolved_at,
        "resolvedComment": entry.resolved_comment,
    }


def event_type(name: str | None) -> str | None:
    """An `eventType` filter checked against Blynk's names."""
    if name is None:
        return None
    try:
        return EventType(name).value
    except ValueError:
        names = ", ".join(t.value for t in EventType)
        raise Invalid(f"'eventType' must be one of {names}.") from None


async def timeline(
    caller: Caller,
    device_id: int,
    page: Page,
    kind: str | None = None,
    start: int = 0,
    end: int = INT64_MAX,
) -> dict[str, Any]:
    """One page of the events a covered device logged from `start` to `end` (epoch ms, both
    included), newest first, optionally of one event type."""
    caller.principal.require_view()
    device = covered_device(caller.catalog, caller.principal, device_id)
    total, entries = await caller.services.store.timeline(
        device.id, event_type(kind), start, end, page.offset, page.size
    )
    return {"totalElements": total, "content": [timeline_item(e) for e in entries]}
