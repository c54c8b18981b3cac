"""Revocation that bites: changing a user's password or role, rotating a client's secret, and
deleting a user or client revoke the affected access and refresh tokens at once.

One server per backend for the module; each test changes principals of its own in the fleet
document, which accumulates the changes, and applies it with the real `pinbase apply`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import helpers
from helpers import ACME, FLEET, GLOBEX, PASSWORDS, Bearer, Server, client_token, user_token
from pinbase.app.provisioning import delete
from pinbase.store import open_store

TOKEN_PATH = "/oauth2/token"
VALUES = "/api/v2/organization/device/datastreams"
UPDATE = "/api/v1/organization/device/datastream"
SCRIPTS = ("acme-scripts", "scripts-secret-0123456789abcdef")


class Fleet:
    """The server of this module and the fleet document it was last applied."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.document: dict[str, Any] = yaml.safe_load(FLEET.read_text())
        acme = self.organization(1)
        acme["clients"].append({"client_id": SCRIPTS[0], "client_secret": SCRIPTS[1]})
        self.apply()
        self.server = Server(data_dir).start()

    def organization(self, org_id: int) -> dict[str, Any]:
        found: dict[str, Any] = next(o for o in self.document["organizations"] if o["id"] == org_id)
        return found

    def user(self, email: str) -> dict[str, Any]:
        for org in self.document["organizations"]:
            for user in org["users"]:
                if user["email"] == email:
                    found: dict[str, Any] = user
                    return found
        raise KeyError(email)

    def apply(self) -> None:
        """Apply the document; then forget its passwords, so that the next apply keeps the
        stored hashes without verifying each password again (slow), unless a test sets one."""
        path = self.data_dir / "fleet.yaml"
        path.write_text(yaml.safe_dump(self.document))
        result = helpers.pinbase("apply", str(path), "--data-dir", str(self.data_dir))
        assert result.returncode == 0, result.stderr + result.stdout
        for org in self.document["organizations"]:
            for user in org["users"]:
                user.pop("password", None)

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Fleet]:
    running = Fleet(tmp_path_factory.mktemp(f"revocation-{backend}"))
    yield running
    running.server.stop()


def status(url: str, token: str, device_id: int = 105) -> int:
    return Bearer(url, token).get(VALUES, deviceId=device_id).status_code


def login(
    url: str, email: str, password: str, credentials: tuple[str, str] = ACME
) -> httpx.Response:
    return httpx.post(
        url + TOKEN_PATH,
        data={"grant_type": "password", "username": email, "password": password},
        auth=credentials,
    )


def refresh(url: str, token: str, credentials: tuple[str, str] = ACME) -> httpx.Response:
    return httpx.post(
        url + TOKEN_PATH,
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=credentials,
    )


