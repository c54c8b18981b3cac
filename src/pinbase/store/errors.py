"""The store's own errors: the only exceptions callers above the store ever need to catch.

Both backends translate their driver's exceptions (`sqlite3.Error`, `asyncpg`'s) at their
boundary, so nothing above the store imports a driver. The kinds, by what a caller does next:

- `StoreUnavailable`: the database cannot be reached or is failing (connection refused or lost,
  locked for too long, I/O error, a read-only file or directory, no such database). Callers
  answer 503 and may retry.
- `StorageFull`, a kind of `StoreUnavailable`: the disk (or the quota) holding the database is
  full; the write that met it stored nothing. Callers answer 507 Insufficient Storage: retrying
  helps once an operator has freed space, and the store recovers by itself when they have.
- `Corrupt`, a kind of `StoreUnavailable`: the database file is damaged. It is unavailable too
  (a running server answers 503 rather than 500), but retrying will not help, so messages say
  so and commands that can tell the operator exit non-zero.
- `Foreign`: the file or database is not pinbase's (not SQLite at all, an SQLite file of
  another program, a PostgreSQL database holding other tables). Only opening raises it; pinbase
  writes nothing into such a database.
- `Conflict`: a write would break a uniqueness or foreign-key rule; nothing of that write was
  stored. `upsert_entities` names the entities in its message ("device 102's token is already
  the token of device 101").
- `SchemaTooNew`: the database was written by a newer pinbase; this one must not touch it.
- `BadUrl`, also a `ValueError`: a database URL of no known backend, or one the driver cannot
  parse.
- `StoreError`, the base: anything else the database refuses. That is a bug (a statement the
  database cannot run), reported as an internal error.

Messages name the file or server involved and, where there is one, what the operator can do;
the command line prints them as they are, on one line.
"""

from __future__ import annotations


class StoreError(Exception):
    """Something the store could not do; the message says what, without driver types."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is failing; callers answer 503."""


class StorageFull(StoreUnavailable):
    """The disk holding the database is full; callers answer 507."""


class Corrupt(StoreUnavailable):
    """The database file is damaged or is not a database at all."""


class Foreign(StoreError):
    """The file or database belongs to something other than pinbase."""


class Conflict(StoreError):
    """A write would break a uniqueness or foreign-key rule; nothing of it was stored."""


class SchemaTooNew(StoreError):
    """The database's schema is newer than this pinbase."""


class BadUrl(StoreError, ValueError):
    """A database URL that names no database pinbase can open."""


__all__ = [
    "BadUrl",
    "Conflict",
    "Corrupt",
    "Foreign",
    "SchemaTooNew",
    "StorageFull",
    "StoreError",
    "StoreUnavailable",
]
