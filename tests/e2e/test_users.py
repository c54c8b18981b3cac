"""Users and the organization over the Platform API, end to end: a real `pinbase serve` with an
HTTPS port (a trustme certificate) and an SMTP server (aiosmtpd) for invitation mails. Listing,
searching and reading users; the own and the organization profile; creating users with a
Blynk passwordHash and with a password over HTTPS (then logging in with the password grant),
and the refusal over plain HTTP; invitations from the mail to acceptance; role changes; the
permission and tenant rules; bad input writing nothing; `pinbase apply` beside API users.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from test_notifications import Mailbox, body_of  # e2e/test_notifications.py
from test_webhooks import FAST  # e2e/test_webhooks.py

from helpers import (
    Bearer,
    Server,
    apply_fleet_text,
    assert_error,
    client_token,
    free_port,
    pinbase,
    wait_for,
)

CLIENT = ("users-backend", "users-secret-0123456789abcdef")
OTHER = ("usersother-backend", "usersother-secret-0123456789abcdef")
PASSWORD = "users-password-1"
SENDER = "invites@users.test"
USERS = "/api/v1/organization/users"
SEARCH = "/api/v1/organization/search/users"
USER = "/api/v1/organization/user"
PROFILE = "/api/v1/organization/user/profile"
ORG = "/api/v1/organization/profile"
CREATE = "/api/v1/organization/users/create-in-org"
INVITE = "/api/v1/organization/users/invite"
ROLE = "/api/v1/organization/users/role"
ACCEPT = "/api/v1/invite/accept"
TLS_ONLY = (
    "Passwords are accepted only over HTTPS (the server's --https-port); this request came "
    "over plain HTTP and nothing was written."
)
MANAGER = [
    "ORG_VIEW_USERS", "ORG_EDIT_USERS", "ORG_INVITE_USERS", "OWN_DEVICES_VIEW",
    "ORG_DEVICES_CONTROL", "PRODUCT_VIEW", "ORG_VIEW",
]  # fmt: skip
FILE_USERS = [
    ("admin@users.test", "Admin"), ("staff@users.test", "Staff"),
    ("plain@users.test", "User"), ("manager@users.test", "Manager"),
]  # fmt: skip


def fleet() -> str:
    def user(email: str, role: str) -> dict[str, str]:
        return {"email": email, "password": PASSWORD, "role": role}

    return yaml.safe_dump(
        {
            "organizations": [
                {
                    "id": 1, "name": "Users Farms", "timezone": "Europe/Kyiv",
                    "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                    "roles": [{"name": "Manager", "permissions": MANAGER}],
                    "users": [user(email, role) for email, role in FILE_USERS],
                },
                {
                    "id": 2, "name": "Other Farms",
                    "clients": [{"client_id": OTHER[0], "client_secret": OTHER[1]}],
                    "users": [user("other@users.test", "Admin")],
                },
            ]
        }
    )  # fmt: skip


@dataclass
class Env:
    server: Server
    https: str
    ca: ssl.SSLContext
    mailbox: Mailbox
    data_dir: Path

    def as_client(self, credentials: tuple[str, str] = CLIENT) -> Bearer:
        return Bearer(self.server.url, client_token(self.server.url, credentials))

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}/oauth2/token",
            data={"grant_type": "password", "username": email, "password": password},
            auth=OTHER if email.startswith("other@") else CLIENT,
        )

    def as_user(self, email: str, password: str = PASSWORD) -> Bearer:
        response = self.login(email, password)
        assert response.status_code == 200, response.text
        return Bearer(self.server.url, response.json()["access_token"])

    def secure(self, api: Bearer, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call over the HTTPS port with `api`'s token."""
        return httpx.request(
            method, self.https + path, headers=api.headers, verify=self.ca, timeout=30, **kwargs
        )


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"users-{backend}")
    apply_fleet_text(data_dir, fleet())
    ca = trustme.CA()
    ca_file, key_file = data_dir / "ca.pem", data_dir / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(key_file))
    mailbox = Mailbox()
    mailbox.up()
    https_port = free_port()
    server = Server(
        data_dir,
        *FAST,
        "--smtp-url", f"smtp://127.0.0.1:{mailbox.port}", "--smtp-from", SENDER,
        "--https-port", str(https_port), "--tls-cert", str(key_file), "--tls-key", str(key_file),
    )  # fmt: skip
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        yield Env(server, f"https://127.0.0.1:{https_port}", context, mailbox, data_dir)
    finally:
        code = server.stop()  # SIGTERM stops both listeners
        mailbox.down()
    assert code == 0, server.log.read_text()


