"""Device events and webhooks: events/s over the hardware protocol, frame-to-timeline latency,
webhook deliveries/s to a local receiver.

Run with `.venv/bin/python bench/events.py`. Starts one real `pinbase serve` (SQLite in a temp
dir; the fleet of bench/devices.py, its product given `EVENT_CODES` event definitions, a `Hooked`
datastream and one DEVICE_DATASTREAM_UPDATE webhook on it to a receiver in this process; the
MQTT listener idle) and writes its figures as JSON to bench/results/events.json.

- Events: `CONNECTIONS` hardware-protocol connections (fresh devices each run, so Blynk's 100
  events per device per day hold) each log `PER_CONNECTION` events, one distinct code each (one
  per second per code holds), one frame at a time: EVENT_LOG, then wait for its RESPONSE 200.
  Answer latency = frame written → RESPONSE 200 read. Timeline latency = frame written → the
  event's `event: event` message read from `GET /api/v1/organization/live` (published after the
  commit, so the event is then on the timeline; a sample of timelines is read back to check
  the counts). events/s = events / (first frame → last event seen on the live stream).
- Baseline in the same run: the same connections each write `PER_CONNECTION` values
  (HARDWARE `vw`) the same way; a `vw` is not answered, so each is followed by a PING in the same
  write and the PING's RESPONSE is the answer (the session handles a PING after writes once
  they are stored); latency to the live stream's `event: value` message.
- Webhooks: `HOOK_VALUES` values written to the `Hooked` datastream by the same connections
  (pipelined, no waiting); deliveries/s = deliveries / (first write → last delivery received),
  and write → delivery latency. The server runs with `--webhook-rate` raised (Blynk's 10 a
  minute would take hours) and the default `--webhook-poll`.

Each part runs `RUNS` times; every figure is the median over the runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common import machine, workdir, write_results
from devices import (
    HOST,
    SERVER_FLAGS,
    DeviceServer,
    device_fleet,
    free_port,
    org_client,
    percentile,
    raise_open_files,
    token,
)
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.devices.hardware import codec as hw
from postgres import cluster, database

CONNECTIONS = 100
PER_CONNECTION = 100
EVENT_CODES = 100
RUNS = 3
HOOK_VALUES = 2_000
DEADLINE = 120.0
COUNTER_PIN = "3"
HOOKED = (4, "v4", "Hooked")
WEBHOOK_FLAGS = ("--webhook-rate", "100000000")


def code(n: int) -> str:
    return f"c{n:03d}"


def event_fleet(receiver_port: int) -> dict[str, Any]:
    document = device_fleet()
    org = document["organizations"][0]
    product = org["products"][0]
    product["datastreams"].append(
        {"id": HOOKED[0], "pin": HOOKED[1], "label": HOOKED[2], "type": "integer"}
    )
    product["events"] = [
        {"id": n + 1, "code": code(n), "name": f"Event {n}", "type": "INFORMATION"}
        for n in range(EVENT_CODES)
    ]
    org["webhooks"] = [
        {
            "id": 1,
            "name": "bench",
            "trigger": "DEVICE_DATASTREAM_UPDATE",
            "datastreams": [HOOKED[0]],
            "url": f"http://{HOST}:{receiver_port}/hook",
            "content_type": "JSON",
            "body": '{"device": "{device_id}", "value": "{value}"}',
        }
    ]
    return document


# the load generator (a separate process) -----------------------------------------------


async def _answer(reader: asyncio.StreamReader, decoder: hw.FrameDecoder, msg_id: int) -> int:
    """Read until the RESPONSE to `msg_id`; its status."""
    while True:
        data = await reader.read(4096)
        if not data:
            raise ConnectionError("closed")
        for frame in decoder.feed(data):
            if frame.command == hw.RESPONSE and frame.msg_id == msg_id:
                return frame.status


async def _connection(device_id: int, kind: str, count: int) -> list[tuple[int, int, float, float]]:
    """(device, n, sent, answered) for each of `count` frames, one at a time."""
    reader, writer = await asyncio.open_connection(HOST, PORT[0])
    decoder = hw.FrameDecoder(hw.MAX_BODY)
    writer.write(hw.message(hw.LOGIN, 1, [token(device_id)]))
    if (status := await _answer(reader, decoder, 1)) != hw.OK:
        raise RuntimeError(f"device {device_id}: login {status}")
    out = []
    try:
        if kind == "hook":  # pipelined, then one PING to know they were read
            data = b"".join(
                hw.hardware_write(n + 2, hw.bare_pin(HOOKED[1]), (str(n),)) for n in range(count)
            )
            start = time.monotonic()
            writer.write(data + hw.message(hw.PING, count + 2))
            await _answer(reader, decoder, count + 2)
            return [(device_id, n, start, start) for n in range(count)]
        for n in range(count):
            if kind == "event":
                msg_id = n + 2
                frame = hw.message(hw.EVENT_LOG, msg_id, [code(n)])
            else:
                msg_id = 2 * n + 3
                frame = hw.hardware_write(msg_id - 1, COUNTER_PIN, (str(n),))
                frame += hw.message(hw.PING, msg_id)
            sent = time.monotonic()
            writer.write(frame)
            status = await _answer(reader, decoder, msg_id)
            answered = time.monotonic()
            if status != hw.OK:
                raise RuntimeError(f"device {device_id} {kind} {n}: status {status}")
            out.append((device_id, n, sent, answered))
    finally:
        writer.transport.abort()
    return out


PORT = [0]


async def _load(ids: list[int], kind: str, count: int) -> list[tuple[int, int, float, float]]:
    results = await asyncio.gather(*(_connection(i, kind, count) for i in ids))
    return [row for rows in results for row in rows]


def load(port: int, ids: list[int], kind: str, count: int) -> list[tuple[int, int, float, float]]:
    PORT[0] = port
    raise_open_files()
    return asyncio.run(_load(ids, kind, count))


# the observers (threads of this process) -----------------------------------------------


class LiveListener:
    """Follows the live stream; records when each event code / Counter value arrived."""

    def __init__(self, url: str, bearer: str) -> None:
        self.seen: dict[tuple[str, int, int], float] = {}
        self.ready = threading.Event()
        self.client = httpx.Client(base_url=url, timeout=None, headers={"Authorization": bearer})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("live stream did not open")

    def _run(self) -> None:
        kind = ""
        with (
            contextlib.suppress(httpx.HTTPError),
            self.client.stream("GET", "/api/v1/organization/live") as response,
        ):
            for line in response.iter_lines():
                now = time.monotonic()
                if line.startswith(": connected"):
                    self.ready.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if kind == "event" and data["eventCode"].startswith("c"):
                        key = ("event", data["deviceId"], int(data["eventCode"][1:]))
                        self.seen[key] = now
                    elif kind == "value" and data["pin"] == "v3":
                        self.seen[("value", data["deviceId"], int(data["value"]))] = now

    def wait(self, keys: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], float]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not all(k in self.seen for k in keys):
            time.sleep(0.05)
        return {k: self.seen[k] for k in keys if k in self.seen}

    def close(self) -> None:
        self.client.close()


class Receiver:
    """A minimal HTTP/1.1 server answering 200 at once; records when each delivery arrived."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[tuple[int, int], float] = {}
        self.requests = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("receiver did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, HOST, self.port))
        self.ready.set()
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(server.serve_forever())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                self.requests += 1
                data = json.loads(body)
                self.seen[(int(data["device"]), int(data["value"]))] = now
        writer.close()

    def wait(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not all(k in self.seen for k in keys):
            time.sleep(0.05)
        return {k: self.seen[k] for k in keys if k in self.seen}

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


# measurements ----------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples) * 1000, 2),
        "p99": round(percentile(samples, 0.99) * 1000, 2),
        "max": round(max(samples) * 1000, 2),
    }


def frames_run(
    pool: concurrent.futures.Executor,
    server: DeviceServer,
    live: LiveListener,
    kind: str,
    ids: list[int],
) -> dict[str, Any]:
    cpu = cpu_s(server.pid)
    rows = pool.submit(load, server.hardware_port, ids, kind, PER_CONNECTION).result()
    keys = [(kind, d, n) for d, n, _, _ in rows]
    seen = live.wait(keys)
    cpu = cpu_s(server.pid) - cpu
    if len(seen) != len(keys):
        raise RuntimeError(f"{kind}: {len(keys) - len(seen)} never reached the live stream")
    start = min(r[2] for r in rows)
    answered_end = max(r[3] for r in rows)
    end = max(seen.values())
    return {
        "frames": len(rows),
        "per_s": round(len(rows) / (end - start)),
        "answered_per_s": round(len(rows) / (answered_end - start)),
        "answer_ms": ms([a - s for _, _, s, a in rows]),
        "to_live_ms": ms([seen[(kind, d, n)] - s for d, n, s, _ in rows]),
        "server_cpu_us_per_frame": round(cpu / len(rows) * 1e6),
        "server_cpu_share": round(cpu / (end - start), 2),
    }


def timeline_check(http: httpx.Client, ids: list[int]) -> list[int]:
    """The number of INFORMATION events on the timelines of a sample of devices."""
    counts = []
    for device_id in ids[:: max(1, len(ids) // 5)]:
        response = http.get(
            "/api/v1/organization/device/timeline",
            params={"deviceId": device_id, "eventType": "INFORMATION", "size": 1},
        )
        response.raise_for_status()
        counts.append(response.json()["totalElements"])
    return counts


def hook_run(
    pool: concurrent.futures.Executor,
    server: DeviceServer,
    receiver: Receiver,
    ids: list[int],
) -> dict[str, Any]:
    per_device = HOOK_VALUES // len(ids)
    receiver.seen.clear()  # the keys repeat on another store
    cpu = cpu_s(server.pid)
    rows = pool.submit(load, server.hardware_port, ids, "hook", per_device).result()
    keys = [(d, n) for d, n, _, _ in rows]
    before = receiver.requests
    seen = receiver.wait(keys)
    cpu = cpu_s(server.pid) - cpu
    if len(seen) != len(keys):
        raise RuntimeError(f"webhooks: {len(keys) - len(seen)} never delivered")
    start = min(r[2] for r in rows)
    end = max(seen.values())
    return {
        "deliveries": len(keys),
        "per_s": round(len(keys) / (end - start)),
        "write_to_delivery_ms": ms([seen[(d, n)] - s for d, n, s, _ in rows]),
        "requests_during_wait": receiver.requests - before,
        "server_cpu_us_per_delivery": round(cpu / len(keys) * 1e6),
        "server_cpu_share": round(cpu / (end - start), 2),
    }


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return round(statistics.median(values), 2)


def summary(runs: list[dict[str, Any]], latency: str) -> dict[str, Any]:
    """The medians over the runs of the rate and of the p50 and p99 of `latency`."""
    return {
        "per_s": median_of(runs, "per_s"),
        **{f"{latency}_{q}": median_of(runs, latency, q) for q in ("p50", "p99")},
        "runs": runs,
    }


def measure(url: str, work: Path, log: Path, receiver: Receiver, *flags: str) -> dict[str, Any]:
    """RUNS runs of each part against one server on the database at `url`."""
    asyncio.run(apply_to_database(url, event_fleet(receiver.port)))
    server = DeviceServer(work / "data", log, *WEBHOOK_FLAGS, *flags)
    context = multiprocessing.get_context("spawn")
    events: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            http = org_client(server.url)
            live = LiveListener(server.url, http.headers["Authorization"])
            # warm-up: 10 devices, a few of each
            warm = list(range(9001, 9011))
            pool.submit(load, server.hardware_port, warm, "event", 5).result()
            pool.submit(load, server.hardware_port, warm, "value", 5).result()
            for run in range(RUNS):
                base = run * 1000
                ids = list(range(base + 1, base + CONNECTIONS + 1))
                values.append(frames_run(pool, server, live, "value", ids))
                print(f"  run {run} values: {values[-1]}", flush=True)
                events.append(frames_run(pool, server, live, "event", ids))
                events[-1]["timeline_sample"] = timeline_check(http, ids)
                print(f"  run {run} events: {events[-1]}", flush=True)
                hook_ids = list(range(base + 501, base + 501 + CONNECTIONS))
                hooks.append(hook_run(pool, server, receiver, hook_ids))
                print(f"  run {run} webhooks: {hooks[-1]}", flush=True)
            live.close()
            http.close()
    finally:
        server.stop()
    return {
        "events": {
            "connections": CONNECTIONS,
            "per_connection": PER_CONNECTION,
            **summary(events, "answer_ms"),
            **{f"to_live_ms_{q}": median_of(events, "to_live_ms", q) for q in ("p50", "p99")},
        },
        "values_baseline": {
            **summary(values, "answer_ms"),
            **{f"to_live_ms_{q}": median_of(values, "to_live_ms", q) for q in ("p50", "p99")},
        },
        "webhooks": {"deliveries": HOOK_VALUES, **summary(hooks, "write_to_delivery_ms")},
    }


def main() -> None:
    """SQLite, then PostgreSQL (a throwaway cluster, as bench/postgres.py starts it) unless
    BENCH_EVENTS_POSTGRES=0."""
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {**machine(), "load_average_at_start": os.getloadavg()[0]},
        "server_flags": " ".join((*SERVER_FLAGS, *WEBHOOK_FLAGS)),
    }
    receiver = Receiver(free_port())
    try:
        with workdir("pinbase-bench-events-", results) as (work, log):
            print("SQLite", flush=True)
            results["sqlite"] = measure(database_url(work / "data", None), work, log, receiver)
            if os.environ.get("BENCH_EVENTS_POSTGRES", "1") != "0":
                print("PostgreSQL", flush=True)
                with cluster(work) as admin, database(admin, "pinbase_bench_events") as url:
                    results["postgres"] = measure(url, work, log, receiver, "--database", url)
    finally:
        receiver.stop()
    write_results("events", results, started)
    for store in ("sqlite", "postgres"):
        for part, figures in results.get(store, {}).items():
            print(store, part, {k: v for k, v in figures.items() if k != "runs"})


if __name__ == "__main__":
    main()
