"""Building the in-memory catalog snapshot from stored rows (shared by every backend)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson

from pinbase.domain.events import EventDefinition, EventType
from pinbase.domain.metadata import Metafield, Metafields, MetaType
from pinbase.domain.model import (
    DEFAULT_ROLE_IDS,
    DEFAULT_ROLES,
    Catalog,
    Datastream,
    DataType,
    Device,
    Organization,
    Permission,
    Product,
    Schema,
    User,
    UserStatus,
)
from pinbase.store.records import Entities


def build_catalog(generation: int, rows: Entities) -> Catalog:
    roles: dict[int, dict[str, frozenset[Permission]]] = {
        org.id: dict(DEFAULT_ROLES) for org in rows.organizations
    }
    role_ids: dict[int, dict[str, int]] = {
        org.id: dict(DEFAULT_ROLE_IDS) for org in rows.organizations
    }
    for role in rows.roles:
        roles.setdefault(role.org_id, dict(DEFAULT_ROLES))[role.name] = frozenset(
            Permission(p) for p in role.permissions
        )
        role_ids.setdefault(role.org_id, dict(DEFAULT_ROLE_IDS))[role.name] = role.id
    organizations = {
        org.id: Organization(org.id, org.name, roles[org.id], org.timezone, role_ids[org.id])
        for org in rows.organizations
    }

    streams: dict[int, list[Datastream]] = {}
    for ds in rows.datastreams:
        options = None
        if ds.options is not None:
            options = {int(k): str(v) for k, v in orjson.loads(ds.options).items()}
        streams.setdefault(ds.product_id, []).append(
            Datastream(
                id=ds.id,
                pin=ds.pin,
                label=ds.label,
                alias=ds.alias,
                type=DataType(ds.type),
                min=ds.min,
                max=ds.max,
                decimals=ds.decimals,
                units=ds.units,
                options=options,
                history=ds.history,
            )
        )
    parents = {p.id: p.parent_id for p in rows.products}

    def root_of(product_id: int) -> int:
        seen = set()
        while (parent := parents.get(product_id)) is not None and product_id not in seen:
            seen.add(product_id)
            product_id = parent
        return product_id

    events: dict[int, dict[str, EventDefinition]] = {}
    for e in rows.events:
        events.setdefault(e.product_id, {})[e.code] = EventDefinition(
            e.id, e.code, e.name, EventType(e.type), e.description, e.timeline, e.notify
        )
    schemas = {pid: Schema(tuple(items)) for pid, items in streams.items()}
    metafields = _metafields(rows)
    empty = Schema(())
    products = {}
    for p in rows.products:
        root = root_of(p.id)
        products[p.id] = Product(
            p.id,
            p.org_id,
            p.name,
            root,
            schemas.get(root, empty),
            metafields.get(root, _NONE),
            events.get(root, {}),
        )
    devices = {
        d.id: Device(
            d.id,
            d.org_id,
            d.product_id,
            products[d.product_id].root_id,
            d.name,
            d.owner_id,
            d.timezone,
            d.activated_at,
        )
        for d in rows.devices
    }
    users = {
        u.id: User(
            u.id,
            u.org_id,
            u.email,
            u.role,
            u.name,
            UserStatus(u.status),
            u.registered_at,
            u.last_modified,
        )
        for u in rows.users
    }
    tokens = {d.token_hash: d.id for d in rows.devices}
    return Catalog(generation, organizations, products, devices, users, tokens)


_NONE = Metafields()


def _metafields(rows: Entities) -> dict[int, Metafields]:
    found: dict[int, list[Metafield]] = {}
    for m in rows.metafields:
        options = None if m.options is None else tuple(str(o) for o in orjson.loads(m.options))
        meta = Metafield(m.id, m.name, MetaType(m.type), m.default_value, options, m.min, m.max)
        found.setdefault(m.product_id, []).append(meta)
    return {pid: Metafields(tuple(items)) for pid, items in found.items()}


class CatalogCache:
    """The current catalog, re-checked against the store's generation at most every
    `recheck_s` seconds (and at once after `invalidate`).

    Changes made through this process invalidate the cache immediately; changes committed by
    another process are seen within `recheck_s`, or at once where the backend notifies.
    """

    def __init__(self, recheck_s: float = 0.25) -> None:
        self.recheck_s = recheck_s
        self._catalog: Catalog | None = None
        self._checked = 0.0

    def invalidate(self) -> None:
        self._checked = 0.0

    async def get(
        self,
        generation: Callable[[], Awaitable[int]],
        load: Callable[[], Awaitable[Catalog]],
    ) -> Catalog:
        current = self._catalog
        clock = time.monotonic()
        if current is None or clock - self._checked >= self.recheck_s:
            if current is None or await generation() != current.generation:
                current = self._catalog = await load()
            self._checked = clock
        return current
