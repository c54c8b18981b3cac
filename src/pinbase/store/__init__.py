"""Persistence: the `Store` interface and its implementations, chosen by database URL."""

from __future__ import annotations

from pathlib import Path

from pinbase.store.base import Store
from pinbase.store.errors import Conflict, Corrupt, SchemaTooNew, StoreError, StoreUnavailable


def open_store(url: str) -> Store:
    """A store for `url` (`sqlite:///FILE` or `postgresql://...`); `await store.open()` next."""
    if url.startswith("sqlite:///"):
        from pinbase.store.sqlite.store import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from pinbase.store.postgres.store import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported database URL scheme {scheme!r} "
        "(expected sqlite:///FILE or postgresql://USER@HOST:PORT/DB)"
    )


__all__ = [
    "Conflict",
    "Corrupt",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]
