"""History retention: points older than the configured number of days are dropped."""

from __future__ import annotations

import asyncio
import logging

from pinbase.domain.clock import DAY_MS, now_ms
from pinbase.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

INTERVAL_S = 3600.0


async def enforce_retention(store: Store, days: int) -> None:
    """Drop expired history now and every hour, for as long as the task runs (0 days: keep)."""
    if not days:
        return
    while True:
        try:
            await store.drop_history_before(now_ms() - days * DAY_MS)
        except StoreUnavailable:
            log.warning("retention skipped: the database is unavailable")
        await asyncio.sleep(INTERVAL_S)
