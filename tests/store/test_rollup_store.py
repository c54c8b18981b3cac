"""The history rollup stays true: every grouped read in rollup slots equals the same read
computed from the points themselves, after the rollup was built and then after each kind of
change to the points (an import into an old slot, a point imported again with another value,
retention, a device's clear and deletion). On every backend (`helpers.fresh_store`); timestamps
are fixed numbers of 2020, long settled, so nothing depends on the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers import DEADLINE, fresh_store
from pinbase.store import Store
from pinbase.store.postgres.store import PostgresStore
from pinbase.store.records import ValueWrites
from pinbase.store.sql import ROLLUP_DAY, ROLLUP_SLOT, SLOT_FUNCTIONS

JAN_30_2020, FEB_1_2020 = 1_580_342_400_000, 1_580_515_200_000
DEVICE, NUMBERS, WORDS = 7, 1, 2
Points = dict[tuple[int, int, int, int], str]
"""(device, datastream, ts, seq) -> JSON value: what the store should hold."""


def run(backend: str, tmp_path: Path, body: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        async with fresh_store(backend, tmp_path) as store:
            await body(store)

    asyncio.run(main())


def computed(function: str, numeric: bool, rows: list[tuple[int, int, str]]) -> Any:
    """`function` of one slot's points (ts, seq, JSON value), in (ts, seq) order."""
    if function in ("first", "last"):
        return rows[0 if function == "first" else -1][2]
    if function == "count":
        return len(rows)
    numbers = [float(value) for _, _, value in rows] if numeric else []
    return {"sum": sum, "min": min, "max": max}[function](numbers)


