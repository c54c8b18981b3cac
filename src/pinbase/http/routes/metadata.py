"""Metadata: the Platform API's metafield routes and the device HTTPS API's `device/meta`.

Platform API: reading needs a view permission on the device, writing `ORG_DEVICES_CONTROL`
(a template's metafields are in `templates.py`); another organization's device or product is
404 like a missing one. Device API: Blynk's messages, always 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from msgspec import Meta, Struct
from starlette.responses import Response

from pinbase.app import metadata
from pinbase.app.device_session import RateLimited
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.metadata import MAX_TEXT, Metafield, json_value, number_text
from pinbase.domain.model import Permission
from pinbase.domain.permissions import covered_device
from pinbase.http.deps import AppServices, Int32Query, OrgContext, decode
from pinbase.http.openapi import json_body, responses
from pinbase.http.responses import json_response
from pinbase.http.routes.device_api import (
    _answers,
    _documented,
    _one,
    _pairs,
    _parameter,
    _rate_limited,
    _session,
)
from pinbase.http.schemas import Int32

router = APIRouter(tags=["Metadata"])

WRONG_FORMAT = "Wrong metaField format."
ONE_FIELD = "Give either 'metaFieldId' or 'metaFieldName', not both."
NO_FIELD = "MetaField doesn't exist."
WRONG_VALUE = "Wrong value"


class MetafieldUpdate(Struct, forbid_unknown_fields=True):
    deviceId: Int32
    metaFieldId: Int32
    newValue: Annotated[str, Meta(max_length=4 * MAX_TEXT)] | int | float


# --- Platform API -----------------------------------------------------------------------------


@router.get(
    "/api/v1/organization/device/metafield",
    summary="Get device metadata",
    responses=responses({200: ("Metafields with the device's values", None)}),
)
async def device_metadata(ctx: OrgContext, deviceId: Int32Query) -> Response:
    ctx.principal.require_view()
    device = covered_device(ctx.catalog, ctx.principal, deviceId)
    fields = metadata.metafields_of(ctx.catalog, device)
    answer = []
    for meta, value in await metadata.read(ctx.services.store, fields, device.id):
        item: dict[str, Any] = {"id": meta.id, "name": meta.name}
        if value is not None:
            item["value"] = json_value(meta, value)
        answer.append(item)
    return json_response(answer)


@router.post(
    "/api/v1/organization/device/metafield",
    summary="Update device metadata",
    status_code=204,
    openapi_extra=json_body(MetafieldUpdate),
    responses=responses(
        {204: ("Value stored", None)},
        bad_request="Malformed body, or a value the metafield does not take",
    ),
)
async def update_metadata(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, MetafieldUpdate)
    ctx.principal.require(Permission.ORG_DEVICES_CONTROL)
    ctx.principal.require_view()
    device = covered_device(ctx.catalog, ctx.principal, body.deviceId)
    fields = metadata.metafields_of(ctx.catalog, device)
    meta = metadata.find(fields, field_id=body.metaFieldId)
    raw = body.newValue
    text = raw if isinstance(raw, str) else number_text(float(raw))
    try:
        await metadata.write(ctx.services.store, ctx.services.bus, device, meta, text)
    except Invalid as exc:
        raise Invalid(f"{metadata.INVALID_VALUE} {exc}") from None
    return Response(status_code=204)


# --- device HTTPS API -------------------------------------------------------------------------

_FIELD_PARAMETERS = (
    _parameter(
        "metaFieldId", "The metafield's id", schema={"type": "string", "pattern": "^[0-9]{1,9}$"}
    ),
    _parameter("metaFieldName", "Or the metafield's exact name", schema={"type": "string"}),
)


def _metafield(fields: Any, pairs: list[tuple[str, str]]) -> Metafield:
    field_id, name = _one(pairs, "metaFieldId"), _one(pairs, "metaFieldName")
    try:
        if field_id is not None and name is None:
            if not field_id.isascii() or not field_id.isdigit() or len(field_id) > 9:
                raise Invalid(WRONG_FORMAT)
            return metadata.find(fields, field_id=int(field_id))
        if name is not None and field_id is None:
            return metadata.find(fields, name=name)
    except NotFound:
        raise Invalid(NO_FIELD) from None
    raise Invalid(ONE_FIELD)


@router.get(
    "/external/api/device/meta",
    summary="Get a metadata value",
    description="The device's value of one metafield, as text (empty when it has none).",
    response_class=Response,
    openapi_extra=_documented(*_FIELD_PARAMETERS),
    responses=_answers("The value", {"text/plain": {"schema": {"type": "string"}}}),
)
async def get_meta(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    meta = _metafield(metadata.metafields_of(session.catalog, session.device), pairs)
    ((_, value),) = await session.read_meta([meta])
    return Response(value or "", media_type="text/plain")


@router.get(
    "/external/api/device/meta/update",
    summary="Update a metadata value",
    response_class=Response,
    openapi_extra=_documented(
        *_FIELD_PARAMETERS, _parameter("value", "The new value", True, {"type": "string"})
    ),
    responses=_answers("Stored (empty body)"),
)
async def update_meta(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    meta = _metafield(metadata.metafields_of(session.catalog, session.device), pairs)
    value = _one(pairs, "value")
    if value is None:
        raise Invalid(WRONG_VALUE)
    try:
        await session.write_meta(meta, value)
    except RateLimited as exc:
        raise _rate_limited(exc) from None
    except Invalid as exc:
        raise Invalid(f"{WRONG_VALUE}: {exc}") from None
    session.seen()
    return Response(status_code=200)
