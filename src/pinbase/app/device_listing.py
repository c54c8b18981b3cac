"""`pinbase devices`: the fleet as an operator looks at it, filtered.

Each device with its product, owner and when it last stored a value. Whether a device is
connected is known only to the server process holding its connection, in memory, so the command
line judges by the database: a device is *online* when it stored a value within `online_ms`
(default a minute), which a device sending data or heartbeats with values does.
"""

from __future__ import annotations

from dataclasses import dataclass

from pinbase.app.devices import every_device
from pinbase.store import Store

ONLINE_MS = 60_000


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    product: str | None = None
    """A product id or name: the device's product, or the root product of its variant."""
    owner: str | None = None
    """An owner's email."""
    online: bool | None = None
    search: str | None = None
    """Part of the device's name, product name or owner's e-mail (case-insensitive), or its
    id."""


@dataclass(frozen=True, slots=True)
class DeviceLine:
    id: int
    name: str
    org_id: int
    product_id: int
    product: str
    owner: str | None
    last_seen: int | None
    """Epoch ms of the latest value stored; None when it has none."""
    online: bool


async def list_devices(
    store: Store, wanted: DeviceFilter, now: int, online_ms: int = ONLINE_MS
) -> list[DeviceLine]:
    """The devices that pass `wanted`, by id. The search is the Platform API's
    (`app.devices.Entry.matches`): part of the name, product name or owner's e-mail, or the id."""
    catalog = await store.catalog()
    last = await store.last_updates()
    needle = wanted.search.lower() if wanted.search is not None else None
    lines = []
    for entry in every_device(catalog):
        device = entry.device
        product = catalog.products[device.product_id]
        root = catalog.products[device.root_product_id]
        owner = catalog.users.get(device.owner_id) if device.owner_id is not None else None
        seen = last.get(device.id)
        line = DeviceLine(
            id=device.id,
            name=device.name,
            org_id=device.org_id,
            product_id=product.id,
            product=product.name,
            owner=owner.email if owner is not None else None,
            last_seen=seen,
            online=seen is not None and now - seen <= online_ms,
        )
        if wanted.product is not None and wanted.product not in {
            str(product.id),
            product.name,
            str(root.id),
            root.name,
        }:
            continue
        if wanted.owner is not None and line.owner != wanted.owner:
            continue
        if wanted.online is not None and line.online != wanted.online:
            continue
        if needle is not None and not entry.matches(needle):
            continue
        lines.append(line)
    return lines
