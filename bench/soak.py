"""Soak test: mixed load on one real `pinbase serve` for SOAK_MINUTES (default 30), with figures.

Run with `make soak` (`SOAK_MINUTES=2 make soak` for a short run). One server on loopback ports
(SQLite in a temporary directory, the 10,000-device fleet of bench/devices.py with known tokens,
default limits), and four load processes started from this one, so that no load generator is
limited by another's GIL:

- `org`: SOAK_ORG_CLIENTS Organization API clients (each its own client-credentials token and
  keep-alive connections, up to ORG_IN_FLIGHT requests in flight), together starting
  SOAK_ORG_RATE requests/s on schedule (default 120, under the default organization limit of
  10,000 a minute), on devices 1-100: single-value writes
  (Temperature, double; Humidity, integer), batch updates of 10 devices x 2 datastreams,
  history pages of the last minute and current values (one device, or a batch of 10). Every
  written value is unique; every write and its outcome is recorded with its request window
  (wall-clock ms before the request and after the answer).
- `tcp`: 500 devices (101-600) over the hardware protocol, `mqtt`: 500 devices over MQTT
  (601-850 QoS 0, 851-1100 QoS 1). Each writes one value a second (1, 2, 3, ...) to its
  Counter datastream, announces a 10 s heartbeat and PINGs every 10 s (MQTT: keep-alive 30 s,
  PINGREQ every 15 s), and reconnects when dropped. QoS 1 PUBACKs are counted per value.
- `attacker`: from another loopback address (so that the per-address HTTP cap it meets is its
  own), after ATTACK_START seconds, waves in a cycle until the end, each bounded in sockets and
  time: unfinished 1 MiB MQTT CONNECTs, unfinished 1 MB HTTP headers, silent HTTP connections,
  one device (1101) flooding hardware frames at line rate, a burst of unauthenticated hardware
  connections (half a bad token, half silent).

This process is the monitor: every WINDOW seconds the server's RSS, fd count and CPU, the
Organization API's latency in the window (p50/p99), errors by kind, the devices connected (as
counted by the load generators, and `GET /api/v1/organization/device/status` on a sample of 30).

At the end the load stops, the server settles and is stopped (SIGTERM), and the SQLite file is
read: every Organization API write answered 2xx must have its value in history, and every MQTT
QoS 1 value whose PUBACK arrived. Values the devices sent without acknowledgement (TCP, QoS 0)
are compared too, as information. Results: bench/results/soak.json (timeline and totals) and
bench/results/soak-server.log; a summary table on stdout. Exit status 1 when an acknowledged
write is missing, 2 when the server died.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import uvloop

from common import CLIENT, ROOT
from devices import (
    COUNTER,
    HOST,
    DeviceServer,
    ServerPackets,
    device_fleet,
    free_port,
    mqtt_connect,
    percentile,
    raise_open_files,
    token,
)
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.devices.hardware import codec as hw
from pinbase.devices.mqtt import codec as mq

WINDOW = 10.0
"""Seconds per monitor sample and per latency window."""
MINUTES = float(os.environ.get("SOAK_MINUTES") or 30)
ORG_RATE = float(os.environ.get("SOAK_ORG_RATE") or 120)
"""Organization API requests per second, all clients together (the monitor's come on top)."""
ORG_CLIENTS = int(os.environ.get("SOAK_ORG_CLIENTS") or 4)
ORG_IN_FLIGHT = 8
"""Requests one Organization API client may have waiting for an answer."""
ORG_DEVICES = range(1, 101)
TCP_DEVICES = range(101, 601)
MQTT_QOS0 = range(601, 851)
MQTT_QOS1 = range(851, 1101)
FLOOD_DEVICE = 1101
TEMPERATURE, HUMIDITY = 1, 2
"""The Organization API's datastreams (double, integer); the devices write COUNTER."""
ORG_MIX = (("write", 55), ("batch", 10), ("history", 15), ("current", 20))
BATCH_DEVICES = 10
REQUEST_TIMEOUT = 30.0
DEVICE_HEARTBEAT = 10
MQTT_KEEP_ALIVE = 30
CONNECTS_PER_SECOND = 100
"""Ramp of each device process: new connections per second at the start."""
CONNECT_TIMEOUT = 10.0
RECONNECT_DELAY = 2.0
QOS1_DRAIN = 5.0
"""Seconds the MQTT devices wait for outstanding PUBACKs once the load stops."""
ATTACKER_HOST = "127.0.0.66"
ATTACK_START = 15.0
ATTACK_GAP = 5.0
MQTT_CONNECT_SOCKETS = 200
HTTP_HEADER_SOCKETS = 300
HTTP_SILENT_SOCKETS = 300
HARDWARE_BURST_SOCKETS = 300
HOLD = 20.0
"""Longest an attack socket is held open (then closed by the attacker)."""
FLOOD_SECONDS = 10.0
FLOOD_BYTES = 512 * 1024 * 1024
SETTLE = 5.0
"""Seconds between the end of the load and the final sample / server stop."""
STATUS_SAMPLE = [*TCP_DEVICES[::50], *MQTT_QOS0[::25], *MQTT_QOS1[::25]]
CHUNK = 64 * 1024
RESULTS = ROOT / "results"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return "connect error"
    if isinstance(exc, httpx.RemoteProtocolError | ConnectionResetError | BrokenPipeError):
        return "connection closed"
    return type(exc).__name__


def summary_ms(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50": round(statistics.median(samples), 2),
        "p99": round(percentile(samples, 0.99), 2),
        "max": round(max(samples), 2),
    }


# the load processes ------------------------------------------------------------------------


class Worker:
    """One load process: runs until the monitor sets `stop`; reports every window on `reports`.

    Subclasses fill `self.window` (reset every WINDOW seconds, sent as it is) and may add to
    `window_extra`; `final()` is sent once the load has stopped.
    """

    name = "worker"

    def __init__(self, t0: float, reports: Queue[dict[str, Any]], stop: Event) -> None:
        self.t0 = t0
        self.reports = reports
        self.stop = stop
        self.stopping = asyncio.Event()
        self.window: dict[str, Any] = self.new_window()

    def new_window(self) -> dict[str, Any]:
        return {"errors": Counter()}

    def error(self, kind: str) -> None:
        self.window["errors"][kind] += 1

    def window_extra(self) -> dict[str, Any]:
        return {}

    async def load(self) -> None:
        raise NotImplementedError

    def final(self) -> dict[str, Any]:
        return {}

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds` unless the load stops first; True when it stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def run(self) -> None:
        load = asyncio.create_task(self.load())
        reporter = asyncio.create_task(self._reporter())
        while not self.stop.is_set() and not load.done():
            await asyncio.sleep(0.2)
        self.stopping.set()
        try:
            await load
        except Exception as exc:  # reported, so the run still finishes
            self.error(f"load generator failed: {type(exc).__name__}: {exc}")
        index = await reporter
        self._send_window(index, partial=True)  # what happened since, until the load stopped
        self.reports.put({"source": self.name, "final": True, **self.final()})

    async def _reporter(self) -> int:
        """Send each window as it ends, until the load stops; the index of the current one."""
        index = 0
        while not await self.pause(self.t0 + (index + 1) * WINDOW - time.monotonic()):
            self._send_window(index, partial=False)
            index += 1
        return index

    def _send_window(self, index: int, partial: bool) -> None:
        window, self.window = self.window, self.new_window()
        window["errors"] = dict(window["errors"])
        self.reports.put(
            {"source": self.name, "window": index, "partial": partial, **window}
            | self.window_extra()
        )


class OrgLoad(Worker):
    """Organization API clients on devices 1-100, paced together at ORG_RATE requests/s."""

    name = "org"

    def __init__(self, t0: float, reports: Queue[dict[str, Any]], stop: Event, args: Any) -> None:
        super().__init__(t0, reports, stop)
        self.url: str = args["url"]
        self.records = Path(args["records"]).open("w")  # noqa: SIM115 (closed in final)
        self.sequence = 0

    def new_window(self) -> dict[str, Any]:
        return {"errors": Counter(), "latency_ms": {op: [] for op, _ in ORG_MIX}, "acked": 0}

    def unique(self) -> int:
        self.sequence += 1
        return self.sequence

    def record(
        self, cells: list[tuple[int, int, float]], start: int, status: int, acked: bool
    ) -> None:
        """One line per value: device, datastream, value, request window (ms), status, acked."""
        end = now_ms()
        for device, ds, value in cells:
            self.records.write(
                f"{device}\t{ds}\t{value!r}\t{start}\t{end}\t{status}\t{int(acked)}\n"
            )
        if acked:
            self.window["acked"] += len(cells)

    async def load(self) -> None:
        await asyncio.gather(*(self.client(i) for i in range(ORG_CLIENTS)))

    async def client(self, index: int) -> None:
        rng = random.Random(index)
        ops = [op for op, _ in ORG_MIX]
        weights = [w for _, w in ORG_MIX]
        interval = ORG_CLIENTS / ORG_RATE
        limits = httpx.Limits(max_connections=ORG_IN_FLIGHT)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=REQUEST_TIMEOUT, limits=limits
        ) as http:
            while not self.stopping.is_set():
                try:
                    response = await http.post(
                        "/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT
                    )
                    response.raise_for_status()
                    http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
                    break
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.error(f"token: {error_kind(exc)}")
                    await self.pause(1.0)
            # Requests start on schedule, not when the previous one is answered (a slow answer
            # does not slow the load down), up to ORG_IN_FLIGHT at once per client.
            slots = asyncio.Semaphore(ORG_IN_FLIGHT)
            running: set[asyncio.Task[None]] = set()
            next_at = time.monotonic() + rng.random() * interval
            while not self.stopping.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:
                    next_at = time.monotonic()  # far behind: drop the backlog, keep the pace
                next_at += interval
                await slots.acquire()
                if self.stopping.is_set():
                    break
                task = asyncio.create_task(self.request(http, rng, rng.choices(ops, weights)[0]))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
            await asyncio.gather(*running)  # answers to requests already sent still count

    async def request(self, http: httpx.AsyncClient, rng: random.Random, op: str) -> None:
        cells: list[tuple[int, int, float]] = []
        if op == "write":
            device, ds = rng.choice(ORG_DEVICES), rng.choice((TEMPERATURE, HUMIDITY))
            value: float = self.unique() + (0.5 if ds == TEMPERATURE else 0)
            cells = [(device, ds, value)]
            call = http.post(
                "/api/v1/organization/device/datastream",
                json={"deviceId": device, "dataStreamId": ds, "value": value},
            )
        elif op == "batch":
            rows = []
            for device in rng.sample(ORG_DEVICES, BATCH_DEVICES):
                temperature, humidity = self.unique() + 0.5, self.unique()
                rows.append([device, temperature, humidity])
                cells += [(device, TEMPERATURE, temperature), (device, HUMIDITY, humidity)]
            call = http.post(
                "/api/v1/organization/product/devices/batch-update",
                json={"fields": ["deviceId", "Temperature", "Humidity"], "updates": rows},
            )
        elif op == "history":
            stamp = now_ms()
            call = http.get(
                "/api/v1/organization/device/datastream/history",
                params={
                    "deviceId": rng.choice(ORG_DEVICES),
                    "dataStreamId": rng.choice((TEMPERATURE, HUMIDITY)),
                    "from": stamp - 60_000, "to": stamp + 1_000, "size": 50,
                },
            )  # fmt: skip
        elif rng.random() < 0.5:
            call = http.get(
                "/api/v2/organization/device/datastreams",
                params={"deviceId": rng.choice(ORG_DEVICES)},
            )
        else:
            ids = rng.sample(ORG_DEVICES, BATCH_DEVICES)
            call = http.get(
                "/api/v1/organization/device/datastreams/batch",
                params={"deviceIds": ",".join(map(str, ids))},
            )
        start, started = now_ms(), time.monotonic()
        try:
            response = await call
        except httpx.HTTPError as exc:
            self.window["latency_ms"][op].append((time.monotonic() - started) * 1000)
            self.error(error_kind(exc))
            if cells:
                self.record(cells, start, 0, acked=False)
            return
        self.window["latency_ms"][op].append((time.monotonic() - started) * 1000)
        status = response.status_code
        acked = 200 <= status < 300
        if status == 200 and op == "batch":
            # Some rows were skipped (none should be) and the answer does not say which.
            self.error("batch update 200: rows skipped")
            acked = False
        elif not acked:
            self.error(f"http {status}")
        if cells:
            self.record(cells, start, status, acked)

    def final(self) -> dict[str, Any]:
        self.records.close()
        return {"values_written": self.sequence}


class FleetDevice:
    """One simulated device of a device process."""

    __slots__ = ("acked", "connected", "device_id", "ids", "inflight", "pings", "qos", "sent")

    def __init__(self, device_id: int, qos: int) -> None:
        self.device_id = device_id
        self.qos = qos
        self.sent = 0
        """Values written so far: 1..sent (values keep counting across reconnects)."""
        self.acked: list[int] = []
        self.inflight: dict[int, tuple[int, float]] = {}
        """QoS 1: packet id -> (value, when sent)."""
        self.pings: dict[int, float] = {}
        self.ids = hw.MessageIds()
        self.connected = False


class DeviceLoad(Worker):
    """Devices over one protocol ("tcp" or "mqtt"), each writing one value a second."""

    def __init__(self, t0: float, reports: Queue[dict[str, Any]], stop: Event, args: Any) -> None:
        super().__init__(t0, reports, stop)
        self.name = args["proto"]
        self.port: int = args["port"]
        self.devices = [FleetDevice(d, q) for d, q in args["devices"]]
        self.reconnects = 0

    def new_window(self) -> dict[str, Any]:
        return {"errors": Counter(), "sent": 0, "acked": 0, "puback_ms": [], "ping_ms": []}

    def window_extra(self) -> dict[str, Any]:
        return {
            "connected": sum(d.connected for d in self.devices),
            "devices": len(self.devices),
        }

    async def load(self) -> None:
        await asyncio.gather(
            *(self.device(d, i / CONNECTS_PER_SECOND) for i, d in enumerate(self.devices))
        )

    async def device(self, dev: FleetDevice, delay: float) -> None:
        rng = random.Random(dev.device_id)
        if await self.pause(delay):
            return
        first = True
        while not self.stopping.is_set():
            if not first:
                self.reconnects += 1
                if await self.pause(RECONNECT_DELAY):
                    return
            first = False
            try:
                reader, writer, decoder = await asyncio.wait_for(self.open(dev), CONNECT_TIMEOUT)
            except (OSError, EOFError, TimeoutError, RuntimeError, hw.CodecError) as exc:
                self.error(f"connect: {error_kind(exc)}")
                continue
            dev.connected = True
            listener = asyncio.create_task(self.listen(dev, reader, decoder))
            try:
                await self.send(dev, writer, listener, rng)
            except (OSError, RuntimeError) as exc:
                self.error(f"send: {error_kind(exc)}")
            finally:
                dev.connected = False
                if not listener.done():
                    listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    reason = await listener
                    if not self.stopping.is_set():
                        self.error(f"dropped: {reason}")
                writer.transport.abort()
                dev.inflight.clear()  # never acknowledged: not counted
                dev.pings.clear()

    async def open(
        self, dev: FleetDevice
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, hw.FrameDecoder | None]:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            if self.name == "mqtt":
                writer.write(mqtt_connect(dev.device_id, MQTT_KEEP_ALIVE))
                connack = await reader.readexactly(4)
                if connack[0] != 0x20 or connack[3] != 0:
                    raise RuntimeError(f"CONNACK {connack.hex()}")
                return reader, writer, None
            decoder = hw.FrameDecoder(hw.MAX_BODY)
            writer.write(hw.message(hw.LOGIN, dev.ids.next(), [token(dev.device_id)]))
            await self.tcp_answer(reader, decoder)
            info = ("ver", "1.3.2", "h-beat", str(DEVICE_HEARTBEAT), "buff-in", "1024",
                    "dev", "soak", "build", "soak")  # fmt: skip
            writer.write(hw.message(hw.INTERNAL, dev.ids.next(), info))
            await self.tcp_answer(reader, decoder)
            return reader, writer, decoder
        except BaseException:
            writer.transport.abort()
            raise

    @staticmethod
    async def tcp_answer(reader: asyncio.StreamReader, decoder: hw.FrameDecoder) -> None:
        while True:
            data = await reader.read(4096)
            if not data:
                raise EOFError("closed during login")
            for frame in decoder.feed(data):
                if frame.command == hw.RESPONSE:
                    if frame.status != hw.OK:
                        raise RuntimeError(f"RESPONSE {frame.status}")
                    return

    async def send(
        self,
        dev: FleetDevice,
        writer: asyncio.StreamWriter,
        listener: asyncio.Task[str],
        rng: random.Random,
    ) -> None:
        mqtt = self.name == "mqtt"
        ping_every = MQTT_KEEP_ALIVE / 2 if mqtt else DEVICE_HEARTBEAT
        next_at = time.monotonic() + rng.random()
        next_ping = next_at + ping_every
        topic = f"ds/{COUNTER[2]}"
        pin = hw.bare_pin(COUNTER[1])
        while not self.stopping.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self.stopping.is_set() or listener.done() or writer.is_closing():
                break
            now = time.monotonic()
            next_at = max(next_at + 1.0, now)
            value = dev.sent + 1
            if not mqtt:
                data = hw.hardware_write(dev.ids.next(), pin, (str(value),))
            elif dev.qos:
                packet_id = dev.ids.next()
                dev.inflight[packet_id] = (value, now)
                data = mq.encode_publish(topic, str(value).encode(), 1, packet_id)
            else:
                data = mq.encode_publish(topic, str(value).encode())
            if now >= next_ping:
                next_ping = now + ping_every
                if mqtt:
                    data += b"\xc0\x00"  # PINGREQ
                    dev.pings[0] = now
                else:
                    ping_id = dev.ids.next()
                    dev.pings[ping_id] = now
                    data += hw.ping(ping_id)
            writer.write(data)
            dev.sent = value
            self.window["sent"] += 1
            await writer.drain()
        if mqtt and dev.inflight and not listener.done():
            deadline = time.monotonic() + QOS1_DRAIN
            while dev.inflight and not listener.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if mqtt and not writer.is_closing():
            writer.write(b"\xe0\x00")  # DISCONNECT
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.drain(), 1.0)

    async def listen(
        self, dev: FleetDevice, reader: asyncio.StreamReader, decoder: hw.FrameDecoder | None
    ) -> str:
        """Read until the connection ends; why it ended."""
        packets = ServerPackets()
        window = self.window
        try:
            while data := await reader.read(65536):
                now = time.monotonic()
                window = self.window
                if decoder is None:
                    self.mqtt_packets(dev, packets.feed(data), now)
                    continue
                for frame in decoder.feed(data):
                    if frame.command != hw.RESPONSE:
                        continue
                    sent = dev.pings.pop(frame.msg_id, None)
                    if sent is not None:
                        window["ping_ms"].append((now - sent) * 1000)
                    elif frame.status != hw.OK:
                        self.error(f"hardware RESPONSE {frame.status}")
        except (OSError, hw.CodecError) as exc:
            return error_kind(exc)
        return "closed by the server"

    def mqtt_packets(
        self, dev: FleetDevice, packets: Iterable[tuple[int, int, bytes]], now: float
    ) -> None:
        window = self.window
        for kind, _, body in packets:
            if kind == 4:  # PUBACK
                held = dev.inflight.pop(int.from_bytes(body[:2], "big"), None)
                if held is None:
                    self.error("PUBACK for no PUBLISH")
                    continue
                dev.acked.append(held[0])
                window["acked"] += 1
                window["puback_ms"].append((now - held[1]) * 1000)
            elif kind == 13:  # PINGRESP
                sent = dev.pings.pop(0, None)
                if sent is not None:
                    window["ping_ms"].append((now - sent) * 1000)
            elif kind == 3:
                self.error("downlink/diag message")

    def final(self) -> dict[str, Any]:
        return {
            "reconnects": self.reconnects,
            "devices": {
                d.device_id: {"qos": d.qos, "sent": d.sent, "acked": d.acked} for d in self.devices
            },
        }


Outcome = tuple[str, float | None]
"""What happened to one attack socket, and after how many seconds the server closed it."""


class Attacker(Worker):
    """Waves of hostile connections from ATTACKER_HOST, one after another, until the end."""

    name = "attacker"

    def __init__(self, t0: float, reports: Queue[dict[str, Any]], stop: Event, args: Any) -> None:
        super().__init__(t0, reports, stop)
        self.ports: dict[str, int] = args["ports"]
        self.cycles = 0
        self.waves: list[dict[str, Any]] = []

    async def load(self) -> None:
        waves: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            ("mqtt-connect-1mib", self.mqtt_connect_flood),
            ("http-header-1mb", self.http_header_flood),
            ("http-silent", self.http_silent),
            ("hardware-flood", self.hardware_flood),
            ("hardware-unauth-burst", self.hardware_burst),
        ]
        if await self.pause(ATTACK_START):
            return
        while True:
            for name, wave in waves:
                started = time.monotonic()
                begin = {"wave": name, "cycle": self.cycles, "start_s": round(started - self.t0, 1)}
                self.reports.put({"source": self.name, "attack_started": begin})
                report = await wave()
                ended = time.monotonic()
                report = {
                    "wave": name,
                    "cycle": self.cycles,
                    "start_s": round(started - self.t0, 1),
                    "end_s": round(ended - self.t0, 1),
                    **report,
                }
                self.waves.append(report)
                self.reports.put({"source": self.name, "attack": report})
                if await self.pause(ATTACK_GAP):
                    return
            self.cycles += 1

    async def wave(self, probes: list[Awaitable[Outcome]]) -> dict[str, Any]:
        """Run the probes together; stop them when the load stops. Outcome counts and the
        seconds until the server closed the sockets it closed."""
        tasks = [asyncio.ensure_future(p) for p in probes]
        pending: set[asyncio.Future[Outcome]] = set(tasks)
        while pending and not self.stopping.is_set():
            _, pending = await asyncio.wait(pending, timeout=0.2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        outcomes: Counter[str] = Counter()
        closed: list[float] = []
        for task in tasks:
            if task.cancelled():
                outcomes["cancelled at the end of the run"] += 1
                continue
            exc = task.exception()
            if exc is not None:
                outcomes[f"error: {error_kind(exc)}"] += 1
                continue
            outcome, after = task.result()
            outcomes[outcome] += 1
            if after is not None:
                closed.append(after)
        report: dict[str, Any] = {"sockets": len(tasks), "outcomes": dict(outcomes)}
        if closed:
            report["closed_by_server_after_s"] = {
                "median": round(statistics.median(closed), 2),
                "max": round(max(closed), 2),
            }
        return report

    async def probe(
        self, port: int, chunks: Iterable[bytes], describe: Callable[[bytes], str]
    ) -> Outcome:
        """Connect, send `chunks` while reading what the server answers, and wait until the
        server closes the connection or HOLD seconds have passed since the start."""
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, local_addr=(ATTACKER_HOST, 0)), 5
            )
        except (OSError, TimeoutError) as exc:
            return f"connect failed: {error_kind(exc)}", None
        head = bytearray()

        async def read() -> None:
            # Reading from the start keeps an answer the server sends before it closes (and
            # resets a connection whose unread bytes it drops) from being lost to the reset.
            while data := await reader.read(4096):
                head.extend(data[: 64 - len(head)])

        listener = asyncio.create_task(read())
        try:
            try:
                for chunk in chunks:
                    if listener.done():
                        break
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), start + HOLD - time.monotonic())
            except TimeoutError:  # (an OSError: first)
                return "still sending at the end of the hold", None
            except (OSError, RuntimeError):
                pass  # the server closed it while it was being sent
            done, _ = await asyncio.wait({listener}, timeout=start + HOLD - time.monotonic())
            if not done:
                return "open at the end of the hold", None
            reset = " (reset)" if listener.exception() is not None else ""
            return describe(bytes(head)) + reset, time.monotonic() - start
        finally:
            listener.cancel()
            writer.transport.abort()

    @staticmethod
    def http_answer(head: bytes) -> str:
        if head.startswith(b"HTTP/"):
            return f"answered {head.split(b' ', 2)[1].decode(errors='replace')}, closed"
        return "closed without an answer"

    @staticmethod
    def hardware_answer(head: bytes) -> str:
        if len(head) >= hw.HEADER_SIZE and head[0] == hw.RESPONSE:
            return f"answered RESPONSE {hw.HEADER.unpack_from(head)[2]}, closed"
        return "closed without an answer"

    async def mqtt_connect_flood(self) -> dict[str, Any]:
        """Unauthenticated sockets, each sending all but the last byte of a 1 MiB CONNECT."""
        remaining = mq.MAX_PACKET_SIZE - 4  # the fixed header takes 4 of the 1 MiB
        variable = b"\x00\x04MQTT\x04\xc2\x00\x3c"  # MQTT 3.1.1, user name and password
        head = b"\x10" + mq.encode_remaining_length(remaining) + variable
        body = head + bytes(remaining - len(variable) - 1)  # one byte short of complete

        def chunks() -> Iterable[bytes]:
            return (body[i : i + CHUNK] for i in range(0, len(body), CHUNK))

        def describe(head: bytes) -> str:
            return "answered CONNACK, closed" if head[:1] == b"\x20" else "closed without CONNACK"

        port = self.ports["mqtt"]
        return await self.wave(
            [self.probe(port, chunks(), describe) for _ in range(MQTT_CONNECT_SOCKETS)]
        )

    async def http_header_flood(self) -> dict[str, Any]:
        """Sockets each sending a request head that grows to 1 MB and never ends."""
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
        filler = b"a" * CHUNK

        def chunks() -> Iterable[bytes]:
            yield head
            for _ in range(1_000_000 // CHUNK):
                yield filler

        port = self.ports["http"]
        return await self.wave(
            [self.probe(port, chunks(), self.http_answer) for _ in range(HTTP_HEADER_SOCKETS)]
        )

    async def http_silent(self) -> dict[str, Any]:
        """Sockets that connect and send nothing."""
        port = self.ports["http"]
        return await self.wave(
            [self.probe(port, (), self.http_answer) for _ in range(HTTP_SILENT_SOCKETS)]
        )

    async def hardware_burst(self) -> dict[str, Any]:
        """Hardware connections all at once: half log in with a bad token, half stay silent."""
        bad = hw.message(hw.LOGIN, 1, ["Invalid" + "0" * 25])
        port = self.ports["hardware"]
        return await self.wave(
            [
                self.probe(port, (bad,) if i % 2 else (), self.hardware_answer)
                for i in range(HARDWARE_BURST_SOCKETS)
            ]
        )

    async def hardware_flood(self) -> dict[str, Any]:
        """One device with a valid token writing `vw` frames as fast as the socket takes them,
        for FLOOD_SECONDS (at most FLOOD_BYTES)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    HOST, self.ports["hardware"], local_addr=(ATTACKER_HOST, 0)
                ),
                5,
            )
            decoder = hw.FrameDecoder(hw.MAX_BODY)
            writer.write(hw.message(hw.LOGIN, 1, [token(FLOOD_DEVICE)]))
            await asyncio.wait_for(DeviceLoad.tcp_answer(reader, decoder), 5)
        except (OSError, EOFError, TimeoutError, RuntimeError) as exc:
            return {"error": f"login: {error_kind(exc)}"}
        pin = hw.bare_pin(COUNTER[1])
        blob = b"".join(hw.hardware_write(i + 2, pin, (str(i),)) for i in range(4096))
        statuses: Counter[str] = Counter()

        async def read() -> None:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    statuses[f"RESPONSE {frame.status}" if frame.command == 0 else "other"] += 1

        listener = asyncio.create_task(read())
        start = time.monotonic()
        sent = 0
        longest_drain = 0.0
        closed_by_server = False
        try:
            while (
                time.monotonic() - start < FLOOD_SECONDS
                and sent < FLOOD_BYTES
                and not self.stopping.is_set()
            ):
                if listener.done():
                    closed_by_server = True
                    break
                writer.write(blob)
                before = time.monotonic()
                await asyncio.wait_for(writer.drain(), start + FLOOD_SECONDS + 5 - before)
                longest_drain = max(longest_drain, time.monotonic() - before)
                sent += len(blob)
        except TimeoutError:  # (an OSError: first)
            statuses["server stopped reading for 5 s"] += 1
        except (OSError, RuntimeError):
            closed_by_server = True
        seconds = time.monotonic() - start
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await listener
        writer.transport.abort()
        frames = sent // len(blob) * 4096
        return {
            "seconds": round(seconds, 1),
            "frames": frames,
            "frames_per_s": round(frames / seconds) if seconds else 0,
            "mib": round(sent / 2**20, 1),
            "longest_wait_for_the_server_to_read_s": round(longest_drain, 2),
            "closed_by_server": closed_by_server,
            "answers": dict(statuses),
        }

    def final(self) -> dict[str, Any]:
        return {"cycles": self.cycles}


WORKERS: dict[str, Callable[[float, Queue[dict[str, Any]], Event, Any], Worker]] = {
    "org": OrgLoad,
    "tcp": DeviceLoad,
    "mqtt": DeviceLoad,
    "attacker": Attacker,
}


def worker_main(
    kind: str, args: Any, control: Connection, reports: Queue[dict[str, Any]], stop: Event
) -> None:
    """A load process: ready, wait for the common start time, run until stopped."""
    raise_open_files()
    reports.put({"source": kind, "ready": True})
    t0: float = control.recv()

    async def main() -> None:
        await WORKERS[kind](t0, reports, stop, args).run()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


# the server and the monitor ---------------------------------------------------------------


class SoakServer(DeviceServer):
    """`pinbase serve` with every limit at its default, HTTP, hardware and MQTT on free ports."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.http_port, self.hardware_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.url = f"http://{HOST}:{self.http_port}"
        self.log = log
        self.command = [
            sys.executable, "-m", "pinbase", "serve", "--port", str(self.http_port),
            "--data-dir", str(data_dir), "--hardware-port", str(self.hardware_port),
            "--mqtt-port", str(self.mqtt_port), "--log-level", "info",
            # the 500 devices of each protocol share 127.0.0.1; the attacker has its own address
            "--device-connections-per-address", "1000",
        ]  # fmt: skip
        with log.open("ab") as output:
            self.process = subprocess.Popen(self.command, stdout=output, stderr=output)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with status {self.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz").status_code == 200 and self._listening():
                    return
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("server did not start")

    def shutdown(self) -> dict[str, Any]:
        """SIGTERM, as a deployment stops it; its exit status and how long it took."""
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return {"exit_status": "killed after 60 s", "shutdown_s": 60.0}
        return {
            "exit_status": self.process.returncode,
            "shutdown_s": round(time.monotonic() - start, 2),
        }


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process so far; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def server_sample(pid: int) -> dict[str, Any] | None:
    """RSS, fds, threads and CPU seconds of the server; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    cpu = cpu_seconds(pid)
    if cpu is None or fields.get("State", "").strip().startswith("Z"):
        return None
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": fds,
        "threads": int(fields["Threads"]),
        "cpu_s": cpu,
    }


class StatusProbe:
    """`GET /api/v1/organization/device/status` on the sample of devices, one connection."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=2.0)
        self.authorized = False

    def count(self) -> dict[str, Any]:
        connected = Counter[str]()
        errors = Counter[str]()
        try:
            if not self.authorized:
                response = self.http.post(
                    "/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT
                )
                response.raise_for_status()
                self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
                self.authorized = True
            for device_id in STATUS_SAMPLE:
                response = self.http.get(
                    "/api/v1/organization/device/status", params={"deviceId": device_id}
                )
                if response.status_code != 200:
                    errors[f"http {response.status_code}"] += 1
                elif response.json()["connected"]:
                    connected[response.json()["protocol"] or "?"] += 1
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            errors[error_kind(exc)] += 1
        return {
            "connected": sum(connected.values()),
            "of": len(STATUS_SAMPLE),
            "by_protocol": dict(connected),
            **({"errors": dict(errors)} if errors else {}),
        }

    def close(self) -> None:
        self.http.close()


class Monitor:
    """Collects the load processes' reports and the server samples, window by window."""

    def __init__(self, server: SoakServer, reports: Queue[dict[str, Any]]) -> None:
        self.server = server
        self.reports = reports
        self.windows: dict[tuple[str, int], dict[str, Any]] = {}
        self.samples: list[dict[str, Any]] = []
        self.attacks: list[dict[str, Any]] = []
        self.running_attack: dict[str, Any] | None = None
        self.finals: dict[str, dict[str, Any]] = {}
        self.probe = StatusProbe(server.url)
        self.server_died_at: float | None = None
        self.start_cpu = 0.0
        """The server's CPU seconds when the load started."""
        self.load_pids: dict[str, int] = {}
        """The load processes, whose CPU seconds are sampled too."""

    def drain(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """Take one report (waiting up to `timeout`), filed by kind; it, or None."""
        try:
            report = self.reports.get(timeout=timeout) if timeout else self.reports.get_nowait()
        except queue.Empty:
            return None
        source = report["source"]
        if "window" in report:
            self.windows[(source, report["window"])] = report
        elif "attack_started" in report:
            self.running_attack = report["attack_started"]
        elif "attack" in report:
            self.attacks.append(report["attack"])
            self.running_attack = None
        elif report.get("final"):
            self.finals[source] = report
        return report

    def drain_all(self) -> None:
        while self.drain() is not None:
            pass

    def sample(self, t: float) -> dict[str, Any] | None:
        sample = server_sample(self.server.pid)
        if sample is None:
            return None
        sample["t_s"] = round(t, 1)
        sample["load_average"] = round(os.getloadavg()[0], 1)
        sample["load_cpu_s"] = {name: cpu_seconds(pid) for name, pid in self.load_pids.items()}
        sample["status_sample"] = self.probe.count()
        self.samples.append(sample)
        return sample

    def run(self, t0: float, windows: int) -> None:
        """Sample at the end of every window and print a line for it, until `windows` ended."""
        for index in range(windows):
            end = t0 + (index + 1) * WINDOW
            while time.monotonic() < end:
                self.drain(timeout=min(0.5, max(0.01, end - time.monotonic())))
            sample = self.sample(end - t0)
            if sample is None:
                self.server_died_at = round(time.monotonic() - t0, 1)
                print(f"[{end - t0:5.0f}s] the server process is gone", flush=True)
                return
            deadline = time.monotonic() + 1.0  # the windows' reports follow within moments
            while time.monotonic() < deadline and not all(
                (s, index) in self.windows for s in ("org", "tcp", "mqtt")
            ):
                self.drain(timeout=0.1)
            print(self.line(index, sample), flush=True)

    def attacks_in(self, end: float) -> list[str]:
        """The attack waves that ran in the window ending at `end` (seconds since the start)."""
        waves = {
            a["wave"] for a in self.attacks if a["start_s"] < end and a["end_s"] > end - WINDOW
        }
        running = self.running_attack
        if running is not None and running["start_s"] < end:
            waves.add(running["wave"])
        return sorted(waves)

    def line(self, index: int, sample: dict[str, Any]) -> str:
        org = self.windows.get(("org", index))
        rss = sample["rss_kib"] / 1024
        parts = [f"[{sample['t_s']:5.0f}s] rss {rss:6.1f} MiB fds {sample['fds']:5d}"]
        if len(self.samples) >= 2:
            before = self.samples[-2]
            cpu = (sample["cpu_s"] - before["cpu_s"]) / (sample["t_s"] - before["t_s"]) * 100
            parts.append(f"cpu {cpu:3.0f}% load {sample['load_average']:4.1f}")
        if org is not None:
            latencies = [x for xs in org["latency_ms"].values() for x in xs]
            stats = summary_ms(latencies)
            parts.append(
                f"| org {len(latencies) / WINDOW:5.1f} req/s p50 {stats.get('p50', 0):6.1f}"
                f" p99 {stats.get('p99', 0):7.1f} ms err {sum(org['errors'].values())}"
            )
        devices = [self.windows.get((s, index)) for s in ("tcp", "mqtt")]
        connected = sum(d["connected"] for d in devices if d)
        sent = sum(d["sent"] for d in devices if d)
        errors = sum(sum(d["errors"].values()) for d in devices if d)
        parts.append(f"| devices {connected:4d} up {sent / WINDOW:6.1f} values/s err {errors}")
        status = sample["status_sample"]
        failed = f" ({sum(status['errors'].values())} failed)" if "errors" in status else ""
        parts.append(f"| status {status['connected']}/{status['of']}{failed}")
        active = self.attacks_in(sample["t_s"])
        if active:
            parts.append(f"| attack: {', '.join(active)}")
        return " ".join(parts)


# verification ------------------------------------------------------------------------------


def verify_org(db: sqlite3.Connection, records: Path) -> dict[str, Any]:
    """Every Organization API write answered 2xx must have its (unique) value in history."""
    acked: dict[tuple[int, int], list[tuple[float, int, int]]] = {}
    unacked: dict[tuple[int, int], set[float]] = {}
    for line in records.read_text().splitlines():
        fields = line.split("\t")
        key = (int(fields[0]), int(fields[1]))
        if fields[6] == "1":
            acked.setdefault(key, []).append((float(fields[2]), int(fields[3]), int(fields[4])))
        else:
            unacked.setdefault(key, set()).add(float(fields[2]))
    examples: list[dict[str, Any]] = []
    lost = overwritten = stored_unacked = points = 0
    for key in sorted(set(acked) | set(unacked)):
        rows = db.execute(
            "SELECT ts, value FROM history WHERE device_id = ? AND ds_id = ?", key
        ).fetchall()
        points += len(rows)
        stored = {float(json.loads(text)) for _, text in rows}
        stamps = sorted(ts for ts, _ in rows)
        stored_unacked += len(unacked.get(key, set()) & stored)
        for value, start, end in acked.get(key, []):
            if value in stored:
                continue
            lost += 1
            # The server stamps a write between the request's start and its answer, and history
            # keeps one point per (device, datastream, millisecond): a stored point of the same
            # datastream inside that window is most likely the write that replaced this one.
            in_window = any(start <= ts <= end for ts in stamps)
            overwritten += in_window
            if len(examples) < 20:
                examples.append(
                    {"device": key[0], "datastream": key[1], "value": value,
                     "request_ms": [start, end], "stored_point_in_request_window": in_window}
                )  # fmt: skip
    acknowledged = sum(len(v) for v in acked.values())
    return {
        "acknowledged": acknowledged,
        "stored": acknowledged - lost,
        "lost": lost,
        "lost_with_a_stored_point_in_their_request_window": overwritten,
        "lost_examples": examples,
        "not_acknowledged": sum(len(v) for v in unacked.values()),
        "not_acknowledged_but_stored": stored_unacked,
        "history_points": points,
    }


def verify_devices(db: sqlite3.Connection, finals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Values sent by each device against its history; MQTT QoS 1 PUBACKs must all be stored."""
    counts = dict(
        db.execute(
            "SELECT device_id, COUNT(*) FROM history WHERE ds_id = ? GROUP BY device_id",
            (COUNTER[0],),
        ).fetchall()
    )
    groups: dict[str, dict[str, Any]] = {}
    for source, label in (("tcp", "tcp"), ("mqtt", "mqtt")):
        devices: dict[int, dict[str, Any]] = finals.get(source, {}).get("devices", {})
        for device_id, device in devices.items():
            name = label if source == "tcp" else f"mqtt_qos{device['qos']}"
            group = groups.setdefault(
                name,
                {"devices": 0, "sent": 0, "stored": 0, "sent_not_stored": 0, "stored_not_sent": 0},
            )
            stored = counts.get(device_id, 0)
            group["devices"] += 1
            group["sent"] += device["sent"]
            group["stored"] += stored
            group["sent_not_stored"] += max(0, device["sent"] - stored)
            group["stored_not_sent"] += max(0, stored - device["sent"])
            if device["qos"]:
                values = {
                    int(v)
                    for (v,) in db.execute(
                        "SELECT value FROM history WHERE device_id = ? AND ds_id = ?",
                        (device_id, COUNTER[0]),
                    )
                }
                missing = [v for v in device["acked"] if v not in values]
                group["acknowledged"] = group.get("acknowledged", 0) + len(device["acked"])
                group["lost"] = group.get("lost", 0) + len(missing)
                if missing and len(group.setdefault("lost_examples", [])) < 20:
                    group["lost_examples"].append({"device": device_id, "values": missing[:5]})
    groups["flood_device_points"] = {"device": FLOOD_DEVICE, "stored": counts.get(FLOOD_DEVICE, 0)}
    return groups


# the run -----------------------------------------------------------------------------------


def compact(values: list[float], most: int = 30) -> list[float]:
    """At most `most` values: the peak of each run of consecutive samples."""
    if len(values) <= most:
        return values
    size = math.ceil(len(values) / most)
    return [max(values[i : i + size]) for i in range(0, len(values), size)]


def merge_errors(reports: Iterable[dict[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report["errors"])
    return dict(total.most_common())


def timeline(
    monitor: Monitor, windows: int, load_cpu_start: dict[str, float | None]
) -> list[dict[str, Any]]:
    rows = []
    previous_cpu, previous_t = monitor.start_cpu, 0.0
    previous_load = load_cpu_start
    for index, sample in enumerate(monitor.samples[:windows]):
        org = monitor.windows.get(("org", index))
        devices = [d for d in (monitor.windows.get((s, index)) for s in ("tcp", "mqtt")) if d]
        row: dict[str, Any] = {
            "t_s": sample["t_s"],
            "rss_mib": round(sample["rss_kib"] / 1024, 1),
            "fds": sample["fds"],
            "threads": sample["threads"],
            "machine_load_average": sample["load_average"],
            "server_cpu_pct": round(
                (sample["cpu_s"] - previous_cpu) / (sample["t_s"] - previous_t) * 100
            ),
        }
        load_cpu = {
            name: round((cpu - (previous_load.get(name) or 0)) / (sample["t_s"] - previous_t) * 100)
            for name, cpu in sample["load_cpu_s"].items()
            if cpu is not None
        }
        row["load_cpu_pct"] = load_cpu
        previous_cpu, previous_t = sample["cpu_s"], sample["t_s"]
        previous_load = sample["load_cpu_s"]
        if org is not None:
            latencies = [x for xs in org["latency_ms"].values() for x in xs]
            stats = summary_ms(latencies)
            row["org"] = {
                "requests": len(latencies),
                "p50_ms": stats.get("p50"),
                "p99_ms": stats.get("p99"),
                "max_ms": stats.get("max"),
                "acked_values": org["acked"],
                "errors": org["errors"],
            }
        row["devices"] = {
            "connected": sum(d["connected"] for d in devices),
            "connected_by_protocol": {d["source"]: d["connected"] for d in devices},
            "values_sent": sum(d["sent"] for d in devices),
            "qos1_acked": sum(d["acked"] for d in devices),
            "puback_p99_ms": summary_ms([x for d in devices for x in d["puback_ms"]]).get("p99"),
            "ping_p99_ms": summary_ms([x for d in devices for x in d["ping_ms"]]).get("p99"),
            "errors": merge_errors(devices),
        }
        row["status_sample"] = sample["status_sample"]
        row["attacks"] = monitor.attacks_in(sample["t_s"])
        rows.append(row)
    return rows


def totals(monitor: Monitor, rows: list[dict[str, Any]], load_s: float) -> dict[str, Any]:
    org_reports = [r for (s, _), r in sorted(monitor.windows.items()) if s == "org"]
    device_reports = [r for (s, _), r in sorted(monitor.windows.items()) if s in ("tcp", "mqtt")]
    by_op = {
        op: summary_ms([x for r in org_reports for x in r["latency_ms"][op]]) for op, _ in ORG_MIX
    }
    everything = [x for r in org_reports for xs in r["latency_ms"].values() for x in xs]
    busy = [r for r in rows if r.get("org", {}).get("requests", 0) >= 10]
    worst = max(busy, key=lambda r: r["org"]["p99_ms"], default=None)
    sent = sum(r["sent"] for r in device_reports)
    acked_org = sum(r["acked"] for r in org_reports)
    settled = [r["devices"]["connected"] for r in rows[2:]] or [0]
    return {
        "load_s": round(load_s, 1),
        "org": {
            "requests": len(everything),
            "requests_per_s": round(len(everything) / load_s, 1),
            "acknowledged_values": acked_org,
            "acknowledged_values_per_s": round(acked_org / load_s, 1),
            "write_requests_per_s": round(
                (by_op["write"].get("n", 0) + by_op["batch"].get("n", 0)) / load_s, 1
            ),
            "latency_ms": summary_ms(everything),
            "latency_ms_by_op": by_op,
            "worst_window": None
            if worst is None
            else {"t_s": worst["t_s"], **worst["org"], "attacks": worst["attacks"]},
            "errors": merge_errors(org_reports),
        },
        "devices": {
            "values_sent": sent,
            "values_per_s": round(sent / load_s, 1),
            "qos1_acked": sum(r["acked"] for r in device_reports),
            "puback_ms": summary_ms([x for r in device_reports for x in r["puback_ms"]]),
            "ping_ms": summary_ms([x for r in device_reports for x in r["ping_ms"]]),
            "connected_min_after_20s": min(settled),
            "connected_max": max((r["devices"]["connected"] for r in rows), default=0),
            "reconnects": sum(
                monitor.finals.get(s, {}).get("reconnects", 0) for s in ("tcp", "mqtt")
            ),
            "errors": merge_errors(device_reports),
        },
        "status_sample_min_after_20s": min(
            (
                r["status_sample"]["connected"]
                for r in rows[2:]
                if "errors" not in r["status_sample"]
            ),
            default=None,
        ),
        "status_samples_failed": sum("errors" in r["status_sample"] for r in rows),
    }


def server_log_summary(log: Path) -> dict[str, Any]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    levels = Counter(line.split(" ", 1)[0] for line in lines if line[:1].isupper())
    notable = [
        line for line in lines if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback"))
    ]
    return {
        "lines": len(lines),
        "by_level": {
            k: v for k, v in levels.items() if k in ("INFO", "WARNING", "ERROR", "CRITICAL")
        },
        "warnings_and_errors": notable[:40],
    }


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "?"


def ms(stats: dict[str, Any], *keys: str) -> str:
    return " / ".join(str(stats.get(k, "-")) for k in keys) + " ms"


def print_summary(results: dict[str, Any]) -> None:
    t = results["totals"]
    org, dev = t["org"], t["devices"]
    rss, fds = results["rss_mib"], results["fds"]
    check = results["acknowledged_vs_stored"]
    o = check["org_api"]
    q = check["devices"].get("mqtt_qos1", {})
    worst = org["worst_window"] or {}
    lost_note = ""
    if o["lost"]:
        lost_note = (
            f" ({o['lost_with_a_stored_point_in_their_request_window']} with another point of"
            " the datastream stored inside their request window)"
        )
    rows: list[tuple[str, str]] = [
        ("load", f"{t['load_s']:.0f} s, {results['setup']['devices']} devices, Org API target "
                 f"{ORG_RATE:g} req/s, attacker cycles {results['attacker_cycles']}"),
        ("Org API requests/s", f"{org['requests_per_s']} ({org['requests']} requests)"),
        ("Org API writes", f"{org['write_requests_per_s']} req/s, "
                           f"{org['acknowledged_values_per_s']} values/s acknowledged"),
        ("Org API latency p50 / p99 / max", ms(org["latency_ms"], "p50", "p99", "max")),
        ("worst window p50 / p99", f"{ms(worst, 'p50_ms', 'p99_ms')} at {worst.get('t_s')} s "
                                   f"{', '.join(worst.get('attacks') or [])}"),
        ("device values/s sent", f"{dev['values_per_s']} ({dev['values_sent']} values)"),
        ("QoS 1 PUBACK p50 / p99", ms(dev["puback_ms"], "p50", "p99")),
        ("heartbeat RTT p50 / p99", ms(dev["ping_ms"], "p50", "p99")),
        ("devices connected min / max", f"{dev['connected_min_after_20s']} / "
         f"{dev['connected_max']} (after 20 s); reconnects {dev['reconnects']}"),
        ("status sample connected, min", f"{t['status_sample_min_after_20s']} of "
         f"{len(STATUS_SAMPLE)} (after 20 s); samples with failed requests: "
         f"{t['status_samples_failed']}"),
        ("server RSS start / peak / end", f"{rss['start']} / {rss['peak']} / {rss['end']} MiB"),
        ("RSS over time (MiB)", " ".join(f"{v:g}" for v in rss["over_time"])),
        ("server fds start / peak / end", f"{fds['start']} / {fds['peak']} / {fds['end']}"),
        ("server CPU (mean over the load)", f"{results['server_cpu_pct']} %"),
        ("machine load average start / end", f"{results['machine']['load_average_at_start']} / "
                                             f"{results['machine']['load_average_at_end']}"),
        ("load processes CPU (mean)", ", ".join(f"{k} {v} %" for k, v in
                                                 results["load_cpu_pct"].items())),
        ("Org API errors", json.dumps(org["errors"]) if org["errors"] else "none"),
        ("device errors", json.dumps(dev["errors"]) if dev["errors"] else "none"),
        ("acked vs stored: Org API", f"{o['acknowledged']} / {o['stored']}, lost {o['lost']}"
                                     f"{lost_note}"),
        ("acked vs stored: MQTT QoS 1", f"{q.get('acknowledged', 0)} / "
         f"{q.get('acknowledged', 0) - q.get('lost', 0)}, lost {q.get('lost', 0)}"),
    ]  # fmt: skip
    for name in ("tcp", "mqtt_qos0", "mqtt_qos1"):
        g = check["devices"].get(name)
        if g:
            rows.append((f"sent vs stored: {name}", f"{g['sent']} / {g['stored']} "
                         f"(sent, not stored: {g['sent_not_stored']})"))  # fmt: skip
    for wave in results["attacks"]:
        detail = wave.get("outcomes") or {
            k: wave[k] for k in ("seconds", "frames_per_s", "mib", "closed_by_server", "answers",
                                 "longest_wait_for_the_server_to_read_s", "error")
            if k in wave
        }  # fmt: skip
        after = wave.get("closed_by_server_after_s")
        rows.append(
            (f"attack {wave['wave']} @{wave['start_s']:.0f}s",
             json.dumps(detail) + (f", closed after median {after['median']} s" if after else ""))
        )  # fmt: skip
    server = results["server"]
    rows.append(("server exit", f"{server['exit_status']} in {server['shutdown_s']} s"))
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nlost acknowledged writes: {results['lost']}; results: {RESULTS / 'soak.json'}")


def main() -> int:
    duration = MINUTES * 60
    windows = max(1, math.ceil(duration / WINDOW))
    limit = raise_open_files()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "soak-server.log"
    log.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pinbase-soak-"))
    context = multiprocessing.get_context("spawn")
    reports: Queue[dict[str, Any]] = context.Queue()
    stop = context.Event()
    processes: dict[str, multiprocessing.process.BaseProcess] = {}
    server: SoakServer | None = None
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_average = os.getloadavg()[0]
    try:
        asyncio.run(apply_to_database(database_url(work, None), device_fleet()))
        server = SoakServer(work, log)
        monitor = Monitor(server, reports)
        specs: dict[str, dict[str, Any]] = {
            "org": {"url": server.url, "records": str(work / "org-writes.tsv")},
            "tcp": {"proto": "tcp", "port": server.hardware_port,
                    "devices": [(d, 0) for d in TCP_DEVICES]},
            "mqtt": {"proto": "mqtt", "port": server.mqtt_port,
                     "devices": [(d, 0) for d in MQTT_QOS0] + [(d, 1) for d in MQTT_QOS1]},
            "attacker": {"ports": {"http": server.http_port, "hardware": server.hardware_port,
                                   "mqtt": server.mqtt_port}},
        }  # fmt: skip
        controls: dict[str, Connection] = {}
        for kind, args in specs.items():
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=worker_main, args=(kind, args, receive, reports, stop), daemon=True
            )
            process.start()
            processes[kind] = process
            controls[kind] = send
        ready: set[str] = set()
        deadline = time.monotonic() + 60
        while ready != set(specs) and time.monotonic() < deadline:
            report = monitor.drain(timeout=0.5)
            if report is not None and report.get("ready"):
                ready.add(report["source"])
        if ready != set(specs):
            raise RuntimeError(f"load processes not ready: {set(specs) - ready}")
        start_sample = server_sample(server.pid)
        assert start_sample is not None
        monitor.start_cpu = start_sample["cpu_s"]
        monitor.load_pids = {name: p.pid for name, p in processes.items() if p.pid is not None}
        load_cpu_start = {name: cpu_seconds(pid) for name, pid in monitor.load_pids.items()}
        print(
            f"soak: {MINUTES:g} min; server {server.url} (hardware {server.hardware_port}, "
            f"MQTT {server.mqtt_port}), RSS {start_sample['rss_kib'] / 1024:.1f} MiB",
            flush=True,
        )
        t0 = time.monotonic() + 0.2
        for send in controls.values():
            send.send(t0)
        monitor.run(t0, windows)
        load_s = time.monotonic() - t0
        stop.set()
        print("load stopped; collecting the load processes' reports", flush=True)
        deadline = time.monotonic() + REQUEST_TIMEOUT + 30
        while set(monitor.finals) != set(specs) and time.monotonic() < deadline:
            monitor.drain(timeout=0.5)
        for child in processes.values():
            child.join(timeout=10)
        monitor.drain_all()
        time.sleep(SETTLE)
        end_sample = server_sample(server.pid)
        monitor.probe.close()
        server_result = server.shutdown()
        with contextlib.closing(sqlite3.connect(work / "pinbase.db")) as db:
            org_check = verify_org(db, work / "org-writes.tsv")
            device_check = verify_devices(db, monitor.finals)
    finally:
        stop.set()
        for child in processes.values():
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
        if server is not None and server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(work, ignore_errors=True)

    rows = timeline(monitor, windows, load_cpu_start)
    rss = [s["rss_kib"] / 1024 for s in monitor.samples]
    qos1 = device_check.get("mqtt_qos1", {})
    lost = org_check["lost"] + qos1.get("lost", 0)
    cpu_end = monitor.samples[-1] if monitor.samples else start_sample
    results: dict[str, Any] = {
        "started_at": started_at,
        "commit": git_commit(),
        "minutes": MINUTES,
        "window_s": WINDOW,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
            "open_files_limit": limit,
            "load_average_at_start": round(load_average, 1),
            "load_average_at_end": round(os.getloadavg()[0], 1),
        },
        "setup": {
            "devices": len(TCP_DEVICES) + len(MQTT_QOS0) + len(MQTT_QOS1),
            "fleet": "bench/devices.py device_fleet(): 10,000 devices, tokens known",
            "org_devices": [ORG_DEVICES.start, ORG_DEVICES.stop - 1],
            "org_rate_target": ORG_RATE,
            "org_clients": ORG_CLIENTS,
            "org_mix_percent": dict(ORG_MIX),
            "tcp_devices": [TCP_DEVICES.start, TCP_DEVICES.stop - 1],
            "mqtt_qos0_devices": [MQTT_QOS0.start, MQTT_QOS0.stop - 1],
            "mqtt_qos1_devices": [MQTT_QOS1.start, MQTT_QOS1.stop - 1],
            "flood_device": FLOOD_DEVICE,
            "server_command": " ".join(server.command[2:]) if server else "",
        },
        "server_died_at_s": monitor.server_died_at,
        "rss_mib": {
            "start": round(start_sample["rss_kib"] / 1024, 1),
            "peak": round(max(rss, default=0), 1),
            "end": round(end_sample["rss_kib"] / 1024, 1) if end_sample else None,
            "over_time": [round(v, 1) for v in compact(rss)],
        },
        "fds": {
            "start": start_sample["fds"],
            "peak": max((s["fds"] for s in monitor.samples), default=0),
            "end": end_sample["fds"] if end_sample else None,
        },
        "server_cpu_pct": round((cpu_end["cpu_s"] - start_sample["cpu_s"]) / max(load_s, 1) * 100),
        "load_cpu_pct": {
            name: round(
                ((cpu_end.get("load_cpu_s", {}).get(name) or 0) - (start or 0)) / load_s * 100
            )
            for name, start in load_cpu_start.items()
        },
        "totals": totals(monitor, rows, load_s),
        "acknowledged_vs_stored": {"org_api": org_check, "devices": device_check},
        "lost": lost,
        "attacker_cycles": monitor.finals.get("attacker", {}).get("cycles", 0),
        "attacks": monitor.attacks,
        "server": {**server_result, **server_log_summary(log)},
        "timeline": rows,
    }
    (RESULTS / "soak.json").write_text(json.dumps(results, indent=1) + "\n")
    print_summary(results)
    if monitor.server_died_at is not None:
        return 2
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
