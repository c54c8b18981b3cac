"""Credentials an operator replaces: a device's token, an OAuth client's secret, a user's
password (`pinbase device token --rotate`, `pinbase client secret --rotate`,
`pinbase user password`).

Each replacement is one catalog transaction: the new secret's digest (or password hash) is
stored and, for a client or a user, every OAuth token issued through it or to them is revoked
(`Store.upsert_entities`); the catalog generation moves, so every server process refuses the old
secret as soon as its catalog follows, and closes the device connections the old token opened
(`pinbase.app.revoked_devices`). Secrets are stored only as digests or hashes: a device's token
cannot be shown again, only matched (`device_by_token`) or replaced.
"""

from __future__ import annotations

from dataclasses import replace

from pinbase.app.auth.secrets import (
    digest,
    hash_password,
    new_device_token,
    new_token,
)
from pinbase.store import Store
from pinbase.store.records import DeviceRow, Entities, Revocation, UserRow

MIN_PASSWORD = 8


class CredentialError(Exception):
    """No such device, client or user, or an unusable new password; `str(err)` is one line."""


async def device_by_token(store: Store, token: str) -> DeviceRow | None:
    """The device whose token is `token`, if any."""
    wanted = digest(token.strip())
    return next((d for d in (await store.entities()).devices if d.token_hash == wanted), None)


async def rotate_device_token(store: Store, device_id: int) -> str:
    """Give the device a new token (returned, to be shown once); the old one stops working."""
    device = next((d for d in (await store.entities()).devices if d.id == device_id), None)
    if device is None:
        raise CredentialError(f"no device {device_id}")
    token = new_device_token()
    await store.update_device(device.id, token_hash=digest(token))
    return token


async def rotate_client_secret(store: Store, client_id: str) -> str:
    """Give the client a new secret (returned, to be shown once) and revoke every token issued
    through it."""
    client = next((c for c in (await store.entities()).clients if c.client_id == client_id), None)
    if client is None:
        raise CredentialError(f"no OAuth client {client_id!r}")
    secret = new_token()
    await store.upsert_entities(
        Entities(clients=[replace(client, secret_hash=digest(secret))]),
        Revocation(client_ids=(client_id,)),
    )
    return secret


def _user(users: list[UserRow], email: str, org_id: int | None) -> UserRow:
    found = [u for u in users if u.email == email and org_id in (None, u.org_id)]
    if not found:
        where = f" in organization {org_id}" if org_id is not None else ""
        raise CredentialError(f"no user {email}{where}")
    if len(found) > 1:
        orgs = ", ".join(str(u.org_id) for u in found)
        raise CredentialError(f"{email} is a user of organizations {orgs}: name one with --org")
    return found[0]


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise CredentialError(f"a password needs at least {MIN_PASSWORD} characters")


def new_password() -> str:
    """A generated password (256 bits, URL-safe)."""
    return new_token()


async def set_password(
    store: Store, email: str, password: str, org_id: int | None = None
) -> UserRow:
    """Set the user's password and revoke every token issued to them; the user changed."""
    check_password(password)
    user = _user((await store.entities()).users, email, org_id)
    changed = replace(user, password_hash=hash_password(password))
    await store.upsert_entities(Entities(users=[changed]), Revocation(user_ids=(user.id,)))
    return changed
