"""POST /oauth2/token end to end: grants, errors, refresh rotation, expiry, hashing, rate limits."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import (
    ACME,
    FLEET,
    GLOBEX,
    PASSWORDS,
    Bearer,
    Server,
    apply_fleet,
    client_token,
    pinbase,
    user_token,
)

TOKEN_PATH = "/oauth2/token"
VALUES = "/api/v2/organization/device/datastreams"
UPDATE = "/api/v1/organization/device/datastream"
IMPORT = "/api/v1/organization/device/import/batch"
TOKEN_KEYS = ("access_token", "refresh_token")


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def special_server() -> Iterator[list[Server]]:
    """Started servers are appended by `start_special` and stopped at teardown."""
    started: list[Server] = []
    yield started
    for running in started:
        running.kill()


def start_special(target: Path, started: list[Server], *flags: str) -> Server:
    apply_fleet(target)  # its own data dir, so its own database on every backend
    running = Server(target, *flags).start()
    started.append(running)
    return running


def token_request(base_url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{base_url}{TOKEN_PATH}", **kwargs)  # type: ignore[arg-type]


def assert_oauth_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["error_description"], str) and body["error_description"]


def assert_token_body(response: httpx.Response, expires_in: int = 86_400) -> dict[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == expires_in
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 32
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 32
    assert body["access_token"] != body["refresh_token"]
    result: dict[str, str] = body
    return result


def can_read(base_url: str, token: str, device_id: int = 105) -> int:
    return Bearer(base_url, token).get(VALUES, deviceId=device_id).status_code


def password_grant(
    base_url: str, email: str, password: str, credentials: tuple[str, str] = ACME
) -> httpx.Response:
    return token_request(
        base_url,
        data={"grant_type": "password", "username": email, "password": password},
        auth=credentials,
    )


def refresh(
    base_url: str, refresh_token: str, credentials: tuple[str, str] = ACME
) -> httpx.Response:
    return token_request(
        base_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=credentials,
    )


# --- client credentials -------------------------------------------------------------------


def test_client_credentials_with_http_basic(server: Server) -> None:
    response = token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    body = assert_token_body(response)
    assert can_read(server.url, body["access_token"]) == 200


def test_client_credentials_in_query_string_like_blynk_examples(server: Server) -> None:
    response = token_request(
        server.url,
        params={
            "grant_type": "client_credentials",
            "client_id": ACME[0],
            "client_secret": ACME[1],
        },
    )
    body = assert_token_body(response)
    assert can_read(server.url, body["access_token"]) == 200


def test_client_credentials_in_form_body(server: Server) -> None:
    response = token_request(
        server.url,
        data={"grant_type": "client_credentials", "client_id": ACME[0], "client_secret": ACME[1]},
    )
    body = assert_token_body(response)
    assert can_read(server.url, body["access_token"]) == 200


def test_client_token_is_scoped_to_its_organization(server: Server) -> None:
    globex = client_token(server.url, GLOBEX)
    assert can_read(server.url, globex, 201) == 200
    assert can_read(server.url, globex, 105) == 404


def test_wrong_client_secret_is_invalid_client(server: Server) -> None:
    response = token_request(
        server.url, params={"grant_type": "client_credentials"}, auth=(ACME[0], "wrong-secret")
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_unknown_client_is_invalid_client(server: Server) -> None:
    response = token_request(
        server.url,
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x" * 20},
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_secret_of_another_client_is_invalid_client(server: Server) -> None:
    response = token_request(
        server.url, params={"grant_type": "client_credentials"}, auth=(ACME[0], GLOBEX[1])
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_missing_client_authentication_is_invalid_client(server: Server) -> None:
    response = token_request(server.url, data={"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")


def test_missing_grant_type_is_invalid_request(server: Server) -> None:
    response = token_request(server.url, auth=ACME)
    assert_oauth_error(response, 400, "invalid_request")


def test_unknown_grant_type_is_unsupported(server: Server) -> None:
    response = token_request(server.url, data={"grant_type": "authorization_code"}, auth=ACME)
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_error_answers_are_not_cached(server: Server) -> None:
    response = token_request(server.url, data={"grant_type": "client_credentials"})
    assert response.headers["cache-control"] == "no-store"


# --- user credentials ---------------------------------------------------------------------


@pytest.mark.parametrize("grant", ["user_credentials", "password"])
def test_user_credentials_and_password_alias(server: Server, grant: str) -> None:
    response = token_request(
        server.url,
        data={
            "grant_type": grant,
            "username": "auditor@acme.test",
            "password": PASSWORDS["auditor@acme.test"],
        },
        auth=ACME,
    )
    body = assert_token_body(response)
    api = Bearer(server.url, body["access_token"])
    # Auditor: ORG_DEVICES_VIEW only, so every device is readable and nothing is writable.
    assert api.get(VALUES, deviceId=105).status_code == 200
    denied = api.post(UPDATE, {"deviceId": 105, "dataStreamId": 2, "value": 50})
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"]["message"]


def test_user_credentials_in_query_string(server: Server) -> None:
    response = token_request(
        server.url,
        params={
            "grant_type": "user_credentials",
            "client_id": ACME[0],
            "client_secret": ACME[1],
            "username": "user@acme.test",
            "password": PASSWORDS["user@acme.test"],
        },
    )
    body = assert_token_body(response)
    # User role: OWN_DEVICES_VIEW, so only the user's own devices exist for this token.
    assert can_read(server.url, body["access_token"], 101) == 200
    assert can_read(server.url, body["access_token"], 105) == 404


def test_user_token_helper_roles(server: Server) -> None:
    staff = Bearer(server.url, user_token(server.url, "staff@acme.test"))
    assert staff.get(VALUES, deviceId=105).status_code == 200
    importer = Bearer(server.url, user_token(server.url, "importer@acme.test"))
    assert importer.get(VALUES, deviceId=109).status_code == 200
    assert importer.get(VALUES, deviceId=105).status_code == 404


def test_wrong_password_is_invalid_grant(server: Server) -> None:
    response = password_grant(server.url, "admin@acme.test", "not-the-password")
    assert_oauth_error(response, 400, "invalid_grant")


def test_unknown_user_is_invalid_grant(server: Server) -> None:
    response = password_grant(server.url, "nobody@acme.test", "whatever-password")
    assert_oauth_error(response, 400, "invalid_grant")


def test_user_of_another_organization_is_invalid_grant(server: Server) -> None:
    # admin@globex.test is a user of Globex; Acme's client cannot log them in.
    response = password_grant(server.url, "admin@globex.test", "globex-password-1")
    assert_oauth_error(response, 400, "invalid_grant")
    # Through Globex's own client the same credentials work.
    own = password_grant(server.url, "admin@globex.test", "globex-password-1", GLOBEX)
    assert_token_body(own)


def test_user_credentials_without_password_is_invalid_request(server: Server) -> None:
    response = token_request(
        server.url,
        data={"grant_type": "password", "username": "admin@acme.test"},
        auth=ACME,
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_user_credentials_need_client_authentication(server: Server) -> None:
    response = token_request(
        server.url,
        data={
            "grant_type": "password",
            "username": "admin@acme.test",
            "password": PASSWORDS["admin@acme.test"],
        },
    )
    assert_oauth_error(response, 401, "invalid_client")


# --- refresh tokens -----------------------------------------------------------------------


def test_refresh_rotation_issues_a_working_pair(server: Server) -> None:
    first = assert_token_body(password_grant(server.url, "staff@acme.test", "staff-password-1"))
    second = assert_token_body(refresh(server.url, first["refresh_token"]))
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert can_read(server.url, second["access_token"]) == 200
    # The new refresh token rotates again.
    third = assert_token_body(refresh(server.url, second["refresh_token"]))
    assert can_read(server.url, third["access_token"]) == 200


def test_refresh_keeps_the_user_scope(server: Server) -> None:
    first = assert_token_body(password_grant(server.url, "user@acme.test", "user-password-1"))
    second = assert_token_body(refresh(server.url, first["refresh_token"]))
    assert can_read(server.url, second["access_token"], 101) == 200
    assert can_read(server.url, second["access_token"], 105) == 404


def test_reused_refresh_token_revokes_the_family(server: Server) -> None:
    first = assert_token_body(
        token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    second = assert_token_body(refresh(server.url, first["refresh_token"]))
    assert can_read(server.url, second["access_token"]) == 200

    reused = refresh(server.url, first["refresh_token"])
    assert_oauth_error(reused, 400, "invalid_grant")

    # Reuse detection: everything issued from the reused token is revoked.
    revoked = Bearer(server.url, second["access_token"]).get(VALUES, deviceId=105)
    assert revoked.status_code == 401, revoked.text
    assert revoked.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert_oauth_error(refresh(server.url, second["refresh_token"]), 400, "invalid_grant")


def test_reuse_does_not_revoke_other_families(server: Server) -> None:
    bystander = client_token(server.url)
    first = assert_token_body(
        token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    assert_token_body(refresh(server.url, first["refresh_token"]))
    assert_oauth_error(refresh(server.url, first["refresh_token"]), 400, "invalid_grant")
    assert can_read(server.url, bystander) == 200


def test_refresh_token_of_another_client_is_invalid_grant(server: Server) -> None:
    acme = assert_token_body(
        token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    stolen = refresh(server.url, acme["refresh_token"], GLOBEX)
    assert_oauth_error(stolen, 400, "invalid_grant")
    # The failed attempt did not consume the token: its own client can still rotate it.
    assert_token_body(refresh(server.url, acme["refresh_token"]))


def test_unknown_refresh_token_is_invalid_grant(server: Server) -> None:
    assert_oauth_error(refresh(server.url, "not-a-refresh-token-" * 3), 400, "invalid_grant")


def test_access_token_is_not_a_refresh_token(server: Server) -> None:
    pair = assert_token_body(
        token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    assert_oauth_error(refresh(server.url, pair["access_token"]), 400, "invalid_grant")


def test_refresh_without_token_is_invalid_request(server: Server) -> None:
    response = token_request(server.url, data={"grant_type": "refresh_token"}, auth=ACME)
    assert_oauth_error(response, 400, "invalid_request")


# --- bearer checks ------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic YTpi"])
def test_missing_or_unknown_bearer_is_401(server: Server, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{server.url}{VALUES}", params={"deviceId": 105}, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"]["message"]


def test_expired_access_token_is_401(tmp_path: Path, special_server: list[Server]) -> None:
    # A lifetime of 0 s: every access token is already expired when it is issued.
    running = start_special(tmp_path / "ttl0", special_server, "--access-token-ttl", "0")
    body = assert_token_body(
        token_request(running.url, params={"grant_type": "client_credentials"}, auth=ACME),
        expires_in=0,
    )
    response = Bearer(running.url, body["access_token"]).get(VALUES, deviceId=105)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"]["message"]
    # The refresh token (default lifetime) still works, but yields another expired access token.
    again = assert_token_body(refresh(running.url, body["refresh_token"]), expires_in=0)
    assert can_read(running.url, again["access_token"]) == 401


def test_expired_refresh_token_is_invalid_grant(
    tmp_path: Path, special_server: list[Server]
) -> None:
    running = start_special(tmp_path / "rttl0", special_server, "--refresh-token-ttl", "0")
    body = assert_token_body(
        token_request(running.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    assert can_read(running.url, body["access_token"]) == 200
    assert_oauth_error(refresh(running.url, body["refresh_token"]), 400, "invalid_grant")


# --- secrets at rest ----------------------------------------------------------------------


def database_bytes(data_dir: Path) -> bytes:
    found = b""
    for name in ("pinbase.db", "pinbase.db-wal"):
        path = data_dir / name
        if path.exists():
            found += path.read_bytes()
    assert found, f"no database file in {data_dir}"
    return found


@pytest.mark.sqlite_only
def test_tokens_and_secrets_are_not_stored_in_the_clear(server: Server) -> None:
    pair = assert_token_body(
        token_request(server.url, params={"grant_type": "client_credentials"}, auth=ACME)
    )
    rotated = assert_token_body(refresh(server.url, pair["refresh_token"]))
    user = assert_token_body(password_grant(server.url, "admin@acme.test", "admin-password-1"))
    # Writes are acknowledged only once durable, so the tokens' rows are on disk by now.
    stored = database_bytes(server.data_dir)
    assert b"oauth_tokens" in stored  # sanity: we are reading the right file
    issued = [body[key] for body in (pair, rotated, user) for key in TOKEN_KEYS]
    secrets = [
        *issued,
        ACME[1],
        GLOBEX[1],
        *PASSWORDS.values(),
        "globex-password-1",
        "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga",  # device 101's auth token
    ]
    for secret in secrets:
        assert secret.encode() not in stored, f"{secret!r} is stored in the clear"


# --- rate limits --------------------------------------------------------------------------


def test_organization_rate_limit(tmp_path: Path, special_server: list[Server]) -> None:
    # 5 requests per minute: the bucket refills one request every 12 s, far longer than the
    # six requests below take.
    running = start_special(tmp_path / "rate", special_server, "--org-rate-limit", "5")
    acme = Bearer(running.url, client_token(running.url))
    for _ in range(5):
        assert acme.get(VALUES, deviceId=105).status_code == 200
    limited = acme.get(VALUES, deviceId=105)
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= 12  # one request per 12 s
    assert limited.json()["error"]["message"]

    # The limit is per organization: Globex's requests are still served.
    globex = Bearer(running.url, client_token(running.url, GLOBEX))
    assert globex.get(VALUES, deviceId=201).status_code == 200
    # Every Acme token shares the organization's budget.
    other_acme = Bearer(running.url, user_token(running.url, "admin@acme.test"))
    assert other_acme.get(VALUES, deviceId=105).status_code == 429


def test_import_rate_limit_per_device(tmp_path: Path, special_server: list[Server]) -> None:
    # A burst of 2, then one request per 1000 s.
    running = start_special(
        tmp_path / "imports",
        special_server,
        "--import-rate",
        "0.001",
        "--import-burst",
        "2",
    )
    api = Bearer(running.url, client_token(running.url))

    def import_one(device_id: int, ts: int) -> httpx.Response:
        body = {"deviceId": device_id, "dataStreamId": 2, "values": [{"ts": ts, "value": 7}]}
        return api.post(IMPORT, body)

    assert import_one(105, 1_700_000_000_000).status_code == 204
    assert import_one(105, 1_700_000_001_000).status_code == 204
    limited = import_one(105, 1_700_000_002_000)
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= 1000
    assert "105" in limited.json()["error"]["message"]

    assert import_one(106, 1_700_000_000_000).status_code == 204
    # Live writes to the limited device are not import requests and are not limited.
    live = api.post(UPDATE, {"deviceId": 105, "dataStreamId": 2, "value": 8})
    assert live.status_code == 204, live.text


# --- guessing -----------------------------------------------------------------------------


def assert_throttled(response: httpx.Response, longest: int) -> None:
    """429 in OAuth's shape, with a Retry-After of at most `longest` seconds."""
    assert response.status_code == 429, response.text
    assert set(response.json()) == {"error", "error_description"}
    assert_oauth_error(response, 429, "slow_down")
    assert 1 <= int(response.headers["retry-after"]) <= longest
    assert response.headers["cache-control"] == "no-store"


