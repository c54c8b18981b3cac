"""Typed dependencies: what a route declares it needs, resolved once per request."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect as mi
from fastapi import Depends, Query, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlowPassword, OAuthFlows
from fastapi.security import OAuth2
from pydantic import BeforeValidator
from starlette.requests import ClientDisconnect

from pinbase.app.auth.bearer import Unauthorized
from pinbase.app.auth.sessions import csrf_matches
from pinbase.app.caller import Caller, OrgRateLimited, admit
from pinbase.app.paging import MAX_SIZE
from pinbase.app.services import Services
from pinbase.domain.errors import Invalid
from pinbase.domain.model import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN
from pinbase.domain.ratelimit import retry_after
from pinbase.http.access import ORG_KEY
from pinbase.http.errors import ApiError

T = TypeVar("T")
_INTEGER = re.compile(r"-?[0-9]{1,20}")


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


AppServices = Annotated[Services, Depends(services)]

_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

TOKEN_URL = "/oauth2/token"
SESSION_COOKIE = "pinbase_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_REFUSED = f"A write with the console's session needs its {CSRF_HEADER} header."


def credentials(request: Request) -> str:
    """The request's access token: the bearer token of its Authorization header or, without
    one, the console's session cookie. A write with the cookie must carry the session's CSRF
    token, which only the console's own pages can read (403 otherwise)."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        return token if scheme.lower() == "bearer" else ""
    session = request.cookies.get(SESSION_COOKIE, "")
    writes = request.method not in SAFE_METHODS
    if session and writes and not csrf_matches(session, request.headers.get(CSRF_HEADER, "")):
        raise ApiError(403, CSRF_REFUSED)
    return session


class OrganizationBearer(OAuth2):
    """Bearer authentication of the Organization API, resolved in one dependency.

    It is documented as OAuth2 security (client credentials and password flows at `TOKEN_URL`);
    the console's session cookie is honoured too (`credentials`). It yields the request's
    `Caller`: the token's principal, the catalog, and the organization's rate limit taken.
    """

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        try:
            return await admitted(request, credentials(request))
        except Unauthorized as exc:
            raise ApiError(401, str(exc), _CHALLENGE) from None


async def admitted(request: Request, token: str) -> Caller:
    """The caller of `token` (`admit`), its organization noted for the access log; 429 when the
    organization is over its rate. `Unauthorized` passes through."""
    svc: Services = request.app.state.services
    try:
        caller = await admit(svc, token)
    except OrgRateLimited as exc:
        setattr(request.state, ORG_KEY, exc.org_id)
        raise ApiError(429, str(exc), {"Retry-After": retry_after(exc.wait)}) from None
    setattr(request.state, ORG_KEY, caller.principal.org_id)
    return caller


OrgContext = Annotated[
    Caller,
    Depends(
        OrganizationBearer(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(tokenUrl=TOKEN_URL),
                password=OAuthFlowPassword(tokenUrl=TOKEN_URL),
            ),
            description=(
                f"An access token from {TOKEN_URL}, sent as `Authorization: Bearer <token>`."
            ),
        )
    ),
]


_EXACT_FLOAT = 2**53
"""Beyond this a float no longer spells one integer, so `1e300` is not read as an integer."""


def _whole_floats(node: Any, info: mi.Type) -> Any:
    """`node` with every whole float where `info` expects an integer made an int (in place)."""
    if isinstance(info, mi.Metadata):
        return _whole_floats(node, info.type)
    if isinstance(info, mi.IntType):
        if isinstance(node, float) and node.is_integer() and abs(node) <= _EXACT_FLOAT:
            return int(node)
        return node
    if isinstance(info, mi.UnionType):  # `int | None`: the int's rule
        for member in info.types:
            node = _whole_floats(node, member)
        return node
    if isinstance(info, mi.StructType) and isinstance(node, dict):
        for field in info.fields:
            if field.encode_name in node:
                node[field.encode_name] = _whole_floats(node[field.encode_name], field.type)
    elif isinstance(info, mi.ListType) and isinstance(node, list):
        for index, item in enumerate(node):
            node[index] = _whole_floats(item, info.item_type)
    elif isinstance(info, mi.TupleType) and isinstance(node, list):
        for index, (item, item_type) in enumerate(zip(node, info.item_types, strict=False)):
            node[index] = _whole_floats(item, item_type)
    return node


def decode_json(body: bytes, kind: type[T]) -> T:
    """Decode `body` strictly into `kind`, raising msgspec's errors.

    An integer is a JSON Schema (2020-12) integer: a whole number, however it is written, so
    `110.0` and `1.1e2` are read as 110 where an integer is expected; a fraction, a string or a
    boolean never is. The typed decode is tried first; a body it refuses is decoded again as
    plain JSON, its whole floats at integer positions made ints, and converted strictly.
    """
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError:
        tree = msgspec.json.decode(body)
        return msgspec.convert(_whole_floats(tree, mi.type_info(kind)), type=kind)


async def decode(request: Request, kind: type[T]) -> T:
    """Parse the JSON body strictly into `kind`; any problem is a 400 naming it."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ApiError(400, "The client went away before sending the whole body.") from None
    if not body:
        raise Invalid("Request body is empty; a JSON object is expected.")
    try:
        return decode_json(body, kind)
    except msgspec.ValidationError as exc:
        raise Invalid(f"Invalid request body: {exc}.") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"Request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise Invalid("Request body is nested too deeply.") from None


def _plain_integer(value: object) -> object:
    """Query integers are plain decimal digits: no '+', '_', '.0' or exponent."""
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise ValueError("must be an integer")
    return value


PlainInteger = BeforeValidator(_plain_integer)
"""Goes after `Query(...)` in `Annotated`: before it, pydantic would document `ge`/`le` as
unknown keywords instead of `minimum`/`maximum`."""
StrictInt = Annotated[int, PlainInteger]
Int32Query = Annotated[int, Query(ge=INT32_MIN, le=INT32_MAX), PlainInteger]
Int64Query = Annotated[int, Query(ge=INT64_MIN, le=INT64_MAX), PlainInteger]
PageQuery = Annotated[int, Query(ge=0, le=INT32_MAX, description="0-based page"), PlainInteger]
SizeQuery = Annotated[int, Query(ge=1, le=MAX_SIZE, description="Items per page"), PlainInteger]


IdsQuery = Annotated[list[str] | None, Query(include_in_schema=False)]
"""An id list, read by `int_list` and documented by `openapi.id_list_parameter`."""


def int_list(name: str, raw: list[str] | None, low: int, high: int) -> list[int]:
    """An id list given as one comma-separated value and/or repeated keys.

    A wholly empty value is no ids (an empty list, comma-separated); an empty id within a
    value (`1,,2`, `1,`) is refused. Spaces around an id are ignored.
    """
    result: list[int] = []
    for chunk in raw or ():
        if not chunk:
            continue
        for part in chunk.split(","):
            text = part.strip()
            if not _INTEGER.fullmatch(text):
                raise Invalid(f"Query parameter '{name}' must hold integers, got '{text[:40]}'.")
            number = int(text)
            if not low <= number <= high:
                raise Invalid(f"Query parameter '{name}' value {number} is out of range.")
            result.append(number)
    return result


def unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))
