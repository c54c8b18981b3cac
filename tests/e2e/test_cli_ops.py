"""The operator commands against a running server: `pinbase devices`, `pinbase device token
--rotate` (the device's live connections close, the old token is refused), `pinbase device
which`, `pinbase client secret --rotate`, `pinbase user password`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_hardware import INVALID_TOKEN, LOGIN, OK, RawDevice
from test_mqtt import connect_bytes, recv_exactly

from helpers import (
    ACME,
    DEADLINE,
    FLEET,
    PASSWORDS,
    Server,
    apply_fleet,
    client_token,
    database_args,
    free_port,
    pinbase,
    wait_for,
)

TOKENS = {
    101: "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga",
    102: "OpsTestToken00000000000000000102",
    103: "OpsTestToken00000000000000000103",
}
CONNECTED = "/external/api/isHardwareConnected"
UPDATE = "/external/api/update"


class Env:
    def __init__(self, data_dir: Path, server: Server) -> None:
        self.data_dir = data_dir
        self.server = server
        self.url = server.url

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`pinbase ARGS` on the server's database, with `stdin` as its standard input."""
        return subprocess.run(
            [
                *(sys.executable, "-m", "pinbase", *args),
                *("--data-dir", str(self.data_dir), *database_args(self.data_dir)),
            ],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=False,
        )


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"ops-{backend}")
    document: dict[str, Any] = yaml.safe_load(FLEET.read_text())
    devices = document["organizations"][0]["devices"]
    for device in devices:
        if device["id"] in TOKENS:
            device["token"] = TOKENS[device["id"]]
    fleet = data_dir / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(document))
    apply_fleet(data_dir, fleet)
    server = Server(data_dir)
    server.hardware_port, server.mqtt_port = free_port(), free_port()
    server.start()
    yield Env(data_dir, server)
    server.stop()


def device_get(env: Env, token: str) -> httpx.Response:
    return httpx.get(env.url + CONNECTED, params={"token": token}, timeout=DEADLINE)


