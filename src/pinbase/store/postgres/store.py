"""The PostgreSQL store, for deployments that outgrow one machine.

asyncpg with a connection pool; statements are prepared and cached per connection by asyncpg.
A value write is one statement (data-modifying CTEs over `unnest` arrays), so it commits in one
round trip and several server processes may write at once; rows are de-duplicated and sorted by
key first, so concurrent writers always lock rows in the same order. History is partitioned by
month (see `postgres_schema`).

asyncpg's errors never leave this module (`_translated`): lost connections and an unreachable
or failing server surface as `StoreUnavailable` (HTTP 503; the pool reconnects by itself when
the database is back), a full disk (`disk_full`, 53100) as `StorageFull` (HTTP 507), integrity
violations as `Conflict`, corruption as `Corrupt`; the failures among them are reported to the
store's `health`. Opening explains a refusal in one line (`checks`): unreachable, login refused,
no such database, another application's database.

Refresh tokens of one family are serialised by a transaction-scoped advisory lock on the family
(`consume_refresh`, `revoke_family`): under READ COMMITTED a revocation running while a rotation
inserts successors would otherwise miss the successors, which commit after its snapshot. For the
same reason a catalog change (which may revoke the tokens of users and clients) holds an
exclusive advisory lock that every token issue (`consume_refresh`, a grant's `insert_tokens`)
takes shared: an issue either commits before the change's revocation runs, which then sees its
tokens, or reads the generation the change bumped and issues nothing.

Notifications: `pinbase_catalog` (a catalog change, sent in its transaction), `pinbase_events`
(the relay's value events) and `pinbase_tokens` (a revoked token family, sent in the revoking
transaction, so it is delivered exactly when the revocation commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import astuple, replace
from typing import Any

import asyncpg

from pinbase.domain.clock import now_ms
from pinbase.domain.events import SYSTEM_EVENT_TYPES, day_start
from pinbase.domain.model import Catalog
from pinbase.store.base import Store
from pinbase.store.catalog import CatalogCache, build_catalog
from pinbase.store.check import CheckReport
from pinbase.store.errors import (
    BadUrl,
    Conflict,
    Corrupt,
    StorageFull,
    StoreError,
    StoreUnavailable,
)
from pinbase.store.health import Health
from pinbase.store.paging import page_window, piece_params
from pinbase.store.postgres import checks
from pinbase.store.postgres.schema import (
    FIRST_YEAR,
    drop_partitions_before,
    ensure_partition,
    migrate,
    month_bounds,
    month_of,
)
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
from pinbase.store.sql import (
    CURRENT,
    ENTITIES,
    HISTORY,
    ONLY_NEWER,
    POSTGRES,
    PROPERTIES,
    ROLLUP_DAY,
    Statements,
    upsert,
)

log = logging.getLogger("pinbase.store.postgres.store")

CATALOG_CHANNEL = "pinbase_catalog"
EVENTS_CHANNEL = "pinbase_events"
TOKENS_CHANNEL = "pinbase_tokens"
CATALOG_RECHECK_S = 1.0  # a fallback: catalog changes are also notified
ACQUIRE_TIMEOUT_S = 10.0
PARTITIONS_AHEAD = 3  # months created ahead of time at start-up

_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)
_FAILING: tuple[type[BaseException], ...] = (
    asyncpg.OperatorInterventionError,  # shutting down, statement cancelled
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.TransactionRollbackError,  # deadlock or serialization failure: retry
    asyncpg.ReadOnlySQLTransactionError,  # a standby
    asyncpg.LockNotAvailableError,
)
_CORRUPT: tuple[type[BaseException], ...] = (
    asyncpg.DataCorruptedError,
    asyncpg.IndexCorruptedError,
)
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (*_UNREACHABLE, asyncpg.PostgresError)


def _translated(exc: BaseException) -> StoreError:
    """The store's own error for an error of asyncpg or of the connection under it."""
    error: StoreError
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        detail = getattr(exc, "detail", None)
        error = Conflict(f"{exc} ({detail})" if detail else str(exc))
    elif isinstance(exc, asyncpg.DiskFullError):
        error = StorageFull(f"the disk of the PostgreSQL server is full ({exc}): free space there")
    elif isinstance(exc, _CORRUPT):
        error = Corrupt(f"the database is damaged ({exc})")
    elif isinstance(exc, _UNREACHABLE):
        error = StoreUnavailable(f"cannot reach PostgreSQL: {exc}")
    elif isinstance(exc, _FAILING):
        error = StoreUnavailable(f"PostgreSQL is unavailable: {exc}")
    else:
        error = StoreError(f"PostgreSQL refused a statement: {exc}")
    error.__cause__ = exc
    return error


