"""Device-protocol benchmarks: uplink throughput, downlink latency and memory per connection.

Run with `.venv/bin/python bench/devices.py`. Starts real `pinbase serve` processes (SQLite, a
fleet of 10,000 devices with known tokens) with the hardware-protocol (TCP) and MQTT listeners on
loopback ports, drives them from a load generator in a separate process (raw asyncio clients, not
blynklib or paho), and writes the results as JSON to bench/results/devices.json.

- Uplink: 100 devices connect, then each sends `VALUES` values as fast as the server takes them
  (HARDWARE `vw` frames; MQTT QoS 0 PUBLISH `ds/<label>`; MQTT QoS 1 with `QOS1_WINDOW`
  PUBLISHes in flight per device). Timed from the first send to the moment the Organization API
  shows every device's last value as current (each connection's writes are stored in order, so
  the last value being current means all were); for QoS 1, to the last PUBACK (sent only once
  the write is durable). Next to it, the Organization API's batch-update rate in values/s.
  The server runs with `--device-rate 1000000 --device-burst 1000000`: the default per-device
  limit (100 values/s sustained, bursts of 1,000) would cap each device at 100 values/s.
- Downlink: 1,000 connected devices (hardware protocol clients that announce a `build`, i.e.
  the C++ library's unpaced delivery; MQTT clients subscribed to `downlink/#`); sequential
  Organization API single-value writes to random devices on one keep-alive connection; latency
  = when the device's reader task got the value minus when the 204 arrived (signed: the server
  sends the value to the device before it answers), and minus when the request started.
- Memory: the server's RSS with 0, 1,000, 2,000 and 3,000 idle connected devices, in a fresh
  server per protocol (after a warm-up that loads the catalog), as KiB per device per step. The
  first step partly reuses memory the warm-up freed, so the steps after it are the honest figure.

Every figure with repetitions is the median of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from common import (
    CLIENT,
    DEVICES,
    batch_rows,
    batch_update,
    fleet,
    machine,
    rss_kib,
    timed,
    workdir,
    write_results,
)
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.devices.hardware import codec as hw
from pinbase.devices.mqtt import codec as mq

HOST = "127.0.0.1"
STREAM_DEVICES = 100
VALUES = 3_000
"""Values each device sends in one uplink run."""
STREAM_RUNS = 5
QOS1_WINDOW = 20
BATCH_RUNS = 5
IDLE_STEP = 1_000
IDLE_STEPS = 3
"""RSS is measured with 0, 1 x, 2 x and 3 x IDLE_STEP idle devices connected."""
DOWNLINK_WRITES = 500
STREAM_DEADLINE = 120.0
CONNECT_CONCURRENCY = 50
COUNTER = (3, "v3", "Counter")
"""The datastream (id, pin, label) the uplink runs write to."""
HUMIDITY = (2, "v2", "Humidity")
"""The datastream the downlink runs write to (integer: the device receives the value as sent)."""
HEARTBEAT = 3600
INTERNAL_INFO = (
    "ver", "1.3.2", "h-beat", str(HEARTBEAT), "buff-in", "1024", "dev", "bench", "build", "bench",
)  # fmt: skip
SERVER_FLAGS = (
    "--log-level", "warning", "--org-rate-limit", "1000000000", "--import-rate", "1000000",
    "--import-burst", "1000000", "--device-rate", "1000000", "--device-burst", "1000000",
    # every simulated device connects from 127.0.0.1: no per-address cap
    "--device-connections-per-address", "0", "--max-connections-per-address", "0",
)  # fmt: skip


def token(device_id: int) -> str:
    """The device's auth token: 32 letters and digits."""
    return f"Bench{device_id:027d}"


def device_fleet() -> dict[str, Any]:
    """common.fleet() plus a Counter datastream and a known token on every device."""
    document = fleet()
    org = document["organizations"][0]
    org["products"][0]["datastreams"].append(
        {"id": COUNTER[0], "pin": COUNTER[1], "label": COUNTER[2], "type": "integer"}
    )
    for device in org["devices"]:
        device["token"] = token(device["id"])
    return document


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# the server ------------------------------------------------------------------------------


