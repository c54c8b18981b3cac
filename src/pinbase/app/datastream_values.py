"""Reading and writing a device's datastream values on the Organization API, for every face.

Reading needs a view permission on the device, writing `ORG_DEVICES_CONTROL` too; a device the
caller does not cover is "not found" like a missing one. A write goes through the one write
path (`Ingest`): stored, in history, and sent live to the device.
"""

from __future__ import annotations

from typing import Any

import orjson

from pinbase.app.caller import Caller, controlled, viewed
from pinbase.app.paging import Page
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.model import Datastream, Permission, Schema
from pinbase.domain.values import parse_json_value
from pinbase.store.records import StoredValue

NEED_DATASTREAM = "Query parameter 'dataStreamId' or 'pin' is required."
FROM_AFTER_TO = "Query parameter 'from' must not be after 'to'."


def datastream(schema: Schema, ds_id: int | None, pin: str | None = None) -> Datastream:
    """The datastream `ds_id`, else the one on `pin`; NotFound when there is none."""
    if ds_id is not None:
        found = schema.by_id.get(ds_id)
        if found is None:
            raise NotFound(f"Datastream with identifier {ds_id} is not found.")
        return found
    if pin is None:
        raise Invalid(NEED_DATASTREAM)
    found = schema.by_pin.get(pin.lower())
    if found is None:
        raise NotFound(f"Datastream with pin '{pin}' is not found.")
    return found


def values_json(
    schema: Schema, stored: dict[int, StoredValue], wanted: list[int] | None = None
) -> list[dict[str, object]]:
    """Each datastream (only the `wanted` ids, when any) with its current value, if it has one."""
    chosen = set(wanted) if wanted else None
    result = []
    for ds in schema.datastreams:
        if chosen is not None and ds.id not in chosen:
            continue
        item: dict[str, object] = {
            "dataStreamId": ds.id,
            "pin": ds.pin,
            "dataStreamLabel": ds.label,
            "dataStreamAlias": ds.alias,
        }
        value = stored.get(ds.id)
        if value is not None:
            item["value"] = orjson.Fragment(value.value)
            item["updatedAt"] = value.updated_at
        result.append(item)
    return result


async def current(
    caller: Caller, device_id: int, wanted: list[int] | None = None
) -> list[dict[str, object]]:
    """A covered device's current values (`values_json`)."""
    device = viewed(caller, device_id)
    stored = await caller.services.store.current_values([device.id])
    return values_json(caller.catalog.schema_of(device), stored[device.id], wanted)


async def history(
    caller: Caller,
    device_id: int,
    ds_id: int | None,
    pin: str | None,
    start: int,
    end: int,
    page: Page,
    ascending: bool = False,
) -> dict[str, Any]:
    """One page of a datastream's points stamped from `start` to `end` (epoch ms, both
    included), newest first unless `ascending`; the datastream by id, else by pin."""
    if ds_id is None and pin is None:
        raise Invalid(NEED_DATASTREAM)
    if start > end:
        raise Invalid(FROM_AFTER_TO)
    device = viewed(caller, device_id)
    ds = datastream(caller.catalog.schema_of(device), ds_id, pin)
    total, rows = await caller.services.store.history(
        device.id, ds.id, start, end, page.offset, page.size, ascending
    )
    content = [{"createdAt": ts, "value": orjson.Fragment(value)} for ts, value in rows]
    return {"totalElements": total, "content": content}


async def write(
    caller: Caller, device_id: int, ds_id: int | None, value: object, pin: str | None = None
) -> None:
    """Write one value (JSON-decoded) to a datastream of a covered device, by id or by pin."""
    device = controlled(caller, device_id, Permission.ORG_DEVICES_CONTROL)
    ds = datastream(caller.catalog.schema_of(device), ds_id, pin)
    await caller.services.ingest.write(device, [(ds, parse_json_value(ds, value))])
