"""The `pinbase` command: serve, apply, check, demo, migrate.

Every command that opens a database refuses one it cannot use with a single `error:` line and
a non-zero exit status, never a traceback: the store's errors carry the whole message.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from pinbase import __version__
from pinbase.app.provisioning import (
    ApplyReport,
    ProvisioningError,
    apply_to_database,
    load_document,
)
from pinbase.cli.common import (
    DEFAULT_HASH_MEMORY,
    Database,
    DataDir,
    PasswordHashMemory,
    console,
    out,
    print_error,
    progress_bars,
    working,
)
from pinbase.cli.export import register as register_export
from pinbase.cli.fleet import register
from pinbase.config import Settings, database_url, declared

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="pinbase: a self-hosted IoT device-data server (Blynk Organization API).",
)


def main() -> None:
    """The `pinbase` command: a mistake on the command line (an unknown option, an invalid
    value such as `--log-level chatty`) is one `error:` line naming the option, and exit 2."""
    try:
        # Without standalone mode a command's `typer.Exit(code)` comes back as its result.
        code = app(prog_name="pinbase", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("Aborted.")
        sys.exit(1)
    except TyperException as exc:  # typer's own click: UsageError, BadParameter, ...
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            out.print(context.get_help(), highlight=False)
            sys.exit(0)
        text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        if context is not None and context.parent is not None:
            text += f" (see pinbase {context.info_name} --help)"
        print_error(text)
        sys.exit(int(getattr(exc, "exit_code", 2)))


def show_version(value: bool) -> None:
    if value:
        out.print(f"pinbase {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=show_version,
            is_eager=True,
            help="Print pinbase's version and exit.",
        ),
    ] = False,
) -> None:
    """pinbase: a self-hosted IoT device-data server (Blynk Organization API)."""


def _serve_options() -> list[inspect.Parameter]:
    """One command-line option per declared setting (pinbase.config)."""
    hints = typing.get_type_hints(Settings)
    parameters = []
    for item in declared():
        option = typer.Option(
            item.flag,
            envvar=item.env,
            help=item.option.help,
            show_default=item.option.shown_default or True,
            case_sensitive=False,
            min=item.option.minimum,
        )
        parameters.append(
            inspect.Parameter(
                item.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=item.default,
                annotation=Annotated[hints[item.name], option],
            )
        )
    return parameters


def serve(**values: Any) -> None:
    """Run the HTTP server and the device listeners."""
    from pinbase import server
    from pinbase.net.logformat import configure_logging

    settings = Settings(**values)
    configure_logging(settings.log_level, settings.log_format)
    with startup_errors():
        server.run(server.serve(settings))


@contextlib.contextmanager
def startup_errors() -> Iterator[None]:
    """A server that cannot start exits 2 after one `error:` line naming the flag or file: a
    port or TLS file (`StartupError`), the database (`StoreError`; once running, its errors
    are 503s), a listener that failed to bind after all (`OSError`)."""
    from pinbase.net.startup import StartupError
    from pinbase.store import StoreError

    try:
        yield
    except (StartupError, StoreError) as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    except OSError as exc:
        print_error(f"cannot start: {exc.strerror or exc}")
        raise typer.Exit(2) from None


_parameters = _serve_options()
serve.__signature__ = inspect.Signature(_parameters)  # type: ignore[attr-defined]
serve.__annotations__ = {p.name: p.annotation for p in _parameters}
app.command()(serve)


def print_report(report: ApplyReport) -> None:
    if not report.changed:
        out.print(f"No changes ({report.unchanged} entities already up to date).")
    for kind, count in report.created.items():
        if count:
            out.print(f"created {count} {kind}")
    for kind, count in report.updated.items():
        if count:
            out.print(f"updated {count} {kind}")
    revoked = report.revoked
    if not revoked.is_empty():
        out.print(
            f"revoked the tokens of {len(revoked.user_ids)} users and {len(revoked.client_ids)} "
            "clients (password, role or secret changed)"
        )
    if report.cleared_meta:
        moved = ", ".join(str(device_id) for device_id in report.cleared_meta)
        out.print(f"deleted the metadata values of devices moved to another product: {moved}")
    if report.secrets:
        out.print("\nGenerated secrets (shown once, stored only as hashes):")
        for what, secret in report.secrets:
            out.print(f"  {what}: {secret}", markup=False, highlight=False)


@app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Argument(help="Fleet description, YAML or JSON.")],
    data_dir: DataDir = None,
    database: Database = None,
    password_hash_memory: PasswordHashMemory = DEFAULT_HASH_MEMORY,
) -> None:
    """Create or update organizations, clients, users, products and devices from FILE.

    Exit status 2, with one `error:` line and nothing written, for a file that cannot be applied
    (including one that conflicts with the stored entities) or a database that cannot be used.
    """
    from pinbase.store import StoreError

    try:
        document = load_document(file)
        with progress_bars() as bars:
            report = asyncio.run(
                apply_to_database(database_url(data_dir, database), document, bars)
            )
    except (ProvisioningError, StoreError) as exc:
        print_error(str(exc))
        console.print("Nothing was written.")
        raise typer.Exit(2) from None
    print_report(report)


def _bytes(count: int) -> str:
    """`count` bytes for people: 512 bytes, 80.0 KiB, 1.2 GiB."""
    if count < 1024:
        return f"{count} bytes"
    size = count / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@app.command(
    "check",
    help=(
        "Check the database for damage, changing nothing (it may run while the server does).\n\n"
        "Refuses, as serve would, a database that is missing, unreadable, read-only, not "
        "pinbase's or newer than this pinbase. On SQLite it then runs PRAGMA quick_check over "
        "the whole file (the check at every start stops after a few seconds on a large file); "
        "--full runs PRAGMA integrity_check, which also compares every index with its table, "
        "and PRAGMA foreign_key_check. On PostgreSQL it checks the connection and the schema; "
        "--full reads every row of pinbase's tables, so that PostgreSQL meets any damaged "
        "page.\n\n"
        "Exit status: 0 no damage found; 1 damage found; 2 a database that cannot be checked."
    ),
)
def check_command(
    data_dir: DataDir = None,
    database: Database = None,
    full: Annotated[
        bool, typer.Option("--full", help="The thorough check (slower; see above).")
    ] = False,
) -> None:
    """`pinbase check [--full]` (see `pinbase.store.check`; help text above)."""
    from pinbase.store import StoreError, check_database

    try:
        with working("checking the whole database" if full else "checking the database"):
            report = asyncio.run(check_database(database_url(data_dir, database), full=full))
    except StoreError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None
    if not report.ok:
        print_error(report.damage())
        raise typer.Exit(1)
    facts = [
        f"pinbase schema version {report.schema_version}" if report.schema_version else "empty"
    ]
    if report.size is not None:
        facts.append(_bytes(report.size))
    if report.free is not None:
        facts.append(f"{_bytes(report.free)} free on its file system")
    out.print(
        f"ok: {report.database} ({', '.join(facts)}): {report.checked} found no damage "
        f"in {report.seconds:.2f} s",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    hardware_port: Annotated[
        int, typer.Option(help="Hardware protocol (TCP) port; the default, if taken: a free one.")
    ] = 8442,
    mqtt_port: Annotated[
        int, typer.Option(help="MQTT port; the default, if taken: a free one.")
    ] = 1883,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where to create the demo database, kept on exit [default: a new temporary "
            "dir, removed on exit]."
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary data directory on exit.")
    ] = False,
) -> None:
    """Serve a demo fleet whose simulated devices write values every second."""
    from pinbase.demo.run import run_demo
    from pinbase.net.logformat import configure_logging

    configure_logging("warning")
    with startup_errors():
        run_demo(host, port, hardware_port, mqtt_port, data_dir, keep)


@app.command(
    "migrate",
    help=(
        "Copy a whole deployment to another database and verify the row counts.\n\n"
        "Copies organizations, roles, clients, users, products, datastreams, devices, current "
        "values, history and widget properties. Every row is upserted by key, so running again "
        "is safe, copies nothing twice and completes an interrupted run. OAuth tokens are not "
        "copied: clients and users simply request new ones. Stop the server of the source "
        "first.\n\n"
        "Exit status: 0 copied and verified; 1 the copy or the verification failed; 2 a bad "
        "URL or a database that cannot be reached."
    ),
)
def migrate_command(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Database to copy from: sqlite:///FILE or postgresql://USER@HOST:PORT/DB.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Option(
            "--to",
            help="Database to copy into (its schema is created when missing).",
            show_default=False,
        ),
    ],
) -> None:
    """`pinbase migrate --from URL --to URL` (see `pinbase.app.migrate`; help text above)."""
    from rich.table import Table

    from pinbase.app.migrate import KINDS, CannotOpen, migrate_databases, redact
    from pinbase.store import Corrupt, StoreError, StoreUnavailable

    def fail(code: int, message: str) -> typer.Exit:
        print_error(message)
        return typer.Exit(code)

    try:
        with progress_bars() as bars:
            report = asyncio.run(migrate_databases(source, target, bars))
    except CannotOpen as exc:
        raise fail(2, str(exc)) from None
    except Corrupt as exc:
        raise fail(1, f"the copy failed: {exc}") from None
    except StoreUnavailable as exc:
        raise fail(2, f"{exc}\nWhat was copied so far stays; run the same command again.") from None
    except StoreError as exc:
        raise fail(1, f"the copy failed: {exc}") from None

    out.print(f"{redact(source)} → {redact(target)}", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("rows")
    for heading in ("source", "target before", "target after"):
        table.add_column(heading, justify="right")
    table.add_column("")
    for kind in KINDS:
        want, got = report.source[kind], report.target_after[kind]
        mark = "[red]✗[/red]" if any(m.startswith(f"{kind}:") for m in report.mismatches) else "✓"
        table.add_row(
            kind.replace("_", " "), str(want), str(report.target_before[kind]), str(got), mark
        )
    out.print(table)
    if not report.ok:
        for mismatch in report.mismatches:
            console.print(f"[red]mismatch:[/red] {escape(mismatch)}", highlight=False)
        raise fail(1, "verification failed: the target does not hold every row of the source.")
    out.print(
        f"Copied and verified in {report.seconds:.1f} s. OAuth tokens were not copied: "
        "clients and users request new ones from the target.",
        highlight=False,
    )


register(app)  # the operator commands (`pinbase.cli.fleet`) after the others in --help
register_export(app)  # `pinbase export` (`pinbase.cli.export`)
