"""History paging shared by every backend: counting by bucket and skipping whole buckets.

Backends keep, per series, the number of points in each bucket of 2**BUCKET_SHIFT ms (about 70
minutes; see `sql`). A range [start, end] is cut into pieces: the partial buckets at both ends
(counted in the index) and the whole buckets between them (counted from the bucket table), all
read by one statement (`sql.Statements.history_pieces`). The total is their sum, and a deep page
skips whole pieces instead of walking an OFFSET through them.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Sequence

from pinbase.store.sql import BUCKET_SHIFT

Piece = tuple[int, int, int]
"""(low ts, high ts, points), inclusive bounds."""
HistoryRow = tuple[int, int, int, str]
"""A history point as an export reads it: (ts, ds_id, seq, JSON value)."""


def piece_params(device_id: int, ds_id: int, start: int, end: int) -> tuple[int, ...]:
    """The parameters of the pieces statement: the series, the head range, the whole buckets
    strictly between (first, last), and the tail range. A short range is all head."""
    first, last = start >> BUCKET_SHIFT, end >> BUCKET_SHIFT
    if last - first < 2:
        return device_id, ds_id, start, end, 0, 0, end + 1, end
    head_end = ((first + 1) << BUCKET_SHIFT) - 1
    tail_start = last << BUCKET_SHIFT
    return device_id, ds_id, start, head_end, first, last, tail_start, end


def page_window(
    pieces: Sequence[Piece], start: int, end: int, offset: int, ascending: bool
) -> tuple[int, int, int]:
    """Narrow [start, end] and the offset by skipping whole pieces before the page."""
    remaining = offset
    for low, high, points in pieces if ascending else reversed(pieces):
        if remaining < points:
            return (low, end, remaining) if ascending else (start, high, remaining)
        remaining -= points
    return start, end, offset  # past the last point: an empty page


async def merged(
    sources: Sequence[AsyncIterator[list[HistoryRow]]],
) -> AsyncIterator[list[HistoryRow]]:
    """The rows of several sorted sources in one sorted order, batch by batch.

    Each source yields non-empty sorted lists of distinct rows. A round hands out every row up
    to the horizon, the smallest last row any unfinished source holds (no row still to come can
    sort before it), and refills the sources it emptied; the one that set the horizon is always
    emptied, so each round advances. Memory: about one batch per source."""
    pending: list[list[HistoryRow]] = [[] for _ in sources]
    unfinished = set(range(len(sources)))

    async def refill(i: int) -> None:
        try:
            pending[i] = await anext(sources[i])
        except StopAsyncIteration:
            unfinished.discard(i)

    for i in range(len(sources)):
        await refill(i)
    while any(pending):
        horizon = min((pending[i][-1] for i in unfinished), default=None)
        out: list[HistoryRow] = []
        for i, rows in enumerate(pending):
            cut = len(rows) if horizon is None else bisect.bisect_right(rows, horizon)
            out += rows[:cut]
            pending[i] = rows[cut:]
        out.sort()  # sorted runs, one per source: a linear merge for timsort
        yield out
        for i in sorted(unfinished):
            if not pending[i]:
                await refill(i)
