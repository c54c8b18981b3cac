"""The aggregated history (`GET .../datastream/history/aggregate`) over points imported through
the API: every function, buckets of the local time of the device's zone or of `tz` (a DST day in
Kyiv is one 23-hour bucket), bad parameters named in a 400, and another organization's device
answering 404 like an absent one. One server for the module."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from helpers import (
    ACME,
    Api,
    Server,
    apply_fleet_text,
    assert_error,
    client_token,
    not_found,
    weather_fleet,
)

AGGREGATE = "/api/v1/organization/device/datastream/history/aggregate"
IMPORT = "/api/v1/organization/device/import/batch"
KYIV_DEVICE, UTC_DEVICE, OTHER_DEVICE = 1, 2, 9
TEMPERATURE, HUMIDITY, STATUS = 1, 2, 3
HOUR = 3_600_000


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def token_of(device_id: int) -> str:
    return f"pinbaseAggregateTest{device_id:03d}".ljust(32, "A")


def fleet() -> str:
    """The weather fleet with a device in Europe/Kyiv, one without a zone (UTC), and another
    organization's device."""
    document = yaml.safe_load(
        weather_fleet("Acme Farms", ACME, {d: token_of(d) for d in (KYIV_DEVICE, UTC_DEVICE)})
    )
    org = document["organizations"][0]
    org["devices"][0]["timezone"] = "Europe/Kyiv"
    other = copy.deepcopy(org)
    other.update(id=2, name="Other Farms")
    other["clients"] = [{"client_id": "other", "client_secret": "other-secret-0123456789abcdef"}]
    other["products"][0]["id"] = 20
    other["devices"] = [
        {"id": OTHER_DEVICE, "name": "Theirs", "product": 20, "token": token_of(OTHER_DEVICE)}
    ]
    document["organizations"].append(other)
    text: str = yaml.safe_dump(document)
    return text


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Api]:
    tmp_path: Path = tmp_path_factory.mktemp(f"aggregate-{backend}")
    data_dir = tmp_path / "data"
    apply_fleet_text(data_dir, fleet())
    server = Server(data_dir, "--import-burst", "1000").start()
    api = Api(server.url, client_token(server.url))
    yield api
    api.close()
    server.stop()


def put(org: Api, device_id: int, ds_id: int, points: list[tuple[int, Any]]) -> None:
    body = {"deviceId": device_id, "dataStreamId": ds_id, "values": [
        {"ts": ts, "value": value} for ts, value in points
    ]}  # fmt: skip
    response = org.post(IMPORT, body)
    assert response.status_code == 204, response.text


