"""Value and property changes across server processes, over a database notification channel.

Each process sends the events its own writes published, in order, as compact JSON chunks on
the channel, and delivers the events it receives from the other processes to its local bus.
A process recognises (and skips) its own messages by a random sender id. Events are sent after
the write committed, so a receiver that reads the store on an event sees the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import astuple
from typing import Any

import orjson

from pinbase.live.bus import (
    Bus,
    Event,
    EventLogged,
    EventResolved,
    MetaChanged,
    PropertyChanged,
    ValueChanged,
)
from pinbase.store.base import Channel
from pinbase.store.records import LoggedEvent

log = logging.getLogger("pinbase.live.relay")

MAX_PAYLOAD = 7_500  # PostgreSQL NOTIFY payloads must stay under 8000 bytes


def encode(event: Event) -> list[Any]:
    if isinstance(event, EventLogged):
        return ["e", event.org_id, event.device_id, int(event.shown), *astuple(event.entry)]
    if isinstance(event, EventResolved):
        return ["r", event.org_id, event.device_id, 1, *astuple(event.entry)]
    if isinstance(event, MetaChanged):
        return ["m", event.org_id, event.device_id, event.field_id, event.name, event.value]
    if isinstance(event, ValueChanged):
        return ["v", event.org_id, event.device_id, event.ds_id, event.pin, event.value, event.ts]
    return ["p", event.org_id, event.device_id, event.ds_id, event.pin, event.name, event.value]


def decode(item: list[Any]) -> Event:
    if item and item[0] in ("e", "r"):
        kind, org_id, device_id, shown, *fields = item
        entry = LoggedEvent(*fields)
        if kind == "e":
            return EventLogged(int(org_id), int(device_id), entry, bool(shown))
        return EventResolved(int(org_id), int(device_id), entry)
    if item and item[0] == "m":
        _, org_id, device_id, field_id, name, value = item
        return MetaChanged(int(org_id), int(device_id), int(field_id), str(name), value)
    kind, org_id, device_id, ds_id, pin, a, b = item
    if kind == "v":
        return ValueChanged(int(org_id), int(device_id), int(ds_id), str(pin), a, int(b))
    return PropertyChanged(int(org_id), int(device_id), int(ds_id), str(pin), str(a), str(b))


def chunks(sender: str, events: Sequence[Event]) -> list[str]:
    """Payloads of at most MAX_PAYLOAD bytes, each `{"s": sender, "e": [event, ...]}`."""
    payloads: list[str] = []
    batch: list[bytes] = []
    size = 0
    for event in events:
        item = orjson.dumps(encode(event))
        if batch and size + len(item) + 64 > MAX_PAYLOAD:
            payloads.append(_payload(sender, batch))
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 1
    if batch:
        payloads.append(_payload(sender, batch))
    return payloads


def _payload(sender: str, items: list[bytes]) -> str:
    return '{"s":"' + sender + '","e":[' + b",".join(items).decode() + "]}"


class ChannelRelay:
    """The bus's relay over a `Channel`; start() within the event loop, stop() before closing."""

    def __init__(self, bus: Bus, channel: Channel) -> None:
        self.bus = bus
        self.channel = channel
        self.sender = secrets.token_hex(8)
        self._queue: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.channel.subscribe(self._receive)
        self.bus.relay = self
        self._task = asyncio.create_task(self._send_loop(), name="pinbase-relay")

    async def stop(self) -> None:
        self.bus.relay = None
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def send(self, events: Sequence[Event]) -> None:
        if events:
            self._queue.put_nowait(list(events))

    async def _send_loop(self) -> None:
        while True:
            events = await self._queue.get()
            try:
                while not self._queue.empty() and len(events) < 10_000:
                    events.extend(self._queue.get_nowait())
                    self._queue.task_done()
                for payload in chunks(self.sender, events):
                    await self.channel.notify(payload)
            except Exception:
                log.exception("could not relay %d events to other processes", len(events))
            finally:
                self._queue.task_done()

    def _receive(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            if not isinstance(message, dict):
                raise TypeError("not an object")
            if message.get("s") == self.sender:
                return
            events = [decode(item) for item in message["e"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignored a malformed relay message")
            return
        self.bus.deliver(events)
