"""Aggregation buckets of local time: which bucket an instant falls in, and when a bucket starts.

Pure: the zone comes as a `tzinfo`, instants as epoch milliseconds. A bucket is an interval of
the zone's wall clock, `[key, key + width)`: a minute-grid interval (`1m`, `5m`, `15m`, `1h`,
aligned to the local clock, so an hour in Asia/Kolkata starts at :30 UTC), a local day, a week
starting on Monday, or a calendar month. It holds every instant whose local time falls in it,
so buckets follow daylight saving: a day across a change lasts 23 or 25 hours, and the hour
repeated when clocks go back is one bucket of two hours. A bucket's start is the first instant
whose local time falls in it (when its first local times are skipped by a change forward, the
instant of that change).

Keys are local times written as milliseconds since 1970-01-01 00:00 of the local clock.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, tzinfo

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_EPOCH_DATE = _EPOCH.date()

EARLIEST = (datetime(1, 3, 1, tzinfo=UTC) - _EPOCH_UTC) // timedelta(milliseconds=1)
LATEST = (datetime(9999, 11, 1, tzinfo=UTC) - _EPOCH_UTC) // timedelta(milliseconds=1)
"""The instants local time is computed for: a bucket of any of them, in any zone, starts and
ends within what `datetime` represents."""


class Interval(enum.StrEnum):
    MINUTE = "1m"
    MINUTES_5 = "5m"
    MINUTES_15 = "15m"
    HOUR = "1h"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


GRID = {
    Interval.MINUTE: MINUTE,
    Interval.MINUTES_5: 5 * MINUTE,
    Interval.MINUTES_15: 15 * MINUTE,
    Interval.HOUR: HOUR,
    Interval.DAY: DAY,
}
"""The width of each interval keyed on a fixed grid of the local clock."""

NOMINAL = {**GRID, Interval.WEEK: 7 * DAY, Interval.MONTH: 30 * DAY}
"""Each interval's usual length, for estimating how many buckets a range holds."""


def offset(zone: tzinfo, ts: int) -> int:
    """The zone's offset from UTC at instant `ts`, in milliseconds (offsets change on whole
    seconds, so the second holding `ts` tells)."""
    delta = datetime.fromtimestamp(ts // 1000, zone).utcoffset()
    return 0 if delta is None else delta // timedelta(milliseconds=1)


def local(zone: tzinfo, ts: int) -> int:
    """The local time at instant `ts` (ms since the local clock's 1970-01-01 00:00)."""
    return ts + offset(zone, ts)


def key_of(interval: Interval, local_ms: int) -> int:
    """The key (first local time) of the bucket holding local time `local_ms`."""
    width = GRID.get(interval)
    if width is not None:
        return local_ms - local_ms % width
    days = local_ms // DAY
    if interval is Interval.WEEK:
        return (days - (days + 3) % 7) * DAY  # 1970-01-01 was a Thursday
    first = (_EPOCH_DATE + timedelta(days=days)).replace(day=1)
    return (first - _EPOCH_DATE).days * DAY


def _instant(zone: tzinfo, local_ms: int, fold: int) -> int:
    moment = (_EPOCH + timedelta(milliseconds=local_ms)).replace(tzinfo=zone, fold=fold)
    return (moment - _EPOCH_UTC) // timedelta(milliseconds=1)


def start_of(zone: tzinfo, key: int) -> int:
    """The first instant whose local time is `key` or later, in the bucket keyed `key`: the
    first of two when clocks went back over it, the change forward when they skipped it."""
    first = _instant(zone, key, 0)
    if local(zone, first) == key:
        return first
    # skipped: the change lies between the instants the offsets after and before it give
    low, high = _instant(zone, key, 1), first
    while low < high:
        middle = (low + high) // 2
        if local(zone, middle) >= key:
            high = middle
        else:
            low = middle + 1
    return low


class Buckets:
    """The buckets of one interval in one zone."""

    def __init__(self, interval: Interval, zone: tzinfo) -> None:
        self.interval = interval
        self.zone = zone

    def key(self, ts: int) -> int:
        """The key of the bucket holding instant `ts`."""
        return key_of(self.interval, local(self.zone, ts))

    def start(self, key: int) -> int:
        """When the bucket keyed `key` starts (epoch ms)."""
        return start_of(self.zone, key)

    def estimate(self, start: int, end: int) -> int:
        """About how many buckets the instants `start` to `end` span."""
        return (end - start) // NOMINAL[self.interval] + 1
