"""Webhook triggers: what happened, turned into outbox rows (`pinbase.app.webhook_delivery`
delivers them).

Where each trigger is written to the outbox:

- DEVICE_DATASTREAM_UPDATE: in the transaction of the live value write itself
  (`Ingest.write_cells`, `write_points`: `ValueWrites.outbox`), so an acknowledged value whose
  webhook matched always has its delivery pending. With no webhook of that trigger in the
  organization the write carries no outbox rows: the hot path pays one dictionary look-up.
  Imported points (`Ingest.import_points`) and erasures fire nothing.
- DEVICE_ADDED, DEVICE_DELETED over the Platform API: in the transaction that creates or
  deletes the device (`trigger_rows`, `pinbase.app.devices`). DEVICE_ADDED by `pinbase apply`:
  right after its transaction commits (`device_added`); a crash between that commit and this
  write loses those deliveries (at most once there).
- DEVICE_LOG_EVENT: in the transaction that stores the event (`Events` passes `for_event`'s
  rows to `Store.log_event`), so a stored event always has its deliveries pending and a refused
  one has none. Every logged event fires, ONLINE and OFFLINE included; the webhook's `events`
  list (`fires_for`) filters by code.

Once in the outbox a delivery is made at least once: it stays there until an attempt settles it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson

from pinbase.domain.model import Datastream, Device
from pinbase.domain.values import Value
from pinbase.store.base import Store
from pinbase.store.records import WebhookRow

Outbox = list[tuple[int, str, int]]
"""(webhook_id, context JSON, due_at) rows."""


def value_text(value: Value) -> str:
    """A value as its placeholder shows it: a string as is, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def fires_for(hook: WebhookRow, key: str) -> bool:
    """Whether a webhook limited to some datastream ids or event codes fires for `key`."""
    if hook.fires_for is None:
        return True
    allowed = orjson.loads(hook.fires_for)
    return key in (str(item) for item in allowed)


class DeviceFacts(Protocol):
    """What a context tells of a device (a `Device` or a stored `DeviceRow`)."""

    @property
    def id(self) -> int: ...
    @property
    def org_id(self) -> int: ...
    @property
    def name(self) -> str: ...


def _context(trigger: str, device: DeviceFacts, **more: str) -> str:
    context = {
        "trigger": trigger,
        "org_id": str(device.org_id),
        "device_id": str(device.id),
        "device_name": device.name,
        **more,
    }
    return orjson.dumps(context).decode()


class Webhooks:
    """The webhooks by (organization, trigger), reloaded when the catalog generation moves."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._generation = -1
        self._hooks: dict[tuple[int, str], list[WebhookRow]] = {}
        self._loading = asyncio.Lock()

    async def _current(self) -> dict[tuple[int, str], list[WebhookRow]]:
        generation = (await self.store.catalog()).generation
        if generation != self._generation:
            async with self._loading:
                if generation != self._generation:
                    hooks: dict[tuple[int, str], list[WebhookRow]] = {}
                    for hook in await self.store.webhooks():
                        hooks.setdefault((hook.org_id, hook.trigger_type), []).append(hook)
                    self._hooks, self._generation = hooks, generation
        return self._hooks

    async def for_values(
        self, cells: Iterable[tuple[Device, Datastream, Value, int]], now: int
    ) -> Outbox:
        """DEVICE_DATASTREAM_UPDATE rows for written (device, datastream, value, ts) cells."""
        hooks = await self._current()
        if not hooks:
            return []
        rows: Outbox = []
        for device, ds, value, ts in cells:
            for hook in hooks.get((device.org_id, "DEVICE_DATASTREAM_UPDATE"), ()):
                if fires_for(hook, str(ds.id)):
                    context = _context(
                        "DEVICE_DATASTREAM_UPDATE",
                        device,
                        datastream_id=str(ds.id),
                        pin=ds.pin.upper(),
                        value=value_text(value),
                        ts=str(ts),
                    )
                    rows.append((hook.id, context, now))
        return rows

    async def trigger_rows(self, trigger: str, devices: Sequence[DeviceFacts], now: int) -> Outbox:
        """The rows of a DEVICE_ADDED or DEVICE_DELETED trigger for `devices` (due at once),
        for the transaction that adds or deletes them (`pinbase.app.devices`)."""
        hooks = await self._current()
        rows: Outbox = []
        for device in devices:
            for hook in hooks.get((device.org_id, trigger), ()):
                rows.append((hook.id, _context(trigger, device, ts=str(now)), now))
        return rows

    async def device_added(self, devices: Sequence[DeviceFacts], now: int) -> None:
        """DEVICE_ADDED after `pinbase apply` committed (see the module)."""
        await self.store.enqueue_deliveries(await self.trigger_rows("DEVICE_ADDED", devices, now))

    async def for_event(
        self, device: DeviceFacts, code: str, description: str | None, ts: int
    ) -> Outbox:
        """DEVICE_LOG_EVENT rows for an event about to be stored (due at once)."""
        rows: Outbox = []
        for hook in (await self._current()).get((device.org_id, "DEVICE_LOG_EVENT"), ()):
            if fires_for(hook, code):
                more = {"event_code": code, "event_description": description or ""}
                context = _context("DEVICE_LOG_EVENT", device, ts=str(ts), **more)
                rows.append((hook.id, context, ts))
        return rows
