"""`store.paging.merged`: several sorted sources read batch by batch come out as one sorted
sequence, every row once, without holding more than about a batch per source."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from pinbase.store.paging import HistoryRow, merged


async def source(rows: list[HistoryRow], batch: int) -> AsyncIterator[list[HistoryRow]]:
    for first in range(0, len(rows), batch):
        yield rows[first : first + batch]


def run(series: list[list[HistoryRow]], batch: int) -> list[list[HistoryRow]]:
    async def collect() -> list[list[HistoryRow]]:
        return [rows async for rows in merged([source(rows, batch) for rows in series])]

    return asyncio.run(collect())


def test_sources_merge_in_order_with_ties_by_datastream() -> None:
    chance = random.Random(7)
    series = []
    for ds_id in (1, 2, 3, 5):
        stamps = sorted(chance.sample(range(2_000), 300 * ds_id % 700 + 1))
        series.append([(ts, ds_id, 0, f"{ts}") for ts in stamps])
    series.append([])  # a datastream without points in the range
    batches = run(series, batch=17)
    flat = [row for rows in batches for row in rows]
    assert flat == sorted(row for rows in series for row in rows)
    assert all(batches)
    assert max(map(len, batches)) <= 17 * len(series)


def test_one_source_ahead_of_the_others_is_held_back() -> None:
    late = [(1000 + i, 1, 0, "late") for i in range(50)]
    early = [(i, 2, seq, "early") for i in range(50) for seq in (0, 1 << 32)]
    batches = run([late, early], batch=8)
    flat = [row for rows in batches for row in rows]
    assert flat == early + late
    assert run([], batch=8) == []
