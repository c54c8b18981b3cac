"""The webhook outbox and delivery log, the same tests on every backend (`Store.claim_deliveries`
and friends). Timestamps are fixed numbers: nothing here depends on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from helpers import fresh_store, second_store
from pinbase.store import Store
from pinbase.store.records import DeliveryRow, Entities, OrgRow, ValueWrites, WebhookRow

NOW = 1_700_000_000_000
HOOK = WebhookRow(
    7, 1, "hook", "DEVICE_DATASTREAM_UPDATE", "http://h.test/{device_id}", "POST", "JSON",
    None, "s3cret", "user", "pw", "[1]",
)  # fmt: skip


def _run(backend: str, tmp_path: Path, body: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        async with fresh_store(backend, tmp_path) as store:
            await store.upsert_entities(
                Entities(organizations=[OrgRow(1, "Acme")], webhooks=[HOOK])
            )
            await body(store)

    asyncio.run(main())


def test_webhooks_round_trip_every_column(backend: str, tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        assert await store.webhooks() == [HOOK]
        assert (await store.entities()).webhooks == [HOOK]

    _run(backend, tmp_path, body)


def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(
    backend: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        await store.enqueue_deliveries([(7, '{"a": "1"}', NOW), (7, "{}", NOW + 1000)])
        (row,) = await store.claim_deliveries(NOW, NOW + 500, 10)
        assert (row.webhook_id, row.context, row.attempts) == (7, '{"a": "1"}', 0)
        assert await store.claim_deliveries(NOW + 499, NOW + 1000, 10) == []  # leased; not due
        (again,) = await store.claim_deliveries(NOW + 500, NOW + 900, 1)  # the lease ran out
        assert again.id == row.id
        assert await store.pending_deliveries(7) == 2

    _run(backend, tmp_path, body)


def test_settling_logs_the_attempt_and_retries_or_forgets_the_row(
    backend: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        await store.enqueue_deliveries([(7, "{}", NOW)])
        (row,) = await store.claim_deliveries(NOW, NOW + 10_000, 10)
        failed = DeliveryRow(0, 7, row.id, 1, NOW, 503, "retrying", "HTTP 503")
        await store.settle_delivery(row.id, failed, retry_at=NOW + 2000)
        assert await store.claim_deliveries(NOW + 1999, NOW + 10_000, 10) == []
        (retried,) = await store.claim_deliveries(NOW + 2000, NOW + 10_000, 10)
        assert (retried.id, retried.attempts) == (row.id, 1)
        done = DeliveryRow(0, 7, row.id, 2, NOW + 2000, 200, "delivered", "HTTP 200")
        await store.settle_delivery(row.id, done)
        assert await store.pending_deliveries(7) == 0
        log = await store.delivery_log(7, 10)
        assert [(e.attempt, e.status, e.outcome) for e in log] == [
            (2, 200, "delivered"),
            (1, 503, "retrying"),
        ]
        await store.drop_deliveries_before(NOW + 1)
        assert [e.attempt for e in await store.delivery_log(7, 10)] == [2]

    _run(backend, tmp_path, body)


def test_a_value_write_adds_its_outbox_rows_in_its_transaction(
    backend: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        writes = ValueWrites(outbox=[(7, '{"v": "1"}', NOW), (7, '{"v": "2"}', NOW)])
        await store.write_values(writes)
        rows = await store.claim_deliveries(NOW, NOW + 1, 10)
        assert [r.context for r in rows] == ['{"v": "1"}', '{"v": "2"}']

    _run(backend, tmp_path, body)


def test_two_claimers_never_get_the_same_row(backend: str, tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await store.enqueue_deliveries([(7, str(n), NOW) for n in range(200)])
        other = second_store(store)  # another process on the same database
        await other.open()
        try:
            claimers = [store, other] * 4
            got = await asyncio.gather(
                *(c.claim_deliveries(NOW, NOW + 60_000, 7) for _ in range(5) for c in claimers)
            )
        finally:
            await other.close()
        ids = [row.id for rows in got for row in rows]
        assert len(ids) == len(set(ids)) == 200

    _run(backend, tmp_path, body)
