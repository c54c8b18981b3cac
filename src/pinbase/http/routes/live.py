"""Live updates: value and property changes as server-sent events (a pinbase extension).

A script or dashboard keeps one `GET /api/v1/organization/live` open and receives every change
of the devices its token covers, from whichever interface or server process it came, as
`event: value` / `event: property` messages whose data is one JSON object; device events shown
on the timeline, and their resolutions, come as `event: event` messages holding the timeline
item (`isResolved` tells the two apart); a metadata value stored through the API or by a
device comes as `event: meta` (`deviceId`, the metafield's `id` and `name`, and the `value`
as `device/metafield` answers it; values set by `pinbase apply` are not sent). A comment line is
sent every KEEPALIVE_S seconds so that proxies keep the connection open. A client that cannot
keep up loses the oldest queued events, never slows writers down. When the server stops, every
stream ends at once (the bus closes), so a stop does not wait for its clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter
from starlette.responses import StreamingResponse

from pinbase.app.timeline import timeline_item
from pinbase.domain.model import INT32_MAX, INT32_MIN
from pinbase.http.deps import IdsQuery, OrgContext, int_list
from pinbase.http.openapi import id_list_parameter, responses
from pinbase.live.bus import Event, EventLogged, EventResolved, MetaChanged, ValueChanged

router = APIRouter(prefix="/api", tags=["Live updates"])

KEEPALIVE_S = 15.0
QUEUE_SIZE = 10_000


def _message(event: Event) -> bytes:
    data: dict[str, object]
    if isinstance(event, EventLogged | EventResolved):
        kind = b"event"
        data = timeline_item(event.entry)
    elif isinstance(event, MetaChanged):
        kind = b"meta"
        data = {"deviceId": event.device_id, "id": event.field_id, "name": event.name}
        data["value"] = event.value
    elif isinstance(event, ValueChanged):
        kind = b"value"
        data = {
            "deviceId": event.device_id,
            "dataStreamId": event.ds_id,
            "pin": event.pin,
            "value": event.value,
            "updatedAt": event.ts,
        }
    else:
        kind = b"property"
        data = {
            "deviceId": event.device_id,
            "dataStreamId": event.ds_id,
            "pin": event.pin,
            "property": event.name,
            "value": event.value,
        }
    return b"event: " + kind + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.get(
    "/v1/organization/live",
    summary="Stream value and property changes as server-sent events (pinbase extension)",
    response_class=StreamingResponse,
    openapi_extra={
        "parameters": [id_list_parameter("deviceIds", "Only these devices; all when left out.")]
    },
    responses={
        **responses({}, (400, 401, 403, 429)),
        200: {
            "description": "An endless stream of `value` and `property` events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def live(ctx: OrgContext, deviceIds: IdsQuery = None) -> StreamingResponse:
    wanted = set(int_list("deviceIds", deviceIds, INT32_MIN, INT32_MAX))
    ctx.principal.require_view()
    principal, store = ctx.principal, ctx.services.store
    queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)  # None: the server stops

    def put(event: Event | None) -> None:
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(event)

    def deliver(event: Event) -> None:
        if isinstance(event, EventLogged) and not event.shown:
            return  # not on the timeline: not on the stream either
        if not wanted or event.device_id in wanted:
            put(event)

    bus = ctx.services.bus
    unsubscribe = bus.subscribe_org(principal.org_id, deliver)
    forget = bus.when_closed(lambda: put(None))

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while not bus.closed:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                catalog = await store.catalog()
                device = catalog.devices.get(event.device_id)
                if device is not None and principal.covers(device):
                    yield _message(event)
        finally:
            unsubscribe()
            forget()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
