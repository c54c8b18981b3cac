"""`POST /oauth2/token` (RFC 6749): reads a token request and answers in OAuth's shape; the
grants themselves are `pinbase.app.auth.oauth`."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from pinbase.app.auth.oauth import OAuthFailure, TokenRequest, grant
from pinbase.http.deps import AppServices
from pinbase.http.errors import store_failure
from pinbase.http.openapi import schema_of
from pinbase.http.schemas import OAuthError, TokenResponse
from pinbase.store.errors import StoreUnavailable

router = APIRouter(tags=["OAuth2"])

_FORM_SCHEMA = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {
            "type": "string",
            "enum": ["client_credentials", "user_credentials", "password", "refresh_token"],
        },
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "username": {"type": "string", "description": "The user's email"},
        "password": {"type": "string"},
        "refresh_token": {"type": "string"},
    },
}
MAX_FIELD = 1024


def _answer(
    content: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    merged = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return Response(
        orjson.dumps(content), status_code=status, headers=merged, media_type="application/json"
    )


async def _parameters(request: Request) -> dict[str, str]:
    params: dict[str, str] = {}
    pairs = list(request.query_params.multi_items())
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", "replace")
        pairs += parse_qsl(body, keep_blank_values=True)
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:  # no store can look up a NUL (PostgreSQL text)
            raise OAuthFailure("invalid_request", "Parameters must not hold NUL characters.")
        if key in params and params[key] != value:
            raise OAuthFailure("invalid_request", f"Parameter '{key}' is given more than once.")
        if len(value) > MAX_FIELD:
            raise OAuthFailure("invalid_request", f"Parameter '{key}' is too long.")
        params[key] = value
    return params


def _token_request(request: Request, params: dict[str, str]) -> TokenRequest:
    """The grant's parameters, with the client's credentials from Basic or the form."""
    basic = _basic_credentials(request)
    client_id, secret = params.get("client_id"), params.get("client_secret")
    if basic is not None:
        if secret is not None:
            raise OAuthFailure("invalid_request", "Use one client authentication method only.")
        client_id, secret = basic
    return TokenRequest(
        grant_type=params.get("grant_type"),
        client_id=client_id,
        client_secret=secret,
        username=params.get("username"),
        password=params.get("password"),
        refresh_token=params.get("refresh_token"),
        remote=request.client.host if request.client is not None else None,
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthFailure("invalid_client", "Malformed Basic credentials.", 401) from None
    client_id, sep, secret = decoded.partition(":")
    client_id, secret = unquote(client_id), unquote(secret)
    if not sep or "\x00" in client_id or "\x00" in secret:
        raise OAuthFailure("invalid_client", "Malformed Basic credentials.", 401)
    return client_id, secret


@router.post(
    "/oauth2/token",
    summary="Obtain an access token",
    openapi_extra={
        "requestBody": {
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
            "description": "Parameters may also be given in the query string (Blynk's examples).",
        }
    },
    responses={
        200: {
            "description": "Tokens",
            "content": {"application/json": {"schema": schema_of(TokenResponse)}},
        },
        400: {
            "description": "OAuth error",
            "content": {"application/json": {"schema": schema_of(OAuthError)}},
        },
        401: {
            "description": "invalid_client",
            "content": {"application/json": {"schema": schema_of(OAuthError)}},
        },
        429: {
            "description": "slow_down: too many failed attempts for the client, the user or "
            "the address; see Retry-After",
            "content": {"application/json": {"schema": schema_of(OAuthError)}},
        },
        503: {
            "description": "temporarily_unavailable: too many logins at once, credentials "
            "changed during the request, or the database is unavailable or damaged",
            "content": {"application/json": {"schema": schema_of(OAuthError)}},
        },
        507: {
            "description": "temporarily_unavailable: the server's storage is full",
            "content": {"application/json": {"schema": schema_of(OAuthError)}},
        },
    },
)
async def token(svc: AppServices, request: Request) -> Response:
    try:
        params = await _parameters(request)
        body = await grant(svc, _token_request(request, params))
    except OAuthFailure as failure:
        headers = dict(failure.headers)
        if failure.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="pinbase"'
        return _answer(
            {"error": failure.code, "error_description": failure.description},
            failure.status,
            headers,
        )
    except StoreUnavailable as exc:  # RFC 6749's code for a server that cannot answer now
        status, message, extra = store_failure(exc)
        return _answer(
            {"error": "temporarily_unavailable", "error_description": message}, status, extra
        )
    return _answer(body)
