"""CSV export of history: rows per second, on SQLite and on PostgreSQL.

Run with `.venv/bin/python bench/export.py`. For each store (SQLite in a temp dir, then
PostgreSQL in a throwaway cluster as bench/postgres.py starts it, unless BENCH_EXPORT_POSTGRES=0)
it applies the fleet of bench/common.py, writes 1,000,000 history points on device 1 (500,000
on each of its two datastreams, interleaved in time, through the store: setup, not measured),
starts one real `pinbase serve` and measures, each `RUNS` times, the whole range exported:

- `http`: `GET /api/v1/organization/device/export` read to its end over loopback (what a
  download costs, server and client on the same 2 cores), with the server's RSS before and
  after (all of it, and its anonymous part);
- `csv`: the same CSV produced in this process from the store (`history_export.csv_batches`,
  what `pinbase export` does, without the file);
- `baseline`: the same points read through the store in the same order
  (`Store.history_rows`) without turning them into CSV: what the formatting adds is the
  difference.

Every figure is a median (rows per second and seconds); the results go to
bench/results/export.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from common import CLIENT, Server, fleet, machine, workdir, write_results
from pinbase.app.history_export import csv_batches, export_of
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.store import Store, opened_store
from pinbase.store.records import ValueWrites
from postgres import cluster, database, free_port

POINTS = 1_000_000
DEVICE = 1
DATASTREAMS = (1, 2)
START = 1_700_000_000_000
STEP_MS = 1000
SEED_BATCH = 50_000
RUNS = 3
EXPORT = "/api/v1/organization/device/export"


async def seed(store: Store) -> None:
    """`POINTS` points, alternating between the datastreams, one every `STEP_MS`."""
    for first in range(0, POINTS, SEED_BATCH):
        rows = [
            (DEVICE, DATASTREAMS[i % 2], START + i * STEP_MS, 0, f"{20 + (i % 100) / 10}")
            for i in range(first, min(first + SEED_BATCH, POINTS))
        ]
        await store.write_values(ValueWrites(history=rows))


def memory_mib(pid: int) -> dict[str, float]:
    """The process's resident memory, and its anonymous part: SQLite maps its database file, so
    the pages an export reads count in VmRSS without being the process's own memory."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {name: round(int(fields[name].split()[0]) / 1024, 1) for name in ("VmRSS", "RssAnon")}


def rate(samples: list[float]) -> dict[str, float]:
    seconds = statistics.median(samples)
    return {"rows_per_s": round(POINTS / seconds), "seconds": round(seconds, 3)}


async def timed_async(run: Callable[[], Awaitable[int]]) -> list[float]:
    samples = []
    for _ in range(RUNS):
        begun = time.perf_counter()
        rows = await run()
        samples.append(time.perf_counter() - begun)
        if rows != POINTS:
            raise RuntimeError(f"{rows} rows, not {POINTS}")
    return samples


async def in_process(url: str) -> dict[str, Any]:
    """The baseline and the CSV formatting, each `RUNS` times, on one opened store."""
    end = START + POINTS * STEP_MS

    async with opened_store(url) as store:
        export = export_of(await store.catalog(), DEVICE, [], START, end, "Europe/Kyiv")

        async def baseline() -> int:
            rows = 0
            async for batch in store.history_rows(DEVICE, DATASTREAMS, START, end, 2000):
                rows += len(batch)
            return rows

        async def formatted() -> int:
            rows = 0
            async for _, points in csv_batches(store, export):
                rows += points
            return rows

        return {
            "baseline": rate(await timed_async(baseline)),
            "csv": rate(await timed_async(formatted)),
        }


def over_http(server: Server) -> dict[str, Any]:
    token = httpx.post(
        f"{server.url}/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT
    ).json()["access_token"]
    end = START + POINTS * STEP_MS
    params: dict[str, str | int] = {
        "deviceId": DEVICE,
        "from": START,
        "to": end,
        "tz": "Europe/Kyiv",
    }
    before = memory_mib(server.process.pid)
    samples, size = [], 0
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=600) as http:
        for _ in range(RUNS):
            begun = time.perf_counter()
            size = lines = 0
            with http.stream("GET", server.url + EXPORT, params=params) as response:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            samples.append(time.perf_counter() - begun)
            if lines != POINTS + 1:
                raise RuntimeError(f"{lines} lines, not {POINTS + 1}")
    return {
        "http": {**rate(samples), "body_mib": round(size / 2**20, 1)},
        "server_memory_mib": {"before": before, "after": memory_mib(server.process.pid)},
    }


def measure(url: str, log: Path, *store_flags: str) -> dict[str, Any]:
    async def setup() -> None:
        await apply_to_database(url, fleet())
        async with opened_store(url) as store:
            await seed(store)

    asyncio.run(setup())
    results = asyncio.run(in_process(url))
    server = Server(free_port(), *store_flags, log=log)
    try:
        results.update(over_http(server))
    finally:
        server.stop()
    for name in ("csv", "http"):
        results[name]["of_baseline"] = round(
            results[name]["rows_per_s"] / results["baseline"]["rows_per_s"], 2
        )
    print(f"  {results}", flush=True)
    return results


def main() -> None:
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {**machine(), "load_average_at_start": os.getloadavg()[0]},
        "points": POINTS,
        "datastreams": len(DATASTREAMS),
    }
    with workdir("pinbase-bench-export-", results) as (work, log):
        print("SQLite", flush=True)
        data = work / "data"
        results["sqlite"] = measure(database_url(data, None), log, "--data-dir", str(data))
        if os.environ.get("BENCH_EXPORT_POSTGRES", "1") != "0":
            print("PostgreSQL", flush=True)
            shutil.rmtree(data, ignore_errors=True)
            with cluster(work) as admin, database(admin, "pinbase_bench_export") as url:
                results["postgres"] = measure(url, log, "--database", url)
    write_results("export", results, started)


if __name__ == "__main__":
    main()