def blynk_hash(email: str, password: str) -> str:
    """Blynk's passwordHash, as its server computes it: SHA-256(password ‖ SHA-256(email))."""
    salt = hashlib.sha256(email.lower().encode()).digest()
    return base64.b64encode(hashlib.sha256(password.encode() + salt).digest()).decode()


def emails(api: Bearer) -> list[str]:
    response = api.get(USERS, size=1000)
    assert response.status_code == 200, response.text
    return [u["email"] for u in response.json()["content"]]


def test_users_and_the_organization_are_read(env: Env) -> None:
    admin = env.as_user("admin@users.test")
    page = admin.get(USERS, page=0, size=2).json()
    assert page["totalElements"] >= 4 and len(page["content"]) == 2
    first = page["content"][0]
    assert first["email"] == "admin@users.test"
    assert first["role"] == "Admin" and first["roleId"] == 1 and first["orgId"] == 1
    assert first["status"] == "Active" and first["name"] == "admin@users.test"
    assert first["registeredAt"] > 0 and first["lastModifiedTs"] > 0
    assert "other@users.test" not in emails(admin)  # another organization's

    manager = admin.get(SEARCH, query="MANAGER", sortBy="Email", sortOrder="DESC").json()
    assert [(u["email"], u["roleId"]) for u in manager["content"]] == [("manager@users.test", 4)]
    by_email = admin.get(SEARCH, query="users.test", sortBy="Email", sortOrder="DESC").json()
    listed = [u["email"] for u in by_email["content"]]
    assert listed == sorted(listed, reverse=True) and "other@users.test" not in listed

    user = admin.get(USER, userId=first["id"])
    assert user.status_code == 200 and user.json() == first
    other_id = env.as_user("other@users.test").get(PROFILE).json()["id"]
    for user_id in (other_id, 999_999):  # the tenant rule: another's is absent
        message = f"User with identifier {user_id} is not found or belong to another organization."
        assert_error(admin.get(USER, userId=user_id), 404, message)

    profile = env.as_user("staff@users.test").get(PROFILE).json()
    assert profile["email"] == "staff@users.test" and profile["orgName"] == "Users Farms"
    assert "ORG_VIEW_USERS" in profile["permissions"] and "ORG_MANAGE" not in profile["permissions"]
    assert "client-credentials" in assert_error(env.as_client().get(PROFILE), 403)
    assert admin.get(ORG).json() == {"id": 1, "name": "Users Farms", "tz": "Europe/Kyiv"}
    assert env.as_client(OTHER).get(ORG).json()["name"] == "Other Farms"

    plain = env.as_user("plain@users.test")  # role User: no ORG_VIEW_USERS
    for path, params in ((USERS, {}), (SEARCH, {"query": "a"}), (USER, {"userId": 1})):
        assert "ORG_VIEW_USERS" in assert_error(plain.get(path, **params), 403)
    assert_error(admin.get(USERS, size=0), 400)
    assert_error(admin.get(USERS, size=1001), 400)
    assert_error(admin.get(SEARCH, query=""), 400)
    assert_error(admin.get(SEARCH, query="a", sortBy="Shoe Size"), 400)


