"""Blynk's hardware protocol end to end: a real `pinbase serve`, the real `blynklib` package and
raw sockets as devices.

Every test uses its own devices, so tests never see each other's values. Waits are bounded by
generous deadlines; none of them decides a result by sleeping.
"""

from __future__ import annotations

import queue
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import BlynkLib  # type: ignore[import-untyped]
import blynklib  # type: ignore[import-untyped]
import pytest
import yaml

from helpers import (
    Api,
    Server,
    apply_fleet,
    client_token,
    free_port,
    history_of,
    wait_for,
    weather_fleet,
)

DEADLINE = 15.0  # seconds; bounds a wait, never decides a result by itself
CLIENT = ("hardware-backend", "hardware-secret-0123456789abcdef")

VALUES = "/api/v2/organization/device/datastreams"
UPDATE = "/api/v1/organization/device/datastream"
UPDATES = "/api/v1/organization/device/datastreams"
PROPERTY = "/api/v1/organization/device/datastream/property"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
STATUS = "/api/v1/organization/device/status"

TEMPERATURE, HUMIDITY, STATUS_DS, POSITION, MODE = 1, 2, 3, 4, 5
FIRST_DEVICE = 1001
DEVICES = 260
RATE_BURST = 100  # values a device may write at once in this server

# commands and statuses, spelled out here rather than imported from the code under test
RESPONSE, LOGIN, PING, NOTIFY, SYNC, INTERNAL, PROPERTY_CMD, HARDWARE = 0, 2, 6, 14, 16, 17, 19, 20
BRIDGE, GROUP, HW_LOGIN, REDIRECT, DEBUG_PRINT = 15, 21, 29, 41, 55
OK, QUOTA_LIMIT, ILLEGAL_COMMAND, ALREADY_REGISTERED, INVALID_TOKEN = 200, 1, 2, 4, 9
ILLEGAL_COMMAND_BODY, NOT_AUTHENTICATED = 11, 5

T = TypeVar("T")


def token_of(device_id: int) -> str:
    """The 32-character auth token the test fleet gives a device."""
    return f"HwTestToken{device_id:021d}"


DEVICE_TOKENS = {d: token_of(d) for d in range(FIRST_DEVICE, FIRST_DEVICE + DEVICES)}
ZONED = FIRST_DEVICE + DEVICES
"""A device with a timezone of its own (never handed out by `Env.take`)."""
ORG_TIMEZONE, DEVICE_TIMEZONE = "America/New_York", "Europe/Kyiv"


def hardware_fleet() -> str:
    """The weather fleet, with timezones: the organization's, and ZONED's own."""
    document = yaml.safe_load(
        weather_fleet("Hardware Farms", CLIENT, {**DEVICE_TOKENS, ZONED: token_of(ZONED)})
    )
    org = document["organizations"][0]
    org["timezone"] = ORG_TIMEZONE
    for device in org["devices"]:
        if device["id"] == ZONED:
            device["timezone"] = DEVICE_TIMEZONE
    text: str = yaml.safe_dump(document)
    return text


# raw devices ------------------------------------------------------------------------------
def frame(command: int, msg_id: int, *fields: str | bytes) -> bytes:
    body = b"\0".join(f.encode() if isinstance(f, str) else f for f in fields)
    return struct.pack("!BHH", command, msg_id, len(body)) + body


BLYNKLIB_INFO = ("ver", "0.2.6", "buff-in", "1024", "h-beat", "10", "dev", "python")
ARDUINO_INFO = ("ver", "1.3.2", "h-beat", "45", "buff-in", "1024", "dev", "ESP32", "build", "x")


class RawDevice:
    """A device on a plain socket: frames in and out, server PINGs answered on the way."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self._buffer = b""
        self._id = 0

    def next_id(self) -> int:
        self._id = self._id % 65535 + 1
        return self._id

    def send(self, command: int, *fields: str | bytes, msg_id: int | None = None) -> int:
        mid = self.next_id() if msg_id is None else msg_id
        self.sock.sendall(frame(command, mid, *fields))
        return mid

    def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def receive(self, skip_pings: bool = True) -> tuple[int, int, Any]:
        """The next frame as (command, msg_id, status or list of text fields)."""
        while True:
            command, msg_id, length = struct.unpack("!BHH", self._read(5))
            if command == RESPONSE:
                return command, msg_id, length
            body = self._read(length)
            if command == PING and skip_pings:
                self.sock.sendall(struct.pack("!BHH", RESPONSE, msg_id, OK))
                continue
            return command, msg_id, body.decode().split("\0") if body else []

    def expect_response(self, msg_id: int) -> int:
        command, got_id, status = self.receive()
        assert (command, got_id) == (RESPONSE, msg_id), (command, got_id, status)
        return int(status)

    def login(self, token: str, command: int = LOGIN) -> int:
        return self.expect_response(self.send(command, token))

    def announce(self, *info: str) -> None:
        assert self.expect_response(self.send(INTERNAL, *info)) == OK

    def ping(self) -> None:
        """Round trip: everything sent before has been handled by the server."""
        assert self.expect_response(self.send(PING)) == OK

    def closed_by_server(self) -> bool:
        """True once the server closed the connection (frames still queued are read past)."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