def profiler() -> tuple[str, ...]:
    """cProfile options for the server when `BENCH_PROFILE` names an output file, else none.
    The profile is written when the server stops (SIGTERM ends it cleanly)."""
    path = os.environ.get("BENCH_PROFILE")
    return ("-m", "cProfile", "-o", path) if path else ()


class DeviceServer:
    """A real `pinbase serve` process with the HTTP, hardware-protocol and MQTT listeners."""

    def __init__(self, data_dir: Path, log: Path, *flags: str) -> None:
        """`flags`: more `pinbase serve` options."""
        self.http_port, self.hardware_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.url = f"http://{HOST}:{self.http_port}"
        self.log = log
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable, *profiler(), "-m", "pinbase", "serve",
                    "--port", str(self.http_port),
                    "--data-dir", str(data_dir), "--hardware-port", str(self.hardware_port),
                    "--mqtt-port", str(self.mqtt_port), *SERVER_FLAGS, *flags,
                ],
                stdout=output,
                stderr=output,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with status {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200 and self._listening():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def _listening(self) -> bool:
        for port in (self.hardware_port, self.mqtt_port):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
            except OSError:
                return False
        return True

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def org_client(url: str) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=60)
    response = http.post("/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT)
    http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return http


@contextlib.contextmanager
def fleet_server(
    url: str, document: dict[str, Any], work: Path, log: Path, *flags: str
) -> Iterator[tuple[DeviceServer, httpx.Client]]:
    """`document` applied to the database `url`, a `DeviceServer` on it (data in `work`) and an
    organization client of it; both closed when the block ends."""
    asyncio.run(apply_to_database(url, document))
    server = DeviceServer(work / "data", log, *flags)
    http = org_client(server.url)
    try:
        yield server, http
    finally:
        http.close()
        server.stop()


def results_header(**figures: Any) -> dict[str, Any]:
    """What a benchmark's results start with: the machine, its load, the `figures` of the
    setup, the server's flags."""
    return {
        "machine": {**machine(), "load_average_at_start": os.getloadavg()[0]},
        **figures,
        "server_flags": " ".join(SERVER_FLAGS),
    }


# the load generator (a separate process) -----------------------------------------------


def mqtt_text(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect(device_id: int, keep_alive: int = 600) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # user name, password, clean session
    body = mqtt_text("MQTT") + bytes((4, flags)) + keep_alive.to_bytes(2, "big")
    body += mqtt_text(f"bench-{device_id}") + mqtt_text("device") + mqtt_text(token(device_id))
    return bytes((0x10,)) + mq.encode_remaining_length(len(body)) + body


def mqtt_subscribe(packet_id: int, topic: str) -> bytes:
    body = packet_id.to_bytes(2, "big") + mqtt_text(topic) + b"\x00"
    return bytes((0x82,)) + mq.encode_remaining_length(len(body)) + body


class ServerPackets:
    """Splits what an MQTT server sends into (packet type, flags, body)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buffer = self._buffer
        buffer += data
        packets: list[tuple[int, int, bytes]] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            length = shift = 0
            index = pos + 1
            while index < end:
                byte = buffer[index]
                index += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # the remaining length is still incomplete
            if index + length > end:
                break
            first = buffer[pos]
            packets.append((first >> 4, first & 0x0F, bytes(buffer[index : index + length])))
            pos = index + length
        del buffer[:pos]
        return packets


def publish_payload(flags: int, body: bytes) -> tuple[str, bytes]:
    size = int.from_bytes(body[:2], "big")
    topic = body[2 : 2 + size].decode()
    start = 2 + size + (2 if (flags >> 1) & 0x03 else 0)
    return topic, body[start:]


class Device:
    """One client connection of the load generator."""

    def __init__(self, device_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.device_id = device_id
        self.reader = reader
        self.writer = writer
        self.task: asyncio.Task[None] | None = None

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.transport.abort()


class Loadgen:
    """Runs in its own process; obeys commands sent over a pipe by the benchmark process."""

    def __init__(self, pipe: Connection, hardware_port: int, mqtt_port: int) -> None:
        self.pipe = pipe
        self.ports = {"tcp": hardware_port, "mqtt": mqtt_port}
        self.groups: dict[str, list[Device]] = {}
        self.received: dict[int, float] = {}
        self.errors: list[str] = []

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, self.pipe.recv)
            if command == "exit":
                for group in list(self.groups):
                    self.close(group)
                self.pipe.send(None)
                return
            try:
                result = await getattr(self, command)(**args)
            except Exception as exc:  # reported to the benchmark process, which stops
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.pipe.send(result)

    # connecting -------------------------------------------------------------------------
    async def _open(self, proto: str, device_id: int, listen: bool) -> Device:
        reader, writer = await asyncio.open_connection(HOST, self.ports[proto])
        device = Device(device_id, reader, writer)
        if proto == "tcp":
            decoder = hw.FrameDecoder(hw.MAX_BODY)
            writer.write(hw.message(hw.LOGIN, 1, [token(device_id)]))
            await self._tcp_answer(reader, decoder, hw.OK)
            if listen:
                writer.write(hw.message(hw.INTERNAL, 2, INTERNAL_INFO))
                await self._tcp_answer(reader, decoder, hw.OK)
                device.task = asyncio.create_task(self._tcp_listen(device, decoder))
        else:
            writer.write(mqtt_connect(device_id))
            connack = await reader.readexactly(4)
            if connack[0] != 0x20 or connack[3] != 0:
                raise RuntimeError(f"device {device_id}: CONNACK {connack.hex()}")
            if listen:
                packets = ServerPackets()
                writer.write(mqtt_subscribe(1, "downlink/#"))
                while not any(kind == 9 for kind, _, _ in packets.feed(await reader.read(4096))):
                    pass
                device.task = asyncio.create_task(self._mqtt_listen(device, packets))
        return device

    @staticmethod
    async def _tcp_answer(
        reader: asyncio.StreamReader, decoder: hw.FrameDecoder, status: int
    ) -> None:
        while True:
            data = await reader.read(4096)
            if not data:
                raise ConnectionError("closed during login")
            for frame in decoder.feed(data):
                if frame.command == hw.RESPONSE:
                    if frame.status != status:
                        raise RuntimeError(f"status {frame.status}")
                    return

    async def _tcp_listen(self, device: Device, decoder: hw.FrameDecoder) -> None:
        received = self.received
        while data := await device.reader.read(65536):
            now = time.monotonic()
            for frame in decoder.feed(data):
                if frame.command == hw.HARDWARE:
                    fields = frame.fields()
                    if len(fields) >= 3 and fields[0] == b"vw":
                        received[int(fields[2])] = now

    async def _mqtt_listen(self, device: Device, packets: ServerPackets) -> None:
        received = self.received
        while data := await device.reader.read(65536):
            now = time.monotonic()
            for kind, flags, body in packets.feed(data):
                if kind == 3:
                    topic, payload = publish_payload(flags, body)
                    if topic.startswith("downlink/ds/"):
                        received[int(payload)] = now

    async def _connect_many(
        self, proto: str, ids: list[int], listen: bool
    ) -> tuple[list[Device], list[str]]:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(device_id: int) -> Device:
            async with limit:
                return await asyncio.wait_for(self._open(proto, device_id, listen), 30)

        results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
        devices = [r for r in results if isinstance(r, Device)]
        errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
        return devices, errors

    async def connect(self, group: str, proto: str, ids: list[int]) -> dict[str, Any]:
        """Connect idle devices that record the downlink values they receive."""
        start = time.monotonic()
        devices, errors = await self._connect_many(proto, ids, listen=True)
        self.groups[group] = devices
        return {"connected": len(devices), "errors": errors[:5], "s": time.monotonic() - start}

    def close(self, group: str) -> int:
        devices = self.groups.pop(group, [])
        for device in devices:
            device.close()
        return len(devices)

    async def disconnect(self, group: str) -> dict[str, Any]:
        count = self.close(group)
        await asyncio.sleep(0.5)
        return {"closed": count}

    async def downlink(self, values: list[int], timeout: float) -> dict[str, Any]:
        """When each of `values` arrived (monotonic seconds), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(v in self.received for v in values):
            await asyncio.sleep(0.01)
        found = {v: self.received[v] for v in values if v in self.received}
        self.received.clear()
        return {"times": found}

    # uplink -----------------------------------------------------------------------------
    async def stream(self, proto: str, ids: list[int], values: int, qos: int) -> dict[str, Any]:
        """Connect `ids`, then send `values` values from each as fast as the server takes them.

        Returns the monotonic time of the first send, of the last byte handed to the kernel,
        and for QoS 1 of the last PUBACK. The connections stay open (`disconnect("stream")`).
        """
        devices, errors = await self._connect_many(proto, ids, listen=False)
        if errors:
            raise RuntimeError(f"{len(errors)} devices failed to connect: {errors[0]}")
        self.groups["stream"] = devices
        if proto == "tcp":
            pin = hw.bare_pin(COUNTER[1])
            blob = [
                b"".join(hw.hardware_write(i + 2, pin, (str(i),)) for i in range(values))
                for _ in devices
            ]
        else:
            topic = f"ds/{COUNTER[2]}"
            packets = [
                mq.encode_publish(topic, str(i).encode(), qos, i + 1 if qos else None)
                for i in range(values)
            ]
            blob = [b"".join(packets)] * len(devices)
        start = time.monotonic()
        if qos:
            ends = await asyncio.gather(*(self._qos1(d, packets) for d in devices))
            return {"start": start, "sent": max(ends), "acked": max(ends)}
        for device, data in zip(devices, blob, strict=True):
            device.writer.write(data)
        await asyncio.gather(*(d.writer.drain() for d in devices))
        return {"start": start, "sent": time.monotonic()}

    @staticmethod
    async def _qos1(device: Device, packets: list[bytes]) -> float:
        """Keep QOS1_WINDOW PUBLISHes in flight; the time the last PUBACK arrived."""
        decoder = ServerPackets()
        total = len(packets)
        sent = acked = 0
        while acked < total:
            if sent < total and sent - acked < QOS1_WINDOW:
                upto = min(total, acked + QOS1_WINDOW)
                device.writer.write(b"".join(packets[sent:upto]))
                sent = upto
            data = await device.reader.read(65536)
            if not data:
                raise ConnectionError(f"device {device.device_id}: closed")
            acked += sum(1 for kind, _, _ in decoder.feed(data) if kind == 4)
        return time.monotonic()


def loadgen_main(pipe: Connection, hardware_port: int, mqtt_port: int) -> None:
    raise_open_files()
    asyncio.run(Loadgen(pipe, hardware_port, mqtt_port).serve())


class LoadgenProcess:
    """The benchmark side of the load generator process."""

    def __init__(self, server: DeviceServer) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=loadgen_main, args=(child, server.hardware_port, server.mqtt_port), daemon=True
        )
        self.process.start()
        child.close()

    def call(self, command: str, **args: Any) -> Any:
        self.pipe.send((command, args))
        result = self.pipe.recv()
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(f"load generator: {command}: {result['error']}")
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.call("exit")
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


# measurements ----------------------------------------------------------------------------


def batch_update_rate(http: httpx.Client) -> dict[str, float]:
    """The Organization API batch update: 10,000 devices x 2 datastreams per request."""
    send = batch_update(http, batch_rows(DEVICES))
    send()  # warm-up
    seconds = statistics.median(timed(send, BATCH_RUNS))
    return {"values_per_s": round(2 * DEVICES / seconds), "request_ms": round(seconds * 1000, 1)}


def wait_current(http: httpx.Client, expected: dict[int, int], ds_id: int) -> float:
    """Poll until each device's current value of `ds_id` is the expected one; the time it was."""
    pending = dict(expected)
    deadline = time.monotonic() + STREAM_DEADLINE
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} devices did not store their last value in time")
        for ids in chunks(list(pending), 10):
            response = http.get(
                "/api/v1/organization/device/datastreams/batch",
                params={"deviceIds": ",".join(map(str, ids)), "dataStreamIds": str(ds_id)},
            )
            response.raise_for_status()
            for item in response.json():
                values = item["dataStreamValues"]
                if values and values[0].get("value") == pending[item["deviceId"]]:
                    del pending[item["deviceId"]]
        if pending:
            time.sleep(0.02)
    return time.monotonic()


