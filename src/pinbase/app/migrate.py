"""`pinbase migrate`: copy a whole deployment from one database to another.

What is copied, in this order:

1. entities: organizations, roles, OAuth clients (with their secrets' hashes), users (with their
   password hashes), products, datastreams and devices (with their tokens' hashes), so every
   client secret, user password and device token keeps working against the target;
2. current values, with their timestamps;
3. history, streamed in key order in batches of 10,000 points, so a history of any length never
   sits in memory; every point keeps its key, seq included (imported points stay imported);
4. widget properties;
4a. the event log (every device's timeline), each event under its id; events logged on the
   target afterwards get ids above the copied ones;
5. the count of writer ids: the target's next writer id is above every one the source handed
   out, so a live point written to the target never takes the key of a copied one.

What is not copied:

- OAuth access and refresh tokens. Clients and users are copied, so scripts simply request new
  tokens from the target; tokens issued by the source stop working there. (This is a choice:
  copying them would carry over half-rotated refresh families and revocation state that mean
  nothing to a different deployment, for no gain over one new token request.)
- Derived or private state: the history bucket counts (the target rebuilds them as the points
  arrive), the history rollup (the target builds its own as it is read), the catalog
  generation, the schema version and PostgreSQL's rate-limit buckets.

Every row is written with an upsert keyed like the source (the same ids), so a run can be
repeated safely: a second run, or one resuming an interrupted run, adds nothing twice, and a
row the source changed in between is brought up to date. The source should not be written
during a run (stop its server); writes that land anyway are picked up by running again.

After copying, the row counts are verified: for every kind the target must hold at least as
many rows as the source and, if it held none of that kind before the run, exactly as many.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pinbase.app.progress import NoProgress, Progress
from pinbase.store import Store, StoreError, open_store
from pinbase.store.records import ValueWrites
from pinbase.store.sql import COUNTED_TABLES, ENTITY_TABLES

T = TypeVar("T")
R = TypeVar("R")

BATCH = 10_000  # rows per read and per target transaction
ENTITY_KINDS = ENTITY_TABLES
KINDS = COUNTED_TABLES
PHASES = ("entities", "current values", "history", "properties", "device events", "hardware")


class CannotOpen(Exception):
    """A bad database URL, or a database that cannot be reached or opened."""


@dataclasses.dataclass(slots=True)
class MigrationReport:
    source: dict[str, int]
    """Rows per kind in the source when the run started."""
    target_before: dict[str, int]
    target_after: dict[str, int]
    copied: dict[str, int] = dataclasses.field(default_factory=dict)
    """Rows written to the target per phase."""
    mismatches: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(source: dict[str, int], before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The kinds whose target count does not account for the source's rows."""
    problems = []
    for kind in KINDS:
        want, had, got = source.get(kind, 0), before.get(kind, 0), after.get(kind, 0)
        if got < want:
            problems.append(f"{kind}: the target has {got} rows, fewer than the source's {want}")
        elif had == 0 and got != want:
            problems.append(
                f"{kind}: the target was empty and now has {got} rows, not the source's {want}"
            )
    return problems


async def _next(batches: AsyncIterator[T]) -> T | None:
    try:
        return await anext(batches)
    except StopAsyncIteration:
        return None


