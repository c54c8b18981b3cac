"""The store's part of the Platform API's devices, the same tests on every backend: a new
device inserted (never over another), renamed and given a new token without being re-created,
deleted with everything stored of it, cleared of its data only, and the hardware info and last
updates read for some devices. Timestamps are fixed numbers: nothing depends on timing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from helpers import second_store, store_runner
from pinbase.store import Conflict, Store
from pinbase.store.records import (
    DeviceRow,
    Entities,
    LoggedEvent,
    MetafieldRow,
    MetaValueRow,
    OrgRow,
    ProductRow,
    ValueWrites,
    WebhookRow,
)

Body = Callable[[Store], Awaitable[None]]
T0 = 1_700_000_000_000


@pytest.fixture
def run(backend: str, tmp_path: Path) -> Callable[[Body], None]:
    return store_runner(backend, tmp_path, fleet())


def fleet() -> Entities:
    hook = WebhookRow(
        7, 1, "Added", "DEVICE_ADDED", "http://127.0.0.1:9/", "POST", "application/json",
        None, None, None, None, None,
    )  # fmt: skip
    return Entities(
        organizations=[OrgRow(1, "Acme")],
        products=[ProductRow(10, 1, "Station", None)],
        devices=[
            DeviceRow(101, 1, 10, "Roof", None, "a" * 64, None, T0),
            DeviceRow(102, 1, 10, "Barn", None, "b" * 64),
        ],
        metafields=[MetafieldRow(10, 1, "Site", "text", None, None, None, None)],
        meta_values=[MetaValueRow(101, 1, "North"), MetaValueRow(102, 1, "South")],
        webhooks=[hook],
    )


async def data_of(store: Store, device_id: int) -> tuple[int, int, int, int]:
    """(current values, history points, properties, metadata values) of a device."""
    current = len((await store.current_values([device_id]))[device_id])
    points, _ = await store.history(device_id, 1, 0, 2**62, 0, 10, True)
    props = sum(len(p) for p in (await store.properties(device_id)).values())
    return current, points, props, len(await store.meta_values(device_id))


async def fill(store: Store, device_id: int) -> None:
    writes = ValueWrites(
        current=[(device_id, 1, "21.5", T0 + 2)],
        history=[(device_id, 1, T0 + 1, 0, "20.5"), (device_id, 1, T0 + 2, 0, "21.5")],
    )
    await store.write_values(writes)
    await store.set_property(device_id, 1, "color", "#FF0000")


def test_a_device_is_inserted_with_its_outbox_and_never_over_another(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        assert await store.next_device_id() == 103
        before = (await store.catalog()).generation
        row = DeviceRow(103, 1, 10, "New", None, "c" * 64, None, T0 + 5)
        context = '{"trigger":"DEVICE_ADDED","org_id":"1","device_id":"103"}'
        await store.insert_device(row, [(7, context, T0)])
        catalog = await store.catalog()
        assert catalog.generation > before
        assert catalog.devices[103].activated_at == T0 + 5
        assert catalog.device_tokens["c" * 64] == 103
        assert await store.pending_deliveries(7) == 1
        assert await store.next_device_id() == 104
        # an id or a token that is taken: a Conflict, and nothing written (no update)
        for taken in (
            DeviceRow(101, 1, 10, "Over Roof", None, "d" * 64),
            DeviceRow(104, 1, 10, "Same token", None, "a" * 64),
        ):
            with pytest.raises(Conflict):
                await store.insert_device(taken, [(7, context, T0)])
        rows = {d.id: d for d in (await store.entities()).devices}
        assert rows[101].name == "Roof" and 104 not in rows
        assert await store.pending_deliveries(7) == 1
        # another process on the same database sees the new device
        other = second_store(store)
        await other.open()
        try:
            assert (await other.catalog()).devices[103].name == "New"
        finally:
            await other.close()

    run(body)


def test_a_device_is_renamed_and_given_a_token_in_place(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await fill(store, 101)
        await store.update_device(101, name="Roof two")
        await store.update_device(101, token_hash="e" * 64)
        catalog = await store.catalog()
        assert catalog.devices[101].name == "Roof two"
        assert catalog.device_tokens.get("e" * 64) == 101 and "a" * 64 not in catalog.device_tokens
        assert catalog.devices[101].activated_at == T0
        assert await data_of(store, 101) == (1, 2, 1, 1)  # the data stays
        await store.delete_devices([101])
        await store.update_device(101, name="Ghost")  # a deleted device stays deleted
        assert 101 not in (await store.catalog()).devices

    run(body)


def test_a_deletion_erases_everything_of_the_device_only(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        for device_id in (101, 102):
            await fill(store, device_id)
            await store.set_hardware_info(device_id, '{"boardType":"ESP32"}', T0)
            event = LoggedEvent(0, device_id, 0, "ONLINE", "ONLINE", None, T0)
            assert not isinstance(await store.log_event(event, True, per_day=9, gap_ms=0), str)
        pending = [(7, f'{{"trigger":"X","device_id":"{d}"}}', T0) for d in (101, 102, 1010)]
        await store.enqueue_deliveries(pending)
        deleted = '{"trigger":"DEVICE_DELETED","device_id":"101"}'
        await store.delete_devices([101], [(7, deleted, T0 + 1)])
        assert await data_of(store, 101) == (0, 0, 0, 0)
        assert await store.hardware_info([101, 102]) == {102: '{"boardType":"ESP32"}'}
        assert await store.timeline(101, None, 0, 2**62, 0, 10) == (0, [])
        assert await data_of(store, 102) == (1, 2, 1, 1)
        assert (await store.timeline(102, None, 0, 2**62, 0, 10))[0] == 1
        assert 101 not in (await store.catalog()).devices
        claimed = await store.claim_deliveries(T0 + 10, T0 + 20, 10)
        # device 101's pending row went; 102's, 1010's and the deletion's own stay
        assert sorted(r.context for r in claimed) == sorted([pending[1][1], pending[2][1], deleted])

    run(body)


def test_a_clear_erases_data_and_keeps_the_device(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await fill(store, 101)
        await fill(store, 102)
        generation = (await store.catalog()).generation
        await store.clear_devices([101])
        assert await data_of(store, 101) == (0, 0, 0, 1)  # metadata stays
        assert await data_of(store, 102) == (1, 2, 1, 1)
        assert await store.generation() == generation  # no catalog change
        await fill(store, 101)  # counted again from nothing
        assert await data_of(store, 101) == (1, 2, 1, 1)

    run(body)


def test_hardware_info_and_last_updates_are_read_for_some_devices(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        assert await store.hardware_info([101, 102]) == {}
        await store.set_hardware_info(101, '{"version":"1.0"}', T0)
        await store.set_hardware_info(101, '{"version":"1.1"}', T0 + 1)
        assert await store.hardware_info([101, 102]) == {101: '{"version":"1.1"}'}
        await fill(store, 102)
        assert await store.last_updates([101, 102]) == {102: T0 + 2}
        assert await store.last_updates([101]) == {}
        assert await store.last_updates() == {102: T0 + 2}

    run(body)
