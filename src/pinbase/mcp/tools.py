"""The MCP tools, with Blynk's names. One tool is one small function calling a use case through
`answer`, which admits the caller and turns the use case's refusals into tool errors carrying
the HTTP API's message. Adding a tool: a function here, and its name in `TOOLS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast

import orjson
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent
from pydantic import Field

from pinbase.app import datastream_values, devices, history_aggregates, templates
from pinbase.app.caller import Caller, admit
from pinbase.app.history_aggregates import FUNCTIONS
from pinbase.app.paging import DEFAULT_SIZE, Page
from pinbase.app.services import Services
from pinbase.app.timeline import MAX_PAGE_SIZE, timeline
from pinbase.domain.buckets import Interval
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import DomainError
from pinbase.domain.model import INT64_MAX
from pinbase.mcp.auth import bearer_token

UseCase = Callable[[Caller], Awaitable[Any] | Any]

DeviceId = Annotated[int, Field(description="The device's id")]
TemplateId = Annotated[int, Field(description="The template's (product's) id")]
PageNumber = Annotated[int, Field(ge=0, description="0-based page number")]
Since = Annotated[int, Field(description="From this time, epoch milliseconds (included)")]
Until = Annotated[int, Field(description="Up to this time, epoch milliseconds (included)")]


def _result(found: object) -> CallToolResult:
    text = "" if found is None else orjson.dumps(found).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)])


async def answer(ctx: Context, use: UseCase) -> CallToolResult:
    """Run `use` for the caller of this call: its answer as JSON text, or a tool error whose
    text is the HTTP API's error message (401, 403, 404, 400 and 429 alike)."""
    services = cast(Services, ctx.request_context.lifespan_context)  # `create_mcp` yields it
    try:
        caller = await admit(services, bearer_token(ctx))
        found = use(caller)
        if isinstance(found, Awaitable):
            found = await found
    except DomainError as exc:
        return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
    return _result(found)


async def get_all_templates(
    ctx: Context, page: PageNumber = 0, size: int = DEFAULT_SIZE
) -> CallToolResult:
    """The organization's templates (products), by id: id, name, orgId, parentId."""
    return await answer(ctx, lambda caller: templates.templates(caller, Page(page, size)))


async def get_template(ctx: Context, templateId: TemplateId) -> CallToolResult:
    """One template with its datastreams, events and metafields."""
    return await answer(ctx, lambda caller: templates.template_details(caller, templateId))


async def get_datastream_values(ctx: Context, deviceId: DeviceId) -> CallToolResult:
    """The current value of each datastream of a device."""
    return await answer(ctx, lambda caller: datastream_values.current(caller, deviceId))


async def update_datastream_value(
    ctx: Context,
    deviceId: DeviceId,
    value: Annotated[Any, Field(description="A number, text, or [longitude, latitude]")],
    dataStreamId: Annotated[int | None, Field(description="The datastream's id")] = None,
    pin: Annotated[str | None, Field(description="Or its pin, such as v1")] = None,
) -> CallToolResult:
    """Write a value to a device's datastream (by id, or by pin): stored, and sent to the
    device if it is connected."""
    return await answer(
        ctx, lambda caller: datastream_values.write(caller, deviceId, dataStreamId, value, pin)
    )


async def get_history(
    ctx: Context,
    deviceId: DeviceId,
    start: Since,
    end: Until,
    dataStreamId: Annotated[int | None, Field(description="The datastream's id")] = None,
    pin: Annotated[str | None, Field(description="Or its pin, such as v1")] = None,
    page: PageNumber = 0,
    size: int = DEFAULT_SIZE,
) -> CallToolResult:
    """A page of a datastream's stored points between two times, newest first."""
    return await answer(
        ctx,
        lambda caller: datastream_values.history(
            caller, deviceId, dataStreamId, pin, start, end, Page(page, size)
        ),
    )


async def get_history_aggregate(
    ctx: Context,
    deviceId: DeviceId,
    start: Since,
    end: Until,
    interval: Annotated[str, Field(description=f"One of: {', '.join(Interval)}")],
    fn: Annotated[str, Field(description=f"One of: {', '.join(FUNCTIONS)}")],
    dataStreamId: Annotated[int | None, Field(description="The datastream's id")] = None,
    pin: Annotated[str | None, Field(description="Or its pin, such as v1")] = None,
    tz: Annotated[
        str | None, Field(description="IANA timezone of the buckets; the device's by default")
    ] = None,
) -> CallToolResult:
    """A datastream's points between two times summed up by `fn` per bucket of `interval` of
    local time (DST-correct, weeks start on Monday): the buckets holding points, oldest first,
    each with the instant it starts (`ts`, epoch ms) and its value."""
    return await answer(
        ctx,
        lambda caller: history_aggregates.aggregate(
            caller, deviceId, dataStreamId, pin, start, end, interval, fn, tz
        ),
    )


async def get_timeline(
    ctx: Context,
    deviceId: DeviceId,
    eventType: Annotated[str | None, Field(description="Only events of this type")] = None,
    start: Since = 0,
    end: Until = INT64_MAX,
    page: PageNumber = 0,
    size: int = 20,
) -> CallToolResult:
    """A page of the events a device logged, newest first."""
    return await answer(
        ctx,
        lambda caller: timeline(
            caller, deviceId, Page(page, size, MAX_PAGE_SIZE), eventType, start, end
        ),
    )


async def search_devices(
    ctx: Context,
    query: Annotated[
        str | None,
        Field(
            description=(
                "Part of a device's name, its product's name or its owner's e-mail, or its id; "
                "every device when left out"
            )
        ),
    ] = None,
    sortBy: Annotated[
        str | None, Field(description=f"One of: {', '.join(devices.SORT_FIELDS)}")
    ] = None,
    descending: bool = False,
    page: PageNumber = 0,
    size: int = DEFAULT_SIZE,
) -> CallToolResult:
    """A page of the devices the token may view: id, name, template, owner, last report."""
    chosen = Page(page, size)
    if query is None:
        return await answer(ctx, lambda caller: devices.devices_page(caller, chosen))
    return await answer(
        ctx, lambda caller: devices.search_page(caller, query, sortBy, descending, chosen)
    )


async def get_device(ctx: Context, deviceId: DeviceId) -> CallToolResult:
    """One device with whether it is connected, its current datastream values and its
    metadata."""
    return await answer(ctx, lambda caller: devices.device_details(caller, deviceId))


async def create_device(
    ctx: Context,
    templateId: TemplateId,
    name: Annotated[str, Field(description="1 to 50 letters, digits, spaces, ' _ -")],
    ownerId: Annotated[
        int | None, Field(description="The owning user's id; the token's user when left out")
    ] = None,
) -> CallToolResult:
    """Create a device from a template; the answer holds its auth token (shown only once)."""
    return await answer(
        ctx, lambda caller: devices.create(caller, templateId, name, ownerId, now_ms())
    )


TOOLS = (
    search_devices,
    get_device,
    create_device,
    get_all_templates,
    get_template,
    get_datastream_values,
    update_datastream_value,
    get_history,
    get_history_aggregate,
    get_timeline,
)
