"""Devices over the Platform API: pages, search, create and delete, on a fleet of 10,000.

Run with `.venv/bin/python bench/platform_devices.py` (not `platform.py`: that name would
shadow the standard library's `platform` for every benchmark here). For each store (SQLite in a
temp dir, then PostgreSQL in a throwaway cluster as bench/postgres.py starts it, unless
BENCH_PLATFORM_DEVICES_POSTGRES=0) it applies the fleet of bench/common.py (10,000 devices of one
product), starts one real `pinbase serve`, gives every device a current value (one batch
update, so that pages read real last-report times), and times, one request at a time over one
keep-alive connection with an organization token, from the request sent to the answer read:

- `GET /api/v1/organization/devices`: every page of size 50 (200 pages) and of size 1000
  (10 pages), `PAGE_RUNS` times each;
- `GET /api/v1/organization/search/devices`: `SEARCHES` (a few matches, every device matching
  with one page of 50 shown, sorted by name, by last report), `SEARCH_RUNS` times each;
- `POST /api/v1/organization/device/create` of `CHANGES` devices one after another, then
  `DELETE /api/v1/organization/device` of each of them;
- the baseline, in the same run: `GET /api/v1/organization/device/status` of one device
  (`BASELINE_RUNS` times), an authenticated request that reads nothing but memory, so the
  figures above can be read as that request's cost plus their own work.

Every figure is a median in milliseconds, with the 99th percentile; the results go to
bench/results/platform_devices.json.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from common import DEVICES, fleet
from devices import fleet_server, percentile, results_header
from postgres import on_both_stores

PAGE_RUNS = 3
BASELINE_RUNS = 600
SEARCH_RUNS = 20
CHANGES = 1_000
SEARCHES: dict[str, dict[str, object]] = {
    "few matches": {"query": "meter-123"},
    "every device, by name": {"query": "meter", "sortBy": "Name"},
    "every device, by last report": {
        "query": "meter",
        "sortBy": "Last Reported At",
        "sortOrder": "DESC",
    },
}


def timed(
    http: httpx.Client, method: str, path: str, params: dict[str, Any], status: int = 200
) -> float:
    """Seconds from the request sent to its answer read."""
    begun = time.perf_counter()
    response = http.request(method, path, params=params)
    elapsed = time.perf_counter() - begun
    if response.status_code != status:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "count": len(samples),
    }


def fill_values(http: httpx.Client) -> None:
    """A current value for every device (batches of 10,000 rows at most)."""
    rows = [[device_id, 20.0 + device_id % 10] for device_id in range(1, DEVICES + 1)]
    body = {"fields": ["deviceId", "Temperature"], "updates": rows}
    response = http.post("/api/v1/organization/product/devices/batch-update", json=body)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")


def pages(http: httpx.Client, size: int) -> list[float]:
    samples = []
    for _ in range(PAGE_RUNS):
        for page in range(DEVICES // size):
            params = {"page": page, "size": size}
            samples.append(timed(http, "GET", "/api/v1/organization/devices", params))
    return samples


def searches(http: httpx.Client) -> dict[str, dict[str, float]]:
    found = {}
    for name, params in SEARCHES.items():
        samples = [
            timed(http, "GET", "/api/v1/organization/search/devices", dict(params))
            for _ in range(SEARCH_RUNS)
        ]
        found[name] = summary(samples)
    return found


def create_and_delete(http: httpx.Client) -> dict[str, dict[str, float]]:
    created: list[int] = []
    create_samples = []
    for n in range(CHANGES):
        body = {"templateId": 1, "name": f"made {n}"}
        begun = time.perf_counter()
        response = http.post("/api/v1/organization/device/create", json=body)
        create_samples.append(time.perf_counter() - begun)
        if response.status_code != 201:
            raise RuntimeError(response.text[:200])
        created.append(response.json()["id"])
    delete_samples = [
        timed(http, "DELETE", "/api/v1/organization/device", {"deviceId": device_id}, 204)
        for device_id in created
    ]
    return {"create": summary(create_samples), "delete": summary(delete_samples)}


def measure(url: str, work: Path, log: Path, *flags: str) -> dict[str, Any]:
    with fleet_server(url, fleet(), work, log, *flags) as (_, http):
        fill_values(http)
        http.get("/api/v1/organization/devices", params={"size": 1000})  # warm-up
        status = "/api/v1/organization/device/status"
        baseline = [timed(http, "GET", status, {"deviceId": 1}) for _ in range(BASELINE_RUNS)]
        results: dict[str, Any] = {
            "baseline_status": summary(baseline),
            "list_size_50": summary(pages(http, 50)),
            "list_size_1000": summary(pages(http, 1000)),
            "search": searches(http),
        }
        results.update(create_and_delete(http))
        print(f"  {results}", flush=True)
        return results


def main() -> None:
    results = results_header(devices=DEVICES)
    on_both_stores("platform_devices", results, measure)


if __name__ == "__main__":
    main()
