"""Several `pinbase serve` processes on one PostgreSQL database behave as one server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_live import Listener  # e2e/test_live.py

import helpers

POSTGRES = os.environ.get("PINBASE_TEST_POSTGRES", "")
pytestmark = [
    pytest.mark.own_backends,
    pytest.mark.skipif(not POSTGRES, reason="needs PINBASE_TEST_POSTGRES"),
]
UPDATE = "/api/v1/organization/device/datastream"
VALUES = "/api/v2/organization/device/datastreams"
HISTORY = "/api/v1/organization/device/datastream/history"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
DEADLINE = 30.0  # bounds waiting for something that must happen; never decides a result


def fresh_database(name: str) -> str:
    base = POSTGRES.rsplit("/", 1)[0]
    subprocess.run(
        [
            "psql",
            POSTGRES,
            "-qc",
            f"DROP DATABASE IF EXISTS {name}",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        capture_output=True,
    )
    return f"{base}/{name}"


@pytest.fixture
def started() -> Iterator[list[helpers.Server]]:
    running: list[helpers.Server] = []
    yield running
    for server in running:
        if server.process is not None and server.process.poll() is None:
            server.stop()


def start(
    tmp_path: Path, name: str, url: str, started: list[helpers.Server], *extra: str
) -> helpers.Server:
    server = helpers.Server(tmp_path / name, "--database", url, *extra).start()
    started.append(server)
    return server


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_pair(
    folder: Path, started: list[helpers.Server]
) -> tuple[helpers.Server, helpers.Server, str]:
    """Two processes on a new database with the test fleet, and the database's URL."""
    url = fresh_database(f"mp_{os.getpid()}_{time.monotonic_ns()}")
    result = helpers.pinbase("apply", str(helpers.FLEET), "--database", url)
    assert result.returncode == 0, result.stderr
    return start(folder, "a", url, started), start(folder, "b", url, started), url


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[helpers.Server, helpers.Server, str]]:
    """Two processes shared by the tests of this module that leave both running, each on
    devices, datastreams and users of its own."""
    running: list[helpers.Server] = []
    try:
        yield start_pair(tmp_path_factory.mktemp("pair"), running)
    finally:
        for server in running:
            server.stop()


def test_a_write_through_one_is_read_through_the_other(
    pair: tuple[helpers.Server, helpers.Server, str],
) -> None:
    first, second, _ = pair
    token = helpers.client_token(first.url)  # issued by one process, honoured by the other
    response = httpx.post(
        first.url + UPDATE,
        json={"deviceId": 105, "dataStreamId": 1, "value": 21.5},
        headers=auth(token),
    )
    assert response.status_code == 204
    values = httpx.get(
        second.url + VALUES, params={"deviceId": 105, "dataStreamIds": 1}, headers=auth(token)
    ).json()
    assert values[0]["value"] == 21.5
    page = httpx.get(
        second.url + HISTORY,
        params={"deviceId": 105, "dataStreamId": 1, "from": 0, "to": 2**62},
        headers=auth(token),
    ).json()
    assert page["totalElements"] == 1 and page["content"][0]["value"] == 21.5


def test_live_subscribers_of_the_other_process_are_notified(
    pair: tuple[helpers.Server, helpers.Server, str],
) -> None:
    first, second, _ = pair
    token = helpers.client_token(first.url)
    listener = Listener(second.url, token, {"deviceIds": "106"})
    try:
        response = httpx.post(
            first.url + UPDATE,
            json={"deviceId": 106, "dataStreamId": 3, "value": "from the first process"},
            headers=auth(token),
        )
        assert response.status_code == 204
        kind, data = listener.next()
        assert (kind, data["deviceId"], data["value"]) == ("value", 106, "from the first process")
    finally:
        listener.close()