def history_rows(http: httpx.Client, ids: list[int], ds_id: int) -> int:
    total = 0
    for device_id in ids:
        response = http.get(
            "/api/v1/organization/device/datastream/history",
            params={
                "deviceId": device_id, "dataStreamId": ds_id, "from": 0,
                "to": 4_000_000_000_000, "size": 1,
            },
        )  # fmt: skip
        response.raise_for_status()
        total += response.json()["totalElements"]
    return total


def uplink(
    http: httpx.Client, loadgen: LoadgenProcess, proto: str, qos: int, first_id: int
) -> dict[str, Any]:
    """STREAM_RUNS runs, each on fresh devices; values/s is the median."""
    rates = []
    details = []
    for run in range(STREAM_RUNS):
        ids = list(range(first_id + run * STREAM_DEVICES, first_id + (run + 1) * STREAM_DEVICES))
        sent = loadgen.call("stream", proto=proto, ids=ids, values=VALUES, qos=qos)
        stored = wait_current(http, dict.fromkeys(ids, VALUES - 1), COUNTER[0])
        done = sent["acked"] if qos else stored
        loadgen.call("disconnect", group="stream")
        seconds = done - sent["start"]
        rates.append(STREAM_DEVICES * VALUES / seconds)
        detail = {
            "s": round(seconds, 2),
            "values_per_s": round(STREAM_DEVICES * VALUES / seconds),
            "client_sent_s": round(sent["sent"] - sent["start"], 2),
        }
        if run == 0:
            detail["history_rows"] = history_rows(http, ids, COUNTER[0])
        details.append(detail)
        print(f"  {proto} qos{qos} run {run}: {detail}", flush=True)
    return {
        "devices": STREAM_DEVICES,
        "values_per_device": VALUES,
        "values_per_s": round(statistics.median(rates)),
        "runs": details,
    }


