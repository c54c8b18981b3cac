"""The server process: health, stopping on signals, where the database lives, limits, 404s."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from helpers import (
    ACME,
    FLEET,
    Bearer,
    Server,
    apply_fleet,
    client_token,
    pinbase,
)
from pinbase.store.sqlite.schema import SCHEMA_VERSION

UPDATE = "/api/v1/organization/device/datastream"
HISTORY = "/api/v1/organization/device/datastream/history"
VALUES = "/api/v2/organization/device/datastreams"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any PINBASE_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINBASE_")}
    return {**env, **extra}


class CustomServer(Server):
    """A `pinbase serve` started with exactly `flags` and `env` (default: no PINBASE_* variable),
    in the working directory `workdir`; unlike `Server`, no `--data-dir` is passed."""

    def __init__(self, workdir: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.flags = flags
        self.cwd = workdir
        self.env = clean_env() if env is None else env

    def arguments(self) -> list[str]:
        command = [sys.executable, "-m", "pinbase", "serve", "--port", str(self.port)]
        # Device listeners as `Server` configures them (fixed default ports would collide).
        command += ["--hardware-port", str(self.hardware_port)]
        command += ["--mqtt-port", str(self.mqtt_port)]
        return [*command, "--log-level", "warning", *self.flags]


@pytest.fixture
def started() -> Iterator[list[Server]]:
    """Servers a test starts; any still running at teardown are killed."""
    servers: list[Server] = []
    yield servers
    for running in servers:
        running.kill()


def write_status(api: Bearer, device_id: int, text: str) -> None:
    response = api.post(UPDATE, {"deviceId": device_id, "dataStreamId": 3, "value": text})
    assert response.status_code == 204, response.text


def status_history(api: Bearer, device_id: int) -> list[str]:
    response = api.get(
        HISTORY, deviceId=device_id, dataStreamId=3, **{"from": 0, "to": 2**62}, size=1000
    )
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json()["content"]]


def current_status(api: Bearer, device_id: int) -> object:
    response = api.get(VALUES, deviceId=device_id, dataStreamIds=3)
    assert response.status_code == 200, response.text
    (value,) = response.json()
    return value.get("value")


def query_db(path: Path, sql: str) -> tuple[object, ...]:
    with closing(sqlite3.connect(path)) as conn:
        row: tuple[object, ...] = conn.execute(sql).fetchone()
        return row


# --- running ------------------------------------------------------------------------------


def test_healthz(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "storage": "ok"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_path_is_404_with_error_body(server: Server, method: str) -> None:
    response = httpx.request(method, f"{server.url}/api/v1/organization/nothing-here")
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]["message"]
    assert "/api/v1/organization/nothing-here" in message


# --- stopping -----------------------------------------------------------------------------


def test_a_signal_stops_the_server_with_exit_code_0_and_acknowledged_writes_survive(
    tmp_path: Path, started: list[Server]
) -> None:
    """SIGTERM, then SIGINT: each stops the server with exit code 0, and the next start serves
    the value written before it, current and in the history."""
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    written: list[str] = []

    def restart() -> tuple[Server, Bearer]:
        running = Server(data_dir).start()
        started.append(running)
        api = Bearer(running.url, client_token(running.url))
        if written:
            assert current_status(api, 105) == written[-1]
            assert status_history(api, 105) == written[::-1]
        return running, api

    for sig in (signal.SIGTERM, signal.SIGINT):
        running, api = restart()
        write_status(api, 105, f"before {sig.name}")
        written.append(f"before {sig.name}")
        code = running.stop(sig)
        assert code == 0, f"exit code {code} after {sig.name}; log:\n{running.log.read_text()}"
    restart()


# --- where the database lives ------------------------------------------------------------


@pytest.mark.sqlite_only
def test_database_flag_selects_the_file(tmp_path: Path, started: list[Server]) -> None:
    database = tmp_path / "elsewhere" / "fleet.sqlite"
    url = f"sqlite:///{database}"
    result = pinbase("apply", str(FLEET), "--database", url)
    assert result.returncode == 0, result.stderr
    assert database.is_file()

    workdir = tmp_path / "work"
    running = CustomServer(workdir, "--database", url).start()
    started.append(running)
    # The fleet applied to that file is what the server serves, and writes land in it.
    api = Bearer(running.url, client_token(running.url))
    write_status(api, 105, "in the chosen file")
    running.stop()
    assert query_db(database, "SELECT count(*) FROM history WHERE device_id = 105") == (1,)
    assert not (workdir / "pinbase-data").exists()


@pytest.mark.sqlite_only
def test_database_flag_wins_over_data_dir(tmp_path: Path, started: list[Server]) -> None:
    database = tmp_path / "chosen.db"
    running = Server(tmp_path / "data", "--database", f"sqlite:///{database}").start()
    started.append(running)
    assert database.is_file()
    assert not (tmp_path / "data" / "pinbase.db").exists()


@pytest.mark.sqlite_only
def test_data_dir_environment_variable(tmp_path: Path, started: list[Server]) -> None:
    data_dir = tmp_path / "from-env"
    env = clean_env(PINBASE_DATA_DIR=str(data_dir))
    result = pinbase("apply", str(FLEET), env={"PINBASE_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    assert (data_dir / "pinbase.db").is_file()

    workdir = tmp_path / "work"
    running = CustomServer(workdir, env=env).start()
    started.append(running)
    assert client_token(running.url, ACME)  # the fleet in $PINBASE_DATA_DIR is served
    assert not (workdir / "pinbase-data").exists()


@pytest.mark.sqlite_only
def test_database_environment_variable(tmp_path: Path, started: list[Server]) -> None:
    database = tmp_path / "env-db" / "custom.db"
    env = clean_env(PINBASE_DATABASE=f"sqlite:///{database}")
    workdir = tmp_path / "work"
    running = CustomServer(workdir, env=env).start()
    started.append(running)
    assert database.is_file()
    assert not (workdir / "pinbase-data").exists()


@pytest.mark.sqlite_only
def test_default_data_dir_is_relative_to_the_working_directory(
    tmp_path: Path, started: list[Server]
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    apply = subprocess.run(
        [sys.executable, "-m", "pinbase", "apply", str(FLEET)],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert apply.returncode == 0, apply.stderr
    assert (workdir / "pinbase-data" / "pinbase.db").is_file()

    running = CustomServer(workdir).start()
    started.append(running)
    assert client_token(running.url)  # serves the fleet applied in the same directory


@pytest.mark.sqlite_only
def test_schema_version_is_recorded_and_restart_reuses_the_file(
    tmp_path: Path, started: list[Server]
) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    first = Server(data_dir).start()
    started.append(first)
    write_status(Bearer(first.url, client_token(first.url)), 106, "first run")
    first.stop()

    database = data_dir / "pinbase.db"
    assert query_db(database, "PRAGMA user_version") == (SCHEMA_VERSION,)
    assert SCHEMA_VERSION >= 1

    second = Server(data_dir).start()
    started.append(second)
    api = Bearer(second.url, client_token(second.url))
    write_status(api, 106, "second run")
    assert status_history(api, 106) == ["second run", "first run"]
    second.stop()
    assert query_db(database, "PRAGMA user_version") == (SCHEMA_VERSION,)


@pytest.mark.sqlite_only
def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    with closing(sqlite3.connect(data_dir / "pinbase.db")) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    running = Server(data_dir)
    with pytest.raises(RuntimeError, match="server exited"):
        running.start()
    assert "newer" in running.log.read_text()


# --- body limit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("body-limit")
    apply_fleet(data_dir)
    running = Server(data_dir, "--body-limit", "1000").start()
    yield running
    running.kill()


def test_body_over_the_limit_is_413(small_body_server: Server) -> None:
    api = Bearer(small_body_server.url, client_token(small_body_server.url))
    body = f'{{"deviceId": 107, "dataStreamId": 3, "value": "{"x" * 1000}"}}'.encode()
    response = api.raw(UPDATE, body)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"]


def test_body_over_the_limit_without_token_is_413(small_body_server: Server) -> None:
    response = httpx.post(f"{small_body_server.url}{UPDATE}", content=b"{" + b" " * 2000 + b"}")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"]


def test_streamed_body_over_the_limit_is_413(small_body_server: Server) -> None:
    token = client_token(small_body_server.url)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"deviceId": 107, "dataStreamId": 3, "value": "'
        for _ in range(10):
            yield b"y" * 200
        yield b'"}'

    response = httpx.post(
        f"{small_body_server.url}{UPDATE}",
        content=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"]


def test_body_under_the_limit_is_accepted(small_body_server: Server) -> None:
    api = Bearer(small_body_server.url, client_token(small_body_server.url))
    text = "z" * 900
    body = f'{{"deviceId": 107, "dataStreamId": 3, "value": "{text}"}}'.encode()
    assert len(body) <= 1000
    response = api.raw(UPDATE, body)
    assert response.status_code == 204, response.text
    assert current_status(api, 107) == text
