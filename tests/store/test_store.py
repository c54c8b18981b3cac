"""The SQLite store: history counting and paging by bucket, group commit, migrations."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from pinbase.store.errors import SchemaTooNew, StoreError
from pinbase.store.paging import page_window
from pinbase.store.records import ValueWrites
from pinbase.store.sqlite.schema import SCHEMA_VERSION, migrate
from pinbase.store.sqlite.store import SqliteStore, _segments


@pytest.fixture
def history_db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    migrate(conn)
    rng = random.Random(1)
    stamps = sorted({rng.randrange(-(2**26), 2**27) for _ in range(20_000)})
    conn.execute("BEGIN")
    insert = "INSERT INTO history (device_id, ds_id, ts, value) VALUES (1, ?, ?, ?)"
    conn.executemany(insert, [(1, t, "1") for t in stamps])
    conn.executemany(insert, [(2, t, "2") for t in stamps[::7]])
    conn.execute("COMMIT")
    return conn


def test_bucketed_counts_and_pages_match_a_plain_scan(history_db: sqlite3.Connection) -> None:
    rng = random.Random(2)
    conn = history_db
    for _ in range(500):
        start, end = sorted(rng.randrange(-(2**27), 2**28) for _ in range(2))
        ascending = rng.random() < 0.5
        offset, limit = rng.randrange(0, 20_000), rng.randrange(1, 50)
        pieces = _segments(conn, 1, 1, start, end)
        expected_total = conn.execute(
            "SELECT count(*) FROM history WHERE device_id = 1 AND ds_id = 1 AND ts BETWEEN ? AND ?",
            (start, end),
        ).fetchone()[0]
        assert sum(points for _, _, points in pieces) == expected_total
        low, high, skip = page_window(pieces, start, end, offset, ascending)
        order = "ASC" if ascending else "DESC"
        query = (
            "SELECT ts FROM history WHERE device_id = 1 AND ds_id = 1 AND ts BETWEEN ? AND ? "
            f"ORDER BY ts {order} LIMIT ? OFFSET ?"
        )
        assert (
            conn.execute(query, (low, high, limit, skip)).fetchall()
            == conn.execute(query, (start, end, limit, offset)).fetchall()
        )


def test_counts_follow_replacements_and_deletes(history_db: sqlite3.Connection) -> None:
    conn = history_db
    before = sum(p for _, _, p in _segments(conn, 1, 1, -(2**40), 2**40))
    stamp = conn.execute("SELECT ts FROM history WHERE ds_id = 1 LIMIT 1").fetchone()[0]
    conn.execute(
        "INSERT INTO history (device_id, ds_id, ts, value) VALUES (1, 1, ?, '9') "
        "ON CONFLICT (device_id, ds_id, ts, seq) DO UPDATE SET value = excluded.value",
        (stamp,),
    )
    assert sum(p for _, _, p in _segments(conn, 1, 1, -(2**40), 2**40)) == before
    conn.execute("DELETE FROM history WHERE device_id = 1 AND ds_id = 1 AND ts = ?", (stamp,))
    assert sum(p for _, _, p in _segments(conn, 1, 1, -(2**40), 2**40)) == before - 1


def test_concurrent_writes_all_commit_and_are_readable(tmp_path: Path) -> None:
    async def scenario() -> dict[int, int]:
        store = SqliteStore(tmp_path / "w.db")
        await store.open()
        try:
            writes = [
                store.write_values(ValueWrites(history=[(1, 1, ts, 0, str(ts))]))
                for ts in range(1, 501)
            ]
            await asyncio.gather(*writes)
            total, page = await store.history(1, 1, 0, 1000, 0, 1000, True)
            return {ts: int(value) for ts, value in page} | {-1: total}
        finally:
            await store.close()

    found = asyncio.run(scenario())
    assert found.pop(-1) == 500
    assert found == {ts: ts for ts in range(1, 501)}


def test_a_failing_write_does_not_undo_the_others_in_its_group(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[object], int]:
        store = SqliteStore(tmp_path / "g.db")
        await store.open()
        try:

            def broken(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "INSERT INTO history (device_id, ds_id, ts, value) VALUES (1, 1, 7, 'x')"
                )
                conn.execute("INSERT INTO no_such_table VALUES (1)")

            results = await asyncio.gather(
                store.write_values(ValueWrites(history=[(1, 1, 1, 0, "1")])),
                store._write(broken),
                store.write_values(ValueWrites(history=[(1, 1, 2, 0, "2")])),
                return_exceptions=True,
            )
            total, _ = await store.history(1, 1, 0, 100, 0, 10, True)
            return list(results), total
        finally:
            await store.close()

    results, total = asyncio.run(scenario())
    assert results[0] == 0 and results[2] == 0  # history only: no current value set
    assert type(results[1]) is StoreError  # the store's own error, not the driver's
    assert "no_such_table" in str(results[1])
    assert total == 2  # the broken function's first insert was rolled back


def test_schema_version_is_recorded_and_migration_is_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert migrate(conn) == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="newer"):
        migrate(conn)
