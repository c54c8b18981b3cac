"""Blynk's device HTTPS API (docs/devices.md): the device's auth token in the query string.

Every answer that is not a success is `400` with Blynk's `{"error": {"message": ...}}` and
Blynk's messages (`Invalid token.`, `Wrong pin format.`, ...), except a flood of writes from one
device (`429` with `Retry-After`), a body over the limit (`413`) and a failing store (`503`, or
`507` for a full disk; `pinbase.http.errors`). The query string is read
here rather than declared, because its keys are pins (`v1=100`) and may carry no value (`&v1`).
Pins are case-insensitive; nothing is written when any part of a request is bad.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.events import NO_CODE, UNKNOWN_CODE
from pinbase.domain.batch import MAX_ROWS
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.events import MAX_CODE, MAX_DESCRIPTION
from pinbase.domain.model import INT64_MAX, INT64_MIN, Datastream
from pinbase.domain.properties import MAX_PROPERTY_LENGTH, NO_NUL_PATTERN, PROPERTY_NAMES
from pinbase.domain.ratelimit import retry_after
from pinbase.domain.values import Value, parse_json_value, parse_text_value, to_text
from pinbase.http.access import ORG_KEY
from pinbase.http.deps import AppServices, decode_json
from pinbase.http.errors import ApiError
from pinbase.http.openapi import responses, schema_of
from pinbase.http.responses import json_response
from pinbase.http.schemas import Int64, RawValue

router = APIRouter(prefix="/external/api", tags=["Device HTTPS API"])

INVALID_TOKEN = "Invalid token."
WRONG_PIN = "Wrong pin format."
NO_DATASTREAM = "No datastream setup for that pin."
WRONG_DATASTREAM_ID = "Wrong dataStreamId format."
NO_DATASTREAM_ID = "No datastream setup for that dataStreamId."
NO_VALUE = "No value stored for that pin."

MAX_TOKEN_LENGTH = 128
_PIN = re.compile(r"([vVdDaA]?)([0-9]{1,3})")
_PIN_SCHEMA = {"type": "string", "pattern": "^[vVdDaA]?[0-9]{1,3}$"}
_DATASTREAM_ID = re.compile(r"[0-9]{1,9}")
_JSON_TYPES = ("application/json",)

Points = list[tuple[Int64, Any]]

# --- OpenAPI ----------------------------------------------------------------------------------

_TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "description": "The device's auth token",
    "schema": {
        "type": "string",
        "maxLength": MAX_TOKEN_LENGTH,
        "example": "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga",
    },
}


def _pins_parameter(
    description: str,
    example: dict[str, str],
    names: dict[str, Any] = _PIN_SCHEMA,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Query keys that are themselves data: pins (`v1=100`) or property names."""
    return {
        "name": "pins",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": description,
        "schema": {
            "type": "object",
            "propertyNames": names,
            "additionalProperties": values or {"type": "string"},
        },
        "example": example,
    }


