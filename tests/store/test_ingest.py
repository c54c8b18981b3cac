"""The one write path on a real store: per-value timestamps, history, current values, events.

Runs on SQLite in a temporary directory, and on PostgreSQL too when PINBASE_TEST_POSTGRES holds a
server URL (each test then gets a database of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import fresh_store, second_store
from pinbase.app.device_session import Clock
from pinbase.app.ingest import HOT_LIMIT, K_LIMIT, Ingest
from pinbase.domain.clock import now_ms
from pinbase.domain.model import Datastream, DataType, Device
from pinbase.domain.values import Value
from pinbase.live.bus import Bus, Event, ValueChanged
from pinbase.store.base import Store
from pinbase.store.records import ValueWrites

DEVICE = Device(id=7, org_id=1, product_id=10, root_product_id=10, name="Station", owner_id=None)
OTHER = Device(id=8, org_id=1, product_id=10, root_product_id=10, name="Other", owner_id=None)
HUMIDITY = Datastream(2, "v2", "Humidity", "humidity", DataType.INTEGER, 0, 100)
STATUS = Datastream(3, "v3", "Status", "status", DataType.STRING)
MODE = Datastream(5, "v5", "Mode", "mode", DataType.ENUM, options={0: "Off"}, history=False)

Scenario = Callable[["Harness"], Awaitable[None]]


class Harness:
    """An Ingest on a real store and bus, with every published event recorded."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.bus = Bus()
        self.ingest = Ingest(store, self.bus)
        self.events: list[Event] = []
        self.store_writes = 0
        self.bus.subscribe_org(1, self.events.append)
        write_values = store.write_values

        async def counted(writes: ValueWrites) -> int:
            self.store_writes += 1
            return await write_values(writes)

        store.write_values = counted  # type: ignore[method-assign]

    async def history(self, device: Device, ds: Datastream) -> list[tuple[int, Value]]:
        total, rows = await self.store.history(device.id, ds.id, 0, 2**62, 0, 10_000, True)
        assert total == len(rows)
        return [(ts, orjson.loads(text)) for ts, text in rows]

    async def current(self, device: Device, ds: Datastream) -> tuple[Value, int] | None:
        stored = (await self.store.current_values([device.id]))[device.id].get(ds.id)
        return None if stored is None else (orjson.loads(stored.value), stored.updated_at)

    def values_changed(self) -> list[tuple[int, int, Any, int, object | None]]:
        return [
            (e.device_id, e.ds_id, e.value, e.ts, e.origin)
            for e in self.events
            if isinstance(e, ValueChanged)
        ]


@pytest.fixture
def run(backend: str, tmp_path: Path) -> Iterator[Callable[[Scenario], None]]:
    """Run a scenario against a fresh store of the current backend."""

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            async with fresh_store(backend, tmp_path) as store:
                await scenario(Harness(store))

        asyncio.run(main())

    yield runner


# write_points -------------------------------------------------------------------------------


def test_repeated_datastream_keeps_every_point(run: Callable[[Scenario], None]) -> None:
    origin = object()

    async def scenario(h: Harness) -> None:
        base = now_ms()
        points: list[tuple[Datastream, Value, int]] = [
            (HUMIDITY, 10, base),
            (STATUS, "a", base),
            (HUMIDITY, 11, base + 1),
            (HUMIDITY, 12, base + 2),
            (STATUS, "b", base + 2),
        ]
        await h.ingest.write_points(DEVICE, points, origin=origin)
        assert h.store_writes == 1  # one transaction for the whole call
        assert await h.history(DEVICE, HUMIDITY) == [(base, 10), (base + 1, 11), (base + 2, 12)]
        assert await h.history(DEVICE, STATUS) == [(base, "a"), (base + 2, "b")]
        assert await h.current(DEVICE, HUMIDITY) == (12, base + 2)
        assert await h.current(DEVICE, STATUS) == ("b", base + 2)
        assert h.values_changed() == [
            (DEVICE.id, ds.id, value, ts, origin) for ds, value, ts in points
        ]

    run(scenario)


