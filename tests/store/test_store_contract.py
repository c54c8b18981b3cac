"""The `Store` contract, the same tests on every backend.

Each test gets a fresh store of the current backend (`helpers.fresh_store`): SQLite in a temporary
directory, and PostgreSQL too when PINBASE_TEST_POSTGRES names a server (a database per test).
Timestamps are fixed numbers, so nothing here depends on the clock or on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers import fresh_store, second_store
from pinbase.app.auth.access_tokens import AccessTokens
from pinbase.app.auth.refresh import RefreshOutcome, rotate
from pinbase.store import Conflict, Store, StoreUnavailable
from pinbase.store.postgres import schema as postgres_schema
from pinbase.store.postgres.store import PostgresStore
from pinbase.store.records import (
    ClientRow,
    DatastreamRow,
    DeviceRow,
    Entities,
    OrgRow,
    ProductRow,
    Revocation,
    RoleRow,
    StoredValue,
    TokenRow,
    UserRow,
    ValueWrites,
)
from pinbase.store.sql import BUCKET_SHIFT, COUNTED_TABLES
from pinbase.store.sqlite import schema as sqlite_schema

Body = Callable[[Store], Awaitable[None]]
NOW = 1_700_000_000_000  # epoch ms: "now" for every token test
BUCKET = 1 << BUCKET_SHIFT
JAN_2020, FEB_15_2020, MAR_2020 = 1_577_836_800_000, 1_581_724_800_000, 1_583_020_800_000


@pytest.fixture
def run(backend: str, tmp_path: Path) -> Iterator[Callable[[Body], None]]:
    """Run a test body against a fresh store of the current backend."""

    def runner(body: Body) -> None:
        async def main() -> None:
            async with fresh_store(backend, tmp_path) as store:
                await body(store)

        asyncio.run(main())

    yield runner


def fleet() -> Entities:
    """Two organizations with a row of every kind, every optional column both set and unset."""
    return Entities(
        organizations=[OrgRow(1, "Acme"), OrgRow(2, "Globex", "Europe/Kyiv")],
        roles=[
            RoleRow(1, "Auditor", ("ORG_DEVICES_VIEW", "OWN_DEVICES_VIEW")),
            RoleRow(2, "X", ()),
        ],
        clients=[ClientRow("acme", 1, "c" * 64), ClientRow("globex", 2, "d" * 64)],
        users=[
            UserRow(1, 1, "admin@acme.test", "hash-1", "Admin"),
            UserRow(2, 1, "user@acme.test", "hash-2", "User"),
            UserRow(3, 2, "admin@acme.test", "hash-3", "Admin"),  # one email, two organizations
        ],
        products=[
            ProductRow(10, 1, "Station", None),
            ProductRow(11, 1, "Station Pro", 10),
            ProductRow(30, 2, "Sensor", None),
        ],
        datastreams=[
            DatastreamRow(
                10, 1, "v1", "Temperature", "temp", "double", -40.0, 85.5, 1, "C", None, True
            ),
            DatastreamRow(
                10, 5, "v5", "Mode", "mode", "enum", None, None, None, None, '{"0":"Off"}', False
            ),
            DatastreamRow(
                30, 1, "v1", "Temperature", "t", "integer", 0.0, 100.0, None, None, None, True
            ),
        ],
        devices=[
            DeviceRow(101, 1, 10, "Roof", 2, "a" * 64),
            DeviceRow(102, 1, 11, "Barn", None, "b" * 64, "America/New_York"),
            DeviceRow(201, 2, 30, "Lab", 3, "e" * 64),
        ],
    )


def table(entities: Entities) -> dict[str, list[Any]]:
    """Every row by kind, in a fixed order (stores return rows in any order)."""
    return {
        f.name: sorted(getattr(entities, f.name), key=repr) for f in dataclasses.fields(entities)
    }


async def generation(store: Store) -> int:
    return (await store.catalog()).generation


# --- entities and the catalog -------------------------------------------------------------------


def test_upserted_entities_read_back_column_for_column(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        assert table(await store.entities()) == table(Entities())
        before = await generation(store)
        await store.upsert_entities(fleet())
        assert table(await store.entities()) == table(fleet())
        catalog = await store.catalog()
        assert catalog.generation == before + 1
        assert catalog.devices[102].root_product_id == 10
        assert catalog.device_tokens == {"a" * 64: 101, "b" * 64: 102, "e" * 64: 201}
        assert [ds.id for ds in catalog.schema_of(catalog.devices[102]).datastreams] == [1, 5]
        assert await store.client("acme") == ClientRow("acme", 1, "c" * 64)
        assert await store.client("nobody") is None
        assert await store.user_by_email(2, "admin@acme.test") == fleet().users[2]
        assert await store.user_by_email(2, "user@acme.test") is None

    run(body)


def test_an_upsert_updates_by_key_and_leaves_other_rows(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        before = await generation(store)
        renamed = DeviceRow(102, 1, 10, "Barn (moved)", 1, "b" * 64)
        added = DeviceRow(103, 1, 10, "Field", None, "f" * 64)
        role = RoleRow(1, "Auditor", ())
        await store.upsert_entities(Entities(roles=[role], devices=[renamed, added]))
        expected = fleet()
        expected.roles[0] = role
        expected.devices[1:2] = [renamed, added]
        assert table(await store.entities()) == table(expected)
        assert await generation(store) == before + 1

    run(body)


def test_variants_listed_before_their_parents_are_written(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        products = [
            ProductRow(3, 1, "variant of 7", 7),
            ProductRow(7, 1, "variant of 9", 9),
            ProductRow(9, 1, "base", None),
            ProductRow(1, 1, "other", None),
        ]
        await store.upsert_entities(Entities(organizations=[OrgRow(1, "Acme")], products=products))
        assert table(await store.entities())["products"] == sorted(products, key=repr)

    run(body)


def test_unique_values_may_move_between_the_rows_of_one_upsert(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        roof, barn, lab = fleet().devices
        admin, user = fleet().users[:2]
        # two devices swap tokens, a third takes a token the first gives up: a rotation
        swapped = [
            dataclasses.replace(roof, token_hash=barn.token_hash),
            dataclasses.replace(barn, token_hash="z" * 64),
            dataclasses.replace(lab, token_hash=roof.token_hash),
        ]
        emails = [
            dataclasses.replace(admin, email=user.email),
            dataclasses.replace(user, email=admin.email),
        ]
        await store.upsert_entities(Entities(users=emails, devices=swapped))
        stored = await store.entities()
        assert sorted(stored.devices, key=repr) == sorted(swapped, key=repr)
        assert sorted((u for u in stored.users if u.org_id == 1), key=repr) == sorted(
            emails, key=repr
        )
        tokens = (await store.catalog()).device_tokens
        assert tokens == {"b" * 64: 101, "z" * 64: 102, "a" * 64: 201}

    run(body)


CONFLICTS: list[tuple[Entities, str]] = [
    (
        Entities(devices=[DeviceRow(102, 1, 11, "Barn", None, "a" * 64)]),
        "device 102's token is already the token of device 101",
    ),
    (
        Entities(devices=[DeviceRow(150, 1, 10, "New", None, "e" * 64)]),
        "device 150's token is already the token of device 201",
    ),
    (
        Entities(users=[UserRow(9, 1, "user@acme.test", "h", "User")]),
        'user 9\'s email "user@acme.test" is already the email of user 2 in organization 1',
    ),
    (
        Entities(devices=[DeviceRow(150, 1, 99, "New", None, "f" * 64)]),
        "device 150 refers to product 99, which does not exist",
    ),
    (
        Entities(devices=[DeviceRow(150, 1, 10, "New", 42, "f" * 64)]),
        "device 150 refers to user 42, which does not exist",
    ),
    (
        Entities(products=[ProductRow(40, 7, "Orphan", None)]),
        "product 40 refers to organization 7, which does not exist",
    ),
    (
        Entities(products=[ProductRow(40, 1, "Variant", 39)]),
        "product 40 refers to parent product 39, which does not exist",
    ),
    (
        Entities(datastreams=[DatastreamRow(99, 1, "v1", "T", "T", "double", *[None] * 5, True)]),
        "datastream 1 of product 99 refers to product 99, which does not exist",
    ),
    (
        Entities(clients=[ClientRow("initech", 7, "x" * 64)]),
        'client "initech" refers to organization 7, which does not exist',
    ),
]


@pytest.mark.parametrize(("rows", "message"), CONFLICTS, ids=lambda v: str(v)[:30])
def test_a_conflicting_upsert_names_the_entities_and_writes_nothing(
    run: Callable[[Body], None], rows: Entities, message: str
) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        before, stored = await generation(store), table(await store.entities())
        # valid rows in the same upsert are not written either
        rows.organizations.append(OrgRow(3, "Initech"))
        with pytest.raises(Conflict) as caught:
            await store.upsert_entities(rows)
        assert str(caught.value) == message
        assert table(await store.entities()) == stored
        assert await generation(store) == before

    run(body)


# --- values ---------------------------------------------------------------------------------


def test_write_values_counts_the_current_values_it_set(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        writes = ValueWrites(
            current=[(1, 1, "10", 100), (1, 2, '"a"', 100)],
            history=[(1, 1, 100, 0, "10"), (1, 1, 50, 0, "5")],
        )
        assert await store.write_values(writes) == 2
        assert await store.write_values(ValueWrites(history=[(1, 1, 100, 0, "11")])) == 0
        newer = ValueWrites(current_if_newer=[(1, 1, "9", 99), (1, 2, '"b"', 100), (2, 1, "1", 1)])
        assert await store.write_values(newer) == 2  # an older value sets nothing; a tie does
        # plain current values replace whatever is stored, older or not
        assert await store.write_values(ValueWrites(current=[(2, 1, "0", 0)])) == 1
        assert await store.current_values([1, 2, 3]) == {
            1: {1: StoredValue("10", 100), 2: StoredValue('"b"', 100)},
            2: {1: StoredValue("0", 0)},
            3: {},
        }
        total, page = await store.history(1, 1, 0, 1000, 0, 10, True)
        assert (total, page) == (2, [(50, "5"), (100, "11")])  # the same key replaced the point

    run(body)


def reference_points() -> list[int]:
    """Timestamps over hundreds of buckets, sometimes several a bucket, on bucket edges too,
    and before 2000 (PostgreSQL's default partition) and before 1970."""
    rng = random.Random(5)
    base = 1_600_000_000_000
    stamps = {base + rng.randrange(0, 400 * BUCKET) for _ in range(2500)}
    stamps |= {(base // BUCKET + k) * BUCKET + edge for k in range(5, 400, 37) for edge in (-1, 0)}
    stamps |= {rng.randrange(-(2**30), 2**30) for _ in range(100)}
    return sorted(stamps)


def test_history_pages_match_a_plain_scan(run: Callable[[Body], None]) -> None:
    stamps = reference_points()
    rng = random.Random(6)
    bucket_edges = [stamps[0], stamps[-1], (stamps[1500] >> BUCKET_SHIFT) << BUCKET_SHIFT]
    ranges = [(stamps[0] - 1, stamps[-1] + 1), (stamps[10], stamps[10])]
    ranges += [(edge, edge + k * BUCKET - 1) for edge in bucket_edges for k in (1, 2, 3, 50)]
    ranges += [tuple(sorted(rng.sample(stamps, 2))) for _ in range(40)]  # type: ignore[misc]
    ranges += [tuple(sorted(rng.randrange(-(2**31), 2**41) for _ in range(2))) for _ in range(20)]  # type: ignore[misc]

    async def body(store: Store) -> None:
        rows = [(7, 1, ts, 0, str(ts)) for ts in stamps]
        rng.shuffle(rows)
        for start in range(0, len(rows), 1000):
            await store.write_values(ValueWrites(history=rows[start : start + 1000]))
        await store.write_values(ValueWrites(history=[(7, 2, stamps[5], 0, "other series")]))
        for start, end in ranges:
            inside = [ts for ts in stamps if start <= ts <= end]
            for ascending in (True, False):
                ordered = inside if ascending else inside[::-1]
                for offset in sorted({0, 1, len(inside) // 2, max(len(inside) - 3, 0)}):
                    total, page = await store.history(7, 1, start, end, offset, 50, ascending)
                    assert total == len(inside), (start, end)
                    want = [(ts, str(ts)) for ts in ordered[offset : offset + 50]]
                    assert page == want, (start, end, offset, ascending)
        total, page = await store.history(7, 1, stamps[0], stamps[-1], len(stamps), 10, True)
        assert (total, page) == (len(stamps), [])  # past the last point

    run(body)


def test_dropping_old_history_keeps_newer_points_and_counts(run: Callable[[Body], None]) -> None:
    """Points in the cutoff's own month are left out: PostgreSQL drops whole months."""

    async def body(store: Store) -> None:
        old = [JAN_2020 + k * 3_600_000 for k in range(100)] + [-5, 900_000_000_000]
        new = [MAR_2020 + k * 3_600_000 for k in range(100)]
        await store.write_values(ValueWrites(history=[(1, 1, ts, 0, "1") for ts in old + new]))
        await store.drop_history_before(FEB_15_2020)
        total, page = await store.history(1, 1, -(2**40), 2**42, 0, 1000, True)
        assert (total, [ts for ts, _ in page]) == (100, new)
        total, _ = await store.history(1, 1, JAN_2020, MAR_2020 + 50 * 3_600_000, 0, 1, True)
        assert total == 51
        assert (await store.counts())["history"] == 100

    run(body)


# --- points of one millisecond, writer ids, schema 1 -----------------------------------------

WRITER_A, WRITER_B = 5, 3  # the first live seqs of two writers in a millisecond (k = 0)
SECOND = 1 << 32  # added to a writer's seq: its second point of a series and millisecond


def test_points_of_one_millisecond_are_kept_apart_by_seq(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        points = [
            (1, 1, 100, WRITER_A + SECOND, '"a2"'),
            (1, 1, 100, 0, '"imported"'),
            (1, 1, 100, WRITER_B, '"b1"'),
            (1, 1, 99, 0, '"before"'),
            (1, 1, 100, WRITER_A, '"a1"'),
            (1, 1, 101, WRITER_A, '"after"'),
        ]
        await store.write_values(ValueWrites(history=points[:3]))
        await store.write_values(ValueWrites(history=points[3:]))

        async def check(stored: list[tuple[int, int, int, int, str]]) -> None:
            ordered = [(ts, value) for _, _, ts, _, value in sorted(stored)]  # by (ts, seq)
            for ascending in (True, False):
                want = ordered if ascending else ordered[::-1]
                for offset in range(len(ordered) + 1):
                    for limit in (1, 2, 50):
                        total, page = await store.history(1, 1, 0, 1000, offset, limit, ascending)
                        assert total == len(ordered)
                        assert page == want[offset : offset + limit], (ascending, offset, limit)
            assert (await store.counts())["history"] == len(ordered)
            exported = [row async for rows in store.export_history(4) for row in rows]
            assert [tuple(row) for row in exported] == sorted(stored)

        await check(points)
        total, page = await store.history(1, 1, 100, 100, 1, 2, True)
        assert (total, page) == (4, [(100, '"b1"'), (100, '"a1"')])
        # importing a point again replaces it; the live points of its millisecond stay
        again = [(1, 1, 100, 0, '"imported again"'), (1, 1, 99, 0, '"before"')]
        await store.write_values(ValueWrites(history=again))
        await store.write_values(ValueWrites(history=again))
        await check([again[0], *points[2:], points[0]])

    run(body)


def test_bucket_counts_stay_exact_with_many_points_a_millisecond(
    run: Callable[[Body], None],
) -> None:
    """Totals over whole buckets come from the counting triggers: a live point of a taken
    millisecond is counted, a re-imported one is not counted twice."""

    async def body(store: Store) -> None:
        stamps = [JAN_2020 + k * BUCKET + 5 for k in range(6)]
        live = [(2, 1, ts, WRITER_A + n * SECOND, str(n)) for ts in stamps for n in range(3)]
        imported = [(2, 1, ts, 0, "i") for ts in stamps]
        await store.write_values(ValueWrites(history=live + imported))
        await store.write_values(ValueWrites(history=imported))
        more = [(2, 1, ts, WRITER_B, "b") for ts in stamps]
        await store.write_values(ValueWrites(history=more))
        ordered = [(ts, value) for _, _, ts, _, value in sorted(live + imported + more)]
        start, end = JAN_2020 - BUCKET, JAN_2020 + 7 * BUCKET
        for offset in (0, 4, 5, 11, 23, 24):
            total, page = await store.history(2, 1, start, end, offset, 7, True)
            assert (total, page) == (30, ordered[offset : offset + 7])
            total, page = await store.history(2, 1, start, end, offset, 7, False)
            assert (total, page) == (30, ordered[::-1][offset : offset + 7])

    run(body)


def test_writer_ids_are_never_handed_out_twice(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        assert await store.writers() == 0
        other = second_store(store)  # another process on the same database
        await other.open()
        try:
            allocations = [(store, other)[n % 2].allocate_writer() for n in range(10)]
            assert sorted(await asyncio.gather(*allocations)) == list(range(1, 11))
            assert await store.allocate_writer(after=100) == 101
            assert await other.allocate_writer(after=50) == 102  # never back
            assert await other.writers() == await store.writers() == 102
        finally:
            await other.close()

    run(body)


SCHEMA_1_HISTORY = [
    (d, 1, ts, f"{d}@{ts}")
    for d in (1, 2)
    for ts in [JAN_2020 + k * 600_000 for k in range(50)] + [-5, 900_000_000_000]
]


async def schema_1(url: str) -> None:
    """A database as the first schema left it, with history (some of it in the monthly
    partition of January 2020 on PostgreSQL, some in the default one)."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            for statement in sqlite_schema._statements(sqlite_schema.MIGRATIONS[0]):
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 1")
            conn.executemany(
                "INSERT INTO history (device_id, ds_id, ts, value) VALUES (?, ?, ?, ?)",
                SCHEMA_1_HISTORY,
            )
            conn.commit()
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        await conn.execute(postgres_schema.MIGRATIONS[0])
        await conn.execute("INSERT INTO schema_version VALUES (1)")
        await postgres_schema.ensure_partition(conn, 2020, 1)
        await conn.executemany(
            "INSERT INTO history (device_id, ds_id, ts, value) VALUES ($1, $2, $3, $4)",
            SCHEMA_1_HISTORY,
        )
    finally:
        await conn.close()


async def execute(url: str, statements: list[str]) -> None:
    """Run statements on the database of `url`, outside any store."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        return
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def schema_1_with_devices(url: str) -> None:
    """A first-schema database holding an organization and a device (before timezones)."""
    await schema_1(url)
    statements = [
        "INSERT INTO organizations (id, name) VALUES (1, 'Acme')",
        "INSERT INTO products (id, org_id, name) VALUES (10, 1, 'Station')",
        "INSERT INTO devices (id, org_id, product_id, name, token_hash) "
        "VALUES (101, 1, 10, 'Roof', 'h')",
    ]
    await execute(url, statements)


def test_rows_from_before_timezones_have_none(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with fresh_store(backend, tmp_path, schema_1_with_devices) as store:
            rows = await store.entities()
            assert rows.organizations == [OrgRow(1, "Acme", None)]
            assert rows.devices == [DeviceRow(101, 1, 10, "Roof", None, "h", None)]
            zoned = DeviceRow(101, 1, 10, "Roof", None, "h", "Asia/Tokyo")
            await store.upsert_entities(Entities(devices=[zoned]))
            assert (await store.entities()).devices == [zoned]

    asyncio.run(main())


def test_history_of_schema_1_is_kept_as_imported_points(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with fresh_store(backend, tmp_path, schema_1) as store:
            kept = sorted((d, s, ts, 0, v) for d, s, ts, v in SCHEMA_1_HISTORY)
            exported = [tuple(row) async for rows in store.export_history(7) for row in rows]
            assert exported == kept
            assert (await store.counts())["history"] == len(kept)
            total, page = await store.history(1, 1, -(2**40), 2**42, 0, 1000, True)
            assert total == len(kept) // 2
            assert page == [(ts, v) for d, _, ts, _, v in kept if d == 1]
            # re-imported, the points replace themselves; a live point of their ms is added
            await store.write_values(ValueWrites(history=kept))
            assert await store.writers() == 0
            writer = await store.allocate_writer()
            await store.write_values(ValueWrites(history=[(1, 1, JAN_2020, writer, '"live"')]))
            total, page = await store.history(1, 1, JAN_2020, JAN_2020, 0, 10, False)
            assert (total, page) == (2, [(JAN_2020, '"live"'), (JAN_2020, f"1@{JAN_2020}")])
            assert (await store.counts())["history"] == len(kept) + 1
            total, _ = await store.history(1, 1, -(2**40), 2**42, 0, 1, True)
            assert total == len(kept) // 2 + 1

    asyncio.run(main())


def test_properties_are_set_replaced_and_imported(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await store.set_property(1, 2, "label", "Roof")
        await store.set_property(1, 2, "label", "Roof temperature")
        await store.set_property(1, 1, "color", "#FF0000")
        await store.import_properties([(1, 1, "color", "#00FF00"), (1, 1, "min", "0")])
        await store.import_properties([])
        assert await store.properties(1) == {
            1: {"color": "#00FF00", "min": "0"},
            2: {"label": "Roof temperature"},
        }
        assert await store.properties(2) == {}

    run(body)


def test_a_property_is_deleted_alone(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await store.set_property(1, 1, "color", "#FF0000")
        await store.set_property(1, 1, "label", "Roof")
        await store.set_property(1, 2, "color", "#00FF00")
        assert await store.delete_property(1, 1, "color")
        assert not await store.delete_property(1, 1, "color"), "already gone"
        assert not await store.delete_property(2, 1, "label"), "another device's"
        assert await store.properties(1) == {1: {"label": "Roof"}, 2: {"color": "#00FF00"}}

    run(body)


def test_erasing_a_current_value_keeps_history_and_other_values(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        await store.write_values(
            ValueWrites(
                current=[(1, 1, "10", 100), (1, 2, "20", 100), (2, 1, "30", 100)],
                history=[(1, 1, 100, 1, "10")],
            )
        )
        assert await store.erase_current(1, 1)
        assert not await store.erase_current(1, 1), "already empty"
        assert await store.current_values([1, 2]) == {
            1: {2: StoredValue("20", 100)},
            2: {1: StoredValue("30", 100)},
        }
        assert await store.history(1, 1, 0, 1000, 0, 10, True) == (1, [(100, "10")])
        await store.write_values(ValueWrites(current=[(1, 1, "11", 200)]))
        assert (await store.current_values([1]))[1][1] == StoredValue("11", 200)

    run(body)


# --- tokens ---------------------------------------------------------------------------------


def token(
    name: str, kind: str = "access", family: str = "f1", expires_at: int = NOW + 1
) -> TokenRow:
    return TokenRow(f"{name:x<64}", kind, "acme", 1, 2, family, expires_at)


def test_access_tokens_expire_and_are_revoked_with_their_family(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        live, expired = token("live"), token("old", expires_at=NOW)
        other = token("other", family="f2")
        refresh = token("refresh", kind="refresh")
        await store.insert_tokens([live, expired, other, refresh])
        assert await store.access_token(live.hash, NOW) == live
        assert await store.access_token(expired.hash, NOW) is None  # expired at NOW
        assert await store.access_token(refresh.hash, NOW) is None  # not an access token
        assert await store.access_token("unknown", NOW) is None
        await store.revoke_family("f1")
        assert await store.access_token(live.hash, NOW) is None
        assert await store.access_token(other.hash, NOW) == other
        with pytest.raises(Conflict):
            await store.insert_tokens([other])  # a hash is stored once

    run(body)


def test_a_refresh_token_is_consumed_once(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        refresh = token("refresh", kind="refresh", expires_at=NOW + 10)
        await store.insert_tokens([refresh])
        state = await store.refresh_token(refresh.hash)
        assert state is not None and (state.token, state.used, state.revoked) == (
            refresh,
            False,
            False,
        )
        assert await store.refresh_token(token("absent").hash) is None
        first = [token("access-1"), token("refresh-1", kind="refresh")]
        assert await store.consume_refresh(refresh, NOW, first)
        assert await store.access_token(first[0].hash, NOW) == first[0]
        again = [token("access-2")]
        assert not await store.consume_refresh(refresh, NOW, again)
        assert await store.access_token(again[0].hash, NOW) is None  # nothing written
        state = await store.refresh_token(refresh.hash)
        assert state is not None and (state.used, state.revoked) == (True, False)

    run(body)


def test_an_expired_or_revoked_refresh_token_is_not_consumed(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        expired = token("expired", kind="refresh", expires_at=NOW)
        revoked = token("revoked", kind="refresh", family="f2")
        await store.insert_tokens([expired, revoked])
        assert not await store.consume_refresh(expired, NOW, [token("a1")])
        await store.revoke_family("f2")
        assert not await store.consume_refresh(revoked, NOW, [token("a2", family="f2")])
        state = await store.refresh_token(revoked.hash)
        assert state is not None and (state.used, state.revoked) == (False, True)
        assert await store.access_token(token("a1").hash, NOW) is None

    run(body)


def test_expired_tokens_are_dropped(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        old = token("old", kind="refresh", expires_at=NOW - 5)
        recent = token("recent", kind="refresh", expires_at=NOW - 1)
        await store.insert_tokens([old, recent])
        await store.drop_tokens_expired_before(NOW - 1)
        assert await store.refresh_token(old.hash) is None
        assert await store.refresh_token(recent.hash) is not None

    run(body)


def test_concurrent_redemptions_let_exactly_one_through(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        other = second_store(store)
        await other.open()
        try:
            refresh = token("refresh", kind="refresh")
            await store.insert_tokens([refresh])
            attempts = [
                (store if n % 2 else other).consume_refresh(refresh, NOW, [token(f"a{n}")])
                for n in range(8)
            ]
            results = await asyncio.gather(*attempts)
            assert sorted(results) == [False] * 7 + [True]
            winner = results.index(True)
            for n in range(8):
                found = await store.access_token(token(f"a{n}").hash, NOW)
                assert (found is not None) == (n == winner)
        finally:
            await other.close()

    run(body)


def test_rotation_policy_on_the_store(run: Callable[[Body], None]) -> None:
    """`app.auth.refresh.rotate` composed from the primitives: reuse revokes the family, even
    when two redemptions race."""

    async def body(store: Store) -> None:
        cache = AccessTokens(store)
        refresh = token("refresh", kind="refresh")
        await store.insert_tokens([refresh])
        issued: list[TokenRow] = []

        def successors(consumed: TokenRow) -> list[TokenRow]:
            rows = [token(f"s{len(issued)}", family=consumed.family)]
            issued.extend(rows)
            return rows

        async def redeem(client: str = "acme") -> RefreshOutcome:
            return await rotate(store, cache, refresh.hash, client, NOW, successors)

        assert await redeem("globex") is RefreshOutcome.UNKNOWN  # another client's: untouched
        outcomes = await asyncio.gather(redeem(), redeem())
        assert sorted(o.value for o in outcomes) == ["reused", "rotated"]
        for row in issued:  # whoever won, the reuse revoked what it was given
            assert await store.access_token(row.hash, NOW) is None
        assert await redeem() is RefreshOutcome.REUSED
        unknown = await rotate(store, cache, "absent", "acme", NOW, successors)
        assert unknown is RefreshOutcome.UNKNOWN

    run(body)


# --- revocation by user and client ------------------------------------------------------------


def owned_token(
    name: str, user_id: int | None, client: str = "acme", kind: str = "access"
) -> TokenRow:
    return TokenRow(f"{name:_<64}", kind, client, 1, user_id, f"fam-{name}", NOW + 10)


async def alive(store: Store, *tokens: TokenRow) -> set[str]:
    return {t.hash.rstrip("_") for t in tokens if await store.access_token(t.hash, NOW)}


def test_tokens_are_revoked_by_user_and_by_client_with_a_generation_bump(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        admin, user = owned_token("admin", 1), owned_token("user", 2)
        acme, globex = owned_token("acme", None), owned_token("globex", None, "globex")
        await store.insert_tokens([admin, user, acme, globex])
        before = await generation(store)
        await store.revoke_tokens(Revocation(user_ids=(2,)))
        assert await alive(store, admin, user, acme, globex) == {"admin", "acme", "globex"}
        assert await generation(store) == before + 1
        await store.revoke_tokens(Revocation(client_ids=("acme",)))
        assert await alive(store, admin, user, acme, globex) == {"globex"}
        refresh = owned_token("r", 3, "globex", "refresh")
        await store.insert_tokens([refresh])
        await store.upsert_entities(Entities(), Revocation((3,), ("nobody",)))
        state = await store.refresh_token(refresh.hash)
        assert state is not None and state.revoked and not state.used
        assert not await store.consume_refresh(refresh, NOW, [owned_token("s", 3, "globex")])

    run(body)


def test_deleting_users_and_clients_revokes_their_tokens(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        with pytest.raises(Conflict):
            await store.delete_entities(user_ids=[2])  # owns device 101
        roof = dataclasses.replace(fleet().devices[0], owner_id=None)
        await store.upsert_entities(Entities(devices=[roof]))
        user, globex = owned_token("user", 2), owned_token("globex", None, "globex")
        admin = owned_token("admin", 1)
        await store.insert_tokens([user, globex, admin])
        before = await generation(store)
        await store.delete_entities(user_ids=[2, 99], client_ids=["globex"])
        assert await alive(store, user, globex, admin) == {"admin"}
        assert await generation(store) == before + 1
        left = await store.entities()
        assert [u.id for u in sorted(left.users, key=lambda u: u.id)] == [1, 3]
        assert [c.client_id for c in left.clients] == ["acme"]
        assert 2 not in (await store.catalog()).users

    run(body)


async def other_process_renames_acme(store: Store) -> None:
    other = second_store(store)
    await other.open()
    try:
        await other.upsert_entities(Entities(organizations=[OrgRow(1, "Acme Inc")]))
    finally:
        await other.close()


def test_tokens_are_issued_only_at_the_generation_their_credentials_were_read(
    run: Callable[[Body], None],
) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        read_at = await store.generation()
        assert read_at == await generation(store)
        await other_process_renames_acme(store)
        assert await store.generation() == read_at + 1
        late = owned_token("late", 2)
        assert not await store.insert_tokens([late], read_at)
        assert await store.access_token(late.hash, NOW) is None
        assert await store.insert_tokens([late], await store.generation())
        assert await store.access_token(late.hash, NOW) == late

    run(body)


def test_no_token_issued_while_a_user_is_revoked_outlives_the_revocation(
    run: Callable[[Body], None],
) -> None:
    """Grants and refreshes racing a revocation of their user, from two processes: each either
    comes first (and is revoked with the rest) or finds the change and issues nothing."""

    async def body(store: Store) -> None:
        other = second_store(store)
        await other.open()
        try:
            await store.upsert_entities(fleet())
            for round_ in range(6):
                read_at = await generation(store)
                granted = owned_token(f"g{round_}", 2)
                refresh = owned_token(f"r{round_}", 2, kind="refresh")
                await store.insert_tokens([refresh])
                successor = owned_token(f"s{round_}", 2)
                issued, rotated, _ = await asyncio.gather(
                    other.insert_tokens([granted], read_at),
                    other.consume_refresh(refresh, NOW, [successor]),
                    store.revoke_tokens(Revocation(user_ids=(2,))),
                )
                assert await alive(store, granted, successor) == set()
                assert (await store.access_token(granted.hash, NOW)) is None
                del issued, rotated  # either outcome is right; only the survivors matter
        finally:
            await other.close()

    run(body)


def test_family_revocations_reach_the_other_processes(
    run: Callable[[Body], None], backend: str
) -> None:
    async def body(store: Store) -> None:
        other = second_store(store)
        await other.open()
        heard: list[str | None] = []
        other.watch_revocations(heard.append)

        async def hear(what: str | None) -> None:
            for _ in range(3000):  # bounds the wait; the notification decides
                if what in heard:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"never heard {what}")

        try:
            await hear(None)  # listening: whatever was revoked before is to be forgotten
            await store.revoke_family("f9")
            await hear("f9")
        finally:
            await other.close()

    if backend != "postgresql":
        pytest.skip("one server process per SQLite database: nothing to tell")
    run(body)


# --- migration: counts and exports ----------------------------------------------------------


def test_counts_and_exports_cover_every_row_in_key_order(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        assert await store.counts() == dict.fromkeys(COUNTED_TABLES, 0)
        await store.upsert_entities(fleet())
        history = [
            (d, s, ts, seq, f"{ts}/{seq}")
            for d in (102, 101)
            for s in (2, 1)
            for ts in (9, -3, 4)
            for seq in (5 + (1 << 32), 0, 3)
        ]
        current = [(d, s, "1", 5) for d in (102, 101) for s in (2, 1)]
        await store.write_values(ValueWrites(current=current, history=history))
        await store.import_properties([(101, 1, "b", "2"), (101, 1, "a", "1"), (7, 0, "x", "y")])
        await store.import_hardware([(102, '{"fw": "2"}', 8), (101, '{"fw": "1"}', 9)])
        counts = await store.counts()
        assert counts == {
            "organizations": 2,
            "roles": 2,
            "clients": 2,
            "users": 3,
            "products": 3,
            "datastreams": 3,
            "devices": 3,
            "webhooks": 0,
            "current_values": 4,
            "history": 36,
            "properties": 3,
            "metafields": 0,
            "meta_values": 0,
            "events": 0,  # event definitions: tests/store/test_events_store.py
            "device_events": 0,  # tests/store/test_events_store.py
            "device_hardware": 2,
        }

        async def collect(batches: Any, size: int) -> list[Any]:
            rows: list[Any] = []
            async for batch in batches:
                assert 0 < len(batch) <= size
                rows.extend(tuple(row) for row in batch)
            return rows

        for size in (1, 5, 36, 100):
            assert await collect(store.export_history(size), size) == sorted(history)
        assert await collect(store.export_current(3), 3) == sorted(current)
        assert await collect(store.export_properties(2), 2) == [
            (7, 0, "x", "y"),
            (101, 1, "a", "1"),
            (101, 1, "b", "2"),
        ]
        assert await collect(store.export_hardware(1), 1) == [
            (101, '{"fw": "1"}', 9),
            (102, '{"fw": "2"}', 8),
        ]
        with pytest.raises(ValueError):
            await collect(store.export_history(0), 0)

    run(body)


def test_an_unreachable_postgresql_is_unavailable() -> None:
    async def body() -> None:
        store = PostgresStore("postgresql://nobody@127.0.0.1:1/nothing")
        with pytest.raises(StoreUnavailable, match="cannot reach PostgreSQL"):
            await store.open()
        await store.close()

    asyncio.run(body())


def test_metafields_and_meta_values_round_trip(run: Callable[[Body], None]) -> None:
    from pinbase.domain.metadata import MetaType
    from pinbase.store.records import MetafieldRow, MetaValueRow

    async def body(store: Store) -> None:
        rows = fleet()
        rows.metafields = [
            MetafieldRow(10, 1, "Site", "list", "North", '["North","South"]', None, None)
        ]
        rows.meta_values = [MetaValueRow(101, 1, "South")]
        await store.upsert_entities(rows)
        stored = await store.entities()
        assert stored.metafields == rows.metafields
        assert stored.meta_values == rows.meta_values
        catalog = await store.catalog()
        (site,) = catalog.products[10].metafields.fields
        assert (site.type, site.default, site.options) == (
            MetaType.LIST,
            "North",
            ("North", "South"),
        )
        await store.set_meta_value(102, 1, "North")
        await store.set_meta_value(101, 1, "North")
        assert await store.meta_values(101) == {1: "North"}
        assert await store.meta_values(102) == {1: "North"}
        assert await store.meta_values(201) == {}

    run(body)


# --- users of the Platform API ------------------------------------------------------------


async def schema_7_with_users(url: str) -> None:
    """A database before migration 8: custom roles without ids, users without names."""
    await schema_1_with_devices(url)
    statements = [
        "INSERT INTO roles (org_id, name, permissions) VALUES (1, 'Viewer', ''), "
        "(1, 'Auditor', 'ORG_VIEW'), (1, 'Admin', 'ORG_VIEW')",
        "INSERT INTO users (id, org_id, email, password_hash, role) "
        "VALUES (5, 1, 'ann@acme.test', 'h', 'Viewer')",
    ]
    await execute(url, statements)


def test_migration_8_gives_roles_ids_and_users_names(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with fresh_store(backend, tmp_path, schema_7_with_users) as store:
            rows = await store.entities()
            assert {r.name: r.id for r in rows.roles} == {"Admin": 1, "Auditor": 4, "Viewer": 5}
            assert rows.users == [
                UserRow(5, 1, "ann@acme.test", "h", "Viewer", "ann@acme.test", "Active", 0, 0)
            ]

    asyncio.run(main())


def test_users_are_added_once_and_invitations_accepted_once(run: Callable[[Body], None]) -> None:
    async def body(store: Store) -> None:
        await store.upsert_entities(fleet())
        before = await generation(store)
        new_id = await store.next_user_id()
        invited = UserRow(
            new_id, 1, "new@acme.test", "", "User", "New", "Pending", 5, 5, "i" * 64, NOW
        )
        await store.add_user(invited, [(0, '{"to": ["new@acme.test"]}', 5)])
        assert await generation(store) == before + 1
        assert await store.user(new_id) == invited
        assert await store.user_by_invitation("i" * 64) == invited
        assert (await store.catalog()).users[new_id].status == "Pending"
        for clash in (
            dataclasses.replace(invited, email="other@acme.test"),  # the id is taken
            dataclasses.replace(invited, id=new_id + 1, invitation_hash=None),  # the e-mail
        ):
            with pytest.raises(Conflict):
                await store.add_user(clash)
        assert (await store.counts())["users"] == len(fleet().users) + 1

        assert not await store.accept_invitation(new_id, "i" * 64, "late", NOW)  # expired
        assert not await store.accept_invitation(new_id, "x" * 64, "wrong", NOW - 1)
        assert await store.accept_invitation(new_id, "i" * 64, "hash-1", NOW - 1)
        assert not await store.accept_invitation(new_id, "i" * 64, "hash-2", NOW - 1)  # used
        accepted = await store.user(new_id)
        assert accepted is not None
        assert (accepted.password_hash, accepted.status) == ("hash-1", "Active")
        assert accepted.invitation_hash is None and accepted.last_modified == NOW - 1

        await store.insert_tokens(
            [TokenRow("t" * 64, "access", "acme-backend", 1, new_id, "f", NOW)]
        )
        await store.set_user_role(new_id, "Admin", NOW)
        assert await store.access_token("t" * 64, NOW - 1) is None  # revoked with the change
        assert (await store.catalog()).users[new_id].role == "Admin"

    run(body)