SQL = Statements(POSTGRES)
_HISTORY = upsert(
    HISTORY,
    "SELECT * FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::bigint[], $5::text[])",
)
_CURRENT = upsert(
    CURRENT, "SELECT * FROM unnest($6::integer[], $7::integer[], $8::text[], $9::bigint[])"
)
_WRITE = {
    # one statement, one round trip, one transaction
    only_newer: f"WITH h AS ({_HISTORY} RETURNING 1), "
    f"c AS ({_CURRENT}{ONLY_NEWER if only_newer else ''} RETURNING 1) "
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM c)"
    for only_newer in (False, True)
}
_IMPORT_PROPERTIES = upsert(
    PROPERTIES, "SELECT * FROM unnest($1::integer[], $2::integer[], $3::text[], $4::text[])"
)
_FAMILY_LOCK = "SELECT pg_advisory_xact_lock(1953459819, hashtext($1))"  # 1953459819: 'toke'
_EVENTS_LOCK = 0x70626576  # 'pbev', with the device id: one device's events at a time
_ISSUE_KEY = 0x70627276  # 'pbrv'; one 64-bit key: a key space apart from the two-key locks
_CHANGING = f"SELECT pg_advisory_xact_lock({_ISSUE_KEY})"
_ISSUING = f"SELECT pg_advisory_xact_lock_shared({_ISSUE_KEY})"
_MARK = (
    "INSERT INTO meta (key, value) VALUES ('written_at', $1) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
"""The health probe's small write."""
_TABLES = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 1"
)


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """pinbase keeps no session state on pooled connections: skip the reset on release."""

    def get_reset_query(self) -> str:
        return ""


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


