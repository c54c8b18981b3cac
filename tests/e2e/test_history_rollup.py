"""The aggregated history read through the rollup equals the aggregation of the points the
history API lists: after the first reads built the rollup, after an import into old slots, and
after retention dropped old points at a restart. Hourly buckets in UTC and in Asia/Kolkata (an
hour starting at :30 UTC), daily ones in Europe/Kyiv."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from helpers import ACME, Api, Server, apply_fleet_text, client_token, wait_for, weather_fleet

AGGREGATE = "/api/v1/organization/device/datastream/history/aggregate"
HISTORY = "/api/v1/organization/device/datastream/history"
IMPORT = "/api/v1/organization/device/import/batch"
DEVICE, TEMPERATURE = 1, 1
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
RETENTION_DAYS = 30
CASES = (("1h", "UTC"), ("1h", "Asia/Kolkata"), ("day", "Europe/Kyiv"))


def bucket_start(ts: int, interval: str, zone: str) -> int:
    local = datetime.fromtimestamp(ts / 1000, ZoneInfo(zone))
    if interval == "day":
        local = local.replace(hour=0)
    start = local.replace(minute=0, second=0, microsecond=0)
    return int(start.astimezone(UTC).timestamp() * 1000)


def listed(api: Api, start: int, end: int) -> list[tuple[int, float]]:
    """Every point of the range, as the history API lists them."""
    points: list[tuple[int, float]] = []
    page = 0
    while True:
        response = api.get(
            HISTORY,
            deviceId=DEVICE,
            dataStreamId=TEMPERATURE,
            **{"from": start, "to": end},
            page=page,
            size=1000,
        )
        assert response.status_code == 200, response.text
        content = response.json()["content"]
        points += [(p["createdAt"], p["value"]) for p in content]
        if len(content) < 1000:
            return points
        page += 1


def check(api: Api, start: int, end: int) -> None:
    """Every case and function answers what the listed points give."""
    points = sorted(listed(api, start, end))
    for interval, zone in CASES:
        buckets: dict[int, list[float]] = {}
        for ts, value in points:
            buckets.setdefault(bucket_start(ts, interval, zone), []).append(value)
        expected: dict[str, list[tuple[int, Any]]] = {
            "avg": [(b, sum(v) / len(v)) for b, v in sorted(buckets.items())],
            "max": [(b, max(v)) for b, v in sorted(buckets.items())],
            "count": [(b, len(v)) for b, v in sorted(buckets.items())],
            "last": [(b, v[-1]) for b, v in sorted(buckets.items())],
        }
        for fn, want in expected.items():
            response = api.get(
                AGGREGATE,
                deviceId=DEVICE,
                dataStreamId=TEMPERATURE,
                **{"from": start, "to": end},
                interval=interval,
                fn=fn,
                tz=zone,
            )
            assert response.status_code == 200, response.text
            got = [(p["ts"], p["value"]) for p in response.json()["data"]]
            assert got == want, (interval, zone, fn)


def put(api: Api, points: list[tuple[int, float]]) -> None:
    values = [{"ts": ts, "value": value} for ts, value in points]
    response = api.post(IMPORT, {"deviceId": DEVICE, "dataStreamId": TEMPERATURE, "values": values})
    assert response.status_code == 204, response.text


def test_the_rollup_answers_as_the_points_do(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    apply_fleet_text(data_dir, weather_fleet("Acme Farms", ACME, {DEVICE: "r" * 32}))
    now = time.time_ns() // 1_000_000
    # a point every 30 minutes for 90 days, from 100 days ago (values exact in binary): the
    # retention of 30 days drops a whole calendar month of them on both stores
    first = (now - 100 * DAY) // DAY * DAY + 17 * MINUTE + 3
    every = range(first, first + 90 * DAY, 30 * MINUTE)
    points = [(ts, (ts // MINUTE % 37) * 0.5) for ts in every]
    # the range starts and ends inside slots
    start, end = first - 3 * DAY + 5 * MINUTE + 7, first + 91 * DAY - 13 * MINUTE

    server = Server(data_dir, "--import-burst", "1000").start()
    try:
        api = Api(server.url, client_token(server.url))
        for batch in range(0, len(points), 5000):
            put(api, points[batch : batch + 5000])
        check(api, start, end)  # builds the rollup
        check(api, start, end)  # reads it
        # imports into old slots: between points, on one's millisecond, before the first
        late = [(first + 5 * DAY + 2 * MINUTE, 42.25), (points[99][0], -7.5), (first - DAY, 3.0)]
        put(api, late)
        check(api, start, end)
        api.close()
    finally:
        assert server.stop() == 0

    retained = Server(data_dir, "--history-retention-days", str(RETENTION_DAYS)).start()
    try:
        api = Api(retained.url, client_token(retained.url))
        # retention runs beside the server: wait until no point is left before the month of
        # its cutoff (PostgreSQL drops whole months, SQLite every point before the cutoff)
        cutoff = datetime.fromtimestamp((now - RETENTION_DAYS * DAY) / 1000, UTC)
        month = int(datetime(cutoff.year, cutoff.month, 1, tzinfo=UTC).timestamp() * 1000)
        wait_for("retention", lambda: min(ts for ts, _ in listed(api, start, end)) >= month)
        remaining = listed(api, start, end)
        assert 0 < len(remaining) < len(points)  # retention dropped some, not all
        check(api, start, end)
        api.close()
    finally:
        retained.stop()
