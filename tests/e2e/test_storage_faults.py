"""Storage faults, end to end: a damaged, foreign, empty or read-only database refused in one
line by every command, a full disk answered 507 and recovered from without a restart, and the
files pinbase creates kept private.

The file-system faults are real: a read-only bind mount and a small tmpfs, which need root and
`mount` (CI runs the tests as root; root ignores permission bits, hence mounts rather than
chmod). Where mounting is not allowed those tests are skipped, saying so; the store's own tests
(`tests/store/test_faults.py`) cover a full database through SQLite's `max_page_count` anyway.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from helpers import (
    ACME,
    POSTGRES,
    STARTUP_DEADLINE,
    Bearer,
    Server,
    client_token,
    pinbase,
    wait_for,
    weather_fleet,
)

UPDATE = "/api/v1/organization/device/datastream"
HISTORY = "/api/v1/organization/device/datastream/history"
STATUS = 3  # the string datastream of the weather fleet
TOKENS = {1: "FaultsDeviceToken000000000000001"}


def fleet(tmp_path: Path) -> Path:
    """A one-device fleet file (no users: applying it hashes no password)."""
    path = tmp_path / "fleet.yaml"
    path.write_text(weather_fleet("Acme", ACME, TOKENS))
    return path


def make_database(tmp_path: Path, where: Path) -> None:
    """A real pinbase database at `where` (the fleet applied), with some history."""
    result = pinbase("apply", str(fleet(tmp_path)), "--database", f"sqlite:///{where}")
    assert result.returncode == 0, result.stderr + result.stdout
    with closing(sqlite3.connect(where)) as conn, conn:
        conn.executemany(
            "INSERT INTO history (device_id, ds_id, ts, value) VALUES (1, 3, ?, ?)",
            [(1_700_000_000_000 + i, f'"{i:0>200}"') for i in range(2000)],
        )


def run_all(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """`pinbase` run with each list of arguments, all at once (each is mostly an interpreter
    starting, and each is expected to stop at once)."""
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "pinbase", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, arguments in commands.items()
    }
    results = {}
    for name, process in running.items():
        out, err = process.communicate(timeout=STARTUP_DEADLINE)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def commands(database: Path, tmp_path: Path) -> dict[str, list[str]]:
    """`serve`, `apply`, `check` and `migrate --from` on `database`, by name."""
    url = f"sqlite:///{database}"
    no_ports = ["--port", "0", "--hardware-port", "0", "--mqtt-port", "0"]
    return {
        "serve": ["serve", "--database", url, *no_ports],
        "apply": ["apply", str(fleet(tmp_path)), "--database", url],
        "check": ["check", "--database", url],
        "migrate": ["migrate", "--from", url, "--to", f"sqlite:///{tmp_path}/copy.db"],
    }


def refusals(database: Path, tmp_path: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The `commands` on `database` run, each expected to refuse it."""
    return run_all(commands(database, tmp_path))


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """A non-zero exit with one `error:` line (apply adds "Nothing was written."), no traceback;
    returns the line."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line != "Nothing was written."]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


# --- file systems that tests may mount ----------------------------------------------------------


def mount(*arguments: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *arguments], capture_output=True, check=False).returncode == 0


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """`directory` read-only for everyone, root included (a read-only bind mount on itself)."""
    if not mount("--bind", str(directory), str(directory)):
        pytest.skip("cannot bind-mount here (needs root and mount): read-only directory untested")
    try:
        if not mount("-o", "remount,bind,ro", str(directory)):
            pytest.skip("cannot remount read-only here: read-only directory untested")
        yield
    finally:
        unmount(directory)


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (a disk that can really be filled)."""
    where.mkdir()
    if not mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        pytest.skip("cannot mount a tmpfs here (needs root and mount): full disk untested e2e")
    try:
        yield where
    finally:
        unmount(where)


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a filler file until only `leave` bytes are free (0: until the disk refuses)."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    with filler.open("wb", buffering=0) as out:
        while True:
            status = os.statvfs(disk)
            room = status.f_bavail * status.f_frsize - leave
            if room <= 0:
                break
            try:
                out.write(b"\0" * min(room, 1 << 20))
            except OSError:  # no space left
                break
    return filler


