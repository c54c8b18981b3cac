"""The one write path: every accepted value, whatever its source, goes through here.

Callers parse and authorize; this module turns canonical values into current values and history
rows, has the store commit them durably, and then tells live subscribers.

**Every acknowledged live write is its own history point.** A point's timestamp is an epoch
millisecond, and writers of one datastream (many clients of the Organization API, the device
interfaces, several server processes on one PostgreSQL database) often share one. So history is
keyed by (device, datastream, ts, seq), and each live value gets a seq no other write has: the
process's writer id (`Store.allocate_writer`, counted in the database, so processes sharing it
never get the same one; a new one after 2**32 values) times 2**32, plus a counter of the process.
Imported points carry seq 0 (`IMPORTED_SEQ`): importing the same (ts, value) points again
replaces them, and never replaces a live point of the same millisecond. Readers still see
`createdAt` in epoch ms; points of one millisecond are ordered by seq (imported first, then live
ones in the order this process numbered them, one process after another).

Chosen over a finer internal timestamp (microseconds, or a counter folded into the ms), which
would need one anyway to tell apart two processes' writes of one instant, and would change every
stored timestamp, the bucket counts and the partitions, where seq leaves them as they were. The
cost is one integer column in the key: measured with `bench/run.py` and a store-level write
benchmark, within the run-to-run noise (see the branch's report in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import orjson

from pinbase.domain.clock import importable, now_ms
from pinbase.domain.model import Datastream, Device
from pinbase.domain.values import Value
from pinbase.live.bus import Bus, PropertyChanged, ValueChanged
from pinbase.store.base import Store
from pinbase.store.records import ValueWrites
from pinbase.store.sql import IMPORTED_SEQ

WRITER_SHIFT = 32
"""A live point's seq is writer id << WRITER_SHIFT, plus the writer's count of values so far."""


def _json(value: Value) -> str:
    return orjson.dumps(value).decode()


class Ingest:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self._next_seq = 0
        self._seq_end = 0
        """The seqs of [_next_seq, _seq_end) are this process's to give; none at first."""
        self._allocating = asyncio.Lock()

    async def _seqs(self, count: int) -> int:
        """The first of `count` consecutive seqs no other live value has, here or elsewhere."""
        first = self._next_seq
        if first + count > self._seq_end:
            async with self._allocating:  # one new writer id for every caller waiting
                first = self._next_seq
                if first + count > self._seq_end:
                    first = await self.store.allocate_writer() << WRITER_SHIFT
                    self._seq_end = first + (1 << WRITER_SHIFT)
        self._next_seq = first + count
        return first

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

        Every cell is a history point of its own (where its datastream keeps history); of cells
        naming the same (device, datastream) the later one becomes current.
        """
        if not cells:
            return
        stamp = now_ms() if ts is None else ts
        seq = await self._seqs(len(cells))
        writes = ValueWrites()
        current, history = writes.current, writes.history
        for device, ds, value in cells:
            text = _json(value)
            current.append((device.id, ds.id, text, stamp))
            if ds.history:
                history.append((device.id, ds.id, stamp, seq, text))
            seq += 1
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

        Every point becomes a history point of its own (where its datastream keeps history),
        whatever its timestamp, and live subscribers get every point in order; the newest point
        of each datastream becomes current (the later one of equal timestamps).
        """
        if not points:
            return
        seq = await self._seqs(len(points))
        writes = ValueWrites()
        history = writes.history
        newest: dict[int, tuple[int, int, str, int]] = {}
        for ds, value, ts in points:
            text = _json(value)
            held = newest.get(ds.id)
            if held is None or ts >= held[3]:
                newest[ds.id] = (device.id, ds.id, text, ts)
            if ds.history:
                history.append((device.id, ds.id, ts, seq, text))
            seq += 1
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

        Imported points carry seq 0: a point imported again at its timestamp replaces the
        earlier one (imports are idempotent), and live points of that millisecond stay.
        Points stamped too far in the future (`clock.importable`) are skipped: the one time
        window of every import, whichever interface it came through.
        """
        now = now_ms()
        rows = [
            (device.id, ds.id, ts, IMPORTED_SEQ, _json(value))
            for ts, value in points
            if importable(ts, now)
        ]
        if not rows:
            return
        newest = max(rows, key=lambda row: row[2])
        writes = ValueWrites(
            current_if_newer=[(device.id, ds.id, newest[4], newest[2])],
            history=rows if ds.history else [],
        )
        if await self.store.write_values(writes):
            value = orjson.loads(newest[4])
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