CPP_ACCEPTS = {RESPONSE, LOGIN, HW_LOGIN, PING, REDIRECT, HARDWARE, BRIDGE, INTERNAL, DEBUG_PRINT}
"""What Blynk's C++ library (1.x, `BlynkProtocol::processInput`) takes from the server; on any
other command it drops the connection and reconnects."""


class CppDevice(RawDevice):
    """A raw device holding the server to what Blynk's C++ library accepts: each frame received
    must be one that `processInput` handles without reconnecting, and the server never starts
    a PING (the library would answer one, but pinbase promises none)."""

    def __init__(self, port: int, buffer: int = 1024) -> None:
        super().__init__(port)
        self.buffer = buffer
        self.received: list[tuple[int, int, Any]] = []

    def receive(self, skip_pings: bool = True) -> tuple[int, int, Any]:
        command, msg_id, payload = super().receive(skip_pings=False)
        self.received.append((command, msg_id, payload))
        assert msg_id != 0, "the library disconnects on message id 0"
        assert command in CPP_ACCEPTS, f"the library reconnects on command {command}"
        assert command != PING, "the server started a PING"
        if command == RESPONSE:
            assert payload != NOT_AUTHENTICATED, "the library disconnects on status 5"
        else:
            size = len(frame(command, msg_id, *payload))
            assert size - 5 <= self.buffer, "the library reconnects on a frame this large"
        return command, msg_id, payload

    def connect(self, token: str) -> None:
        """HW_LOGIN with id 1, then the info `sendInfo` announces, as the library does."""
        assert self.login(token, command=HW_LOGIN) == OK
        self.announce(*ARDUINO_INFO)


# blynklib devices -------------------------------------------------------------------------
class BlynkDevice:
    """The real `blynklib` client, its loop running in a thread."""

    def __init__(self, port: int, token: str, ssl_cert: str | None = None) -> None:
        self.logs: list[str] = []
        self.blynk = blynklib.Blynk(
            token,
            server="127.0.0.1",
            port=port,
            ssl_cert=ssl_cert,
            heartbeat=10,
            log=lambda *args: self.logs.append(" ".join(map(str, args))),
        )
        self.blynk._events = {}  # blynklib keeps handlers on the class; give each its own
        self.blynk.RECONNECT_SLEEP = 0
        self.writes: queue.Queue[tuple[int, list[str]]] = queue.Queue()
        self._calls: queue.Queue[Callable[[blynklib.Blynk], object]] = queue.Queue()
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

        @self.blynk.handle_event("write V*")  # type: ignore[untyped-decorator]
        def on_write(pin: int, values: list[str]) -> None:
            self.writes.put((pin, values))

        @self.blynk.handle_event("connect")  # type: ignore[untyped-decorator]
        def on_connect() -> None:
            self.connects += 1

    def start(self) -> BlynkDevice:
        assert self.blynk.connect(timeout=DEADLINE), self.logs
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.blynk.run()
            while not self._calls.empty():
                self._calls.get()(self.blynk)

    def call(self, action: Callable[[blynklib.Blynk], object]) -> None:
        """Run `action` on blynklib's own loop thread: its socket (a TLS one above all) must
        not be used by two threads at once."""
        self._calls.put(action)

    def next_write(self) -> tuple[int, list[str]]:
        try:
            return self.writes.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"no write reached blynklib; its log: {self.logs}") from None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        self.blynk.disconnect()