class PostgresStore(Store):
    SQL = SQL

    def __init__(self, url: str) -> None:
        self.url = url
        self.health = Health(self.probe)
        self._pool: asyncpg.Pool | None = None
        self._catalog = CatalogCache(CATALOG_RECHECK_S)
        self._months: set[tuple[int, int]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._receivers: list[Callable[[str], None]] = []
        self._revocation_watchers: list[Callable[[str | None], None]] = []

    # lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=2,
                max_size=16,
                command_timeout=60,
                connection_class=_PooledConnection,
            )
            async with self._pool.acquire() as conn:
                await checks.ensure_pinbase(conn, self.url)
                await migrate(conn)
                await self._prepare_partitions(conn)
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise (checks.explained(exc, self.url) or _translated(exc)) from exc
        except ValueError as exc:  # a URL asyncpg cannot parse
            await self.close()
            raise BadUrl(f"bad PostgreSQL URL: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._listener = asyncio.create_task(self._listen(), name="pinbase-pg-listener")

    async def probe(self) -> None:
        async with self._conn() as conn:
            await conn.execute(_MARK, now_ms())

    async def close(self) -> None:
        await self.health.close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _prepare_partitions(self, conn: asyncpg.Connection) -> None:
        now = now_ms()
        month = month_of(now)
        if month is None:
            return
        year, number = month
        for _ in range(PARTITIONS_AHEAD + 1):
            await self._ensure_month(conn, year, number)
            year, number = (year + 1, 1) if number == 12 else (year, number + 1)

    async def drop_history_before(self, cutoff: int) -> None:
        """Drop whole monthly partitions older than `cutoff`, and old default-partition rows."""
        async with self._conn() as conn:
            for name in await drop_partitions_before(conn, cutoff):
                self._months.discard((int(name[9:13]), int(name[14:16])))
                log.info("retention: dropped %s", name)
            # through the parent, so that the counting trigger sees the rows go; the bound
            # leaves only the default partition's old points (before the monthly ones) to scan
            first_month = month_bounds(FIRST_YEAR, 1)[0]
            bound = min(cutoff, first_month)
            async with conn.transaction():
                await conn.execute("DELETE FROM history WHERE ts < $1", bound)
                for statement in SQL.forget_rollup_before:
                    await conn.execute(statement, bound // ROLLUP_DAY)

    async def _ensure_month(self, conn: asyncpg.Connection, year: int, month: int) -> None:
        if (year, month) not in self._months:
            await ensure_partition(conn, year, month)
            self._months.add((year, month))

    async def _listen(self) -> None:
        """Hold a LISTEN connection for catalog changes; reconnect when it drops."""
        while True:
            try:
                conn = await asyncpg.connect(self.url)
            except _DRIVER_ERRORS:
                await asyncio.sleep(1.0)
                continue
            try:
                await self._listen_on(conn)
            except _DRIVER_ERRORS:
                pass
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(1.0)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CATALOG_CHANNEL, lambda *_: self._catalog.invalidate())
        await conn.add_listener(EVENTS_CHANNEL, self._received)
        await conn.add_listener(TOKENS_CHANNEL, self._family_revoked)
        self._catalog.invalidate()  # whatever changed while no one was listening
        for forget in self._revocation_watchers:
            forget(None)
        await lost.wait()

    def _family_revoked(self, _conn: object, _pid: int, _channel: str, family: str) -> None:
        for forget in self._revocation_watchers:
            forget(family)

    def watch_revocations(self, forget: Callable[[str | None], None]) -> None:
        self._revocation_watchers.append(forget)

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for receive in self._receivers:
            receive(payload)

    # shared state of several processes --------------------------------------------------
    def channel(self) -> PostgresStore:
        return self

    async def notify(self, payload: str) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)

    def subscribe(self, receive: Callable[[str], None]) -> None:
        self._receivers.append(receive)

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        async with self._conn() as conn:
            wait: float = await conn.fetchval("SELECT take_token($1, $2, $3)", key, rate, burst)
            return wait

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            error = _translated(exc)
            if isinstance(error, StoreUnavailable):
                self.health.failed(error)
            raise error from exc

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *params)]

    # catalog ------------------------------------------------------------------------------
    async def catalog(self) -> Catalog:
        async def generation() -> int:
            async with self._conn() as conn:
                value: int = await conn.fetchval(SQL.generation)
                return value

        async def load() -> Catalog:
            async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
                value = await conn.fetchval(SQL.generation)
                rows = await self._entities(conn)
            return build_catalog(int(value), rows)

        return await self._catalog.get(generation, load)

    @staticmethod
    async def _entities(conn: asyncpg.Connection) -> Entities:
        return Entities(
            **{
                table.name: [
                    table.row(r) for r in await conn.fetch(SQL.select_entities[table.name])
                ]
                for table in ENTITIES
            }
        )

    async def entities(self) -> Entities:
        async with self._conn() as conn:
            return await self._entities(conn)

    async def _change_catalog(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_CHANGING)
            for statement, params in writes:
                await conn.executemany(statement, params)
            await conn.execute(f"NOTIFY {CATALOG_CHANNEL}")
        self._catalog.invalidate()

    # values -------------------------------------------------------------------------------
    async def write_values(self, writes: ValueWrites) -> int:
        history = sorted({(d, s, t, q): v for d, s, t, q, v in writes.history}.items())
        current = sorted({(d, s): (v, t) for d, s, v, t in writes.current}.items())
        newer: dict[tuple[int, int], tuple[str, int]] = {}
        for d, s, v, t in writes.current_if_newer:
            if (d, s) not in newer or t >= newer[(d, s)][1]:
                newer[(d, s)] = (v, t)
        history_rows = [(d, s, t, q, v) for (d, s, t, q), v in history]
        async with self._conn() as conn:
            await self._ensure_partitions(conn, [row[2] for row in history_rows])
            history_columns = _columns(history_rows, 5)
            batches = [(False, current), (True, sorted(newer.items()))]
            batches = [b for b in batches if b[1]] or [(False, [])]
            changed = 0
            # one statement is its own transaction; two need an explicit one
            several = len(batches) > 1 or writes.outbox
            atomic = conn.transaction() if several else contextlib.nullcontext()
            async with atomic:
                for only_newer, items in batches:
                    current_rows = [(d, s, v, t) for (d, s), (v, t) in items]
                    counts = await conn.fetchrow(
                        _WRITE[only_newer], *history_columns, *_columns(current_rows, 4)
                    )
                    changed += counts[1]
                    history_columns = [[], [], [], [], []]
                if writes.outbox:
                    await conn.executemany(SQL.enqueue, writes.outbox)
            return changed

    async def _run_writes(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        async with self._conn() as conn, conn.transaction():
            for statement, params in writes:
                await conn.executemany(statement, params)

    async def _write_returning(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *params)]

    async def allocate_writer(self, after: int = 0) -> int:
        async with self._conn() as conn:
            writer: int = await conn.fetchval(SQL.allocate_writer, after)
            return writer

    async def _ensure_partitions(self, conn: asyncpg.Connection, stamps: Sequence[int]) -> None:
        if not stamps:
            return
        low, high = min(stamps), max(stamps)
        first, last = month_of(low), month_of(high)
        if first is not None and first == last and first in self._months:
            return
        months = {m for m in (month_of(t) for t in stamps) if m is not None}
        for year, month in sorted(months):
            await self._ensure_month(conn, year, month)

    async def current_values(self, device_ids: Sequence[int]) -> dict[int, dict[int, StoredValue]]:
        result: dict[int, dict[int, StoredValue]] = {d: {} for d in device_ids}
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT device_id, ds_id, value, updated_at FROM current_values "
                "WHERE device_id = ANY($1::integer[])",
                list(result),
            )
        for device_id, ds_id, value, updated_at in rows:
            result[device_id][ds_id] = StoredValue(value, updated_at)
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
        async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
            pieces = [
                (low, high, points)
                for low, high, points in await conn.fetch(
                    SQL.history_pieces, *piece_params(device_id, ds_id, start, end)
                )
            ]
            low, high, skip = page_window(pieces, start, end, offset, ascending)
            rows = await conn.fetch(
                SQL.history_page[ascending], device_id, ds_id, low, high, limit, skip
            )
        return sum(p[2] for p in pieces), [(r[0], r[1]) for r in rows]

    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        async with self._conn() as conn:
            await conn.execute(SQL.set_property, device_id, ds_id, name, value)

    async def set_meta_value(self, device_id: int, field_id: int, value: str) -> None:
        async with self._conn() as conn:
            await conn.execute(SQL.set_meta_value, device_id, field_id, value)

    async def erase_current(self, device_id: int, ds_id: int) -> bool:
        async with self._conn() as conn:
            status: str = await conn.execute(SQL.erase_current, device_id, ds_id)
        return status != "DELETE 0"

    async def delete_property(self, device_id: int, ds_id: int, name: str) -> bool:
        async with self._conn() as conn:
            status: str = await conn.execute(SQL.delete_property, device_id, ds_id, name)
        return status != "DELETE 0"

    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        async with self._conn() as conn:
            rows = await conn.fetch(SQL.properties, device_id)
        result: dict[int, dict[str, str]] = {}
        for ds_id, name, value in rows:
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
        async with self._conn() as conn, conn.transaction():
            if event.type not in SYSTEM_EVENT_TYPES:
                # one device's events are logged one at a time, whichever process logs them
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)", _EVENTS_LOCK, event.device_id
                )
                since = day_start(event.ts)
                if await conn.fetchval(SQL.events_since, event.device_id, since) >= per_day:
                    return "per_day"
                recent = (event.device_id, event.code, event.ts - gap_ms)
                if await conn.fetchval(SQL.event_code_since, *recent) is not None:
                    return "per_second"
            new_id = await conn.fetchval(SQL.insert_event, *astuple(event)[1:7], shown)
            rows = list(outbox)
            if notice is not None:
                last = await conn.fetchval(SQL.notified_at, event.device_id, event.code)
                if notice.due(last, event.ts):
                    await conn.execute(SQL.set_notified, event.device_id, event.code, event.ts)
                    rows.append((MAIL_OUTBOX, notice.context, event.ts))
            if rows:
                await conn.executemany(SQL.enqueue, rows)
        return replace(event, id=int(new_id))

    async def resolve_events(
        self, device_id: int, by: str, key: int | str, ts: int, comment: str | None
    ) -> list[LoggedEvent]:
        async with self._conn() as conn:
            rows = await conn.fetch(SQL.resolve_event[by], device_id, key, ts, comment)
        return [LoggedEvent(*row) for row in rows]

    async def import_device_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        async with self._conn() as conn, conn.transaction():
            await conn.executemany(SQL.import_events, [tuple(row) for row in rows])
            # the identity goes on above every id copied in
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('device_events', 'id'), "
                "(SELECT max(id) FROM device_events))"
            )

    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        # sorted by key and de-duplicated, like write_values: concurrent writers lock in order
        items = sorted({(d, s, n): v for d, s, n, v in rows}.items())
        if not items:
            return
        async with self._conn() as conn:
            await conn.execute(
                _IMPORT_PROPERTIES,
                [d for (d, _, _), _ in items],
                [s for (_, s, _), _ in items],
                [n for (_, _, n), _ in items],
                [v for _, v in items],
            )

    # OAuth --------------------------------------------------------------------------------
    async def _one(self, sql: str, *params: Any) -> Any:
        async with self._conn() as conn:
            return await conn.fetchrow(sql, *params)

    async def client(self, client_id: str) -> ClientRow | None:
        row = await self._one(SQL.client, client_id)
        return ClientRow(*row) if row else None

    async def user_by_email(self, org_id: int, email: str) -> UserRow | None:
        row = await self._one(SQL.user_by_email, org_id, email)
        return UserRow(*row) if row else None

    async def insert_tokens(
        self, tokens: Sequence[TokenRow], generation: int | None = None
    ) -> bool:
        rows = [astuple(t) for t in tokens]
        async with self._conn() as conn, conn.transaction():
            if generation is not None:
                await conn.execute(_ISSUING)
                if await conn.fetchval(SQL.generation) != generation:
                    return False
            await conn.executemany(SQL.insert_token, rows)
            return True

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        row = await self._one(SQL.access_token, token_hash, now)
        return TokenRow(*row) if row else None

    async def refresh_token(self, token_hash: str) -> TokenState | None:
        row = await self._one(SQL.refresh_token, token_hash)
        return TokenState(TokenRow(*tuple(row)[:7]), row["used"], row["revoked"]) if row else None

    async def consume_refresh(
        self, token: TokenRow, now: int, successors: Sequence[TokenRow]
    ) -> bool:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_ISSUING)
            await conn.execute(_FAMILY_LOCK, token.family)
            if await conn.execute(SQL.consume_refresh, token.hash, now) != "UPDATE 1":
                return False
            await conn.executemany(SQL.insert_token, [astuple(t) for t in successors])
            return True

    async def revoke_family(self, family: str) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(_FAMILY_LOCK, family)
            await conn.execute(SQL.revoke_family, family)
            await conn.execute("SELECT pg_notify($1, $2)", TOKENS_CHANNEL, family)

    async def drop_tokens_expired_before(self, cutoff: int) -> None:
        async with self._conn() as conn:
            await conn.execute(SQL.drop_tokens, cutoff)


