"""blynk-server's HTTP API (Blynk legacy): the device's token as the first path segment.

Scripts, Node-RED flows and Home Assistant integrations written for the self-hosted
blynk-server call `GET /{token}/update/{pin}?value=..`, `GET /{token}/get/{pin}`,
`PUT /{token}/update/{pin}` and `GET /{token}/isHardwareConnected`. They are served here over
the same device session as `/external/api` (`device_api.py`): the same cached token lookup,
rate limits, history, live events and type checks. What differs is blynk-server's wire form:

- A read answers a JSON array of strings (`["22.5"]`, a location `["24.1","56.9"]`), `[]` for a
  datastream without a value; a write answers 200 with an empty body.
- Every refusal is plain text, 400 with blynk-server's message (`Invalid token.`,
  `Wrong pin format.`, `Requested pin doesn't exist in the app.`, ...), except a flood of writes
  (429 with `Retry-After`), a body over the limit (413) and a failing store (503 or 507).
- Pins are blynk-server's `V1`/`v1` (the bare number `1` too, as elsewhere in pinbase). `D3` and
  `A0` are well formed but name no datastream: pinbase's datastreams are virtual pins.
- Services pinbase does not have (`notify`, `email`, `project`, `qr`, `rtc`, `data/{pin}`)
  answer 501 in plain text once the token is known.

The routes match only a token's shape (`TOKEN_SEGMENT`, 32 characters of `[A-Za-z0-9_-]`) as the
first segment, and come after every other route, so they never shadow `/api`, `/external`,
`/oauth2`, `/healthz`, `/openapi.json` or `/docs`, and an unknown path still answers the JSON
404. They are plain Starlette routes and stay out of `/openapi.json`, whose error bodies are
JSON (docs/devices.md documents them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import msgspec
import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.domain.errors import DomainError, Invalid
from pinbase.domain.properties import PROPERTY_NAMES
from pinbase.domain.ratelimit import retry_after
from pinbase.domain.values import Value, parse_text_value, to_text
from pinbase.http.access import ORG_KEY, TOKEN_SEGMENT
from pinbase.http.errors import ApiError, store_failure
from pinbase.http.responses import json_response
from pinbase.http.routes.device_api import (
    INVALID_TOKEN,
    NO_DATASTREAM,
    datastream_by_pin,
)
from pinbase.store.errors import StoreUnavailable

NO_PIN = "Requested pin doesn't exist in the app."
WRONG_REQUEST = "Wrong request format."
NO_VALUES = "No pin for update provided."
WRONG_BODY = 'The body must be a JSON array of values, e.g. ["40"].'
UNSUPPORTED = "Not supported by pinbase: {what}."

_PROPERTIES = frozenset(PROPERTY_NAMES)


class _Token(Convertor[str]):
    """A path segment shaped like a device token, and nothing else."""

    regex = TOKEN_SEGMENT

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("device_token", _Token())


# --- answers --------------------------------------------------------------------------------


def _text(message: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(message, status_code=status, headers=headers, media_type="text/plain")


def _parts(value: Value) -> list[str]:
    """A value as Blynk's list of strings: a location's two parts, anything else one."""
    return [str(part) for part in value] if isinstance(value, list) else [to_text(value)]


Handler = Callable[[Request, DeviceSession], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Log the device in by the token of the path, run `handler`, and answer every refusal in
    plain text."""

    async def endpoint(request: Request) -> Response:
        try:
            services: Services = request.app.state.services
            session = await DeviceSession.login(services, request.path_params["token"])
            if session is None:
                return _text(INVALID_TOKEN, 400)
            setattr(request.state, ORG_KEY, session.device.org_id)
            return await handler(request, session)
        except RateLimited as exc:
            return _text(str(exc), 429, {"Retry-After": retry_after(exc.wait)})
        except DomainError as exc:
            return _text(str(exc), 400)
        except ApiError as exc:
            return _text(exc.message, exc.status, exc.headers)
        except StoreUnavailable as exc:
            status, message, headers = store_failure(exc)
            return _text(message, status, headers)

    return endpoint


