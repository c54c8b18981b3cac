"""What pinbase verifies about a PostgreSQL database before it uses it, and how it explains a
refusal: one line naming the server (never the password) and what went wrong.

- The server cannot be reached (refused, unknown host, no answer), refuses the login (wrong
  password, unknown role, no `pg_hba.conf` entry) or has no such database: `explained` turns the
  driver's error into a `StoreUnavailable` that says which.
- The database is another application's: it holds tables in pinbase's schema (the first of the
  search path) but not pinbase's own. pinbase would otherwise create its tables among them, or
  fail on the first name they share; `ensure_pinbase` refuses with `Foreign` instead. Tables of
  extensions (PostGIS's `spatial_ref_sys`, say) do not count.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from urllib.parse import urlsplit

import asyncpg

from pinbase.store.errors import Foreign, SchemaTooNew, StoreError, StoreUnavailable
from pinbase.store.postgres.schema import SCHEMA_VERSION

_USER_TABLES = """
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1 LIMIT 6
"""
_PINBASE_SCHEMA = (
    "SELECT to_regclass('schema_version') IS NOT NULL AND to_regclass('meta') IS NOT NULL"
)


def server(url: str) -> str:
    """`HOST:PORT` of a database URL, for messages (no user, no password)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the configured server"
    return f"{host}:{port}"


def database(url: str) -> str:
    """The database name of a URL, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    return parts.path.lstrip("/") or parts.username or "postgres"


def described(url: str) -> str:
    """`database "NAME" on PostgreSQL at HOST:PORT`."""
    return f'database "{database(url)}" on PostgreSQL at {server(url)}'


def explained(exc: BaseException, url: str) -> StoreError | None:
    """The one-line error for a failure to connect, or None when it is not one of those."""
    at = server(url)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        name = database(url)
        return StoreUnavailable(
            f'PostgreSQL at {at} has no database "{name}" ({exc}): create it '
            f"(createdb {name}) or correct the URL"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        # wrong password, unknown role, no pg_hba.conf entry
        return StoreUnavailable(f"PostgreSQL at {at} refused the login: {exc}")
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return StoreUnavailable(f"PostgreSQL at {at} does not take connections now: {exc}")
    if isinstance(exc, socket.gaierror):
        return StoreUnavailable(f"cannot reach PostgreSQL at {at}: unknown host ({exc.strerror})")
    if isinstance(exc, asyncio.TimeoutError):
        return StoreUnavailable(f"cannot reach PostgreSQL at {at}: no answer in time")
    if isinstance(exc, OSError):
        refused = isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED
        if refused or "Connect call failed" in str(exc):  # every address refused
            return StoreUnavailable(
                f"cannot reach PostgreSQL at {at}: connection refused (is it running and "
                "listening there?)"
            )
        return StoreUnavailable(f"cannot reach PostgreSQL at {at}: {exc.strerror or exc}")
    return None


async def ensure_pinbase(conn: asyncpg.Connection, url: str) -> None:
    """Refuse (`Foreign`) a database that holds tables but not pinbase's schema."""
    if await conn.fetchval(_PINBASE_SCHEMA):
        return
    names = [row[0] for row in await conn.fetch(_USER_TABLES)]
    if names:
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        raise Foreign(
            f"{described(url)} holds other tables ({shown}) and not pinbase's; give pinbase "
            "a database of its own"
        )


async def schema_version(conn: asyncpg.Connection) -> int:
    """pinbase's schema version of the database (0: none yet); `SchemaTooNew` when newer."""
    if not await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        return 0
    version: int = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this pinbase ({SCHEMA_VERSION})"
        )
    return version


__all__ = ["database", "described", "ensure_pinbase", "explained", "schema_version", "server"]
