"""Who is calling the Organization API: a bearer access token resolved to a `Principal`."""

from __future__ import annotations

from pinbase.app.auth.secrets import digest
from pinbase.app.services import Services
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import DomainError
from pinbase.domain.model import ALL_PERMISSIONS, Catalog
from pinbase.domain.permissions import Principal


class Unauthorized(DomainError):
    """No valid access token (HTTP 401 with a Bearer challenge)."""


MISSING = "Missing bearer access token."
INVALID = "Invalid or expired access token."


async def authenticate(svc: Services, credentials: str) -> tuple[Principal, Catalog]:
    """The principal of an access token and the catalog it is judged against.

    An organization-scoped token (client credentials) holds every permission in its
    organization; a user-scoped one holds its user's role's permissions, and dies with its user.
    The catalog is read first: a token is honoured from the cache only while the catalog is at
    the generation it was verified at (see `access_tokens`).
    """
    token_text = credentials.strip()
    if not token_text:
        raise Unauthorized(MISSING)
    catalog = await svc.store.catalog()
    token = await svc.tokens.find(digest(token_text), now_ms(), catalog.generation)
    if token is None:
        raise Unauthorized(INVALID)
    if token.user_id is None:
        return Principal(token.org_id, None, ALL_PERMISSIONS), catalog
    user = catalog.users.get(token.user_id)
    if user is None or user.org_id != token.org_id:
        raise Unauthorized(INVALID)
    return Principal(token.org_id, user.id, catalog.permissions_of(user)), catalog
