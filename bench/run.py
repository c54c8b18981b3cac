"""pinbase benchmarks: each figure next to a baseline measured in the same run.

Run with `make bench`. Starts a real `pinbase serve` process on a loopback port against a fresh
SQLite file, and writes the results as JSON to bench/results/latest.json (the report with the
figures is bench/README.md). Every figure is the median of several repetitions.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from common import (
    CLIENT,
    DEVICES,
    REPEATS,
    ROOT,
    Server,
    batch_rows,
    batch_update,
    fleet,
    median_ms,
    rss_kib,
    timed,
    wrk,
)
from pinbase.app.provisioning import apply_to_database
from pinbase.config import database_url
from pinbase.store.sqlite.schema import migrate

ROWS = 10_000
HISTORY_POINTS = 1_000_000
HISTORY_DEVICE = 1


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def seed_history(db: Path) -> None:
    """1,000,000 points on device 1, datastream 1, one per second (setup, not measured)."""
    conn = connect(db)
    base = 1_600_000_000_000
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO history (device_id, ds_id, ts, value) VALUES (?, 1, ?, ?)",
        (
            (HISTORY_DEVICE, base + i * 1000, f"{20 + (i % 100) / 10}")
            for i in range(HISTORY_POINTS)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def raw_batch_baseline(work: Path, rows: list[list[Any]]) -> list[float]:
    """The same current values and history rows, inserted with raw executemany."""
    db = work / "baseline.db"
    conn = connect(db)
    migrate(conn)
    samples = []
    for run in range(REPEATS):
        ts = 1_700_000_000_000 + run
        current = []
        history: list[tuple[int, int, int, int, str]] = []
        for device, temperature, humidity in rows:
            current += [(device, 1, repr(float(temperature)), ts), (device, 2, str(humidity), ts)]
            history += [  # seq 1: writer 1's first point of each series in the millisecond
                (device, 1, ts, 1, repr(float(temperature))),
                (device, 2, ts, 1, str(humidity)),
            ]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO history (device_id, ds_id, ts, seq, value) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (device_id, ds_id, ts, seq) DO UPDATE SET value = excluded.value",
            history,
        )
        conn.executemany(
            "INSERT INTO current_values (device_id, ds_id, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, ds_id) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            current,
        )
        conn.execute("COMMIT")
        samples.append(time.perf_counter() - start)
    conn.close()
    return samples


def raw_import_baseline(work: Path, points: list[dict[str, Any]]) -> list[float]:
    db = work / "baseline-import.db"
    conn = connect(db)
    migrate(conn)
    samples = []
    for run in range(REPEATS):
        rows = [(2, 1, p["ts"] + run * 10_000_000, repr(float(p["value"]))) for p in points]
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO history (device_id, ds_id, ts, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, ds_id, ts, seq) DO UPDATE SET value = excluded.value",
            rows,
        )
        conn.execute(
            "INSERT INTO current_values (device_id, ds_id, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, ds_id) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at WHERE excluded.updated_at >= updated_at",
            (2, 1, rows[-1][3], rows[-1][2]),
        )
        conn.execute("COMMIT")
        samples.append(time.perf_counter() - start)
    conn.close()
    return samples


WRK_SCRIPT = """
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  counter = counter + 1
  local device = (counter %% %d) + 1
  local body = string.format(
    '{"deviceId":%%d,"dataStreamId":1,"value":%%d.5}', device, counter %% 50
  )
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status ~= 204 then
    error("unexpected status " .. status .. " " .. body)
  end
end
"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="pinbase-bench-"))
    data_dir = work / "data"
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
        }
    }
    try:
        url = database_url(data_dir, None)
        start = time.perf_counter()
        asyncio.run(apply_to_database(url, fleet()))
        results["provision_10k_devices_s"] = round(time.perf_counter() - start, 2)
        seed_history(data_dir / "pinbase.db")

        server = Server(18099, "--data-dir", str(data_dir))
        try:
            http = httpx.Client(base_url=server.url, timeout=120)
            token = http.post(
                "/oauth2/token", params={"grant_type": "client_credentials"}, auth=CLIENT
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            assert http.get("/api/v2/organization/device/datastreams?deviceId=1").status_code == 200
            results["rss_after_10k_devices_mib"] = round(rss_kib(server.process.pid) / 1024, 1)

            rows = batch_rows(ROWS)
            batch = batch_update(http, rows)

            batch()  # warm-up
            results["batch_update_10k_x2_ms"] = median_ms(timed(batch))
            results["batch_update_raw_baseline_ms"] = median_ms(raw_batch_baseline(work, rows))

            points = [{"ts": 1_650_000_000_000 + i * 1000, "value": i % 50} for i in range(ROWS)]
            runs = iter(range(1000))

            def import_points() -> None:
                offset = next(runs) * 10_000_000
                payload = {
                    "deviceId": 2,
                    "dataStreamId": 1,
                    "values": [{"ts": p["ts"] + offset, "value": p["value"]} for p in points],
                }
                response = http.post("/api/v1/organization/device/import/batch", json=payload)
                assert response.status_code == 204, response.text

            import_points()
            results["import_10k_ms"] = median_ms(timed(import_points))
            results["import_raw_baseline_ms"] = median_ms(raw_import_baseline(work, points))

            def history(page: int) -> Callable[[], None]:
                def run() -> None:
                    response = http.get(
                        "/api/v1/organization/device/datastream/history",
                        params={
                            "deviceId": HISTORY_DEVICE,
                            "dataStreamId": 1,
                            "from": 0,
                            "to": 2_000_000_000_000,
                            "page": page,
                            "size": 1000,
                        },
                    )
                    assert response.status_code == 200
                    assert len(response.json()["content"]) == 1000

                return run

            history(0)()
            results["history_page_first_ms"] = median_ms(timed(history(0), 31))
            results["history_page_500_ms"] = median_ms(timed(history(500), 31))

            if shutil.which("wrk"):
                script = work / "update.lua"
                script.write_text(WRK_SCRIPT % (token, DEVICES))
                trivial = [wrk(f"{server.url}/healthz", None) for _ in range(3)]
                updates = [
                    wrk(f"{server.url}/api/v1/organization/device/datastream", script)
                    for _ in range(3)
                ]
                results["trivial_rps"] = round(statistics.median(trivial))
                results["single_update_rps"] = round(statistics.median(updates))
            results["rss_at_end_mib"] = round(rss_kib(server.process.pid) / 1024, 1)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
