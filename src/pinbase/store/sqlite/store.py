"""The embedded store: one SQLite file in WAL mode.

One writer thread owns the only write connection. Callers hand it small functions; it runs every
function that is waiting in one transaction (group commit), each inside its own savepoint so that
one failing function does not undo the others, commits with `synchronous=FULL` (the WAL is
fsynced), and only then resolves the callers' futures. Readers use their own connections: short
point lookups run on the event loop's connection, long scans on a small pool of threads.

`sqlite3` errors never leave this module: the writer settles futures with the store's own errors
and every read translates (`_translated`, by SQLite's result code: a constraint is a `Conflict`,
a full disk `StorageFull`, a damaged file `Corrupt`, busy/locked/I/O/read-only
`StoreUnavailable`, anything else a plain `StoreError`), reporting the failures among them to
the store's `health`.

Failing writes. An error that is about the database rather than one write (a full disk, an I/O
error, a damaged page, a lock held too long) fails the whole group of the transaction it hit,
which is rolled back: SQLite may have rolled it back itself, and nothing of it is stored, so
none of it may be acknowledged, and none of it was. Only an error of one function (a broken
uniqueness rule) reruns the group with each function in its own savepoint. The writer thread
outlives every error, so writes succeed again as soon as the database takes them (space freed)
without a restart.

Opening runs the checks of `checks` (file system, whose database, damage, one write) before the
writer starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pinbase.domain.clock import now_ms
from pinbase.domain.events import SYSTEM_EVENT_TYPES, day_start
from pinbase.domain.model import Catalog
from pinbase.store.base import Store
from pinbase.store.catalog import CatalogCache, build_catalog
from pinbase.store.check import CheckReport
from pinbase.store.errors import Conflict, Corrupt, StorageFull, StoreError, StoreUnavailable
from pinbase.store.health import Health
from pinbase.store.paging import Piece, page_window, piece_params
from pinbase.store.records import (
    MAIL_OUTBOX,
    ClientRow,
    Entities,
    LoggedEvent,
    Notice,
    StoredValue,
    TokenRow,
    TokenState,
    UserRow,
    ValueWrites,
)
from pinbase.store.sql import ENTITIES, ROLLUP_DAY, SQLITE, Statements
from pinbase.store.sqlite.checks import (
    MARK,
    RECOVERED_FREE_BYTES,
    check_at_start,
    free_bytes,
    identify,
    inspect_file,
    mark,
    prepare_file,
    run_check,
    unwritable,
)
from pinbase.store.sqlite.schema import migrate

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]

MAX_GROUP = 512  # functions per group commit
CATALOG_RECHECK_S = 0.25
SQL = Statements(SQLITE)

_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_UNAVAILABLE = {
    sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_INTERRUPT,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOLFS,
    sqlite3.SQLITE_AUTH,
}


def _code(exc: BaseException) -> int:
    """SQLite's primary result code of a `sqlite3` error (0 when it has none)."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _translated(exc: sqlite3.Error, path: Path) -> StoreError:
    """The store's own error for a `sqlite3` error on the database at `path`, chosen by its
    primary result code."""
    code = _code(exc)
    error: StoreError
    if isinstance(exc, sqlite3.IntegrityError) or code == sqlite3.SQLITE_CONSTRAINT:
        error = Conflict(str(exc))
    elif code == sqlite3.SQLITE_FULL:
        error = StorageFull(f"the disk holding {path} is full ({exc}): free space there")
    elif code in _CORRUPT:
        error = Corrupt(f"the database file {path} is damaged ({exc}); restore it from a backup")
    elif code in _UNAVAILABLE:
        error = StoreUnavailable(f"the database {path} is unavailable ({exc})")
    else:
        error = StoreError(f"the database refused a statement ({exc})")
    error.__cause__ = exc
    return error


_OF_THE_DATABASE = _UNAVAILABLE | _CORRUPT | {sqlite3.SQLITE_FULL}


def _about_the_database(exc: BaseException) -> bool:
    """Whether an error in a write function is the database's (disk full, I/O, damage, lock),
    which fails the whole group, rather than the function's own (see the module)."""
    return isinstance(exc, sqlite3.Error) and _code(exc) in _OF_THE_DATABASE


class _Translating:
    """`with store._errors:` re-raises `sqlite3` errors as the store's own, and reports the
    failures among them to the store's health."""

    __slots__ = ("health", "path")

    def __init__(self, path: Path, health: Health | None) -> None:
        self.path = path
        self.health = health

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            error = _translated(exc, self.path)
            if isinstance(error, StoreUnavailable) and self.health is not None:
                self.health.failed(error)
            raise error


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    return _configured(_plain(path), readonly=readonly)


