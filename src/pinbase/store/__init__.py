"""Persistence: the `Store` interface and its implementations, chosen by database URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pinbase.store.base import Store
from pinbase.store.check import CheckReport
from pinbase.store.errors import (
    BadUrl,
    Conflict,
    Corrupt,
    Foreign,
    SchemaTooNew,
    StorageFull,
    StoreError,
    StoreUnavailable,
)


def _scheme_error(url: str) -> BadUrl:
    scheme = url.split(":", 1)[0]
    return BadUrl(
        f"unsupported database URL scheme {scheme!r} "
        "(expected sqlite:///FILE or postgresql://USER@HOST:PORT/DB)"
    )


def open_store(url: str) -> Store:
    """A store for `url` (`sqlite:///FILE` or `postgresql://...`); `await store.open()` next."""
    if url.startswith("sqlite:///"):
        from pinbase.store.sqlite.store import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from pinbase.store.postgres.store import PostgresStore

        return PostgresStore(url)
    raise _scheme_error(url)


@asynccontextmanager
async def opened_store(url: str) -> AsyncIterator[Store]:
    """The store at `url`, opened for the block and closed after it (a command's one use)."""
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def check_database(url: str, *, full: bool = False) -> CheckReport:
    """`pinbase check` of the database at `url` (see `pinbase.store.check`); raises the store's
    errors for a database it cannot check (`BadUrl` for a URL it does not know)."""
    if url.startswith("sqlite:///"):
        from pinbase.store.sqlite.store import check_file

        path = Path(url.removeprefix("sqlite:///"))
        return await asyncio.to_thread(check_file, path, full=full)
    if url.startswith(("postgresql://", "postgres://")):
        from pinbase.store.postgres.store import check_database as check_postgres

        return await check_postgres(url, full=full)
    raise _scheme_error(url)


__all__ = [
    "BadUrl",
    "CheckReport",
    "Conflict",
    "Corrupt",
    "Foreign",
    "SchemaTooNew",
    "StorageFull",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "check_database",
    "open_store",
    "opened_store",
]
