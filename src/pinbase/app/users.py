"""The users of an organization over the Platform API: listing and searching them, creating,
inviting, changing roles, and accepting an invitation.

Rules (docs/api.md#users):

- Another organization's user, like an absent one, is 404; a role id the organization does not
  have is 404 "Role is not found.".
- A caller may hand out only a role whose permissions it holds itself (403 otherwise), when
  creating, inviting or changing a role.
- A password reaches the server only over TLS: plain `password`, or Blynk's `passwordHash`
  (stored as argon2 of that pre-hash behind a marker, `pinbase.app.auth.secrets`). The routes
  check the transport; the use cases take the secret as given.
- An invitation creates the user Pending with no password and a one-time token, stored as its
  SHA-256 digest and valid `--invitation-days`; with SMTP configured the token is mailed through
  the outbox, in the transaction that creates the user. Accepting sets the password and makes
  the user Active in one conditional statement (`Store.accept_invitation`): the token works once.
- Every change bumps the catalog generation (the store does it in the change's transaction);
  a role change revokes the user's tokens in it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from pinbase.app.auth.guard import LoginGuard
from pinbase.app.auth.secrets import (
    digest,
    hash_blynk_prehash,
    hash_password,
    new_token,
)
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import Forbidden, Invalid, NotFound
from pinbase.domain.model import Catalog, Organization, User, UserStatus
from pinbase.domain.notifications import is_address
from pinbase.domain.permissions import Principal
from pinbase.store.base import Store
from pinbase.store.errors import Conflict, StoreUnavailable
from pinbase.store.records import MAIL_OUTBOX, UserRow

MAX_NAME = 50
NAME_PATTERN = r"[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*"
"""A user's name: no control characters, and not blank."""
PREHASH_PATTERN = r"[A-Za-z0-9+/]{43}="
"""Blynk's passwordHash: Base64 of a SHA-256 digest."""
MAX_EMAIL = 255
MIN_PASSWORD = 8
MAX_PASSWORD = 256
DAY_MS = 86_400_000
ADD_ATTEMPTS = 3
"""Tries of `add_user` when another process took the next user id meanwhile."""

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
    _check_grant(org, principal, name, f"role {role_id} ({name})")
    return name


def _check_grant(org: Organization, principal: Principal, role: str, what: str) -> None:
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


@dataclass(frozen=True, slots=True)
class Secret:
    """How a new user's password is given: plain, or as Blynk's pre-hash."""

    value: str
    prehashed: bool

    def stored(self) -> str:
        if self.prehashed:
            return hash_blynk_prehash(self.value)
        return hash_password(self.value)


# --- use cases ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str
    name: str
    role_id: int


@dataclass(frozen=True, slots=True)
class Users:
    """The users use cases of a running server."""

    store: Store
    guard: LoginGuard
    invitation_days: int
    mail: bool
    """Whether an SMTP server is configured (`--smtp-url`): invitations are mailed."""

    async def create(
        self, catalog: Catalog, principal: Principal, new: NewUser, secret: Secret
    ) -> User:
        """An Active user with the given password."""
        role = self._checked(catalog, principal, new)
        stored = await self.guard.hash(secret.stored)
        now = now_ms()
        row = UserRow(0, principal.org_id, new.email, stored, role, new.name, "Active", now, now)
        return await self._add(row, None)

    async def invite(
        self, catalog: Catalog, principal: Principal, new: NewUser
    ) -> tuple[User, str]:
        """A Pending user and its invitation token (shown once)."""
        role = self._checked(catalog, principal, new)
        token = new_token()
        now = now_ms()
        expires = now + self.invitation_days * DAY_MS
        row = UserRow(
            0,
            principal.org_id,
            new.email,
            "",
            role,
            new.name,
            UserStatus.PENDING.value,
            now,
            now,
            digest(token),
            expires,
        )
        org = catalog.organizations[principal.org_id]
        return await self._add(row, self._invitation_mail(org, new, token)), token

    async def set_role(
        self, catalog: Catalog, principal: Principal, user_id: int, role_id: int
    ) -> None:
        """Give the user the role `role_id`; its tokens are revoked (unless it had it). Nor
        may a token change the role of a user who holds permissions the token lacks."""
        user = find(catalog, principal, user_id)
        role = grantable_role(catalog, principal, role_id)
        _check_grant(catalog.organizations[user.org_id], principal, user.role, "the user's role")
        if role != user.role:
            await self.store.set_user_role(user.id, role, now_ms())

    async def accept(self, address: str, token: str, password: str) -> int:
        """Accept an invitation: the user's id. An unknown, used or expired token is 404, and
        counts against the address's failure budget (`Throttled` once spent)."""
        self.guard.check_address(address)
        invitation = digest(token)
        user = await self.store.user_by_invitation(invitation)
        now = now_ms()
        if user is None or user.invitation_expires is None or user.invitation_expires <= now:
            self.guard.invitation_failed(address)
            raise NotFound("The invitation is unknown, already accepted or expired.")
        stored = await self.guard.hash(lambda: hash_password(password))
        if not await self.store.accept_invitation(user.id, invitation, stored, now_ms()):
            self.guard.invitation_failed(address)
            raise NotFound("The invitation is unknown, already accepted or expired.")
        return user.id

    def _checked(self, catalog: Catalog, principal: Principal, new: NewUser) -> str:
        role = grantable_role(catalog, principal, new.role_id)
        if any(
            u.org_id == principal.org_id and u.email == new.email for u in catalog.users.values()
        ):
            raise Invalid(f"{new.email} is already in use.")
        return role

    async def _add(self, row: UserRow, mail: str | None) -> User:
        outbox = [(MAIL_OUTBOX, mail, row.registered_at)] if mail is not None else []
        for _ in range(ADD_ATTEMPTS):
            user_id = await self.store.next_user_id()
            try:
                await self.store.add_user(replace(row, id=user_id), outbox)
            except Conflict:
                if await self.store.user_by_email(row.org_id, row.email) is not None:
                    raise Invalid(f"{row.email} is already in use.") from None
                continue  # another process took the id
            return (await self.store.catalog()).users[user_id]
        raise StoreUnavailable("user ids were taken by concurrent creations; retry")

    def _invitation_mail(self, org: Organization, new: NewUser, token: str) -> str | None:
        if not self.mail:
            return None
        body = (
            f"Hello {new.name},\n\nyou are invited to the organization {org.name} on pinbase.\n"
            "Accept the invitation by choosing a password, with this request (over HTTPS):\n\n"
            "POST /api/v1/invite/accept\n"
            f'{{"token": "{token}", "password": "<your password>"}}\n\n'
            f"The invitation expires in {self.invitation_days} days and works once.\n"
        )
        subject = f"Invitation to {org.name}"
        return orjson.dumps({"to": [new.email], "subject": subject, "body": body}).decode()
