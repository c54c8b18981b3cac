"""Wall-clock time as pinbase counts it (epoch milliseconds), and the timestamp rules.

Every timestamp pinbase stores or compares is an integer count of milliseconds since the Unix
epoch, taken from this one function.
"""

from __future__ import annotations

import time

DAY_MS = 86_400_000

FUTURE_LIMIT_MS = 31 * DAY_MS
"""Imported points stamped further than this in the future are skipped (Blynk: "more than one
month in the future"). Older points are kept, however old: imported history is never dropped
for its age (retention decides what is kept)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def importable(ts: int, now: int) -> bool:
    """Whether a point stamped `ts` is stored by an import made at `now` (both epoch ms)."""
    return ts <= now + FUTURE_LIMIT_MS
