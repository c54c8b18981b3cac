"""Console sessions: a person signs in with e-mail and password and gets a session token.

A session token is an access token like those of the password grant (same table, same
lookup, same revocation when the user's password or role changes or the user goes), issued
to `SESSION_CLIENT`, which no OAuth client can be named (client ids never hold `@`). The HTTP
face keeps it in an httpOnly cookie; every write made with the cookie must also carry the
session's CSRF token (`csrf_token`), which a page of another site cannot read.

Decisions:
- An e-mail is unique within an organization, not across them. The password is tried against
  the user of that e-mail in each organization, lowest id first, and the first that matches
  is signed in; an e-mail nobody has is verified against a dummy hash, so an unknown e-mail and
  a wrong password take as long and answer alike.
- Every attempt goes through the `LoginGuard` like the password grant: failures are throttled
  per address and per user, hashes are bounded.
- A session lasts `session_ttl` seconds from sign-in; signing out revokes it at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from pinbase.app.auth.guard import address_key
from pinbase.app.auth.oauth import user_with_password
from pinbase.app.auth.secrets import digest, new_token
from pinbase.app.services import Services
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import DomainError
from pinbase.store.records import TokenRow

SESSION_CLIENT = "@console"
MAX_EMAIL = 254
MAX_PASSWORD = 1024
WRONG = "Wrong e-mail or password."
CHANGED = "The user's credentials changed during the sign-in; retry."


class SignInRefused(DomainError):
    """Wrong e-mail or password (HTTP 401)."""


class SignInRaced(DomainError):
    """The catalog changed while the credentials were checked: retry (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    expires_at: int
    """Epoch ms."""


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to a session: derived from its secret, so it needs no storage and
    dies with the session."""
    return hashlib.sha256(b"pinbase-csrf:" + session_token.encode()).hexdigest()


def csrf_matches(session_token: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token), presented)


async def sign_in(svc: Services, email: str, password: str, remote: str | None) -> Session:
    """A new session of the user with `email` and `password`; `SignInRefused` otherwise.
    The guard's `Throttled` and `Busy` pass through."""
    if not email or len(email) > MAX_EMAIL or not password or len(password) > MAX_PASSWORD:
        raise SignInRefused(WRONG)
    address = address_key(remote)
    generation = await svc.store.generation()  # read before any credential is
    catalog = await svc.store.catalog()
    orgs = sorted({u.org_id for u in catalog.users.values() if u.email == email}) or [0]
    for org_id in orgs:
        user = await user_with_password(svc, address, SESSION_CLIENT, org_id, email, password)
        if user is not None:
            return await _issue(svc, org_id, user.id, generation)
    raise SignInRefused(WRONG)


async def _issue(svc: Services, org_id: int, user_id: int, generation: int) -> Session:
    token = new_token()
    expires_at = now_ms() + svc.settings.session_ttl * 1000
    row = TokenRow(
        digest(token), "access", SESSION_CLIENT, org_id, user_id, secrets.token_hex(16), expires_at
    )
    if not await svc.store.insert_tokens([row], generation):
        raise SignInRaced(CHANGED)
    return Session(token, expires_at)


async def sign_out(svc: Services, token: str) -> None:
    """Revoke the session of `token` (nothing when it is unknown)."""
    found = await svc.store.access_token(digest(token), now_ms())
    if found is not None and found.client_id == SESSION_CLIENT:
        await svc.store.revoke_family(found.family)
        svc.tokens.forget(found.family)
