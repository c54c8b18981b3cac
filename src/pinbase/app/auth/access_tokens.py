"""Access-token lookups with a small cache in front of the store.

Every Organization API request presents a token; looking it up in the store each time costs
more than the rest of a read. Verified tokens are remembered for `REVALIDATE_S` seconds (their
expiry is still checked on every use). A revocation made by this process evicts the family at
once; one made by another process sharing the database is seen within `REVALIDATE_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pinbase.store.base import Store
from pinbase.store.records import TokenRow

REVALIDATE_S = 5.0
MAX_ENTRIES = 50_000


class AccessTokens:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, tuple[TokenRow, float]] = {}

    async def find(self, token_hash: str, now_ms: int) -> TokenRow | None:
        """The valid access token with this hash, or None."""
        cached = self._cache.get(token_hash)
        clock = self._clock()
        if cached is not None and clock - cached[1] < REVALIDATE_S:
            known = cached[0]
            return known if known.expires_at > now_ms else None
        found = await self._store.access_token(token_hash, now_ms)
        if found is None:
            self._cache.pop(token_hash, None)
            return None
        if len(self._cache) >= MAX_ENTRIES:
            self._cache.clear()
        self._cache[token_hash] = (found, clock)
        return found

    def forget_family(self, family: str) -> None:
        """Drop every cached token of a revoked family."""
        for key in [k for k, (t, _) in self._cache.items() if t.family == family]:
            del self._cache[key]