def _parameter(
    name: str, description: str, required: bool = False, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _documented(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": [_TOKEN, *parameters]}


_REFUSED = (
    "Unknown token, a malformed parameter, a pin the device's product lacks, or a value that "
    "does not fit the datastream (Blynk's messages, always 400)"
)


def _answers(
    description: str, content: dict[str, Any] | None = None, errors: tuple[int, ...] = (400, 429)
) -> dict[int | str, dict[str, Any]]:
    documented = responses({200: (description, None)}, errors, bad_request=_REFUSED)
    if content is not None:
        documented[200]["content"] = content
    return documented


_TEXT = {"text/plain": {"schema": {"type": "string"}}}

# --- request parts ----------------------------------------------------------------------------


def _pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def _session(
    svc: AppServices, request: Request, pairs: list[tuple[str, str]]
) -> DeviceSession:
    tokens = {value for key, value in pairs if key == "token"}
    if len(tokens) != 1:
        raise Invalid(INVALID_TOKEN)
    token = tokens.pop().strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Invalid(INVALID_TOKEN)
    session = await DeviceSession.login(svc, token)
    if session is None:
        raise Invalid(INVALID_TOKEN)
    setattr(request.state, ORG_KEY, session.device.org_id)
    return session


def datastream_by_pin(session: DeviceSession, pin: str, missing: str = NO_DATASTREAM) -> Datastream:
    """A pin as Blynk's HTTP APIs name it: `v1`, `V1` or `1`; digital and analog pins (`D3`,
    `A0`) are well formed but have no datastream (Invalid(`missing`))."""
    match = _PIN.fullmatch(pin)
    if match is None:
        raise Invalid(WRONG_PIN)
    ds = None
    if match.group(1) in ("", "v", "V"):
        ds = session.by_pin(str(int(match.group(2))))
    if ds is None:
        raise Invalid(missing)
    return ds


def _by_id(session: DeviceSession, text: str) -> Datastream:
    if not _DATASTREAM_ID.fullmatch(text):
        raise Invalid(WRONG_DATASTREAM_ID)
    ds = session.by_id(int(text))
    if ds is None:
        raise Invalid(NO_DATASTREAM_ID)
    return ds


def _one(pairs: list[tuple[str, str]], name: str) -> str | None:
    values = {value for key, value in pairs if key == name}
    if len(values) > 1:
        raise Invalid(f"Parameter '{name}' is given more than once.")
    return values.pop() if values else None


def _rate_limited(exc: RateLimited) -> ApiError:
    return ApiError(429, str(exc), {"Retry-After": retry_after(exc.wait)})


def _written_values(
    session: DeviceSession, pairs: list[tuple[str, str]]
) -> list[tuple[Datastream, Value]]:
    """`pin=value` pairs (a pin given twice collects both parts: a location's lon and lat),
    plus `dataStreamId=..&value=..` or `pin=..&value=..` (`value` twice for a location)."""
    grouped: dict[int, tuple[Datastream, list[str]]] = {}

    def add(ds: Datastream, parts: list[str]) -> None:
        grouped.setdefault(ds.id, (ds, []))[1].extend(parts)

    named = [v for k, v in pairs if k == "value"]
    ds_id = _one(pairs, "dataStreamId")
    pin = _one(pairs, "pin")
    if ds_id is not None and pin is not None:
        raise Invalid("Give either 'dataStreamId' or 'pin', not both.")
    if ds_id is not None:
        add(_by_id(session, ds_id), named)
    elif pin is not None:
        add(datastream_by_pin(session, pin), named)
    elif named:
        raise Invalid("Parameter 'value' needs 'dataStreamId' or 'pin'.")
    for key, value in pairs:
        if key in ("token", "dataStreamId", "pin", "value"):
            continue
        add(datastream_by_pin(session, key), [value])
    if not grouped:
        raise Invalid("No value given: send pin=value pairs, e.g. v1=100.")
    return [(ds, parse_text_value(ds, parts)) for ds, parts in grouped.values()]


def _empty() -> Response:
    return Response(status_code=200)


# --- routes -----------------------------------------------------------------------------------


async def _update(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    values = _written_values(session, pairs)
    try:
        await session.write_charged(values)
    except RateLimited as exc:
        raise _rate_limited(exc) from None
    session.seen()
    return _empty()


_UPDATE_PARAMETERS = _documented(
    _pins_parameter("Pin → value pairs, e.g. `v1=100&v2=50`", {"v1": "100"}),
    _parameter(
        "dataStreamId",
        "Alternative to pin keys: the datastream's id, with `value`",
        schema={"type": "string", "pattern": "^[0-9]{1,9}$"},
    ),
    _parameter("pin", "Alternative to pin keys: the pin (`v1`), with `value`", schema=_PIN_SCHEMA),
    {
        **_parameter(
            "value",
            "The value; given twice for a location: `value=lon&value=lat`",
            schema={"type": "array", "items": {"type": "string"}, "maxItems": 2},
        ),
        "style": "form",
        "explode": True,
    },
)


@router.get(
    "/update",
    summary="Update datastream values",
    description=(
        "`v1=100`: the value of pin v1 (pins are case-insensitive; several pairs are written "
        "together, or none when any is bad). Alternatively `dataStreamId=1&value=100` or "
        "`pin=v1&value=100`; a location takes `value=lon&value=lat` (or `v4=lon,lat`)."
    ),
    response_class=Response,
    openapi_extra=_UPDATE_PARAMETERS,
    responses=_answers("Stored (empty body)"),
)
async def update(svc: AppServices, request: Request) -> Response:
    return await _update(svc, request)


@router.get(
    "/batch/update",
    summary="Update several datastreams at one timestamp",
    description="`v1=1&v2=2`: every value is stored at the same timestamp, in one write.",
    response_class=Response,
    openapi_extra=_UPDATE_PARAMETERS,
    responses=_answers("Stored (empty body)"),
)
async def batch_update(svc: AppServices, request: Request) -> Response:
    return await _update(svc, request)


def _points(ds: Datastream, body: bytes) -> list[tuple[int, Value]]:
    if not body:
        raise Invalid("Request body is empty; [[timestamp, value], ...] is expected.")
    try:
        decoded = decode_json(body, Points)
    except msgspec.ValidationError as exc:
        raise Invalid(
            f"Invalid request body: {exc}; [[timestamp, value], ...] is expected."
        ) from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"Request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise Invalid("Request body is nested too deeply.") from None
    if not decoded:
        raise Invalid("Request body holds no points.")
    if len(decoded) > MAX_ROWS:
        raise Invalid(f"At most {MAX_ROWS} points can be sent at once.")
    # Mismatch: the whole request is refused
    return [(ts, parse_json_value(ds, raw)) for ts, raw in decoded]


@router.post(
    "/batch/update",
    summary="Upload timestamped data of one datastream",
    description=(
        f"Body `[[timestamp_ms, value], ...]`, at most {MAX_ROWS} points, with "
        "`Content-Type: application/json`. Values follow the datastream's type (a location is "
        "`[lon, lat]`); one bad point refuses the whole request. Points more than a month in "
        "the future are skipped."
    ),
    response_class=Response,
    openapi_extra={
        **_documented(_parameter("pin", "The datastream's pin, e.g. `v1`", True, _PIN_SCHEMA)),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_ROWS,
                        "items": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 2,
                            "prefixItems": [
                                {
                                    "type": "integer",
                                    "minimum": INT64_MIN,
                                    "maximum": INT64_MAX,
                                    "description": "Epoch milliseconds",
                                },
                                schema_of(RawValue),
                            ],
                        },
                        "example": [[1648054765458, 1.0], [1648054825459, 2.0]],
                    }
                }
            },
        },
    },
    responses=_answers("Every point stored (empty body)", errors=(400, 413, 429)),
)
async def upload_points(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    pin = _one(pairs, "pin")
    if pin is None:
        raise Invalid(WRONG_PIN)
    ds = datastream_by_pin(session, pin)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise Invalid("Content-Type must be application/json.")
    points = _points(ds, await request.body())
    try:
        await session.import_points(ds, points)
    except RateLimited as exc:
        raise _rate_limited(exc) from None
    session.seen()
    return _empty()


def _requested(session: DeviceSession, pairs: list[tuple[str, str]]) -> list[Datastream]:
    """Pin keys (`&v1&v2`), `dataStreamId=1` and `pin=v1`, in the order given."""
    wanted: dict[int, Datastream] = {}
    for key, value in pairs:
        if key == "token":
            continue
        if key == "dataStreamId":
            ds = _by_id(session, value)
        elif key == "pin":
            ds = datastream_by_pin(session, value)
        else:
            ds = datastream_by_pin(session, key)
        wanted.setdefault(ds.id, ds)
    if not wanted:
        raise Invalid("No pin given: ask for one or more pins, e.g. &v1&v2.")
    return list(wanted.values())


@router.get(
    "/get",
    summary="Get datastream values",
    description=(
        "`&v1` (or `dataStreamId=1`, or `pin=v1`): the value of one datastream as plain text (a "
        'location as `lon,lat`). `&v1&v2`: a JSON object such as `{"v1": 1.0, "v2": "text"}` '
        "(`null` for a pin without a value)."
    ),
    response_class=Response,
    openapi_extra=_documented(
        _pins_parameter("The pins to read, e.g. `&v1&v2` (values are ignored)", {"v1": ""}),
        _parameter(
            "dataStreamId",
            "A datastream to read by its id",
            schema={"type": "string", "pattern": "^[0-9]{1,9}$"},
        ),
        _parameter("pin", "A datastream to read by its pin, e.g. `v1`", schema=_PIN_SCHEMA),
    ),
    responses=_answers(
        "The value (one pin) or the values by pin (several)",
        {
            **_TEXT,
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": {
                        "anyOf": [schema_of(RawValue), {"type": "null"}],
                        "description": "The pin's value; null when it has none",
                    },
                }
            },
        },
    ),
)
async def get_values(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    wanted = _requested(session, pairs)
    found = {ds.id: value for ds, value in await session.read(wanted)}
    if len(wanted) == 1:
        if wanted[0].id not in found:
            raise Invalid(NO_VALUE)
        return Response(to_text(found[wanted[0].id]), media_type="text/plain")
    return json_response({ds.pin: found.get(ds.id) for ds in wanted})


@router.get(
    "/getAll",
    summary="Get all datastream values",
    description="Every datastream of the device that has a value, keyed by pin.",
    response_class=Response,
    openapi_extra=_documented(),
    responses=_answers(
        "Values by pin",
        {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": schema_of(RawValue)},
                "example": {"v1": 22.5, "v3": "ok", "v4": [24.1, 56.9]},
            }
        },
    ),
)
async def get_all(svc: AppServices, request: Request) -> Response:
    session = await _session(svc, request, _pairs(request))
    return json_response({ds.pin: value for ds, value in await session.read()})


