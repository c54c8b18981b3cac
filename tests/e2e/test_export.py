"""CSV export of a device's history end to end: a real `pinbase serve` on the test fleet, points
written through the import API and read back as CSV over HTTP (exact rows, a DST change in the
chosen timezone, filters, refusals, the tenant rule) and by `pinbase export` into a file; and an
export of 300,000 points whose server memory stays far below the body's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from helpers import (
    GLOBEX,
    Api,
    Server,
    apply_fleet,
    assert_error,
    client_token,
    not_found,
    pinbase,
    rss_mib,
    user_token,
)

EXPORT = "/api/v1/organization/device/export"
HISTORY = "/api/v1/organization/device/datastream/history"
IMPORT = "/api/v1/organization/device/import/batch"
HEADER = "ts_iso,ts_ms,dataStreamId,pin,label,value\r\n"
TEMPERATURE, STATUS, POSITION = 1, 3, 4
DEVICE = 101  # owned by user@acme.test
BIG = 106
FOREIGN = 201  # Globex's
KYIV_DST = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # Kyiv moves from +02:00 to +03:00
T0 = int(KYIV_DST.timestamp() * 1000) - 1_800_000  # 00:30 UTC: 02:30 in Kyiv
T1 = T0 + 3_600_000  # 01:30 UTC: 04:30 in Kyiv
BIG_POINTS = 150_000  # per datastream, two datastreams
IMPORT_SIZE = 10_000
ANON = "RssAnon"  # SQLite maps its file: the pages an export reads are not its memory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(f"export-{backend}")
    apply_fleet(data_dir)
    running = Server(data_dir, "--import-burst", "100").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Api]:
    made = Api(server.url, client_token(server.url))
    for ds_id, points in (
        (TEMPERATURE, [{"ts": T0, "value": 21.5}, {"ts": T1 + 1, "value": -3}]),
        (STATUS, [{"ts": T0, "value": 'said "hi", ok'}]),
        (POSITION, [{"ts": T1, "value": [30.52, 50.45]}]),
    ):
        body = {"deviceId": DEVICE, "dataStreamId": ds_id, "values": points}
        assert made.post(IMPORT, body).status_code == 204
    yield made
    made.close()


def export(api: Api, **params: object) -> httpx.Response:
    return api.get(EXPORT, deviceId=DEVICE, **{"from": T0 - 1, "to": T1 + 1, **params})


def test_rows_header_and_timezone(api: Api) -> None:
    response = export(api, tz="Europe/Kyiv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f"attachment; filename=device-{DEVICE}-{T0 - 1}-{T1 + 1}.csv"
    )
    # time order across datastreams, ties by datastream id; the offset changes with DST
    assert response.text == (
        HEADER
        + f"2026-03-29T02:30:00.000+02:00,{T0},1,v1,Temperature,21.5\r\n"
        + f'2026-03-29T02:30:00.000+02:00,{T0},3,v3,Status,"said ""hi"", ok"\r\n'
        + f'2026-03-29T04:30:00.000+03:00,{T1},4,v4,Position,"30.52,50.45"\r\n'
        + f"2026-03-29T04:30:00.001+03:00,{T1 + 1},1,v1,Temperature,-3.0\r\n"
    )
    utc = export(api).text.splitlines()  # UTC unless asked
    assert utc[1] == f"2026-03-29T00:30:00.000+00:00,{T0},1,v1,Temperature,21.5"
    assert utc[4] == f"2026-03-29T01:30:00.001+00:00,{T1 + 1},1,v1,Temperature,-3.0"
    new_york = export(api, tz="America/New_York").text.splitlines()
    assert new_york[1].startswith("2026-03-28T20:30:00.000-04:00,")


def test_filters(api: Api) -> None:
    only = export(api, dataStreamIds=f"{POSITION},{TEMPERATURE}").text.splitlines()
    assert [line.split(",")[2] for line in only[1:]] == ["1", "4", "1"]
    repeated = api.http.get(
        EXPORT,
        params=[("deviceId", DEVICE), ("from", T0), ("to", T1), ("dataStreamIds", STATUS)],
    )
    assert repeated.text.splitlines()[1:] == [
        f'2026-03-29T00:30:00.000+00:00,{T0},3,v3,Status,"said ""hi"", ok"'
    ]
    window = export(api, **{"from": T0 + 1, "to": T1}).text.splitlines()
    assert [line.split(",")[1] for line in window[1:]] == [str(T1)]
    empty = export(api, **{"from": 0, "to": 1000})
    assert empty.status_code == 200 and empty.text == HEADER


def test_refusals(server: Server, api: Api) -> None:
    assert_error(
        export(api, **{"from": T1, "to": T0}), 400, "Query parameter 'from' must not be after 'to'."
    )
    message = assert_error(export(api, tz="Mars/Olympus"), 400)
    assert "'tz'" in message and "Mars/Olympus" in message
    assert_error(export(api, dataStreamIds="1,x"), 400)
    assert_error(api.get(EXPORT, deviceId="abc", **{"from": 0, "to": 1}), 400)
    assert_error(api.get(EXPORT, deviceId=DEVICE, to=1), 400)
    assert_error(
        export(api, dataStreamIds="77"), 404, "Datastream with identifier 77 is not found."
    )
    # another organization's device answers exactly like a missing one
    foreign = api.get(EXPORT, deviceId=FOREIGN, **{"from": 0, "to": 1})
    missing = api.get(EXPORT, deviceId=424_242, **{"from": 0, "to": 1})
    assert_error(foreign, 404, not_found(FOREIGN))
    assert_error(missing, 404, not_found(424_242))
    globex = Api(server.url, client_token(server.url, GLOBEX))
    try:
        assert_error(export(globex), 404, not_found(DEVICE))
    finally:
        globex.close()
    assert_error(httpx.get(f"{server.url}{EXPORT}", params={"deviceId": DEVICE}), 401)
    # the permissions of history: a user sees the devices it owns, a role without view none
    for email, device, status in (
        ("user@acme.test", DEVICE, 200),
        ("user@acme.test", 105, 404),
        ("auditor@acme.test", 105, 200),
        ("blind@acme.test", DEVICE, 403),
    ):
        who = Api(server.url, user_token(server.url, email))
        try:
            window = {"from": T0, "to": T1}
            got = who.get(EXPORT, deviceId=device, **window)
            history = who.get(HISTORY, deviceId=device, dataStreamId=TEMPERATURE, **window)
            assert (got.status_code, history.status_code) == (status, status), (email, device)
        finally:
            who.close()


def test_cli_writes_the_same_csv(server: Server, api: Api, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    data_dir = str(server.data_dir)
    result = pinbase(
        "export", str(DEVICE), "--from", str(T0 - 1), "--to", str(T1 + 1), "--tz", "Europe/Kyiv",
        "-o", str(target), "--data-dir", data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == export(api, tz="Europe/Kyiv").content
    assert "4 points written" in result.stderr
    # ISO 8601 bounds read in --tz, one datastream, to stdout
    result = pinbase(
        "export", str(DEVICE), "--from", "2026-03-29T04:30", "--to", "2026-03-29T05:00",
        "--tz", "Europe/Kyiv", "--datastream", str(TEMPERATURE), "--data-dir", data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        HEADER.strip(),
        f"2026-03-29T04:30:00.001+03:00,{T1 + 1},1,v1,Temperature,-3.0",
    ]
    for args, phrase in (
        (["424242", "--from", "0", "--to", "1"], "424242"),
        ([str(DEVICE), "--from", "yesterday", "--to", "1"], "yesterday"),
        ([str(DEVICE), "--from", "0", "--to", "1", "--tz", "Mars/Olympus"], "Mars/Olympus"),
    ):
        result = pinbase("export", *args, "--data-dir", data_dir)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error:") and phrase in result.stderr


def test_a_large_export_streams_in_bounded_memory(server: Server, api: Api) -> None:
    start = T0 - 10 * BIG_POINTS * 1000
    for ds_id, step in ((TEMPERATURE, 0), (STATUS, 500)):  # interleaved in time
        for first in range(0, BIG_POINTS, IMPORT_SIZE):
            values = [
                {"ts": start + i * 1000 + step, "value": i if ds_id == TEMPERATURE else f"s{i}"}
                for i in range(first, first + IMPORT_SIZE)
            ]
            body = orjson.dumps({"deviceId": BIG, "dataStreamId": ds_id, "values": values})
            assert api.raw(IMPORT, body).status_code == 204
    params = {"deviceId": BIG, "from": start, "to": T0}
    before = rss_mib(server, ANON)
    peak, size, rows, last = before, 0, 0, -1
    tail = b""
    with api.http.stream("GET", EXPORT, params=params) as response:
        assert response.status_code == 200
        for number, chunk in enumerate(response.iter_bytes()):
            size += len(chunk)
            lines = (tail + chunk).split(b"\r\n")
            tail = lines.pop()
            for line in lines:
                if rows:  # past the header: time order throughout
                    ts = int(line.split(b",", 2)[1])
                    assert ts > last
                    last = ts
                rows += 1
            if number % 20 == 0:
                peak = max(peak, rss_mib(server, ANON))
    assert tail == b""
    assert rows == 1 + 2 * BIG_POINTS
    assert last == start + (BIG_POINTS - 1) * 1000 + 500
    growth = max(peak, rss_mib(server, ANON)) - before
    assert growth < size / 2**20 / 4, (growth, size)
