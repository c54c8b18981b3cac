"""Device events on the Organization API: the timeline, triggering and resolving events, and
(docs/api.md, "Timeline"); a template's events are in `templates.py`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from pinbase.app.caller import controlled
from pinbase.app.paging import Page
from pinbase.app.timeline import MAX_PAGE_SIZE, timeline
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.events import RESOLVABLE, EventType
from pinbase.domain.model import INT32_MAX, INT64_MAX, INT64_MIN, Permission
from pinbase.http.deps import Int32Query, OrgContext, PlainInteger, decode
from pinbase.http.openapi import json_body, responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import ResolveEvent, TimelinePage, TriggerEvent

router = APIRouter(prefix="/api", tags=["Device events"])

CODE_NOT_FOUND = "Event with provided code is not found."


@router.get(
    "/v1/organization/device/timeline",
    summary="Get the device's timeline",
    description=(
        "The events a device logged (its product's events that show on the timeline, and "
        "ONLINE/OFFLINE), newest first, optionally of one `eventType` and stamped from `from` "
        "to `to` (epoch milliseconds, both included; `from` after `to`: an empty page)."
    ),
    responses=responses(
        {200: ("One page of the timeline, newest first", TimelinePage)},
        (400, 401, 403, 404, 429),
    ),
)
async def device_timeline(
    ctx: OrgContext,
    deviceId: Int32Query,
    page: Annotated[int, Query(ge=0, le=INT32_MAX), PlainInteger] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), PlainInteger] = 20,
    eventType: EventType | None = None,
    from_: Annotated[int, Query(alias="from", ge=INT64_MIN, le=INT64_MAX), PlainInteger] = 0,
    to: Annotated[int, Query(ge=INT64_MIN, le=INT64_MAX), PlainInteger] = INT64_MAX,
) -> Response:
    kind = None if eventType is None else eventType.value
    found = await timeline(ctx, deviceId, Page(page, size, MAX_PAGE_SIZE), kind, from_, to)
    return json_response(found)


@router.post(
    "/v1/organization/device/trigger-event",
    summary="Log an event of the device's product",
    status_code=204,
    openapi_extra=json_body(TriggerEvent),
    responses=responses(
        {204: ("Logged", None)},
        (400, 401, 403, 404, 429),
        bad_request="Malformed body, or a description over 300 characters",
    ),
)
async def trigger_event(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, TriggerEvent)
    device = controlled(ctx, body.deviceId, Permission.ORG_DEVICES_CONTROL)
    try:
        await ctx.services.events.log(ctx.catalog, device, body.eventCode, body.eventDescription)
    except NotFound:
        raise NotFound(CODE_NOT_FOUND) from None
    return Response(status_code=204)


@router.post(
    "/v1/organization/device/resolve-event",
    summary="Resolve a logged warning or critical event",
    status_code=204,
    openapi_extra=json_body(ResolveEvent),
    responses=responses(
        {204: ("Resolved", None)},
        (400, 401, 403, 404, 429),
        bad_request="Malformed body, an event that is not a warning or critical, or resolved",
    ),
)
async def resolve_event(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, ResolveEvent)
    device = controlled(ctx, body.deviceId, Permission.ORG_DEVICES_CONTROL)
    entry = await ctx.services.store.device_event(device.id, body.logEventId)
    if entry is None:
        raise NotFound(f"Event with identifier {body.logEventId} is not found.")
    if entry.type not in RESOLVABLE:
        raise Invalid("Only WARNING and CRITICAL events can be resolved.")
    resolved = await ctx.services.events.resolve(device, "id", entry.id, body.comment)
    if not resolved:
        raise Invalid("The event is already resolved.")
    return Response(status_code=204)
