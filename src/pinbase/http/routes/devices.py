"""Device status for the Organization side (a pinbase extension)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from pinbase.domain.permissions import covered_device
from pinbase.http.deps import Int32Query, OrgContext
from pinbase.http.openapi import responses
from pinbase.http.schemas import DeviceStatusBody

router = APIRouter(prefix="/api", tags=["Organization devices"])


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
    ctx.principal.require_view()
    device = covered_device(ctx.catalog, ctx.principal, deviceId)
    status = ctx.services.presence.status(device.id)
    body = {
        "deviceId": device.id,
        "connected": status.connected,
        "protocol": status.protocol,
        "connectedSince": status.connected_since,
        "lastSeen": status.last_seen,
    }
    return Response(orjson.dumps(body), media_type="application/json")
