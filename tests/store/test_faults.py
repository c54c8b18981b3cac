"""Storage faults at the store: what opening refuses (and leaves untouched), a full database
refusing writes without losing or half-storing any and recovering in the same process, the
bounded start-up check, and PostgreSQL's refusals.

A full SQLite database here is real: SQLite itself refuses with SQLITE_FULL once the file would
outgrow `PRAGMA max_page_count`, set on the writer's own connection (the limit is per
connection). The end-to-end suite fills a real file system too, where it may mount one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from helpers import POSTGRES
from pinbase.store import check_database
from pinbase.store.errors import Corrupt, Foreign, StorageFull, StoreUnavailable
from pinbase.store.postgres.store import PostgresStore
from pinbase.store.records import ValueWrites
from pinbase.store.sqlite import checks
from pinbase.store.sqlite.checks import APPLICATION_ID, run_check
from pinbase.store.sqlite.store import SqliteStore


def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.open_sync()
    return store


def pinbase_file(path: Path, points: int = 0) -> None:
    """A pinbase database at `path`, with `points` history points."""
    store = opened(path)
    store.close_sync()
    if points:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.executemany(
                "INSERT INTO history (device_id, ds_id, ts, value) VALUES (1, 1, ?, ?)",
                ((i, f'"{i:0>100}"') for i in range(points)),
            )


# --- what opening refuses -----------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_file_that_is_not_sqlite_is_foreign_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(Foreign, match="is not an SQLite database"):
        opened(path)
    assert path.read_bytes() == b"not a database, " * 512


@pytest.mark.sqlite_only
def test_an_sqlite_file_of_another_program_is_foreign_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = path.read_bytes()
    with pytest.raises(Foreign, match=r"another program \(it holds notes\)"):
        opened(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID + 1}")
    with pytest.raises(Foreign, match="application id"):
        opened(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not turned WAL
    assert len(path.read_bytes()) == len(before)


@pytest.mark.sqlite_only
def test_damaged_pages_are_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    pinbase_file(path, points=3000)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as file:
        file.seek(4096 * (pages // 2))
        file.write(os.urandom(4096 * 3))
    with pytest.raises(Corrupt, match=r"damaged\.db is damaged: quick_check found"):
        opened(path)


@pytest.mark.sqlite_only
def test_an_empty_file_is_refused_unless_its_directory_is_new(tmp_path: Path) -> None:
    path = tmp_path / "pinbase.db"
    path.touch()
    with pytest.raises(Corrupt, match=r"is empty \(0 bytes\)"):
        opened(path)
    assert path.stat().st_size == 0 and sorted(tmp_path.iterdir()) == [path]
    # A file that is missing, in a directory this open creates or in one that exists, is new.
    opened(tmp_path / "new" / "pinbase.db").close_sync()
    opened(tmp_path / "also.db").close_sync()


@pytest.mark.sqlite_only
def test_created_files_and_directories_are_private(tmp_path: Path) -> None:
    store = opened(tmp_path / "new" / "pinbase.db")
    try:
        found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "new").iterdir()}
    finally:
        store.close_sync()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert found == {"pinbase.db": 0o600, "pinbase.db-wal": 0o600, "pinbase.db-shm": 0o600}


@pytest.mark.sqlite_only
def test_a_database_made_before_the_application_id_is_recognised_and_marked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    pinbase_file(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA application_id = 0")
    opened(path).close_sync()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)


@pytest.mark.sqlite_only
def test_the_start_up_check_is_bounded_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "big.db"
    pinbase_file(path, points=5000)
    with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
        assert run_check(conn, full=False, budget=None).complete
        # A slow disk, simulated: the check's row-by-row part sleeps (a millisecond per 100
        # steps, seconds in all), so it is still running when its budget runs out.
        conn.set_progress_handler(lambda: time.sleep(0.001) or 0, 100)
        stopped = run_check(conn, full=False, budget=0.05)
        assert not stopped.complete and not stopped.problems
        monkeypatch.setattr(checks, "START_BUDGET_S", 0.05)
        with caplog.at_level(logging.WARNING, "pinbase.store.sqlite"):
            checks.check_at_start(conn, path)
    assert "run `pinbase check`" in caplog.text


@pytest.mark.sqlite_only
def test_check_reads_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "pinbase.db"
    pinbase_file(path, points=100)
    before = path.read_bytes()
    report = asyncio.run(check_database(f"sqlite:///{path}", full=True))
    assert report.ok and report.schema_version >= 1
    assert report.checked == "integrity_check and foreign_key_check"
    assert path.read_bytes() == before
    with pytest.raises(StoreUnavailable, match="there is no database at"):
        asyncio.run(check_database(f"sqlite:///{tmp_path}/absent.db"))
    assert not (tmp_path / "absent.db").exists()


# --- a full database ----------------------------------------------------------------------------


def points(batch: int) -> ValueWrites:
    """One batch of distinct history points (about 10 KiB)."""
    return ValueWrites(
        history=[(1, 1, batch * 100 + i, 0, f'"{batch}:{i:0>400}"') for i in range(24)]
    )


@pytest.mark.sqlite_only
def test_a_full_database_refuses_writes_whole_and_recovers_in_the_same_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.db"
    acknowledged: list[int] = []
    refused: list[int] = []

    async def body() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            pages = await store._write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
            await store._write(lambda c: c.execute(f"PRAGMA max_page_count = {pages + 40}"))
            batch = 0
            while not refused and batch < 400:  # groups of concurrent writes until refused
                batches = list(range(batch, batch + 4))
                outcomes = await asyncio.gather(
                    *(store.write_values(points(b)) for b in batches), return_exceptions=True
                )
                for number, outcome in zip(batches, outcomes, strict=True):
                    if isinstance(outcome, StorageFull):
                        refused.append(number)
                    else:
                        assert outcome == 0, outcome
                        acknowledged.append(number)
                batch += 4
            assert refused and acknowledged
            failure = store.health.failure
            assert failure is not None and failure.kind == "full"
            assert "is full" in failure.reason and str(path) in failure.reason
            # The writer thread outlives the failures: with room again, writes go through.
            await store._write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
            await store.write_values(points(1000))
            acknowledged.append(1000)
            assert await store.health.status() is None
        finally:
            await store.close()

    asyncio.run(body())
    with closing(sqlite3.connect(path)) as conn:
        stored = {ts // 100 for (ts,) in conn.execute("SELECT ts FROM history")}
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert set(acknowledged) <= stored
    assert not set(refused) & stored


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres_only(backend: str) -> None:
    if backend != "postgresql" or not POSTGRES:
        pytest.skip("runs with the PostgreSQL half of the suite")


async def refusal(url: str) -> str:
    store = PostgresStore(url)
    with pytest.raises((StoreUnavailable, Foreign)) as caught:
        await store.open()
    await store.close()
    return str(caught.value)


def test_postgresql_refusals_say_what_is_wrong(backend: str) -> None:
    postgres_only(backend)
    base = POSTGRES.rsplit("/", 1)[0]
    server = base.rsplit("@", 1)[-1]

    async def body() -> None:
        assert "cannot reach PostgreSQL at 127.0.0.1:1: connection refused" in await refusal(
            "postgresql://postgres@127.0.0.1:1/x"
        )
        assert f"PostgreSQL at {server} refused the login" in await refusal(
            f"postgresql://no_such_role@{server}/postgres"
        )
        assert 'has no database "faults_missing"' in await refusal(f"{base}/faults_missing")
        admin = await asyncpg.connect(POSTGRES)
        try:
            await admin.execute("DROP DATABASE IF EXISTS faults_other")
            await admin.execute("CREATE DATABASE faults_other")
        finally:
            await admin.close()
        other = await asyncpg.connect(f"{base}/faults_other")
        try:
            await other.execute("CREATE TABLE invoices (id integer)")
            assert "holds other tables (invoices)" in await refusal(f"{base}/faults_other")
            tables = await other.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            assert [t[0] for t in tables] == ["invoices"]  # nothing of pinbase's created
        finally:
            await other.close()
        admin = await asyncpg.connect(POSTGRES)
        try:
            await admin.execute("DROP DATABASE faults_other")
        finally:
            await admin.close()

    asyncio.run(body())
