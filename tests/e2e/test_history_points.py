"""No acknowledged write vanishes from history; imports stay idempotent.

Many writers of one datastream often share a millisecond: every live write acknowledged (204,
or 200 on the device HTTP API) must still be its own history point, whichever interface it came
through. Imported points are keyed by their timestamp alone, so importing the same points again
replaces them, and never replaces a live point of the same millisecond.

The module runs on a server of its own (with a fleet whose devices have tokens), so what it
counts is only what it wrote. Nothing here depends on timing to pass: the writers do collide in
a millisecond on the code this replaced, but the assertions hold however they interleave.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from helpers import ACME, Api, Server, apply_fleet_text, client_token, weather_fleet

UPDATE = "/api/v1/organization/device/datastream"
IMPORT = "/api/v1/organization/device/import/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
STATUS, HUMIDITY = 3, 2
WRITERS, REQUESTS = 16, 100
DEVICE_IDS = range(1, 6)


def token_of(device_id: int) -> str:
    return f"pinbaseHistoryPointsTest{device_id:03d}".ljust(32, "Q")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    """A server of this module alone; no rate limit gets in the way of the writers."""
    tmp_path: Path = tmp_path_factory.mktemp(f"history-points-{backend}")
    data_dir = tmp_path / "data"
    tokens = {d: token_of(d) for d in DEVICE_IDS}
    apply_fleet_text(data_dir, weather_fleet("Acme Farms", ACME, tokens))
    running = Server(
        data_dir,
        "--org-rate-limit",
        "1000000",
        "--device-rate",
        "1000000",
        "--device-burst",
        "1000000",
        "--import-burst",
        "1000",
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(own: Server) -> str:
    return client_token(own.url)


@pytest.fixture(scope="module")
def org(own: Server, token: str) -> Iterator[Api]:
    api = Api(own.url, token)
    yield api
    api.close()


def all_history(org: Api, device_id: int, ds_id: int, ascending: bool) -> list[tuple[int, Any]]:
    """Every point of a datastream, page by page; the total of every page must agree."""
    found: list[tuple[int, Any]] = []
    totals: set[int] = set()
    page = 0
    while True:
        response = org.get(
            HISTORY,
            deviceId=device_id,
            dataStreamId=ds_id,
            order="asc" if ascending else "desc",
            size=1000,
            page=page,
            **{"from": 0, "to": 2**62},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        totals.add(body["totalElements"])
        found += [(point["createdAt"], point["value"]) for point in body["content"]]
        if len(body["content"]) < 1000:
            break
        page += 1
    assert totals == {len(found)}, (totals, len(found))
    return found


def check_history(org: Api, device_id: int, ds_id: int, acknowledged: list[Any]) -> None:
    """History holds exactly the acknowledged values, one point each, in a stable order."""
    ascending = all_history(org, device_id, ds_id, True)
    assert sorted(str(v) for _, v in ascending) == sorted(str(v) for v in acknowledged)
    assert [ts for ts, _ in ascending] == sorted(ts for ts, _ in ascending)
    # points of one millisecond come in one deterministic order, reversed when descending
    assert all_history(org, device_id, ds_id, False) == ascending[::-1]


def run_writers(writers: list[Callable[[], list[Any]]]) -> list[Any]:
    """Run the writers in threads at once; every value any of them had acknowledged."""
    results: list[list[Any]] = [[] for _ in writers]
    start = threading.Barrier(len(writers))

    def work(index: int) -> None:
        start.wait()
        results[index] = writers[index]()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [value for found in results for value in found]


def org_writer(own: Server, token: str, device_id: int, name: str) -> Callable[[], list[Any]]:
    def write() -> list[Any]:
        acknowledged = []
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=own.url, headers=headers, timeout=60) as http:
            for number in range(REQUESTS):
                value = f"{name}-{number}"
                body = {"deviceId": device_id, "dataStreamId": STATUS, "value": value}
                response = http.post(UPDATE, json=body)
                assert response.status_code == 204, response.text
                acknowledged.append(value)
        return acknowledged

    return write


def device_writer(own: Server, device_id: int, name: str) -> Callable[[], list[Any]]:
    def write() -> list[Any]:
        acknowledged = []
        with httpx.Client(base_url=own.url, timeout=60) as http:
            for number in range(REQUESTS):
                value = f"{name}-{number}"
                params = {"token": token_of(device_id), "v3": value}
                response = http.get("/external/api/update", params=params)
                assert response.status_code == 200, response.text
                acknowledged.append(value)
        return acknowledged

    return write


def test_concurrent_organization_api_writers_keep_every_acknowledged_value(
    own: Server, token: str, org: Api
) -> None:
    writers = [org_writer(own, token, 1, f"w{n}") for n in range(WRITERS)]
    acknowledged = run_writers(writers)
    assert len(acknowledged) == WRITERS * REQUESTS
    check_history(org, 1, STATUS, acknowledged)


def test_writers_through_both_http_interfaces_keep_every_acknowledged_value(
    own: Server, token: str, org: Api
) -> None:
    writers = [org_writer(own, token, 2, f"org{n}") for n in range(WRITERS // 2)]
    writers += [device_writer(own, 2, f"device{n}") for n in range(WRITERS // 2)]
    acknowledged = run_writers(writers)
    assert len(acknowledged) == WRITERS * REQUESTS
    check_history(org, 2, STATUS, acknowledged)


def test_imports_are_idempotent_and_never_replace_a_live_point(org: Api, own: Server) -> None:
    device_id = 3
    for value in range(20):
        response = org.post(
            UPDATE, {"deviceId": device_id, "dataStreamId": HUMIDITY, "value": value}
        )
        assert response.status_code == 204, response.text
    live = all_history(org, device_id, HUMIDITY, True)
    assert len(live) == 20
    # points at the live points' own milliseconds (two live points may share one), and at
    # milliseconds of their own
    points = [(ts, 50 + n) for n, ts in enumerate(sorted({ts for ts, _ in live}))]
    points += [(live[0][0] - 1000 * (n + 1), 80 + n) for n in range(10)]
    body = {
        "deviceId": device_id,
        "dataStreamId": HUMIDITY,
        "values": [{"ts": ts, "value": value} for ts, value in points],
    }
    for _ in range(2):  # the Organization API, twice
        response = org.post(IMPORT, body)
        assert response.status_code == 204, response.text
    for _ in range(2):  # the device HTTP API, twice, the same points
        response = httpx.post(
            f"{own.url}/external/api/batch/update",
            params={"token": token_of(device_id), "pin": "v2"},
            content=orjson.dumps([[ts, value] for ts, value in points]),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    history = all_history(org, device_id, HUMIDITY, True)
    assert sorted(history) == sorted(live + points)
    # of one millisecond, the imported point comes first, then the live one
    assert history == sorted(live + points, key=lambda p: (p[0], p[1] < 50))
    assert all_history(org, device_id, HUMIDITY, False) == history[::-1]
