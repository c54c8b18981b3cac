"""pinbase benchmarks on PostgreSQL: each figure next to a COPY baseline measured in the same run.

Run with `.venv/bin/python bench/postgres.py`. Starts a throwaway PostgreSQL cluster with
scripts/pg-cluster (or uses the server named by PINBASE_BENCH_POSTGRES, creating and dropping
its own databases there), provisions the 10,000-device fleet of bench/run.py, seeds 10,000,000
history points on one series, and measures real `pinbase serve` processes on loopback ports:
batch-update and import over HTTP against COPY into the same tables, 1,000-point history pages
from the 10M-point series, and the single-value ingest rate of 1 server process against 4
sharing the database. Results go to bench/results/postgres.json; every figure is a median.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Template
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg
import httpx

from common import (
    CLIENT,
    DEVICES,
    REPEATS,
    ROOT,
    WRK_CONNECTIONS,
    WRK_SECONDS,
    Server,
    batch_rows,
    batch_update,
    fleet,
    median_ms,
    requests_per_second,
    rss_kib,
    timed,
    workdir,
    write_results,
    wrk_command,
)
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.store.postgres.schema import ensure_partition, migrate, month_of

ROWS = 10_000
HISTORY_POINTS = 10_000_000
HISTORY_STEP_MS = 250
HISTORY_DEVICE = 1
HISTORY_REPEATS = 31
PAGE_SIZE = 1000
DEEP_PAGE = 5000
SERVERS = 4
WRK_REPEATS = 3
WRK_WARMUP_SECONDS = 5
IMPORT_DEVICE = 2
IMPORT_BASE_TS = 1_650_000_000_000
IMPORT_RUN_SPACING_MS = 10_000_000
TARGET_RATIO = 2.0
TARGET_HISTORY_MS = 20.0
CLUSTER = ROOT.parent / "scripts" / "pg-cluster"

# Single-value updates, as in bench/run.py, except that every wrk thread of every wrk instance
# takes its own slot and writes only the devices of that slot (device = counter mod DEVICES,
# counter = slot, slot + slots, ...): concurrent writers update distinct rows, as distinct
# devices do, instead of all walking the same device ids in step.
WRK_SCRIPT = Template("""
local threads = 0
function setup(thread)
  thread:set("slot", $first_slot + threads)
  threads = threads + 1
end
function init(args)
  counter = slot
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
request = function()
  counter = counter + $slots
  local device = (counter % $devices) + 1
  local body = string.format(
    '{"deviceId":%d,"dataStreamId":1,"value":%d.5}', device, counter % 50
  )
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status ~= 204 then
    error("unexpected status " .. status .. " " .. body)
  end
end
""")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def git_commit() -> str | None:
    """The checked-out commit, read from .git without running git; None when unknown."""
    git = ROOT.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        return None
    return None


@contextlib.contextmanager
def cluster(work: Path) -> Iterator[str]:
    """The admin URL of PINBASE_BENCH_POSTGRES, else of a throwaway cluster under `work`."""
    named = os.environ.get("PINBASE_BENCH_POSTGRES")
    if named:
        yield named
        return
    data = work / "pg"
    started = subprocess.run(
        [str(CLUSTER), "start", str(data), str(free_port())],
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(CLUSTER), "stop", str(data)], check=False)


@contextlib.contextmanager
def database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh database on the server of `admin_url`, dropped on exit."""

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class Measure(Protocol):
    def __call__(self, url: str, work: Path, log: Path, *flags: str) -> dict[str, Any]: ...


def on_both_stores(name: str, results: dict[str, Any], measure: Measure) -> None:
    """`results["sqlite"]` and `results["postgres"]` from `measure(database URL, work dir, log,
    *server flags)`: on SQLite in a temp dir, then on a throwaway PostgreSQL cluster (or the
    server of PINBASE_BENCH_POSTGRES) unless BENCH_<NAME>_POSTGRES=0; then the results are
    written to bench/results/<name>.json."""
    started = time.monotonic()
    with workdir(f"pinbase-bench-{name}-", results) as (work, log):
        print("SQLite", flush=True)
        results["sqlite"] = measure(database_url(work / "data", None), work, log)
        if os.environ.get(f"BENCH_{name.upper()}_POSTGRES", "1") != "0":
            print("PostgreSQL", flush=True)
            shutil.rmtree(work / "data", ignore_errors=True)
            with cluster(work) as admin, database(admin, f"pinbase_bench_{name}") as url:
                results["postgres"] = measure(url, work, log, "--database", url)
    write_results(name, results, started)


