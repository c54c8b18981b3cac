"""What every command shares: the consoles, the one-line error, the database options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pinbase.app.auth.secrets import use_password_hash_memory
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