def aggregate(org: Api, **params: object) -> dict[str, Any]:
    response = org.get(AGGREGATE, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# 2026-05-04 (a Monday), UTC: temperatures in two hours, humidity and status too
DAY = ms(2026, 5, 4)
TEMPERATURES = [(DAY + 60_000 * m, 10.0 + m) for m in (0, 5, 59)] + [
    (DAY + 2 * HOUR + 60_000 * m, -1.25 * m) for m in (1, 30)
]
HUMIDITIES = [(DAY + 60_000 * m, m) for m in (3, 7, 30)]
STATUSES = [(DAY + 60_000 * m, f"s{m}") for m in (1, 2, 44)]


def test_every_function_by_hour(org: Api) -> None:
    put(org, UTC_DEVICE, TEMPERATURE, TEMPERATURES)
    put(org, UTC_DEVICE, HUMIDITY, HUMIDITIES)
    put(org, UTC_DEVICE, STATUS, STATUSES)
    hours: dict[int, list[float]] = {}
    for ts, value in TEMPERATURES:
        hours.setdefault(ts - ts % HOUR, []).append(value)
    expected = {
        "avg": {h: statistics.fmean(v) for h, v in hours.items()},
        "min": {h: min(v) for h, v in hours.items()},
        "max": {h: max(v) for h, v in hours.items()},
        "sum": {h: sum(v) for h, v in hours.items()},
        "count": {h: len(v) for h, v in hours.items()},
        "first": {h: v[0] for h, v in hours.items()},
        "last": {h: v[-1] for h, v in hours.items()},
    }
    window = {"deviceId": UTC_DEVICE, "from": DAY - HOUR, "to": DAY + 5 * HOUR}
    for fn, values in expected.items():
        body = aggregate(org, **window, dataStreamId=TEMPERATURE, interval="1h", fn=fn)
        assert body["interval"] == "1h" and body["tz"] == "UTC"  # the device has no zone
        assert [(p["ts"], p["value"]) for p in body["data"]] == sorted(values.items()), fn
    # by pin; an integer datastream answers integers; 5-minute buckets
    body = aggregate(org, **window, pin="v2", interval="5m", fn="sum")
    assert body["data"] == [{"ts": DAY, "value": 3}, {"ts": DAY + 300_000, "value": 7},
                            {"ts": DAY + 1_800_000, "value": 30}]  # fmt: skip
    body = aggregate(org, **window, pin="v2", interval="1m", fn="max")
    assert [p["value"] for p in body["data"]] == [3, 7, 30]
    # strings: count, first and last; `from` and `to` both included
    status = {**window, "dataStreamId": STATUS, "interval": "week"}
    assert aggregate(org, **status, fn="count")["data"] == [{"ts": DAY, "value": 3}]
    assert aggregate(org, **status, fn="first")["data"] == [{"ts": DAY, "value": "s1"}]
    assert aggregate(org, **status, fn="last")["data"] == [{"ts": DAY, "value": "s44"}]
    edges = {**status, "from": DAY + 60_000, "to": DAY + 120_000, "fn": "count"}
    assert aggregate(org, **edges)["data"] == [{"ts": DAY, "value": 2}]
    month = aggregate(org, **{**status, "interval": "month"}, fn="count", tz="America/New_York")
    assert month["data"] == [{"ts": ms(2026, 5, 1, tz="America/New_York"), "value": 3}]
    assert month["tz"] == "America/New_York"
    # an hour of Asia/Kolkata starts at :30 UTC
    kolkata = aggregate(org, **window, pin="v1", interval="1h", fn="count", tz="Asia/Kolkata")
    half = HOUR // 2
    assert [(p["ts"], p["value"]) for p in kolkata["data"]] == [
        (DAY - half, 2), (DAY + half, 1), (DAY + 3 * half, 1), (DAY + 5 * half, 1)
    ]  # fmt: skip
    empty = {**window, "from": DAY + 10 * HOUR, "to": DAY + 11 * HOUR}
    assert aggregate(org, **empty, pin="v1", interval="1h", fn="avg")["data"] == []


def test_a_dst_day_in_kyiv_is_one_23_hour_bucket(org: Api) -> None:
    spring = ms(2026, 3, 29, tz="Europe/Kyiv")  # clocks go from 03:00 to 04:00
    points = [(spring + h * HOUR, float(h)) for h in range(25)]  # the 24th is the next day
    put(org, KYIV_DEVICE, TEMPERATURE, points)
    params = {"deviceId": KYIV_DEVICE, "dataStreamId": TEMPERATURE, "interval": "day"}
    body = aggregate(org, **params, fn="count", **{"from": spring - HOUR, "to": spring + 30 * HOUR})
    assert body["tz"] == "Europe/Kyiv"  # the device's zone
    assert body["data"] == [{"ts": spring, "value": 23}, {"ts": spring + 23 * HOUR, "value": 2}]
    assert body["data"][0]["ts"] == ms(2026, 3, 28, 22)
    body = aggregate(org, **params, fn="max", **{"from": spring, "to": spring + 30 * HOUR})
    assert [p["value"] for p in body["data"]] == [22.0, 24.0]
    # the same points in UTC days
    body = aggregate(
        org, **params, fn="count", tz="UTC", **{"from": spring, "to": spring + 30 * HOUR}
    )
    assert body["data"] == [
        {"ts": ms(2026, 3, 28), "value": 2},
        {"ts": ms(2026, 3, 29), "value": 23},
    ]


def test_offsets_of_odd_seconds_give_exact_buckets(org: Api) -> None:
    """Monrovia was 44 min 30 s behind UTC until 1972: its hours start at :44:30 (UTC), which no
    15-minute or 1-minute slot fits; the buckets are exact all the same."""
    morning = ms(1971, 6, 1, 10)
    seconds = (40 * 60, 44 * 60, 44 * 60 + 45, 50 * 60)  # the third one is in the next hour
    points = [(morning + 1000 * second, n) for n, second in enumerate(seconds, 1)]
    put(org, KYIV_DEVICE, HUMIDITY, points)
    params = {"deviceId": KYIV_DEVICE, "pin": "v2", "interval": "1h", "tz": "Africa/Monrovia"}
    body = aggregate(org, **params, fn="sum", **{"from": morning, "to": morning + HOUR})
    start = morning - 15 * 60_000 - 30_000  # 09:44:30 UTC
    assert body["data"] == [{"ts": start, "value": 3}, {"ts": start + HOUR, "value": 7}]


def test_bad_parameters_answer_400_naming_them(org: Api) -> None:
    base = {"deviceId": UTC_DEVICE, "dataStreamId": TEMPERATURE, "from": 0, "to": DAY,
            "interval": "day", "fn": "avg"}  # fmt: skip
    assert_error(
        org.get(AGGREGATE, **{**base, "interval": "2h"}),
        400,
        "Query parameter 'interval' must be one of: 1m, 5m, 15m, 1h, day, week, month.",
    )
    assert_error(
        org.get(AGGREGATE, **{**base, "fn": "median"}),
        400,
        "Query parameter 'fn' must be one of: avg, min, max, sum, count, first, last.",
    )
    for zone in ("Mars/Olympus", "../etc/passwd", "localtime"):
        assert "'tz'" in assert_error(org.get(AGGREGATE, **{**base, "tz": zone}), 400)
    assert "'fn'" in assert_error(org.get(AGGREGATE, **{**base, "dataStreamId": STATUS}), 400)
    assert "'from'" in assert_error(org.get(AGGREGATE, **{**base, "from": DAY + 1, "to": DAY}), 400)
    assert "buckets" in assert_error(org.get(AGGREGATE, **{**base, "interval": "1m"}), 400)
    assert "'interval'" in assert_error(org.get(AGGREGATE, **{**base, "interval": None}), 400)
    assert "'dataStreamId'" in assert_error(
        org.get(AGGREGATE, **{**base, "dataStreamId": None}), 400
    )
    extremes = {**base, "from": -(2**63), "to": 2**63 - 1, "interval": "month", "fn": "count"}
    assert "buckets" in assert_error(org.get(AGGREGATE, **extremes), 400)
    assert_error(org.get(AGGREGATE, **{**base, "dataStreamId": 77}), 404,
                 "Datastream with identifier 77 is not found.")  # fmt: skip


def test_another_organizations_device_is_not_found(org: Api) -> None:
    for device_id in (OTHER_DEVICE, 999):
        params = {"deviceId": device_id, "dataStreamId": TEMPERATURE, "from": 0, "to": DAY,
                  "interval": "day", "fn": "count"}  # fmt: skip
        assert_error(org.get(AGGREGATE, **params), 404, not_found(device_id))
