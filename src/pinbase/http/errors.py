"""Every non-2xx answer carries `{"error": {"message": ...}}`; this module makes them.

A failing store is answered by what the client can do about it: 503 with `Retry-After` while
the database is unavailable (retrying helps), 503 without it for a damaged database (retrying
does not), and 507 Insufficient Storage for a full disk (retrying helps once space is freed; the
write stored nothing). Failing stores are logged by the store's health when they start and stop
failing, not once per refused request. `/oauth2/token` answers the same failures in OAuth's
shape (`pinbase.http.routes.oauth`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from pinbase.app.auth.guard import Busy, Throttled
from pinbase.domain.errors import DomainError, Forbidden, Invalid, NotFound
from pinbase.domain.events import EventLimit
from pinbase.domain.ratelimit import retry_after
from pinbase.http.access import redacted_path
from pinbase.http.methods import path_methods
from pinbase.store.errors import Corrupt, StorageFull, StoreUnavailable

log = logging.getLogger("pinbase.http")


class ApiError(Exception):
    """An answer decided outside the domain rules (auth, limits, bodies)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"message": message}})
    return Response(body, status_code=status, headers=headers, media_type="application/json")


T = TypeVar("T")


async def guarded(work: Awaitable[T]) -> T:
    """`await work`, with the login guard's refusals as 429 and 503."""
    try:
        return await work
    except Throttled as exc:
        raise ApiError(
            429, "Too many failed attempts; retry later.", {"Retry-After": retry_after(exc.wait)}
        ) from None
    except Busy:
        raise ApiError(
            503, "Too many passwords are being hashed; retry later.", {"Retry-After": "1"}
        ) from None


UNAVAILABLE = "The database is unavailable; retry later."
FULL = (
    "The server's storage is full: nothing of this request was stored. "
    "Retry once its operator has freed space."
)
DAMAGED = "The database is damaged; the server's operator must restore it."


def store_failure(exc: StoreUnavailable) -> tuple[int, str, dict[str, str]]:
    """(status, message, headers) of the answer to a failing store, whatever its shape."""
    if isinstance(exc, StorageFull):
        return 507, FULL, {}
    if isinstance(exc, Corrupt):
        return 503, DAMAGED, {}
    return 503, UNAVAILABLE, {"Retry-After": "1"}


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Invalid, 400),
    (Forbidden, 403),
    (NotFound, 404),
    (EventLimit, 429),
)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        location = [str(p) for p in error.get("loc", ()) if p not in ("query", "body")]
        name = ".".join(location) or "request"
        parts.append(f"parameter '{name}': {error.get('msg', 'invalid')}")
    return "Invalid " + "; ".join(parts) + "."


def method_not_allowed(request: Request) -> Response:
    """Where Starlette reports 405: OPTIONS is answered 204, any other method 405; both carry
    `Allow` with every method of the path (see `methods.py`)."""
    allow = {"Allow": ", ".join(path_methods(request.app, request.url.path) or ["OPTIONS"])}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=allow)
    message = f"Method {request.method} is not allowed on {request.url.path}."
    return error_response(405, message, allow)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers)

    async def domain_error(request: Request, exc: Exception) -> Response:
        for kind, status in _DOMAIN_STATUS:
            if isinstance(exc, kind):
                return error_response(status, str(exc))
        return error_response(400, str(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, _describe_validation(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return method_not_allowed(request)
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = f"No such endpoint: {request.method} {request.url.path}."
        return error_response(exc.status_code, message, exc.headers)

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreUnavailable)
        path = redacted_path(request.url.path)
        log.debug("store failing on %s %s: %s", request.method, path, exc)
        return error_response(*store_failure(exc))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, redacted_path(request.url.path))
        return error_response(500, "Internal server error.")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(StoreUnavailable, unavailable)
    app.add_exception_handler(Exception, unexpected)