def months_between(low: int, high: int) -> list[tuple[int, int]]:
    """Every (year, month) with a monthly partition that [low, high] (epoch ms) touches."""
    day = 86_400_000
    stamps = [*range(low, high, day), high]
    return sorted({m for m in map(month_of, stamps) if m is not None})


async def ensure_partitions(conn: asyncpg.Connection, low: int, high: int) -> None:
    for year, month in months_between(low, high):
        await ensure_partition(conn, year, month)


async def seed_history(url: str) -> dict[str, Any]:
    """10,000,000 points on device 1, datastream 1, 250 ms apart up to now (setup, not measured).

    One server-side INSERT ... SELECT (the history_counts trigger runs as for any insert), then
    VACUUM (ANALYZE): the state autovacuum reaches by itself shortly after such a load, done
    here so that it does not run during the measurements.
    """
    conn = await asyncpg.connect(url)
    try:
        end = now_ms()
        start = end - (HISTORY_POINTS - 1) * HISTORY_STEP_MS
        await ensure_partitions(conn, start, end)
        began = time.perf_counter()
        await conn.execute(
            "INSERT INTO history (device_id, ds_id, ts, value) "
            "SELECT $1, 1, $2::bigint + i * $3::bigint, ((200 + i % 100)::float8 / 10)::text "
            "FROM generate_series(0, $4 - 1) AS i",
            HISTORY_DEVICE,
            start,
            HISTORY_STEP_MS,
            HISTORY_POINTS,
        )
        inserted = time.perf_counter() - began
        await conn.execute("VACUUM (ANALYZE) history")
        vacuumed = time.perf_counter() - began - inserted
        counted = await conn.fetchval(
            "SELECT sum(n) FROM history_counts WHERE device_id = $1 AND ds_id = 1",
            HISTORY_DEVICE,
        )
        assert counted == HISTORY_POINTS, counted
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        return {
            "seed_insert_s": round(inserted, 1),
            "seed_vacuum_analyze_s": round(vacuumed, 1),
            "seed_span_days": round((end - start) / 86_400_000, 1),
            "database_size_mib": round(size / 2**20),
        }
    finally:
        await conn.close()


HISTORY_COLUMNS = ("device_id", "ds_id", "ts", "seq", "value")
CURRENT_COLUMNS = ("device_id", "ds_id", "value", "updated_at")


async def copy_batch_baseline(url: str, rows: list[list[Any]]) -> list[float]:
    """The same 20,000 history rows and 20,000 current values, COPY'd in one transaction.

    Distinct timestamps per repetition for history, distinct device ids per repetition for
    current_values, so COPY never conflicts. One unmeasured warm-up repetition first.
    """
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        base = now_ms()
        await ensure_partitions(conn, base, base + REPEATS + 1)
        samples = []
        for run in range(REPEATS + 1):
            ts = base + run
            shift = run * ROWS
            history: list[tuple[Any, ...]] = []
            current: list[tuple[Any, ...]] = []
            for device, temperature, humidity in rows:
                t, h = repr(float(temperature)), str(humidity)
                # seq 1: writer 1's first point of each series in the millisecond
                history += [(device, 1, ts, 1, t), (device, 2, ts, 1, h)]
                current += [(device + shift, 1, t, ts), (device + shift, 2, h, ts)]
            start = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "history", records=history, columns=HISTORY_COLUMNS
                )
                await conn.copy_records_to_table(
                    "current_values", records=current, columns=CURRENT_COLUMNS
                )
            samples.append(time.perf_counter() - start)
        return samples[1:]
    finally:
        await conn.close()


async def copy_import_baseline(url: str, points: list[dict[str, Any]]) -> list[float]:
    """The same 10,000 history rows, COPY'd in one transaction per repetition."""
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        last = points[-1]["ts"] + (REPEATS + 1) * IMPORT_RUN_SPACING_MS
        await ensure_partitions(conn, points[0]["ts"], last)
        samples = []
        for run in range(REPEATS + 1):
            offset = run * IMPORT_RUN_SPACING_MS
            records = [
                (IMPORT_DEVICE, 1, p["ts"] + offset, 0, repr(float(p["value"]))) for p in points
            ]
            start = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "history", records=records, columns=HISTORY_COLUMNS
                )
            samples.append(time.perf_counter() - start)
        return samples[1:]
    finally:
        await conn.close()


