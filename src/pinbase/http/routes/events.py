"""Device events on the Organization API: the timeline, triggering and resolving events, and
the events a template (a product) defines (docs/api.md, "Timeline")."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.events import RESOLVABLE, SYSTEM_EVENTS, EventType
from pinbase.domain.model import INT32_MAX, INT64_MAX, INT64_MIN, Device, Permission
from pinbase.domain.permissions import covered_device
from pinbase.http.deps import Int32Query, OrgContext, PlainInteger, decode
from pinbase.http.openapi import json_body, responses
from pinbase.http.schemas import ResolveEvent, TemplateEvent, TimelinePage, TriggerEvent
from pinbase.http.timeline import timeline_item

router = APIRouter(prefix="/api", tags=["Device events"])

CODE_NOT_FOUND = "Event with provided code is not found."
MAX_PAGE_SIZE = 100


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


def _controlled(ctx: OrgContext, device_id: int) -> Device:
    ctx.principal.require(Permission.ORG_DEVICES_CONTROL)
    ctx.principal.require_view()
    return covered_device(ctx.catalog, ctx.principal, device_id)


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
async def timeline(
    ctx: OrgContext,
    deviceId: Int32Query,
    page: Annotated[int, Query(ge=0, le=INT32_MAX), PlainInteger] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), PlainInteger] = 20,
    eventType: EventType | None = None,
    from_: Annotated[int, Query(alias="from", ge=INT64_MIN, le=INT64_MAX), PlainInteger] = 0,
    to: Annotated[int, Query(ge=INT64_MIN, le=INT64_MAX), PlainInteger] = INT64_MAX,
) -> Response:
    ctx.principal.require_view()
    device = covered_device(ctx.catalog, ctx.principal, deviceId)
    kind = None if eventType is None else eventType.value
    total, entries = await ctx.services.store.timeline(
        device.id, kind, from_, to, page * size, size
    )
    return _json({"totalElements": total, "content": [timeline_item(e) for e in entries]})


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
    device = _controlled(ctx, body.deviceId)
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
    device = _controlled(ctx, body.deviceId)
    entry = await ctx.services.store.device_event(device.id, body.logEventId)
    if entry is None:
        raise NotFound(f"Event with identifier {body.logEventId} is not found.")
    if entry.type not in RESOLVABLE:
        raise Invalid("Only WARNING and CRITICAL events can be resolved.")
    resolved = await ctx.services.events.resolve(device, "id", entry.id, body.comment)
    if not resolved:
        raise Invalid("The event is already resolved.")
    return Response(status_code=204)


@router.get(
    "/v1/organization/template/events",
    summary="Get the events of a template (product)",
    description=(
        "The events a product defines (a variant: its root product's), the system events "
        "ONLINE (id -1) and OFFLINE (id -2) first."
    ),
    responses=responses(
        {200: ("The template's events", list[TemplateEvent])}, (400, 401, 403, 404, 429)
    ),
)
async def template_events(ctx: OrgContext, templateId: Int32Query) -> Response:
    ctx.principal.require_view()
    product = ctx.catalog.products.get(templateId)
    if product is None or product.org_id != ctx.principal.org_id:
        raise NotFound(f"Template with identifier {templateId} is not found.")
    defined = sorted(product.events.values(), key=lambda e: e.id)
    return _json(
        [
            {
                "id": e.id,
                "name": e.name,
                "eventCode": e.code,
                "type": e.type.value,
                "description": e.description,
                "showInTimeline": e.timeline,
            }
            for e in (*SYSTEM_EVENTS, *defined)
        ]
    )