def test_users_are_created_over_https_only(env: Env) -> None:
    admin = env.as_user("admin@users.test")
    before = emails(admin)
    body = {"email": "hashed@users.test", "name": "Hashed", "roleId": 3}
    hashed = {**body, "passwordHash": blynk_hash("hashed@users.test", "hashed-password-1")}
    assert_error(admin.post(CREATE, hashed), 400, TLS_ONLY)
    assert emails(admin) == before

    created = env.secure(admin, "POST", CREATE, json=hashed)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "Active" and created.json()["role"] == "User"
    assert env.login("hashed@users.test", "hashed-password-1").status_code == 200
    assert env.login("hashed@users.test", "wrong-password-1").status_code == 400

    plain = {"email": "plain2@users.test", "name": "Plain", "roleId": 2, "password": "pw-plain-22"}
    created = env.secure(admin, "POST", CREATE, json=plain)
    assert created.status_code == 201 and created.json()["roleId"] == 2
    assert env.as_user("plain2@users.test", "pw-plain-22").get(USERS).status_code == 200

    refused = [
        ({**hashed, "email": "x@users.test", "password": "pw-plain-22"}, 400),  # both
        ({**body, "email": "y@users.test"}, 400),  # neither
        ({**plain, "email": "z@users.test", "password": "short"}, 400),
        ({**plain, "email": "not an address"}, 400),
        ({**body, "email": "z@users.test", "passwordHash": "bm90IGEgZGlnZXN0"}, 400),
        ({**plain, "email": "admin@users.test"}, 400),  # in use
        ({**plain, "email": "z@users.test", "roleId": 99}, 404),
        ({**plain, "email": "z@users.test", "orgId": 2}, 404),
        ({**plain, "email": "z@users.test", "shoeSize": 9}, 400),
    ]
    after = emails(admin)
    for request, status in refused:
        assert_error(env.secure(admin, "POST", CREATE, json=request), status)
    assert emails(admin) == after
    staff = env.as_user("staff@users.test")  # no ORG_INVITE_USERS
    assert "ORG_INVITE_USERS" in assert_error(env.secure(staff, "POST", CREATE, json=plain), 403)
    manager = env.as_user("manager@users.test")  # may not hand out Admin
    request = {**plain, "email": "boss@users.test", "roleId": 1}
    assert "ORG_MANAGE" in assert_error(env.secure(manager, "POST", CREATE, json=request), 403)
    assert emails(admin) == after

    # the fleet file and the API coexist: apply keeps API users and updates named ones
    apply_fleet_text(env.data_dir, fleet().replace("role: User", "role: Staff"))

    def applied() -> dict[str, str] | None:
        users = admin.get(USERS, size=100).json()["content"]
        roles = {u["email"]: u["role"] for u in users}
        return roles if roles["plain@users.test"] == "Staff" else None

    roles = wait_for("the apply", applied)
    assert set(roles) == set(after) and roles["hashed@users.test"] == "User"
    apply_fleet_text(env.data_dir, fleet())


def test_an_invitation_is_accepted_once(env: Env) -> None:
    admin = env.as_user("admin@users.test")
    invited = admin.post(INVITE, {"email": "new@users.test", "name": "New Hire", "roleId": 2})
    assert invited.status_code == 201, invited.text
    user = invited.json()
    token = user.pop("invitationToken")
    assert user["status"] == "Pending" and user["role"] == "Staff"
    assert admin.get(USER, userId=user["id"]).json() == user
    assert env.login("new@users.test", "").status_code == 400  # no password yet

    mail = wait_for(
        "invitation mail",
        lambda: next((m for to, m in env.mailbox.mails() if to == ["new@users.test"]), None),
    )
    assert mail["From"] == SENDER and token in body_of(mail)

    accept = {"token": token, "password": "new-password-1"}
    assert_error(httpx.post(env.server.url + ACCEPT, json=accept), 400, TLS_ONLY)
    assert admin.get(USER, userId=user["id"]).json()["status"] == "Pending"
    short = httpx.post(env.https + ACCEPT, json={**accept, "password": "x"}, verify=env.ca)
    assert_error(short, 400)
    accepted = httpx.post(env.https + ACCEPT, json=accept, verify=env.ca)
    assert accepted.status_code == 204, accepted.text
    assert env.as_user("new@users.test", "new-password-1").get(PROFILE).json()["status"] == "Active"
    again = httpx.post(
        env.https + ACCEPT, json={**accept, "password": "other-password-1"}, verify=env.ca
    )
    assert_error(again, 404)
    assert env.login("new@users.test", "other-password-1").status_code == 400
    unknown = httpx.post(env.https + ACCEPT, json={**accept, "token": "nope"}, verify=env.ca)
    assert_error(unknown, 404)

    assert_error(admin.post(INVITE, {"email": "new@users.test", "name": "X", "roleId": 3}), 400)
    staff = env.as_user("staff@users.test")
    request = {"email": "s@users.test", "name": "S", "roleId": 3}
    assert_error(staff.post(INVITE, request), 403)
    manager = env.as_user("manager@users.test")
    assert_error(manager.post(INVITE, {**request, "roleId": 2}), 403)  # Staff: more than it has
    assert "s@users.test" not in emails(admin)


