"""OAuth2 grants (RFC 6749) as pinbase issues them: client credentials, user credentials
(`password`, and Blynk's `user_credentials`), and refresh-token rotation.

The HTTP route only reads the request (form, query string, Basic header, the caller's address)
into a `TokenRequest` and writes the answer; everything decided about credentials is here.
Failures are `OAuthFailure`s carrying OAuth's error code, a description, the HTTP status and
any headers.

Decisions:
- Client secrets and tokens are compared by SHA-256 digest in constant time; passwords with
  argon2, off the event loop. An unknown user is verified against a dummy hash, so an unknown
  e-mail and a wrong password take as long and answer alike.
- Every credential check goes through the `LoginGuard` (`guard.py`): failures are throttled
  per client, user and address (429 `slow_down`, Retry-After), password hashes are bounded
  (503 `temporarily_unavailable`, Retry-After, when the queue is full), failures are logged.
- Tokens are issued only if the catalog is still at the generation read before the credentials
  were: a password, role or secret changed meanwhile (whose change revoked the holder's tokens)
  would otherwise leave tokens issued on the old credentials. Such a request (it raced the
  change) is answered 503 `temporarily_unavailable` and may simply be repeated. The generation
  is read from the database, not from the cached catalog, which may lag behind another process
  for a moment and would refuse grants needlessly.
- Every grant starts a new token family; a refresh keeps the family of the token it redeems.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from pinbase.app.auth.guard import BUSY_RETRY_S, Busy, Throttled, address_key
from pinbase.app.auth.refresh import RefreshOutcome, rotate
from pinbase.app.auth.secrets import (
    digest,
    dummy_hash,
    new_token,
    same_digest,
    verify_user_password,
)
from pinbase.app.services import Services
from pinbase.domain.clock import now_ms
from pinbase.domain.ratelimit import retry_after
from pinbase.store.records import ClientRow, TokenRow, UserRow

GRANT_TYPES = ("client_credentials", "user_credentials", "password", "refresh_token")


class OAuthFailure(Exception):
    """A token request refused, in OAuth's terms (`error`, `error_description`)."""

    def __init__(
        self,
        code: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A token request as the route read it; absent parameters are None."""

    grant_type: str | None
    client_id: str | None
    client_secret: str | None
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    remote: str | None = None
    """The caller's network address."""


THROTTLED = "Too many failed attempts for this client, user or address; retry later."
BUSY = "Too many logins at once; retry shortly."
CHANGED = "The client's or user's credentials changed during the request; retry."
REFRESH_FAILURES = {
    RefreshOutcome.UNKNOWN: (
        "unknown or expired refresh token",
        "Unknown or expired refresh token.",
    ),
    RefreshOutcome.REUSED: (
        "reused refresh token",
        "Refresh token was already used; its tokens have been revoked.",
    ),
    RefreshOutcome.REVOKED: ("revoked refresh token", "Refresh token was revoked."),
}


async def grant(svc: Services, request: TokenRequest) -> dict[str, object]:
    """The token response body for `request`, or OAuthFailure."""
    grant_type = request.grant_type
    if not grant_type:
        raise OAuthFailure("invalid_request", "Parameter 'grant_type' is required.")
    if grant_type not in GRANT_TYPES:
        raise OAuthFailure("unsupported_grant_type", f"Grant type '{grant_type}' is not supported.")
    try:
        return await _grant(svc, request, grant_type)
    except Throttled as exc:
        raise OAuthFailure(
            "slow_down", THROTTLED, 429, {"Retry-After": retry_after(exc.wait)}
        ) from None
    except Busy:
        raise OAuthFailure(
            "temporarily_unavailable", BUSY, 503, {"Retry-After": retry_after(BUSY_RETRY_S)}
        ) from None


async def _grant(svc: Services, request: TokenRequest, grant_type: str) -> dict[str, object]:
    address = address_key(request.remote)
    generation = await svc.store.generation()  # read before any credential is
    client = await _authenticate_client(svc, address, request.client_id, request.client_secret)
    if grant_type == "client_credentials":
        return await _issue_new(svc, client, None, generation)
    if grant_type in ("user_credentials", "password"):
        user_id = await _authenticate_user(svc, address, client, request.username, request.password)
        return await _issue_new(svc, client, user_id, generation)
    return await _refresh(svc, address, client, request.refresh_token)


async def _authenticate_client(
    svc: Services, address: str, client_id: str | None, secret: str | None
) -> ClientRow:
    if not client_id or not secret:
        raise OAuthFailure("invalid_client", "Client authentication is required.", 401)
    svc.guard.check_client(address, client_id)  # a throttled guess costs no lookup
    client = await svc.store.client(client_id)
    svc.guard.check_client(address, client_id)  # again: no await from here to the verdict
    if client is None or not same_digest(secret, client.secret_hash):
        svc.guard.client_failed(address, client_id, known=client is not None)
        raise OAuthFailure("invalid_client", "Unknown client or wrong client secret.", 401)
    return client


async def _authenticate_user(
    svc: Services, address: str, client: ClientRow, username: str | None, password: str | None
) -> int:
    if not username or password is None:
        raise OAuthFailure("invalid_request", "Parameters 'username' and 'password' are required.")
    user = await user_with_password(
        svc, address, client.client_id, client.org_id, username, password
    )
    if user is None:
        raise OAuthFailure("invalid_grant", "Wrong username or password.")
    return user.id


async def user_with_password(
    svc: Services, address: str, client_id: str, org_id: int, email: str, password: str
) -> UserRow | None:
    """The user of `email` in organization `org_id` if `password` is theirs, else None; checked
    through the login guard for `client_id` (its `Throttled` and `Busy` pass through). An
    unknown user is verified against a dummy hash, so both failures take as long."""
    user = await svc.store.user_by_email(org_id, email)
    stored = user.password_hash if user is not None else None
    check = functools.partial(verify_user_password, email, password, stored or dummy_hash())
    known = user is not None
    valid = await svc.guard.verify_password(address, client_id, org_id, email, known, check)
    return user if valid else None


async def _issue_new(
    svc: Services, client: ClientRow, user_id: int | None, generation: int
) -> dict[str, object]:
    rows, body = _tokens(svc, client.client_id, client.org_id, user_id, secrets.token_hex(16))
    if not await svc.store.insert_tokens(rows, generation):
        raise OAuthFailure(
            "temporarily_unavailable", CHANGED, 503, {"Retry-After": retry_after(BUSY_RETRY_S)}
        )
    return body


async def _refresh(
    svc: Services, address: str, client: ClientRow, presented: str | None
) -> dict[str, object]:
    if not presented:
        raise OAuthFailure("invalid_request", "Parameter 'refresh_token' is required.")
    issued: dict[str, object] = {}

    def successors(consumed: TokenRow) -> list[TokenRow]:
        rows, body = _tokens(
            svc, client.client_id, consumed.org_id, consumed.user_id, consumed.family
        )
        issued.update(body)
        return rows

    outcome = await rotate(
        svc.store, svc.tokens, digest(presented), client.client_id, now_ms(), successors
    )
    if outcome is not RefreshOutcome.ROTATED:
        reason, description = REFRESH_FAILURES[outcome]
        svc.guard.refresh_failed(address, client.client_id, reason)
        raise OAuthFailure("invalid_grant", description)
    return issued


def _tokens(
    svc: Services, client_id: str, org_id: int, user_id: int | None, family: str
) -> tuple[list[TokenRow], dict[str, object]]:
    """A new access and refresh token of `family`: the rows to store and the response body."""
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
