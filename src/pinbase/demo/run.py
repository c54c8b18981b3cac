"""`pinbase demo`: a demo fleet in a fresh data directory, its devices simulated over TCP,
MQTT and the HTTP device API (see `demo_devices`)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from pinbase.app.auth.secrets import new_device_token, new_token
from pinbase.app.provisioning import apply_to_database
from pinbase.config import Settings, database_url
from pinbase.demo.devices import run_devices
from pinbase.demo.history import seed_history
from pinbase.net.startup import StartupError, check_ports, free_port, port_problem
from pinbase.server import GracefulServer, run, serve

CLIENT_ID = "demo-backend"
ADMIN = "admin@demo.test"
DEVICES = (
    (101, "Roof", "tcp"),
    (102, "Barn", "mqtt"),
    (103, "Greenhouse", "http"),
    (104, "Orchard", "tcp"),
    (105, "Cellar", "mqtt"),
)


def fleet(client_secret: str, password: str, tokens: dict[int, str]) -> dict[str, Any]:
    """The demo organization: one weather-station product (and a variant), five devices."""
    return {
        "organizations": [
            {
                "id": 1,
                "name": "Demo Farms",
                "clients": [{"client_id": CLIENT_ID, "client_secret": client_secret}],
                "users": [{"email": ADMIN, "password": password, "role": "Admin"}],
                "products": [
                    {
                        "id": 10,
                        "name": "Weather Station",
                        "datastreams": [
                            {
                                "id": 1,
                                "pin": "v1",
                                "label": "Temperature",
                                "type": "double",
                                "min": -40,
                                "max": 85,
                                "decimals": 1,
                                "units": "Celsius",
                            },
                            {
                                "id": 2,
                                "pin": "v2",
                                "label": "Humidity",
                                "type": "integer",
                                "min": 0,
                                "max": 100,
                            },
                            {"id": 3, "pin": "v3", "label": "Status", "type": "string"},
                            {"id": 4, "pin": "v4", "label": "Position", "type": "location"},
                            {
                                "id": 5,
                                "pin": "v5",
                                "label": "Mode",
                                "type": "enum",
                                "options": {0: "Off", 1: "Eco", 2: "Boost"},
                            },
                        ],
                        "variants": [{"id": 11, "name": "Weather Station Pro"}],
                    }
                ],
                "devices": [
                    {
                        "id": device_id,
                        "name": f"{name} ({kind})",
                        "product": 10 if device_id % 2 else 11,
                        "owner": ADMIN,
                        "token": tokens[device_id],
                    }
                    for device_id, name, kind in DEVICES
                ],
            }
        ]
    }


DEFAULT_DEVICE_PORTS = {"--hardware-port": 8442, "--mqtt-port": 1883}


def demo_ports(host: str, port: int, device_ports: dict[str, int]) -> dict[str, int]:
    """The ports the demo listens on, checked before anything is printed: `StartupError` when
    the HTTP port is taken or a device port given explicitly is; a default device port that is
    taken is replaced by a free one, and a line on stderr says so."""
    check_ports(host, {"--port": port})
    chosen = {}
    for flag, wanted in device_ports.items():
        problem = port_problem(host, wanted) if wanted else None
        if problem is not None and DEFAULT_DEVICE_PORTS.get(flag) == wanted:
            chosen[flag] = free_port(host)
            print(f"{flag} {wanted}: {problem}; using {chosen[flag]}", file=sys.stderr)
        elif problem is not None:
            raise StartupError(f"{flag} {wanted}: {problem}")
        else:
            chosen[flag] = wanted
    return chosen


def run_demo(
    host: str,
    port: int,
    hardware_port: int,
    mqtt_port: int,
    data_dir: Path | None,
    keep: bool = False,
) -> None:
    """Serve the demo until Ctrl+C; a temporary data directory (no `data_dir`) is removed on
    exit unless `keep`."""
    ports = demo_ports(host, port, {"--hardware-port": hardware_port, "--mqtt-port": mqtt_port})
    hardware_port, mqtt_port = ports["--hardware-port"], ports["--mqtt-port"]
    directory = data_dir or Path(tempfile.mkdtemp(prefix="pinbase-demo-"))
    try:
        _run(host, port, hardware_port, mqtt_port, directory)
    finally:
        if data_dir is None and not keep:
            shutil.rmtree(directory, ignore_errors=True)
        elif data_dir is None:
            print(f"The demo's data stays in {directory}", file=sys.stderr)


def _run(host: str, port: int, hardware_port: int, mqtt_port: int, directory: Path) -> None:
    url = database_url(directory, None)
    client_secret, password = new_token(), new_token()[:16]
    tokens = {device_id: new_device_token() for device_id, _, _ in DEVICES}
    asyncio.run(apply_to_database(url, fleet(client_secret, password, tokens)))

    settings = Settings(
        host=host,
        port=port,
        database=url,
        hardware_port=hardware_port,
        mqtt_port=mqtt_port,
        log_level="warning",
    )
    console = Console()
    base = f"http://{host}:{port}"
    say = functools.partial(print, flush=True)  # plain lines: copy-pasteable, never wrapped
    console.print(f"[bold]pinbase demo[/bold] at {base}  (data: {directory})", highlight=False)
    say(f"  OAuth client:   {CLIENT_ID} / {client_secret}")
    say(f"  Admin user:     {ADMIN} / {password}")
    say(f"  Console:        {base}/  (sign in as the admin user)")
    say(f"  API docs:       {base}/docs")
    say(
        f"  Devices:        hardware protocol on {host}:{hardware_port}, MQTT on {host}:{mqtt_port}"
    )
    for device_id, name, kind in DEVICES:
        say(f"    {device_id} {name:<11} {kind:<5} token {tokens[device_id]}")
    say("Try:")
    say(
        f"  TOKEN=$(curl -s -X POST -u {CLIENT_ID}:{client_secret} "
        f"'{base}/oauth2/token?grant_type=client_credentials' "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'{base}/api/v2/organization/device/datastreams?deviceId=101'"
    )
    say("Press Ctrl+C to stop.")

    by_kind: dict[str, list[str]] = {}
    for device_id, _, kind in DEVICES:
        by_kind.setdefault(kind, []).append(tokens[device_id])
    ports = {"http": port, "tcp": hardware_port, "mqtt": mqtt_port}

    async def main() -> None:
        stop = asyncio.Event()
        http: asyncio.Future[GracefulServer] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(serve(settings, http))
        devices = None
        try:
            server = await http
            ready = asyncio.create_task(server.ready.wait())
            await asyncio.wait([ready, serving], return_when=asyncio.FIRST_COMPLETED)
            if server.ready.is_set():
                ids = [device_id for device_id, _, _ in DEVICES]
                imported = await seed_history(base, CLIENT_ID, client_secret, ids)
                say(f"Imported a week of history ({imported:,} points) for the charts.")
                devices = asyncio.create_task(run_devices(host, ports, by_kind, stop))
        finally:
            await serving
            stop.set()
            if devices is not None:
                await devices

    run(main())
