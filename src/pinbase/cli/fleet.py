"""Commands for operators: `pinbase devices`, `pinbase device token|which`, `pinbase client
secret`, `pinbase user password`. Each runs one use case of `pinbase.app` on the database, and
may run while servers do: what they change reaches every server process through the catalog.

Exit status: 0 done; 1 no such device, client or user (or a password refused); 2 a database
that cannot be used. A new secret is printed once, on stdout, alone on its line.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import orjson
import typer

from pinbase.app.credentials import (
    CredentialError,
    check_password,
    device_by_token,
    new_password,
    rotate_client_secret,
    rotate_device_token,
    set_password,
)
from pinbase.app.device_listing import ONLINE_MS, DeviceFilter, DeviceLine, list_devices
from pinbase.cli.common import (
    DEFAULT_HASH_MEMORY,
    Database,
    DataDir,
    PasswordHashMemory,
    console,
    out,
    print_error,
)
from pinbase.config import database_url
from pinbase.store import Store, StoreError, opened_store

T = TypeVar("T")

device_app = typer.Typer(no_args_is_help=True, help="One device's credentials.")
client_app = typer.Typer(no_args_is_help=True, help="One OAuth client's credentials.")
user_app = typer.Typer(no_args_is_help=True, help="One user's credentials.")

Rotate = Annotated[bool, typer.Option("--rotate", help="Replace it; the new one is printed once.")]
HASHED = (
    "{what} is stored only as a hash, so pinbase cannot show it; replace it with --rotate{more}"
)


def on_database(
    data_dir: Path | None, database: str | None, use: Callable[[Store], Awaitable[T]]
) -> T:
    """`use(store)` on the database of the options; an error is one line and exit 1 or 2."""
    url = database_url(data_dir, database)

    async def run() -> T:
        async with opened_store(url) as store:
            return await use(store)

    try:
        return asyncio.run(run())
    except CredentialError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except StoreError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from None


def say_secret(what: str, secret: str) -> None:
    """The secret alone on stdout (for scripts), what it is on stderr (for people)."""
    console.print(f"{what} (shown once; the old one no longer works):", highlight=False)
    out.print(secret, markup=False, highlight=False, soft_wrap=True)


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def columns(rows: list[list[str]]) -> str:
    """Rows as aligned plain-text columns, two spaces apart (the first right-aligned): whole
    lines whatever the terminal's width, easy to cut and grep."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = []
    for row in rows:
        cells = [row[0].rjust(widths[0])] + [
            c.ljust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        text.append("  ".join(cells).rstrip() + "\n")
    return "".join(text)


def _json(line: DeviceLine) -> dict[str, object]:
    return {
        "id": line.id,
        "name": line.name,
        "organization": line.org_id,
        "productId": line.product_id,
        "product": line.product,
        "owner": line.owner,
        "online": line.online,
        "lastSeen": line.last_seen,
    }


def devices_command(
    product: Annotated[
        str | None, typer.Option(help="Only this product (id or name; a root takes variants).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only devices of this owner (email).")] = None,
    online: Annotated[
        bool | None,
        typer.Option(
            "--online/--offline",
            help="Only devices that stored a value in the last --online-within seconds, or only "
            "the others.",
            show_default=False,
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            help="Only devices whose name, product name or owner's e-mail contains this "
            "(case-insensitive), or with this id."
        ),
    ] = None,
    online_within: Annotated[
        float, typer.Option(help="Seconds since its last value within which a device is online.")
    ] = ONLINE_MS / 1000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """List devices: id, name, product, owner, online, last seen (see docs/cli.md)."""
    wanted = DeviceFilter(product, owner, online, search)
    now = int(time.time() * 1000)
    lines = on_database(
        data_dir,
        database,
        lambda store: list_devices(store, wanted, now, int(online_within * 1000)),
    )
    if as_json:
        sys.stdout.write(orjson.dumps([_json(line) for line in lines]).decode() + "\n")
        return
    rows = [["id", "name", "product", "owner", "online", "last seen"]]
    for line in lines:
        rows.append(
            [
                str(line.id),
                line.name,
                f"{line.product} ({line.product_id})",
                line.owner or "-",
                "yes" if line.online else "no",
                _when(line.last_seen),
            ]
        )
    sys.stdout.write(columns(rows))
    console.print(f"{len(lines)} devices", highlight=False)


@device_app.command("token")
def device_token(
    device: Annotated[int, typer.Argument(help="The device's id.", show_default=False)],
    rotate: Rotate = False,
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """Replace a device's token (--rotate): its connections close, on every server process."""
    if not rotate:
        print_error(
            HASHED.format(
                what=f"device {device}'s token",
                more=", or find a token's device with `pinbase device which` (token on stdin)",
            )
        )
        raise typer.Exit(1)
    token = on_database(data_dir, database, lambda store: rotate_device_token(store, device))
    say_secret(f"device {device}'s new token", token)


@device_app.command("which")
def device_which(data_dir: DataDir = None, database: Database = None) -> None:
    """Which device a token opens: reads the token on stdin (never an argument, so that it
    stays out of shell history and process lists). Exit 1 when no device has it."""
    token = sys.stdin.readline().strip()
    found = on_database(data_dir, database, lambda store: device_by_token(store, token))
    if found is None:
        print_error("no device has this token")
        raise typer.Exit(1)
    out.print(f"{found.id} {found.name}", markup=False, highlight=False)


@client_app.command("secret")
def client_secret(
    client: Annotated[str, typer.Argument(help="The client_id.", show_default=False)],
    rotate: Rotate = False,
    data_dir: DataDir = None,
    database: Database = None,
) -> None:
    """Replace an OAuth client's secret (--rotate), revoking every token issued through it."""
    if not rotate:
        print_error(HASHED.format(what=f"client {client}'s secret", more=""))
        raise typer.Exit(1)
    secret = on_database(data_dir, database, lambda store: rotate_client_secret(store, client))
    say_secret(f"client {client}'s new secret", secret)


@user_app.command("password")
def user_password(
    email: Annotated[str, typer.Argument(help="The user's email.", show_default=False)],
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a password and print it once.")
    ] = False,
    org: Annotated[
        int | None, typer.Option(help="The user's organization, when the email is in several.")
    ] = None,
    data_dir: DataDir = None,
    database: Database = None,
    password_hash_memory: PasswordHashMemory = DEFAULT_HASH_MEMORY,
) -> None:
    """Set a user's password, revoking every token issued to them. The password is read from
    stdin (its first line) or, on a terminal, prompted for twice; --generate makes one."""
    if generate:
        password = new_password()
    elif sys.stdin.isatty():
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        check_password(password)
    except CredentialError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    user = on_database(data_dir, database, lambda store: set_password(store, email, password, org))
    if generate:
        say_secret(f"{email}'s new password", password)
    else:
        console.print(f"{email}'s password changed (organization {user.org_id}).", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the operator commands to `app`."""
    app.command("devices")(devices_command)
    app.add_typer(device_app, name="device")
    app.add_typer(client_app, name="client")
    app.add_typer(user_app, name="user")
