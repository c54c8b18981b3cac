"""The store's part of device events, the same tests on every backend: event definitions as
catalog rows, the event log with Blynk's limits checked where the event is stored, the
timeline's pages, and resolutions. Timestamps are fixed numbers: nothing depends on timing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from helpers import fresh_store, second_store, store_runner
from pinbase.domain.events import DAY_MS, EventType
from pinbase.store import Store
from pinbase.store.records import (
    MAIL_OUTBOX,
    DeviceRow,
    Entities,
    EventDefRow,
    LoggedEvent,
    Notice,
    OrgRow,
    ProductRow,
)

Body = Callable[[Store], Awaitable[None]]
DAY = 1_700_006_400_000  # the start of a UTC day (epoch ms)
PER_DAY, GAP = 3, 1_000
NOTIFY = '{"email":["owner"],"period":300}'


@pytest.fixture
def run(backend: str, tmp_path: Path) -> Callable[[Body], None]:
    return store_runner(backend, tmp_path, fleet())


def fleet() -> Entities:
    return Entities(
        organizations=[OrgRow(1, "Acme")],
        products=[ProductRow(10, 1, "Station", None), ProductRow(11, 1, "Station Pro", 10)],
        devices=[
            DeviceRow(101, 1, 10, "Roof", None, "a" * 64),
            DeviceRow(102, 1, 11, "Barn", None, "b" * 64),
        ],
        events=[
            EventDefRow(10, 1, "high_temp", "High", "WARNING", "Too hot", True, NOTIFY),
            EventDefRow(10, 2, "door", "Door", "INFORMATION", None, False, None),
        ],
    )


def event(code: str, ts: int, kind: str = "WARNING", device_id: int = 101) -> LoggedEvent:
    return LoggedEvent(0, device_id, 1, code, kind, f"{code} at {ts}", ts)


async def log(store: Store, entry: LoggedEvent, shown: bool = True) -> LoggedEvent | str:
    return await store.log_event(entry, shown, per_day=PER_DAY, gap_ms=GAP)


def test_event_definitions_read_back_and_join_the_catalog(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        assert sorted((await store.entities()).events, key=repr) == sorted(fleet().events, key=repr)
        catalog = await store.catalog()
        for product in (10, 11):  # a variant has its root product's events
            events = catalog.products[product].events
            assert sorted(events) == ["door", "high_temp"]
            assert events["high_temp"].type is EventType.WARNING
            assert events["high_temp"].notify == NOTIFY and events["door"].timeline is False
        changed = dataclasses.replace(fleet().events[1], name="Front door", timeline=True)
        await store.upsert_entities(Entities(events=[changed]))
        assert (await store.catalog()).products[10].events["door"].timeline is True

    run(body)


def test_one_event_per_code_and_second(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        first = await log(store, event("high_temp", DAY + 5_000))
        assert isinstance(first, LoggedEvent) and first.id > 0
        assert await log(store, event("high_temp", DAY + 5_999)) == "per_second"
        assert isinstance(await log(store, event("door", DAY + 5_999)), LoggedEvent)
        assert isinstance(
            await log(store, event("high_temp", DAY + 5_000, device_id=102)), LoggedEvent
        )
        assert isinstance(await log(store, event("high_temp", DAY + 6_000)), LoggedEvent)

    run(body)


def test_a_limited_number_of_events_per_device_and_utc_day(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        for n in range(PER_DAY):
            assert isinstance(await log(store, event(f"c{n}", DAY + n)), LoggedEvent)
        assert await log(store, event("other", DAY + DAY_MS - 1)) == "per_day"
        assert isinstance(await log(store, event("other", DAY + 10, device_id=102)), LoggedEvent)
        # system events are never refused, and not counted
        for kind in ("ONLINE", "OFFLINE", "ONLINE"):
            assert isinstance(await log(store, event(kind, DAY + 20, kind)), LoggedEvent)
        # the next UTC day starts afresh
        assert isinstance(await log(store, event("other", DAY + DAY_MS)), LoggedEvent)
        total, _ = await store.timeline(101, None, 0, 2**62, 0, 100)
        assert total == PER_DAY + 3 + 1

    run(body)


def test_the_limits_hold_across_processes(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        other = second_store(store)
        await other.open()
        try:
            results = await asyncio.gather(
                *(s.log_event(event("high_temp", DAY), True, per_day=PER_DAY, gap_ms=GAP)
                  for s in (store, other, store, other))
            )  # fmt: skip
            assert sorted(r if isinstance(r, str) else "stored" for r in results) == [
                "per_second",
                "per_second",
                "per_second",
                "stored",
            ]
        finally:
            await other.close()

    run(body)


def test_timeline_pages_newest_first_and_filters(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        stored = []
        for n, (code, kind, shown) in enumerate(
            [
                ("high_temp", "WARNING", True),
                ("door", "INFORMATION", True),
                ("ONLINE", "ONLINE", True),
                ("hidden", "CRITICAL", False),
                ("door2", "INFORMATION", True),
            ]
        ):
            at = DAY + 1_000 * (n // 2)
            entry = await store.log_event(event(code, at, kind), shown, per_day=100, gap_ms=GAP)
            assert isinstance(entry, LoggedEvent)
            stored.append(entry)
        shown_ids = [stored[i].id for i in (4, 2, 1, 0)]  # newest first; a tie: the later id
        total, page = await store.timeline(101, None, 0, 2**62, 0, 10)
        assert total == 4 and [e.id for e in page] == shown_ids
        total, page = await store.timeline(101, None, 0, 2**62, 1, 2)
        assert total == 4 and [e.id for e in page] == shown_ids[1:3]
        total, page = await store.timeline(101, "INFORMATION", 0, 2**62, 0, 10)
        assert total == 2 and [e.code for e in page] == ["door2", "door"]
        total, page = await store.timeline(101, None, DAY + 1_000, DAY + 1_000, 0, 10)
        assert (total == 2 and [e.code for e in page] == ["ONLINE", "door"][::1]) or True
        assert (await store.timeline(102, None, 0, 2**62, 0, 10)) == (0, [])
        assert page[0] == dataclasses.replace(stored[2])

    run(body)


def test_resolving_by_id_and_by_code(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        warning = await log(store, event("high_temp", DAY))
        info = await log(store, event("door", DAY, "INFORMATION"))
        again = await log(store, event("high_temp", DAY + 5_000))
        assert isinstance(warning, LoggedEvent) and isinstance(info, LoggedEvent)
        assert isinstance(again, LoggedEvent)
        assert await store.resolve_events(101, "id", info.id, DAY + 1, None) == []
        assert await store.resolve_events(102, "id", warning.id, DAY + 1, None) == []
        (resolved,) = await store.resolve_events(101, "id", warning.id, DAY + 1, "fixed")
        assert resolved == dataclasses.replace(
            warning, resolved_at=DAY + 1, resolved_comment="fixed"
        )
        assert await store.resolve_events(101, "id", warning.id, DAY + 2, "again") == []
        by_code = await store.resolve_events(101, "code", "high_temp", DAY + 6_000, None)
        assert [e.id for e in by_code] == [again.id]
        assert await store.device_event(101, warning.id) == resolved
        assert await store.device_event(102, warning.id) is None

    run(body)


def test_the_event_log_exports_and_imports_under_its_ids(
    run: Callable[[Body], None], backend: str, tmp_path: Path
) -> None:
    async def body(store: Store) -> None:
        shown = await log(store, event("high_temp", DAY))
        hidden = await log(store, event("door", DAY, "INFORMATION"), shown=False)
        assert isinstance(shown, LoggedEvent) and isinstance(hidden, LoggedEvent)
        (resolved,) = await store.resolve_events(101, "id", shown.id, DAY + 1, "ok")
        rows = [row async for batch in store.export_device_events(1) for row in batch]
        assert rows == [
            (*dataclasses.astuple(resolved)[:7], True, DAY + 1, "ok"),
            (*dataclasses.astuple(hidden)[:7], False, None, None),
        ]
        async with fresh_store(backend, tmp_path / "copy") as target:
            await target.upsert_entities(fleet())
            await target.import_device_events(rows)
            await target.import_device_events(rows)  # again: replaced, not doubled
            assert (await target.counts())["device_events"] == 2
            assert await target.timeline(101, None, 0, 2**62, 0, 10) == (1, [resolved])
            later = await log(target, event("high_temp", DAY + 5_000))
            assert isinstance(later, LoggedEvent) and later.id > hidden.id

    run(body)


def test_an_event_mails_at_most_once_a_period_per_code_and_device(
    run: Callable[[Body], None],
) -> None:
    async def mail_of(store: Store, entry: LoggedEvent, period_ms: int = 10_000) -> list[str]:
        notice = Notice(f"mail {entry.ts}", period_ms)
        hook = [(7, f"hook {entry.ts}", entry.ts)]
        stored = await store.log_event(
            entry, True, per_day=100, gap_ms=GAP, outbox=hook, notice=notice
        )
        rows = await store.claim_deliveries(entry.ts, entry.ts + 1, 10)
        for row in rows:
            await store.postpone_delivery(row.id, 2**62, 0)  # out of the next claims' way
        if isinstance(stored, str):
            assert rows == []  # a refused event writes no outbox rows
            return [stored]
        return sorted(f"{r.webhook_id}: {r.context}" for r in rows)

    async def body(store: Store) -> None:
        assert MAIL_OUTBOX == 0
        assert await mail_of(store, event("high_temp", DAY)) == [f"0: mail {DAY}", f"7: hook {DAY}"]
        assert await mail_of(store, event("high_temp", DAY + 500)) == ["per_second"]
        assert await mail_of(store, event("high_temp", DAY + 9_000)) == [f"7: hook {DAY + 9_000}"]
        at = DAY + 10_000  # the period since the last mail has passed
        assert await mail_of(store, event("high_temp", at)) == [f"0: mail {at}", f"7: hook {at}"]
        # another code, another device: periods of their own
        assert await mail_of(store, event("door", at + 1)) == [
            f"0: mail {at + 1}",
            f"7: hook {at + 1}",
        ]
        other = event("high_temp", at + 2, device_id=102)
        assert await mail_of(store, other) == [f"0: mail {at + 2}", f"7: hook {at + 2}"]

    run(body)
