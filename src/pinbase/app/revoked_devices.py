"""Device connections whose token was revoked are closed, in every server process.

A device token changes in the catalog (`pinbase device token --rotate`, `pinbase apply` with a
new token, a deleted device), which bumps the catalog generation in the database. Each process
follows its catalog (PostgreSQL notifies it at once; SQLite's cache re-reads the generation at
most every quarter second) and, whenever the generation moves, closes the connections of its
own whose token no longer opens their device (`Presence.close_revoked`). New logins with the
old token are refused as soon as the process's catalog has moved.
"""

from __future__ import annotations

import asyncio
import logging

from pinbase.live.presence import Presence
from pinbase.store.base import Store, StoreError

log = logging.getLogger(__name__)

INTERVAL_S = 0.25
"""Seconds between two looks at the catalog: a revoked connection lives at most about this
long after the process's catalog moved."""


async def close_revoked_devices(store: Store, presence: Presence) -> None:
    """Run for as long as the task does: close revoked device connections on catalog changes.

    It reads the committed generation (`Store.generation`), not the cached catalog's: a look
    at the catalog would restart its cache's re-check interval, and delay by that much the
    moment a request sees another process's revocation."""
    seen = (await store.catalog()).generation
    while True:
        await asyncio.sleep(INTERVAL_S)
        try:
            if await store.generation() == seen:
                continue
            catalog = await store.catalog()
        except StoreError:
            continue  # the store's health reports it; the next look tries again
        if catalog.generation != seen:  # else the cache has not followed yet: the next look
            seen = catalog.generation
            if presence.connected_count:
                presence.close_revoked(catalog.device_tokens)
