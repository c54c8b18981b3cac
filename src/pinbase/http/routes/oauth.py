"""`POST /oauth2/token` (RFC 6749): client credentials, user credentials, refresh rotation."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from pinbase.app.auth.secrets import digest, hash_password, new_token, same_digest, verify_password
from pinbase.domain.clock import now_ms
from pinbase.http.deps import AppServices
from pinbase.http.openapi import schema_of
from pinbase.http.schemas import OAuthError, TokenResponse
from pinbase.store.base import RefreshOutcome
from pinbase.store.records import ClientRow, TokenRow

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


class OAuthFailure(Exception):
    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status


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


async def _client(svc: AppServices, request: Request, params: dict[str, str]) -> ClientRow:
    basic = _basic_credentials(request)
    if basic is not None:
        if "client_secret" in params:
            raise OAuthFailure("invalid_request", "Use one client authentication method only.")
        client_id, secret = basic
    else:
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
    if not client_id or not secret:
        raise OAuthFailure("invalid_client", "Client authentication is required.", 401)
    client = await svc.store.client(client_id)
    if client is None or not same_digest(secret, client.secret_hash):
        raise OAuthFailure("invalid_client", "Unknown client or wrong client secret.", 401)
    return client


def _issue(
    svc: AppServices, client_id: str, org_id: int, user_id: int | None, family: str
) -> tuple[list[TokenRow], dict[str, object]]:
    now = now_ms()
    settings = svc.settings
    access, refresh = new_token(), new_token()
    rows = [
        TokenRow(
            digest(access),
            "access",
            client_id,
            org_id,
            user_id,
            family,
            now + settings.access_token_ttl * 1000,
        ),
        TokenRow(
            digest(refresh),
            "refresh",
            client_id,
            org_id,
            user_id,
            family,
            now + settings.refresh_token_ttl * 1000,
        ),
    ]
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl,
        "refresh_token": refresh,
    }
    return rows, body


async def _grant(svc: AppServices, request: Request) -> dict[str, object]:
    params = await _parameters(request)
    grant = params.get("grant_type")
    if not grant:
        raise OAuthFailure("invalid_request", "Parameter 'grant_type' is required.")
    if grant not in ("client_credentials", "user_credentials", "password", "refresh_token"):
        raise OAuthFailure("unsupported_grant_type", f"Grant type '{grant}' is not supported.")
    client = await _client(svc, request, params)
    family = secrets.token_hex(16)
    if grant == "client_credentials":
        rows, body = _issue(svc, client.client_id, client.org_id, None, family)
        await svc.store.insert_tokens(rows)
        return body
    if grant in ("user_credentials", "password"):
        username, password = params.get("username"), params.get("password")
        if not username or password is None:
            raise OAuthFailure(
                "invalid_request", "Parameters 'username' and 'password' are required."
            )
        user = await svc.store.user_by_email(client.org_id, username)
        hashed = user.password_hash if user is not None else _dummy_hash()
        valid = await asyncio.to_thread(verify_password, password, hashed)
        if user is None or not valid:
            raise OAuthFailure("invalid_grant", "Wrong username or password.")
        rows, body = _issue(svc, client.client_id, client.org_id, user.id, family)
        await svc.store.insert_tokens(rows)
        return body
    presented = params.get("refresh_token")
    if not presented:
        raise OAuthFailure("invalid_request", "Parameter 'refresh_token' is required.")
    issued: dict[str, object] = {}

    def successors(consumed: TokenRow) -> list[TokenRow]:
        rows, body = _issue(
            svc, client.client_id, consumed.org_id, consumed.user_id, consumed.family
        )
        issued.update(body)
        return rows

    outcome, presented_family = await svc.store.rotate_refresh(
        digest(presented), client.client_id, now_ms(), successors
    )
    if outcome is RefreshOutcome.REUSED:
        assert presented_family is not None
        svc.tokens.forget_family(presented_family)
        raise OAuthFailure(
            "invalid_grant", "Refresh token was already used; its tokens have been revoked."
        )
    if outcome is not RefreshOutcome.ROTATED:
        raise OAuthFailure("invalid_grant", "Unknown or expired refresh token.")
    return issued


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user is unknown, so both failures take as long."""
    return hash_password(secrets.token_hex(8))


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
    },
)
async def token(svc: AppServices, request: Request) -> Response:
    try:
        body = await _grant(svc, request)
    except OAuthFailure as failure:
        headers = {"WWW-Authenticate": 'Basic realm="pinbase"'} if failure.status == 401 else None
        return _answer(
            {"error": failure.code, "error_description": failure.description},
            failure.status,
            headers,
        )
    return _answer(body)
