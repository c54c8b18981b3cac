"""A datastream's history aggregated in buckets of local time (pinbase extension).

Reading needs what reading the history needs (`datastream_values`). The store groups the points
of the range in small UTC slots (one grouped read computing only what the function needs, see
`Store.history_slots`); the slots are then merged into the buckets of `domain.buckets`. A
15-minute slot fits in one bucket of every interval of 15 minutes or more whenever the zone's
offsets over the range are whole quarters of an hour (every zone since 1970 but a few); when a
slot holding points straddles a bucket boundary the read is made again with finer slots
(`SLOTS`), so the answer is exact in every zone. The 15-minute slots of settled days come from
the store's rollup (see `pinbase.store.rollup`), computed once rather than on every read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pinbase.app.caller import Caller, viewed
from pinbase.app.datastream_values import FROM_AFTER_TO, NEED_DATASTREAM, datastream
from pinbase.app.timezones import load_zone, query_zone
from pinbase.domain.buckets import (
    EARLIEST,
    LATEST,
    MINUTE,
    NOMINAL,
    Buckets,
    Interval,
    key_of,
    offset,
)
from pinbase.domain.errors import Invalid
from pinbase.domain.model import DataType

FUNCTIONS = ("avg", "min", "max", "sum", "count", "first", "last")
SLOT_FUNCTION = {"avg": "sum"}
"""What the store computes per slot for each function (the function itself if not here)."""
NUMERIC = frozenset({DataType.INTEGER, DataType.DOUBLE, DataType.ENUM})
WHOLE = frozenset({DataType.INTEGER, DataType.ENUM})
MAX_BUCKETS = 100_000
SLOTS = (15 * MINUTE, MINUTE, 1000, 1)
"""Slot widths tried in turn, each dividing the one before."""


def _choice(name: str, given: str, allowed: tuple[str, ...]) -> str:
    if given not in allowed:
        raise Invalid(f"Query parameter '{name}' must be one of: {', '.join(allowed)}.")
    return given


def _zone_name(name: str) -> str:
    return query_zone(name).name


@dataclass(slots=True)
class _Bucket:
    points: int
    value: Any


def _merge(function: str, bucket: _Bucket, points: int, value: Any) -> None:
    bucket.points += points
    if function in ("sum", "count"):
        bucket.value += value
    elif function == "min":
        bucket.value = min(bucket.value, value)
    elif function == "max":
        bucket.value = max(bucket.value, value)
    elif function == "last":
        bucket.value = value


def _bucketed(
    buckets: Buckets,
    function: str,
    slots: list[tuple[int, int, Any]],
    width: int,
    start: int,
    end: int,
) -> dict[int, _Bucket] | None:
    """The slots merged by bucket key (`function` being what the store computed per slot);
    None when a slot straddles a bucket boundary.

    A slot's two ends tell its bucket (zones never change offsets twice within one slot). The
    zone's offset is looked up at the slot's start and just after its end, which is the next
    slot's start; when the two agree the offset holds throughout, so a run of slots costs one
    lookup per slot, not two."""
    merged: dict[int, _Bucket] = {}
    zone, interval = buckets.zone, buckets.interval
    after, shift_after = start - 1, 0  # the last instant looked up after a slot, its offset
    for slot, points, value in slots:
        low, high = max(slot, start), min(slot + width - 1, end)
        shift = shift_after if low == after else offset(zone, low)
        after = slot + width
        shift_after = offset(zone, after)
        shift_high = shift if shift_after == shift else offset(zone, high)
        key = key_of(interval, low + shift)
        if key_of(interval, high + shift_high) != key:
            return None
        bucket = merged.get(key)
        if bucket is None:
            merged[key] = _Bucket(points, value)
        else:
            _merge(function, bucket, points, value)
    return merged


def _answer(function: str, kind: DataType, bucket: _Bucket) -> object:
    if function == "avg":
        return bucket.value / bucket.points
    if function in ("first", "last"):
        return orjson.Fragment(bucket.value)
    if kind in WHOLE and function != "count":
        return int(bucket.value)
    return bucket.value


async def aggregate(
    caller: Caller,
    device_id: int,
    ds_id: int | None,
    pin: str | None,
    start: int,
    end: int,
    interval: str,
    function: str,
    tz: str | None,
) -> dict[str, Any]:
    """The points of a datastream stamped from `start` to `end` (epoch ms, both included),
    aggregated by `function` in the buckets of `interval` in zone `tz` (the device's zone when
    None): `{"data": [{"ts", "value"}], "interval", "tz"}`, oldest first, only buckets holding
    points."""
    if ds_id is None and pin is None:
        raise Invalid(NEED_DATASTREAM)
    chosen = Interval(_choice("interval", interval, tuple(Interval)))
    function = _choice("fn", function, FUNCTIONS)
    if tz is not None:
        tz = _zone_name(tz)
    if start > end:
        raise Invalid(FROM_AFTER_TO)
    low, high = max(start, EARLIEST), min(end, LATEST)
    if (high - low) // NOMINAL[chosen] + 1 > MAX_BUCKETS:
        raise Invalid(
            f"The range from 'from' to 'to' spans more than {MAX_BUCKETS} buckets of '{chosen}'."
        )
    device = viewed(caller, device_id)
    ds = datastream(caller.catalog.schema_of(device), ds_id, pin)
    if function not in ("count", "first", "last") and ds.type not in NUMERIC:
        raise Invalid(
            f"Query parameter 'fn' {function} needs a numeric datastream; "
            f"'{ds.pin}' holds {ds.type}."
        )
    name = tz if tz is not None else _zone_name(caller.catalog.timezone_of(device) or "UTC")
    buckets = Buckets(chosen, load_zone(name).info)
    merged: dict[int, _Bucket] | None = {}
    computed = SLOT_FUNCTION.get(function, function)
    for width in (w for w in SLOTS if w <= NOMINAL[chosen]):
        if low > high:
            break
        slots = await caller.services.store.history_slots(
            device.id, ds.id, low, high, width, computed
        )
        merged = _bucketed(buckets, computed, slots, width, low, high)
        if merged is not None:
            break
    assert merged is not None  # one-millisecond slots never straddle
    data = [
        {"ts": buckets.start(key), "value": _answer(function, ds.type, bucket)}
        for key, bucket in merged.items()
    ]
    data.sort(key=lambda item: item["ts"])  # type: ignore[arg-type,return-value]
    return {
        "data": data,
        "interval": str(chosen),
        "tz": name,
    }
