"""The Python client's aggregated history and CSV export against the shared server, with the
blocking and the async client, on both stores: typed buckets in UTC and in a device-local zone,
the export read chunk by chunk as it arrives (exact rows, filters, a big export in many
chunks), and the API's refusals as typed errors (a bad function or zone, another user's or
organization's device). Each test works on a device of its own, created and deleted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from helpers import ACME, PASSWORDS, Server, api_client, not_found
from pinbase.client import BadRequest, Bucket, ClientCredentials, NotFound, Password

CLIENT = ClientCredentials(*ACME)
OWNER = Password(*ACME, "user@acme.test", PASSWORDS["user@acme.test"])
MODES = ["sync", "async"]
TEMPERATURE, HUMIDITY = 1, 2  # DOUBLE and INT datastreams of template 10
FOREIGN = 201  # Globex's
BIG = 20_000  # two import requests; an export of about a megabyte


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


# Monday 5 January 2026: 02:30 and 14:30 in Kyiv (UTC+2), then 01:30 of the 6th in Kyiv
POINTS = [(ms(2026, 1, 5, 0, 30), 20.5), (ms(2026, 1, 5, 12, 30), 21.5),
          (ms(2026, 1, 5, 23, 30), 25.5)]  # fmt: skip
START, END = ms(2026, 1, 1), ms(2026, 3, 1)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def url(server: Server) -> Iterator[str]:
    yield server.url


def test_history_is_aggregated_in_typed_buckets(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, _):
        device = api.create_device(10, f"Aggregated {mode}").id
        try:
            api.import_history(device, TEMPERATURE, POINTS)
            daily = api.history_aggregate(
                device, TEMPERATURE, start=START, end=END, interval="day", fn="avg", tz="UTC"
            )
            assert daily.data == [Bucket(ts=ms(2026, 1, 5), value=22.5)]
            assert (daily.interval, daily.tz) == ("day", "UTC")
            kyiv = api.history_aggregate(
                device, pin="v1", start=START, end=END, interval="day", fn="max", tz="Europe/Kyiv"
            )
            assert [(b.ts, b.value) for b in kyiv.data] == [
                (ms(2026, 1, 5, tz="Europe/Kyiv"), 21.5),
                (ms(2026, 1, 6, tz="Europe/Kyiv"), 25.5),
            ]
            assert kyiv.tz == "Europe/Kyiv"
            hourly = api.history_aggregate(
                device, TEMPERATURE, start=START, end=END, interval="1h", fn="count", tz="UTC"
            )
            assert [(b.ts, b.value) for b in hourly.data] == [
                (ts - 1_800_000, 1) for ts, _ in POINTS
            ]
            with pytest.raises(BadRequest) as bad:
                api.history_aggregate(
                    device, TEMPERATURE, start=START, end=END, interval="day", fn="median"
                )  # type: ignore[arg-type]
            assert "'fn'" in bad.value.message
            with pytest.raises(BadRequest) as zone:
                api.history_aggregate(
                    device,
                    TEMPERATURE,
                    start=START,
                    end=END,
                    interval="day",
                    fn="avg",
                    tz="Mars/Olympus",
                )
            assert "'tz'" in zone.value.message
            with pytest.raises(NotFound) as foreign:
                api.history_aggregate(
                    FOREIGN, TEMPERATURE, start=START, end=END, interval="day", fn="avg"
                )
            assert foreign.value.message == not_found(FOREIGN)
            with api_client(mode, url, OWNER) as (owner, _), pytest.raises(NotFound) as other:
                owner.history_aggregate(
                    device, TEMPERATURE, start=START, end=END, interval="day", fn="avg"
                )
            assert other.value.message == not_found(device)
        finally:
            api.delete_device(device)


def test_history_is_exported_as_streamed_csv(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, _):
        device = api.create_device(10, f"Exported {mode}").id
        try:
            api.import_history(device, TEMPERATURE, POINTS)
            base = ms(2026, 2, 1)
            api.import_history(device, HUMIDITY, ((base + i * 1000, i % 50) for i in range(BIG)))
            text = b"".join(
                api.export(device, start=START, end=ms(2026, 1, 31), tz="Europe/Kyiv")
            ).decode()
            assert text == (
                "ts_iso,ts_ms,dataStreamId,pin,label,value\r\n"
                f"2026-01-05T02:30:00.000+02:00,{POINTS[0][0]},1,v1,Temperature,20.5\r\n"
                f"2026-01-05T14:30:00.000+02:00,{POINTS[1][0]},1,v1,Temperature,21.5\r\n"
                f"2026-01-06T01:30:00.000+02:00,{POINTS[2][0]},1,v1,Temperature,25.5\r\n"
            )
            # a big export arrives in many chunks, read one at a time
            chunks = 0
            lines: list[bytes] = []
            tail = b""
            for chunk in api.export(device, end=END, datastream_ids=[HUMIDITY]):
                chunks += 1
                *done, tail = (tail + chunk).split(b"\r\n")
                lines += done
            assert tail == b"" and chunks > 1
            assert len(lines) == BIG + 1
            assert lines[1] == b"2026-02-01T00:00:00.000+00:00,%d,2,v2,Humidity,0" % base
            assert lines[-1].endswith(b",2,v2,Humidity,49")
            # refusals are raised when the first chunk is asked for
            with pytest.raises(BadRequest) as zone:
                next(iter(api.export(device, end=END, tz="Mars/Olympus")))
            assert "'tz'" in zone.value.message
            with pytest.raises(NotFound) as absent:
                next(iter(api.export(device, end=END, datastream_ids=[99])))
            with pytest.raises(NotFound) as foreign:
                next(iter(api.export(FOREIGN, end=END)))
            assert foreign.value.message == not_found(FOREIGN)
            with api_client(mode, url, OWNER) as (owner, _), pytest.raises(NotFound) as other:
                next(iter(owner.export(device, end=END)))
            assert other.value.message == not_found(device)
            assert absent.value.status == 404
        finally:
            api.delete_device(device)