def _plain(path: Path) -> sqlite3.Connection:
    """A connection that has changed nothing in the file yet (`checks.identify` runs on it
    before `PRAGMA journal_mode` would turn another program's database to WAL)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _configured(conn: sqlite3.Connection, *, readonly: bool) -> sqlite3.Connection:
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

    def __init__(self, path: Path, health: Health) -> None:
        super().__init__(name="pinbase-sqlite-writer", daemon=True)
        self._path = path
        self._health = health
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start_and_wait(self) -> None:
        self.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error  # translated by the caller

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
        except Exception as exc:  # the database's error: nothing of the group is stored
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            error = self._translated(exc)
            outcomes = [(None, error)] * len(group)
        settled: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for (_, future, loop), (result, error) in zip(group, outcomes, strict=True):
            settled.setdefault(loop, []).append((future, result, error))
        for loop, items in settled.items():
            loop.call_soon_threadsafe(_settle_all, items)

    def _translated(self, exc: Exception) -> BaseException:
        """The error a caller sees for `exc`; failures of the database are reported to health."""
        if not isinstance(exc, sqlite3.Error):
            return exc
        error = _translated(exc, self._path)
        if isinstance(error, StoreUnavailable):
            self._health.failed(error)
        return error

    def _run_group(self, conn: sqlite3.Connection, group: list[Any]) -> list[tuple[Any, Any]]:
        """Run every function in one transaction; if one fails on its own, rerun them isolated.

        An error of the database itself is raised to `_commit`, which fails the whole group.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [(r, None) for r in _run_merged(conn, [fn for fn, _, _ in group])]
        except Exception as exc:
            if _about_the_database(exc):
                raise
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
                if _about_the_database(exc):
                    raise
                conn.execute("ROLLBACK TO item")
                conn.execute("RELEASE item")
                outcomes.append((None, self._translated(exc)))
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


class _WriteValues:
    """A value write; consecutive ones in a group are merged into one set of statements."""

    __slots__ = ("writes",)

    def __init__(self, writes: ValueWrites) -> None:
        self.writes = writes

    def __call__(self, conn: sqlite3.Connection) -> int:
        writes = self.writes
        changed = 0
        if writes.history:
            conn.executemany(SQL.add_history, writes.history)
        if writes.current:
            changed += conn.executemany(SQL.set_current, writes.current).rowcount
        if writes.current_if_newer:
            changed += conn.executemany(SQL.set_current_if_newer, writes.current_if_newer).rowcount
        if writes.outbox:
            conn.executemany(SQL.enqueue, writes.outbox)
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
            merged.outbox.extend(fn.writes.outbox)
            results.append(len(fn.writes.current))
            continue
        if merged is not None:
            _WriteValues(merged)(conn)
            merged = None
        results.append(fn(conn))
    if merged is not None:
        _WriteValues(merged)(conn)
    return results


def _segments(
    conn: sqlite3.Connection, device_id: int, ds_id: int, start: int, end: int
) -> list[Piece]:
    """[start, end] cut into counted pieces, ascending (see `paging`)."""
    rows = conn.execute(SQL.history_pieces, piece_params(device_id, ds_id, start, end))
    return [(low, high, points) for low, high, points in rows]


