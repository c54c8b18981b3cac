"""The transport-free device session on a real SQLite store: login, pins, rate charging,
stamped writes, imports and their time window, properties, reads, and following provisioning."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pinbase.app.device_session import (
    TOO_MANY_IMPORTS,
    Clock,
    DeviceSession,
    RateLimited,
    pin_key,
)
from pinbase.app.provisioning import apply
from pinbase.app.services import Services
from pinbase.config import Settings
from pinbase.domain.clock import DAY_MS, FUTURE_LIMIT_MS, now_ms
from pinbase.domain.errors import Invalid
from pinbase.domain.model import Datastream, DataType
from pinbase.live.bus import Event, PropertyChanged, ValueChanged
from pinbase.store.sqlite.store import SqliteStore

TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"
OTHER_TOKEN = "Zz3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6G"


def fleet(token: str = TOKEN) -> dict[str, Any]:
    return {
        "organizations": [
            {
                "id": 1,
                "name": "Acme",
                "products": [
                    {
                        "id": 10,
                        "name": "Station",
                        "datastreams": [
                            {"id": 1, "pin": "v1", "label": "Temperature", "type": "double"},
                            {"id": 2, "pin": "v2", "label": "Humidity", "type": "integer"},
                        ],
                    }
                ],
                "devices": [{"id": 101, "name": "Roof", "product": 10, "token": token}],
            }
        ]
    }


Scenario = Callable[[Services], Awaitable[None]]


@asynccontextmanager
async def services(tmp_path: Path, **settings: Any) -> AsyncIterator[Services]:
    store = SqliteStore(tmp_path / "session.db")
    await store.open()
    try:
        await apply(store, fleet())
        yield Services.build(Settings(data_dir=tmp_path, **settings), store)
    finally:
        await store.close()


def run(tmp_path: Path, scenario: Scenario, **settings: Any) -> None:
    async def main() -> None:
        async with services(tmp_path, **settings) as svc:
            await scenario(svc)

    asyncio.run(main())


async def login(svc: Services, origin: object | None = None) -> DeviceSession:
    session = await DeviceSession.login(svc, TOKEN, origin)
    assert session is not None
    return session


def test_login_finds_the_device_of_a_token_and_nothing_else(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        assert session.device_id == 101
        assert await DeviceSession.login(svc, OTHER_TOKEN) is None
        assert await DeviceSession.login(svc, "") is None

    run(tmp_path, scenario)


def test_pins_are_found_however_a_device_names_them(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        for pin in ("v1", "V1", "1", " v1 "):
            found = session.by_pin(pin)
            assert found is not None and found.id == 1
        assert session.by_pin("v9") is None
        assert session.by_pin("d1") is None
        assert session.by_label("Humidity") == session.by_id(2)
        assert pin_key("07") == "v07"

    run(tmp_path, scenario)


def test_charge_is_all_or_none(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        session.charge(3)
        with pytest.raises(RateLimited):
            session.charge(3)  # 2 left: refused whole, nothing taken
        assert session.admit(3) == 2
        session.charge(0)
        with pytest.raises(RateLimited):
            session.charge(1)

    run(tmp_path, scenario, device_rate=0.001, device_burst=5)


def test_admit_lets_through_the_values_that_fit(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        assert session.admit(3) == 3
        assert session.admit(3) == 2
        with pytest.raises(RateLimited):
            session.charge(1)

    run(tmp_path, scenario, device_rate=0.001, device_burst=5)


def test_writes_are_stamped_apart_and_published_with_their_origin(tmp_path: Path) -> None:
    origin = object()

    async def scenario(svc: Services) -> None:
        events: list[Event] = []
        svc.bus.subscribe_org(1, events.append)
        session = await login(svc, origin)
        temperature, humidity = session.by_id(1), session.by_id(2)
        assert temperature is not None and humidity is not None
        await session.write([(temperature, 1.5), (humidity, 40), (temperature, 2.5)])
        changes = [e for e in events if isinstance(e, ValueChanged)]
        assert [(e.ds_id, e.value) for e in changes] == [(1, 1.5), (2, 40), (1, 2.5)]
        assert changes[0].ts == changes[1].ts < changes[2].ts, "one pin twice: 1 ms apart"
        assert {e.origin for e in changes} == {origin}
        total, rows = await svc.store.history(101, 1, 0, 2**62, 0, 10, True)
        assert total == 2 and [r[1] for r in rows] == ["1.5", "2.5"]
        assert dict((ds.id, v) for ds, v in await session.read()) == {1: 2.5, 2: 40}
        assert await session.read([humidity]) == [(humidity, 40)]

    run(tmp_path, scenario)


def test_imports_skip_points_beyond_the_future_limit_and_keep_old_ones(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        ds = session.by_id(1)
        assert ds is not None
        now = now_ms()
        old, soon, too_far = now - 400 * DAY_MS, now + DAY_MS, now + FUTURE_LIMIT_MS + DAY_MS
        await session.import_points(ds, [(old, 1.0), (soon, 2.0), (too_far, 3.0)])
        total, rows = await svc.store.history(101, 1, 0, 2**62, 0, 10, True)
        assert [ts for ts, _ in rows] == [old, soon]
        assert total == 2

    run(tmp_path, scenario)


def test_imports_are_limited_per_device(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        ds = session.by_id(2)
        assert ds is not None
        await session.import_points(ds, [(now_ms(), 1)])
        with pytest.raises(RateLimited) as refused:
            await session.import_points(ds, [(now_ms(), 2)])
        assert str(refused.value) == TOO_MANY_IMPORTS
        total, _ = await svc.store.history(101, 2, 0, 2**62, 0, 10, True)
        assert total == 1

    run(tmp_path, scenario, import_rate=0.001, import_burst=1)


def test_properties_are_all_checked_before_any_is_charged_or_stored(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        ds = session.by_id(1)
        assert ds is not None
        with pytest.raises(Invalid):
            await session.set_properties(ds, [("label", "Hot"), ("color", "not a colour")])
        assert await svc.store.properties(101) == {}
        await session.set_properties(ds, [("label", "Hot"), ("color", "#FF0000")])
        assert await svc.store.properties(101) == {1: {"label": "Hot", "color": "#FF0000"}}
        assert session.admit(10) == 8, "two properties cost two values of the burst of 10"

    run(tmp_path, scenario, device_rate=0.001, device_burst=10)


def test_properties_are_stored_and_announced_in_their_one_form(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        ds = session.by_id(1)
        assert ds is not None
        events: list[Event] = []
        svc.bus.subscribe_device(101, events.append)
        await session.set_properties(ds, [("color", "e4f6f7"), ("isDisabled", "1")])
        assert await svc.store.properties(101) == {1: {"color": "#E4F6F7", "isDisabled": "true"}}
        assert [(e.name, e.value) for e in events if isinstance(e, PropertyChanged)] == [
            ("color", "#E4F6F7"),
            ("isDisabled", "true"),
        ]

    run(tmp_path, scenario)


def test_erasing_a_value_and_a_property_is_stored_and_announced(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        ds = session.by_id(1)
        assert ds is not None
        await session.write_charged([(ds, 21.5)])
        await session.set_properties(ds, [("color", "#FF0000"), ("label", "Air")])
        events: list[Event] = []
        svc.bus.subscribe_device(101, events.append)
        await session.erase_value(ds)
        await session.erase_property(ds, "color")
        assert await session.read() == []
        assert await svc.store.properties(101) == {1: {"label": "Air"}}
        total, _ = await svc.store.history(101, 1, 0, 2**62, 0, 10, True)
        assert total == 1, "history stays"
        assert [(type(e).__name__, e.value) for e in events] == [
            ("ValueChanged", None),
            ("PropertyChanged", ""),
        ]
        await session.erase_value(ds)
        await session.erase_property(ds, "color")
        assert len(events) == 2, "erasing what is empty announces nothing"
        with pytest.raises(Invalid):
            await session.erase_property(ds, "colour")

    run(tmp_path, scenario)


def test_a_session_follows_provisioning_until_its_token_moves(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        assert await session.refresh()
        document = fleet()
        document["organizations"][0]["products"][0]["datastreams"].append(
            {"id": 3, "pin": "v3", "label": "Status", "type": "string"}
        )
        await apply(svc.store, document)
        assert await session.refresh()
        assert session.by_pin("v3") is not None
        await apply(svc.store, fleet(OTHER_TOKEN))
        assert not await session.refresh()

    run(tmp_path, scenario)


def test_the_clock_never_goes_back_and_separates_repeats() -> None:
    clock = Clock()
    a = Datastream(1, "v1", "A", "a", DataType.INTEGER)
    b = Datastream(2, "v2", "B", "b", DataType.INTEGER)
    first = clock.stamp([(a, 1), (b, 2), (a, 3)], now=1_000)
    assert [ts for _, _, ts in first] == [1_000, 1_000, 1_001]
    second = clock.stamp([(a, 4)], now=900)  # the wall clock stepped back
    assert [ts for _, _, ts in second] == [1_002]
    third = clock.stamp([(b, 5)], now=5_000)
    assert [ts for _, _, ts in third] == [5_000]


def test_held_values_wait_for_a_step_of_the_rate(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        assert session.ready_in(5) == 0.0
        assert session.admit(7) == 5
        # 1,000 s a value: the step is one value (`HOLD_STEP` of the rate, at least one), and
        # the test cannot take long enough for a noticeable part of it to refill.
        assert 990 < session.resume_in(100) <= 1000
        assert 990 < session.ready_in(1) <= 1000
        assert session.admit(1) == 0  # asking charged nothing

    run(tmp_path, scenario, device_rate=0.001, device_burst=5)


def test_held_values_never_fit_a_rate_of_zero(tmp_path: Path) -> None:
    async def scenario(svc: Services) -> None:
        session = await login(svc)
        assert session.admit(3) == 2
        assert math.isinf(session.resume_in(1))

    run(tmp_path, scenario, device_rate=0.0, device_burst=2)
