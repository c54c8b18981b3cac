"""`pinbase demo`: a demo fleet in a fresh data directory, with devices simulated in-process."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from .api import create_app
from .cli import GracefulServer, apply_document
from .config import Settings, database_url
from .domain.values import Value, parse_json_value
from .security import new_token
from .services import Services
from .store import StoreUnavailable

CLIENT_ID = "demo-backend"
ADMIN = "admin@demo.test"
DEVICES = ((101, "Roof"), (102, "Barn"), (103, "Greenhouse"), (104, "Orchard"), (105, "Cellar"))


def fleet(client_secret: str, password: str) -> dict[str, Any]:
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
                        "name": name,
                        "product": 10 if device_id % 2 else 11,
                        "owner": ADMIN,
                    }
                    for device_id, name in DEVICES
                ],
            }
        ]
    }


async def simulate(services: Services, stop: asyncio.Event) -> None:
    """Every second each device reports weather through the one write path."""
    rng = random.Random(7)
    tick = 0
    while not stop.is_set():
        catalog = await services.store.catalog()
        for index, (device_id, _) in enumerate(DEVICES):
            device = catalog.devices[device_id]
            schema = catalog.schema_of(device)
            raw: dict[int, Any] = {
                1: round(12 + 8 * math.sin((tick + index * 9) / 60) + rng.uniform(-0.3, 0.3), 2),
                2: 55 + int(20 * math.cos((tick + index * 5) / 90)),
                3: "ok" if rng.random() > 0.05 else "door open",
                4: [13.3888 + index * 0.01, 52.5170 + rng.uniform(-1e-4, 1e-4)],
                5: (tick // 30 + index) % 3,
            }
            values: list[tuple[Any, Value]] = [
                (schema.by_id[ds_id], parse_json_value(schema.by_id[ds_id], v))
                for ds_id, v in raw.items()
            ]
            try:
                await services.ingest.write(device, values)
            except StoreUnavailable:
                return
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


def run_demo(host: str, port: int, data_dir: Path | None) -> None:
    directory = data_dir or Path(tempfile.mkdtemp(prefix="pinbase-demo-"))
    url = database_url(directory, None)
    client_secret, password = new_token(), new_token()[:16]
    asyncio.run(apply_document(url, fleet(client_secret, password)))

    app = create_app(Settings(database=url))
    server = GracefulServer(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    console = Console()
    base = f"http://{host}:{port}"
    console.print(f"[bold]pinbase demo[/bold] at {base}  (data: {directory})", highlight=False)
    console.print(f"  OAuth client:  {CLIENT_ID} / {client_secret}", highlight=False)
    console.print(f"  Admin user:    {ADMIN} / {password}", highlight=False)
    console.print(f"  API docs:      {base}/docs", highlight=False)
    console.print("Try:", highlight=False)
    console.print(
        f"  TOKEN=$(curl -s -X POST -u {CLIENT_ID}:{client_secret} "
        f"'{base}/oauth2/token?grant_type=client_credentials' "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'{base}/api/v2/organization/device/datastreams?deviceId=101'",
        highlight=False,
        markup=False,
    )
    console.print("Press Ctrl+C to stop.")

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        simulator = None
        if server.started:
            simulator = asyncio.create_task(simulate(app.state.services, stop))
        await serving
        stop.set()
        if simulator is not None:
            await simulator

    asyncio.run(main())
