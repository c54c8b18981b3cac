"""What pinbase verifies about an SQLite file before it trusts it, and how it explains a refusal.

Every open (`serve`, `apply`, `migrate`) and `pinbase check` go through these steps, each of
which refuses with one line that names the file and what to do:

1. **The file system** (`prepare_file`, before SQLite sees the file): the data directory is
   created 0700 and a new database file 0600 (SQLite gives its -wal and -shm files the mode of
   the database file, so they are 0600 too; existing files keep the modes their owner chose).
   A 0-byte file is refused unless this start created the data directory: SQLite would take it
   for an empty database and the server would start a new, empty deployment over what was
   probably a database that lost its content. A file that does not begin with SQLite's header
   is refused without being touched (another program's file, or one damaged at its start).
2. **Whose database it is** (`identify`): pinbase marks its files with `PRAGMA application_id`
   (`APPLICATION_ID`). A file with another id, or without one that holds anything but pinbase's
   schema, is another program's (`Foreign`), and pinbase writes nothing into it. Files made
   before the id existed are recognised by their schema and marked at their next open.
3. **Damage** (`run_check`): `PRAGMA quick_check` at every open, bounded by `START_BUDGET_S`,
   and on request (`pinbase check`) unbounded, or `PRAGMA integrity_check` and
   `PRAGMA foreign_key_check` with `--full`.
4. **Writes** (the store's open ends with one small write, `mark`): a read-only file or
   directory, or a full disk, is refused at start rather than discovered by the first client.

Why the start-up check is bounded: `quick_check` reads every page (O(pages)). Measured on a
history of 1,000,000 points (26 MB, 6,400 pages of 4 KiB) on two busy cores: 0.12-0.20 s with
the file in the page cache, 0.36 s on a first run (`integrity_check` plus `foreign_key_check`:
0.16-0.23 s); that is some 150 MB a second, so a 10 GB file would hold every restart for a
minute or more. The check at start therefore stops after `START_BUDGET_S` (a few hundred MB),
logs that it covered only part of the file and names `pinbase check`, which runs to the end and
may run while the server does (it only reads). Damage beyond the part checked still surfaces:
reading a damaged page is a `Corrupt` error, answered 503 and reported by `/healthz`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pinbase.domain.clock import now_ms
from pinbase.store.check import MAX_PROBLEMS, damage_message
from pinbase.store.errors import Corrupt, Foreign, SchemaTooNew, StoreUnavailable
from pinbase.store.sqlite.schema import SCHEMA_VERSION

log = logging.getLogger("pinbase.store.sqlite")

HEADER = b"SQLite format 3\x00"
APPLICATION_ID = 0x70696E62  # "pinb"
START_BUDGET_S = 3.0
RECOVERED_FREE_BYTES = 1 << 20
"""Free space a file system needs before a store that found it full counts as recovered."""
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
MARK = (
    "INSERT INTO meta (key, value) VALUES ('written_at', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
"""The small write of `mark` and of the store's health probe."""


def prepare_file(path: Path) -> None:
    """Step 1 (see module): create the directory and the file when missing, with private modes;
    refuse a 0-byte file in an existing directory and a file that is not SQLite."""
    directory = path.parent
    created_directory = False
    if not directory.is_dir():
        try:
            directory.mkdir(mode=DIRECTORY_MODE, parents=True)
            created_directory = True
        except FileExistsError:
            pass  # made at the same moment by another process
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the data directory {directory}: {exc.strerror}"
            ) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        _create(path)
        return
    except OSError as exc:
        raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from None
    inspect_file(path, fd, empty_is_new=created_directory)


