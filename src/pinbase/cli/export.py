"""`pinbase export`: one device's history as CSV (`pinbase.app.history_export`), read from the
database directly like the other operator commands, with a progress bar on a terminal.

Exit status: 0 done; 1 no such device or datastream, or a bad time or timezone; 2 a database
that cannot be used (or a file that cannot be written).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer

from pinbase.app.history_export import count, csv_batches, export_of, instant
from pinbase.cli.common import Database, DataDir, console, print_error, progress_bars
from pinbase.cli.fleet import on_database
from pinbase.domain.errors import DomainError
from pinbase.store import Store

PHASE = "points"


@contextlib.contextmanager
def _opened(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    with output.open("w", encoding="utf-8", newline="") as file:
        yield file


def export_command(
    device: Annotated[int, typer.Argument(help="The device's id.", show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="First time: epoch milliseconds or ISO 8601 (read in --tz without an offset).",
            show_default=False,
        ),
    ],
    end: Annotated[
        str, typer.Option("--to", help="Last time (included), as --from.", show_default=False)
    ],
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="IANA timezone of the ts_iso column (UTC when left out)."),
    ] = None,
    datastreams: Annotated[
        list[int] | None,
        typer.Option("--datastream", help="Only this datastream id (repeatable); all by default."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Write to this file (stdout when left out).", dir_okay=False
        ),
    ] = None,
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """Export a device's history from --from to --to as CSV (see docs/cli.md)."""

    async def run(store: Store) -> int:
        export = export_of(
            await store.catalog(),
            device,
            datastreams or [],
            instant(start, tz),
            instant(end, tz),
            tz,
        )
        total = await count(store, export)
        with _opened(output) as file, progress_bars() as bars:
            bars.begin(PHASE, total)
            async for text, points in csv_batches(store, export):
                file.write(text)
                bars.advance(PHASE, points)
        return total

    try:
        total = on_database(data_dir, database, run)
    except DomainError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except OSError as exc:
        print_error(f"{output}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    if output is not None:
        console.print(f"{total} points written to {output}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `pinbase export` to `app`."""
    app.command("export")(export_command)
