"""The store's own errors: the only exceptions callers above the store ever need to catch.

Both backends translate their driver's exceptions (`sqlite3.Error`, `asyncpg`'s) at their
boundary, so nothing above the store imports a driver. The kinds, by what a caller does next:

- `StoreUnavailable`: the database cannot be reached or is failing (connection refused or lost,
  locked for too long, disk full, I/O error, no such database). Callers answer 503 and may retry.
- `Corrupt`, a kind of `StoreUnavailable`: the database file is damaged or is not a database.
  It is unavailable too (a running server still answers 503 rather than 500), but retrying will
  not help, so commands that can tell the operator say so.
- `Conflict`: a write would break a uniqueness or foreign-key rule; nothing of that write was
  stored. `upsert_entities` names the entities in its message ("device 102's token is already
  the token of device 101").
- `SchemaTooNew`: the database was written by a newer pinbase; this one must not touch it.
- `StoreError`, the base: anything else the database refuses. That is a bug (a statement the
  database cannot run), reported as an internal error.
"""

from __future__ import annotations


class StoreError(Exception):
    """Something the store could not do; the message says what, without driver types."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is failing; callers answer 503."""


class Corrupt(StoreUnavailable):
    """The database file is damaged or is not a database at all."""


class Conflict(StoreError):
    """A write would break a uniqueness or foreign-key rule; nothing of it was stored."""


class SchemaTooNew(StoreError):
    """The database's schema is newer than this pinbase."""


__all__ = ["Conflict", "Corrupt", "SchemaTooNew", "StoreError", "StoreUnavailable"]