def test_failed_guesses_are_throttled_per_user_client_and_address(
    tmp_path: Path, special_server: list[Server]
) -> None:
    # Per hour: 3 failures per user, 2 per client, 9 per address (one failure back every
    # 1200 s, 1800 s and 400 s: never within this test).
    running = start_special(
        tmp_path / "guess",
        special_server,
        *("--auth-failure-window", "3600", "--auth-user-failures", "3"),
        *("--auth-client-failures", "2", "--auth-address-failures", "9"),
    )
    url, guesses = running.url, [f"guess-number-{n}" for n in range(4)]
    for guess in guesses[:3]:
        assert_oauth_error(password_grant(url, "user@acme.test", guess), 400, "invalid_grant")
    assert_throttled(password_grant(url, "user@acme.test", guesses[3]), 1200)
    assert_throttled(password_grant(url, "user@acme.test", PASSWORDS["user@acme.test"]), 1200)
    assert_token_body(password_grant(url, "admin@acme.test", PASSWORDS["admin@acme.test"]))

    # an e-mail that names no user is counted alike (nothing tells which e-mails exist)
    for guess in guesses[:3]:
        assert_oauth_error(password_grant(url, "nobody@acme.test", guess), 400, "invalid_grant")
    assert_throttled(password_grant(url, "nobody@acme.test", guesses[3]), 1200)

    # the client's own budget: its right secret is refused too, other clients are not
    wrong = (ACME[0], "not-the-secret-0123456789")
    for _ in range(2):
        response = token_request(url, params={"grant_type": "client_credentials"}, auth=wrong)
        assert_oauth_error(response, 401, "invalid_client")
    assert_throttled(
        token_request(url, params={"grant_type": "client_credentials"}, auth=ACME), 1800
    )
    assert_token_body(password_grant(url, "admin@globex.test", "globex-password-1", GLOBEX))

    # the ninth failure from this address: then nothing more from it is looked at
    assert_oauth_error(refresh(url, "not-a-refresh-token-" * 3, GLOBEX), 400, "invalid_grant")
    throttled = token_request(url, params={"grant_type": "client_credentials"}, auth=GLOBEX)
    assert_throttled(throttled, 400)

    log = running.log.read_text()
    for line in (
        "wrong password; client=acme-backend user=user@acme.test address=127.0.0.1",
        "unknown user; client=acme-backend user=unknown:",
        "wrong client secret; client=acme-backend user=- address=127.0.0.1",
        "unknown or expired refresh token; client=globex-backend user=- address=127.0.0.1",
    ):
        assert f"WARNING pinbase.app.auth: token request failed: {line}" in log, log
    for secret in (*guesses, wrong[1], *PASSWORDS.values()):
        assert secret not in log


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_password_hashing_is_bounded(tmp_path: Path, special_server: list[Server]) -> None:
    # One hash at a time (argon2 at its full cost takes 64 MiB while it runs), two more logins
    # may wait. The suite's hashes are cheap (conftest): these users' are made at full cost.
    full_cost = ("--password-hash-memory", str(64 * 1024))
    target = tmp_path / "hashing"
    applied = pinbase("apply", str(FLEET), "--data-dir", str(target), *full_cost)
    assert applied.returncode == 0, applied.stderr
    running = Server(
        target, *full_cost, *("--password-hash-slots", "1", "--password-hash-queue", "2")
    ).start()
    special_server.append(running)
    assert running.process is not None
    users = list(PASSWORDS)
    assert_token_body(password_grant(running.url, users[0], PASSWORDS[users[0]]))
    before = peak_rss_kib(running.process.pid)  # one hash's memory included

    def login(n: int) -> httpx.Response:
        email = users[n % len(users)]
        return password_grant(running.url, email, PASSWORDS[email])

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(login, range(24)))

    statuses = sorted({a.status_code for a in answers})
    assert statuses in ([200], [200, 503]), statuses
    for answer in answers:
        if answer.status_code == 503:
            assert_oauth_error(answer, 503, "temporarily_unavailable")
            assert answer.headers["retry-after"] == "1"
    grown_mib = (peak_rss_kib(running.process.pid) - before) / 1024
    assert grown_mib < 100, f"peak RSS grew by {grown_mib:.0f} MiB"  # not 64 MiB per request
    assert_token_body(password_grant(running.url, users[1], PASSWORDS[users[1]]))