def test_provisioning_reaches_every_process(
    pair: tuple[helpers.Server, helpers.Server, str], tmp_path: Path
) -> None:
    first, second, url = pair
    fleet = tmp_path / "more.yaml"
    fleet.write_text(
        helpers.FLEET.read_text().replace(
            "      - {id: 110, name: Scratch, product: 10}",
            "      - {id: 110, name: Scratch, product: 10}\n"
            "      - {id: 111, name: Added later, product: 10}",
        )
    )
    assert helpers.pinbase("apply", str(fleet), "--database", url).returncode == 0
    for server in (first, second):
        token = helpers.client_token(server.url)
        deadline = time.monotonic() + DEADLINE
        status = 0
        while time.monotonic() < deadline:
            status = httpx.get(
                server.url + VALUES, params={"deviceId": 111}, headers=auth(token)
            ).status_code
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200


def test_revocations_are_refused_at_once_by_every_process(
    pair: tuple[helpers.Server, helpers.Server, str], tmp_path: Path
) -> None:
    """A token cached by both processes is refused by both right after it is revoked: its
    family by a reused refresh token (the revoking transaction notifies the others), its user
    by a password change (`pinbase apply` bumps the catalog generation, notified likewise)."""
    first, second, url = pair

    def token_request(server: helpers.Server, **data: str) -> dict[str, str]:
        response = httpx.post(server.url + "/oauth2/token", data=data, auth=helpers.ACME)
        body: dict[str, str] = response.json()
        return body

    def read(server: helpers.Server, token: str) -> int:
        response = httpx.get(server.url + VALUES, params={"deviceId": 101}, headers=auth(token))
        return response.status_code

    original = token_request(first, grant_type="client_credentials")
    rotated = token_request(
        first, grant_type="refresh_token", refresh_token=original["refresh_token"]
    )
    assert read(second, rotated["access_token"]) == 200  # cached by the second process
    reused = token_request(
        first, grant_type="refresh_token", refresh_token=original["refresh_token"]
    )
    assert reused["error"] == "invalid_grant"
    assert read(second, rotated["access_token"]) == 401  # at once, not after its cache's 5 s

    email = "user@acme.test"
    issued = token_request(
        first, grant_type="password", username=email, password=helpers.PASSWORDS[email]
    )
    assert [read(server, issued["access_token"]) for server in (first, second)] == [200, 200]
    fleet = tmp_path / "password.yaml"
    text = re.sub(r', password: "(?!user-password-1)[^"]*"', "", helpers.FLEET.read_text())
    fleet.write_text(text.replace('"user-password-1"', '"user-password-2"'))
    assert helpers.pinbase("apply", str(fleet), "--database", url).returncode == 0
    assert [read(server, issued["access_token"]) for server in (second, first)] == [401, 401]
    renewed = token_request(
        second, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert renewed["error"] == "invalid_grant"


def test_the_organization_rate_limit_holds_across_processes(
    tmp_path: Path, started: list[helpers.Server]
) -> None:
    url = fresh_database(f"mprl_{os.getpid()}_{time.monotonic_ns()}")
    assert helpers.pinbase("apply", str(helpers.FLEET), "--database", url).returncode == 0
    first = start(tmp_path, "a", url, started, "--org-rate-limit", "6")
    second = start(tmp_path, "b", url, started, "--org-rate-limit", "6")
    token = helpers.client_token(first.url)
    statuses = [
        httpx.get(server.url + VALUES, params={"deviceId": 101}, headers=auth(token)).status_code
        for server in (first, second) * 4
    ]
    assert statuses[:6] == [200] * 6
    assert statuses[6:] == [429, 429]


def test_two_processes_writing_one_datastream_keep_every_acknowledged_value(
    pair: tuple[helpers.Server, helpers.Server, str],
) -> None:
    """Writers of one datastream through both processes share milliseconds; each 204 is still
    its own history point (the processes' writes are told apart by their writer ids)."""
    first, second, _ = pair
    token = helpers.client_token(first.url)
    writers, requests = 16, 100
    acknowledged: list[list[str]] = [[] for _ in range(writers)]
    go = threading.Barrier(writers)

    def writer(index: int) -> None:
        server = (first, second)[index % 2]
        with httpx.Client(base_url=server.url, headers=auth(token), timeout=60) as http:
            go.wait()
            for number in range(requests):
                value = f"{index}-{number}"
                response = http.post(
                    UPDATE, json={"deviceId": 107, "dataStreamId": 3, "value": value}
                )
                assert response.status_code == 204, response.text
                acknowledged[index].append(value)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = sorted(value for values in acknowledged for value in values)
    assert len(sent) == writers * requests
    for server in (first, second):
        stored: list[str] = []
        for page in range(2):
            body = httpx.get(
                server.url + HISTORY,
                params={
                    "deviceId": 107,
                    "dataStreamId": 3,
                    "from": 0,
                    "to": 2**62,
                    "size": 1000,
                    "page": page,
                },
                headers=auth(token),
            ).json()
            assert body["totalElements"] == len(sent)
            stored += [point["value"] for point in body["content"]]
        assert sorted(stored) == sent


def test_a_killed_process_loses_no_acknowledged_write(
    tmp_path: Path, started: list[helpers.Server]
) -> None:
    first, second, _ = start_pair(tmp_path, started)  # its own: one is killed
    token = helpers.client_token(first.url)
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def writer(device: int) -> None:
        with httpx.Client(base_url=first.url, headers=auth(token)) as http:
            for number in range(400):
                value = f"{device}-{number}"
                try:
                    response = http.post(
                        UPDATE, json={"deviceId": device, "dataStreamId": 3, "value": value}
                    )
                except httpx.TransportError:
                    return
                if response.status_code != 204:
                    return
                with lock:
                    acknowledged.append(value)
                    if len(acknowledged) >= 300:
                        enough.set()
                time.sleep(0.002)  # spaces writes apart in time, so each has its own ts

    threads = [threading.Thread(target=writer, args=(d,)) for d in (105, 106, 107, 108)]
    for thread in threads:
        thread.start()
    assert enough.wait(DEADLINE * 4)
    first.kill()
    for thread in threads:
        thread.join()
    stored: set[str] = set()
    for device in (105, 106, 107, 108):
        page = httpx.get(
            second.url + HISTORY,
            params={"deviceId": device, "dataStreamId": 3, "from": 0, "to": 2**62, "size": 1000},
            headers=auth(token),
        ).json()
        stored |= {point["value"] for point in page["content"]}
    missing = [value for value in acknowledged if value not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"


def test_a_database_outage_answers_503_and_the_server_recovers(
    tmp_path: Path, started: list[helpers.Server]
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="pinbase-outage-"))
    workdir.chmod(0o755)  # the cluster runs as the postgres user
    cluster = workdir / "pg"
    port = helpers.free_port()
    url = subprocess.run(
        [str(SCRIPTS / "pg-cluster"), "start", str(cluster), str(port)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        assert helpers.pinbase("apply", str(helpers.FLEET), "--database", url).returncode == 0
        server = start(tmp_path, "data", url, started)
        token = helpers.client_token(server.url)
        ok = httpx.post(
            server.url + UPDATE,
            json={"deviceId": 105, "dataStreamId": 1, "value": 1.5},
            headers=auth(token),
        )
        assert ok.status_code == 204

        subprocess.run([str(SCRIPTS / "pg-cluster"), "stop", str(cluster)], check=True)
        down = httpx.post(
            server.url + UPDATE,
            json={"deviceId": 105, "dataStreamId": 1, "value": 2.5},
            headers=auth(token),
        )
        assert down.status_code == 503
        assert down.json()["error"]["message"]
        read = httpx.get(server.url + VALUES, params={"deviceId": 105}, headers=auth(token))
        assert read.status_code == 503

        subprocess.run(
            [str(SCRIPTS / "pg-cluster"), "start", str(cluster), str(port)],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + DEADLINE
        status = 0
        while time.monotonic() < deadline:
            status = httpx.post(
                server.url + UPDATE,
                json={"deviceId": 105, "dataStreamId": 1, "value": 3.5},
                headers=auth(token),
            ).status_code
            if status == 204:
                break
            time.sleep(0.2)
        assert status == 204
        values = httpx.get(
            server.url + VALUES, params={"deviceId": 105}, headers=auth(token)
        ).json()
        assert values[0]["value"] == 3.5
    finally:
        subprocess.run([str(SCRIPTS / "pg-cluster"), "stop", str(cluster)], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def test_devices_changed_through_one_process_are_seen_by_the_other(
    pair: tuple[helpers.Server, helpers.Server, str],
) -> None:
    """Created, renamed, given a new token and deleted through the Platform API of one
    process: the other's pages, devices and device API follow (the catalog generation)."""
    first, second, _ = pair
    token = helpers.client_token(first.url)
    device = "/api/v1/organization/device"
    created = httpx.post(
        first.url + device + "/create",
        json={"templateId": 10, "name": "Made in the first"},
        headers=auth(token),
    )
    assert created.status_code == 201, created.text
    made = created.json()

    def shown(server: helpers.Server) -> dict[str, object] | None:
        response = httpx.get(
            server.url + device, params={"deviceId": made["id"]}, headers=auth(token)
        )
        return response.json() if response.status_code == 200 else None

    def device_write(server: helpers.Server, device_token: str) -> int:
        params = {"token": device_token, "v1": "1"}
        return httpx.get(server.url + "/external/api/update", params=params).status_code

    assert helpers.wait_for("the device in the second", lambda: shown(second))["name"] == (
        "Made in the first"
    )
    assert device_write(second, made["token"]) == 200
    renamed = httpx.put(
        second.url + device,
        params={"deviceId": made["id"]},
        json={"name": "Renamed in the second"},
        headers=auth(token),
    )
    assert renamed.status_code == 200, renamed.text
    helpers.wait_for(
        "the name in the first",
        lambda: (shown(first) or {}).get("name") == "Renamed in the second",
    )
    answer = httpx.post(
        first.url + device + "/provision/reprovision/token",
        json={"deviceId": made["id"]},
        headers=auth(token),
    )
    assert answer.status_code == 200, answer.text
    new = answer.json()["token"]
    helpers.wait_for("the old token refused", lambda: device_write(second, made["token"]) == 400)
    assert device_write(second, new) == 200
    gone = httpx.delete(second.url + device, params={"deviceId": made["id"]}, headers=auth(token))
    assert gone.status_code == 204
    helpers.wait_for("the deletion in the first", lambda: shown(first) is None)
    assert device_write(first, new) == 400


def test_users_changed_through_one_process_are_seen_by_the_other(
    pair: tuple[helpers.Server, helpers.Server, str],
) -> None:
    """A user invited through one process is listed by the other; a role changed through the
    other revokes, in the first, a token the first issued (the catalog generation)."""
    first, second, _ = pair
    token = helpers.client_token(first.url)
    invited = httpx.post(
        first.url + "/api/v1/organization/users/invite",
        json={"email": "new@acme.test", "name": "New Hand", "roleId": 3},
        headers=auth(token),
    )
    assert invited.status_code == 201, invited.text

    def found(server: helpers.Server, email: str) -> list[dict[str, object]]:
        response = httpx.get(
            server.url + "/api/v1/organization/search/users",
            params={"query": email},
            headers=auth(token),
        )
        assert response.status_code == 200, response.text
        content: list[dict[str, object]] = response.json()["content"]
        return content

    (user,) = helpers.wait_for(
        "the invited user in the second", lambda: found(second, "new@acme.test") or None
    )
    assert (user["email"], user["status"], user["roleId"]) == ("new@acme.test", "Pending", 3)

    staff = helpers.user_token(first.url, "staff@acme.test")

    def staff_reads() -> int:
        response = httpx.get(
            first.url + "/api/v2/organization/device/datastreams",
            params={"deviceId": 101},
            headers=auth(staff),
        )
        return response.status_code

    assert staff_reads() == 200
    (staff_user,) = found(second, "staff@acme.test")
    changed = httpx.put(
        second.url + "/api/v1/organization/users/role",
        params={"userId": staff_user["id"], "roleId": 3},
        headers=auth(token),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "User"
    helpers.wait_for("the staff token refused in the first", lambda: staff_reads() == 401)
