"""The storage interface every backend implements.

The store persists; it makes no policy decisions. Every write method returns only after its
transaction is durable, so a caller may acknowledge the write as soon as the await completes.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from pinbase.domain.model import Catalog
from pinbase.domain.ratelimit import TokenBuckets
from pinbase.store.records import ClientRow, Entities, StoredValue, TokenRow, UserRow, ValueWrites

ENTITY_TABLES = ("organizations", "roles", "clients", "users", "products", "datastreams", "devices")
COUNTED_TABLES = (*ENTITY_TABLES, "current_values", "history", "properties")
"""What `Store.counts()` reports, in copying order."""


class Channel(Protocol):
    """A broadcast channel between the processes sharing one database."""

    async def notify(self, payload: str) -> None: ...

    def subscribe(self, receive: Callable[[str], None]) -> None: ...


class StoreUnavailable(Exception):
    """The database cannot be reached or is failing; callers answer 503."""


class RefreshOutcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"  # no such token, wrong client, or expired
    REUSED = "reused"  # presented a second time: its whole family is now revoked


class Store(abc.ABC):
    _buckets: dict[tuple[float, float], TokenBuckets]

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply pending migrations and load the catalog."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then release every connection."""

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

    @abc.abstractmethod
    async def entities(self) -> Entities:
        """Every catalog row, secrets' hashes included (for provisioning)."""

    @abc.abstractmethod
    async def upsert_entities(self, rows: Entities) -> None:
        """Insert or update the given rows in one transaction and bump the catalog generation."""

    # values -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def write_values(self, writes: ValueWrites) -> int:
        """Apply current values and history points in one durable transaction.

        Returns how many current values were set (a `current_if_newer` row older than the
        stored value sets nothing).
        """

    @abc.abstractmethod
    async def drop_history_before(self, cutoff: int) -> None:
        """Retention: forget history points older than `cutoff` (epoch ms)."""

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

    @abc.abstractmethod
    async def set_property(self, device_id: int, ds_id: int, name: str, value: str) -> None:
        """Store one widget property value."""

    @abc.abstractmethod
    async def properties(self, device_id: int) -> dict[int, dict[str, str]]:
        """Widget properties of a device by datastream id."""

    # OAuth --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def client(self, client_id: str) -> ClientRow | None: ...

    @abc.abstractmethod
    async def user_by_email(self, org_id: int, email: str) -> UserRow | None: ...

    @abc.abstractmethod
    async def insert_tokens(self, tokens: Sequence[TokenRow]) -> None: ...

    @abc.abstractmethod
    async def access_token(self, token_hash: str, now: int) -> TokenRow | None:
        """The unexpired, unrevoked access token with this hash."""

    @abc.abstractmethod
    async def rotate_refresh(
        self,
        token_hash: str,
        client_id: str,
        now: int,
        successors: Callable[[TokenRow], Sequence[TokenRow]],
    ) -> tuple[RefreshOutcome, str | None]:
        """Atomically consume a refresh token and store `successors(consumed)` in its place.

        A token presented a second time revokes every token of its family. Returns the outcome
        and the family of the presented token (None when it is unknown).
        """

    # migration (`pinbase migrate`) ---------------------------------------------------------
    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows per kind, read in one snapshot: organizations, roles, clients, users, products,
        datastreams, devices, current_values, history, properties."""

    @abc.abstractmethod
    def _export(
        self, table: str, key: tuple[str, ...], rest: tuple[str, ...], batch: int
    ) -> AsyncIterator[list[Any]]:
        """Rows of `table` as (*key, *rest) tuples in key order, at most `batch` per list,
        keyset-paginated so that memory stays bounded whatever the table's size."""

    async def export_current(self, batch: int) -> AsyncIterator[list[tuple[int, int, str, int]]]:
        """Every current value as (device_id, ds_id, value, updated_at)."""
        async for rows in self._export(
            "current_values", ("device_id", "ds_id"), ("value", "updated_at"), batch
        ):
            yield rows

    async def export_history(self, batch: int) -> AsyncIterator[list[tuple[int, int, int, str]]]:
        """Every history point as (device_id, ds_id, ts, value)."""
        async for rows in self._export("history", ("device_id", "ds_id", "ts"), ("value",), batch):
            yield rows

    async def export_properties(self, batch: int) -> AsyncIterator[list[tuple[int, int, str, str]]]:
        """Every widget property as (device_id, ds_id, name, value)."""
        async for rows in self._export(
            "properties", ("device_id", "ds_id", "name"), ("value",), batch
        ):
            yield rows

    @abc.abstractmethod
    async def import_properties(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        """Insert or replace (device_id, ds_id, name, value) rows in one transaction."""