def test_a_role_change_revokes_the_users_tokens(env: Env) -> None:
    admin = env.as_user("admin@users.test")
    created = env.secure(
        admin,
        "POST",
        CREATE,
        json={"email": "mover@users.test", "name": "Mover", "roleId": 3, "password": PASSWORD},
    )
    user_id = created.json()["id"]
    mover = env.as_user("mover@users.test")
    assert mover.get(PROFILE).status_code == 200

    manager = env.as_user("manager@users.test")
    put = httpx.put
    denied = put(
        env.server.url + ROLE, params={"userId": user_id, "roleId": 1}, headers=manager.headers
    )
    assert "ORG_MANAGE" in assert_error(denied, 403)
    staff = env.as_user("staff@users.test")
    denied = put(
        env.server.url + ROLE, params={"userId": user_id, "roleId": 2}, headers=staff.headers
    )
    assert "ORG_EDIT_USERS" in assert_error(denied, 403)
    assert mover.get(PROFILE).status_code == 200  # nothing changed

    changed = put(
        env.server.url + ROLE, params={"userId": user_id, "roleId": 4}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "Manager" and changed.json()["roleId"] == 4
    assert_error(mover.get(PROFILE), 401)
    assert env.as_user("mover@users.test").get(PROFILE).json()["roleId"] == 4

    staff_id = admin.get(SEARCH, query="staff@users.test").json()["content"][0]["id"]
    demote = {"userId": staff_id, "roleId": 3}  # User: within the Manager's permissions
    denied = put(env.server.url + ROLE, params=demote, headers=manager.headers)
    assert "the user's role" in assert_error(denied, 403)  # a Staff has more than a Manager
    assert admin.get(USER, userId=staff_id).json()["role"] == "Staff"

    other = env.as_user("other@users.test")
    foreign = put(
        env.server.url + ROLE, params={"userId": user_id, "roleId": 1}, headers=other.headers
    )
    assert_error(foreign, 404)
    missing = put(
        env.server.url + ROLE, params={"userId": user_id, "roleId": 77}, headers=admin.headers
    )
    assert_error(missing, 404, "Role is not found.")
    assert admin.get(USER, userId=user_id).json()["roleId"] == 4


def test_failed_acceptances_are_throttled(env: Env) -> None:
    """Last in the module: it spends the test address's failure budget on this server."""
    statuses = []
    for attempt in range(60):  # the address budget (--auth-address-failures) is 50
        answer = httpx.post(
            env.https + ACCEPT,
            json={"token": f"guess-{attempt}", "password": "guessed-password-1"},
            verify=env.ca,
        )
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) > 0
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {404}


def test_the_https_port_needs_a_certificate(tmp_path: Path) -> None:
    port = str(free_port())
    no_ports = ("--port", "0", "--hardware-port", "0", "--mqtt-port", "0")
    result = pinbase("serve", "--data-dir", str(tmp_path), "--https-port", port, *no_ports)
    assert result.returncode != 0
    assert "--tls-cert" in result.stderr and "Traceback" not in result.stderr
