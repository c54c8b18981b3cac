"""What every command shares: the consoles, the one-line error, the database options."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pinbase.app.auth.secrets import use_password_hash_memory
from pinbase.app.progress import NoProgress
from pinbase.app.progress import Progress as Steps
from pinbase.config import declared

console = Console(stderr=True)
out = Console()


def print_error(message: str) -> None:
    """An `error:` line on stderr, never wrapped (scripts and tests read it whole)."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="PINBASE_DATA_DIR",
        help="Directory of the embedded database [default: ./pinbase-data].",
    ),
]
Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="PINBASE_DATABASE",
        help="Database URL [default: sqlite:///<data-dir>/pinbase.db].",
    ),
]


_HASH_MEMORY = next(item for item in declared() if item.name == "password_hash_memory")


def _use_hash_memory(kib: int) -> int:
    use_password_hash_memory(kib)
    return kib


PasswordHashMemory = Annotated[
    int,
    typer.Option(
        _HASH_MEMORY.flag,
        envvar=_HASH_MEMORY.env,
        min=_HASH_MEMORY.option.minimum,
        help=_HASH_MEMORY.option.help,
        callback=_use_hash_memory,
    ),
]
"""The cost of the password hashes a command makes, as `serve`'s setting of the same name."""
DEFAULT_HASH_MEMORY: int = _HASH_MEMORY.default


class Bars:
    """A use case's progress (`pinbase.app.progress`) as one rich bar per phase, on stderr;
    nothing is drawn until a phase begins."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description:<15}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def begin(self, phase: str, total: int) -> None:
        if not self.tasks:
            self.bars.start()
        self.tasks[phase] = self.bars.add_task(phase, total=total)

    def advance(self, phase: str, steps: int) -> None:
        self.bars.advance(self.tasks[phase], steps)

    def stop(self) -> None:
        if self.bars.live.is_started:  # stopping bars never shown would print an empty line
            self.bars.stop()


@contextlib.contextmanager
def progress_bars() -> Iterator[Steps]:
    """Progress bars on a terminal; elsewhere (scripts, logs) nothing."""
    if not console.is_terminal:
        yield NoProgress()
        return
    bars = Bars()
    try:
        yield bars
    finally:
        bars.stop()


@contextlib.contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner saying `what` on a terminal, for one long step that cannot count its steps."""
    if not console.is_terminal:
        yield
        return
    with console.status(what):
        yield