def check_file(path: Path, *, full: bool) -> CheckReport:
    """`pinbase check` of the database file at `path` (see `pinbase.store.check`): it refuses
    what opening would, then runs `checks.run_check` to the end, writing nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StoreUnavailable(f"there is no database at {path}") from None
    except OSError as exc:
        raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from None
    inspect_file(path, fd, empty_is_new=False)
    if reason := unwritable(path):
        raise StoreUnavailable(reason)
    with _Translating(path, None):
        conn = _plain(path)
        try:
            conn.execute("PRAGMA query_only = ON")
            version = identify(conn, path)
            result = run_check(conn, full=full, budget=None)
        finally:
            conn.close()
    return CheckReport(
        str(path),
        version,
        result.pragma,
        result.problems,
        result.seconds,
        size=path.stat().st_size,
        free=shutil.disk_usage(path.parent).free,
    )


class SqliteStore(Store):
    SQL = SQL

    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = Health(self.probe)
        self._errors = _Translating(path, self.health)
        self._writer: _Writer | None = None
        self._conn: sqlite3.Connection | None = None  # the event loop's read connection
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._pooled: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._catalog = CatalogCache(CATALOG_RECHECK_S)

    # lifecycle ----------------------------------------------------------------------------
    def open_sync(self) -> None:
        """Check the file (see `checks`), migrate it, write to it once, start the writer.

        A failure leaves nothing running, and reaches no health: a store that did not open
        serves nothing. Errors of access are explained from the file system's point of view.
        """
        prepare_file(self.path)
        try:
            with _Translating(self.path, None):
                conn = _plain(self.path)
                try:
                    if identify(conn, self.path):
                        check_at_start(conn, self.path)
                    _configured(conn, readonly=False)
                    migrate(conn)
                    mark(conn)
                finally:
                    conn.close()
                self._writer = _Writer(self.path, self.health)
                self._writer.start_and_wait()
                self._conn = _connect(self.path, readonly=True)
        except BaseException as exc:
            self.close_sync()
            if type(exc) is StoreUnavailable and (reason := unwritable(self.path)):
                raise StoreUnavailable(reason) from exc.__cause__
            raise

    async def open(self) -> None:
        self.open_sync()

    async def probe(self) -> None:
        """The small write of `Store.probe`; after a full disk, only once it has space again.

        A small write may fit where the refused one did not (into WAL space a failed
        transaction had already taken), so while the store is failing for a full disk the
        probe also wants `RECOVERED_FREE_BYTES` free on the file system: otherwise a nearly full
        disk would flip the health between full and ok with every write.
        """
        failure = self.health.failure
        if failure is not None and failure.kind == "full":
            free = await asyncio.to_thread(free_bytes, self.path.parent)
            if free < RECOVERED_FREE_BYTES:
                raise StorageFull(f"{free} bytes free on the disk holding {self.path}")

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(MARK, (now_ms(),))

        await self._write(run)

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
        await self.health.close()
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
            with self._errors:
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

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return await self._read_in_thread(run)

    # catalog ------------------------------------------------------------------------------
    def _load_catalog(self, conn: sqlite3.Connection) -> Catalog:
        conn.execute("BEGIN")
        try:
            generation = conn.execute(SQL.generation).fetchone()[0]
            rows = self._entities(conn)
        finally:
            conn.execute("COMMIT")
        return build_catalog(int(generation), rows)

    async def catalog(self) -> Catalog:
        async def generation() -> int:
            with self._errors:
                return int(self._read_conn().execute(SQL.generation).fetchone()[0])

        async def load() -> Catalog:
            with self._errors:
                return self._load_catalog(self._read_conn())

        return await self._catalog.get(generation, load)

    @staticmethod
    def _entities(conn: sqlite3.Connection) -> Entities:
        return Entities(
            **{
                table.name: [table.row(r) for r in conn.execute(SQL.select_entities[table.name])]
                for table in ENTITIES
            }
        )

    async def entities(self) -> Entities:
        with self._errors:
            return self._entities(self._read_conn())

    async def _change_catalog(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        # the single writer runs its functions one after another: a token issue runs wholly
        # before this change (whose revocation then covers it) or after it (and finds the
        # generation bumped)
        def run(conn: sqlite3.Connection) -> None:
            for statement, params in writes:
                conn.executemany(statement, params)

        await self._write(run)
        self._catalog.invalidate()

    # values -------------------------------------------------------------------------------
    async def write_values(self, writes: ValueWrites) -> int:
        changed: int = await self._write(_WriteValues(writes))
        return changed

    async def _run_writes(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for statement, params in writes:
                conn.executemany(statement, params)

        await self._write(run)

    async def _write_returning(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return await self._write(run)

    async def allocate_writer(self, after: int = 0) -> int:
        def run(conn: sqlite3.Connection) -> int:
            (row,) = conn.execute(SQL.allocate_writer, (after,)).fetchall()
            return int(row[0])

        return await self._write(run)

    async def drop_history_before(self, cutoff: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM history WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM history_counts WHERE n <= 0")
            for statement in SQL.forget_rollup_before:
                conn.execute(statement, (cutoff // ROLLUP_DAY,))

        await self._write(run)

    async def current_values(self, device_ids: Sequence[int]) -> dict[int, dict[int, StoredValue]]:
        result: dict[int, dict[int, StoredValue]] = {d: {} for d in device_ids}
        sql = "SELECT ds_id, value, updated_at FROM current_values WHERE device_id = ?"
        with self._errors:
            conn = self._read_conn()
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
        page_sql = SQL.history_page[ascending]

        def run(conn: sqlite3.Connection) -> tuple[int, list[tuple[int, str]]]:
            conn.execute("BEGIN")
            try:
                pieces = _segments(conn, device_id, ds_id, start, end)
                low, high, skip = page_window(pieces, start, end, offset, ascending)
                page = conn.execute(page_sql, (device_id, ds_id, low, high, limit, skip)).fetchall()
            finally:
                conn.execute("COMMIT")
            return sum(points for _, _, points in pieces), page

        return await self._read_in_thread(run)

    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(SQL.set_property, (device_id, ds_id, name, value))

        await self._write(run)

    async def set_meta_value(self, device_id: int, field_id: int, value: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(SQL.set_meta_value, (device_id, field_id, value))

        await self._write(run)

    async def erase_current(self, device_id: int, ds_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(SQL.erase_current, (device_id, ds_id)).rowcount > 0

        return await self._write(run)

    async def delete_property(self, device_id: int, ds_id: int, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(SQL.delete_property, (device_id, ds_id, name)).rowcount > 0

        return await self._write(run)

    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        result: dict[int, dict[str, str]] = {}
        with self._errors:
            for ds_id, name, value in self._read_conn().execute(SQL.properties, (device_id,)):
                result.setdefault(ds_id, {})[name] = value
        return result

    async def log_event(
        self,
        event: LoggedEvent,
        shown: bool,
        *,
        per_day: int,
        gap_ms: int,
        outbox: Sequence[tuple[int, str, int]] = (),
        notice: Notice | None = None,
    ) -> LoggedEvent | str:
        # the single writer runs one function at a time: the checks and the insert are atomic
        def run(conn: sqlite3.Connection) -> LoggedEvent | str:
            if event.type not in SYSTEM_EVENT_TYPES:
                since = day_start(event.ts)
                (count,) = conn.execute(SQL.events_since, (event.device_id, since)).fetchone()
                if count >= per_day:
                    return "per_day"
                recent = (event.device_id, event.code, event.ts - gap_ms)
                if conn.execute(SQL.event_code_since, recent).fetchone() is not None:
                    return "per_second"
            values = (*astuple(event)[1:7], shown)
            (new_id,) = conn.execute(SQL.insert_event, values).fetchone()
            rows = list(outbox)
            if notice is not None:
                last = conn.execute(SQL.notified_at, (event.device_id, event.code)).fetchone()
                if notice.due(last[0] if last is not None else None, event.ts):
                    conn.execute(SQL.set_notified, (event.device_id, event.code, event.ts))
                    rows.append((MAIL_OUTBOX, notice.context, event.ts))
            if rows:
                conn.executemany(SQL.enqueue, rows)
            return replace(event, id=int(new_id))

        return await self._write(run)

    async def resolve_events(
        self, device_id: int, by: str, key: int | str, ts: int, comment: str | None
    ) -> list[LoggedEvent]:
        def run(conn: sqlite3.Connection) -> list[LoggedEvent]:
            params = (device_id, key, ts, comment)
            return [LoggedEvent(*r) for r in conn.execute(SQL.resolve_event[by], params)]

        return await self._write(run)

    async def import_device_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        items = [tuple(row) for row in rows]
        if not items:
            return

        def run(conn: sqlite3.Connection) -> None:
            # AUTOINCREMENT keeps its counter above every id inserted, these included
            conn.executemany(SQL.import_events, items)

        await self._write(run)

    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        items = [tuple(row) for row in rows]
        if not items:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(SQL.set_property, items)

        await self._write(run)

    # OAuth --------------------------------------------------------------------------------
    def _one(self, sql: str, *params: Any) -> Any:
        with self._errors:
            return self._read_conn().execute(sql, params).fetchone()

    async def client(self, client_id: str) -> ClientRow | None:
        row = self._one(SQL.client, client_id)
        return ClientRow(*row) if row else None

    async def user_by_email(self, org_id: int, email: str) -> UserRow | None:
        row = self._one(SQL.user_by_email, org_id, email)
        return UserRow(*row) if row else None

    async def insert_tokens(
        self, tokens: Sequence[TokenRow], generation: int | None = None
    ) -> bool:
        rows = [astuple(t) for t in tokens]

        def run(conn: sqlite3.Connection) -> bool:
            # the single writer (BEGIN IMMEDIATE across processes) makes check and insert atomic
            if generation is not None and conn.execute(SQL.generation).fetchone()[0] != generation:
                return False
            conn.executemany(SQL.insert_token, rows)
            return True

        return await self._write(run)

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        row = self._one(SQL.access_token, token_hash, now)
        return TokenRow(*row) if row else None

    async def refresh_token(self, token_hash: str) -> TokenState | None:
        row = self._one(SQL.refresh_token, token_hash)
        return TokenState(TokenRow(*row[:7]), bool(row[7]), bool(row[8])) if row else None

    async def consume_refresh(
        self, token: TokenRow, now: int, successors: Sequence[TokenRow]
    ) -> bool:
        rows = [astuple(t) for t in successors]

        def run(conn: sqlite3.Connection) -> bool:
            # the single writer (BEGIN IMMEDIATE across processes) makes this check-and-set atomic
            if conn.execute(SQL.consume_refresh, (token.hash, now)).rowcount != 1:
                return False
            conn.executemany(SQL.insert_token, rows)
            return True

        return await self._write(run)

    async def revoke_family(self, family: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(SQL.revoke_family, (family,))

        await self._write(run)

    async def drop_tokens_expired_before(self, cutoff: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(SQL.drop_tokens, (cutoff,))

        await self._write(run)
