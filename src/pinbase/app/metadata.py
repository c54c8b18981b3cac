"""Reading and writing a device's metadata, for every interface (devices and the Platform API).

A device reads its own value of a metafield, else the metafield's default, else nothing. A
stored value that no longer fits its metafield (the fleet file changed the type) reads as the
default. Values live in the store, not in the catalog: every process reads them from the
database, so a write is seen by all at once and bumps no catalog generation. A write is
published on the bus (`MetaChanged`) once stored; `pinbase apply` runs in no server and
publishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pinbase.domain.errors import DomainError, Invalid, NotFound
from pinbase.domain.metadata import (
    BLYNK_NAMES,
    INVALID_VALUE,
    Metafield,
    Metafields,
    check_value,
    json_value,
)
from pinbase.domain.model import Catalog, Device
from pinbase.live.bus import Bus, MetaChanged
from pinbase.store.base import Store

NO_METAFIELD = "Meta field is not found."
__all__ = ["INVALID_VALUE", "NO_METAFIELD", "describe", "find", "metafields_of", "read", "write"]


def metafields_of(catalog: Catalog, device: Device) -> Metafields:
    return catalog.products[device.product_id].metafields


def describe(meta: Metafield) -> dict[str, Any]:
    """A metafield as the API shows it, its type named as Blynk does."""
    item: dict[str, Any] = {"id": meta.id, "name": meta.name, "type": BLYNK_NAMES[meta.type]}
    if meta.default is not None:
        item["default"] = json_value(meta, meta.default)
    if meta.options is not None:
        item["options"] = list(meta.options)
    if meta.min is not None:
        item["min"] = meta.min
    if meta.max is not None:
        item["max"] = meta.max
    return item


def find(fields: Metafields, *, field_id: int | None = None, name: str | None = None) -> Metafield:
    """A metafield by id or by exact name; NotFound when there is none."""
    meta = fields.by_id.get(field_id) if field_id is not None else None
    if name is not None:
        meta = fields.by_name.get(name)
    if meta is None:
        raise NotFound(NO_METAFIELD)
    return meta


async def read(
    store: Store, fields: Metafields, device_id: int, wanted: Iterable[Metafield] | None = None
) -> list[tuple[Metafield, str | None]]:
    """Each wanted metafield (all when None) with the value the device reads, or None."""
    own = await store.meta_values(device_id)
    found: list[tuple[Metafield, str | None]] = []
    for meta in fields.fields if wanted is None else wanted:
        value = own.get(meta.id)
        if value is not None:
            try:
                value = check_value(meta, value)
            except DomainError:
                value = None
        found.append((meta, meta.default if value is None else value))
    return found


async def write(
    store: Store, bus: Bus, device: Device, meta: Metafield, raw: str, origin: object = None
) -> str:
    """Check `raw` (Invalid names the problem) and store its canonical form; returns that.
    The change is then published on the bus (the live stream's `meta` events)."""
    if not isinstance(raw, str):
        raise Invalid(f"{meta.name}: expected a text value")
    value = check_value(meta, raw)
    await store.set_meta_value(device.id, meta.id, value)
    shown = json_value(meta, value)
    bus.publish([MetaChanged(device.org_id, device.id, meta.id, meta.name, shown, origin)])
    return value
