"""The rules a set of catalog rows keeps, shared by every backend: the order rows are written
in, and what a broken rule means in words.

The databases enforce the rules (unique device tokens, unique e-mails per organization, foreign
keys); this module only orders an upsert so that a consistent set of rows never trips them
(variants after their parents), and, when a write did trip one, compares the rows with what is
stored to name the entities involved. That comparison runs only on the error path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pinbase.store.records import (
    ClientRow,
    DatastreamRow,
    DeviceRow,
    Entities,
    ProductRow,
    RoleRow,
    UserRow,
)
from pinbase.store.sql import ENTITIES


def parents_first(products: list[ProductRow]) -> list[ProductRow]:
    """Products ordered so that every variant follows its parent (foreign keys hold row by row)."""
    by_id = {p.id: p for p in products}
    ordered: list[ProductRow] = []
    placed: set[int] = set()

    def place(product: ProductRow, seen: frozenset[int]) -> None:
        if product.id in placed:
            return
        parent = by_id.get(product.parent_id) if product.parent_id is not None else None
        if parent is not None and parent.id not in seen:
            place(parent, seen | {product.id})
        placed.add(product.id)
        ordered.append(product)

    for product in sorted(products, key=lambda p: p.id):
        place(product, frozenset())
    return ordered


def _name(row: Any) -> str:
    """How a message names an entity."""
    if isinstance(row, RoleRow):
        return f'role "{row.name}" of organization {row.org_id}'
    if isinstance(row, ClientRow):
        return f'client "{row.client_id}"'
    if isinstance(row, DatastreamRow):
        return f"datastream {row.id} of product {row.product_id}"
    kind = {UserRow: "user", ProductRow: "product", DeviceRow: "device"}[type(row)]
    return f"{kind} {row.id}"


def explain_conflict(rows: Entities, stored: Entities) -> str | None:
    """The first rule that upserting `rows` over `stored` breaks, naming the entities; None when
    the result keeps every rule (the conflict was with rows that are gone again)."""
    merged: dict[str, dict[tuple[Any, ...], Any]] = {}
    for table in ENTITIES:
        found = merged[table.name] = {}
        for row in (*getattr(stored, table.name), *getattr(rows, table.name)):
            found[tuple(getattr(row, k) for k in table.key)] = row
    devices: dict[int, DeviceRow] = {k[0]: d for k, d in merged["devices"].items()}
    users: dict[int, UserRow] = {k[0]: u for k, u in merged["users"].items()}

    holders: dict[str, list[int]] = {}
    for device in devices.values():
        holders.setdefault(device.token_hash, []).append(device.id)
    for device in rows.devices:
        other = next((i for i in holders[device.token_hash] if i != device.id), None)
        if other is not None:
            return f"device {device.id}'s token is already the token of device {other}"
    emails: dict[tuple[int, str], list[int]] = {}
    for user in users.values():
        emails.setdefault((user.org_id, user.email), []).append(user.id)
    for user in rows.users:
        other = next((i for i in emails[user.org_id, user.email] if i != user.id), None)
        if other is not None:
            return (
                f'user {user.id}\'s email "{user.email}" is already the email of user {other} '
                f"in organization {user.org_id}"
            )

    organizations = {k[0] for k in merged["organizations"]}
    products = {k[0] for k in merged["products"]}
    references: list[tuple[Iterable[Any], str, Callable[[Any], int | None], set[int]]] = [
        (rows.roles, "organization", lambda r: r.org_id, organizations),
        (rows.clients, "organization", lambda r: r.org_id, organizations),
        (rows.users, "organization", lambda r: r.org_id, organizations),
        (rows.products, "organization", lambda r: r.org_id, organizations),
        (rows.products, "parent product", lambda r: r.parent_id, products),
        (rows.datastreams, "product", lambda r: r.product_id, products),
        (rows.devices, "organization", lambda r: r.org_id, organizations),
        (rows.devices, "product", lambda r: r.product_id, products),
        (rows.devices, "user", lambda r: r.owner_id, set(users)),
    ]
    for items, what, target, existing in references:
        for row in items:
            ref = target(row)
            if ref is not None and ref not in existing:
                return f"{_name(row)} refers to {what} {ref}, which does not exist"
    return None