def downlink_latency(
    server: DeviceServer, loadgen: LoadgenProcess, ids: list[int], base: int
) -> dict[str, Any]:
    """DOWNLINK_WRITES sequential single-value writes to random connected devices."""
    org = org_client(server.url)
    bearer = org.headers["Authorization"]
    org.close()
    rng = random.Random(base)
    conn = http.client.HTTPConnection(HOST, server.http_port, timeout=30)
    headers = {"Authorization": bearer, "Content-Type": "application/json"}
    starts: dict[int, tuple[float, float]] = {}
    for index in range(DOWNLINK_WRITES + 20):
        value = base + index
        body = json.dumps(
            {"deviceId": rng.choice(ids), "dataStreamId": HUMIDITY[0], "value": value}
        )
        start = time.monotonic()
        conn.request("POST", "/api/v1/organization/device/datastream", body, headers)
        response = conn.getresponse()
        response.read()
        answered = time.monotonic()
        if response.status != 204:
            raise RuntimeError(f"write answered {response.status}")
        if index >= 20:  # the first 20 warm up
            starts[value] = (start, answered)
        time.sleep(0.002)
    conn.close()
    times: dict[int, float] = loadgen.call("downlink", values=list(starts), timeout=10)["times"]
    after_204 = [(times[v] - answered) * 1000 for v, (_, answered) in starts.items() if v in times]
    end_to_end = [(times[v] - start) * 1000 for v, (start, _) in starts.items() if v in times]
    request = [(answered - start) * 1000 for start, answered in starts.values()]
    return {
        "connected_devices": len(ids),
        "writes": len(starts),
        "received": len(after_204),
        "after_204_ms": {
            "median": round(statistics.median(after_204), 3),
            "p99": round(percentile(after_204, 0.99), 3),
            "min": round(min(after_204), 3),
            "max": round(max(after_204), 3),
        },
        "from_request_start_ms": {
            "median": round(statistics.median(end_to_end), 3),
            "p99": round(percentile(end_to_end, 0.99), 3),
        },
        "request_ms": {
            "median": round(statistics.median(request), 3),
            "p99": round(percentile(request, 0.99), 3),
        },
    }