async def server_facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        facts = {"postgresql": await conn.fetchval("SHOW server_version")}
        for setting in ("shared_buffers", "fsync", "synchronous_commit", "max_connections"):
            facts[f"pg_{setting}"] = await conn.fetchval(f"SHOW {setting}")
        return facts
    finally:
        await conn.close()


def login(server: Server) -> httpx.Client:
    http = httpx.Client(base_url=server.url, timeout=120)
    token = http.post(
        "/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT
    ).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def ingest_rate(
    servers: list[Server], token: str, work: Path, connections: int, threads: int
) -> dict[str, Any]:
    """Requests/s of concurrent wrk instances, one per server (median of WRK_REPEATS runs).

    Each run is WRK_SECONDS long; all instances run at once and their rates are summed.
    """
    path = "/api/v1/organization/device/datastream"
    slots = len(servers) * threads
    scripts = []
    for index in range(len(servers)):
        script = work / f"ingest-{len(servers)}-{index}.lua"
        script.write_text(
            WRK_SCRIPT.substitute(
                first_slot=index * threads, slots=slots, token=token, devices=DEVICES
            )
        )
        scripts.append(script)
    errors: list[str] = []  # wrk's lines about socket errors and non-2xx answers

    def run(seconds: int) -> list[float]:
        processes = [
            subprocess.Popen(
                wrk_command(f"{s.url}{path}", script, connections, threads, seconds),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for s, script in zip(servers, scripts, strict=True)
        ]
        rates = []
        for process in processes:
            out, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"wrk failed ({process.returncode}): {out}\n{err}")
            errors.extend(
                line.strip() for line in out.splitlines() if "Non-2xx" in line or "errors" in line
            )
            rates.append(requests_per_second(out))
        return rates

    run(WRK_WARMUP_SECONDS)
    errors.clear()
    totals = [sum(run(WRK_SECONDS)) for _ in range(WRK_REPEATS)]
    return {
        "requests_per_s": round(statistics.median(totals)),
        "runs": [round(t) for t in totals],
        "wrk_instances": len(servers),
        "connections_each": connections,
        "threads_each": threads,
        "errors": errors,
    }


def sqlite_single_update_rps(work: Path) -> int:
    """The same single-value ingest against one SQLite-backed server, for comparison."""
    data_dir = work / "sqlite"
    asyncio.run(apply_to_database(f"sqlite:///{data_dir / 'pinbase.db'}", fleet()))
    server = Server(free_port(), "--data-dir", str(data_dir), log=work / "servers.log")
    try:
        http = login(server)
        token = http.headers["Authorization"].removeprefix("Bearer ")
        http.close()
        figure = ingest_rate([server], token, work, WRK_CONNECTIONS, 2)
        return int(figure["requests_per_s"])
    finally:
        server.stop()


