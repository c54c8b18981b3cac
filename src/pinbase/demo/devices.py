"""Simulated devices for `pinbase demo`, each speaking one real device protocol over loopback.

They are clients like any firmware: the hardware-protocol device logs in with its token and sends
HARDWARE `vw` frames, the MQTT device connects with username `device` and publishes `ds/<label>`
topics, and the HTTP device calls `/external/api/batch/update`. What they send therefore goes
through exactly the same path as a real device's values, and downlink from the Organization API
reaches the TCP and MQTT devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from urllib.parse import urlencode

from pinbase.devices.hardware import codec as hw
from pinbase.devices.mqtt import codec as mq

log = logging.getLogger("pinbase.demo.run")

Reading = Callable[[int], dict[str, str]]
"""Values of one tick, by pin (`v1`) — the same for every transport."""


def weather(index: int, seed: int = 7) -> Reading:
    rng = random.Random(seed + index)

    def read(tick: int) -> dict[str, str]:
        return {
            "v1": f"{12 + 8 * math.sin((tick + index * 9) / 60) + rng.uniform(-0.3, 0.3):.2f}",
            "v2": str(55 + int(20 * math.cos((tick + index * 5) / 90))),
            "v3": "ok" if rng.random() > 0.05 else "door open",
            "v4": f"{13.3888 + index * 0.01:.5f},{52.5170 + rng.uniform(-1e-4, 1e-4):.5f}",
            "v5": str((tick // 30 + index) % 3),
        }

    return read


LABELS = {"v1": "Temperature", "v2": "Humidity", "v3": "Status", "v4": "Position", "v5": "Mode"}


async def tcp_device(host: str, port: int, token: str, read: Reading, stop: asyncio.Event) -> None:
    """A device speaking Blynk's hardware protocol."""
    reader, writer = await asyncio.open_connection(host, port)
    ids = hw.MessageIds()
    decoder = hw.FrameDecoder()
    try:
        writer.write(hw.message(hw.LOGIN, ids.next(), [token]))
        await writer.drain()
        frames: list[hw.Frame] = []
        while not frames:
            frames = decoder.feed(await reader.read(1024))
        if frames[0].status != hw.OK:
            raise RuntimeError(f"login refused with status {frames[0].status}")
        listener = asyncio.create_task(_drain(reader))
        tick = 0
        while not stop.is_set():
            for pin, value in read(tick).items():
                writer.write(hw.hardware_write(ids.next(), hw.bare_pin(pin), value.split(",")))
            await writer.drain()
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        listener.cancel()
    finally:
        writer.close()


def _mqtt_connect(token: str, client_id: str) -> bytes:
    def text(value: str) -> bytes:
        raw = value.encode()
        return len(raw).to_bytes(2, "big") + raw

    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = text("MQTT") + bytes((4, flags)) + (45).to_bytes(2, "big")
    body += text(client_id) + text("device") + text(token)
    return bytes((0x10,)) + mq.encode_remaining_length(len(body)) + body


async def mqtt_device(
    host: str, port: int, token: str, read: Reading, stop: asyncio.Event, client_id: str
) -> None:
    """A device speaking Blynk's MQTT API (QoS 0 uplink, subscribed to its downlink)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_mqtt_connect(token, client_id))
        await writer.drain()
        connack = await reader.readexactly(4)
        if connack[3] != 0:
            raise RuntimeError(f"MQTT connect refused with code {connack[3]}")
        topic = b"downlink/#"
        subscribe = (1).to_bytes(2, "big") + len(topic).to_bytes(2, "big") + topic + b"\x00"
        writer.write(bytes((0x82,)) + mq.encode_remaining_length(len(subscribe)) + subscribe)
        listener = asyncio.create_task(_drain(reader))
        tick = 0
        while not stop.is_set():
            for pin, value in read(tick).items():
                writer.write(mq.encode_publish(f"ds/{LABELS[pin]}", value.encode()))
            if tick % 30 == 0:
                writer.write(bytes((0xC0, 0)))  # PINGREQ keeps the session alive
            await writer.drain()
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        listener.cancel()
    finally:
        writer.close()


async def http_device(host: str, port: int, token: str, read: Reading, stop: asyncio.Event) -> None:
    """A device calling the HTTP device API once a second on a keep-alive connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        tick = 0
        while not stop.is_set():
            values = read(tick)
            pairs = [("token", token)]
            for pin, value in values.items():
                pairs += [(pin, part) for part in value.split(",")]
            request = (
                f"GET /external/api/batch/update?{urlencode(pairs)} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\n\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            await _read_http_response(reader)
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        writer.close()


async def _read_http_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    if status != b"200":
        log.warning("HTTP device got %s: %s", status.decode(), body.decode(errors="replace"))


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read (and ignore) what the server sends: downlink values, pings."""
    while await reader.read(4096):
        pass


async def run_devices(
    host: str,
    ports: dict[str, int],
    tokens: dict[str, list[str]],
    stop: asyncio.Event,
) -> None:
    """Run every simulated device until `stop`; a device whose connection fails retries."""

    async def forever(kind: str, index: int, token: str) -> None:
        read = weather(index)
        while not stop.is_set():
            try:
                if kind == "tcp":
                    await tcp_device(host, ports["tcp"], token, read, stop)
                elif kind == "mqtt":
                    await mqtt_device(host, ports["mqtt"], token, read, stop, f"demo-{index}")
                else:
                    await http_device(host, ports["http"], token, read, stop)
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
                log.warning("%s device %d: %s; reconnecting", kind, index, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)

    index = 0
    tasks = []
    for kind, kind_tokens in tokens.items():
        for token in kind_tokens:
            tasks.append(asyncio.create_task(forever(kind, index, token)))
            index += 1
    await asyncio.gather(*tasks)