def closed(sock: socket.socket) -> bool:
    """True once the server closed the connection (what it still sends is read past)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_rotating_a_device_token_closes_its_connections_and_refuses_the_old_token(
    env: Env,
) -> None:
    hardware = RawDevice(env.server.hardware_port)
    mqtt = socket.create_connection(("127.0.0.1", env.server.mqtt_port), timeout=DEADLINE)
    try:
        assert hardware.login(TOKENS[102], LOGIN) == OK
        mqtt.sendall(connect_bytes(TOKENS[103]))
        assert recv_exactly(mqtt, 4) == b"\x20\x02\x00\x00"  # CONNACK, accepted

        rotated = {}
        for device_id in (102, 103):
            result = env.cli("device", "token", str(device_id), "--rotate")
            assert result.returncode == 0, result.stderr
            (token,) = result.stdout.split()
            assert len(token) == 32 and token != TOKENS[device_id]
            rotated[device_id] = token

        assert closed(hardware.sock)
        assert closed(mqtt)
        for device_id, token in rotated.items():
            old = TOKENS[device_id]
            wait_for("the old token refused", lambda old=old: device_get(env, old).is_client_error)
            assert device_get(env, token).status_code == 200
        for token, status in ((TOKENS[102], INVALID_TOKEN), (rotated[102], OK)):
            again = RawDevice(env.server.hardware_port)
            try:
                assert again.login(token, LOGIN) == status
            finally:
                again.close()
    finally:
        hardware.close()
        mqtt.close()


def test_device_token_without_rotate_cannot_show_it_and_which_finds_the_device(
    env: Env,
) -> None:
    message = one_error(env.cli("device", "token", "101"), 1)
    assert "--rotate" in message and "pinbase device which" in message
    found = env.cli("device", "which", stdin=TOKENS[101] + "\n")
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[0] == "101"
    assert one_error(env.cli("device", "which", stdin="x" * 32 + "\n"), 1) == (
        "error: no device has this token"
    )


def test_rotating_an_unknown_device_is_one_error_line(env: Env) -> None:
    assert (
        one_error(env.cli("device", "token", "999999", "--rotate"), 1) == "error: no device 999999"
    )


def test_rotating_a_client_secret_revokes_its_tokens(env: Env) -> None:
    old_token = client_token(env.url, ACME)
    headers = {"Authorization": f"Bearer {old_token}"}
    values = env.url + "/api/v2/organization/device/datastreams"
    assert httpx.get(values, params={"deviceId": 101}, headers=headers).status_code == 200

    result = env.cli("client", "secret", ACME[0], "--rotate")
    assert result.returncode == 0, result.stderr
    (secret,) = result.stdout.split()

    assert httpx.get(values, params={"deviceId": 101}, headers=headers).status_code == 401
    grant = env.url + "/oauth2/token"
    refused = httpx.post(grant, params={"grant_type": "client_credentials"}, auth=ACME)
    assert refused.status_code == 401
    assert client_token(env.url, (ACME[0], secret))


def test_setting_a_password_from_stdin_revokes_the_users_tokens(env: Env) -> None:
    email = "staff@acme.test"
    credentials = (ACME[0], env.cli("client", "secret", ACME[0], "--rotate").stdout.strip())

    def login(password: str) -> httpx.Response:
        return httpx.post(
            env.url + "/oauth2/token",
            data={"grant_type": "password", "username": email, "password": password},
            auth=credentials,
        )

    first = login(PASSWORDS[email])
    assert first.status_code == 200, first.text
    headers = {"Authorization": f"Bearer {first.json()['access_token']}"}
    values = env.url + "/api/v2/organization/device/datastreams"
    assert httpx.get(values, params={"deviceId": 101}, headers=headers).status_code == 200

    changed = env.cli("user", "password", email, stdin="a-new-password-42\n")
    assert changed.returncode == 0, changed.stderr
    assert "a-new-password-42" not in changed.stdout + changed.stderr
    assert httpx.get(values, params={"deviceId": 101}, headers=headers).status_code == 401
    assert login(PASSWORDS[email]).status_code in (400, 401)
    assert login("a-new-password-42").status_code == 200

    generated = env.cli("user", "password", email, "--generate")
    assert generated.returncode == 0, generated.stderr
    (password,) = generated.stdout.split()
    assert login("a-new-password-42").status_code in (400, 401)
    assert login(password).status_code == 200


def test_a_short_password_or_unknown_user_is_refused_in_one_line(env: Env) -> None:
    assert "at least 8 characters" in one_error(
        env.cli("user", "password", "staff@acme.test", stdin="short\n"), 1
    )
    assert one_error(env.cli("user", "password", "nobody@acme.test", "--generate"), 1) == (
        "error: no user nobody@acme.test"
    )


def test_devices_lists_filters_and_prints_json(env: Env) -> None:
    assert httpx.get(env.url + UPDATE, params={"token": TOKENS[101], "v1": "7"}).status_code == 200

    listed = env.cli("devices", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[101]["name"] == "Roof" and rows[101]["owner"] == "user@acme.test"
    assert rows[101]["online"] is True and rows[101]["lastSeen"] is not None
    assert rows[102]["product"] == "Weather Station Pro"

    def ids(*args: str) -> set[int]:
        result = env.cli("devices", "--json", *args)
        assert result.returncode == 0, result.stderr
        return {row["id"] for row in json.loads(result.stdout)}

    assert ids("--online") == {101} | {i for i, r in rows.items() if r["online"]}
    assert 101 not in ids("--offline")
    assert ids("--owner", "user@acme.test") == {
        i for i, r in rows.items() if r["owner"] == "user@acme.test"
    }
    assert ids("--search", "roof") == {101}
    assert 102 in ids("--product", "Weather Station")  # a root product takes its variants
    assert 102 in ids("--product", "Weather Station Pro")

    table = env.cli("devices", "--search", "Roof")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "product", "owner", "online", "last", "seen"]
    assert lines[1].split()[:2] == ["101", "Roof"] and " yes " in lines[1]


def test_the_commands_refuse_a_foreign_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "other.db").write_bytes(b"not a database, not pinbase's" * 100)
    result = pinbase("devices", "--database", f"sqlite:///{tmp_path / 'other.db'}")
    assert "other.db" in one_error(result, 2)
