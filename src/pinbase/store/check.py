"""`pinbase check`: what a check of a database found, whichever the backend.

A check opens nothing for writing and migrates nothing: it reads. It refuses, with the store's
own errors, exactly what opening the store would refuse (a missing, unreadable, read-only,
foreign or too new database, an unreachable server), then looks for damage: on SQLite
`PRAGMA quick_check` over the whole file, or with `full` `PRAGMA integrity_check` and
`PRAGMA foreign_key_check`; on PostgreSQL (which checks its own pages as it reads them) with
`full` a sequential read of every row of pinbase's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_PROBLEMS = 100
"""Problems a check lists before it stops looking."""


@dataclass(slots=True)
class CheckReport:
    database: str
    """What was checked, for messages: a file, or a PostgreSQL database and its server."""
    schema_version: int
    """pinbase's schema version of the database; 0 for an empty one (created at first start)."""
    checked: str
    """What the check ran (`quick_check`, ...)."""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    size: int | None = None
    """Bytes the database takes, when known."""
    free: int | None = None
    """Bytes free on the file system holding the database, when known."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def damage(self) -> str:
        """The one-line message of a check that found problems."""
        return damage_message(self.database, self.checked, self.problems)


def damage_message(database: str, checked: str, problems: list[str]) -> str:
    """`DATABASE is damaged: CHECK found N problems (first: ...); restore it from a backup`."""
    count = len(problems)
    counted = f"{count}+" if count >= MAX_PROBLEMS else str(count)
    first = " ".join(problems[0].split())
    return (
        f"{database} is damaged: {checked} found {counted} problem{'s' if count != 1 else ''} "
        f"(first: {first}); restore it from a backup"
    )


__all__ = ["MAX_PROBLEMS", "CheckReport", "damage_message"]
