"""Devices over the Platform API: pages and search, the full device, create, rename, delete,
clear, and a new token.

Reading goes by the in-memory catalog (every process follows its generation), through an index
built once per catalog snapshot: each organization's devices in id order, with the lower-case
texts a search compares. A page reads the database only for its own devices (when each last
stored a value, its hardware info), never for the whole fleet; only a search sorted by
"Last Reported At" reads the last updates of every device it matched.

Every change is one catalog transaction (`Store.insert_device`, `update_device`,
`delete_devices`), which bumps the generation: every process sees the change as soon as its
catalog follows, refuses a dead token, and closes the device connections it opened
(`app.revoked_devices`; this process closes its own at once). The DEVICE_ADDED and
DEVICE_DELETED webhook deliveries are written in that same transaction. A clear erases data,
not the device: no catalog change, and a connected device stays connected.

Every operation on one device acts only on a device the caller may view: another
organization's device, or another user's for a caller with only OWN_DEVICES_VIEW, is the same
404 as a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from pinbase.app import metadata
from pinbase.app.auth.secrets import digest, new_device_token
from pinbase.app.caller import Caller, controlled, viewed
from pinbase.app.datastream_values import values_json
from pinbase.app.paging import Page
from pinbase.app.templates import NO_TEMPLATE
from pinbase.domain.errors import Forbidden, Invalid, NotFound
from pinbase.domain.metadata import BLYNK_NAMES, json_value
from pinbase.domain.model import INT32_MAX, Catalog, Device, Permission
from pinbase.domain.permissions import Principal
from pinbase.store.base import Store
from pinbase.store.errors import Conflict, StoreUnavailable
from pinbase.store.records import DeviceRow

MAX_NAME = 50
NAME_PATTERN = "^[A-Za-z0-9 '_-]*[A-Za-z0-9'_-][A-Za-z0-9 '_-]*$"
"""A device name: ASCII letters, digits, spaces, `'`, `_`, `-`, not only spaces (1..50)."""
MAX_QUERY = 255
NO_USER = "User not found."
NAME_RULE = (
    f"Device name must be 1 to {MAX_NAME} characters: letters, digits, spaces, and ' _ - only."
)
OTHER_OWNER = "Access denied: naming another user as owner needs the ORG_VIEW_USERS permission."
_NAME = re.compile(NAME_PATTERN)
INSERT_ATTEMPTS = 5
"""Tries at the next free id when other processes take it first."""


def check_name(name: str) -> str:
    """A device name (`NAME_PATTERN`): 400 otherwise."""
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise Invalid(NAME_RULE)
    return name


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A device with the texts a search compares (lower-case; "" when it has none)."""

    device: Device
    name: str
    product: str
    owner: str

    def matches(self, needle: str) -> bool:
        """`needle` (lower-case) is part of the name, product name or owner e-mail, or is
        the id."""
        return (
            needle in self.name
            or needle in self.product
            or needle in self.owner
            or needle == str(self.device.id)
        )


@dataclass(frozen=True, slots=True)
class _Index:
    catalog: Catalog
    by_org: dict[int, list[Entry]]


_index_cache: list[_Index] = []


def _index(catalog: Catalog) -> _Index:
    """The index of `catalog` (built once per snapshot; the latest one is kept)."""
    if _index_cache and _index_cache[0].catalog is catalog:
        return _index_cache[0]
    by_org: dict[int, list[Entry]] = {}
    for device_id in sorted(catalog.devices):
        device = catalog.devices[device_id]
        product = catalog.products.get(device.product_id)
        owner = catalog.users.get(device.owner_id) if device.owner_id is not None else None
        by_org.setdefault(device.org_id, []).append(
            Entry(
                device,
                device.name.lower(),
                product.name.lower() if product is not None else "",
                owner.email.lower() if owner is not None else "",
            )
        )
    index = _Index(catalog, by_org)
    _index_cache[:] = [index]
    return index


def every_device(catalog: Catalog) -> list[Entry]:
    """Every device of every organization, by id (`pinbase devices`)."""
    return sorted(
        (e for entries in _index(catalog).by_org.values() for e in entries),
        key=lambda e: e.device.id,
    )


def visible(catalog: Catalog, principal: Principal) -> list[Entry]:
    """The devices the principal may view, by id."""
    principal.require_view()
    entries = _index(catalog).by_org.get(principal.org_id, [])
    if principal.sees_whole_org:
        return entries
    return [e for e in entries if principal.covers(e.device)]


SortKey = Callable[[Entry], Any]


def _sort_keys(
    catalog: Catalog, last: dict[int, int], online: Callable[[int], bool]
) -> dict[str, SortKey]:
    def owner_email(e: Entry) -> str | None:
        return e.owner or None

    return {
        "Device Id": lambda e: e.device.id,
        "Name": lambda e: e.name,
        "Owner Id": lambda e: e.device.owner_id,
        "Device Owner": owner_email,
        "Last Reported At": lambda e: last.get(e.device.id),
        "Activated At": lambda e: e.device.activated_at,
        "Template Name": lambda e: e.product,
        "Template Id": lambda e: e.device.product_id,
        "Organization Id": lambda e: e.device.org_id,
        "Status": lambda e: online(e.device.id),
    }


