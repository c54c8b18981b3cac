"""`pinbase demo`: a demo fleet in a fresh data directory, its devices simulated over TCP,
MQTT and the HTTP device API (see `demo_devices`)."""

from __future__ import annotations

import asyncio
import functools
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from .api import create_app
from .cli import GracefulServer, apply_document
from .config import Settings, database_url
from .demo_devices import run_devices
from .security import new_device_token, new_token

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


def run_demo(
    host: str, port: int, hardware_port: int, mqtt_port: int, data_dir: Path | None
) -> None:
    directory = data_dir or Path(tempfile.mkdtemp(prefix="pinbase-demo-"))
    url = database_url(directory, None)
    client_secret, password = new_token(), new_token()[:16]
    tokens = {device_id: new_device_token() for device_id, _, _ in DEVICES}
    asyncio.run(apply_document(url, fleet(client_secret, password, tokens)))

    settings = Settings(database=url, host=host, hardware_port=hardware_port, mqtt_port=mqtt_port)
    app = create_app(settings)
    server = GracefulServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    console = Console()
    base = f"http://{host}:{port}"
    say = functools.partial(print, flush=True)  # plain lines: copy-pasteable, never wrapped
    console.print(f"[bold]pinbase demo[/bold] at {base}  (data: {directory})", highlight=False)
    say(f"  OAuth client:   {CLIENT_ID} / {client_secret}")
    say(f"  Admin user:     {ADMIN} / {password}")
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
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        devices = None
        if server.started:
            devices = asyncio.create_task(run_devices(host, ports, by_kind, stop))
        await serving
        stop.set()
        if devices is not None:
            await devices

    asyncio.run(main())
