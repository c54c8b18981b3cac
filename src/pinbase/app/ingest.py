"""The one write path: every accepted value, whatever its source, goes through here.

Callers parse and authorize; this module turns canonical values into current values and history
rows, has the store commit them durably, and then tells live subscribers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from pinbase.domain.clock import importable, now_ms
from pinbase.domain.model import Datastream, Device
from pinbase.domain.values import Value
from pinbase.live.bus import Bus, PropertyChanged, ValueChanged
from pinbase.store.base import Store
from pinbase.store.records import ValueWrites


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
        """Set current values across devices, all at one timestamp, in one transaction.

        Of cells naming the same (device, datastream) the later one wins, in current values
        and in history alike (they share the timestamp).
        """
        if not cells:
            return
        stamp = now_ms() if ts is None else ts
        writes = ValueWrites()
        current, history = writes.current, writes.history
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

    async def write_points(
        self,
        device: Device,
        points: Sequence[tuple[Datastream, Value, int]],
        origin: object | None = None,
    ) -> None:
        """Write values of one device, each at its own timestamp (epoch ms), in one transaction.

        Every point becomes a history point (where its datastream keeps history), and live
        subscribers get every point in order; the newest point of each datastream becomes
        current (the later one of equal timestamps). A datastream's points need distinct
        timestamps to all stay in history: the same (datastream, timestamp) again replaces the
        earlier point.
        """
        if not points:
            return
        writes = ValueWrites()
        history = writes.history
        newest: dict[int, tuple[int, int, str, int]] = {}
        for ds, value, ts in points:
            text = _json(value)
            held = newest.get(ds.id)
            if held is None or ts >= held[3]:
                newest[ds.id] = (device.id, ds.id, text, ts)
            if ds.history:
                history.append((device.id, ds.id, ts, text))
        writes.current = list(newest.values())
        await self.store.write_values(writes)
        self.bus.publish(
            ValueChanged(device.org_id, device.id, ds.id, ds.pin, value, ts, origin)
            for ds, value, ts in points
        )

    async def import_points(
        self,
        device: Device,
        ds: Datastream,
        points: Iterable[tuple[int, Value]],
        origin: object | None = None,
    ) -> None:
        """Store timestamped points; the newest becomes current unless a newer value exists.

        Points stamped too far in the future (`clock.importable`) are skipped: the one time
        window of every import, whichever interface it came through.
        """
        now = now_ms()
        rows = [(device.id, ds.id, ts, _json(value)) for ts, value in points if importable(ts, now)]
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