__all__ = ["PostgresStore", "month_bounds"]


async def check_database(url: str, *, full: bool) -> CheckReport:
    """`pinbase check` of a PostgreSQL database (see `pinbase.store.check`): it refuses what
    opening would, and with `full` reads every row of pinbase's tables, so that PostgreSQL
    meets (and reports) any damaged page; it writes nothing."""
    started = time.monotonic()
    try:
        conn = await asyncpg.connect(url)
    except _DRIVER_ERRORS as exc:
        raise (checks.explained(exc, url) or _translated(exc)) from exc
    except ValueError as exc:
        raise BadUrl(f"bad PostgreSQL URL: {exc}") from exc
    try:
        await checks.ensure_pinbase(conn, url)
        version = await checks.schema_version(conn)
        report = CheckReport(checks.described(url), version, "the connection and the schema")
        if full and version:
            tables = [row[0] for row in await conn.fetch(_TABLES)]
            report.checked = f"a read of every row of its {len(tables)} tables"
            # sequential scans: an index-only count would skip the tables' own pages
            for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                await conn.execute(f"SET {setting} = off")
            for table in tables:
                try:
                    await conn.fetchval(f'SELECT count(*) FROM "{table}"')
                except _CORRUPT as exc:
                    report.problems.append(f"{table}: {exc}")
        report.size = await conn.fetchval("SELECT pg_database_size(current_database())")
    except _DRIVER_ERRORS as exc:
        raise _translated(exc) from exc
    finally:
        await conn.close()
    report.seconds = time.monotonic() - started
    return report
