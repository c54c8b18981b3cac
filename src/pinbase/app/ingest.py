"""The one write path: every accepted value, whatever its source, goes through here.

Callers parse and authorize; this module turns canonical values into current values and history
rows, has the store commit them durably, and then tells live subscribers.

**Every acknowledged live write is its own history point.** A point's timestamp is an epoch
millisecond, and writers of one datastream (many clients of the Organization API, the device
interfaces, several server processes on one PostgreSQL database) often share one. So history is
keyed by (device, datastream, ts, seq), and no two live points of a series and millisecond get
the same seq:

- each process takes a writer id from the database when it first writes
  (`Store.allocate_writer`: a counter row, so processes sharing a database never get the same);
- a live point's seq is `k << 32 | writer id`, where k numbers the process's points of that
  series and millisecond, 0 for the first (`LiveSeqs`). So a seq is nearly always the writer id
  alone, a small integer;
- imported points carry seq 0 (`IMPORTED_SEQ`): importing the same (ts, value) points again
  replaces them, and never replaces a live point of that millisecond.

Readers still see `createdAt` in epoch ms; points of one millisecond are ordered by seq:
imported ones first, then by k (a process's points of a series in the order it wrote them),
then by writer id.

Alternatives measured or weighed: a process-wide counter (seq = writer id << 32 | count) is
simpler, but every seq then takes 6 bytes in SQLite's records and index: the history file grew
by 32 % and a 20,000-cell `write_cells` took 18 % more CPU than before seq, against 4.5 % and
8 % for this numbering (about 0.2 µs of Python a point; its counts are keyed by int, since
20,000 tuples held per batch made the garbage collector run longer). End to end
(`bench/run.py`, old and new alternating) batch updates, imports, single-value updates and
history pages stayed within the noise. A finer internal timestamp (microseconds, or a counter
folded into the ms) would still need a writer's part to tell apart two processes' writes of one
instant, and would change every stored timestamp, the bucket counts, the partition bounds and
retention, where seq leaves them as they were.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import orjson

from pinbase.app.webhooks import Webhooks
from pinbase.domain.clock import importable, now_ms
from pinbase.domain.model import Datastream, Device
from pinbase.domain.values import Value
from pinbase.live.bus import Bus, PropertyChanged, ValueChanged
from pinbase.store.base import Store
from pinbase.store.errors import StoreError
from pinbase.store.records import ValueWrites
from pinbase.store.sql import IMPORTED_SEQ

WRITER_BITS = 32
"""A live point's seq is k << WRITER_BITS | the process's writer id (which stays below 2**32)."""
HOT_LIMIT = 1 << 20
"""ks below it number a series' points of the process's latest millisecond, 0, 1, 2, ..."""
K_LIMIT = 1 << 31
"""ks from HOT_LIMIT up to it come from one counter per writer id; seq fits 63 bits."""


def _json(value: Value) -> str:
    return orjson.dumps(value).decode()


class LiveSeqs:
    """The seqs of one writer id's live history points.

    A series' points of the latest millisecond this writer stamped are numbered k = 0, 1, 2, ...
    (almost always just 0), so a seq is usually the writer id alone, a small integer that costs
    a byte or two in an index; a point of an older millisecond (a clock set back, a device
    clock running ahead of another) takes the next k of one counter, from HOT_LIMIT up. No two
    points of one series and millisecond get the same k, and other processes have other writer
    ids, so no two live points share a key.
    """

    __slots__ = ("_hot", "_next", "_taken", "writer")

    def __init__(self, writer: int) -> None:
        self.writer = writer
        self._hot: int | None = None
        """The latest millisecond stamped; `_taken` counts each series' points of it."""
        self._taken: dict[int, int] = {}
        """By series: device id << 32 plus datastream id (ints, which the garbage collector
        need not track: a batch of 20,000 tuples held here made it run for longer)."""
        self._next = HOT_LIMIT

    def room(self, count: int) -> bool:
        """Whether `count` more points surely get a seq (the counter does not run out)."""
        return self._next + count <= K_LIMIT

    def seq(self, device_id: int, ds_id: int, ts: int) -> int:
        hot = self._hot
        if ts != hot:
            if hot is not None and ts < hot:
                return self._counted()
            self._hot = ts
            self._taken.clear()
        key = (device_id << 32) + ds_id  # one key per series: datastream ids are 32-bit
        k = self._taken.get(key, 0)
        if k == HOT_LIMIT:
            return self._counted()
        self._taken[key] = k + 1
        return k << WRITER_BITS | self.writer

    def _counted(self) -> int:
        k = self._next
        self._next = k + 1
        return k << WRITER_BITS | self.writer