@pytest.fixture
def started() -> Iterator[list[Server]]:
    """Servers a test starts; any still running at teardown are killed."""
    servers: list[Server] = []
    yield servers
    for running in servers:
        running.kill()


# --- refused in one line ------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_database_with_damaged_pages_is_refused_in_one_line(tmp_path: Path) -> None:
    database = tmp_path / "data" / "pinbase.db"
    make_database(tmp_path, database)
    size = database.stat().st_size
    pages = size // 4096
    assert pages > 20
    with database.open("r+b") as file:  # garbage over the middle pages; page 1 intact
        file.seek(4096 * (pages // 2))
        file.write(os.urandom(4096 * 4))
    for command, result in refusals(database, tmp_path).items():
        line = assert_one_line(result, str(database), "damaged")
        assert result.returncode == (1 if command == "check" else 2), (command, line)


@pytest.mark.sqlite_only
def test_foreign_files_are_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("organizations:\n  - id: 1\n" * 100)
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('mine')")
    cases = {text: "is not an SQLite database", other: "another program"}
    before = {database: database.read_bytes() for database in cases}
    results = run_all(
        {
            f"{database.name} {command}": arguments
            for database in cases
            for command, arguments in commands(database, tmp_path).items()
        }
    )
    for name, result in results.items():
        database = tmp_path / name.split()[0]
        assert result.returncode == 2
        assert_one_line(result, str(database), cases[database])
    for database, content in before.items():
        assert database.read_bytes() == content
        assert sorted(p.name for p in tmp_path.glob(f"{database.name}*")) == [database.name]


@pytest.mark.sqlite_only
def test_an_empty_file_is_refused_in_an_existing_directory(tmp_path: Path) -> None:
    database = tmp_path / "data" / "pinbase.db"
    database.parent.mkdir()
    database.touch()
    for result in refusals(database, tmp_path).values():
        assert_one_line(result, str(database), "is empty (0 bytes)")
    assert database.stat().st_size == 0


@pytest.mark.sqlite_only
def test_a_new_data_directory_and_its_files_are_private(
    tmp_path: Path, started: list[Server]
) -> None:
    data_dir = tmp_path / "new" / "data"
    running = Server(tmp_path / "run", "--data-dir", str(data_dir))
    started.append(running.start())
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in (data_dir, *sorted(data_dir.iterdir()))
    }
    assert modes == {
        "data": 0o700,
        "pinbase.db": 0o600,
        "pinbase.db-shm": 0o600,
        "pinbase.db-wal": 0o600,
    }


@pytest.mark.sqlite_only
def test_a_read_only_directory_is_refused_in_one_line(
    tmp_path: Path, started: list[Server]
) -> None:
    data_dir = tmp_path / "data"
    make_database(tmp_path, data_dir / "pinbase.db")
    # Killed, the server leaves its -wal and -shm files, with which SQLite could open the file.
    running = Server(data_dir)
    running.start().kill()
    assert (data_dir / "pinbase.db-wal").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(data_dir), read_only(empty):
        for result in refusals(data_dir / "pinbase.db", tmp_path).values():
            assert_one_line(result, "Read-only file system")
        created = pinbase("apply", str(fleet(tmp_path)), "--data-dir", str(empty))
        assert_one_line(created, f"cannot create {empty / 'pinbase.db'}: Read-only file system")


# --- a full disk --------------------------------------------------------------------------------


def next_millisecond() -> None:
    """Let the wall clock pass the current millisecond, so that two writes of one datastream
    never share a history timestamp (a later one would replace the earlier, by design)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= start:
        pass


def stored(api: Bearer) -> set[str]:
    response = api.get(
        HISTORY, deviceId=1, dataStreamId=STATUS, **{"from": 0, "to": 2**62}, size=1000
    )
    assert response.status_code == 200, response.text
    return {point["value"] for point in response.json()["content"]}


@pytest.mark.sqlite_only
def test_a_full_disk_is_507_and_the_server_recovers_when_space_returns(
    tmp_path: Path, started: list[Server]
) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        database = disk / "pinbase.db"
        result = pinbase("apply", str(fleet(tmp_path)), "--database", f"sqlite:///{database}")
        assert result.returncode == 0, result.stderr
        running = Server(tmp_path / "run", "--database", f"sqlite:///{database}")
        started.append(running.start())
        api = Bearer(running.url, client_token(running.url))
        acknowledged: list[str] = []
        refused: list[str] = []

        def write(value: str) -> httpx.Response:
            next_millisecond()
            response = api.post(UPDATE, {"deviceId": 1, "dataStreamId": STATUS, "value": value})
            assert response.status_code in (204, 507), response.text
            (acknowledged if response.status_code == 204 else refused).append(value)
            return response

        fillers = [fill(disk, leave=64 * 1024)]
        for number in range(1000):  # until the disk refuses: some are acknowledged first
            response = write(f"{number}:" + "x" * 900)
            if response.status_code == 507:
                break
        message = response.json()["error"]["message"]
        assert list(response.json()) == ["error"] and "storage is full" in message
        assert acknowledged

        fillers.append(fill(disk))  # what is left too: every write from now on needs space

        def device_refused() -> httpx.Response | None:
            response = httpx.get(
                f"{running.url}/external/api/update", params={"token": TOKENS[1], "v1": 20}
            )
            assert response.status_code in (200, 507), response.text
            return response if response.status_code == 507 else None

        device = wait_for("a device write refused", device_refused)
        assert device.json() == {"error": {"message": message}}

        def token_refused() -> httpx.Response | None:
            response = httpx.post(
                f"{running.url}/oauth2/token",
                params={"grant_type": "client_credentials"},
                auth=ACME,
            )
            assert response.status_code in (200, 507), response.text
            return response if response.status_code == 507 else None

        oauth = wait_for("a token request refused", token_refused)
        assert oauth.json() == {"error": "temporarily_unavailable", "error_description": message}

        def health() -> httpx.Response:
            return httpx.get(f"{running.url}/healthz")

        failing = health()
        assert failing.status_code == 503
        assert failing.json()["status"] == "unavailable"
        assert failing.json()["storage"] == "full"
        write("while full")  # may be stored in space a refused write had taken, or refused
        assert refused

        for filler in fillers:  # space returns; the same process recovers by itself
            filler.unlink()
        wait_for("healthz 200", lambda: health().status_code == 200)
        assert health().json() == {"status": "ok", "storage": "ok"}
        assert write("after").status_code == 204

        present = stored(api)
        assert set(acknowledged) <= present
        assert not set(refused) & present
        assert running.stop(signal.SIGTERM) == 0
        again = Server(tmp_path / "run", "--database", f"sqlite:///{database}").start()
        started.append(again)
        assert stored(Bearer(again.url, client_token(again.url))) == present
        again.stop()


# --- PostgreSQL ---------------------------------------------------------------------------------


async def foreign_postgres_database() -> str:
    """A database of another application: it holds an `invoices` table."""
    name = "faults_foreign"
    admin = await asyncpg.connect(POSTGRES)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = POSTGRES.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS invoices (id integer PRIMARY KEY)")
    finally:
        await conn.close()
    return url


def test_postgresql_refusals_are_one_line_each(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("runs with the PostgreSQL half of the suite")
    base = POSTGRES.rsplit("/", 1)[0]
    server = base.rsplit("@", 1)[-1]
    cases = [
        ("postgresql://postgres@127.0.0.1:1/x", "cannot reach PostgreSQL at 127.0.0.1:1"),
        (f"postgresql://no_such_role@{server}/postgres", f"PostgreSQL at {server} refused"),
        (f"{base}/faults_no_such_database", 'has no database "faults_no_such_database"'),
        (asyncio.run(foreign_postgres_database()), "holds other tables (invoices)"),
    ]
    commands = {}
    for number, (url, _) in enumerate(cases):
        commands[f"check {number}"] = ["check", "--database", url]
        commands[f"apply {number}"] = ["apply", str(fleet(tmp_path)), "--database", url]
    results = run_all(commands)
    for number, (_, expected) in enumerate(cases):
        for command in ("check", "apply"):
            result = results[f"{command} {number}"]
            assert result.returncode == 2, result.stderr
            assert_one_line(result, expected)
