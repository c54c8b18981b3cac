"""What the tests share: the real `pinbase` CLI and server as child processes, the test fleet,
its credentials, HTTP clients, the documented error body, and polling with a deadline.

The fixtures that use these live in `conftest.py`."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import inspect
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs

import asyncpg
import httpx
import orjson
import yaml

from pinbase.app.provisioning import apply_to_database, load_document
from pinbase.client import AsyncClient, Client, Retries
from pinbase.client.tokens import Credentials
from pinbase.config import database_url
from pinbase.domain.clock import now_ms
from pinbase.store.base import Store
from pinbase.store.records import Entities
from pinbase.store.sqlite.store import SqliteStore

__all__ = ["now_ms"]  # re-exported: tests stamp and compare times as the server does

T = TypeVar("T")

FLEET = Path(__file__).with_name("fleet.yaml")
ACME = ("acme-backend", "acme-secret-0123456789abcdef")
GLOBEX = ("globex-backend", "globex-secret-0123456789abcdef")
PASSWORDS = {
    "admin@acme.test": "admin-password-1",
    "staff@acme.test": "staff-password-1",
    "user@acme.test": "user-password-1",
    "other@acme.test": "other-password-1",
    "auditor@acme.test": "auditor-password-1",
    "importer@acme.test": "importer-password-1",
    "blind@acme.test": "blind-password-1",  # may write and import, but sees no device
}
DEADLINE = 30.0
"""Seconds a test waits for something that must happen; it bounds a hang, never decides a result."""
STARTUP_DEADLINE = 60.0  # seconds; only bounds a hung start, never decides a result


# The end-to-end suite runs once per store backend. PostgreSQL runs when PINBASE_TEST_POSTGRES
# holds a server URL (`make test` starts a throwaway cluster and sets it).
POSTGRES = os.environ.get("PINBASE_TEST_POSTGRES", "")
BACKENDS = ["sqlite", "postgresql"] if POSTGRES else ["sqlite"]
_current = {"backend": "sqlite"}


def use_backend(name: str) -> None:
    """Start the servers and stores of the tests that follow on `name` (sqlite or postgresql)."""
    _current["backend"] = name


def current_backend() -> str:
    return _current["backend"]


def database_for(data_dir: Path) -> str | None:
    """The database of a data directory: its SQLite file, or its own PostgreSQL database."""
    if _current["backend"] == "sqlite":
        return None
    name = "pb_" + hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]

    async def create() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(create())
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def database_args(data_dir: Path) -> list[str]:
    url = database_for(data_dir)
    return ["--database", url] if url else []


_PORTS_PER_WORKER = 2000


def _worker_ports() -> range:
    """This test process's own ports: below the system's ephemeral range, where no client
    socket of any test takes its source port, and apart from every other pytest-xdist worker's.
    (A port the system hands out with bind(0) could be taken meanwhile by one of the thousands
    of client sockets the hostile-traffic tests open, and the server then failed to start.)"""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = low - (index + 1) * _PORTS_PER_WORKER
    assert start >= 1024, f"no room for worker {worker}'s ports below {low}"
    return range(start, start + _PORTS_PER_WORKER)


_port_cursor = [0]
_held_ports: dict[int, int] = {}
"""The ports this process reserved (`_reserve`), with the descriptor of each one's lock."""


