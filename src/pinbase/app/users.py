"""The users of an organization over the Platform API: creating, inviting, changing roles,
and accepting an invitation (the rules without I/O: `pinbase.domain.users`).

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
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.model import Catalog, Organization, User, UserStatus
from pinbase.domain.permissions import Principal
from pinbase.domain.users import check_grant, find, grantable_role
from pinbase.store.base import Store
from pinbase.store.errors import Conflict, StoreUnavailable
from pinbase.store.records import MAIL_OUTBOX, UserRow

DAY_MS = 86_400_000
ADD_ATTEMPTS = 3
"""Tries of `add_user` when another process took the next user id meanwhile."""


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
        check_grant(catalog.organizations[user.org_id], principal, user.role, "the user's role")
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
