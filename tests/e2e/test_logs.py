"""What an operator reads: start-up errors in one line, log lines with timestamps, the access
log, device and OAuth lines, `--log-format json`, and never a secret in the log."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_hardware import INVALID_TOKEN, LOGIN, OK, RawDevice
from test_mqtt import connect_bytes, recv_exactly

from helpers import (
    ACME,
    PASSWORDS,
    Server,
    apply_fleet,
    free_port,
    pinbase,
    wait_for,
)

ROOF = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"  # device 101's token in the fleet file
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def one_line_error(result: subprocess.CompletedProcess[str], *named: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in named:
        assert name in lines[0], lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def test_version() -> None:
    result = pinbase("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"pinbase \d+\.\d+\.\d+\n", result.stdout)


def test_a_busy_port_is_one_line_under_serve_and_demo(tmp_path: Path, busy_port: int) -> None:
    off = ("--hardware-port", "0", "--mqtt-port", "0")
    serve = pinbase("serve", "--port", str(busy_port), "--data-dir", str(tmp_path), *off)
    one_line_error(serve, "--port", str(busy_port), "in use")
    device = pinbase("serve", "--port", str(free_port()), "--data-dir", str(tmp_path),
                     "--hardware-port", "0", "--mqtt-port", str(busy_port))  # fmt: skip
    one_line_error(device, "--mqtt-port", str(busy_port))
    demo = pinbase("demo", "--port", str(busy_port), *off)
    one_line_error(demo, "--port", str(busy_port))
    assert demo.stdout == ""  # nothing printed before the ports were checked


def test_a_missing_tls_file_and_an_invalid_flag_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    tls = pinbase(
        "serve", "--port", str(free_port()), "--data-dir", str(tmp_path),
        "--hardware-port", "0", "--mqtt-port", "0", "--mqtt-tls-port", str(free_port()),
        "--tls-cert", str(missing), "--tls-key", str(missing),
    )  # fmt: skip
    one_line_error(tls, "--tls-cert", str(missing))
    one_line_error(pinbase("serve", "--log-level", "chatty"), "--log-level", "chatty")
    one_line_error(pinbase("demo", "--port", "eighty"), "--port")


def test_an_unusable_data_directory_is_one_line(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    result = pinbase(
        "serve", "--port", str(free_port()), "--hardware-port", "0", "--mqtt-port", "0",
        "--database", f"sqlite:///{not_a_directory}/pinbase.db",
    )  # fmt: skip
    one_line_error(result, str(not_a_directory))


@pytest.fixture
def logged(backend: str, tmp_path: Path) -> Iterator[Server]:
    apply_fleet(tmp_path)
    server = Server(tmp_path, "--log-level", "info", "--auth-failure-logs", "1000")
    server.hardware_port, server.mqtt_port = free_port(), free_port()
    yield server.start()
    if server.process is not None and server.process.poll() is None:
        server.stop()


def session(server: Server) -> list[str]:
    """OAuth grants (client credentials, password, refresh), failed ones, the device HTTP
    API, hardware and MQTT logins good and bad; the secrets it used."""
    token_url = server.url + "/oauth2/token"
    email, password = "admin@acme.test", PASSWORDS["admin@acme.test"]
    granted = httpx.post(token_url, params={"grant_type": "client_credentials"}, auth=ACME)
    body = {"grant_type": "password", "username": email, "password": password}
    user = httpx.post(token_url, data=body, auth=ACME).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": user["refresh_token"]}
    refreshed = httpx.post(
        token_url, data={**refresh, **dict(zip(("client_id", "client_secret"), ACME, strict=True))}
    ).json()
    wrong_secret = "wrong-secret-0123456789"
    httpx.post(token_url, params={"grant_type": "client_credentials"}, auth=(ACME[0], wrong_secret))
    wrong_password = "not-the-password-4242"
    httpx.post(token_url, data={**body, "password": wrong_password}, auth=ACME)
    access = granted.json()["access_token"]
    values = server.url + "/api/v2/organization/device/datastreams"
    httpx.get(values, params={"deviceId": 101}, headers={"Authorization": f"Bearer {access}"})
    assert (
        httpx.get(
            server.url + "/external/api/update", params={"token": ROOF, "v1": "3"}
        ).status_code
        == 200
    )
    bad_device = "BadToken0000000000000000000000xy"
    httpx.get(server.url + "/external/api/update", params={"token": bad_device, "v1": "3"})

    device = RawDevice(server.hardware_port)
    stranger = RawDevice(server.hardware_port)
    mqtt = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=30)
    try:
        assert device.login(ROOF, LOGIN) == OK
        assert stranger.login(bad_device, LOGIN) == INVALID_TOKEN
        mqtt.sendall(connect_bytes(ROOF))  # replaces the hardware connection
        assert recv_exactly(mqtt, 4) == b"\x20\x02\x00\x00"
    finally:
        device.close()
        stranger.close()
        mqtt.close()
    return [
        ACME[1], password, access, user["access_token"], user["refresh_token"],
        refreshed["access_token"], refreshed["refresh_token"], wrong_secret, wrong_password,
        ROOF, bad_device,
    ]  # fmt: skip


def test_a_session_logs_what_happened_and_no_secret(logged: Server) -> None:
    secrets = session(logged)
    wait_for(
        "the MQTT disconnect line",
        lambda: "device 101 disconnected (mqtt)" in logged.log.read_text(),
    )
    assert logged.stop() == 0
    text = logged.log.read_text()
    for secret in secrets:
        assert secret not in text, f"a secret is in the log: {secret[:4]}..."
    lines = text.splitlines()
    assert all(TIMESTAMP.match(line) for line in lines), [
        entry for entry in lines if not TIMESTAMP.match(entry)
    ]
    access = [line for line in lines if " INFO pinbase.access: " in line]
    assert any("POST /oauth2/token?grant_type=client_credentials 200 " in entry for entry in access)
    assert any(
        "GET /external/api/update?token=[redacted]&v1=3 200 " in entry and "org=1" in entry
        for entry in access
    )
    assert any(
        "GET /api/v2/organization/device/datastreams?deviceId=101 200 " in entry
        and " 127.0.0.1 org=1" in entry
        for entry in access
    )
    assert any("token request failed: wrong client secret" in line for line in lines)
    assert any("token request failed: wrong password" in line for line in lines)
    assert any("device 101 connected (hardware)" in line for line in lines)
    assert any("device 101 connected (mqtt)" in line for line in lines)
    assert any("invalid token" in line.lower() and "hardware" in line for line in lines)


def test_json_log_lines_are_one_object_each(backend: str, tmp_path: Path) -> None:
    apply_fleet(tmp_path)
    server = Server(tmp_path, "--log-level", "info", "--log-format", "json").start()
    try:
        assert (
            httpx.get(
                server.url + "/external/api/update", params={"token": ROOF, "v1": "5"}
            ).status_code
            == 200
        )
        wait_for("the access line", lambda: "/external/api/update" in server.log.read_text())
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    (access,) = [
        r for r in records if r["logger"] == "pinbase.access" and r["path"].startswith("/external/")
    ]
    assert access["method"] == "GET" and access["status"] == 200 and access["org"] == 1
    assert access["path"] == "/external/api/update?token=[redacted]&v1=5"
    assert ROOF not in server.log.read_text()


def test_the_access_log_is_off_below_info(server: Server) -> None:
    before = server.log.read_text()
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert server.log.read_text() == before  # the shared server logs at warning
