"""The device ports (hardware protocol, MQTT) against strangers and against one greedy device:
huge unfinished CONNECTs and pre-login floods, silent and trickling connections, floods past
the per-address and the process-wide caps, and a device flooding at line rate.

Every peer is a raw loopback socket, bounded in count; each test starts its own server with
small limits and waits for outcomes with a deadline, never for a time.
"""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pytest

from helpers import (
    DEADLINE,
    Api,
    Server,
    apply_fleet_text,
    client_token,
    free_port,
    history_of,
    log_counts,
    most_log_lines,
    now_ms,
    rss_mib,
    wait_for,
    weather_fleet,
)
from pinbase.devices.mqtt.codec import encode_publish, encode_remaining_length

CLIENT = ("hostile-backend", "hostile-secret-0123456789abcdef")
FIRST_DEVICE, DEVICES = 2001, 60
STATUS = 3  # the string datastream (pin v3, label Status): values arrive as sent
MIB = 1024 * 1024
VALUES = "/api/v2/organization/device/datastreams"

# hardware commands and statuses, spelled out here rather than imported from the code under test
RESPONSE, LOGIN, PING, HARDWARE = 0, 2, 6, 20
OK, QUOTA_LIMIT = 200, 1


def token_of(device_id: int) -> str:
    return f"HostileToken{device_id:020d}"


def hw_frame(command: int, msg_id: int, *fields: str) -> bytes:
    body = "\0".join(fields).encode()
    return struct.pack("!BHH", command, msg_id, len(body)) + body


def mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect(token: str) -> bytes:
    body = mqtt_string("MQTT") + bytes((4, 0xC2)) + (60).to_bytes(2, "big")
    body += mqtt_string("hostile") + mqtt_string("device") + mqtt_string(token)
    return b"\x10" + encode_remaining_length(len(body)) + body


class Peer:
    """One raw connection to a device port, from `source` (any loopback address)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=DEADLINE, source_address=(source, 0)
        )
        self.received = b""
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send `data`; False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
        return not self.closed

    def send_some(self, data: bytes | memoryview) -> int:
        """Send what the socket takes without waiting (closed: -1)."""
        self.sock.settimeout(0)
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return -1
        finally:
            self.sock.settimeout(DEADLINE)

    def poll(self) -> bool:
        """Read what has arrived without waiting; True once the server has closed."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.received += chunk
            self.closed = not chunk
        return self.closed

    def read(self, size: int) -> bytes:
        """Exactly `size` more bytes (b"" if the server closes first)."""
        while len(self.received) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                return b""
            self.received += chunk
        data, self.received = self.received[:size], self.received[size:]
        return data


def refused(peer: Peer) -> bool:
    """The server closed `peer` without a byte (refused at admission, or cut off)."""
    wait_for("the connection to be closed", peer.poll)
    return peer.received == b""


def hw_login(port: int, device_id: int, source: str = "127.0.0.1") -> Peer | None:
    """A hardware connection logged in as `device_id`, or None when it was refused."""
    peer = Peer(port, source)
    peer.send(hw_frame(LOGIN, 1, token_of(device_id)))
    if peer.read(5) != struct.pack("!BHH", RESPONSE, 1, OK):
        peer.sock.close()
        return None
    return peer


def hw_write(peer: Peer, value: str, msg_id: int = 7) -> None:
    """Write `value` to Status and wait for the PING after it: the write has been handled."""
    assert peer.send(hw_frame(HARDWARE, msg_id, "vw", "3", value) + hw_frame(PING, msg_id + 1))
    while True:
        command, got, status = struct.unpack("!BHH", peer.read(5))
        if (command, got) == (RESPONSE, msg_id + 1):
            assert status == OK
            return
        assert command == RESPONSE, command  # nothing else comes to this device


def mqtt_login(port: int, device_id: int, source: str = "127.0.0.1") -> Peer | None:
    peer = Peer(port, source)
    peer.send(mqtt_connect(token_of(device_id)))
    if peer.read(4) != b"\x20\x02\x00\x00":
        peer.sock.close()
        return None
    return peer