def test_datastream_without_history_gets_current_and_events_only(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(h: Harness) -> None:
        base = now_ms()
        await h.ingest.write_points(DEVICE, [(MODE, 0, base), (MODE, 1, base + 1)])
        assert await h.history(DEVICE, MODE) == []
        assert await h.current(DEVICE, MODE) == (1, base + 1)
        assert [e[2:4] for e in h.values_changed()] == [(0, base), (1, base + 1)]

    run(scenario)


def test_current_is_the_newest_point_whatever_the_order(run: Callable[[Scenario], None]) -> None:
    async def scenario(h: Harness) -> None:
        base = now_ms()
        points: list[tuple[Datastream, Value, int]] = [
            (HUMIDITY, 30, base + 5),
            (HUMIDITY, 20, base),
            (HUMIDITY, 40, base + 5),  # a tie: the later point becomes current
        ]
        await h.ingest.write_points(DEVICE, points)
        assert await h.current(DEVICE, HUMIDITY) == (40, base + 5)
        # every point stays in history, those of one millisecond in the call's order
        assert await h.history(DEVICE, HUMIDITY) == [(base, 20), (base + 5, 30), (base + 5, 40)]
        assert [e[2] for e in h.values_changed()] == [30, 20, 40]  # events keep the call's order

    run(scenario)


def test_a_later_call_replaces_current_and_adds_history(run: Callable[[Scenario], None]) -> None:
    async def scenario(h: Harness) -> None:
        base = now_ms()
        await h.ingest.write_points(DEVICE, [(HUMIDITY, 1, base), (HUMIDITY, 2, base + 1)])
        await h.ingest.write_points(DEVICE, [(HUMIDITY, 3, base + 2), (HUMIDITY, 4, base + 3)])
        assert h.store_writes == 2
        assert [v for _, v in await h.history(DEVICE, HUMIDITY)] == [1, 2, 3, 4]
        assert await h.current(DEVICE, HUMIDITY) == (4, base + 3)

    run(scenario)


def test_empty_write_does_nothing(run: Callable[[Scenario], None]) -> None:
    async def scenario(h: Harness) -> None:
        await h.ingest.write_points(DEVICE, [])
        await h.ingest.write(DEVICE, [])
        await h.ingest.write_cells([])
        assert h.store_writes == 0
        assert h.events == []

    run(scenario)


# write and write_cells: one timestamp per call, as before --------------------------------------


def test_write_stamps_every_value_with_one_timestamp(run: Callable[[Scenario], None]) -> None:
    origin = object()

    async def scenario(h: Harness) -> None:
        stamp = now_ms()
        await h.ingest.write(DEVICE, [(HUMIDITY, 5), (STATUS, "x")], ts=stamp, origin=origin)
        assert await h.history(DEVICE, HUMIDITY) == [(stamp, 5)]
        assert await h.current(DEVICE, STATUS) == ("x", stamp)
        assert h.values_changed() == [
            (DEVICE.id, HUMIDITY.id, 5, stamp, origin),
            (DEVICE.id, STATUS.id, "x", stamp, origin),
        ]
        before = now_ms()
        await h.ingest.write(DEVICE, [(HUMIDITY, 6)])
        value, updated_at = await h.current(DEVICE, HUMIDITY) or (None, 0)
        assert value == 6 and before <= updated_at <= now_ms()

    run(scenario)


def test_write_cells_spans_devices_in_one_transaction(run: Callable[[Scenario], None]) -> None:
    async def scenario(h: Harness) -> None:
        stamp = now_ms()
        await h.ingest.write_cells([(DEVICE, HUMIDITY, 1), (OTHER, HUMIDITY, 2)], ts=stamp)
        assert h.store_writes == 1
        assert await h.current(DEVICE, HUMIDITY) == (1, stamp)
        assert await h.current(OTHER, HUMIDITY) == (2, stamp)
        assert await h.history(OTHER, HUMIDITY) == [(stamp, 2)]
        assert [(e[0], e[2]) for e in h.values_changed()] == [(DEVICE.id, 1), (OTHER.id, 2)]

    run(scenario)


def test_write_repeating_a_datastream_at_one_timestamp_keeps_both_and_the_last_is_current(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(h: Harness) -> None:
        stamp = now_ms()
        await h.ingest.write(DEVICE, [(HUMIDITY, 1), (HUMIDITY, 2)], ts=stamp)
        assert await h.history(DEVICE, HUMIDITY) == [(stamp, 1), (stamp, 2)]
        assert await h.current(DEVICE, HUMIDITY) == (2, stamp)
        assert [e[2] for e in h.values_changed()] == [1, 2]

    run(scenario)


# a connection's clock ---------------------------------------------------------------------------


def test_clock_gives_each_datastream_strictly_increasing_stamps() -> None:
    clock = Clock()
    before = now_ms()
    values: list[tuple[Datastream, Value]] = [
        (HUMIDITY, 1),
        (STATUS, "a"),
        (HUMIDITY, 2),
        (HUMIDITY, 3),
        (STATUS, "b"),
        (MODE, 0),
    ]
    points = clock.stamp(values)
    points += clock.stamp(values)
    stamps = [ts for _, _, ts in points]
    assert stamps[0] >= before
    assert stamps == sorted(stamps)  # never back, across calls too
    for ds in (HUMIDITY, STATUS, MODE):
        mine = [ts for d, _, ts in points if d is ds]
        assert mine == sorted(set(mine)), (ds.label, mine)  # strictly increasing
    # different datastreams share a millisecond: a repeat is what moves the clock on
    first = stamps[:6]
    assert first[1] == first[0] and first[3] == first[2] + 1 and first[5] == first[4]
    assert [(ds, v) for ds, v, _ in points] == values + values


def test_clock_and_write_points_keep_a_burst_of_one_datastream(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(h: Harness) -> None:
        clock = Clock()
        for start in (0, 100):
            burst: list[tuple[Datastream, Value]] = [
                (HUMIDITY, (start + i) % 101) for i in range(100)
            ]
            await h.ingest.write_points(DEVICE, clock.stamp(burst))
        history = await h.history(DEVICE, HUMIDITY)
        assert [v for _, v in history] == [i % 101 for i in range(200)]
        assert await h.current(DEVICE, HUMIDITY) == (history[-1][1], history[-1][0])
        assert [(e[3], e[2]) for e in h.values_changed()] == history

    run(scenario)


# points of one millisecond: live writes, other processes, imports ---------------------------


def test_live_writes_of_one_millisecond_are_all_kept(run: Callable[[Scenario], None]) -> None:
    async def scenario(h: Harness) -> None:
        stamp = now_ms()
        other = second_store(h.store)  # another server process on the same database
        await other.open()
        try:
            elsewhere = Ingest(other, Bus())
            writes = []
            for n in range(20):
                writes.append(h.ingest.write(DEVICE, [(STATUS, f"here {n}")], ts=stamp))
                writes.append(elsewhere.write(DEVICE, [(STATUS, f"there {n}")], ts=stamp))
                writes.append(h.ingest.write_points(DEVICE, [(STATUS, f"point {n}", stamp)]))
                writes.append(h.ingest.write_cells([(DEVICE, STATUS, f"cell {n}")], ts=stamp))
            await asyncio.gather(*writes)
        finally:
            await other.close()
        history = await h.history(DEVICE, STATUS)
        assert len(history) == 80 and {ts for ts, _ in history} == {stamp}
        values = [v for _, v in history]
        assert sorted(values) == sorted(
            f"{kind} {n}" for kind in ("here", "there", "point", "cell") for n in range(20)
        )
        # one process's points come in the order it numbered them
        assert [v for v in values if str(v).startswith("there")] == [
            f"there {n}" for n in range(20)
        ]

    run(scenario)


def test_importing_twice_keeps_one_point_each_beside_the_live_ones(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(h: Harness) -> None:
        base = now_ms() - 60_000
        await h.ingest.write(DEVICE, [(HUMIDITY, 1)], ts=base)
        await h.ingest.write_points(DEVICE, [(HUMIDITY, 2, base + 1)])
        points: list[tuple[int, Value]] = [(base, 10), (base + 1, 11), (base + 2, 12)]
        await h.ingest.import_points(DEVICE, HUMIDITY, points)
        await h.ingest.import_points(DEVICE, HUMIDITY, points)
        # imported first in their millisecond, then the live point
        assert await h.history(DEVICE, HUMIDITY) == [
            (base, 10),
            (base, 1),
            (base + 1, 11),
            (base + 1, 2),
            (base + 2, 12),
        ]
        await h.ingest.import_points(DEVICE, HUMIDITY, [(base + 1, 21)])  # replaces its import
        assert [v for _, v in await h.history(DEVICE, HUMIDITY)] == [10, 1, 21, 2, 12]

    run(scenario)


def test_points_of_one_series_and_millisecond_are_numbered_in_order(
    run: Callable[[Scenario], None],
) -> None:
    """The first point of a series in a millisecond is seq = the writer id; more get k << 32 |
    writer id; a point of an older millisecond than the latest one comes from the counter."""

    async def scenario(h: Harness) -> None:
        stamp = now_ms() - 60_000
        await h.ingest.write(DEVICE, [(STATUS, "first"), (HUMIDITY, 1)], ts=stamp)
        await h.ingest.write(DEVICE, [(STATUS, "second")], ts=stamp)
        await h.ingest.write(DEVICE, [(STATUS, "later")], ts=stamp + 1)
        await h.ingest.write(DEVICE, [(STATUS, "late 1")], ts=stamp)  # older than the latest
        await h.ingest.write_points(DEVICE, [(STATUS, "late 2", stamp), (STATUS, "x", stamp + 1)])
        writer = await h.store.writers()
        history = [row async for rows in h.store.export_history(100) for row in rows]
        assert [(row[2], row[3], row[4]) for row in history if row[1] == STATUS.id] == [
            (stamp, writer, '"first"'),
            (stamp, 1 << 32 | writer, '"second"'),
            (stamp, HOT_LIMIT << 32 | writer, '"late 1"'),
            (stamp, (HOT_LIMIT + 1) << 32 | writer, '"late 2"'),
            (stamp + 1, writer, '"later"'),
            (stamp + 1, 1 << 32 | writer, '"x"'),
        ]
        assert [(row[2], row[3]) for row in history if row[1] == HUMIDITY.id] == [(stamp, writer)]

    run(scenario)


def test_a_writer_whose_counter_ran_out_takes_a_new_writer_id(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(h: Harness) -> None:
        stamp = now_ms()
        await h.ingest.write(DEVICE, [(STATUS, "first")], ts=stamp)
        assert await h.store.writers() == 1
        seqs = h.ingest._seqs
        assert seqs is not None
        seqs._next = K_LIMIT - 1  # as if 2**31 - 2**20 - 1 points had come from the counter
        await h.ingest.write(DEVICE, [(STATUS, "last of writer 1")], ts=stamp - 1)
        await h.ingest.write(DEVICE, [(STATUS, "a"), (STATUS, "b")], ts=stamp - 1)  # no room
        assert await h.store.writers() == 2
        assert await h.history(DEVICE, STATUS) == [
            (stamp - 1, "a"),  # writer 2, k 0
            (stamp - 1, "b"),  # writer 2, k 1
            (stamp - 1, "last of writer 1"),  # writer 1, k 2**31 - 1
            (stamp, "first"),
        ]

    run(scenario)
