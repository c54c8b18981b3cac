"""Reading through the history rollup: what of a range it holds, and which days to roll up.

The rollup (`sql.ROLLUP_SLOT`, tables `rollup_slots` and `rollup_days`) holds the aggregates of
each 15-minute UTC slot of a series, valid for the days marked in `rollup_days`. A read of a
range takes the slots of its marked days from the rollup, and reads the points of the rest
(the partial slots at both ends, the days not marked) grouped by slot; the days it had to read
that way, when settled (ended `sql.ROLLUP_SETTLED` ago), are then rolled up, so the next read
finds them. Pure arithmetic on epoch milliseconds; `Store.history_slots` runs the statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pinbase.store.sql import ROLLUP_DAY, ROLLUP_SETTLED, ROLLUP_SLOT

FILL_DAYS = 31
"""The most days one fill rolls up (one transaction each: a write waits at most that long)."""
FILLS_PER_READ = 12
"""The most fills one read makes: a read of a long range never rolled up stays bounded (the
next reads roll up the rest)."""
MAX_GAPS = 32
"""The most stretches read from the points: beyond, one read of the whole range is cheaper."""

Slot = tuple[int, int, Any]
"""(slot start, points, the slot function's value)."""


class Plan:
    """The read of the range [`start`, `end`] (epoch ms, both included) in rollup slots."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.first_slot = -(-start // ROLLUP_SLOT) * ROLLUP_SLOT
        """The start of the first slot wholly in the range."""
        self.stop = (end + 1) // ROLLUP_SLOT * ROLLUP_SLOT
        """The end (excluded) of the last slot wholly in the range."""
        self.last_slot = self.stop - ROLLUP_SLOT
        self.whole_days: tuple[int, int] | None = None
        """The first and last day holding whole slots of the range, None when it has none."""
        if self.first_slot < self.stop:
            self.whole_days = (self.first_slot // ROLLUP_DAY, (self.stop - 1) // ROLLUP_DAY)
        self.marked: set[int] = set()

    def split(self, rows: Sequence[Sequence[Any]]) -> tuple[list[Slot], list[tuple[int, int]]]:
        """Given the rollup read (`sql.Statements.rollup`): the slots of the marked days, and
        the stretches of the range to read from the points (both bounds included), each
        starting and ending on a slot boundary but at the range's two ends."""
        self.marked = {row[1] for row in rows if row[0] == 0}
        gaps = self._gaps()
        if len(gaps) > MAX_GAPS:
            return [], [(self.start, self.end)]
        slots = [
            (row[1], row[2], row[3])
            for row in rows
            if row[0] == 1 and row[1] // ROLLUP_DAY in self.marked
        ]
        return slots, gaps

    def _gaps(self) -> list[tuple[int, int]]:
        gaps = []
        low = self.start
        for day in sorted(self.marked):
            covered = max(day * ROLLUP_DAY, self.first_slot)
            if covered > low:
                gaps.append((low, covered - 1))
            low = min((day + 1) * ROLLUP_DAY, self.stop)
        if low <= self.end:
            gaps.append((low, self.end))
        return gaps

    def to_fill(self, fresh: Sequence[Slot], now: int) -> list[tuple[int, int]]:
        """The spans of days (first, last) to roll up after the points of `fresh` slots were
        read: from the first to the last settled day holding whole slots of the range whose
        points were read, the days not marked, at most `FILL_DAYS` a span and
        `FILLS_PER_READ` spans, oldest first."""
        if self.whole_days is None:
            return []
        settled = (now - ROLLUP_SETTLED) // ROLLUP_DAY  # the first day not yet settled
        low, high = self.whole_days
        read = [
            day
            for day in {start // ROLLUP_DAY for start, _, _ in fresh}
            if low <= day <= high and day < settled and day not in self.marked
        ]
        if not read:
            return []
        spans: list[tuple[int, int]] = []
        first: int | None = None
        day, last = min(read), max(read)
        while day <= last and len(spans) < FILLS_PER_READ:
            if day in self.marked:
                if first is not None:
                    spans.append((first, day - 1))
                first = None
            else:
                first = day if first is None else first
                if day - first + 1 == FILL_DAYS:
                    spans.append((first, day))
                    first = None
            day += 1
        if first is not None and len(spans) < FILLS_PER_READ:
            spans.append((first, last))
        return spans
