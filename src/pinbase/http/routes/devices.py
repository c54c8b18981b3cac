"""Devices over the Platform API (Blynk's "Devices" group) and the device status extension.

The use cases are `pinbase.app.devices`; here requests are parsed and answers shaped. The
permissions: pages, search, the full device and `online` need a view permission (with only
OWN_DEVICES_VIEW, the caller's own devices); create ORG_DEVICES_CREATE, rename
ORG_DEVICES_EDIT, delete and clear ORG_DEVICES_DELETE, a new token PROVISION_DEVICES.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from pinbase.app import devices
from pinbase.app.devices import MAX_QUERY
from pinbase.app.paging import Page
from pinbase.domain.clock import now_ms
from pinbase.http.deps import Int32Query, OrgContext, PageQuery, SizeQuery, decode
from pinbase.http.openapi import json_body, responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import (
    DeviceBody,
    DeviceCreate,
    DevicePage,
    DeviceRename,
    DeviceStatusBody,
    DeviceToken,
    FullDeviceBody,
    OnlineBody,
    Reprovision,
)

router = APIRouter(prefix="/api", tags=["Devices"])

SortBy = Literal[
    "Device Id",
    "Name",
    "Owner Id",
    "Device Owner",
    "Last Reported At",
    "Activated At",
    "Template Name",
    "Template Id",
    "Organization Id",
    "Status",
]
"""`app.devices.SORT_FIELDS`, as the document lists them."""


@router.get(
    "/v1/organization/devices",
    summary="List devices",
    description=(
        "The devices the token may view, one page at a time, by id or sorted by `sortBy` as a "
        "search sorts (a pinbase extension). Each carries `online` (pinbase extension)."
    ),
    responses=responses({200: ("One page of devices", DevicePage)}, (400, 401, 403, 429, 503)),
)
async def list_devices(
    ctx: OrgContext,
    page: PageQuery = 0,
    size: SizeQuery = 50,
    sortBy: Annotated[SortBy | None, Query()] = None,
    sortOrder: Annotated[Literal["ASC", "DESC"], Query()] = "ASC",
) -> Response:
    found = await devices.devices_page(ctx, Page(page, size), sortBy, sortOrder == "DESC")
    return json_response(found)


@router.get(
    "/v1/organization/search/devices",
    summary="Search devices",
    description=(
        "Devices whose name, product (template) name or owner's e-mail contains `query` "
        "(case-insensitive), or whose id it is; sorted by `sortBy` (by id when left out), "
        "devices without a value of that field last in either order."
    ),
    responses=responses(
        {200: ("One page of matching devices", DevicePage)}, (400, 401, 403, 429, 503)
    ),
)
async def search_devices(
    ctx: OrgContext,
    query: Annotated[str, Query(min_length=1, max_length=MAX_QUERY)],
    sortBy: Annotated[SortBy | None, Query()] = None,
    sortOrder: Annotated[Literal["ASC", "DESC"], Query()] = "ASC",
    page: PageQuery = 0,
    size: SizeQuery = 50,
) -> Response:
    return json_response(
        await devices.search_page(ctx, query, sortBy, sortOrder == "DESC", Page(page, size))
    )


@router.get(
    "/v1/organization/device",
    summary="Get a device",
    description="The device with its current values and metadata.",
    responses=responses({200: ("The device", FullDeviceBody)}, (400, 401, 403, 404, 429, 503)),
)
async def get_device(ctx: OrgContext, deviceId: Int32Query) -> Response:
    return json_response(await devices.device_details(ctx, deviceId))


@router.post(
    "/v1/organization/device/create",
    summary="Create a device",
    description=(
        "A new device of the product `templateId`, owned by `ownerId` (a user-scoped token: "
        "by its user when left out). The answer holds its auth token, shown only here."
    ),
    status_code=201,
    openapi_extra=json_body(DeviceCreate),
    responses=responses(
        {201: ("The new device, with its token", FullDeviceBody)},
        (400, 401, 403, 404, 413, 429, 503),
        bad_request="Malformed body, or a name with characters a device name may not have",
    ),
)
async def create_device(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, DeviceCreate)
    created = await devices.create(ctx, body.templateId, body.name, body.ownerId, now_ms())
    return json_response(created, 201)


@router.put(
    "/v1/organization/device",
    summary="Rename a device",
    openapi_extra=json_body(DeviceRename),
    responses=responses(
        {200: ("The renamed device", DeviceBody)},
        (400, 401, 403, 404, 413, 429, 503),
        bad_request="Malformed body, or a name with characters a device name may not have",
    ),
)
async def rename_device(ctx: OrgContext, deviceId: Int32Query, request: Request) -> Response:
    body = await decode(request, DeviceRename)
    return json_response(await devices.rename(ctx, deviceId, body.name))


@router.delete(
    "/v1/organization/device",
    summary="Delete a device",
    description=(
        "The device and everything stored of it; its token stops working and its "
        "connections are closed."
    ),
    status_code=204,
    responses=responses({204: ("Deleted", None)}, (400, 401, 403, 404, 429, 503)),
)
async def delete_device(ctx: OrgContext, deviceId: Int32Query) -> Response:
    await devices.delete(ctx, deviceId, now_ms())
    return Response(status_code=204)


@router.delete(
    "/v1/organization/device/clear",
    summary="Erase a device's data",
    description=(
        "Its history, current values and widget properties; the device, its metadata and "
        "its timeline stay, and a connected device stays connected."
    ),
    status_code=204,
    responses=responses({204: ("Erased", None)}, (400, 401, 403, 404, 429, 503)),
)
async def clear_device(ctx: OrgContext, deviceId: Int32Query) -> Response:
    await devices.clear(ctx, deviceId)
    return Response(status_code=204)


@router.get(
    "/v1/organization/device/online",
    summary="Whether a device is connected",
    responses=responses({200: ("Connected or not", OnlineBody)}, (400, 401, 403, 404, 429)),
)
async def device_online(ctx: OrgContext, deviceId: Int32Query) -> Response:
    return json_response(devices.online(ctx, deviceId))


@router.post(
    "/v1/organization/device/provision/reprovision/token",
    summary="Give a device a new auth token",
    description=(
        "Same device, same data; the old token stops working and connections made with it "
        "are closed."
    ),
    openapi_extra=json_body(Reprovision),
    responses=responses(
        {200: ("The new token, shown only here", DeviceToken)},
        (400, 401, 403, 404, 413, 429, 503),
    ),
)
async def reprovision_token(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, Reprovision)
    return json_response(await devices.reprovision(ctx, body.deviceId))


@router.get(
    "/v1/organization/device/status",
    summary="Connection status of a device (pinbase extension)",
    responses=responses(
        {
            200: (
                "Whether the device is connected, how, and when it was last seen",
                DeviceStatusBody,
            )
        },
        (400, 401, 403, 404, 429),
    ),
)
async def device_status(ctx: OrgContext, deviceId: Int32Query) -> Response:
    return json_response(devices.status(ctx, deviceId))
