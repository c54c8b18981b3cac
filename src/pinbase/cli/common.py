"""What every command shares: the consoles, the one-line error, the database options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

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
