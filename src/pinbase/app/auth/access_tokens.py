"""Access-token lookups with a small cache in front of the store.

Every Organization API request presents a token; looking it up in the store each time costs
more than the rest of a read. Verified tokens are remembered for at most `REVALIDATE_S` seconds
(their expiry is still checked on every use), and never past a revocation:

- Revocations by user or client (a password, role or client secret changed; a user or client
  deleted) commit in the same transaction as a catalog generation bump (`Store.revoke_tokens`).
  Each cached token carries the generation of the catalog the request was judged against when
  the token was looked up, and is used again only while the catalog is at that generation. So
  a process stops honouring such a token the moment it sees the new catalog, which it must see
  anyway to judge requests by the new passwords and roles: the cache adds no delay of its own.
  (PostgreSQL notifies catalog changes in their transaction; SQLite's catalog is re-checked
  every quarter second, or at once after a change made through the same process.)
  Chosen over carrying each revocation on the relay: the generation bump is in the revoking
  transaction itself, so no message can be lost between the commit and a crash, nor overtaken.
- A family revoked by refresh-token reuse is evicted at once in the revoking process, and in
  the others when the store tells them (`Store.watch_revocations`: PostgreSQL notifies in the
  revoking transaction). A lookup that was under way when a family was forgotten is not cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pinbase.store.base import Store
from pinbase.store.records import TokenRow

REVALIDATE_S = 5.0
MAX_ENTRIES = 50_000


@dataclass(frozen=True, slots=True)
class _Verified:
    token: TokenRow
    at: float  # clock when the store confirmed it
    generation: int  # of the catalog when it was looked up


class AccessTokens:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, _Verified] = {}
        self._families: dict[str, set[str]] = {}
        self._forgotten = 0  # how many times a family (or everything) was forgotten

    async def find(self, token_hash: str, now_ms: int, generation: int) -> TokenRow | None:
        """The valid access token with this hash, or None; `generation` is that of the catalog
        the request is judged against."""
        cached = self._cache.get(token_hash)
        clock = self._clock()
        if (
            cached is not None
            and cached.generation == generation
            and clock - cached.at < REVALIDATE_S
        ):
            return cached.token if cached.token.expires_at > now_ms else None
        forgotten = self._forgotten
        found = await self._store.access_token(token_hash, now_ms)
        if found is None:
            self._drop(token_hash)
            return None
        if forgotten == self._forgotten:  # no revocation arrived while the store was asked
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
                self._families.clear()
            self._drop(token_hash)
            self._cache[token_hash] = _Verified(found, clock, generation)
            self._families.setdefault(found.family, set()).add(token_hash)
        return found

    def forget(self, family: str | None) -> None:
        """Drop every cached token of a revoked family; None: of every family."""
        self._forgotten += 1
        if family is None:
            self._cache.clear()
            self._families.clear()
            return
        for token_hash in self._families.pop(family, ()):
            self._cache.pop(token_hash, None)

    def _drop(self, token_hash: str) -> None:
        dropped = self._cache.pop(token_hash, None)
        if dropped is not None:
            hashes = self._families.get(dropped.token.family)
            if hashes is not None:
                hashes.discard(token_hash)
                if not hashes:
                    del self._families[dropped.token.family]
