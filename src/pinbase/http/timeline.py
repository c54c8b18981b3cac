"""A logged device event as the API shows it: a timeline item, also sent on the live stream."""

from __future__ import annotations

from typing import Any

from pinbase.store.records import LoggedEvent


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
