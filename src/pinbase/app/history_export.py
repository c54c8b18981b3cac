"""CSV export of one device's history over a range, for every face (the Organization API's
`device/export`, `pinbase export`).

One row per history point, in time order across the datastreams (ties by datastream id, then by
the order the points were written), under the header `HEADER`:

- `ts_iso`: the point's time in the chosen IANA timezone (UTC by default), ISO 8601 to the
  millisecond with its offset (`2026-03-29T03:00:00.000+03:00`), so a DST change shows;
- `ts_ms`: the same instant in epoch milliseconds;
- `dataStreamId`, `pin` (`v1`), `label`: the datastream;
- `value`: a number as stored, a string as its text, a location as `lon,lat`.

Fields are quoted per RFC 4180 (the `csv` module: a field holding a comma, quote or line break is
quoted, quotes doubled; lines end with CRLF). The points are read a batch at a time
(`Store.history_rows`) and each batch is turned into text on its own, so the memory an export
needs does not grow with the number of points.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import orjson

from pinbase.app.caller import Caller, viewed
from pinbase.app.datastream_values import FROM_AFTER_TO, datastream
from pinbase.app.timezones import UnknownTimezone, load_zone, query_zone
from pinbase.domain.errors import Invalid
from pinbase.domain.model import Catalog, Datastream, Device
from pinbase.domain.permissions import device_not_found
from pinbase.domain.values import to_text
from pinbase.store import Store

HEADER = ("ts_iso", "ts_ms", "dataStreamId", "pin", "label", "value")
EPOCH = datetime(1970, 1, 1)
BATCH = 2000
"""Points read per datastream and per read."""


@dataclass(frozen=True, slots=True)
class Export:
    """What one export writes: which points, and in which timezone."""

    device: Device
    datastreams: tuple[Datastream, ...]
    start: int
    end: int
    zone: tzinfo

    @property
    def filename(self) -> str:
        return f"device-{self.device.id}-{self.start}-{self.end}.csv"


def plan(
    catalog: Catalog,
    device: Device,
    ds_ids: Sequence[int],
    start: int,
    end: int,
    tz: str | None,
) -> Export:
    """The export of `device`'s datastreams `ds_ids` (every one when empty) from `start` to
    `end` (epoch ms, both included), times shown in `tz` (UTC when None)."""
    if start > end:
        raise Invalid(FROM_AFTER_TO)
    zone = query_zone(tz)
    schema = catalog.schema_of(device)
    chosen = (
        tuple(datastream(schema, ds_id) for ds_id in dict.fromkeys(ds_ids))
        if ds_ids
        else schema.datastreams
    )
    return Export(device, chosen, start, end, zone.info)


def instant(text: str, tz: str | None) -> int:
    """A time given as epoch milliseconds or as ISO 8601 (`2026-03-29T03:00`, read in `tz`
    when it has no offset), in epoch milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=load_zone(tz).info)
        return int(moment.timestamp() * 1000)
    except (UnknownTimezone, OverflowError, ValueError):
        raise Invalid(f"'{text}' is neither epoch milliseconds nor an ISO 8601 time") from None


def export_for(
    caller: Caller, device_id: int, ds_ids: Sequence[int], start: int, end: int, tz: str | None
) -> Export:
    """An export on the Organization API: the device must be one the caller may view (another
    organization's is not found, like a missing one)."""
    device = viewed(caller, device_id)
    return plan(caller.catalog, device, ds_ids, start, end, tz)


def export_of(
    catalog: Catalog, device_id: int, ds_ids: Sequence[int], start: int, end: int, tz: str | None
) -> Export:
    """An export for an operator, who sees every device (`pinbase export`)."""
    device = catalog.devices.get(device_id)
    if device is None:
        raise device_not_found(device_id)
    return plan(catalog, device, ds_ids, start, end, tz)


async def count(store: Store, export: Export) -> int:
    """How many points the export holds (counted by bucket, without reading them)."""
    total = 0
    device, start, end = export.device.id, export.start, export.end
    for ds in export.datastreams:
        points, _ = await store.history(device, ds.id, start, end, 0, 0, True)
        total += points
    return total


def iso_time(ts: int, zone: tzinfo) -> str:
    """`ts` (epoch ms) in `zone`, ISO 8601 to the millisecond with its offset; empty for a time
    a calendar cannot show (before year 1 or after 9999)."""
    try:
        moment = datetime.fromtimestamp(ts // 1000, zone).replace(microsecond=ts % 1000 * 1000)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.isoformat(timespec="milliseconds")


class LocalTimes:
    """`iso_time` for one zone, several times faster over a run of points: the zone's offset is
    looked up once per `SPAN_MS` (a span whose ends share one offset has it throughout: zones
    change offsets far less often than that) and the date once per local day; the time of day
    is arithmetic."""

    SPAN_MS = 900_000

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.span = self.day = -1 << 64
        self.shift: int | None = None
        self.suffix = self.date = ""

    def _offset(self, ts: int) -> timedelta | None:
        try:
            return datetime.fromtimestamp(ts // 1000, self.zone).utcoffset()
        except (OverflowError, OSError, ValueError):
            return None

    def __call__(self, ts: int) -> str:
        span = ts // self.SPAN_MS
        if span != self.span:
            self.span, first = span, span * self.SPAN_MS
            low, high = self._offset(first), self._offset(first + self.SPAN_MS - 1)
            self.shift = (
                low // timedelta(milliseconds=1) if low is not None and low == high else None
            )
            self.suffix = iso_time(first, self.zone)[23:]
        if self.shift is None:
            return iso_time(ts, self.zone)
        day, ms = divmod(ts + self.shift, 86_400_000)
        if day != self.day:
            try:
                self.date = (EPOCH + timedelta(days=day)).date().isoformat()
            except OverflowError:
                return iso_time(ts, self.zone)
            self.day = day
        seconds, ms = divmod(ms, 1000)
        minutes, second = divmod(seconds, 60)
        return f"{self.date}T{_MINUTES[minutes]}{_SECONDS[second]}{_MILLIS[ms]}{self.suffix}"


_MINUTES = [f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECONDS = [f"{s:02d}" for s in range(60)]
_MILLIS = [f".{ms:03d}" for ms in range(1000)]


def value_text(raw: str) -> str:
    """A stored JSON value as a CSV field: a number as stored, a string's text, `lon,lat`."""
    if raw[:1] in ('"', "["):
        return to_text(orjson.loads(raw))
    return raw


async def csv_batches(
    store: Store, export: Export, batch: int = BATCH
) -> AsyncIterator[tuple[str, int]]:
    """The CSV text a piece at a time, each with how many points it holds: the header with the
    first batch of points (alone when there are none), then one piece per batch read. The
    first piece is read before anything is sent, so a store that fails at once fails the
    request rather than cutting a started answer."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    names = {ds.id: (str(ds.id), ds.pin, ds.label) for ds in export.datastreams}
    local = LocalTimes(export.zone)
    ids = [ds.id for ds in export.datastreams]
    points = 0
    async for rows in store.history_rows(export.device.id, ids, export.start, export.end, batch):
        writer.writerows(
            (local(ts), ts, *names[ds_id], value_text(value)) for ts, ds_id, _, value in rows
        )
        yield buffer.getvalue(), len(rows)
        buffer.seek(0)
        buffer.truncate()
        points += len(rows)
    if not points:
        yield buffer.getvalue(), 0