def pair(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["access_token"], body["refresh_token"]


def assert_oauth_error(response: httpx.Response, status_code: int, code: str) -> None:
    assert response.status_code == status_code, response.text
    assert response.json()["error"] == code


def test_a_changed_password_revokes_the_users_tokens_at_once(fleet: Fleet) -> None:
    url, email = fleet.url, "user@acme.test"
    access, refresh_token = pair(login(url, email, PASSWORDS[email]))
    through_globex_client = client_token(url, GLOBEX)
    bystanders = [client_token(url), user_token(url, "admin@acme.test")]
    assert status(url, access, 101) == 200  # verified, and now cached by the server

    fleet.user(email)["password"] = "user-password-2"
    fleet.apply()

    assert status(url, access, 101) == 401
    assert_oauth_error(refresh(url, refresh_token), 400, "invalid_grant")
    assert_oauth_error(login(url, email, PASSWORDS[email]), 400, "invalid_grant")
    renewed, _ = pair(login(url, email, "user-password-2"))
    assert status(url, renewed, 101) == 200
    for token in bystanders:
        assert status(url, token) == 200
    assert status(url, through_globex_client, 201) == 200


def test_a_changed_role_revokes_the_users_tokens_at_once(fleet: Fleet) -> None:
    url, email = fleet.url, "staff@acme.test"
    access, refresh_token = pair(login(url, email, PASSWORDS[email]))
    other = user_token(url, "other@acme.test")
    fleet.organization(1)["devices"][-1]["name"] = "Scratch (renamed)"
    fleet.apply()  # changes no credential and no role: revokes nothing
    assert status(url, access) == 200
    assert status(url, other, 103) == 200

    fleet.user(email)["role"] = "Auditor"
    fleet.apply()

    assert status(url, access) == 401
    assert_oauth_error(refresh(url, refresh_token), 400, "invalid_grant")
    auditor = Bearer(url, pair(login(url, email, PASSWORDS[email]))[0])
    assert auditor.get(VALUES, deviceId=105).status_code == 200
    denied = auditor.post(UPDATE, {"deviceId": 105, "dataStreamId": 2, "value": 5})
    assert denied.status_code == 403, denied.text


def test_a_rotated_client_secret_revokes_every_token_issued_through_it(fleet: Fleet) -> None:
    url, rotated = fleet.url, (GLOBEX[0], "globex-secret-rotated-0123456789")
    client_access, client_refresh = pair(
        httpx.post(url + TOKEN_PATH, params={"grant_type": "client_credentials"}, auth=GLOBEX)
    )
    user_access, _ = pair(login(url, "admin@globex.test", "globex-password-1", GLOBEX))
    bystander = client_token(url)
    for token in (client_access, user_access):
        assert status(url, token, 201) == 200

    fleet.organization(2)["clients"][0]["client_secret"] = rotated[1]
    fleet.apply()

    for token in (client_access, user_access):
        assert status(url, token, 201) == 401
    assert_oauth_error(refresh(url, client_refresh, rotated), 400, "invalid_grant")
    assert_oauth_error(refresh(url, client_refresh, GLOBEX), 401, "invalid_client")
    assert status(url, client_token(url, rotated), 201) == 200
    assert status(url, bystander) == 200


def test_deleting_a_user_or_a_client_revokes_their_tokens(fleet: Fleet) -> None:
    url, email = fleet.url, "auditor@acme.test"
    user_access, user_refresh = pair(login(url, email, PASSWORDS[email]))
    scripts_access, scripts_refresh = pair(
        httpx.post(url + TOKEN_PATH, params={"grant_type": "client_credentials"}, auth=SCRIPTS)
    )
    for token in (user_access, scripts_access):
        assert status(url, token) == 200
    database = helpers.database_for(fleet.data_dir) or f"sqlite:///{fleet.data_dir / 'pinbase.db'}"
    users = asyncio.run(stored_users(database))
    user_id = next(u.id for u in users if u.email == "auditor@acme.test")

    asyncio.run(remove(database, [user_id], [SCRIPTS[0]]))  # the Platform API's operation

    # Another process changed the database: the server sees it when it next reads the catalog
    # (PostgreSQL notifies it; SQLite's catalog is re-checked every quarter second).
    helpers.wait_for("the deletions to be seen", lambda: status(url, user_access) == 401)
    assert status(url, scripts_access) == 401
    assert_oauth_error(refresh(url, user_refresh), 400, "invalid_grant")
    assert_oauth_error(refresh(url, scripts_refresh, SCRIPTS), 401, "invalid_client")
    assert_oauth_error(login(url, email, PASSWORDS[email]), 400, "invalid_grant")
    assert status(url, client_token(url)) == 200


async def stored_users(database: str) -> list[Any]:
    store = open_store(database)
    await store.open()
    try:
        return list((await store.entities()).users)
    finally:
        await store.close()


async def remove(database: str, user_ids: list[int], client_ids: list[str]) -> None:
    store = open_store(database)
    await store.open()
    try:
        await delete(store, user_ids, client_ids)
    finally:
        await store.close()