async def _write(session: DeviceSession, pin: str, parts: list[str]) -> Response:
    if not parts:
        raise Invalid(NO_VALUES)
    ds = datastream_by_pin(session, pin, NO_DATASTREAM)
    await session.write_charged([(ds, parse_text_value(ds, parts))])
    session.seen()
    return Response(status_code=200)


# --- routes ---------------------------------------------------------------------------------


async def _get(request: Request, session: DeviceSession) -> Response:
    ds = datastream_by_pin(session, request.path_params["pin"], NO_PIN)
    found = await session.read([ds])
    return json_response(_parts(found[0][1]) if found else [])


async def _update_by_query(request: Request, session: DeviceSession) -> Response:
    """`?value=..` (repeated for a location) writes; otherwise `?color=..`-style pairs set
    widget properties. Other parameters are ignored, as blynk-server did."""
    pairs = request.query_params.multi_items()
    values = [value for key, value in pairs if key == "value"]
    pin = request.path_params["pin"]
    if values:
        return await _write(session, pin, values)
    properties: dict[str, str] = {}
    for key, value in pairs:
        if key in _PROPERTIES:
            if key in properties:
                raise Invalid(f"Property '{key}' is given more than once.")
            properties[key] = value
    if not properties:
        raise Invalid(WRONG_REQUEST)
    ds = datastream_by_pin(session, pin, NO_DATASTREAM)
    await session.set_properties(ds, list(properties.items()))
    session.seen()
    return Response(status_code=200)


def _body_values(body: bytes) -> list[str]:
    """A JSON array of strings (numbers taken as their text, as blynk-server's parser did)."""
    try:
        decoded = msgspec.json.decode(body, type=list[str | int | float])
    except (msgspec.DecodeError, RecursionError):
        raise Invalid(WRONG_BODY) from None
    return [item if isinstance(item, str) else orjson.dumps(item).decode() for item in decoded]


async def _update_by_body(request: Request, session: DeviceSession) -> Response:
    return await _write(session, request.path_params["pin"], _body_values(await request.body()))


async def _is_hardware_connected(request: Request, session: DeviceSession) -> Response:
    return json_response(session.services.presence.is_connected(session.device_id))


async def _is_app_connected(request: Request, session: DeviceSession) -> Response:
    """pinbase has no Blynk app, so none is ever connected."""
    return json_response(False)


def _unsupported(what: str) -> Handler:
    async def handler(request: Request, session: DeviceSession) -> Response:
        return _text(UNSUPPORTED.format(what=what), 501)

    return handler


_T = "/{token:device_token}"

routes: list[BaseRoute] = [
    Route(_T + "/get/{pin}", _endpoint(_get), methods=["GET"]),
    Route(_T + "/update/{pin}", _endpoint(_update_by_query), methods=["GET"]),
    Route(_T + "/update/{pin}", _endpoint(_update_by_body), methods=["PUT"]),
    Route(_T + "/pin/{pin}", _endpoint(_update_by_body), methods=["PUT"]),
    Route(_T + "/isHardwareConnected", _endpoint(_is_hardware_connected), methods=["GET"]),
    Route(_T + "/isAppConnected", _endpoint(_is_app_connected), methods=["GET"]),
    Route(_T + "/notify", _endpoint(_unsupported("push notifications")), methods=["POST"]),
    Route(_T + "/email", _endpoint(_unsupported("email")), methods=["POST"]),
    Route(_T + "/project", _endpoint(_unsupported("projects")), methods=["GET"]),
    Route(_T + "/qr", _endpoint(_unsupported("project QR codes")), methods=["GET"]),
    Route(_T + "/rtc", _endpoint(_unsupported("the RTC widget")), methods=["GET"]),
    Route(_T + "/data/{pin}", _endpoint(_unsupported("history export")), methods=["GET"]),
]
"""blynk-server's device routes; the application adds them after every other route."""