class Ingest:
    def __init__(self, store: Store, bus: Bus, webhooks: Webhooks | None = None) -> None:
        self.store = store
        self.bus = bus
        self.webhooks = webhooks
        """With it, live writes add their DEVICE_DATASTREAM_UPDATE deliveries to the outbox in
        their own transaction (`pinbase.app.webhooks`)."""
        self._seqs: LiveSeqs | None = None
        self._allocating = asyncio.Lock()

    async def _numbering(self, count: int) -> LiveSeqs:
        """What numbers the next `count` live points (a new writer id at first, and should the
        counter run out)."""
        seqs = self._seqs
        if seqs is None or not seqs.room(count):
            async with self._allocating:  # one new writer id for every caller waiting
                seqs = self._seqs
                if seqs is None or not seqs.room(count):
                    writer = await self.store.allocate_writer()
                    if writer >> WRITER_BITS:
                        raise StoreError("this database has handed out every writer id")
                    seqs = self._seqs = LiveSeqs(writer)
        return seqs

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
        seqs = await self._numbering(len(cells))
        stamp = now_ms() if ts is None else ts
        writes = ValueWrites()
        current, history = writes.current, writes.history
        for device, ds, value in cells:
            text = _json(value)
            current.append((device.id, ds.id, text, stamp))
            if ds.history:
                history.append((device.id, ds.id, stamp, seqs.seq(device.id, ds.id, stamp), text))
        if self.webhooks is not None:
            writes.outbox = await self.webhooks.for_values(
                ((device, ds, value, stamp) for device, ds, value in cells), now_ms()
            )
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
        current_if_newer: bool = False,
    ) -> None:
        """Write values of one device, each at its own timestamp (epoch ms), in one transaction.

        Every point becomes a history point of its own (where its datastream keeps history),
        whatever its timestamp, and live subscribers get every point in order; the newest point
        of each datastream becomes current (the later one of equal timestamps), or, with
        `current_if_newer`, only where the stored current value is not newer.
        """
        if not points:
            return
        seqs = await self._numbering(len(points))
        writes = ValueWrites()
        history = writes.history
        newest: dict[int, tuple[int, int, str, int]] = {}
        for ds, value, ts in points:
            text = _json(value)
            held = newest.get(ds.id)
            if held is None or ts >= held[3]:
                newest[ds.id] = (device.id, ds.id, text, ts)
            if ds.history:
                history.append((device.id, ds.id, ts, seqs.seq(device.id, ds.id, ts), text))
        if current_if_newer:
            writes.current_if_newer = list(newest.values())
        else:
            writes.current = list(newest.values())
        if self.webhooks is not None:
            writes.outbox = await self.webhooks.for_values(
                ((device, ds, value, ts) for ds, value, ts in points), now_ms()
            )
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

    async def erase_value(
        self, device: Device, ds: Datastream, origin: object | None = None
    ) -> None:
        """The datastream's current value becomes empty (its history stays): readers find no
        value, and live subscribers get a change to None (a device, an empty value)."""
        if await self.store.erase_current(device.id, ds.id):
            self.bus.publish(
                [ValueChanged(device.org_id, device.id, ds.id, ds.pin, None, now_ms(), origin)]
            )

    async def erase_property(
        self, device: Device, ds: Datastream, name: str, origin: object | None = None
    ) -> None:
        """Remove a widget property; live subscribers get it changed to the empty string."""
        if await self.store.delete_property(device.id, ds.id, name):
            self.bus.publish(
                [PropertyChanged(device.org_id, device.id, ds.id, ds.pin, name, "", origin)]
            )

    async def set_property(
        self, device: Device, ds: Datastream, name: str, value: str, origin: object | None = None
    ) -> None:
        await self.store.set_property(device.id, ds.id, name, value)
        self.bus.publish(
            [PropertyChanged(device.org_id, device.id, ds.id, ds.pin, name, value, origin)]
        )
