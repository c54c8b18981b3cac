"""The PostgreSQL store, for deployments that outgrow one machine.

asyncpg with a connection pool; statements are prepared and cached per connection by asyncpg.
A value write is one statement (data-modifying CTEs over `unnest` arrays), so it commits in one
round trip and several server processes may write at once; rows are de-duplicated and sorted by
key first, so concurrent writers always lock rows in the same order. History is partitioned by
month (see `postgres_schema`). Lost connections surface as `StoreUnavailable` (HTTP 503); the
pool reconnects by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import astuple, fields
from typing import Any

import asyncpg

from pinbase.domain.clock import now_ms
from pinbase.domain.model import Catalog
from pinbase.store.base import COUNTED_TABLES, RefreshOutcome, Store, StoreUnavailable
from pinbase.store.catalog import CatalogCache, build_catalog
from pinbase.store.paging import Piece, bucket_bounds, page_window, split
from pinbase.store.postgres.schema import (
    drop_partitions_before,
    ensure_partition,
    migrate,
    month_bounds,
    month_of,
)
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

log = logging.getLogger("pinbase.store.postgres.store")

CATALOG_CHANNEL = "pinbase_catalog"
EVENTS_CHANNEL = "pinbase_events"
CATALOG_RECHECK_S = 1.0  # a fallback: catalog changes are also notified
ACQUIRE_TIMEOUT_S = 10.0
PARTITIONS_AHEAD = 3  # months created ahead of time at start-up

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
)

_HISTORY = (
    "INSERT INTO history (device_id, ds_id, ts, value) "
    "SELECT * FROM unnest($1::integer[], $2::integer[], $3::bigint[], $4::text[]) "
    "ON CONFLICT (device_id, ds_id, ts) DO UPDATE SET value = EXCLUDED.value"
)
_CURRENT = (
    "INSERT INTO current_values (device_id, ds_id, value, updated_at) "
    "SELECT * FROM unnest($5::integer[], $6::integer[], $7::text[], $8::bigint[]) "
    "ON CONFLICT (device_id, ds_id) DO UPDATE SET "
    "value = EXCLUDED.value, updated_at = EXCLUDED.updated_at"
)
_WRITE = {
    # one statement, one round trip, one transaction
    False: f"WITH h AS ({_HISTORY} RETURNING 1), c AS ({_CURRENT} RETURNING 1) "
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM c)",
    True: f"WITH h AS ({_HISTORY} RETURNING 1), c AS ({_CURRENT} "
    "WHERE EXCLUDED.updated_at >= current_values.updated_at RETURNING 1) "
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM c)",
}
_COUNT_RANGE = (
    "SELECT count(*) FROM history WHERE device_id = $1 AND ds_id = $2 AND ts BETWEEN $3 AND $4"
)
_BUCKETS = (
    "SELECT bucket, n FROM history_counts WHERE device_id = $1 AND ds_id = $2 "
    "AND bucket > $3 AND bucket < $4 ORDER BY bucket"
)

_TABLES: tuple[tuple[str, str, type[Any]], ...] = (
    ("organizations", "id", OrgRow),
    ("roles", "org_id, name", RoleRow),
    ("clients", "client_id", ClientRow),
    ("users", "id", UserRow),
    ("products", "id", ProductRow),
    ("datastreams", "product_id, id", DatastreamRow),
    ("devices", "id", DeviceRow),
)


class _PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """pinbase keeps no session state on pooled connections: skip the reset on release."""

    def get_reset_query(self) -> str:
        return ""


def _upsert_sql(table: str, key: str, row_type: type[Any]) -> str:
    columns = [f.name for f in fields(row_type)]
    keys = {k.strip() for k in key.split(",")}
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in keys)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def _row_values(row: Any) -> tuple[Any, ...]:
    if isinstance(row, RoleRow):
        return (row.org_id, row.name, ",".join(row.permissions))
    return astuple(row)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


class PostgresStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._catalog = CatalogCache(CATALOG_RECHECK_S)
        self._months: set[tuple[int, int]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._receivers: list[Callable[[str], None]] = []

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
                await migrate(conn)
                await self._prepare_partitions(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
        self._listener = asyncio.create_task(self._listen(), name="pinbase-pg-listener")

    async def close(self) -> None:
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
            async with conn.transaction():
                await conn.execute("DELETE FROM history_default WHERE ts < $1", cutoff)

    async def _ensure_month(self, conn: asyncpg.Connection, year: int, month: int) -> None:
        if (year, month) not in self._months:
            await ensure_partition(conn, year, month)
            self._months.add((year, month))

    async def _listen(self) -> None:
        """Hold a LISTEN connection for catalog changes; reconnect when it drops."""
        while True:
            try:
                conn = await asyncpg.connect(self.url)
            except _UNAVAILABLE:
                await asyncio.sleep(1.0)
                continue
            try:
                await self._listen_on(conn)
            except _UNAVAILABLE:
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
        self._catalog.invalidate()  # whatever changed while no one was listening
        await lost.wait()

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
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    # catalog ------------------------------------------------------------------------------
    async def catalog(self) -> Catalog:
        async def generation() -> int:
            async with self._conn() as conn:
                value: int = await conn.fetchval(
                    "SELECT value FROM meta WHERE key = 'catalog_generation'"
                )
                return value

        async def load() -> Catalog:
            async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
                value = await conn.fetchval(
                    "SELECT value FROM meta WHERE key = 'catalog_generation'"
                )
                rows = await self._entities(conn)
            return build_catalog(int(value), rows)

        return await self._catalog.get(generation, load)

    @staticmethod
    async def _entities(conn: asyncpg.Connection) -> Entities:
        async def rows(table: str, row_type: type[Any]) -> list[Any]:
            columns = ", ".join(f.name for f in fields(row_type))
            return [tuple(r) for r in await conn.fetch(f"SELECT {columns} FROM {table}")]

        return Entities(
            organizations=[OrgRow(*r) for r in await rows("organizations", OrgRow)],
            roles=[
                RoleRow(r[0], r[1], tuple(p for p in r[2].split(",") if p))
                for r in await rows("roles", RoleRow)
            ],
            clients=[ClientRow(*r) for r in await rows("clients", ClientRow)],
            users=[UserRow(*r) for r in await rows("users", UserRow)],
            products=[ProductRow(*r) for r in await rows("products", ProductRow)],
            datastreams=[DatastreamRow(*r) for r in await rows("datastreams", DatastreamRow)],
            devices=[DeviceRow(*r) for r in await rows("devices", DeviceRow)],
        )

    async def entities(self) -> Entities:
        async with self._conn() as conn:
            return await self._entities(conn)

    async def upsert_entities(self, rows: Entities) -> None:
        async with self._conn() as conn, conn.transaction():
            for table, key, row_type in _TABLES:
                items = getattr(rows, table)
                if items:
                    await conn.executemany(
                        _upsert_sql(table, key, row_type), [_row_values(r) for r in items]
                    )
            await conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'catalog_generation'")
            await conn.execute(f"NOTIFY {CATALOG_CHANNEL}")
        self._catalog.invalidate()

    # values -------------------------------------------------------------------------------
    async def write_values(self, writes: ValueWrites) -> int:
        history = sorted({(d, s, t): v for d, s, t, v in writes.history}.items())
        current = sorted({(d, s): (v, t) for d, s, v, t in writes.current}.items())
        newer: dict[tuple[int, int], tuple[str, int]] = {}
        for d, s, v, t in writes.current_if_newer:
            if (d, s) not in newer or t >= newer[(d, s)][1]:
                newer[(d, s)] = (v, t)
        history_rows = [(d, s, t, v) for (d, s, t), v in history]
        async with self._conn() as conn:
            await self._ensure_partitions(conn, [row[2] for row in history_rows])
            history_columns = _columns(history_rows, 4)
            batches = [(False, current), (True, sorted(newer.items()))]
            batches = [b for b in batches if b[1]] or [(False, [])]
            changed = 0
            # one statement is its own transaction; two need an explicit one
            atomic = conn.transaction() if len(batches) > 1 else contextlib.nullcontext()
            async with atomic:
                for only_newer, items in batches:
                    current_rows = [(d, s, v, t) for (d, s), (v, t) in items]
                    counts = await conn.fetchrow(
                        _WRITE[only_newer], *history_columns, *_columns(current_rows, 4)
                    )
                    changed += counts[1]
                    history_columns = [[], [], [], []]
            return changed

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
        order = "ASC" if ascending else "DESC"
        async with self._conn() as conn, conn.transaction(isolation="repeatable_read"):
            pieces = await self._segments(conn, device_id, ds_id, start, end)
            low, high, skip = page_window(pieces, start, end, offset, ascending)
            rows = await conn.fetch(
                "SELECT ts, value FROM history WHERE device_id = $1 AND ds_id = $2 "
                f"AND ts BETWEEN $3 AND $4 ORDER BY ts {order} LIMIT $5 OFFSET $6",
                device_id,
                ds_id,
                low,
                high,
                limit,
                skip,
            )
        return sum(p[2] for p in pieces), [(r[0], r[1]) for r in rows]

    @staticmethod
    async def _segments(
        conn: asyncpg.Connection, device_id: int, ds_id: int, start: int, end: int
    ) -> list[Piece]:
        async def count(low: int, high: int) -> int:
            value: int = await conn.fetchval(_COUNT_RANGE, device_id, ds_id, low, high)
            return value

        parts = split(start, end)
        if parts is None:
            return [(start, end, await count(start, end))]
        first, last, head, tail = parts
        pieces: list[Piece] = [(*head, await count(*head))]
        for bucket, points in await conn.fetch(_BUCKETS, device_id, ds_id, first, last):
            if points:
                pieces.append((*bucket_bounds(bucket), points))
        pieces.append((*tail, await count(*tail)))
        return pieces

    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO properties (device_id, ds_id, name, value) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (device_id, ds_id, name) DO UPDATE SET value = EXCLUDED.value",
                device_id,
                ds_id,
                name,
                value,
            )

    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT ds_id, name, value FROM properties WHERE device_id = $1 "
                "ORDER BY ds_id, name",
                device_id,
            )
        result: dict[int, dict[str, str]] = {}
        for ds_id, name, value in rows:
            result.setdefault(ds_id, {})[name] = value
        return result

    # OAuth --------------------------------------------------------------------------------
    async def client(self, client_id: str) -> ClientRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT client_id, org_id, secret_hash FROM clients WHERE client_id = $1",
                client_id,
            )
        return ClientRow(*row) if row else None

    async def user_by_email(self, org_id: int, email: str) -> UserRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT id, org_id, email, password_hash, role FROM users "
                "WHERE org_id = $1 AND email = $2",
                org_id,
                email,
            )
        return UserRow(*row) if row else None

    async def insert_tokens(self, tokens: Sequence[TokenRow]) -> None:
        async with self._conn() as conn:
            await conn.executemany(_INSERT_TOKEN, [astuple(t) for t in tokens])

    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT hash, kind, client_id, org_id, user_id, family, expires_at "
                "FROM oauth_tokens WHERE hash = $1 AND kind = 'access' AND NOT revoked "
                "AND expires_at > $2",
                token_hash,
                now,
            )
        return TokenRow(*row) if row else None

    async def rotate_refresh(
        self,
        token_hash: str,
        client_id: str,
        now: int,
        successors: Callable[[TokenRow], Sequence[TokenRow]],
    ) -> tuple[RefreshOutcome, str | None]:
        async with self._conn() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT hash, kind, client_id, org_id, user_id, family, expires_at, used, revoked "
                "FROM oauth_tokens WHERE hash = $1 AND kind = 'refresh' FOR UPDATE",
                token_hash,
            )
            if row is None or row["client_id"] != client_id:
                return RefreshOutcome.UNKNOWN, None
            token = TokenRow(*tuple(row)[:7])
            if row["used"] or row["revoked"]:
                await conn.execute(
                    "UPDATE oauth_tokens SET revoked = true WHERE family = $1", token.family
                )
                return RefreshOutcome.REUSED, token.family
            if token.expires_at <= now:
                return RefreshOutcome.UNKNOWN, token.family
            await conn.execute("UPDATE oauth_tokens SET used = true WHERE hash = $1", token_hash)
            await conn.executemany(_INSERT_TOKEN, [astuple(t) for t in successors(token)])
            await conn.execute("DELETE FROM oauth_tokens WHERE expires_at < $1", now - 86_400_000)
            return RefreshOutcome.ROTATED, token.family

    # migration ----------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        async with (
            self._conn() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return {
                table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                for table in COUNTED_TABLES
            }

    async def _export(
        self, table: str, key: tuple[str, ...], rest: tuple[str, ...], batch: int
    ) -> AsyncIterator[list[Any]]:
        """Rows of `table` as (*key, *rest) tuples in key order, `batch` at a time.

        One keyset query per batch (`(key) > (last key)`, an index range scan of the primary
        key, merged across history partitions); no connection is held between batches.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        columns = ", ".join((*key, *rest))
        order = ", ".join(key)
        marks = ", ".join(f"${i}" for i in range(1, len(key) + 1))
        first = f"SELECT {columns} FROM {table} ORDER BY {order} LIMIT $1"
        after = (
            f"SELECT {columns} FROM {table} WHERE ({order}) > ({marks}) "
            f"ORDER BY {order} LIMIT ${len(key) + 1}"
        )
        last: tuple[Any, ...] | None = None
        while True:
            async with self._conn() as conn:
                if last is None:
                    records = await conn.fetch(first, batch)
                else:
                    records = await conn.fetch(after, *last, batch)
            rows = [tuple(r) for r in records]
            if rows:
                yield rows
            if len(rows) < batch:
                return
            last = rows[-1][: len(key)]

    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        # sorted by key and de-duplicated, like write_values: concurrent writers lock in order
        items = sorted({(d, s, n): v for d, s, n, v in rows}.items())
        if not items:
            return
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO properties (device_id, ds_id, name, value) "
                "SELECT * FROM unnest($1::integer[], $2::integer[], $3::text[], $4::text[]) "
                "ON CONFLICT (device_id, ds_id, name) DO UPDATE SET value = EXCLUDED.value",
                [d for (d, _, _), _ in items],
                [s for (_, s, _), _ in items],
                [n for (_, _, n), _ in items],
                [v for _, v in items],
            )


_INSERT_TOKEN = (
    "INSERT INTO oauth_tokens (hash, kind, client_id, org_id, user_id, family, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)

__all__ = ["PostgresStore", "month_bounds"]
