"""The rules of an organization's users over the Platform API, without I/O: what a request
may give (e-mail, name, password, Blynk's passwordHash), which users a principal sees, how a
search matches and sorts, and which roles a principal may hand out (docs/api.md#users).

- Another organization's user, like an absent one, is 404; a role id the organization does not
  have is 404 "Role is not found.".
- A principal may hand out only a role whose permissions it holds itself, and may change the
  role only of a user whose current role it could hand out (403 otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pinbase.domain.errors import Forbidden, Invalid, NotFound
from pinbase.domain.model import Catalog, Organization, User
from pinbase.domain.notifications import is_address
from pinbase.domain.permissions import Principal

MAX_NAME = 50
NAME_PATTERN = r"[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*"
"""A user's name: no control characters, and not blank."""
PREHASH_PATTERN = r"[A-Za-z0-9+/]{43}="
"""Blynk's passwordHash: Base64 of a SHA-256 digest."""
MAX_EMAIL = 255
MIN_PASSWORD = 8
MAX_PASSWORD = 256

SORT_KEYS: dict[str, Callable[[User], tuple[object, ...]]] = {
    "User Id": lambda u: (u.id,),
    "Name": lambda u: (u.name.lower(), u.id),
    "Email": lambda u: (u.email.lower(), u.id),
    "Status": lambda u: (u.status.value, u.id),
    "Role": lambda u: (u.role, u.id),
    "Registered At": lambda u: (u.registered_at, u.id),
}
"""Blynk's sortBy names of a user search that pinbase knows, and how each sorts."""


def user_not_found(user_id: int) -> NotFound:
    return NotFound(
        f"User with identifier {user_id} is not found or belong to another organization."
    )


def org_users(catalog: Catalog, org_id: int) -> list[User]:
    return sorted((u for u in catalog.users.values() if u.org_id == org_id), key=lambda u: u.id)


def search(catalog: Catalog, org_id: int, query: str, sort_by: str, descending: bool) -> list[User]:
    """The organization's users whose name or e-mail holds `query` (case-insensitive), or whose
    id it is, in `sort_by` order."""
    needle = query.lower()
    found = [
        u
        for u in org_users(catalog, org_id)
        if needle in u.name.lower() or needle in u.email.lower() or needle == str(u.id)
    ]
    return sorted(found, key=SORT_KEYS[sort_by], reverse=descending)


def find(catalog: Catalog, principal: Principal, user_id: int) -> User:
    """The user, if it is of the principal's organization; else the 404 of an absent one."""
    user = catalog.users.get(user_id)
    if user is None or user.org_id != principal.org_id:
        raise user_not_found(user_id)
    return user


def grantable_role(catalog: Catalog, principal: Principal, role_id: int) -> str:
    """The name of the organization's role `role_id`, if the principal may hand it out."""
    org = catalog.organizations[principal.org_id]
    name = org.role_named(role_id)
    if name is None:
        raise NotFound("Role is not found.")
    check_grant(org, principal, name, f"role {role_id} ({name})")
    return name


def check_grant(org: Organization, principal: Principal, role: str, what: str) -> None:
    missing = org.roles.get(role, frozenset()) - principal.permissions
    if missing:
        lacking = ", ".join(sorted(missing))
        raise Forbidden(f"Access denied: {what} has permissions this token lacks: {lacking}.")


def role_permissions(org: Organization, user: User) -> list[str]:
    return sorted(org.roles.get(user.role, frozenset()))


# --- checks of what a request gives ------------------------------------------------------------


def checked_email(email: str) -> str:
    if len(email) > MAX_EMAIL or not is_address(email):
        raise Invalid(f"'{email[:60]}' is not an e-mail address.")
    return email


def checked_name(name: str) -> str:
    if len(name) > MAX_NAME or not re.fullmatch(NAME_PATTERN, name):
        raise Invalid(f"A user's name is 1 to {MAX_NAME} characters, not blank, no control ones.")
    return name


def checked_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
    return password


def checked_prehash(prehash: str) -> str:
    """Blynk's `passwordHash`: Base64 of a SHA-256 digest (44 characters)."""
    if not re.fullmatch(PREHASH_PATTERN, prehash):
        raise Invalid("'passwordHash' must be Base64 of a SHA-256 digest (44 characters).")
    return prehash