def mqtt_write(peer: Peer, value: str, packet_id: int = 7) -> None:
    """Publish `value` to Status at QoS 1 and wait for its PUBACK (sent once it is stored)."""
    assert peer.send(encode_publish("ds/Status", value.encode(), 1, packet_id))
    puback = bytes((0x40, 2)) + packet_id.to_bytes(2, "big")
    wait_for("the PUBACK", lambda: peer.poll() or puback in peer.received)
    assert puback in peer.received


class DeviceServer(Server):
    """A server with both device ports on, the test fleet applied."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        super().__init__(data_dir, *extra)
        self.hardware_port = free_port()
        self.mqtt_port = free_port()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., DeviceServer]]:
    """Starts a server with the fleet and the given flags; kills what is left at teardown."""
    started: list[DeviceServer] = []

    def run(*flags: str) -> DeviceServer:
        data_dir = tmp_path / f"data{len(started)}"
        tokens = {d: token_of(d) for d in range(FIRST_DEVICE, FIRST_DEVICE + DEVICES)}
        apply_fleet_text(data_dir, weather_fleet("Hostile Farms", CLIENT, tokens))
        server = DeviceServer(data_dir, *flags)
        started.append(server)
        server.start()
        return server

    yield run
    for server in started:
        server.kill()


def test_huge_unfinished_connects_and_pre_login_floods_are_cut_off_with_memory_bounded(
    start: Callable[..., DeviceServer],
) -> None:
    began = time.monotonic()
    server = start("--device-connections-per-address", "0", "--device-login-timeout", "60")
    baseline = peak = rss_mib(server)
    connect_header = b"\x10" + encode_remaining_length(MIB)  # a CONNECT announcing 1 MiB
    login = hw_frame(LOGIN, 1, "x" * 32)  # a token no device has, then 1 MiB of PINGs
    connect = memoryview(connect_header + bytes(MIB))
    pings = memoryview(login + hw_frame(PING, 2) * (MIB // 5))
    attacks = [(server.mqtt_port, connect)] * 200 + [(server.hardware_port, pings)] * 200
    with ExitStack() as stack:
        peers = [(stack.enter_context(Peer(port)), data) for port, data in attacks]
        sent = [0] * len(peers)

        def all_cut_off() -> bool:
            nonlocal peak
            for index, (peer, data) in enumerate(peers):
                if not peer.poll() and sent[index] < len(data):
                    sent[index] += max(0, peer.send_some(data[sent[index] :]))
            peak = max(peak, rss_mib(server))
            return all(peer.closed for peer, _ in peers)

        wait_for("every attacker to be cut off", all_cut_off)
        assert all(peer.received == b"" for peer, _ in peers)  # not even a CONNACK or RESPONSE
    assert peak - baseline < 64, f"RSS grew from {baseline:.0f} to {peak:.0f} MiB"
    assert rss_mib(server) - baseline < 64  # and no more once the attack has ended
    device = mqtt_login(server.mqtt_port, FIRST_DEVICE)  # devices are served all along
    assert device is not None
    device.sock.close()
    assert server.stop() == 0
    lines, events = log_counts(server, "too much data before login")
    assert events >= 200
    assert lines <= 2 * most_log_lines(began), server.log.read_text()  # hardware and MQTT


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


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for the TLS port")
def test_silent_and_trickling_strangers_are_closed_at_the_login_timeout(
    start: Callable[..., DeviceServer], tmp_path: Path
) -> None:
    began = time.monotonic()
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    server = start(
        "--device-login-timeout", "1",
        "--device-connections-per-address", "0",
        "--mqtt-tls-port", str(tls_port), "--tls-cert", str(cert), "--tls-key", str(key),
        "--log-level", "info",  # closing a silent stranger is logged at info: counted too
    )  # fmt: skip
    hardware = hw_login(server.hardware_port, FIRST_DEVICE)
    mqtt = mqtt_login(server.mqtt_port, FIRST_DEVICE + 1)
    assert hardware is not None and mqtt is not None
    with ExitStack() as stack:
        stack.callback(hardware.sock.close)
        stack.callback(mqtt.sock.close)
        silent = [stack.enter_context(Peer(server.hardware_port)) for _ in range(20)]
        silent += [stack.enter_context(Peer(server.mqtt_port)) for _ in range(20)]
        silent += [stack.enter_context(Peer(tls_port)) for _ in range(10)]  # no handshake
        # Tricklers send a byte per poll of what would be a login of 1,000 bytes.
        tricklers = [
            (stack.enter_context(Peer(server.hardware_port)), struct.pack("!BHH", LOGIN, 1, 1000)),
            (stack.enter_context(Peer(server.mqtt_port)), b"\x10" + encode_remaining_length(1000)),
        ]
        tricklers = [(peer, head + b"x" * 1000) for peer, head in tricklers]
        position = 0

        def trickled_out() -> bool:
            nonlocal position
            for peer, data in tricklers:
                if not peer.poll():
                    peer.send(data[position : position + 1])
            position += 1
            return all(peer.closed for peer, _ in tricklers)

        wait_for("the tricklers to be cut off", trickled_out)
        assert position < 1000
        for peer in [*silent, *(peer for peer, _ in tricklers)]:
            assert refused(peer)  # closed, nothing answered
        hw_write(hardware, "still here")  # logged-in devices are not strangers
        mqtt_write(mqtt, "still here too")
        secure = ssl.create_default_context(cafile=str(cert)).wrap_socket(
            socket.create_connection(("127.0.0.1", tls_port), timeout=DEADLINE),
            server_hostname="127.0.0.1",
        )  # a device that does its handshake and logs in in time is served
        with secure:
            secure.sendall(mqtt_connect(token_of(FIRST_DEVICE + 2)))
            assert secure.recv(4) == b"\x20\x02\x00\x00"
    assert server.stop() == 0
    lines, events = log_counts(server, "TLS handshake failed or timed out")
    assert events >= 10
    assert lines <= most_log_lines(began), server.log.read_text()
    lines, events = log_counts(server, "no login in time")
    assert events >= 21
    assert lines <= most_log_lines(began), server.log.read_text()
    lines, events = log_counts(server, "no CONNECT in time")
    assert events >= 21
    assert lines <= most_log_lines(began), server.log.read_text()


def test_per_address_and_process_caps_refuse_cleanly_while_devices_keep_working(
    start: Callable[..., DeviceServer],
) -> None:
    began = time.monotonic()
    server = start(
        "--device-connections-per-address", "4",
        "--max-connections", "24",
        "--device-login-timeout", "60",
    )  # fmt: skip
    api = Api(server.url, client_token(server.url, CLIENT))  # one HTTP connection, kept alive
    assert api.get(VALUES, deviceId=FIRST_DEVICE, dataStreamIds=STATUS).status_code == 200
    device = iter(range(FIRST_DEVICE, FIRST_DEVICE + DEVICES))
    with ExitStack() as stack:
        stack.callback(api.close)

        def logged_in(source: str = "127.0.0.1") -> Peer | None:
            peer = hw_login(server.hardware_port, next(device), source)
            if peer is not None:
                stack.callback(peer.sock.close)
            return peer

        existing = logged_in()
        others = [logged_in() for _ in range(3)]
        assert existing is not None and None not in others
        for _ in range(10):  # a fifth connection from 127.0.0.1 is one too many
            with Peer(server.hardware_port) as extra:
                assert refused(extra)
        assert logged_in("127.0.0.2") is not None  # other addresses are served
        mqtt = mqtt_login(server.mqtt_port, next(device))  # and each port counts its own
        assert mqtt is not None
        stack.callback(mqtt.sock.close)
        hw_write(existing, "first")
        assert others[0] is not None
        others[0].sock.close()
        wait_for("127.0.0.1 to be served again", lambda: logged_in() is not None)

        fillers = []  # now the process-wide cap, four connections per address at most
        for index in range(40):
            filler = logged_in(f"127.0.1.{index // 4 + 1}")
            if filler is None:
                break
            fillers.append(filler)
        assert 0 < len(fillers) < 24, "no process-wide cap"
        for port in (server.hardware_port, server.mqtt_port):  # one budget for every listener
            with Peer(port, "127.0.2.1") as extra:
                assert refused(extra)
        hw_write(existing, "second")  # the connections in hand keep working, HTTP included
        response = api.get(VALUES, deviceId=FIRST_DEVICE, dataStreamIds=STATUS)
        assert response.status_code == 200 and response.json()[0]["value"] == "second"
        for filler in fillers:
            filler.sock.close()
        wait_for("new devices to be served again", lambda: logged_in("127.0.2.1") is not None)
        assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE).status_code == 200
    assert server.stop() == 0
    lines, events = log_counts(server, "refused a connection from 127.0.0.1: per-address limit")
    assert events >= 10
    assert lines <= most_log_lines(began), server.log.read_text()
    lines, events = log_counts(server, "connection limit")
    assert events >= 2
    assert lines <= 2 * most_log_lines(began), server.log.read_text()  # hardware and MQTT


@pytest.fixture(scope="module")
def flood_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DeviceServer, Api]]:
    """A server whose devices may write 20 values a second, bursts of 20."""
    data_dir = tmp_path_factory.mktemp(f"flood-{backend}")
    tokens = {d: token_of(d) for d in range(FIRST_DEVICE, FIRST_DEVICE + DEVICES)}
    apply_fleet_text(data_dir, weather_fleet("Hostile Farms", CLIENT, tokens))
    server = DeviceServer(data_dir, "--device-rate", "20", "--device-burst", "20")
    server.start()
    api = Api(server.url, client_token(server.url, CLIENT))
    try:
        yield server, api
    finally:
        api.close()
        server.kill()


@pytest.mark.parametrize("protocol", ["hardware", "mqtt"])
def test_a_flooding_device_is_paused_while_the_others_are_served(
    flood_server: tuple[DeviceServer, Api], protocol: str
) -> None:
    server, api = flood_server
    flooder_id = FIRST_DEVICE if protocol == "hardware" else FIRST_DEVICE + 2
    other_id = flooder_id + 1
    start = now_ms()
    login: Callable[[int, int], Peer | None]
    write: Callable[[Peer, str], None]
    if protocol == "hardware":
        login, write, port = hw_login, hw_write, server.hardware_port
        values = b"".join(hw_frame(HARDWARE, i, "vw", "3", str(i)) for i in range(1, 60_001))
    else:
        login, write, port = mqtt_login, mqtt_write, server.mqtt_port
        values = b"".join(encode_publish("ds/Status", str(i).encode()) for i in range(1, 60_001))
    payload = memoryview(values * (48 * MIB // len(values) + 1))  # more than socket buffers hold
    flooder, other = login(port, flooder_id), login(port, other_id)
    assert flooder is not None and other is not None
    with flooder, other:
        sent = 0
        while (taken := flooder.send_some(payload[sent : sent + MIB])) > 0:
            sent += taken  # at line rate, until the socket takes no more

        def stored() -> list[str]:
            points = history_of(api, flooder_id, STATUS, start)
            return [value for _, value in points] if len(points) >= 40 else []

        flooded = wait_for("the flooder's values to be stored", stored)
        assert flooded == [str(i) for i in range(1, len(flooded) + 1)]  # in order, none dropped
        write(other, "served")  # another device is served meanwhile
        response = api.get(VALUES, deviceId=other_id, dataStreamIds=STATUS)
        assert response.status_code == 200 and response.json()[0]["value"] == "served"
        assert httpx.get(f"{server.url}/healthz", timeout=DEADLINE).status_code == 200
        while (taken := flooder.send_some(payload[sent : sent + MIB])) > 0:
            sent += taken
        assert 0 < sent < len(payload), "the flooder's socket was drained"
        assert taken == 0  # still open: the server only stopped reading it
        wait_for("the flooder to be told", lambda: flooder.poll() or flooder.received)
        assert not flooder.closed
        if protocol == "hardware":
            command, _, status = struct.unpack("!BHH", flooder.received[:5])
            assert (command, status) == (RESPONSE, QUOTA_LIMIT)
        else:
            assert b"downlink/diag" in flooder.received and b"Too many values" in flooder.received
