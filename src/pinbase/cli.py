"""The `pinbase` command: serve, apply, demo."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from .config import Settings, database_url
from .provisioning import ApplyReport, ProvisioningError, apply, load_document
from .store import open_store

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="pinbase: a self-hosted IoT device-data server (Blynk Organization API).",
)
console = Console(stderr=True)
out = Console()

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


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after a clean shutdown.

    uvicorn re-sends SIGTERM/SIGINT to itself once it has shut down, which turns a graceful
    stop into exit status 143/130; pinbase exits 0 after a clean shutdown instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def run_server(settings: Settings, host: str, port: int, log_level: str) -> None:
    """Serve until SIGTERM/SIGINT: stop accepting, finish in-flight requests, close the store."""
    from .api import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # pinbase reads no client address; a proxy's headers change nothing
        timeout_graceful_shutdown=30,
        lifespan="on",
    )
    GracefulServer(config).run()


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="PINBASE_HOST", help="Address to bind.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PINBASE_PORT", help="HTTP port.")] = 8080,
    data_dir: DataDir = None,
    database: Database = None,
    body_limit: Annotated[
        int, typer.Option(envvar="PINBASE_BODY_LIMIT", help="Largest request body, bytes.")
    ] = 2 * 1024 * 1024,
    org_rate_limit: Annotated[
        int,
        typer.Option(envvar="PINBASE_ORG_RATE_LIMIT", help="Requests per minute per organization."),
    ] = 10_000,
    import_rate: Annotated[
        float,
        typer.Option(envvar="PINBASE_IMPORT_RATE", help="Import requests per second per device."),
    ] = 10.0,
    import_burst: Annotated[
        int, typer.Option(envvar="PINBASE_IMPORT_BURST", help="Import burst per device.")
    ] = 20,
    access_token_ttl: Annotated[
        int, typer.Option(envvar="PINBASE_ACCESS_TOKEN_TTL", help="Access token lifetime, s.")
    ] = 86_400,
    refresh_token_ttl: Annotated[
        int, typer.Option(envvar="PINBASE_REFRESH_TOKEN_TTL", help="Refresh token lifetime, s.")
    ] = 30 * 86_400,
    hardware_port: Annotated[
        int,
        typer.Option(
            envvar="PINBASE_HARDWARE_PORT", help="Blynk hardware protocol (TCP) port; 0: off."
        ),
    ] = 8442,
    hardware_tls_port: Annotated[
        int,
        typer.Option(
            envvar="PINBASE_HARDWARE_TLS_PORT", help="Hardware protocol TLS port; 0: off."
        ),
    ] = 0,
    mqtt_port: Annotated[
        int, typer.Option(envvar="PINBASE_MQTT_PORT", help="MQTT device API port; 0: off.")
    ] = 1883,
    mqtt_tls_port: Annotated[
        int, typer.Option(envvar="PINBASE_MQTT_TLS_PORT", help="MQTT over TLS port; 0: off.")
    ] = 0,
    tls_cert: Annotated[
        str | None, typer.Option(envvar="PINBASE_TLS_CERT", help="PEM certificate chain.")
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option(envvar="PINBASE_TLS_KEY", help="PEM private key.")
    ] = None,
    device_rate: Annotated[
        float,
        typer.Option(envvar="PINBASE_DEVICE_RATE", help="Values per second per device, sustained."),
    ] = 100.0,
    device_burst: Annotated[
        int, typer.Option(envvar="PINBASE_DEVICE_BURST", help="Values per device at once.")
    ] = 1000,
    heartbeat: Annotated[
        int,
        typer.Option(
            envvar="PINBASE_HEARTBEAT",
            help="Assumed device heartbeat (s) until one announces its own.",
        ),
    ] = 10,
    history_retention_days: Annotated[
        int,
        typer.Option(
            envvar="PINBASE_HISTORY_RETENTION_DAYS", help="Drop history older than N days; 0: keep."
        ),
    ] = 0,
    log_level: Annotated[str, typer.Option(envvar="PINBASE_LOG_LEVEL")] = "info",
) -> None:
    """Run the HTTP server and the device listeners."""
    settings = Settings(
        database=database_url(data_dir, database),
        body_limit=body_limit,
        org_rate_limit=org_rate_limit,
        import_rate=import_rate,
        import_burst=import_burst,
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        host=host,
        hardware_port=hardware_port or None,
        hardware_tls_port=hardware_tls_port or None,
        mqtt_port=mqtt_port or None,
        mqtt_tls_port=mqtt_tls_port or None,
        tls_cert=tls_cert,
        tls_key=tls_key,
        device_rate=device_rate,
        device_burst=device_burst,
        heartbeat=heartbeat,
        history_retention_days=history_retention_days or None,
    )
    run_server(settings, host, port, log_level)


def print_report(report: ApplyReport) -> None:
    if not report.changed:
        out.print(f"No changes ({report.unchanged} entities already up to date).")
    for kind, count in report.created.items():
        if count:
            out.print(f"created {count} {kind}")
    for kind, count in report.updated.items():
        if count:
            out.print(f"updated {count} {kind}")
    if report.secrets:
        out.print("\nGenerated secrets (shown once, stored only as hashes):")
        for what, secret in report.secrets:
            out.print(f"  {what}: {secret}", markup=False, highlight=False)


async def apply_document(url: str, document: object) -> ApplyReport:
    store = open_store(url)
    await store.open()
    try:
        return await apply(store, document)
    finally:
        await store.close()


@app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Argument(help="Fleet description, YAML or JSON.")],
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """Create or update organizations, clients, users, products and devices from FILE."""
    try:
        document = load_document(file)
        report = asyncio.run(apply_document(database_url(data_dir, database), document))
    except ProvisioningError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        console.print("Nothing was written.")
        raise typer.Exit(2) from None
    print_report(report)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    hardware_port: Annotated[int, typer.Option(help="Hardware protocol (TCP) port.")] = 8442,
    mqtt_port: Annotated[int, typer.Option(help="MQTT port.")] = 1883,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where to create the demo database [default: a new temporary dir]."),
    ] = None,
) -> None:
    """Serve a demo fleet whose simulated devices write values every second."""
    from .demo import run_demo

    run_demo(host, port, hardware_port, mqtt_port, data_dir)


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
    """`pinbase migrate --from URL --to URL` (see `pinbase.migrate`; help text above)."""
    import sqlite3

    import asyncpg
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
    from rich.table import Table

    from .migrate import KINDS, CannotOpen, migrate_databases, redact
    from .store import StoreUnavailable

    class Bars:
        """One rich progress bar per phase, shown once the first phase begins."""

        def __init__(self, bars: Progress) -> None:
            self.bars = bars
            self.tasks: dict[str, TaskID] = {}

        def begin(self, phase: str, total: int) -> None:
            if not self.tasks:
                self.bars.start()
            self.tasks[phase] = self.bars.add_task(phase, total=total)

        def advance(self, phase: str, rows: int) -> None:
            self.bars.advance(self.tasks[phase], rows)

    def fail(code: int, message: str) -> typer.Exit:
        console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
        return typer.Exit(code)

    bars = Progress(
        TextColumn("{task.description:<15}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    try:
        report = asyncio.run(migrate_databases(source, target, Bars(bars)))
    except CannotOpen as exc:
        raise fail(2, str(exc)) from None
    except StoreUnavailable as exc:
        raise fail(2, f"{exc}\nWhat was copied so far stays; run the same command again.") from None
    except (sqlite3.Error, asyncpg.PostgresError) as exc:
        raise fail(1, f"the copy failed: {type(exc).__name__}: {exc}") from None
    finally:
        bars.stop()

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