class BlynkLibDevice:
    """The real `BlynkLib` (blynk-library-python 0.2.0), its loop running in a thread. It
    crashes on what it cannot handle (a server PING); the crash is kept, not lost."""

    def __init__(self, port: int, token: str) -> None:
        self.blynk = BlynkLib.Blynk(token, server="127.0.0.1", port=port, heartbeat=10)
        self.writes: queue.Queue[tuple[str, list[str]]] = queue.Queue()
        self.connects = 0
        self.disconnects = 0
        self.errors: list[BaseException] = []
        self._calls: queue.Queue[Callable[[Any], object]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

        def on_write(pin: str, values: list[str]) -> None:
            self.writes.put((pin, values))

        def on_connected(ping: int = 0) -> None:
            self.connects += 1

        def on_disconnected() -> None:
            self.disconnects += 1

        self.blynk.on("V*", on_write)
        self.blynk.on("connected", on_connected)
        self.blynk.on("disconnected", on_disconnected)

    def start(self) -> BlynkLibDevice:
        self._thread.start()
        wait_for("BlynkLib connected", lambda: self.connects or self.errors)
        assert not self.errors, self.errors
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.blynk.run()
                while not self._calls.empty():
                    self._calls.get()(self.blynk)
        except Exception as exc:  # the library's own crash, kept for the test
            self.errors.append(exc)

    def call(self, action: Callable[[Any], object]) -> None:
        """Run `action` on the library's loop thread."""
        self._calls.put(action)

    def next_write(self) -> tuple[str, list[str]]:
        try:
            return self.writes.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(f"no write reached BlynkLib; errors: {self.errors}") from None

    def healthy(self) -> bool:
        return not self.errors and self.connects == 1 and self.disconnects == 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        self.blynk.conn.close()


# the server -------------------------------------------------------------------------------
class Env:
    def __init__(self, server: Server, port: int, tls_port: int, cert: Path, api: Api) -> None:
        self.server = server
        self.port = port
        self.tls_port = tls_port
        self.cert = cert
        self.api = api
        self._next = FIRST_DEVICE
        self._open: list[RawDevice | BlynkDevice | BlynkLibDevice] = []

    def take(self, count: int = 1) -> int:
        """The first of `count` unused fleet devices."""
        first = self._next
        self._next += count
        assert self._next <= FIRST_DEVICE + DEVICES, "add devices to the fleet"
        return first

    def raw(self) -> RawDevice:
        device = RawDevice(self.port)
        self._open.append(device)
        return device

    def logged_in(self, device_id: int, *info: str) -> RawDevice:
        device = self.raw()
        assert device.login(token_of(device_id)) == OK
        if info:
            device.announce(*info)
        return device

    def cpp(self, device_id: int) -> CppDevice:
        """A device speaking as Blynk's C++ library does, logged in and announced."""
        device = CppDevice(self.port)
        self._open.append(device)
        device.connect(token_of(device_id))
        return device

    def blynklib_python(self, device_id: int) -> BlynkLibDevice:
        device = BlynkLibDevice(self.port, token_of(device_id))
        self._open.append(device)
        return device.start()

    def blynk(self, device_id: int, tls: bool = False) -> BlynkDevice:
        if tls:
            device = BlynkDevice(self.tls_port, token_of(device_id), str(self.cert))
        else:
            device = BlynkDevice(self.port, token_of(device_id))
        self._open.append(device)
        return device.start()

    def close_devices(self) -> None:
        for device in self._open:
            if isinstance(device, BlynkDevice | BlynkLibDevice):
                device.stop()
            else:
                device.close()
        self._open.clear()

    def write(self, device_id: int, ds_id: int, value: Any) -> None:
        body = {"deviceId": device_id, "dataStreamId": ds_id, "value": value}
        response = self.api.post(UPDATE, body)
        assert response.status_code == 204, response.text

    def value(self, device_id: int, ds_id: int) -> Any:
        response = self.api.get(VALUES, deviceId=device_id, dataStreamIds=ds_id)
        assert response.status_code == 200, response.text
        (item,) = response.json()
        return item.get("value")

    def status(self, device_id: int) -> dict[str, Any]:
        response = self.api.get(STATUS, deviceId=device_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def hw_env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One server per store backend with the hardware listeners (TCP and TLS) on."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a TLS certificate")
    data_dir = tmp_path_factory.mktemp(f"hardware-{backend}")
    fleet_file = data_dir / "fleet.yaml"
    fleet_file.write_text(hardware_fleet())
    apply_fleet(data_dir, fleet_file)
    cert, key = self_signed(data_dir)
    port, tls_port = free_port(), free_port()
    server = Server(
        data_dir,
        "--hardware-port", str(port),
        "--hardware-tls-port", str(tls_port),
        "--tls-cert", str(cert),
        "--tls-key", str(key),
        "--device-rate", "1",
        "--device-burst", str(RATE_BURST),
    ).start()  # fmt: skip
    api = Api(server.url, client_token(server.url, CLIENT))
    try:
        yield Env(server, port, tls_port, cert, api)
    finally:
        api.close()
        server.stop()


@pytest.fixture
def env(hw_env: Env) -> Iterator[Env]:
    """The module's server; every device a test opens is closed after it."""
    try:
        yield hw_env
    finally:
        hw_env.close_devices()


# blynklib ---------------------------------------------------------------------------------
def test_blynklib_write_is_read_by_the_organization_api(env: Env) -> None:
    device_id = env.take()
    device = env.blynk(device_id)
    device.call(lambda b: b.virtual_write(1, 21.5))
    device.call(lambda b: b.virtual_write("V2", 40))
    assert wait_for("V1 stored", lambda: env.value(device_id, TEMPERATURE) == 21.5)
    assert wait_for("V2 stored", lambda: env.value(device_id, HUMIDITY) == 40)
    status = env.status(device_id)
    assert status["connected"] is True and status["protocol"] == "hardware"


def test_blynklib_receives_organization_writes_one_by_one(env: Env) -> None:
    device_id = env.take()
    device = env.blynk(device_id)
    env.write(device_id, HUMIDITY, 55)
    assert device.next_write() == (2, ["55"])
    # Several changes at once must reach blynklib as separate reads, none lost.
    body = {"deviceId": device_id, "values": {"1": 20.25, "2": 7, "3": "open", "4": [30.5, 50.25]}}
    response = env.api.post(UPDATES, body)
    assert response.status_code == 204, response.text
    for i in range(20):
        env.write(device_id, HUMIDITY, i)
    received = [device.next_write() for _ in range(24)]
    assert received[:4] == [(1, ["20.25"]), (2, ["7"]), (3, ["open"]), (4, ["30.5", "50.25"])]
    assert received[4:] == [(2, [str(i)]) for i in range(20)]
    assert device.connects == 1, device.logs


def test_blynklib_sync_delivers_current_values(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, TEMPERATURE, 12.5)
    env.write(device_id, HUMIDITY, 33)
    env.write(device_id, MODE, 2)
    device = env.blynk(device_id)
    device.call(lambda b: b.virtual_sync(2, 1, 3))  # V3 has no value: nothing comes for it
    assert [device.next_write(), device.next_write()] == [(2, ["33"]), (1, ["12.5"])]
    device.call(lambda b: b.virtual_sync())  # no pins: every datastream that has a value
    assert [device.next_write() for _ in range(3)] == [(1, ["12.5"]), (2, ["33"]), (5, ["2"])]
    assert device.writes.empty()


def test_blynklib_over_tls(env: Env) -> None:
    device_id = env.take()
    device = env.blynk(device_id, tls=True)
    device.call(lambda b: b.virtual_write(3, "over tls"))
    assert wait_for("V3 stored", lambda: env.value(device_id, STATUS_DS) == "over tls")
    for i in range(10):
        env.write(device_id, HUMIDITY, i)
    assert [device.next_write() for _ in range(10)] == [(2, [str(i)]) for i in range(10)]
    assert device.connects == 1, device.logs


def test_blynklib_gets_no_property_frames(env: Env) -> None:
    device_id = env.take()
    device = env.blynk(device_id)
    body = {"deviceId": device_id, "dataStreamId": 1, "property": "color", "value": "#FF0000"}
    assert env.api.post(PROPERTY, body).status_code == 204
    env.write(device_id, HUMIDITY, 3)
    assert device.next_write() == (2, ["3"])
    assert device.connects == 1, device.logs  # a PROPERTY frame would have broken its session


# raw sockets: login -----------------------------------------------------------------------
def test_invalid_token_is_answered_9_and_closed(env: Env) -> None:
    device = env.raw()
    assert device.login("x" * 32) == INVALID_TOKEN
    assert device.closed_by_server()


def test_hw_login_is_accepted(env: Env) -> None:
    device_id = env.take()
    device = env.raw()
    assert device.login(token_of(device_id), command=HW_LOGIN) == OK
    device.ping()


def test_first_frame_must_be_a_login(env: Env) -> None:
    device = env.raw()
    device.send(PING)
    assert device.closed_by_server()


def test_ping_is_answered_with_its_id(env: Env) -> None:
    device = env.logged_in(env.take())
    msg_id = device.send(PING, msg_id=4242)
    assert device.expect_response(msg_id) == OK


def test_a_second_login_replaces_the_first(env: Env) -> None:
    device_id = env.take()
    first = env.logged_in(device_id)
    second = env.logged_in(device_id)
    assert first.closed_by_server()
    second.ping()
    status = env.status(device_id)
    assert status["connected"] is True and status["protocol"] == "hardware"
    env.write(device_id, HUMIDITY, 17)
    assert second.receive() == (HARDWARE, 1, ["vw", "2", "17"])


def test_silent_device_is_disconnected_after_its_heartbeat(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id, "ver", "1.0", "h-beat", "1", "buff-in", "1024")
    assert env.status(device_id)["connected"] is True
    wait_for("offline", lambda: env.status(device_id)["connected"] is False, deadline=30)
    assert device.closed_by_server()


# raw sockets: malformed input -------------------------------------------------------------
def test_malformed_frames_close_only_their_connection(env: Env) -> None:
    bystander = env.logged_in(env.take())
    zero_id = env.logged_in(env.take())
    zero_id.sock.sendall(frame(PING, 0))
    assert zero_id.closed_by_server()
    oversized = env.logged_in(env.take())
    oversized.sock.sendall(struct.pack("!BHH", HARDWARE, 9, 60_000) + b"vw\x001\x00")
    assert oversized.closed_by_server()
    bystander.ping()


def test_body_above_the_default_buffer_is_refused_before_login(env: Env) -> None:
    device = env.raw()
    device.send(LOGIN, "x" * 1025)
    assert device.closed_by_server()


def test_unknown_commands_are_illegal_but_harmless(env: Env) -> None:
    device = env.logged_in(env.take())
    assert device.expect_response(device.send(NOTIFY, "a notification")) == ILLEGAL_COMMAND
    assert device.expect_response(device.send(HARDWARE, "dw", "13", "1")) == ILLEGAL_COMMAND
    device.ping()


# raw sockets: values ----------------------------------------------------------------------
def test_writes_of_every_type_and_pin_spelling(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    device.send(HARDWARE, "vw", "1", "21.75")
    device.send(HARDWARE, "vw", "V2", "150")  # clamped to max 100
    device.send(HARDWARE, "vw", "v3", "héllo wörld")
    device.send(HARDWARE, "vw", "4", "24.5", "-13.25")
    device.send(HARDWARE, "vw", "5", "1")
    device.ping()
    assert env.value(device_id, TEMPERATURE) == 21.75
    assert env.value(device_id, HUMIDITY) == 100
    assert env.value(device_id, STATUS_DS) == "héllo wörld"
    assert env.value(device_id, POSITION) == [24.5, -13.25]
    assert env.value(device_id, MODE) == 1


def test_mismatched_value_stores_nothing_and_is_illegal(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    bad = [("vw", "2", "22.7"), ("vw", "5", "7"), ("vw", "4", "200", "1"), ("vw", "9", "1")]
    for fields in bad:
        assert device.expect_response(device.send(HARDWARE, *fields)) == ILLEGAL_COMMAND
    assert env.value(device_id, HUMIDITY) is None
    assert env.value(device_id, MODE) is None
    assert env.value(device_id, POSITION) is None
    # A bad frame among good ones refuses only itself.
    device.sock.sendall(
        frame(HARDWARE, 50, "vw", "2", "5")
        + frame(HARDWARE, 51, "vw", "2", "nope")
        + frame(HARDWARE, 52, "vw", "1", "-3.5")
    )
    assert device.expect_response(51) == ILLEGAL_COMMAND
    device.ping()
    assert env.value(device_id, HUMIDITY) == 5
    assert env.value(device_id, TEMPERATURE) == -3.5


def test_a_pin_repeated_in_one_packet_keeps_every_value_in_history(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    start = time.time_ns() // 1_000_000
    device.sock.sendall(b"".join(frame(HARDWARE, 10 + i, "vw", "2", str(i)) for i in range(50)))
    device.ping()
    assert env.value(device_id, HUMIDITY) == 49
    history = history_of(env.api, device_id, HUMIDITY, start)
    assert [value for _, value in history] == list(range(50))
    stamps = [ts for ts, _ in history]
    assert stamps == sorted(set(stamps))  # strictly increasing


def test_interleaved_repeated_pins_in_one_packet_all_reach_history(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    start = time.time_ns() // 1_000_000
    frames = []
    for i in range(10):
        frames.append(frame(HARDWARE, 100 + 3 * i, "vw", "1", f"{i}.5"))
        frames.append(frame(HARDWARE, 101 + 3 * i, "vw", "V3", f"s{i}"))
        frames.append(frame(HARDWARE, 102 + 3 * i, "vw", "v5", str(i % 3)))  # no history
    device.sock.sendall(b"".join(frames))
    device.ping()
    assert env.value(device_id, TEMPERATURE) == 9.5
    assert env.value(device_id, STATUS_DS) == "s9"
    assert env.value(device_id, MODE) == 0  # 9 % 3
    assert [v for _, v in history_of(env.api, device_id, TEMPERATURE, start)] == [
        i + 0.5 for i in range(10)
    ]
    assert [v for _, v in history_of(env.api, device_id, STATUS_DS, start)] == [
        f"s{i}" for i in range(10)
    ]


def test_vr_read_answers_with_bare_pins(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, TEMPERATURE, 19.5)
    env.write(device_id, POSITION, [2.25, 48.5])
    device = env.logged_in(device_id)
    msg_id = device.send(HARDWARE, "vr", "V1")
    assert device.receive() == (HARDWARE, msg_id, ["vw", "1", "19.5"])
    msg_id = device.send(HARDWARE, "vr", "4", "3", "2")  # V2 and V3 have no value
    assert device.receive() == (HARDWARE, msg_id, ["vw", "4", "2.25", "48.5"])
    device.ping()


def test_raw_sync_of_everything(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, STATUS_DS, "ready")
    env.write(device_id, HUMIDITY, 61)
    device = env.logged_in(device_id)
    msg_id = device.send(SYNC)
    assert device.receive() == (HARDWARE, msg_id, ["vw", "2", "61"])
    assert device.receive() == (HARDWARE, msg_id, ["vw", "3", "ready"])
    device.ping()


def test_own_write_is_not_echoed(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    device.send(HARDWARE, "vw", "1", "30.5")
    device.ping()  # an echo would have been queued before this answer
    assert env.value(device_id, TEMPERATURE) == 30.5
    env.write(device_id, HUMIDITY, 44)
    assert device.receive() == (HARDWARE, 1, ["vw", "2", "44"])


def test_values_over_the_rate_limit_are_held_and_quota_limit_told_once(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    count = RATE_BURST + 3  # the last 3 wait for the rate (1 a second here)
    device.sock.sendall(b"".join(frame(HARDWARE, 100 + i, "vw", "3", str(i)) for i in range(count)))
    command, msg_id, status = device.receive()
    assert (command, status) == (RESPONSE, QUOTA_LIMIT)
    assert msg_id == 100 + RATE_BURST  # the first value held
    device.ping()  # handled once the held values are stored; no second QUOTA_LIMIT before it
    assert env.value(device_id, STATUS_DS) == str(count - 1)


def test_device_property_is_stored(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id)
    device.send(PROPERTY_CMD, "1", "label", "Outside")
    device.send(PROPERTY_CMD, "2", "labels", "low", "high")
    assert device.expect_response(device.send(PROPERTY_CMD, "1", "nope", "x")) == ILLEGAL_COMMAND
    device.ping()
    response = env.api.get(PROPERTIES, deviceId=device_id, dataStreamIds="1,2")
    assert response.status_code == 200, response.text
    assert [item["properties"] for item in response.json()] == [
        {"label": "Outside"},
        {"labels": '["low","high"]'},
    ]


# raw sockets: downlink --------------------------------------------------------------------
def test_nothing_is_sent_between_login_and_the_internal_answer(env: Env) -> None:
    device_id = env.take()
    device = env.raw()
    assert device.login(token_of(device_id)) == OK
    env.write(device_id, HUMIDITY, 12)  # queued until the device's INTERNAL is answered
    msg_id = device.send(INTERNAL, *BLYNKLIB_INFO)
    assert device.receive(skip_pings=False) == (RESPONSE, msg_id, OK)
    assert device.receive() == (HARDWARE, 1, ["vw", "2", "12"])


def test_frames_stay_below_the_announced_buffer(env: Env) -> None:
    device_id = env.take()
    device = env.logged_in(device_id, "ver", "1.0", "buff-in", "64")
    env.write(device_id, STATUS_DS, "x" * 54)  # header 5 + "vw\0" "3\0" 5 + 54 = 64: too big
    env.write(device_id, STATUS_DS, "y" * 53)  # 63 bytes: fits
    assert device.receive() == (HARDWARE, 2, ["vw", "3", "y" * 53])


def test_two_hundred_devices_at_once(env: Env) -> None:
    first = env.take(200)
    devices = [env.raw() for _ in range(200)]
    for offset, device in enumerate(devices):
        device.send(LOGIN, token_of(first + offset), msg_id=1)
    for device in devices:
        assert device.expect_response(1) == OK
    for offset in range(0, 200, 20):
        assert env.status(first + offset)["connected"] is True
    env.write(first + 123, HUMIDITY, 77)
    assert devices[123].receive() == (HARDWARE, 1, ["vw", "2", "77"])
    devices[7].ping()


# the listener's lifecycle -----------------------------------------------------------------
def test_stopping_the_server_closes_device_connections(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir = tmp_path_factory.mktemp(f"hardware-stop-{backend}")
    fleet_file = data_dir / "fleet.yaml"
    fleet_file.write_text(weather_fleet("Hardware Farms", CLIENT, DEVICE_TOKENS))
    apply_fleet(data_dir, fleet_file)
    port = free_port()
    server = Server(data_dir, "--hardware-port", str(port)).start()
    device = RawDevice(port)
    try:
        assert device.login(token_of(FIRST_DEVICE)) == OK
        device.send(HARDWARE, "vw", "2", "5")
        device.ping()
        assert server.stop() == 0
        assert device.closed_by_server()
    finally:
        device.close()
        if server.process is not None and server.process.poll() is None:
            server.kill()


# what each client library handles -----------------------------------------------------------
def set_property(env: Env, device_id: int, ds_id: int, name: str, value: str) -> None:
    body = {"deviceId": device_id, "dataStreamId": ds_id, "property": name, "value": value}
    response = env.api.post(PROPERTY, body)
    assert response.status_code == 204, response.text


def properties_of(env: Env, device_id: int, ds_id: int) -> Any:
    response = env.api.get(PROPERTIES, deviceId=device_id, dataStreamIds=str(ds_id))
    assert response.status_code == 200, response.text
    return response.json()[0]["properties"]


def test_cpp_library_connection_survives_property_value_and_sync(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, MODE, 1)
    device = env.cpp(device_id)
    sync = device.send(SYNC, "vr", "5")  # BLYNK_CONNECTED() { Blynk.syncVirtual(V5); }
    assert device.receive() == (HARDWARE, sync, ["vw", "5", "1"])
    set_property(env, device_id, TEMPERATURE, "color", "#00FF00")
    env.write(device_id, HUMIDITY, 21)
    # Events reach the connection in order: a PROPERTY frame would have come first.
    assert device.receive() == (HARDWARE, 1, ["vw", "2", "21"])
    device.send(HARDWARE, "vw", "1", "19.5")  # Blynk.virtualWrite(V1, 19.5)
    sync = device.send(SYNC)  # Blynk.syncAll()
    assert [device.receive() for _ in range(3)] == [
        (HARDWARE, sync, ["vw", "1", "19.5"]),
        (HARDWARE, sync, ["vw", "2", "21"]),
        (HARDWARE, sync, ["vw", "5", "1"]),
    ]
    device.ping()  # still the first connection, and nothing else was sent before the answer
    assert device.received[-1] == (RESPONSE, device._id, OK)
    assert properties_of(env, device_id, TEMPERATURE) == {"color": "#00FF00"}  # stored
    status = env.status(device_id)
    assert status["connected"] is True and status["protocol"] == "hardware"


def test_blynklib_gets_no_property_and_stays_connected(env: Env) -> None:
    device_id = env.take()
    device = env.blynk(device_id)
    device.call(lambda b: b.virtual_write(1, 18.5))
    assert wait_for("V1 stored", lambda: env.value(device_id, TEMPERATURE) == 18.5)
    set_property(env, device_id, HUMIDITY, "label", "Air")
    env.write(device_id, HUMIDITY, 44)
    assert device.next_write() == (2, ["44"])
    device.call(lambda b: b.virtual_sync(1))
    assert device.next_write() == (1, ["18.5"])
    assert device.connects == 1, device.logs
    assert properties_of(env, device_id, HUMIDITY) == {"label": "Air"}


def test_blynk_library_python_connects_writes_syncs_and_survives_a_property(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, MODE, 2)
    device = env.blynklib_python(device_id)
    device.call(lambda b: b.virtual_write(1, 23.5))
    device.call(lambda b: b.virtual_write(3, "from BlynkLib"))
    assert wait_for("V1 stored", lambda: env.value(device_id, TEMPERATURE) == 23.5)
    assert wait_for("V3 stored", lambda: env.value(device_id, STATUS_DS) == "from BlynkLib")
    device.call(lambda b: b.sync_virtual(5, 1))
    assert [device.next_write(), device.next_write()] == [("5", ["2"]), ("1", ["23.5"])]
    set_property(env, device_id, TEMPERATURE, "color", "#123456")  # while connected
    for i in range(5):
        env.write(device_id, HUMIDITY, i)  # downlink, back to back
    assert [device.next_write() for _ in range(5)] == [("2", [str(i)]) for i in range(5)]
    device.call(lambda b: b.virtual_write(2, 99))
    assert wait_for("V2 stored", lambda: env.value(device_id, HUMIDITY) == 99)
    assert device.healthy(), (device.errors, device.connects, device.disconnects)
    assert env.status(device_id)["connected"] is True
    assert properties_of(env, device_id, TEMPERATURE) == {"color": "#123456"}


def test_blynk_library_python_is_never_pinged(env: Env) -> None:
    """BlynkLib 0.2.0 crashes answering a server PING: a raw device announcing what it
    announces gets its frames back to back, and never a PING."""
    device_id = env.take()
    device = env.raw()
    assert device.login(token_of(device_id), command=HW_LOGIN) == OK
    device.announce("ver", "0.2.0", "h-beat", "10", "buff-in", "1024", "dev", "python")
    for i in range(3):
        env.write(device_id, HUMIDITY, 60 + i)
    received = [device.receive(skip_pings=False) for _ in range(3)]
    assert received == [(HARDWARE, i + 1, ["vw", "2", str(60 + i)]) for i in range(3)]
    device.ping()  # the answer is the very next frame: no PING came before it


# groups, time, a second login ---------------------------------------------------------------
def test_a_timestamped_group_carries_its_time_into_history(env: Env) -> None:
    device_id = env.take()
    env.write(device_id, TEMPERATURE, 30.0)  # a newer current value than the group's
    device = env.cpp(device_id)
    then = int(time.time() * 1000) - 3_600_000
    device.send(GROUP, "t", str(then))  # Blynk.beginGroup(then)
    device.send(HARDWARE, "vw", "1", "11.5")
    device.send(HARDWARE, "vw", "2", "12")
    device.send(GROUP, "e")  # Blynk.endGroup()
    device.send(GROUP, "t", str(then + 1000))
    device.send(HARDWARE, "vw", "1", "13.5")
    device.send(GROUP, "e")
    device.ping()
    assert history_of(env.api, device_id, TEMPERATURE, then) == [(then, 11.5), (then + 1000, 13.5)]
    assert history_of(env.api, device_id, HUMIDITY, then) == [(then, 12)]
    assert env.value(device_id, TEMPERATURE) == 30.0  # older points do not replace it
    assert env.value(device_id, HUMIDITY) == 12  # no value before: the group's becomes current


def test_a_malformed_group_is_answered_and_its_values_refused(env: Env) -> None:
    device_id = env.take()
    bystander = env.cpp(env.take())
    device = env.cpp(device_id)
    begin = device.send(GROUP, "t", "yesterday")
    assert device.expect_response(begin) == ILLEGAL_COMMAND_BODY
    write = device.send(HARDWARE, "vw", "2", "5")
    assert device.expect_response(write) == ILLEGAL_COMMAND
    device.send(GROUP, "e")
    device.send(HARDWARE, "vw", "2", "6")
    device.ping()
    assert env.value(device_id, HUMIDITY) == 6
    bystander.ping()


def utc(device: RawDevice, what: str) -> list[str]:
    msg_id = device.send(INTERNAL, "utc", what)
    command, got_id, fields = device.receive()
    assert (command, got_id) == (INTERNAL, msg_id), (command, got_id, fields)
    assert fields[:2] == ["utc", what]
    return list(fields[2:])


def test_utc_requests_answer_with_the_device_or_organization_timezone(env: Env) -> None:
    zoned = env.cpp(ZONED)
    assert utc(zoned, "tz_name") == [DEVICE_TIMEZONE]
    assert utc(zoned, "tz_rule") == ["EET-2EEST,M3.5.0/3,M10.5.0/4"]
    offset, dst = utc(zoned, "tz")
    assert int(offset) == 120 and int(dst) in (0, 60)
    before = int(time.time() * 1000)
    [now] = utc(zoned, "time")
    assert before <= int(now) <= int(time.time() * 1000)
    assert utc(zoned, "iso")[0].endswith(("+02:00", "+03:00"))
    assert len(utc(zoned, "dst_next")) == 4
    other = env.cpp(env.take())
    assert utc(other, "tz_name") == [ORG_TIMEZONE]
    assert int(utc(other, "tz")[0]) == -300
    assert other.expect_response(other.send(INTERNAL, "utc", "weather")) == ILLEGAL_COMMAND_BODY
    assert other.expect_response(other.send(INTERNAL, "utc")) == ILLEGAL_COMMAND_BODY
    other.ping()
    zoned.ping()


def test_blynklib_gets_utc_answers_too(env: Env) -> None:
    device = env.blynk(env.take())
    answers: queue.Queue[list[str]] = queue.Queue()

    @device.blynk.handle_event("internal_utc")  # type: ignore[untyped-decorator]
    def on_utc(values: list[str]) -> None:
        answers.put(values)

    device.call(lambda b: b.internal("utc", "tz_name"))
    assert answers.get(timeout=DEADLINE) == ["tz_name", ORG_TIMEZONE]
    assert device.connects == 1, device.logs


def test_a_second_login_on_the_connection_is_already_registered(env: Env) -> None:
    device_id = env.take()
    device = env.cpp(device_id)
    assert device.expect_response(device.send(HW_LOGIN, token_of(device_id))) == (
        ALREADY_REGISTERED
    )
    assert device.expect_response(device.send(LOGIN, "x" * 32)) == ALREADY_REGISTERED
    device.ping()
    env.write(device_id, HUMIDITY, 8)
    assert device.receive() == (HARDWARE, 1, ["vw", "2", "8"])
