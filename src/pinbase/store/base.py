"""The storage interface every backend implements.

The store persists; it makes no policy decisions (refresh-token rotation and reuse detection, for
one, live in `pinbase.app.auth.refresh`, composed from the token primitives here). Every write
method returns only after its transaction is durable, so a caller may acknowledge the write as
soon as the await completes.

A store raises only its own errors (`pinbase.store.errors`, re-exported here): never a database
driver's, and reports the failures among them to its `health` (`pinbase.store.health`), which
`/healthz` reads. What the backends share lives here and in `sql`, `paging`, `integrity`,
`catalog` and `health`; each backend keeps only its dialect's own code.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar, Protocol

from pinbase.domain.clock import now_ms
from pinbase.domain.model import Catalog
from pinbase.domain.ratelimit import TokenBuckets
from pinbase.store.errors import Conflict, StoreError, StoreUnavailable
from pinbase.store.health import Health
from pinbase.store.integrity import explain_conflict, parents_first
from pinbase.store.paging import HistoryRow, merged
from pinbase.store.records import (
    ClientRow,
    DeliveryRow,
    DeviceRow,
    Entities,
    LoggedEvent,
    Notice,
    OutboxRow,
    Revocation,
    StoredValue,
    TokenRow,
    TokenState,
    UserRow,
    ValueWrites,
    WebhookRow,
)
from pinbase.store.rollup import Plan
from pinbase.store.sql import (
    COUNTED_TABLES,
    CURRENT,
    DEVICE_EVENTS,
    ENTITY,
    HARDWARE,
    HISTORY,
    LAST_UPDATES,
    PROPERTIES,
    ROLLUP_SLOT,
    Statements,
    Table,
)

log = logging.getLogger(__name__)


class Channel(Protocol):
    """A broadcast channel between the processes sharing one database."""

    async def notify(self, payload: str) -> None: ...

    def subscribe(self, receive: Callable[[str], None]) -> None: ...


class Store(abc.ABC):
    SQL: ClassVar[Statements]
    """The shared statements in the backend's dialect."""
    health: Health
    """The failures the store met, until a probe proves them over; set by each backend."""
    _buckets: dict[tuple[float, float], TokenBuckets]

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations and load the catalog."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then release every connection."""

    @abc.abstractmethod
    async def probe(self) -> None:
        """One small durable write (a row of `meta`): whether the database takes writes now.

        `health` runs it while the store is failing; its success is the store's recovery.
        """

    # shared state of several processes --------------------------------------------------
    def channel(self) -> Channel | None:
        """A broadcast channel between processes on this database, if the backend has one."""
        return None

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        """Take a token from the named bucket: 0 when granted, else seconds until one is.

        This default keeps buckets in the process (one process per database); backends shared
        by several processes keep them in the database.
        """
        if not hasattr(self, "_buckets"):
            self._buckets = {}
        buckets = self._buckets.get((rate, burst))
        if buckets is None:
            buckets = self._buckets[(rate, burst)] = TokenBuckets(rate, burst)
        return buckets.take(key)

    # catalog ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def catalog(self) -> Catalog:
        """The current catalog snapshot (reloaded when provisioning changed it)."""

    async def generation(self) -> int:
        """The catalog generation committed now: read from the database, unlike `catalog()`'s,
        which may lag behind another process's change for a moment."""
        ((value,),) = await self._fetch(self.SQL.generation, ())
        return int(value)

    @abc.abstractmethod
    async def entities(self) -> Entities:
        """Every catalog row, secrets' hashes included (for provisioning)."""

    async def upsert_entities(
        self, rows: Entities, revoke: Revocation = Revocation(), clear_meta: Sequence[int] = ()
    ) -> None:
        """Insert or update the given rows, revoke the tokens of `revoke`, and bump the catalog
        generation, in one transaction. The metadata values of the `clear_meta` devices are
        deleted first (devices moved to another product family: see `app.provisioning`).

        The rows are applied as one set: their order does not matter (variants are written
        after their parents), and a device token or user email may move from one row of the set
        to another (two devices may swap tokens). A set that breaks a rule of the database
        (a token or an email in use twice, a reference to nothing) raises `Conflict` naming
        the entities, and writes nothing.
        """
        rows = dataclasses.replace(rows, products=parents_first(rows.products))
        try:
            await self._change_catalog(self.SQL.entity_writes(rows, revoke, clear_meta))
        except Conflict as exc:
            explained = explain_conflict(rows, await self.entities())
            raise Conflict(explained or f"the rows break a rule of the database: {exc}") from exc

    async def delete_entities(
        self, user_ids: Sequence[int] = (), client_ids: Sequence[str] = ()
    ) -> None:
        """Delete users and clients, revoking every token issued to them or through them, and
        bump the catalog generation, in one transaction. A user who still owns a device raises
        `Conflict` and nothing is written. Unknown ids are no error."""
        await self._change_catalog(self.SQL.deletion_writes(user_ids, client_ids))

    async def revoke_tokens(self, revoke: Revocation) -> None:
        """Revoke every token issued to `revoke`'s users or through its clients, and bump the
        catalog generation, in one transaction.

        Every revocation by user or client bumps the generation in its own transaction: that is
        how each process's access-token cache learns that tokens it verified earlier may no
        longer be valid (see `pinbase.app.auth.access_tokens`).
        """
        await self._change_catalog(self.SQL.entity_writes(Entities(), revoke))

    # devices of the Platform API (`pinbase.app.devices`) ----------------------------------
    async def next_device_id(self) -> int:
        """One above the greatest device id stored (1 when there is none)."""
        ((value,),) = await self._fetch(self.SQL.max_device_id, ())
        return int(value) + 1

    async def insert_device(
        self, row: DeviceRow, outbox: Sequence[tuple[int, str, int]] = ()
    ) -> None:
        """Insert a new device, add its `outbox` rows (webhook_id, context, due_at) and bump the
        catalog generation, in one transaction. An id or a token already taken raises
        `Conflict` (never an update of another device) and writes nothing."""
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (self.SQL.insert_device, [ENTITY["devices"].values(row)])
        ]
        if outbox:
            writes.append((self.SQL.enqueue, list(outbox)))
        writes.append((self.SQL.bump_generation, [()]))
        await self._change_catalog(writes)

    async def update_device(
        self, device_id: int, *, name: str | None = None, token_hash: str | None = None
    ) -> None:
        """Rename a device and/or give it a new token digest, and bump the catalog generation,
        in one transaction. A device that is gone stays gone (an update, never an insert)."""
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (self.SQL.update_device[column], [(device_id, value)])
            for column, value in (("name", name), ("token_hash", token_hash))
            if value is not None
        ]
        writes.append((self.SQL.bump_generation, [()]))
        await self._change_catalog(writes)

    async def delete_devices(
        self, device_ids: Sequence[int], outbox: Sequence[tuple[int, str, int]] = ()
    ) -> None:
        """Delete devices with everything stored of them (values, history, properties,
        metadata values, logged events, hardware info, their pending outbox rows), add
        `outbox` rows, and bump the catalog generation, in one transaction. Unknown ids are no
        error."""
        params = [(device_id,) for device_id in device_ids]
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (statement, params) for statement in self.SQL.device_rows
        ]
        pattern = [(f'%"device_id":"{device_id}"%',) for device_id in device_ids]
        writes.append((self.SQL.forget_device_outbox, pattern))
        if outbox:
            writes.append((self.SQL.enqueue, list(outbox)))
        writes.append((self.SQL.bump_generation, [()]))
        await self._change_catalog(writes)

    async def clear_devices(self, device_ids: Sequence[int]) -> None:
        """Erase the devices' current values, history and widget properties, in one
        transaction; the devices, their metadata and their timelines stay. No catalog change."""
        params = [(device_id,) for device_id in device_ids]
        await self._run_writes([(statement, params) for statement in self.SQL.device_data])

    async def set_hardware_info(self, device_id: int, info: str, ts: int) -> None:
        """Store what a device reported about its hardware (JSON object text) at `ts`."""
        await self._run_writes([(self.SQL.set_hardware, [(device_id, info, ts)])])

    async def hardware_info(self, device_ids: Sequence[int]) -> dict[int, str]:
        """The stored hardware info (JSON object text) of those of `device_ids` that have it."""
        rows = await self._fetch(self.SQL.hardware, (self.SQL.dialect.values(device_ids),))
        return {int(device_id): str(info) for device_id, info in rows}

    @abc.abstractmethod
    async def _change_catalog(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Run catalog writes (`SQL.entity_writes`, `SQL.deletion_writes`) in one transaction
        that no token issue (`insert_tokens` with a generation, `consume_refresh`) interleaves
        with, and tell every process the catalog changed."""

    # users of the Platform API -------------------------------------------------------------
    async def next_user_id(self) -> int:
        """One more than the greatest user id in use (`add_user` refuses it if taken since)."""
        ((value,),) = await self._fetch(self.SQL.next_user_id, ())
        return int(value)

    async def user(self, user_id: int) -> UserRow | None:
        rows = await self._fetch(self.SQL.user_by_id, (user_id,))
        return ENTITY["users"].row(rows[0]) if rows else None

    async def user_by_invitation(self, invitation_hash: str) -> UserRow | None:
        rows = await self._fetch(self.SQL.user_by_invitation, (invitation_hash,))
        return ENTITY["users"].row(rows[0]) if rows else None

    async def add_user(self, row: UserRow, mail: Sequence[tuple[int, str, int]] = ()) -> None:
        """Insert a new user, add the `mail` outbox rows (webhook_id, context, due_at) and bump
        the catalog generation, in one transaction. An id or (organization, e-mail) in use
        raises `Conflict` and nothing is written (never an update of another user)."""
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (self.SQL.insert_user, [ENTITY["users"].values(row)])
        ]
        if mail:
            writes.append((self.SQL.enqueue, list(mail)))
        writes.append((self.SQL.bump_generation, [()]))
        await self._change_catalog(writes)

    async def set_user_role(self, user_id: int, role: str, now: int) -> None:
        """Give a user another role and revoke every token issued to it, bumping the catalog
        generation, in one transaction."""
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [
            (self.SQL.set_user_role, [(user_id, role, now)])
        ]
        writes += self.SQL.revocation_writes(Revocation((user_id,)))
        writes.append((self.SQL.bump_generation, [()]))
        await self._change_catalog(writes)

    async def accept_invitation(
        self, user_id: int, invitation_hash: str, password_hash: str, now: int
    ) -> bool:
        """Set the password of an invited user and make it Active, if its invitation is still
        `invitation_hash` and unexpired at `now`; whether it was. The check and the change are
        one statement, so of two concurrent acceptances at most one succeeds."""
        params = (user_id, invitation_hash, password_hash, now)
        await self._change_catalog(
            [(self.SQL.accept_invitation, [params]), (self.SQL.bump_generation, [()])]
        )
        accepted = await self.user(user_id)  # a fresh argon2 hash is salted: only ours matches
        return accepted is not None and accepted.password_hash == password_hash

    # values -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def write_values(self, writes: ValueWrites) -> int:
        """Apply current values and history points in one durable transaction.

        Returns how many current values were set (a `current_if_newer` row older than the
        stored value sets nothing).
        """

    @abc.abstractmethod
    async def allocate_writer(self, after: int = 0) -> int:
        """A writer id never handed out before on this database, and greater than `after`.

        A process numbers its live history points by writer id (`pinbase.app.ingest`); the ids
        are counted in the database, so that processes sharing it never get the same one.
        Durable before it returns, like every write.
        """

    async def writers(self) -> int:
        """The greatest writer id handed out so far on this database (0 when none was)."""
        (row,) = await self._fetch(self.SQL.writers, ())
        return int(row[0])

    async def last_updates(self, device_ids: Sequence[int] | None = None) -> dict[int, int]:
        """When each device's latest current value was stored (epoch ms), by device id; a
        device without values is absent. One grouped read of the current values: of every
        device, or of the `device_ids` only."""
        if device_ids is None:
            rows = await self._fetch(LAST_UPDATES, ())
        else:
            ids = self.SQL.dialect.values(device_ids)
            rows = await self._fetch(self.SQL.last_updates_of, (ids,))
        return {int(device_id): int(ts) for device_id, ts in rows}

    @abc.abstractmethod
    async def drop_history_before(self, cutoff: int) -> None:
        """Retention: forget history points older than `cutoff` (epoch ms).

        Points that share a partition with `cutoff` may stay until a later call (PostgreSQL
        drops whole calendar months; SQLite forgets exactly the older points).
        """

    @abc.abstractmethod
    async def current_values(self, device_ids: Sequence[int]) -> dict[int, dict[int, StoredValue]]:
        """Current values by device id, then datastream id."""

    @abc.abstractmethod
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
        """(total points in [start, end], one page of (ts, JSON value))."""

    async def history_rows(
        self, device_id: int, ds_ids: Sequence[int], start: int, end: int, batch: int
    ) -> AsyncIterator[list[HistoryRow]]:
        """The points of a device's datastreams `ds_ids` stamped from `start` to `end` (epoch
        ms, both included) as (ts, ds_id, seq, JSON value), in that order, in lists of a few
        `batch`es at most.

        Each datastream is read keyset-paginated along its index ((ts, seq) after the last
        batch's), one short read per batch with no connection held between them, and the
        series are merged in memory (`paging.merged`): memory stays bounded (about a batch per
        datastream) however many points the range holds, and no read sorts the range. Batches
        are separate reads: a point written during the export may or may not be in it.
        """
        sources = [self._series_rows(device_id, ds_id, start, end, batch) for ds_id in ds_ids]
        if not sources:
            return
        async for rows in merged(sources) if len(sources) > 1 else sources[0]:
            yield rows

    async def _series_rows(
        self, device_id: int, ds_id: int, start: int, end: int, batch: int
    ) -> AsyncIterator[list[HistoryRow]]:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        first, after = self.SQL.series_rows
        rows = await self._fetch(first, (device_id, ds_id, start, end, batch))
        while rows:
            yield [(ts, ds_id, seq, value) for ts, seq, value in rows]
            if len(rows) < batch:
                return
            ts, seq, _ = rows[-1]
            rows = await self._fetch(after, (device_id, ds_id, ts, seq, end, batch))

    async def history_slots(
        self, device_id: int, ds_id: int, start: int, end: int, slot: int, function: str
    ) -> list[tuple[int, int, Any]]:
        """The points stamped from `start` to `end` (both included) grouped in slots of `slot`
        ms, aligned on multiples of `slot` since the epoch: (slot start, points, `function`
        of the slot's values), oldest first, only slots holding points. `function` is one of
        `sql.SLOT_FUNCTIONS`: count, sum, min and max of the values as numbers, first and last
        the JSON text of the slot's first and last point.

        Slots of `sql.ROLLUP_SLOT` come from the rollup where it holds them (see `rollup`):
        one read of the rollup, one grouped read of the points for each stretch it does not
        hold, and the settled days among those rolled up for the next read (a write that fails
        there is logged: the answer stands)."""
        if slot != ROLLUP_SLOT:
            return await self._grouped_slots(device_id, ds_id, start, end, slot, function)
        plan = Plan(start, end)
        if plan.whole_days is None:
            return await self._grouped_slots(device_id, ds_id, start, end, slot, function)
        first_day, last_day = plan.whole_days
        rows = await self._fetch(
            self.SQL.rollup[function],
            (device_id, ds_id, first_day, last_day, plan.first_slot, plan.last_slot),
        )
        slots, gaps = plan.split(rows)
        fresh: list[tuple[int, int, Any]] = []
        for low, high in gaps:
            fresh += await self._grouped_slots(device_id, ds_id, low, high, slot, function)
        for first, last in plan.to_fill(fresh, now_ms()):
            params = [(device_id, ds_id, first, last)]
            try:
                await self._run_writes(
                    [(sql, [()]) for sql in self.SQL.rollup_locks]
                    + [(sql, params) for sql in self.SQL.rollup_fill]
                )
            except StoreError as exc:  # the answer stands; a later read rolls the days up
                log.warning("history rollup of days %d to %d not stored: %s", first, last, exc)
                break
        return sorted(slots + fresh)

    async def _grouped_slots(
        self, device_id: int, ds_id: int, start: int, end: int, slot: int, function: str
    ) -> list[tuple[int, int, Any]]:
        base = start // slot * slot
        rows = await self._fetch(
            self.SQL.slots[function], (device_id, ds_id, start, end, base, slot)
        )
        return [(base + row[0] * slot, row[1], row[2]) for row in rows]

    @abc.abstractmethod
    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        """Store one widget property value."""

    @abc.abstractmethod
    async def erase_current(self, device_id: int, ds_id: int) -> bool:
        """Forget a datastream's current value (its history stays); whether it had one."""

    @abc.abstractmethod
    async def delete_property(self, device_id: int, ds_id: int, name: str) -> bool:
        """Forget one widget property value; whether it was set."""

    @abc.abstractmethod
    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        """Widget properties of a device by datastream id."""

    # metadata ---------------------------------------------------------------------------
    async def meta_values(self, device_id: int) -> dict[int, str]:
        """A device's own metadata values by metafield id (defaults are the catalog's)."""
        rows = await self._fetch(self.SQL.meta_values, (device_id,))
        return {int(field_id): str(value) for field_id, value in rows}

    @abc.abstractmethod
    async def set_meta_value(self, device_id: int, field_id: int, value: str) -> None:
        """Store a device's own value of a metafield; no catalog change (every process reads
        the values from the database)."""

    # webhooks: the outbox and the delivery log ---------------------------------------------
    async def webhooks(self) -> list[WebhookRow]:
        """Every webhook of every organization."""
        table = ENTITY["webhooks"]
        rows = await self._fetch(self.SQL.select_entities[table.name], ())
        return [table.row(r) for r in rows]

    async def delete_webhooks(self, ids: Sequence[int]) -> None:
        """Delete webhooks and their pending deliveries (their log stays), and bump the catalog
        generation, in one transaction. Unknown ids are no error."""
        params = [(i,) for i in ids]
        await self._change_catalog(
            [
                (self.SQL.delete_webhook, params),
                (self.SQL.forget_outbox, params),
                (self.SQL.bump_generation, [()]),
            ]
        )

    async def enqueue_deliveries(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """Add (webhook_id, context JSON, due_at) rows to the outbox, in one transaction.
        (A value write adds its own in its transaction: `ValueWrites.outbox`.)"""
        if rows:
            await self._run_writes([(self.SQL.enqueue, list(rows))])

    async def claim_deliveries(self, now: int, lease_until: int, limit: int) -> list[OutboxRow]:
        """Claim up to `limit` outbox rows due at `now` and not claimed, until `lease_until`.

        Exclusive: of concurrent claims, across processes too, no two get the same row (on
        PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`; SQLite has one writer). A row
        stays in the outbox until `settle_delivery`: should its claimer die first, it is claimed
        again once the lease ran out (delivery is at least once).
        """
        if not await self._fetch(self.SQL.any_due, (now,)):
            return []  # a read, so that an idle outbox costs no write transaction
        rows = await self._write_returning(self.SQL.claim, (lease_until, now, limit))
        return sorted((OutboxRow(*row) for row in rows), key=lambda r: r.id)

    async def settle_delivery(
        self, outbox_id: int, log: DeliveryRow, retry_at: int | None = None
    ) -> None:
        """Record an attempt in the delivery log and, in the same transaction, forget the
        outbox row, or with `retry_at` make it due again then with one more attempt counted."""
        entry = (
            log.webhook_id,
            outbox_id,
            log.attempt,
            log.attempted_at,
            log.status,
            log.outcome,
            log.detail,
        )
        writes: list[tuple[str, list[tuple[Any, ...]]]] = [(self.SQL.log_delivery, [entry])]
        if retry_at is None:
            writes.append((self.SQL.outbox_settled, [(outbox_id,)]))
        else:
            writes.append((self.SQL.outbox_retry, [(outbox_id, retry_at, log.attempt)]))
        await self._run_writes(writes)

    async def postpone_delivery(self, outbox_id: int, due_at: int, attempts: int) -> None:
        """Make a claimed row due again at `due_at` (a rate limit), its attempts unchanged."""
        await self._run_writes([(self.SQL.outbox_retry, [(outbox_id, due_at, attempts)])])

    async def delivery_log(self, webhook_id: int, limit: int) -> list[DeliveryRow]:
        """A webhook's latest attempts, newest first."""
        rows = await self._fetch(self.SQL.delivery_log, (webhook_id, limit))
        return [DeliveryRow(*row) for row in rows]

    async def pending_deliveries(self, webhook_id: int) -> int:
        """How many deliveries of a webhook wait in the outbox."""
        ((count,),) = await self._fetch(self.SQL.pending, (webhook_id,))
        return int(count)

    async def drop_deliveries_before(self, cutoff: int) -> None:
        """Forget delivery log entries older than `cutoff` (epoch ms)."""
        await self._run_writes([(self.SQL.drop_deliveries, [(cutoff,)])])

    @abc.abstractmethod
    async def _run_writes(self, writes: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Run statements, each with its parameter rows, in one durable transaction."""

    @abc.abstractmethod
    async def _write_returning(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one writing statement in its own durable transaction; the rows it returns."""

    # device events (the timeline) ----------------------------------------------------------
    @abc.abstractmethod
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
        """Store an event (its `id` is ignored) and return it with its id, unless it exceeds a
        limit: then write nothing and return the limit's name, `"per_day"` (`per_day` events
        of the device in the UTC day of `event.ts`, system events ONLINE and OFFLINE not
        counted and never refused) or `"per_second"` (an event of the same code and device
        less than `gap_ms` before). `shown`: whether it shows on the timeline. `outbox`:
        (webhook_id, context JSON, due_at) rows added in the same transaction when it is stored.

        The limits are checked in the transaction of the insert, serialised per device, so
        that they hold for the processes sharing a database.
        """

    async def timeline(
        self, device_id: int, event_type: str | None, start: int, end: int, offset: int, limit: int
    ) -> tuple[int, list[LoggedEvent]]:
        """(how many shown events of the device in [start, end] of that type (any when None),
        one page of them, newest first)."""
        params = (device_id, start, end, event_type)
        ((total,),) = await self._fetch(self.SQL.timeline_count, params)
        rows = await self._fetch(self.SQL.timeline_page, (*params, limit, offset))
        return int(total), [LoggedEvent(*row) for row in rows]

    async def device_event(self, device_id: int, event_id: int) -> LoggedEvent | None:
        """One logged event of a device, by its id."""
        rows = await self._fetch(self.SQL.device_event, (device_id, event_id))
        return LoggedEvent(*rows[0]) if rows else None

    @abc.abstractmethod
    async def resolve_events(
        self, device_id: int, by: str, key: int | str, ts: int, comment: str | None
    ) -> list[LoggedEvent]:
        """Resolve the unresolved warnings and critical events of a device whose `by` ("id" or
        "code") is `key`, at `ts` with `comment`; the events resolved."""

    # OAuth --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def client(self, client_id: str) -> ClientRow | None: ...

    @abc.abstractmethod
    async def user_by_email(self, org_id: int, email: str) -> UserRow | None: ...

    @abc.abstractmethod
    async def insert_tokens(
        self, tokens: Sequence[TokenRow], generation: int | None = None
    ) -> bool:
        """Store new tokens; with a `generation`, only if the catalog generation still is that
        one, else write nothing and return False.

        A grant passes the generation at which it read the credentials it checked: if a catalog
        change (which may have revoked that user's or client's tokens) committed since, the
        tokens are not issued. The check and the insert are atomic with respect to catalog
        changes, on every backend and across processes.
        """

    @abc.abstractmethod
    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        """The unexpired, unrevoked access token with this hash."""

    @abc.abstractmethod
    async def refresh_token(self, token_hash: str) -> TokenState | None:
        """The refresh token with this hash, whatever its state (None when there is none)."""

    @abc.abstractmethod
    async def consume_refresh(
        self, token: TokenRow, now: int, successors: Sequence[TokenRow]
    ) -> bool:
        """Mark the refresh token `token` used and insert `successors`, in one transaction, if
        it is still unused, unrevoked and unexpired at `now`; else write nothing and return False.

        Atomic across processes: of concurrent calls for one token, at most one returns True,
        and a `revoke_family` of its family either precedes it (then it returns False) or sees
        the successors it inserted.
        """

    @abc.abstractmethod
    async def revoke_family(self, family: str) -> None:
        """Revoke every token of a family (see `consume_refresh` for concurrency), and tell the
        other processes (`watch_revocations`)."""

    def watch_revocations(self, forget: Callable[[str | None], None]) -> None:
        """Have `forget(family)` called when another process revoked a token family, and
        `forget(None)` when revocations may have been missed (the notifications were down).

        This default does nothing: one server process per database. Revocations by user or
        client need no watching: they bump the catalog generation (`revoke_tokens`).
        """
        return None

    @abc.abstractmethod
    async def drop_tokens_expired_before(self, cutoff: int) -> None:
        """Forget every token that expired before `cutoff` (epoch ms)."""

    # migration (`pinbase migrate`) ---------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Rows per kind (`sql.COUNTED_TABLES`), read in one snapshot (one statement)."""
        (row,) = await self._fetch(self.SQL.counts, ())
        return {table: int(count) for table, count in zip(COUNTED_TABLES, row, strict=True)}

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one read statement, on a connection meant for long reads."""

    async def _export(self, table: Table, batch: int) -> AsyncIterator[list[Any]]:
        """Rows of `table` as tuples of its columns in key order, at most `batch` per list.

        Keyset-paginated: each batch is one indexed range read (`(key) > (last key)`) and no
        connection is held between batches, so memory stays bounded whatever the table's size.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        first, after = self.SQL.export[table.name]
        width = len(table.key)
        rows = await self._fetch(first, (batch,))
        while True:
            if rows:
                yield rows
            if len(rows) < batch:
                return
            rows = await self._fetch(after, (*rows[-1][:width], batch))

    async def export_current(self, batch: int) -> AsyncIterator[list[tuple[int, int, str, int]]]:
        """Every current value as (device_id, ds_id, value, updated_at)."""
        async for rows in self._export(CURRENT, batch):
            yield rows

    async def export_history(
        self, batch: int
    ) -> AsyncIterator[list[tuple[int, int, int, int, str]]]:
        """Every history point as (device_id, ds_id, ts, seq, value)."""
        async for rows in self._export(HISTORY, batch):
            yield rows

    async def export_properties(self, batch: int) -> AsyncIterator[list[tuple[int, int, str, str]]]:
        """Every widget property as (device_id, ds_id, name, value)."""
        async for rows in self._export(PROPERTIES, batch):
            yield rows

    async def export_device_events(self, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Every logged event as its `sql.DEVICE_EVENTS` columns, `shown` a bool."""
        async for rows in self._export(DEVICE_EVENTS, batch):
            yield [(*row[:7], bool(row[7]), *row[8:]) for row in rows]

    async def export_hardware(self, batch: int) -> AsyncIterator[list[tuple[int, str, int]]]:
        """Every device's hardware info as (device_id, info, updated_at)."""
        async for rows in self._export(HARDWARE, batch):
            yield rows

    async def import_hardware(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """Insert or replace (device_id, info, updated_at) rows in one transaction."""
        if rows:
            await self._run_writes([(self.SQL.set_hardware, [tuple(row) for row in rows])])

    @abc.abstractmethod
    async def import_device_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert or replace logged events by id (`export_device_events` rows) in one
        transaction; events logged afterwards get ids above them."""

    @abc.abstractmethod
    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        """Insert or replace (device_id, ds_id, name, value) rows in one transaction."""


__all__ = ["Channel", "Conflict", "Store", "StoreError", "StoreUnavailable"]