def expected(points: Points, ds_id: int, start: int, end: int, function: str) -> list[Any]:
    """`Store.history_slots` in rollup slots, computed here from the points."""
    slots: dict[int, list[tuple[int, int, str]]] = {}
    for (device, ds, ts, seq), value in sorted(points.items()):
        if device == DEVICE and ds == ds_id and start <= ts <= end:
            slots.setdefault(ts // ROLLUP_SLOT * ROLLUP_SLOT, []).append((ts, seq, value))
    return [
        (slot, len(rows), computed(function, ds_id == NUMBERS, rows))
        for slot, rows in sorted(slots.items())
    ]


async def check(store: Store, points: Points, ranges: list[tuple[int, int]]) -> None:
    for start, end in ranges:
        for ds_id, functions in ((NUMBERS, SLOT_FUNCTIONS), (WORDS, ("count", "first", "last"))):
            for function in functions:
                got = await store.history_slots(DEVICE, ds_id, start, end, ROLLUP_SLOT, function)
                want = expected(points, ds_id, start, end, function)
                assert got == want, (ds_id, function, start, end)


async def write(store: Store, points: Points, rows: list[tuple[int, int, int, str]]) -> None:
    history = [(DEVICE, ds, ts, seq, value) for ds, ts, seq, value in rows]
    await store.write_values(ValueWrites(history=history))
    points.update({(DEVICE, ds, ts, seq): value for ds, ts, seq, value in rows})


async def marked_days(store: Store) -> int:
    rows = await store._fetch("SELECT count(*) FROM rollup_days", ())
    return int(rows[0][0])


def test_the_rollup_equals_the_points_after_every_change(backend: str, tmp_path: Path) -> None:
    start, end = JAN_30_2020, FEB_1_2020 + 2 * ROLLUP_DAY - 1  # four days, two months
    ranges = [
        (start, end),
        (start + 7 * 60_000 + 13, end - 11 * 60_000),  # both ends inside slots
        (start + ROLLUP_DAY + 5 * ROLLUP_SLOT, start + ROLLUP_DAY + 9 * ROLLUP_SLOT - 1),
    ]

    async def body(store: Store) -> None:
        points: Points = {}
        # a point every 7 minutes, but none on the second day: a day without points
        rows = [
            (ds, ts, 0, f"{(ts // 60_000) % 97 - 40}.5" if ds == NUMBERS else f'"w{ts % 89}"')
            for ds in (NUMBERS, WORDS)
            for ts in range(start + 3_000, end, 7 * 60_000)
            if ts // ROLLUP_DAY != start // ROLLUP_DAY + 1
        ]
        await write(store, points, rows)
        await check(store, points, ranges)  # the first reads build the rollup
        assert await marked_days(store) == 2 * 4
        await check(store, points, ranges)  # and the next ones read it

        # imports into old slots: a day that had points, the day that had none, and a
        # second point of one millisecond (seq orders them)
        late = start + 5 * ROLLUP_SLOT + 1
        await write(store, points, [(NUMBERS, late, 0, "1000.25"), (WORDS, late, 0, '"late"')])
        await write(store, points, [(NUMBERS, start + ROLLUP_DAY + 42, 0, "-3")])
        await write(store, points, [(NUMBERS, late, 5, "-1000.25"), (WORDS, late, 5, '"later"')])
        await check(store, points, ranges)
        # a point imported again with another value
        await write(store, points, [(NUMBERS, late, 0, "7"), (WORDS, late, 0, '"again"')])
        await check(store, points, ranges)

        # retention: January goes (a whole month, so both stores drop the same points)
        await store.drop_history_before(FEB_1_2020)
        points = {key: value for key, value in points.items() if key[2] >= FEB_1_2020}
        await check(store, points, ranges)

        # a cleared device reads empty, and new points on its old days read as themselves
        await store.clear_devices([DEVICE])
        points = {}
        await check(store, points, ranges)
        await write(store, points, [(NUMBERS, FEB_1_2020 + 99, 0, "2"), (WORDS, end - 5, 0, '"x"')])
        await check(store, points, ranges)

        # so does a deleted one
        await check(store, points, ranges)
        await store.delete_devices([DEVICE])
        points = {}
        await check(store, points, ranges)
        await write(store, points, [(NUMBERS, FEB_1_2020 + 5, 0, "4")])
        await check(store, points, ranges)

    run(backend, tmp_path, body)


def test_a_fill_waits_for_a_write_into_its_days_on_postgresql(backend: str, tmp_path: Path) -> None:
    """A write of an old point, not yet committed, holds the rollup's fill of its day until it
    commits; the fill then sees the point (without the lock it would mark the day without it)."""
    if backend != "postgresql":
        pytest.skip("SQLite fills in its one writer's transaction: nothing can interleave")

    async def body(store: Store) -> None:
        assert isinstance(store, PostgresStore)
        points: Points = {}
        await write(store, points, [(NUMBERS, JAN_30_2020 + ts, 0, "1") for ts in (0, 7, 99)])
        start, end = JAN_30_2020, JAN_30_2020 + ROLLUP_DAY - 1
        writer, watcher = await asyncpg.connect(store.url), await asyncpg.connect(store.url)
        try:
            transaction = writer.transaction()
            await transaction.start()
            await writer.execute(
                "INSERT INTO history (device_id, ds_id, ts, seq, value) "
                "VALUES ($1, $2, $3, 0, '5')",
                DEVICE,
                NUMBERS,
                JAN_30_2020 + 3 * ROLLUP_SLOT,
            )
            read = asyncio.create_task(
                store.history_slots(DEVICE, NUMBERS, start, end, ROLLUP_SLOT, "sum")
            )
            deadline = time.monotonic() + DEADLINE
            while not await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'LOCK TABLE rollup_days%'"
            ):
                assert time.monotonic() < deadline and not read.done(), "the fill did not wait"
                await asyncio.sleep(0.02)
            await transaction.commit()
            await read  # answered before the write committed: without the point
            points[(DEVICE, NUMBERS, JAN_30_2020 + 3 * ROLLUP_SLOT, 0)] = "5"
            assert await marked_days(store) == 1
            await check(store, points, [(start, end)])
        finally:
            await writer.close()
            await watcher.close()

    run(backend, tmp_path, body)
