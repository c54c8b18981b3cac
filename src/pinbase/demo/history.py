"""A week of history for the demo fleet, so that its charts have something to show.

A point every five minutes over the past week for each numeric datastream: a daily cycle of
temperature (warmest mid-afternoon) and humidity (the other way round), with some noise, and a
mode that changes every few hours. They are imported as a back-office script would: an
organization token and `POST /api/v1/organization/device/import/batch`, one request per device
and datastream.
"""

from __future__ import annotations

import math
import random
import time

import httpx

DAYS = 7
STEP_S = 300
TEMPERATURE, HUMIDITY, MODE = 1, 2, 5
"""The numeric datastreams of the demo's product."""


def past(index: int, at_s: int, rng: random.Random) -> dict[int, float | int]:
    """Device `index`'s values at `at_s` (epoch seconds, UTC)."""
    day = 2 * math.pi * ((at_s % 86_400) / 86_400 - 0.375)  # coolest at 03:00, warmest 15:00
    return {
        TEMPERATURE: round(14 + index + 7 * math.sin(day) + rng.uniform(-0.6, 0.6), 1),
        HUMIDITY: round(60 - 18 * math.sin(day) + rng.uniform(-3, 3)),
        MODE: (at_s // 10_800 + index) % 3,
    }


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
            rng = random.Random(index)
            readings = [(now + tick, past(index, now + tick, rng)) for tick in ticks]
            for ds_id in (TEMPERATURE, HUMIDITY, MODE):
                values = [{"ts": at * 1000, "value": reading[ds_id]} for at, reading in readings]
                body = {"deviceId": device_id, "dataStreamId": ds_id, "values": values}
                done = await http.post(
                    "/api/v1/organization/device/import/batch", json=body, headers=headers
                )
                done.raise_for_status()
                imported += len(values)
    return imported
