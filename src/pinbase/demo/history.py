"""A week of history for the demo fleet, so that its charts have something to show.

The points are what the simulated devices (`devices.weather`) would have sent every five
minutes over the past week, imported as a back-office script would: an organization token
and `POST /api/v1/organization/device/import/batch`, one request per device and datastream.
"""

from __future__ import annotations

import time

import httpx

from pinbase.demo.devices import weather

DAYS = 7
STEP_S = 300
CHARTED = {1: "v1", 2: "v2", 5: "v5"}
"""The numeric datastreams (id: pin) of the demo's product."""


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


async def seed_history(base: str, client_id: str, client_secret: str, devices: list[int]) -> int:
    """Import the past week of every device's numeric datastreams; the points imported."""
    now = int(time.time())
    ticks = range(-DAYS * 86_400, 0, STEP_S)
    imported = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
        )
        answer.raise_for_status()
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        for index, device_id in enumerate(devices):
            read = weather(index)
            readings = [(tick, read(tick)) for tick in ticks]
            for ds_id, pin in CHARTED.items():
                values = [
                    {"ts": (now + tick) * 1000, "value": _number(reading[pin])}
                    for tick, reading in readings
                ]
                body = {"deviceId": device_id, "dataStreamId": ds_id, "values": values}
                done = await http.post(
                    "/api/v1/organization/device/import/batch", json=body, headers=headers
                )
                done.raise_for_status()
                imported += len(values)
    return imported
