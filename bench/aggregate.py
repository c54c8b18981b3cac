"""The aggregated history of one datastream: 30 days written every 10 s (259,200 points).

Run with `.venv/bin/python bench/aggregate.py`. For each store (SQLite in a temp dir, then
PostgreSQL in a throwaway cluster as bench/postgres.py starts it, unless
BENCH_AGGREGATE_POSTGRES=0) it applies the fleet of bench/common.py, starts one real
`pinbase serve`, imports the points through `POST /api/v1/organization/device/import/batch`
(batches of 10,000), and times, one request at a time over one keep-alive connection with an
organization token, from the request sent to the answer read, `RUNS` times each:

- `GET .../datastream/history/aggregate` of the 30 days: hourly `avg` (720 buckets) in UTC and
  in Asia/Kolkata, daily `avg` in Europe/Kyiv, hourly `last`;
- the baseline, in the same run: one page (the default 50 points) of
  `GET .../datastream/history` of the same datastream over the same 30 days.

The first request, an hourly `count` that checks the points, is timed once: it reads the points
and builds the rollup the others read (`first_read_ms`). Every other figure is a median in
milliseconds, with the 99th percentile; the results go to bench/results/aggregate.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from common import fleet
from devices import fleet_server, results_header
from platform_devices import summary, timed
from postgres import on_both_stores

DAYS = 30
EVERY_MS = 10_000
POINTS = DAYS * 86_400_000 // EVERY_MS
START = 1_775_001_600_000  # 2026-04-01 00:00 UTC
END = START + DAYS * 86_400_000 - 1
BATCH = 10_000
RUNS = 50
AGGREGATE = "/api/v1/organization/device/datastream/history/aggregate"
HISTORY = "/api/v1/organization/device/datastream/history"
CASES: dict[str, dict[str, object]] = {
    "hourly avg, UTC": {"interval": "1h", "fn": "avg", "tz": "UTC"},
    "hourly avg, Asia/Kolkata": {"interval": "1h", "fn": "avg", "tz": "Asia/Kolkata"},
    "daily avg, Europe/Kyiv": {"interval": "day", "fn": "avg", "tz": "Europe/Kyiv"},
    "hourly last, UTC": {"interval": "1h", "fn": "last", "tz": "UTC"},
}


def fill_history(http: httpx.Client) -> None:
    for first in range(0, POINTS, BATCH):
        values = [
            {"ts": START + n * EVERY_MS, "value": 20.0 + (n % 600) / 10}
            for n in range(first, min(first + BATCH, POINTS))
        ]
        body = {"deviceId": 1, "dataStreamId": 1, "values": values}
        response = http.post("/api/v1/organization/device/import/batch", json=body)
        if response.status_code != 204:
            raise RuntimeError(f"{response.status_code}: {response.text[:200]}")


def measure(url: str, work: Path, log: Path, *flags: str) -> dict[str, Any]:
    window = {"deviceId": 1, "dataStreamId": 1, "from": START, "to": END}
    with fleet_server(url, fleet(), work, log, *flags) as (_, http):
        begun = time.perf_counter()
        fill_history(http)
        results: dict[str, Any] = {"import_s": round(time.perf_counter() - begun, 1)}
        begun = time.perf_counter()
        hours = http.get(AGGREGATE, params={**window, "interval": "1h", "fn": "count"}).json()
        results["first_read_ms"] = round((time.perf_counter() - begun) * 1000, 1)
        if len(hours["data"]) != DAYS * 24 or sum(p["value"] for p in hours["data"]) != POINTS:
            raise RuntimeError(f"unexpected buckets: {str(hours)[:200]}")
        results["baseline_history_page"] = summary(
            [timed(http, "GET", HISTORY, window) for _ in range(RUNS)]
        )
        for name, params in CASES.items():
            samples = [timed(http, "GET", AGGREGATE, {**window, **params}) for _ in range(RUNS)]
            results[name] = summary(samples)
        print(f"  {results}", flush=True)
        return results


def main() -> None:
    results = results_header(points=POINTS)
    on_both_stores("aggregate", results, measure)


if __name__ == "__main__":
    main()
