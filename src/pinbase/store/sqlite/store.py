"""The embedded store: one SQLite file in WAL mode.

One writer thread owns the only write connection. Callers hand it small functions; it runs every
function that is waiting in one transaction (group commit), each inside its own savepoint so that
one failing function does not undo the others, commits with `synchronous=FULL` (the WAL is
fsynced), and only then resolves the callers' futures. Readers use their own connections: short
point lookups run on the event loop's connection, long scans on a small pool of threads.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import astuple
from pathlib import Path
from typing import Any, TypeVar

from pinbase.domain.model import Catalog
from pinbase.store.base import COUNTED_TABLES, RefreshOutcome, Store, StoreUnavailable
from pinbase.store.catalog import CatalogCache, build_catalog
from pinbase.store.paging import Piece, bucket_bounds, page_window, split
from pinbase.store.records import (
    ClientRow,
    DatastreamRow,
    DeviceRow,
    Entities,
    OrgRow,
    ProductRow,
    RoleRow,
    StoredValue,
    TokenRow,
    UserRow,
    ValueWrites,
)
from pinbase.store.sqlite.schema import migrate

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

MAX_GROUP = 512  # functions per group commit
CATALOG_RECHECK_S = 0.25


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA mmap_size = 268435456")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


class _Writer(threading.Thread):
    """The single writer: group commit of queued functions."""

    _STOP = object()

    def __init__(self, path: Path) -> None:
        super().__init__(name="pinbase-sqlite-writer", daemon=True)
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start_and_wait(self) -> None:
        self.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return future

    def stop(self) -> None:
        self._queue.put(self._STOP)
        self.join()

    def run(self) -> None:
        try:
            conn = _connect(self._path)
        except BaseException as exc:  # reported to start_and_wait
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        try:
            while not stopping:
                group = [self._queue.get()]
                while len(group) < MAX_GROUP:
                    try:
                        group.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if group[-1] is self._STOP:
                    group.pop()
                    stopping = True
                elif any(item is self._STOP for item in group):
                    stopping = True
                    group = [item for item in group if item is not self._STOP]
                if group:
                    self._commit(conn, group)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, group: list[Any]) -> None:
        try:
            outcomes = self._run_group(conn, group)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"database write failed: {exc}")
            outcomes = [(None, failure)] * len(group)
        settled: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for (_, future, loop), (result, error) in zip(group, outcomes, strict=True):
            settled.setdefault(loop, []).append((future, result, error))
        for loop, items in settled.items():
            loop.call_soon_threadsafe(_settle_all, items)

    @staticmethod
    def _run_group(conn: sqlite3.Connection, group: list[Any]) -> list[tuple[Any, Any]]:
        """Run every function in one transaction; if one fails, rerun them isolated."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [(r, None) for r in _run_merged(conn, [fn for fn, _, _ in group])]
        except Exception:
            conn.execute("ROLLBACK")
        else:
            conn.execute("COMMIT")
            return results
        outcomes: list[tuple[Any, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        for fn, _, _ in group:
            conn.execute("SAVEPOINT item")
            try:
                result = fn(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO item")
                conn.execute("RELEASE item")
                outcomes.append((None, exc))
            else:
                conn.execute("RELEASE item")
                outcomes.append((result, None))
        conn.execute("COMMIT")
        return outcomes


def _settle_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in items:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


# --- write functions (run on the writer thread) ------------------------------------------

_SET_CURRENT = (
    "INSERT INTO current_values (device_id, ds_id, value, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (device_id, ds_id) DO UPDATE SET "
    "value = excluded.value, updated_at = excluded.updated_at"
)
_SET_CURRENT_IF_NEWER = _SET_CURRENT + " WHERE excluded.updated_at >= current_values.updated_at"
_ADD_HISTORY = (
    "INSERT INTO history (device_id, ds_id, ts, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (device_id, ds_id, ts) DO UPDATE SET value = excluded.value"
)


class _WriteValues:
    """A value write; consecutive ones in a group are merged into one set of statements."""

    __slots__ = ("writes",)

    def __init__(self, writes: ValueWrites) -> None:
        self.writes = writes

    def __call__(self, conn: sqlite3.Connection) -> int:
        writes = self.writes
        changed = 0
        if writes.history:
            conn.executemany(_ADD_HISTORY, writes.history)
        if writes.current:
            changed += conn.executemany(_SET_CURRENT, writes.current).rowcount
        if writes.current_if_newer:
            changed += conn.executemany(_SET_CURRENT_IF_NEWER, writes.current_if_newer).rowcount
        return changed


def _run_merged(
    conn: sqlite3.Connection, fns: list[Callable[[sqlite3.Connection], Any]]
) -> list[Any]:
    """Run functions in order; runs of plain value writes share their statements."""
    results: list[Any] = []
    merged: ValueWrites | None = None
    for fn in fns:
        if isinstance(fn, _WriteValues) and not fn.writes.current_if_newer:
            if merged is None:
                merged = ValueWrites()
            merged.history.extend(fn.writes.history)
            merged.current.extend(fn.writes.current)
            results.append(len(fn.writes.current))
            continue
        if merged is not None:
            _WriteValues(merged)(conn)
            merged = None
        results.append(fn(conn))
    if merged is not None:
        _WriteValues(merged)(conn)
    return results


_UPSERTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("organizations", "id", ("id", "name")),
    ("roles", "org_id, name", ("org_id", "name", "permissions")),
    ("clients", "client_id", ("client_id", "org_id", "secret_hash")),
    ("users", "id", ("id", "org_id", "email", "password_hash", "role")),
    ("products", "id", ("id", "org_id", "name", "parent_id")),
    (
        "datastreams",
        "product_id, id",
        (
            "product_id",
            "id",
            "pin",
            "label",
            "alias",
            "type",
            "min",
            "max",
            "decimals",
            "units",
            "options",
            "history",
        ),
    ),
    ("devices", "id", ("id", "org_id", "product_id", "name", "owner_id", "token_hash")),
)


def _upsert_sql(table: str, key: str, columns: tuple[str, ...]) -> str:
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    marks = ", ".join("?" for _ in columns)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def _row_values(row: Any) -> tuple[Any, ...]:
    if isinstance(row, RoleRow):
        return (row.org_id, row.name, ",".join(row.permissions))
    return astuple(row)


def _upsert_entities(rows: Entities) -> WriteFn:
    def run(conn: sqlite3.Connection) -> None:
        for table, key, columns in _UPSERTS:
            items = getattr(rows, table)
            if items:
                conn.executemany(_upsert_sql(table, key, columns), [_row_values(r) for r in items])
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'catalog_generation'")

    return run


_COUNT_RANGE = (
    "SELECT count(*) FROM history WHERE device_id = ? AND ds_id = ? AND ts BETWEEN ? AND ?"
)
_BUCKETS = (
    "SELECT bucket, n FROM history_counts "
    "WHERE device_id = ? AND ds_id = ? AND bucket > ? AND bucket < ? ORDER BY bucket"
)


def _segments(
    conn: sqlite3.Connection, device_id: int, ds_id: int, start: int, end: int
) -> list[Piece]:
    """[start, end] cut into counted pieces, ascending (see `paging`)."""
    series = (device_id, ds_id)

    def count(low: int, high: int) -> int:
        return int(conn.execute(_COUNT_RANGE, (*series, low, high)).fetchone()[0])

    parts = split(start, end)
    if parts is None:
        return [(start, end, count(start, end))]
    first, last, head, tail = parts
    pieces = [(*head, count(*head))]
    for bucket, points in conn.execute(_BUCKETS, (*series, first, last)):
        if points:
            pieces.append((*bucket_bounds(bucket), points))
    pieces.append((*tail, count(*tail)))
    return pieces


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: _Writer | None = None
        self._conn: sqlite3.Connection | None = None  # the event loop's read connection
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._pooled: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._catalog = CatalogCache(CATALOG_RECHECK_S)

    # lifecycle ----------------------------------------------------------------------------
    def open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        try:
            migrate(conn)
        finally:
            conn.close()
        self._writer = _Writer(self.path)
        self._writer.start_and_wait()
        self._conn = _connect(self.path, readonly=True)

    async def open(self) -> None:
        self.open_sync()

    def close_sync(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        with self._pool_lock:
            for conn in self._pooled:
                conn.close()
            self._pooled.clear()

    async def close(self) -> None:
        self.close_sync()

    # plumbing -----------------------------------------------------------------------------
    def _read_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("the store is closed")
        return self._conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        return await self._writer.submit(fn)

    async def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = _connect(self.path, readonly=True)
                with self._pool_lock:
                    self._pooled.append(conn)
            try:
                return fn(conn)
            finally:
                self._pool.put(conn)

        return await asyncio.to_thread(run)

    # catalog ------------------------------------------------------------------------------
    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'catalog_generation'").fetchone()
        return int(row[0])

    def _load_catalog(self, conn: sqlite3.Connection) -> Catalog:
        conn.execute("BEGIN")
        try:
            generation = self._generation(conn)
            rows = self._entities(conn)
        finally:
            conn.execute("COMMIT")
        return build_catalog(generation, rows)

    async def catalog(self) -> Catalog:
        async def generation() -> int:
            return self._generation(self._read_conn())

        async def load() -> Catalog:
            return self._load_catalog(self._read_conn())

        return await self._catalog.get(generation, load)

    @staticmethod
    def _entities(conn: sqlite3.Connection) -> Entities:
        def rows(sql: str) -> list[Any]:
            return conn.execute(sql).fetchall()

        return Entities(
            organizations=[OrgRow(*r) for r in rows("SELECT id, name FROM organizations")],
            roles=[
                RoleRow(r[0], r[1], tuple(p for p in r[2].split(",") if p))
                for r in rows("SELECT org_id, name, permissions FROM roles")
            ],
            clients=[
                ClientRow(*r) for r in rows("SELECT client_id, org_id, secret_hash FROM clients")
            ],
            users=[
                UserRow(*r)
                for r in rows("SELECT id, org_id, email, password_hash, role FROM users")
            ],
            products=[
                ProductRow(*r) for r in rows("SELECT id, org_id, name, parent_id FROM products")
            ],
            datastreams=[
                DatastreamRow(
                    product_id=r[0],
                    id=r[1],
                    pin=r[2],
                    label=r[3],
                    alias=r[4],
                    type=r[5],
                    min=r[6],
                    max=r[7],
                    decimals=r[8],
                    units=r[9],
                    options=r[10],
                    history=bool(r[11]),
                )
                for r in rows(
                    "SELECT product_id, id, pin, label, alias, type, min, max, decimals, units, "
                    "options, history FROM datastreams"
                )
            ],
            devices=[
                DeviceRow(*r)
                for r in rows(
                    "SELECT id, org_id, product_id, name, owner_id, token_hash FROM devices"
                )
            ],
        )

    async def entities(self) -> Entities:
        return self._entities(self._read_conn())

    async def upsert_entities(self, rows: Entities) -> None:
        await self._write(_upsert_entities(rows))
        self._catalog.invalidate()

    # values -------------------------------------------------------------------------------
    async def write_values(self, writes: ValueWrites) -> int:
        changed: int = await self._write(_WriteValues(writes))
        return changed

    async def drop_history_before(self, cutoff: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM history WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM history_counts WHERE n <= 0")

        await self._write(run)

    async def current_values(self, device_ids: Sequence[int]) -> dict[int, dict[int, StoredValue]]:
        conn = self._read_conn()
        result: dict[int, dict[int, StoredValue]] = {d: {} for d in device_ids}
        sql = "SELECT ds_id, value, updated_at FROM current_values WHERE device_id = ?"
        for device_id in result:
            values = result[device_id]
            for ds_id, value, updated_at in conn.execute(sql, (device_id,)):
                values[ds_id] = StoredValue(value, updated_at)
        return result

    async def history(
        self,
        device_id: int,
        ds_id: int,
        start: int,
        end: int,
        offset: int,
        limit: int,
        ascending: bool,
    ) -> tuple[int, list[tuple[int, str]]]:
        order = "ASC" if ascending else "DESC"

        def run(conn: sqlite3.Connection) -> tuple[int, list[tuple[int, str]]]:
            conn.execute("BEGIN")
            try:
                pieces = _segments(conn, device_id, ds_id, start, end)
                low, high, skip = page_window(pieces, start, end, offset, ascending)
                page = conn.execute(
                    "SELECT ts, value FROM history "
                    "WHERE device_id = ? AND ds_id = ? AND ts BETWEEN ? AND ? "
                    f"ORDER BY ts {order} LIMIT ? OFFSET ?",
                    (device_id, ds_id, low, high, limit, skip),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
            return sum(points for _, _, points in pieces), page

        return await self._read_in_thread(run)

    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO properties (device_id, ds_id, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (device_id, ds_id, name) DO UPDATE SET value = excluded.value",
                (device_id, ds_id, name, value),
            )

        await self._write(run)

    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        result: dict[int, dict[str, str]] = {}
        for ds_id, name, value in self._read_conn().execute(
            "SELECT ds_id, name, value FROM properties WHERE device_id = ? ORDER BY ds_id, name",
            (device_id,),
        ):
            result.setdefault(ds_id, {})[name] = value
        return result

    # OAuth --------------------------------------------------------------------------------
    async def client(self, client_id: str) -> ClientRow | None:
        row = (
            self._read_conn()
            .execute(
                "SELECT client_id, org_id, secret_hash FROM clients WHERE client_id = ?",
                (client_id,),
            )
            .fetchone()
        )
        return ClientRow(*row) if row else None

    async def user_by_email(self, org_id: int, email: str) -> UserRow | None:
        row = (
            self._read_conn()
            .execute(
                "SELECT id, org_id, email, password_hash, role FROM users "
                "WHERE org_id = ? AND email = ?",
                (org_id, email),
            )
            .fetchone()
        )
        return UserRow(*row) if row else None

    async def insert_tokens(self, tokens: Sequence[TokenRow]) -> None:
        rows = [astuple(t) for t in tokens]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO oauth_tokens "
                "(hash, kind, client_id, org_id, user_id, family, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._write(run)

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        row = (
            self._read_conn()
            .execute(
                "SELECT hash, kind, client_id, org_id, user_id, family, expires_at "
                "FROM oauth_tokens WHERE hash = ? AND kind = 'access' AND revoked = 0 "
                "AND expires_at > ?",
                (token_hash, now),
            )
            .fetchone()
        )
        return TokenRow(*row) if row else None

    async def rotate_refresh(
        self,
        token_hash: str,
        client_id: str,
        now: int,
        successors: Callable[[TokenRow], Sequence[TokenRow]],
    ) -> tuple[RefreshOutcome, str | None]:
        def run(conn: sqlite3.Connection) -> tuple[RefreshOutcome, str | None]:
            row = conn.execute(
                "SELECT hash, kind, client_id, org_id, user_id, family, expires_at, used, revoked "
                "FROM oauth_tokens WHERE hash = ? AND kind = 'refresh'",
                (token_hash,),
            ).fetchone()
            if row is None or row[2] != client_id:
                return RefreshOutcome.UNKNOWN, None
            token = TokenRow(*row[:7])
            if row[7] or row[8]:
                conn.execute(
                    "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?", (token.family,)
                )
                return RefreshOutcome.REUSED, token.family
            if token.expires_at <= now:
                return RefreshOutcome.UNKNOWN, token.family
            conn.execute("UPDATE oauth_tokens SET used = 1 WHERE hash = ?", (token_hash,))
            conn.executemany(
                "INSERT INTO oauth_tokens "
                "(hash, kind, client_id, org_id, user_id, family, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [astuple(t) for t in successors(token)],
            )
            conn.execute("DELETE FROM oauth_tokens WHERE expires_at < ?", (now - 86_400_000,))
            return RefreshOutcome.ROTATED, token.family

        return await self._write(run)

    # migration ----------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            conn.execute("BEGIN")  # one snapshot for every table
            try:
                return {
                    table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                    for table in COUNTED_TABLES
                }
            finally:
                conn.execute("COMMIT")

        return await self._read_in_thread(run)

    async def _export(
        self, table: str, key: tuple[str, ...], rest: tuple[str, ...], batch: int
    ) -> AsyncIterator[list[Any]]:
        """Rows of `table` as (*key, *rest) tuples in key order, `batch` at a time.

        Each batch is one indexed range read (`(key) > (last key)`) on a pooled reader thread,
        so a table of any size is streamed without holding it, or the event loop.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        columns = ", ".join((*key, *rest))
        order = ", ".join(key)
        first = f"SELECT {columns} FROM {table} ORDER BY {order} LIMIT ?"
        after = (
            f"SELECT {columns} FROM {table} WHERE ({order}) > ({', '.join('?' for _ in key)}) "
            f"ORDER BY {order} LIMIT ?"
        )
        last: tuple[Any, ...] | None = None
        while True:
            if last is None:
                rows = await self._read_in_thread(self._fetcher(first, (batch,)))
            else:
                rows = await self._read_in_thread(self._fetcher(after, (*last, batch)))
            if rows:
                yield rows
            if len(rows) < batch:
                return
            last = tuple(rows[-1][: len(key)])

    @staticmethod
    def _fetcher(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], list[Any]]:
        def run(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(sql, params).fetchall()

        return run

    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        items = [tuple(row) for row in rows]
        if not items:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO properties (device_id, ds_id, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (device_id, ds_id, name) DO UPDATE SET value = excluded.value",
                items,
            )

        await self._write(run)
