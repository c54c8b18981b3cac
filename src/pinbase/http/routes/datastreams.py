"""The eight datastream operations of Blynk's Organization API and the CSV export of history
(docs/api.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from pinbase.app import datastream_values, history_aggregates, history_export
from pinbase.app.caller import controlled
from pinbase.app.datastream_values import datastream, values_json
from pinbase.app.history_aggregates import FUNCTIONS
from pinbase.app.paging import Page
from pinbase.domain import batch
from pinbase.domain.buckets import Interval
from pinbase.domain.errors import Invalid, Mismatch
from pinbase.domain.model import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    Datastream,
    Permission,
)
from pinbase.domain.permissions import covered_device
from pinbase.domain.properties import parse_property
from pinbase.domain.ratelimit import retry_after
from pinbase.domain.values import Value, parse_json_value
from pinbase.http.deps import (
    IdsQuery,
    Int32Query,
    Int64Query,
    OrgContext,
    PlainInteger,
    decode,
    int_list,
    unique,
)
from pinbase.http.errors import ApiError
from pinbase.http.openapi import id_list_parameter, json_body, responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import (
    BatchReport,
    BatchUpdate,
    DatastreamProperties,
    DataStreamValue,
    DeviceValues,
    HistoryAggregate,
    HistoryPage,
    ImportBatch,
    PropertyUpdate,
    UpdateValue,
    UpdateValues,
)

router = APIRouter(prefix="/api", tags=["Organization datastreams"])


_DATASTREAM_ID = re.compile(r"[0-9]{1,10}")
MAX_BATCH_DEVICES = 10


_DATASTREAM_IDS = id_list_parameter(
    "dataStreamIds", "Only these datastreams (unknown ids are ignored); all when left out."
)


@router.get(
    "/v2/organization/device/datastreams",
    summary="Get device datastream values",
    openapi_extra={"parameters": [_DATASTREAM_IDS]},
    responses=responses(
        {200: ("Datastream values", list[DataStreamValue])}, (400, 401, 403, 404, 429)
    ),
)
async def device_values(
    ctx: OrgContext, deviceId: Int32Query, dataStreamIds: IdsQuery = None
) -> Response:
    wanted = int_list("dataStreamIds", dataStreamIds, INT32_MIN, INT32_MAX)
    return json_response(await datastream_values.current(ctx, deviceId, wanted))


@router.get(
    "/v1/organization/device/datastreams/batch",
    summary="Get datastream values for up to 10 devices",
    description=(
        "Devices in the order asked, each once; unknown devices and those of another "
        "organization are left out."
    ),
    openapi_extra={
        "parameters": [
            id_list_parameter(
                "deviceIds",
                f"The devices, at most {MAX_BATCH_DEVICES} ids (a repeated id counts too).",
                required=True,
                max_items=MAX_BATCH_DEVICES,
            ),
            _DATASTREAM_IDS,
        ]
    },
    responses=responses(
        {200: ("Batch datastream values", list[DeviceValues])}, (400, 401, 403, 429)
    ),
)
async def batch_values(
    ctx: OrgContext, deviceIds: IdsQuery = None, dataStreamIds: IdsQuery = None
) -> Response:
    given = int_list("deviceIds", deviceIds, INT32_MIN, INT32_MAX)
    if not given:
        raise Invalid("Query parameter 'deviceIds' is required.")
    if len(given) > MAX_BATCH_DEVICES:
        raise Invalid(f"At most {MAX_BATCH_DEVICES} devices can be read at once.")
    ids = unique(given)
    wanted = int_list("dataStreamIds", dataStreamIds, INT32_MIN, INT32_MAX)
    ctx.principal.require_view()
    devices = [
        d
        for d in (ctx.catalog.devices.get(i) for i in ids)
        if d is not None and ctx.principal.covers(d)
    ]
    stored = await ctx.services.store.current_values([d.id for d in devices])
    return json_response(
        [
            {
                "deviceId": d.id,
                "dataStreamValues": values_json(ctx.catalog.schema_of(d), stored[d.id], wanted),
            }
            for d in devices
        ]
    )


@router.get(
    "/v1/organization/device/datastream/history",
    summary="Get datastream history",
    description=(
        "Points of one datastream, named by `dataStreamId` or by `pin` (one of them is "
        "required; `dataStreamId` wins when both are given), stamped from `from` to `to` "
        "(epoch milliseconds, both included; `from` must not be after `to`)."
    ),
    responses=responses(
        {200: ("Historical data, newest first", HistoryPage)},
        (400, 401, 403, 404, 429),
        bad_request=(
            "Malformed parameter, neither `dataStreamId` nor `pin` given, or `from` after `to`"
        ),
    ),
)
async def history(
    ctx: OrgContext,
    deviceId: Int32Query,
    from_: Annotated[int, Query(alias="from", ge=INT64_MIN, le=INT64_MAX), PlainInteger],
    to: Int64Query,
    dataStreamId: Annotated[int | None, Query(ge=INT32_MIN, le=INT32_MAX), PlainInteger] = None,
    pin: Annotated[
        str | None, Query(max_length=16, description="Alternative to dataStreamId")
    ] = None,
    page: Annotated[int, Query(ge=0, le=INT32_MAX), PlainInteger] = 0,
    size: Annotated[int, Query(ge=1, le=1000), PlainInteger] = 50,
    order: Annotated[Literal["desc", "asc"], Query(description="Newest first by default")] = "desc",
) -> Response:
    found = await datastream_values.history(
        ctx, deviceId, dataStreamId, pin, from_, to, Page(page, size), order == "asc"
    )
    return json_response(found)


@router.get(
    "/v1/organization/device/export",
    summary="Export a device's history as CSV (pinbase extension)",
    description=(
        "The points of the device's datastreams (`dataStreamIds`, every one when left out) "
        "stamped from `from` to `to` (epoch milliseconds, both included), in time order, as "
        "CSV with the header `ts_iso,ts_ms,dataStreamId,pin,label,value`; `ts_iso` in the IANA "
        "timezone `tz` (UTC when left out). Streamed: any number of points."
    ),
    response_class=StreamingResponse,
    openapi_extra={
        "parameters": [
            id_list_parameter(
                "dataStreamIds", "Only these datastreams (an unknown id is 404); all when left out."
            )
        ]
    },
    responses={
        **responses(
            {},
            (400, 401, 403, 404, 429),
            bad_request="Malformed parameter, `from` after `to`, or an unknown timezone",
        ),
        200: {
            "description": "The points, one CSV row each (RFC 4180, CRLF line ends)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": {
                "Content-Disposition": {
                    "description": "`attachment; filename=device-<id>-<from>-<to>.csv`",
                    "schema": {"type": "string"},
                }
            },
        },
    },
)
async def export_history(
    ctx: OrgContext,
    deviceId: Int32Query,
    from_: Annotated[int, Query(alias="from", ge=INT64_MIN, le=INT64_MAX), PlainInteger],
    to: Int64Query,
    dataStreamIds: IdsQuery = None,
    tz: Annotated[
        str | None, Query(max_length=64, description="IANA timezone of `ts_iso` (UTC default)")
    ] = None,
) -> StreamingResponse:
    wanted = int_list("dataStreamIds", dataStreamIds, INT32_MIN, INT32_MAX)
    export = history_export.export_for(ctx, deviceId, wanted, from_, to, tz)
    pieces = history_export.csv_batches(ctx.services.store, export)
    first, _ = await anext(pieces)

    async def body() -> AsyncIterator[str]:
        yield first
        async for text, _ in pieces:
            yield text

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename={export.filename}"},
    )


@router.post(
    "/v1/organization/device/datastream",
    summary="Update single datastream value",
    status_code=204,
    openapi_extra=json_body(UpdateValue),
    responses=responses(
        {204: ("Value stored", None)},
        bad_request="Malformed body, or a value that does not fit the datastream's type",
    ),
)
async def update_value(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, UpdateValue)
    await datastream_values.write(ctx, body.deviceId, body.dataStreamId, body.value)
    return Response(status_code=204)


@router.post(
    "/v1/organization/device/datastreams",
    summary="Update multiple datastream values of one device",
    status_code=204,
    openapi_extra=json_body(UpdateValues),
    responses=responses({204: ("Values stored; unknown ids and mismatched values skipped", None)}),
)
async def update_values(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, UpdateValues)
    device = controlled(ctx, body.deviceId, Permission.ORG_DEVICES_CONTROL)
    schema = ctx.catalog.schema_of(device)
    accepted: list[tuple[Datastream, Value]] = []
    for key, raw in body.values.items():
        text = key.strip()
        ds = schema.by_id.get(int(text)) if _DATASTREAM_ID.fullmatch(text) else None
        if ds is None:
            continue
        try:
            accepted.append((ds, parse_json_value(ds, raw)))
        except Mismatch:
            continue
    await ctx.services.ingest.write(device, accepted)
    return Response(status_code=204)


@router.post(
    "/v1/organization/product/devices/batch-update",
    summary="Batch update datastream values for devices of one product",
    openapi_extra=json_body(BatchUpdate),
    responses=responses(
        {
            200: ("Partial success: some rows were skipped", BatchReport),
            204: ("Every row applied", None),
        },
        (400, 401, 403, 413, 429),
        bad_request=(
            "Malformed body, a label the product lacks, or no row naming a device of the "
            "organization"
        ),
    ),
)
async def batch_update(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, BatchUpdate)
    ctx.principal.require(Permission.ORG_DEVICES_CONTROL)
    ctx.principal.require_view()
    outcome = batch.classify(ctx.catalog, ctx.principal, body.fields, body.updates)
    await ctx.services.ingest.write_cells(outcome.cells)
    if not outcome.skipped:
        return Response(status_code=204)
    report: dict[str, object] = dict(outcome.counters)
    if body.debug:
        report["skippedRows"] = outcome.reasons
    return json_response(report)


@router.post(
    "/v1/organization/device/import/batch",
    summary="Import historical data",
    status_code=204,
    openapi_extra=json_body(ImportBatch),
    responses=responses(
        {204: ("Every point stored", None)},
        bad_request="Malformed body, or a point whose value does not fit the datastream's type",
    ),
)
async def import_batch(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, ImportBatch)
    device = controlled(ctx, body.deviceId, Permission.ORG_DEVICE_DATA_IMPORT)
    ds = datastream(ctx.catalog.schema_of(device), body.dataStreamId)
    wait = await ctx.services.import_limits.take(device.id)
    if wait:
        raise ApiError(
            429,
            f"Import rate limit exceeded for device {device.id}; retry later.",
            {"Retry-After": retry_after(wait)},
        )
    points: list[tuple[int, Value]] = []
    for index, point in enumerate(body.values):
        try:
            points.append((point.ts, parse_json_value(ds, point.value)))
        except Mismatch as exc:
            raise Invalid(f"values[{index}]: {exc}") from None
    await ctx.services.ingest.import_points(device, ds, points)
    return Response(status_code=204)


@router.post(
    "/v1/organization/device/datastream/property",
    summary="Update datastream widget property",
    status_code=204,
    openapi_extra=json_body(PropertyUpdate),
    responses=responses(
        {204: ("Property stored", None)},
        bad_request="Malformed body, or a value the property does not take",
    ),
)
async def update_property(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, PropertyUpdate)
    device = controlled(ctx, body.deviceId, Permission.ORG_DEVICES_CONTROL)
    ds = datastream(ctx.catalog.schema_of(device), body.dataStreamId)
    name = body.property.value
    value = parse_property(name, body.value)
    await ctx.services.ingest.set_property(device, ds, name, value)
    return Response(status_code=204)


@router.get(
    "/v1/organization/device/datastream/properties",
    summary="Read widget properties of a device (pinbase extension)",
    openapi_extra={"parameters": [_DATASTREAM_IDS]},
    responses=responses(
        {200: ("Properties by datastream", list[DatastreamProperties])}, (400, 401, 403, 404, 429)
    ),
)
async def read_properties(
    ctx: OrgContext, deviceId: Int32Query, dataStreamIds: IdsQuery = None
) -> Response:
    wanted = set(int_list("dataStreamIds", dataStreamIds, INT32_MIN, INT32_MAX))
    ctx.principal.require_view()
    device = covered_device(ctx.catalog, ctx.principal, deviceId)
    schema = ctx.catalog.schema_of(device)
    stored = await ctx.services.store.properties(device.id)
    return json_response(
        [
            {"dataStreamId": ds.id, "pin": ds.pin, "properties": stored.get(ds.id, {})}
            for ds in schema.datastreams
            if not wanted or ds.id in wanted
        ]
    )


@router.get(
    "/v1/organization/device/datastream/history/aggregate",
    summary="Get aggregated datastream history (pinbase extension)",
    description=(
        "The points of one datastream (by `dataStreamId` or `pin`) stamped from `from` to `to` "
        "(epoch milliseconds, both included), aggregated by `fn` in buckets of `interval` of the "
        "local time of `tz` (the device's timezone by default): DST-correct, weeks start on "
        "Monday. Only buckets holding points, oldest first. Functions other than count, first "
        "and last need a numeric datastream; the range may span at most 100000 buckets."
    ),
    responses=responses(
        {200: ("Aggregated history", HistoryAggregate)},
        (400, 401, 403, 404, 429),
        bad_request=(
            "Malformed parameter, an unknown interval, function or timezone, a function the "
            "datastream's type does not take, `from` after `to`, or too many buckets"
        ),
    ),
)
async def history_aggregate(
    ctx: OrgContext,
    deviceId: Int32Query,
    from_: Annotated[int, Query(alias="from", ge=INT64_MIN, le=INT64_MAX), PlainInteger],
    to: Int64Query,
    interval: Annotated[str, Query(max_length=16, json_schema_extra={"enum": list(Interval)})],
    fn: Annotated[str, Query(max_length=16, json_schema_extra={"enum": list(FUNCTIONS)})],
    dataStreamId: Annotated[int | None, Query(ge=INT32_MIN, le=INT32_MAX), PlainInteger] = None,
    pin: Annotated[
        str | None, Query(max_length=16, description="Alternative to dataStreamId")
    ] = None,
    tz: Annotated[
        str | None, Query(max_length=64, description="IANA timezone; the device's by default")
    ] = None,
) -> Response:
    found = await history_aggregates.aggregate(
        ctx, deviceId, dataStreamId, pin, from_, to, interval, fn, tz
    )
    return json_response(found)
