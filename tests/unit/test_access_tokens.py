"""The access-token cache in front of the store: hits, expiry, revalidation, eviction, and no
cached token outliving a revocation (a catalog generation change, a forgotten family)."""

from __future__ import annotations

import asyncio

from pinbase.app.auth.access_tokens import MAX_ENTRIES, REVALIDATE_S, AccessTokens
from pinbase.store.records import TokenRow


def token(hash_: str, family: str = "f", expires_at: int = 10_000) -> TokenRow:
    return TokenRow(hash_, "access", "client", 1, None, family, expires_at)


class FakeStore:
    """Only what AccessTokens asks of a store; counts the lookups."""

    def __init__(self, *rows: TokenRow) -> None:
        self.rows = {row.hash: row for row in rows}
        self.lookups = 0

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        self.lookups += 1
        row = self.rows.get(token_hash)
        return row if row is not None and row.expires_at > now else None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache(store: FakeStore, clock: Clock) -> AccessTokens:
    return AccessTokens(store, clock)  # type: ignore[arg-type]


def find(tokens: AccessTokens, hash_: str, now_ms: int = 0, generation: int = 1) -> TokenRow | None:
    return asyncio.run(tokens.find(hash_, now_ms, generation))


def test_a_verified_token_is_served_from_the_cache_until_revalidation() -> None:
    store, clock = FakeStore(token("a")), Clock()
    tokens = cache(store, clock)
    assert find(tokens, "a") == token("a")
    clock.now += REVALIDATE_S - 0.01
    assert find(tokens, "a") == token("a")
    assert store.lookups == 1
    clock.now += 0.02
    assert find(tokens, "a") == token("a")
    assert store.lookups == 2


def test_expiry_is_checked_on_every_use_even_when_cached() -> None:
    store, clock = FakeStore(token("a", expires_at=5_000)), Clock()
    tokens = cache(store, clock)
    assert find(tokens, "a", now_ms=4_999) is not None
    assert find(tokens, "a", now_ms=5_000) is None
    assert store.lookups == 1


def test_a_revoked_token_is_seen_at_the_next_revalidation() -> None:
    store, clock = FakeStore(token("a")), Clock()
    tokens = cache(store, clock)
    assert find(tokens, "a") is not None
    del store.rows["a"]  # revoked by another process
    assert find(tokens, "a") is not None
    clock.now += REVALIDATE_S
    assert find(tokens, "a") is None
    assert find(tokens, "a") is None
    assert store.lookups == 3, "an unknown token is never cached"


def test_forgetting_a_family_evicts_every_token_of_it_at_once() -> None:
    store, clock = FakeStore(token("a", "f1"), token("b", "f1"), token("c", "f2")), Clock()
    tokens = cache(store, clock)
    for name in "abc":
        find(tokens, name)
    del store.rows["a"], store.rows["b"]
    tokens.forget("f1")
    assert find(tokens, "a") is None
    assert find(tokens, "b") is None
    assert find(tokens, "c") is not None
    assert store.lookups == 5


def test_the_cache_is_bounded() -> None:
    rows = [token(str(n)) for n in range(MAX_ENTRIES + 1)]
    store, clock = FakeStore(*rows), Clock()
    tokens = cache(store, clock)

    async def fill() -> None:
        for row in rows:
            await tokens.find(row.hash, 0, 1)

    asyncio.run(fill())
    assert len(tokens._cache) <= MAX_ENTRIES


def test_a_new_catalog_generation_revalidates_every_cached_token_at_once() -> None:
    store, clock = FakeStore(token("a"), token("b")), Clock()
    tokens = cache(store, clock)
    assert find(tokens, "a", generation=7) is not None
    assert find(tokens, "b", generation=7) is not None
    del store.rows["a"]  # revoked with its user, in the transaction that bumped the generation
    assert find(tokens, "a", generation=7) is not None, "the old catalog: as before"
    assert find(tokens, "a", generation=8) is None  # no time passed on the clock
    assert find(tokens, "b", generation=8) is not None
    assert store.lookups == 4
    assert find(tokens, "b", generation=8) is not None
    assert store.lookups == 4, "verified at the new generation: cached again"


def test_forgetting_everything_evicts_every_family() -> None:
    store, clock = FakeStore(token("a", "f1"), token("b", "f2")), Clock()
    tokens = cache(store, clock)
    find(tokens, "a")
    find(tokens, "b")
    store.rows.clear()
    tokens.forget(None)  # e.g. the notifications were down: anything may have been revoked
    assert find(tokens, "a") is None
    assert find(tokens, "b") is None


class SlowStore(FakeStore):
    """A lookup that waits until the test lets it answer."""

    def __init__(self, *rows: TokenRow) -> None:
        super().__init__(*rows)
        self.release = asyncio.Event()

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        found = await super().access_token(token_hash, now)
        await self.release.wait()
        return found


def test_a_lookup_under_way_when_a_family_is_forgotten_is_not_cached() -> None:
    async def main() -> None:
        store, clock = SlowStore(token("a", "f1")), Clock()
        tokens = AccessTokens(store, clock)  # type: ignore[arg-type]
        lookup = asyncio.create_task(tokens.find("a", 0, 1))
        await asyncio.sleep(0)  # the store has read the token, still valid
        del store.rows["a"]
        tokens.forget("f1")  # the revocation arrives before the answer
        store.release.set()
        assert await lookup is not None  # it began before the revocation
        assert await tokens.find("a", 0, 1) is None  # but was not remembered
        assert store.lookups == 2

    asyncio.run(main())