SORT_FIELDS = tuple(_sort_keys(Catalog(0, {}, {}, {}, {}), {}, bool))
"""Blynk's names of the fields a search sorts by."""


async def _matching(caller: Caller, query: str) -> list[Entry]:
    """The devices the caller may view that match `query` (see `Entry.matches`)."""
    if not query or len(query) > MAX_QUERY:
        raise Invalid(f"Query parameter 'query' must be 1 to {MAX_QUERY} characters.")
    needle = query.lower()
    return [e for e in visible(caller.catalog, caller.principal) if e.matches(needle)]


async def _sorted(
    caller: Caller, found: list[Entry], sort_by: str | None, descending: bool
) -> list[Entry]:
    """`found` (in id order) sorted by `sort_by` (one of `SORT_FIELDS`; by id when None);
    devices without a value of that field come last in either order, and ties stay in id
    order."""
    if sort_by is not None and sort_by not in SORT_FIELDS:
        raise Invalid(f"Query parameter 'sortBy' must be one of: {', '.join(SORT_FIELDS)}.")
    if sort_by is None or sort_by == "Device Id":
        return found[::-1] if descending else found
    store = caller.services.store
    last = (
        await store.last_updates([e.device.id for e in found])
        if sort_by == "Last Reported At"
        else {}
    )
    presence = caller.services.presence
    key = _sort_keys(caller.catalog, last, lambda i: presence.status(i).connected)[sort_by]
    present = [e for e in found if key(e) is not None]
    present.sort(key=key, reverse=descending)
    return present + [e for e in found if key(e) is None]


async def _page(caller: Caller, entries: Sequence[Entry], page: Page) -> dict[str, Any]:
    """One page of `entries` as Blynk shows it, the page's devices with their extras and
    whether each is connected (`online`, a pinbase extension)."""
    chosen = [e.device for e in entries[page.offset : page.offset + page.size]]
    shown = [_listed_json(caller, view) for view in await views(caller.services.store, chosen)]
    return {"totalElements": len(entries), "content": shown}


async def devices_page(
    caller: Caller, page: Page, sort_by: str | None = None, descending: bool = False
) -> dict[str, Any]:
    """One page of the devices the caller may view, sorted as a search (`_sorted`)."""
    found = visible(caller.catalog, caller.principal)
    return await _page(caller, await _sorted(caller, found, sort_by, descending), page)


async def search_page(
    caller: Caller, query: str, sort_by: str | None, descending: bool, page: Page
) -> dict[str, Any]:
    """One page of the devices matching `query` (`_matching`), sorted (`_sorted`)."""
    found = await _matching(caller, query)
    return await _page(caller, await _sorted(caller, found, sort_by, descending), page)


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device with what the database knows of it beyond the catalog."""

    device: Device
    last_reported_at: int | None
    hardware: dict[str, str] | None


async def views(store: Store, devices: Sequence[Device]) -> list[DeviceView]:
    """The devices of one page with their extras: two reads of those devices only."""
    ids = [d.id for d in devices]
    if not ids:
        return []
    last = await store.last_updates(ids)
    hardware = await store.hardware_info(ids)
    return [
        DeviceView(
            d,
            last.get(d.id),
            orjson.loads(hardware[d.id]) if d.id in hardware else None,
        )
        for d in devices
    ]


def _device_json(view: DeviceView) -> dict[str, Any]:
    device = view.device
    item: dict[str, Any] = {
        "id": device.id,
        "name": device.name,
        "templateId": device.product_id,
        "originalTemplateId": device.root_product_id,
        "orgId": device.org_id,
    }
    if device.owner_id is not None:
        item["ownerUserId"] = device.owner_id
    if device.activated_at is not None:
        item["activatedAt"] = device.activated_at
    if view.last_reported_at is not None:
        item["lastReportedAt"] = view.last_reported_at
    if view.hardware is not None:
        item["hardwareInfo"] = view.hardware
    return item


def _listed_json(caller: Caller, view: DeviceView) -> dict[str, Any]:
    """The device as lists and the full device show it: with whether it is connected now."""
    item = _device_json(view)
    item["online"] = caller.services.presence.status(view.device.id).connected
    return item


async def _full_json(
    caller: Caller, catalog: Catalog, device: Device, token: str | None = None
) -> dict[str, Any]:
    """The device with its connection state, current values and metadata (and `token`, the
    new one, after a create)."""
    store = caller.services.store
    (view,) = await views(store, [device])
    item = _listed_json(caller, view)
    current = (await store.current_values([device.id]))[device.id]
    item["dataStreamValues"] = values_json(catalog.schema_of(device), current)
    fields = metadata.metafields_of(catalog, device)
    metas = []
    for meta, value in await metadata.read(store, fields, device.id):
        shown: dict[str, Any] = {"type": BLYNK_NAMES[meta.type]}
        if value is not None:
            shown["value"] = json_value(meta, value)
        metas.append({"id": meta.id, "name": meta.name, "value": shown})
    item["metaFieldValues"] = metas
    if token is not None:
        item["token"] = token
    return item


async def device_details(caller: Caller, device_id: int) -> dict[str, Any]:
    """The full device: Blynk's device with `online`, `dataStreamValues`, `metaFieldValues`."""
    return await _full_json(caller, caller.catalog, viewed(caller, device_id))