async def read_ahead(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """`batches`, reading the next one while the caller writes the current one."""
    pending = asyncio.ensure_future(_next(batches))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(_next(batches))
            yield batch
    finally:
        # the caller stopped early (or failed): settle the read in flight, close the source
        pending.cancel()
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved: the caller's own error is the one that counts
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


async def migrate(
    source: Store, target: Store, progress: Progress | None = None, *, batch: int = BATCH
) -> MigrationReport:
    """Copy every entity, current value, history point and property of `source` to `target`.

    Both stores must be open. Raises the stores' own errors (`StoreUnavailable` when a database
    goes away); whatever was written until then stays, and running again completes the copy.
    """
    progress = progress if progress is not None else NoProgress()
    started = time.monotonic()
    counts = await source.counts()
    before = await target.counts()
    report = MigrationReport(source=counts, target_before=before, target_after={})

    entities = await source.entities()  # the target orders them (variants after parents)
    total = sum(len(getattr(entities, kind)) for kind in ENTITY_KINDS)
    progress.begin("entities", total)
    if not entities.is_empty():
        await target.upsert_entities(entities)
    progress.advance("entities", total)
    report.copied["entities"] = total
    del entities

    async def copy(
        phase: str,
        expected: int,
        batches: AsyncIterator[list[R]],
        write: Callable[[list[R]], Awaitable[object]],
    ) -> None:
        progress.begin(phase, expected)
        written = 0
        async for rows in read_ahead(batches):
            await write(rows)  # one target transaction per batch
            written += len(rows)
            progress.advance(phase, len(rows))
        report.copied[phase] = written

    await copy(
        "current values",
        counts["current_values"],
        source.export_current(batch),
        lambda rows: target.write_values(ValueWrites(current=rows)),
    )
    await copy(
        "history",
        counts["history"],
        source.export_history(batch),
        lambda rows: target.write_values(ValueWrites(history=rows)),
    )
    await copy(
        "properties",
        counts["properties"],
        source.export_properties(batch),
        target.import_properties,
    )
    await copy(
        "device events",
        counts["device_events"],
        source.export_device_events(batch),
        target.import_device_events,
    )
    await copy(
        "hardware",
        counts["device_hardware"],
        source.export_hardware(batch),
        target.import_hardware,
    )
    await target.allocate_writer(after=await source.writers())

    report.target_after = await target.counts()
    report.mismatches = verify(counts, before, report.target_after)
    report.seconds = time.monotonic() - started
    return report


# --- databases by URL (what the command line does) -------------------------------------------


def redact(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def same_database(first: str, second: str) -> bool:
    """Whether two URLs obviously name one database (the same file, or the same text)."""
    a, b = _sqlite_path(first), _sqlite_path(second)
    if a is not None and b is not None:
        return a.resolve() == b.resolve()
    scheme = "postgresql://"
    return first.replace("postgres://", scheme, 1) == second.replace("postgres://", scheme, 1)


_OPEN_FAILURES: tuple[type[BaseException], ...] = (
    StoreError,  # unreachable, damaged, or a schema newer than this pinbase
    ValueError,  # a URL the driver cannot parse
)


async def _open(url: str, role: str) -> Store:
    try:
        store = open_store(url)
    except ValueError as exc:
        raise CannotOpen(f"bad {role} URL {redact(url)!r}: {exc}") from None
    path = _sqlite_path(url)
    if role == "source" and path is not None and not path.is_file():
        # opening would create an empty database and "copy" nothing
        raise CannotOpen(f"source database {path} does not exist")
    try:
        await store.open()
    except _OPEN_FAILURES as exc:
        await _close_quietly(store)
        raise CannotOpen(f"cannot open the {role} database {redact(url)}: {exc}") from None
    return store


async def _close_quietly(store: Store) -> None:
    with contextlib.suppress(Exception):  # already failing: the first error is the one to report
        await store.close()


async def migrate_databases(
    source_url: str, target_url: str, progress: Progress | None = None, *, batch: int = BATCH
) -> MigrationReport:
    """Open both databases (creating the target's schema), copy, verify, close.

    Raises `CannotOpen` for a bad URL or a database that cannot be opened.
    """
    if same_database(source_url, target_url):
        raise CannotOpen("--from and --to name the same database")
    source = await _open(source_url, "source")
    try:
        target = await _open(target_url, "target")
        try:
            return await migrate(source, target, progress, batch=batch)
        finally:
            await target.close()
    finally:
        await source.close()


__all__ = [
    "BATCH",
    "KINDS",
    "CannotOpen",
    "MigrationReport",
    "migrate",
    "migrate_databases",
    "redact",
    "same_database",
    "verify",
]