def settled_rss(server: DeviceServer) -> int:
    time.sleep(1.0)
    return server.rss_kib()


def idle_and_downlink(data_dir: Path, log: Path, proto: str) -> dict[str, Any]:
    """A fresh server: RSS with 0, 1, 2 and 3 x IDLE_STEP idle devices, then the latency with
    IDLE_STEP connected."""
    server = DeviceServer(data_dir, log)
    loadgen = LoadgenProcess(server)
    try:
        http = org_client(server.url)
        # warm-up: load the catalog, serve a device and a downlink write once
        loadgen.call("connect", group="warm", proto=proto, ids=list(range(9001, 9101)))
        response = http.post(
            "/api/v1/organization/device/datastream",
            json={"deviceId": 9001, "dataStreamId": HUMIDITY[0], "value": 1},
        )
        assert response.status_code == 204, response.text
        loadgen.call("disconnect", group="warm")
        groups = [
            list(range(step * IDLE_STEP + 1, (step + 1) * IDLE_STEP + 1))
            for step in range(IDLE_STEPS)
        ]
        rss = [settled_rss(server)]
        for step, ids in enumerate(groups):
            connected = loadgen.call("connect", group=f"idle-{step}", proto=proto, ids=ids)
            if connected["connected"] != len(ids):
                raise RuntimeError(f"{proto}: only {connected['connected']} connected: {connected}")
            print(f"  {proto}: {len(ids)} more connected in {connected['s']:.1f} s", flush=True)
            rss.append(settled_rss(server))
        for step in range(1, IDLE_STEPS):
            loadgen.call("disconnect", group=f"idle-{step}")
        latency = downlink_latency(server, loadgen, groups[0], 1_000_000)
        http.close()
    finally:
        loadgen.stop()
        server.stop()
    steps = [round((rss[i + 1] - rss[i]) / IDLE_STEP, 2) for i in range(IDLE_STEPS)]
    return {
        "memory": {
            "rss_kib": {str(i * IDLE_STEP): v for i, v in enumerate(rss)},
            "kib_per_device_by_step": steps,
            "kib_per_device_after_first_step": round(
                (rss[-1] - rss[1]) / ((IDLE_STEPS - 1) * IDLE_STEP), 2
            ),
        },
        "downlink": latency,
    }