def online(caller: Caller, device_id: int) -> dict[str, Any]:
    """`{"connected": bool}`: whether the device holds a connection to this process."""
    device = viewed(caller, device_id)
    return {"connected": caller.services.presence.status(device.id).connected}


def status(caller: Caller, device_id: int) -> dict[str, Any]:
    """How the device is connected, since when, and when it was last seen (a pinbase
    extension)."""
    device = viewed(caller, device_id)
    found = caller.services.presence.status(device.id)
    return {
        "deviceId": device.id,
        "connected": found.connected,
        "protocol": found.protocol,
        "connectedSince": found.connected_since,
        "lastSeen": found.last_seen,
    }


# --- changing ---------------------------------------------------------------------------------


async def create(
    caller: Caller, template_id: int, name: str, owner_id: int | None, now: int
) -> dict[str, Any]:
    """A new device of product `template_id`, as the full device with its token (shown only
    here). The owner: `owner_id`, else the calling user (none for an organization token)."""
    principal, catalog, store = caller.principal, caller.catalog, caller.services.store
    principal.require(Permission.ORG_DEVICES_CREATE)
    check_name(name)
    product = catalog.products.get(template_id)
    if product is None or product.org_id != principal.org_id:
        raise NotFound(NO_TEMPLATE)
    owner = _owner(catalog, principal, owner_id)
    token = new_device_token()
    for _ in range(INSERT_ATTEMPTS):
        device_id = await store.next_device_id()
        if device_id > INT32_MAX:
            raise Invalid("No device id is left to assign.")
        row = DeviceRow(
            device_id, principal.org_id, product.id, name, owner, digest(token), None, now
        )
        outbox = await caller.services.webhooks.trigger_rows("DEVICE_ADDED", [row], now)
        try:
            await store.insert_device(row, outbox)
        except Conflict:
            continue  # another process took the id first: the next free one
        return await _full_json(caller, await store.catalog(), _device(row, product.root_id), token)
    raise StoreUnavailable("Device ids are contended by other processes; retry.")


def _owner(catalog: Catalog, principal: Principal, owner_id: int | None) -> int | None:
    if owner_id is None:
        return principal.user_id
    if (
        principal.user_id is not None
        and owner_id != principal.user_id
        and Permission.ORG_VIEW_USERS not in principal.permissions
    ):
        raise Forbidden(OTHER_OWNER)
    user = catalog.users.get(owner_id)
    if user is None or user.org_id != principal.org_id:
        raise NotFound(NO_USER)
    return user.id


async def rename(caller: Caller, device_id: int, name: str) -> dict[str, Any]:
    """The device renamed, as Blynk's device."""
    device = controlled(caller, device_id, Permission.ORG_DEVICES_EDIT)
    check_name(name)
    store = caller.services.store
    await store.update_device(device.id, name=name)
    (view,) = await views(store, [replace(device, name=name)])
    return _device_json(view)


async def delete(caller: Caller, device_id: int, now: int) -> None:
    """Delete the device and all its data; its token dies, its connections close."""
    device = controlled(caller, device_id, Permission.ORG_DEVICES_DELETE)
    outbox = await caller.services.webhooks.trigger_rows("DEVICE_DELETED", [device], now)
    await caller.services.store.delete_devices([device.id], outbox)
    await _close_revoked(caller)


async def clear(caller: Caller, device_id: int) -> None:
    """Erase the device's history, current values and widget properties."""
    device = controlled(caller, device_id, Permission.ORG_DEVICES_DELETE)
    await caller.services.store.clear_devices([device.id])


async def reprovision(caller: Caller, device_id: int) -> dict[str, Any]:
    """`{"deviceId", "token"}`: a new token for the device (shown only here); the old one dies
    with its connections."""
    device = controlled(caller, device_id, Permission.PROVISION_DEVICES)
    token = new_device_token()
    await caller.services.store.update_device(device.id, token_hash=digest(token))
    await _close_revoked(caller)
    return {"deviceId": device.id, "token": token}


async def _close_revoked(caller: Caller) -> None:
    """Close this process's connections whose token died (others: `revoked_devices`)."""
    presence = caller.services.presence
    if presence.connected_count:
        presence.close_revoked((await caller.services.store.catalog()).device_tokens)


def _device(row: DeviceRow, root_id: int) -> Device:
    return Device(
        row.id,
        row.org_id,
        row.product_id,
        root_id,
        row.name,
        row.owner_id,
        row.timezone,
        row.activated_at,
    )