def inspect_file(path: Path, fd: int, *, empty_is_new: bool) -> None:
    """Refuse the open file `fd` at `path` if it is not a file, is empty (unless `empty_is_new`),
    or does not begin with SQLite's header; closes `fd`."""
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise StoreUnavailable(f"{path} is not a file (a database file was expected)")
        header = os.read(fd, 100)
    except OSError as exc:
        raise StoreUnavailable(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    size = status.st_size
    if size == 0:
        if empty_is_new:
            return
        raise Corrupt(
            f"{path} is empty (0 bytes), as a database that lost its content would be; "
            "pinbase does not start an empty deployment over it: restore it from a backup, "
            "or delete it to start afresh"
        )
    if not header.startswith(HEADER):
        raise Foreign(
            f"{path} is not an SQLite database (another program's file, or a database "
            "damaged at its start); pinbase leaves it untouched"
        )
    if len(header) < 100:
        raise Corrupt(f"{path} is damaged: it ends inside SQLite's 100-byte header")


def _create(path: Path) -> None:
    """An empty database file, readable and writable by its owner only."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        pass  # created at the same moment by another process: SQLite takes it from here
    except OSError as exc:
        raise StoreUnavailable(f"cannot create {path}: {exc.strerror}") from None


def unwritable(path: Path) -> str | None:
    """Why pinbase cannot write its database at `path`, when the file system says so (the
    explanation of SQLite's "unable to open database file" or "readonly database")."""
    need = "; pinbase needs to write its database file and the directory holding it"
    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            os.close(os.open(target, os.O_RDWR | os.O_CLOEXEC))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot write {target}: {exc.strerror}{need}"
    try:
        fd, name = tempfile.mkstemp(prefix=".pinbase-", dir=path.parent)
    except OSError as exc:
        return (
            f"cannot create files in {path.parent}: {exc.strerror} (SQLite keeps its -wal and "
            f"-shm files next to the database){need}"
        )
    os.close(fd)
    os.unlink(name)
    return None


def free_bytes(directory: Path) -> int:
    """Bytes this process may still write on the file system holding `directory` (root may use
    the blocks a file system reserves for it)."""
    status = os.statvfs(directory)
    blocks = status.f_bfree if os.geteuid() == 0 else status.f_bavail
    return blocks * status.f_frsize


def identify(conn: sqlite3.Connection, path: Path) -> int:
    """Step 2 (see module): the file's pinbase schema version, 0 for a new, empty database.

    Raises `Foreign` for another program's database and `SchemaTooNew` for a newer pinbase's.
    """
    application_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    names = [
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite%' ORDER BY name"
        )
    ]
    if application_id not in (0, APPLICATION_ID):
        raise Foreign(
            f"{path} is an SQLite database of another program (application id "
            f"{application_id:#x}), not pinbase's; pinbase leaves it untouched"
        )
    new = version == 0 and not names
    if application_id == 0 and not new and not (version >= 1 and _has_meta(conn, names)):
        shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "")
        raise Foreign(
            f"{path} is an SQLite database of another program (it holds {shown or 'no table'}), "
            "not pinbase's; pinbase leaves it untouched"
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this pinbase ({SCHEMA_VERSION})"
        )
    return version


def _has_meta(conn: sqlite3.Connection, names: list[str]) -> bool:
    """Whether the file holds pinbase's `meta` table and its catalog generation."""
    if "meta" not in names:
        return False
    try:
        row = conn.execute("SELECT 1 FROM meta WHERE key = 'catalog_generation'").fetchone()
    except sqlite3.OperationalError:  # a `meta` table of another shape
        return False
    return row is not None


def mark(conn: sqlite3.Connection) -> None:
    """Step 4 (see module): record pinbase's application id when missing and write one row.

    Run after the migrations, in one transaction; it fails like any write would (read-only
    file or directory, full disk), so that the start fails instead of the first request.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(MARK, (now_ms(),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@dataclass(slots=True)
class CheckResult:
    """What one run of `run_check` found."""

    pragma: str
    problems: list[str] = field(default_factory=list)
    complete: bool = True
    """False when the time budget ran out before the check had read the whole file."""
    seconds: float = 0.0


def run_check(conn: sqlite3.Connection, *, full: bool, budget: float | None) -> CheckResult:
    """Step 3 (see module): `quick_check`, or with `full` `integrity_check` then
    `foreign_key_check`, stopped after `budget` seconds when given.

    The budget interrupts the statement from a timer thread (`sqlite3_interrupt`): the progress
    handler would not do, as SQLite walks each b-tree inside one virtual-machine step.
    """
    result = CheckResult("integrity_check" if full else "quick_check")
    timer = threading.Timer(budget, conn.interrupt) if budget is not None else None
    started = time.monotonic()
    if timer is not None:
        timer.start()
    try:
        rows = conn.execute(f"PRAGMA {result.pragma}({MAX_PROBLEMS})").fetchall()
        result.problems = [str(text) for (text,) in rows if text != "ok"]
        if full and not result.problems:
            result.pragma = "integrity_check and foreign_key_check"
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchmany(
                MAX_PROBLEMS
            ):
                result.problems.append(f"row {rowid} of {table} refers to a missing {parent} row")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_INTERRUPT:
            raise
        result.complete = False
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise
        result.problems.append(str(exc))
    finally:
        if timer is not None:
            timer.cancel()
        result.seconds = time.monotonic() - started
    return result


def check_at_start(conn: sqlite3.Connection, path: Path) -> None:
    """The bounded `quick_check` of every open: raises `Corrupt` for damage it finds."""
    result = run_check(conn, full=False, budget=START_BUDGET_S)
    if result.problems:
        raise Corrupt(damage_message(str(path), result.pragma, result.problems))
    if not result.complete:
        size = path.stat().st_size / 2**20
        log.warning(
            "the start-up quick_check of %s (%.0f MiB) stopped after %.1f s without finding "
            "damage; run `pinbase check` for a check of the whole file",
            path,
            size,
            result.seconds,
        )


__all__ = [
    "APPLICATION_ID",
    "MARK",
    "RECOVERED_FREE_BYTES",
    "START_BUDGET_S",
    "CheckResult",
    "check_at_start",
    "free_bytes",
    "identify",
    "inspect_file",
    "mark",
    "prepare_file",
    "run_check",
    "unwritable",
]
