"""Persistence: the `Store` interface and its implementations, chosen by database URL."""

from __future__ import annotations

from pathlib import Path

from .base import Store, StoreUnavailable


def open_store(url: str) -> Store:
    """A store for `url` (`sqlite:///path/to/file.db`); call `await store.open()` next."""
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported database URL scheme {scheme!r} (expected sqlite:///FILE)")


__all__ = ["Store", "StoreUnavailable", "open_store"]
