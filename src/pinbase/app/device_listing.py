"""`pinbase devices`: the fleet as an operator looks at it, filtered.

Each device with its product, owner and when it last stored a value. Whether a device is
connected is known only to the server process holding its connection, in memory, so the command
line judges by the database: a device is *online* when it stored a value within `online_ms`
(default a minute), which a device sending data or heartbeats with values does.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """Part of the device's name or id, case-insensitive."""


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
    """The devices that pass `wanted`, by id."""
    rows = await store.entities()
    last = await store.last_updates()
    products = {p.id: p for p in rows.products}
    owners = {u.id: u.email for u in rows.users}
    lines = []
    for device in sorted(rows.devices, key=lambda d: d.id):
        product = products[device.product_id]
        seen = last.get(device.id)
        line = DeviceLine(
            id=device.id,
            name=device.name,
            org_id=device.org_id,
            product_id=product.id,
            product=product.name,
            owner=owners.get(device.owner_id) if device.owner_id is not None else None,
            last_seen=seen,
            online=seen is not None and now - seen <= online_ms,
        )
        parent = products.get(product.parent_id) if product.parent_id is not None else None
        if _passes(line, wanted, parent.name if parent else None, product.parent_id):
            lines.append(line)
    return lines


def _passes(
    line: DeviceLine, wanted: DeviceFilter, root_name: str | None, root: int | None
) -> bool:
    if wanted.product is not None and wanted.product not in {
        str(line.product_id),
        line.product,
        str(root),
        root_name,
    }:
        return False
    if wanted.owner is not None and line.owner != wanted.owner:
        return False
    if wanted.online is not None and line.online != wanted.online:
        return False
    if wanted.search is not None:
        needle = wanted.search.lower()
        if needle not in line.name.lower() and needle != str(line.id):
            return False
    return True