def measure(url: str, baseline_admin_url: str, work: Path) -> dict[str, Any]:
    """Everything measured against the seeded database at `url` (one server, then four)."""
    results: dict[str, Any] = {}
    log = work / "servers.log"
    server = Server(free_port(), "--database", url, log=log)
    servers = [server]
    try:
        http = login(server)
        token = http.headers["Authorization"].removeprefix("Bearer ")
        assert http.get("/api/v2/organization/device/datastreams?deviceId=1").status_code == 200
        results["rss_after_10k_devices_mib"] = round(rss_kib(server.process.pid) / 1024, 1)

        def history(page: int) -> Callable[[], None]:
            params = {
                "deviceId": HISTORY_DEVICE,
                "dataStreamId": 1,
                "from": 0,
                "to": 2_000_000_000_000,
                "page": page,
                "size": PAGE_SIZE,
            }

            def run() -> None:
                response = http.get("/api/v1/organization/device/datastream/history", params=params)
                assert response.status_code == 200, response.text
                page_body = response.json()
                assert page_body["totalElements"] == HISTORY_POINTS, page_body["totalElements"]
                assert len(page_body["content"]) == PAGE_SIZE

            return run

        history(0)()
        history(DEEP_PAGE)()
        results["history_page_first_ms"] = median_ms(timed(history(0), HISTORY_REPEATS))
        results[f"history_page_{DEEP_PAGE}_ms"] = median_ms(
            timed(history(DEEP_PAGE), HISTORY_REPEATS)
        )

        rows = batch_rows(ROWS)
        batch = batch_update(http, rows)

        batch()  # warm-up
        results["batch_update_10k_x2_ms"] = median_ms(timed(batch))
        with database(baseline_admin_url, f"pinbase_bench_copy_{secrets.token_hex(4)}") as copy:
            results["batch_update_copy_baseline_ms"] = median_ms(
                asyncio.run(copy_batch_baseline(copy, rows))
            )

        points = [{"ts": IMPORT_BASE_TS + i * 1000, "value": i % 50} for i in range(ROWS)]
        runs = iter(range(1000))

        def import_points() -> None:
            offset = next(runs) * IMPORT_RUN_SPACING_MS
            payload = {
                "deviceId": IMPORT_DEVICE,
                "dataStreamId": 1,
                "values": [{"ts": p["ts"] + offset, "value": p["value"]} for p in points],
            }
            response = http.post("/api/v1/organization/device/import/batch", json=payload)
            assert response.status_code == 204, response.text

        import_points()  # warm-up
        results["import_10k_ms"] = median_ms(timed(import_points))
        with database(baseline_admin_url, f"pinbase_bench_copy_{secrets.token_hex(4)}") as copy:
            results["import_copy_baseline_ms"] = median_ms(
                asyncio.run(copy_import_baseline(copy, points))
            )
        http.close()

        if shutil.which("wrk"):
            results["ingest_1_process"] = ingest_rate(servers, token, work, WRK_CONNECTIONS, 2)
            for _ in range(SERVERS - 1):
                servers.append(Server(free_port(), "--database", url, log=log))
            results[f"ingest_{SERVERS}_processes"] = ingest_rate(
                servers, token, work, WRK_CONNECTIONS // SERVERS, 1
            )
        else:
            print("wrk not found (apt-get install -y wrk): ingest rates skipped")
        results["rss_at_end_mib"] = round(rss_kib(server.process.pid) / 1024, 1)
    finally:
        for each in servers:
            each.stop()
    return results


def logged_exceptions(log: Path) -> dict[str, int]:
    """How many tracebacks the servers logged, by exception type."""
    counts: dict[str, int] = {}
    inside = False
    for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line[0].isspace():
            kind = line.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
            inside = False
    return counts


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    batch = results["batch_update_10k_x2_ms"] / results["batch_update_copy_baseline_ms"]
    imported = results["import_10k_ms"] / results["import_copy_baseline_ms"]
    history = max(results["history_page_first_ms"], results[f"history_page_{DEEP_PAGE}_ms"])
    verdicts: dict[str, Any] = {
        "batch_update_vs_copy_ratio": round(batch, 2),
        "batch_update_within_2x": batch <= TARGET_RATIO,
        "import_vs_copy_ratio": round(imported, 2),
        "import_within_2x": imported <= TARGET_RATIO,
        "history_page_under_20ms": history < TARGET_HISTORY_MS,
    }
    one, many = results.get("ingest_1_process"), results.get(f"ingest_{SERVERS}_processes")
    if one and many:
        verdicts[f"ingest_{SERVERS}_vs_1_ratio"] = round(
            many["requests_per_s"] / one["requests_per_s"], 2
        )
    return verdicts


def main() -> None:
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pinbase-bench-pg-"))
    work.chmod(0o755)  # the postgres user owns the cluster directory inside
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pinbase_commit": git_commit(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    }
    try:
        with cluster(work) as admin:
            results["machine"].update(asyncio.run(server_facts(admin)))
            with database(admin, f"pinbase_bench_{secrets.token_hex(4)}") as url:
                start = time.perf_counter()
                asyncio.run(apply_to_database(url, fleet()))
                results["provision_10k_devices_s"] = round(time.perf_counter() - start, 2)
                results.update(asyncio.run(seed_history(url)))
                print(f"seeded: {json.dumps(results)}", flush=True)
                results.update(measure(url, admin, work))
        if shutil.which("wrk"):
            results["sqlite_single_update_rps"] = sqlite_single_update_rps(work)
    finally:
        log = work / "servers.log"
        results["server_exceptions_logged"] = logged_exceptions(log)
        if log.exists():
            (ROOT / "results").mkdir(exist_ok=True)
            shutil.copy(log, ROOT / "results" / "postgres-servers.log")
        shutil.rmtree(work, ignore_errors=True)
    results["targets"] = verdict(results)
    results["total_runtime_s"] = round(time.perf_counter() - began, 1)

    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "postgres.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
