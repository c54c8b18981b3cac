"""Typed dependencies: what a route declares it needs, resolved once per request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator
from starlette.requests import ClientDisconnect

from pinbase.app.auth.bearer import Unauthorized, authenticate
from pinbase.app.services import Services
from pinbase.domain.errors import Invalid
from pinbase.domain.model import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    Catalog,
)
from pinbase.domain.permissions import Principal
from pinbase.domain.ratelimit import retry_after
from pinbase.http.errors import ApiError

T = TypeVar("T")
_INTEGER = re.compile(r"-?[0-9]{1,20}")


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


AppServices = Annotated[Services, Depends(services)]

_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class Context:
    """The caller of an Organization API request and the catalog it is judged against."""

    principal: Principal
    catalog: Catalog
    services: Services


class OrganizationBearer(HTTPBearer):
    """Bearer authentication of the Organization API, resolved in one dependency.

    It is documented as HTTP bearer security in OpenAPI, and yields the request's `Context`:
    the token's principal, the catalog, and the organization's rate limit taken.
    """

    async def __call__(self, request: Request) -> Context:  # type: ignore[override]
        svc: Services = request.app.state.services
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            credentials = ""
        try:
            principal, catalog = await authenticate(svc, credentials)
        except Unauthorized as exc:
            raise ApiError(401, str(exc), _CHALLENGE) from None
        wait = await svc.org_limits.take(principal.org_id)
        if wait:
            raise ApiError(
                429,
                "Rate limit exceeded for this organization; retry later.",
                {"Retry-After": retry_after(wait)},
            )
        return Context(principal, catalog, svc)


OrgContext = Annotated[
    Context,
    Depends(OrganizationBearer(description="OAuth2 access token from /oauth2/token")),
]


async def decode(request: Request, kind: type[T]) -> T:
    """Parse the JSON body strictly into `kind`; any problem is a 400 naming it."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ApiError(400, "The client went away before sending the whole body.") from None
    if not body:
        raise Invalid("Request body is empty; a JSON object is expected.")
    try:
        return msgspec.json.decode(body, type=kind)
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


StrictInt = Annotated[int, BeforeValidator(_plain_integer)]
Int32Query = Annotated[StrictInt, Query(ge=INT32_MIN, le=INT32_MAX)]
Int64Query = Annotated[StrictInt, Query(ge=INT64_MIN, le=INT64_MAX)]


IdsQuery = Annotated[
    list[str] | None,
    Query(description="Integer ids: repeated keys or one comma-separated value"),
]


def int_list(name: str, raw: list[str] | None, low: int, high: int) -> list[int]:
    """An array query parameter given as repeated keys and/or comma-separated values."""
    result: list[int] = []
    for chunk in raw or ():
        for part in chunk.split(","):
            text = part.strip()
            if not text:
                continue
            if not _INTEGER.fullmatch(text):
                raise Invalid(f"Query parameter '{name}' must hold integers, got '{text[:40]}'.")
            number = int(text)
            if not low <= number <= high:
                raise Invalid(f"Query parameter '{name}' value {number} is out of range.")
            result.append(number)
    return result


def unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))
