"""The one write path: every accepted value, whatever its source, goes through here.

Callers parse and authorize; this module turns canonical values into current values and history
rows, has the store commit them durably, and then tells live subscribers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import orjson

from .domain.model import Datastream, Device
from .domain.values import Value
from .live import Bus, PropertyChanged, ValueChanged
from .store.base import Store
from .store.records import ValueWrites


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json(value: Value) -> str:
    return orjson.dumps(value).decode()


class Ingest:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    async def write(
        self,
        device: Device,
        values: Sequence[tuple[Datastream, Value]],
        ts: int | None = None,
        origin: object | None = None,
    ) -> None:
        """Set current values of one device (one transaction), with history where it is on.

        `origin` is the device session the values came from; it is not sent them back.
        """
        await self.write_cells([(device, ds, v) for ds, v in values], ts, origin)

    async def write_cells(
        self,
        cells: Sequence[tuple[Device, Datastream, Value]],
        ts: int | None = None,
        origin: object | None = None,
    ) -> None:
        """Set current values across devices, all at one timestamp, in one transaction."""
        if not cells:
            return
        stamp = now_ms() if ts is None else ts
        writes = ValueWrites()
        current = writes.current
        history = writes.history
        for device, ds, value in cells:
            text = _json(value)
            current.append((device.id, ds.id, text, stamp))
            if ds.history:
                history.append((device.id, ds.id, stamp, text))
        await self.store.write_values(writes)
        self.bus.publish(
            ValueChanged(device.org_id, device.id, ds.id, ds.pin, value, stamp, origin)
            for device, ds, value in cells
        )

    async def import_points(
        self,
        device: Device,
        ds: Datastream,
        points: Iterable[tuple[int, Value]],
        origin: object | None = None,
    ) -> None:
        """Store timestamped points; the newest becomes current unless a newer value exists."""
        rows = [(device.id, ds.id, ts, _json(value)) for ts, value in points]
        if not rows:
            return
        newest = max(rows, key=lambda row: row[2])
        writes = ValueWrites(
            current_if_newer=[(device.id, ds.id, newest[3], newest[2])],
            history=rows if ds.history else [],
        )
        if await self.store.write_values(writes):
            value = orjson.loads(newest[3])
            self.bus.publish(
                [ValueChanged(device.org_id, device.id, ds.id, ds.pin, value, newest[2], origin)]
            )

    async def set_property(
        self, device: Device, ds: Datastream, name: str, value: str, origin: object | None = None
    ) -> None:
        await self.store.set_property(device.id, ds.id, name, value)
        self.bus.publish(
            [PropertyChanged(device.org_id, device.id, ds.id, ds.pin, name, value, origin)]
        )