def _reserve(port: int) -> bool:
    """Whether `port` is this process's to use: reserved by it before, or now, with an
    exclusive lock on a file of its own that the process holds until it exits. Two test
    sessions running at once on one machine (two checkouts) number their workers alike, hence
    their port ranges; without the lock, one session's server could take a port another's had
    just handed out, and that session's requests then reached the wrong server."""
    if port in _held_ports:
        return True
    folder = Path(tempfile.gettempdir()) / "pinbase-test-ports"
    folder.mkdir(mode=0o777, exist_ok=True)
    fd = os.open(folder / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held_ports[port] = fd
    return True


def free_port() -> int:
    """A loopback port of this test process's own range, reserved for it (`_reserve`), that
    can be bound now (as servers bind, with SO_REUSEADDR), taken in turn so that a port just
    handed out is not again soon."""
    ports = _worker_ports()
    for _ in range(len(ports)):
        port = ports[_port_cursor[0] % len(ports)]
        _port_cursor[0] += 1
        if not _reserve(port):
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {ports}")


def pinbase(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI and capture its output (on the current backend's database)."""
    extra: list[str] = []
    if "--data-dir" in args and "--database" not in args:
        extra = database_args(Path(args[args.index("--data-dir") + 1]))
    return subprocess.run(
        [sys.executable, "-m", "pinbase", *args, *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Server:
    """A `pinbase serve` child process."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.port = free_port()
        self.hardware_port = 0  # device listeners: off until the modules land
        self.mqtt_port = 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    cwd: Path | None = None
    env: dict[str, str] | None = None

    def arguments(self) -> list[str]:
        """The `pinbase serve` command line."""
        return [
            sys.executable,
            "-m",
            "pinbase",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--hardware-port",
            str(self.hardware_port),
            "--mqtt-port",
            str(self.mqtt_port),
            "--log-level",
            "warning",
            *database_args(self.data_dir),
            *self.extra,
        ]

    def start(self) -> Self:
        """Start the process and wait until it answers /healthz."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.arguments(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
            )
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become ready: {self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def weather_fleet(name: str, client: tuple[str, str], tokens: Mapping[int, str]) -> str:
    """A fleet file (YAML): one organization with a weather-station product holding one
    datastream of each type, and one device per id with the given auth token."""
    document = {
        "organizations": [
            {
                "id": 1,
                "name": name,
                "clients": [{"client_id": client[0], "client_secret": client[1]}],
                "products": [
                    {
                        "id": 10,
                        "name": "Weather Station",
                        "datastreams": [
                            {"id": 1, "pin": "v1", "label": "Temperature", "type": "double",
                             "min": -40, "max": 85},
                            {"id": 2, "pin": "v2", "label": "Humidity", "type": "integer",
                             "min": 0, "max": 100},
                            {"id": 3, "pin": "v3", "label": "Status", "type": "string"},
                            {"id": 4, "pin": "v4", "label": "Position", "type": "location"},
                            {"id": 5, "pin": "v5", "label": "Mode", "type": "enum",
                             "options": {0: "Off", 1: "Eco", 2: "Boost"}, "history": False},
                        ],
                    }
                ],
                "devices": [
                    {"id": d, "name": f"Device {d}", "product": 10, "token": token}
                    for d, token in tokens.items()
                ],
            }
        ]
    }  # fmt: skip
    text: str = yaml.safe_dump(document)
    return text


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> str:
    """The documented error body `{"error": {"message": ...}}`; returns the message."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    assert list(body["error"]) == ["message"], body
    text = body["error"]["message"]
    assert isinstance(text, str) and text.strip(), body
    if message is not None:
        assert text == message
    return text


def not_found(device_id: int) -> str:
    return f"Device with identifier {device_id} is not found or belong to another organization."


def history_of(api: Api, device_id: int, ds_id: int, start: int) -> list[tuple[int, Any]]:
    """(ts, value) of every history point in the ten minutes from `start`, oldest first."""
    window = {"from": start, "to": start + 600_000}
    response = api.get(
        "/api/v1/organization/device/datastream/history",
        deviceId=device_id,
        dataStreamId=ds_id,
        order="asc",
        size=1000,
        **window,
    )
    assert response.status_code == 200, response.text
    return [(point["createdAt"], point["value"]) for point in response.json()["content"]]


def apply_fleet(data_dir: Path, fleet: Path = FLEET) -> None:
    """Apply a fleet file to a data directory's database (on the current backend) as `pinbase
    apply` does, in this process: a command's start costs more CPU than the applying, and the
    tests of the command itself run it (tests/e2e/test_cli.py)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_for(data_dir) or database_url(data_dir, None)
    asyncio.run(apply_to_database(url, load_document(fleet)))


def apply_fleet_text(data_dir: Path, text: str) -> None:
    """Apply a fleet file given as its text (kept as `data_dir/fleet.yaml`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fleet = data_dir / "fleet.yaml"
    fleet.write_text(text)
    apply_fleet(data_dir, fleet)


def device_server(data_dir: Path, fleet_text: str) -> Server:
    """A started server with its hardware and MQTT listeners on, on the fleet given as text
    (kept as `data_dir/fleet.yaml`)."""
    apply_fleet_text(data_dir, fleet_text)
    server = Server(data_dir)
    server.hardware_port, server.mqtt_port = free_port(), free_port()
    return server.start()


def client_token(base_url: str, credentials: tuple[str, str] = ACME) -> str:
    response = httpx.post(
        f"{base_url}/oauth2/token",
        params={"grant_type": "client_credentials"},
        auth=credentials,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def user_token(
    base_url: str, email: str, credentials: tuple[str, str] = ACME, password: str | None = None
) -> str:
    """A user's access token; the password is the test fleet's unless given."""
    secret = PASSWORDS[email] if password is None else password
    response = httpx.post(
        f"{base_url}/oauth2/token",
        data={"grant_type": "password", "username": email, "password": secret},
        auth=credentials,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


class Bearer:
    """Calls with one bearer token; unlike `Api` it keeps no connection open (a
    leaked socket is a ResourceWarning, which this suite turns into an error)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(
            self.base_url + path,
            params=params,  # type: ignore[arg-type]
            headers=self.headers,
            timeout=30,
        )

    def post(self, path: str, body: object) -> httpx.Response:
        return httpx.post(self.base_url + path, json=body, headers=self.headers, timeout=30)

    def raw(self, path: str, content: bytes) -> httpx.Response:
        headers = {**self.headers, "Content-Type": "application/json"}
        return httpx.post(self.base_url + path, content=content, headers=headers, timeout=30)


class Api:
    """An httpx client bound to one server and one bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params=params)  # type: ignore[arg-type]

    def post(self, path: str, body: object) -> httpx.Response:
        return self.http.post(path, json=body)

    def raw(self, path: str, content: bytes) -> httpx.Response:
        return self.http.post(path, content=content, headers={"Content-Type": "application/json"})

    def close(self) -> None:
        self.http.close()


def wait_for(what: str, check: Callable[[], T | None], deadline: float = DEADLINE) -> T:
    """Poll `check()` until it returns something truthy; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def second_store(store: Store) -> Store:
    """Another store on the same database as `store`, as another server process would hold."""
    from pinbase.store import open_store

    if isinstance(store, SqliteStore):
        return open_store(f"sqlite:///{store.path}")
    return open_store(store.url)


@asynccontextmanager
async def fresh_store(
    kind: str, tmp_path: Path, prepare: Callable[[str], Awaitable[None]] | None = None
) -> AsyncIterator[Store]:
    """An opened store of `kind` (sqlite or postgresql) in a new database, closed (and its
    PostgreSQL database dropped) on exit. `prepare` is given the new database's URL before the
    store opens it (a SQLite file that does not exist yet, or an empty PostgreSQL database)."""
    if kind == "sqlite":
        sqlite = SqliteStore(tmp_path / "store.db")
        if prepare is not None:
            await prepare(f"sqlite:///{sqlite.path}")
        await sqlite.open()
        try:
            yield sqlite
        finally:
            await sqlite.close()
        return
    from pinbase.store.postgres.store import PostgresStore

    name = "pb_store_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(POSTGRES)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    postgres = PostgresStore(POSTGRES.rsplit("/", 1)[0] + "/" + name)
    try:
        if prepare is not None:
            await prepare(postgres.url)
        await postgres.open()
        try:
            yield postgres
        finally:
            await postgres.close()
    finally:
        admin = await asyncpg.connect(POSTGRES)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            await admin.close()


StoreBody = Callable[[Store], Awaitable[None]]


def store_runner(backend: str, tmp_path: Path, rows: Entities) -> Callable[[StoreBody], None]:
    """Runs a test body on a fresh store of `backend` holding the catalog `rows`."""

    def run(body: StoreBody) -> None:
        async def main() -> None:
            async with fresh_store(backend, tmp_path) as store:
                await store.upsert_entities(rows)
                await body(store)

        asyncio.run(main())

    return run


LIVE = "/api/v1/organization/live"
LIVE_DEADLINE = 30.0  # bounds a hung stream; never decides a result


class Listener:
    """Reads an event stream on a thread and hands each parsed event to the test."""

    def __init__(self, base_url: str, token: str, params: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
        self.ready = threading.Event()
        self.ended = threading.Event()
        """Set when the server ended the stream, cleanly (`error` None) or not."""
        self.error: Exception | None = None
        self._client = httpx.Client(base_url=base_url, timeout=None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(token, params or {}), daemon=True)
        self._thread.start()
        assert self.ready.wait(LIVE_DEADLINE), "the stream did not open"

    def _run(self, token: str, params: dict[str, str]) -> None:
        try:
            self._read(token, params)
        except (httpx.HTTPError, OSError) as exc:
            if not self._stop.is_set():  # closing the client ends the read; nothing else may
                self.error = exc
        finally:
            self.ended.set()

    def _read(self, token: str, params: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with self._client.stream("GET", LIVE, headers=headers, params=params) as response:
            kind = ""
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    self.ready.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.put((kind, orjson.loads(line[6:])))
                if self._stop.is_set():
                    return

    def next(self) -> tuple[str, dict[str, object]]:
        return self.events.get(timeout=LIVE_DEADLINE)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


# --- a server's resources and log, for the hostile-traffic tests ----------------------------


def rss_mib(server: Server, field: str = "VmRSS") -> float:
    """The server's resident memory; `RssAnon` leaves out mapped files (SQLite maps its
    database: the pages a read touched count in VmRSS)."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found is not None
    return int(found.group(1)) / 1024


def log_counts(server: Server, phrase: str) -> tuple[int, int]:
    """(lines, events) of the server's log lines containing `phrase`: a summary line
    "(N times in the last S s)" stands for N events."""
    lines = [line for line in server.log.read_text().splitlines() if phrase in line]
    events = 0
    for line in lines:
        counted = re.search(r"\((\d+) times? in the last \d+ s\)$", line)
        events += int(counted.group(1)) if counted else 1
    return len(lines), events


def most_log_lines(since: float) -> int:
    """Lines about one kind of event a server may write from `since` on: the first, one count
    per 10 s interval, and one at shutdown."""
    return 2 + int((time.monotonic() - since) // 10) + 1


# --- the Python client (pinbase.client) under test -------------------------------------------


class Recorded:
    """What a client under test sent, was answered and waited, and the clock it reads expiry
    times from (the monotonic clock, moved by `skew` seconds)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, grant_type of a token request)
        self.answers: list[tuple[str, int, str | None]] = []  # (path, status, Retry-After)
        self.sleeps: list[float] = []
        self.skew = 0.0

    def clock(self) -> float:
        return time.monotonic() + self.skew

    def on_request(self, request: httpx.Request) -> None:
        form = parse_qs(request.content.decode()) if request.url.path == "/oauth2/token" else {}
        self.requests.append((request.url.path, form.get("grant_type", [""])[0]))

    def on_response(self, response: httpx.Response) -> None:
        path, status = response.request.url.path, response.status_code
        self.answers.append((path, status, response.headers.get("retry-after")))

    def grants(self) -> list[str]:
        """The grant types of the token requests, in order."""
        return [grant for path, grant in self.requests if path == "/oauth2/token"]

    def count(self, path: str) -> int:
        """The requests to `path` that succeeded (a retried request counts once)."""
        return sum(1 for answered, status, _ in self.answers if answered == path and status < 300)


class Blocking:
    """An `AsyncClient` called from synchronous test code: its coroutines run, and its async
    iterators are read, on an event loop of its own thread. Every test of the client runs
    once with a `Client` and once with an `AsyncClient` behind this."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop

    def wait(self, awaitable: Awaitable[T]) -> T:
        async def run() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        def call(*args: object, **kwargs: object) -> object:
            result = attribute(*args, **kwargs)
            if inspect.isawaitable(result):
                return self.wait(result)
            if isinstance(result, AsyncIterator):
                return self.iterate(result)
            return result

        return call

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.wait(anext(items))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                self.wait(close())


@contextmanager
def api_client(
    mode: str, url: str, credentials: Credentials, retries: Retries = Retries()
) -> Iterator[tuple[Any, Recorded]]:
    """A `Client` (mode "sync") or an `AsyncClient` behind `Blocking` ("async") on `url`, and
    the record of its requests, answers and waits (it really waits)."""
    seen = Recorded()
    if mode == "sync":

        def sleep(seconds: float) -> None:
            seen.sleeps.append(seconds)
            time.sleep(seconds)

        hooks = {"request": [seen.on_request], "response": [seen.on_response]}
        http = httpx.Client(event_hooks=hooks, timeout=30)  # type: ignore[arg-type]
        with Client(url, credentials, retries=retries, http=http, sleep=sleep,
                    clock=seen.clock) as client:  # fmt: skip
            yield client, seen
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def async_sleep(seconds: float) -> None:
        seen.sleeps.append(seconds)
        await asyncio.sleep(seconds)

    async def on_request(request: httpx.Request) -> None:
        seen.on_request(request)

    async def on_response(response: httpx.Response) -> None:
        seen.on_response(response)

    hooks_async = {"request": [on_request], "response": [on_response]}
    http_async = httpx.AsyncClient(event_hooks=hooks_async, timeout=30)  # type: ignore[arg-type]
    async_client = AsyncClient(
        url, credentials, retries=retries, http=http_async, sleep=async_sleep, clock=seen.clock
    )
    blocking = Blocking(async_client, loop)
    try:
        yield blocking, seen
    finally:
        blocking.wait(async_client.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