@router.get(
    "/isHardwareConnected",
    summary="Is the device connected",
    description="`true` while the device holds a hardware (TCP) or MQTT session, else `false`.",
    response_class=Response,
    openapi_extra=_documented(),
    responses=_answers("`true` or `false`", {"application/json": {"schema": {"type": "boolean"}}}),
)
async def is_hardware_connected(svc: AppServices, request: Request) -> Response:
    session = await _session(svc, request, _pairs(request))
    return json_response(svc.presence.is_connected(session.device_id))


@router.get(
    "/update/property",
    summary="Update widget properties",
    description=(
        "`pin=v1&color=%23FF0000`: one or more `property=value` pairs for the datastream of a "
        "pin; every one is checked before any is stored."
    ),
    response_class=Response,
    openapi_extra=_documented(
        _parameter("pin", "The datastream's pin, e.g. `v1`", True, _PIN_SCHEMA),
        {
            **_pins_parameter(
                "Property → value pairs, e.g. `color=%23FF0000&label=Hot`",
                {"color": "#FF0000"},
                {"type": "string", "enum": list(PROPERTY_NAMES)},
                {"type": "string", "maxLength": MAX_PROPERTY_LENGTH, "pattern": NO_NUL_PATTERN},
            ),
            "name": "properties",
        },
    ),
    responses=_answers("Stored (empty body)"),
)
async def update_property(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    pin = _one(pairs, "pin")
    if pin is None:
        raise Invalid(WRONG_PIN)
    ds = datastream_by_pin(session, pin)
    properties: dict[str, str] = {}
    for key, value in pairs:
        if key in ("token", "pin"):
            continue
        if key in properties:
            raise Invalid(f"Property '{key}' is given more than once.")
        properties[key] = value
    if not properties:
        raise Invalid("No property given, e.g. color=%23FF0000.")
    try:
        await session.set_properties(ds, list(properties.items()))
    except RateLimited as exc:
        raise _rate_limited(exc) from None
    session.seen()
    return _empty()


# --- events -----------------------------------------------------------------------------------


@router.get(
    "/logEvent",
    summary="Log an event",
    description=(
        "`code=high_temp&description=...`: log an event of the device's product (an empty or "
        "missing description takes the event's own). At most 100 events per device and UTC "
        "day, one per second per code (else 429), descriptions up to 300 characters."
    ),
    response_class=Response,
    openapi_extra=_documented(
        _parameter(
            "code",
            "The event's code",
            True,
            {"type": "string", "minLength": 1, "maxLength": MAX_CODE},
        ),
        _parameter(
            "description",
            "What happened",
            False,
            {"type": "string", "maxLength": MAX_DESCRIPTION, "pattern": NO_NUL_PATTERN},
        ),
    ),
    responses=_answers("Logged (empty body)"),
)
async def log_event(svc: AppServices, request: Request) -> Response:
    pairs = _pairs(request)
    session = await _session(svc, request, pairs)
    code = _one(pairs, "code")
    if not code:
        raise Invalid(NO_CODE)
    try:
        await session.log_event(code, _one(pairs, "description"))
    except NotFound:
        raise Invalid(UNKNOWN_CODE) from None
    session.seen()
    return _empty()