def main() -> None:
    started = time.monotonic()
    limit = raise_open_files()
    results: dict[str, Any] = {
        "machine": {
            **machine(),
            "open_files_limit": limit,
            "load_average_at_start": os.getloadavg()[0],
        },
        "server_flags": " ".join(SERVER_FLAGS),
    }
    with workdir("pinbase-bench-devices-", results) as (work, log):
        clean = work / "clean"
        asyncio.run(apply_to_database(database_url(clean, None), device_fleet()))
        data = {name: work / name for name in ("uplink", "tcp", "mqtt")}
        for path in data.values():
            shutil.copytree(clean, path)

        print("uplink throughput", flush=True)
        server = DeviceServer(data["uplink"], log)
        loadgen = LoadgenProcess(server)
        try:
            http = org_client(server.url)
            results["batch_update"] = batch_update_rate(http)
            print(f"  batch update: {results['batch_update']}", flush=True)
            results["uplink_tcp"] = uplink(http, loadgen, "tcp", 0, 1)
            results["uplink_mqtt_qos0"] = uplink(http, loadgen, "mqtt", 0, 1001)
            results["uplink_mqtt_qos1"] = uplink(http, loadgen, "mqtt", 1, 2001)
            results["uplink_mqtt_qos1"]["in_flight_per_device"] = QOS1_WINDOW
            http.close()
        finally:
            loadgen.stop()
            server.stop()

        for proto in ("tcp", "mqtt"):
            print(f"idle memory and downlink latency: {proto}", flush=True)
            results[f"idle_{proto}"] = idle_and_downlink(data[proto], log, proto)
    write_results("devices", results, started)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
