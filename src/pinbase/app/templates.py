"""Templates (Blynk's name for products) as the Organization API shows them.

Reading a template needs `PRODUCT_VIEW`; another organization's template is "not found" like a
missing one. A variant product (one with a parent) shares its root product's datastreams, events
and metafields, and names its root as `parentId`. Everything is read from the catalog.
"""

from __future__ import annotations

from typing import Any

from pinbase.app.caller import Caller
from pinbase.app.metadata import describe
from pinbase.app.paging import Page, page_of
from pinbase.domain.errors import NotFound
from pinbase.domain.events import SYSTEM_EVENTS
from pinbase.domain.model import Datastream, DataType, Permission, Product

NO_TEMPLATE = "Template not found."

BLYNK_TYPES = {
    DataType.INTEGER: "INT",
    DataType.DOUBLE: "DOUBLE",
    DataType.ENUM: "ENUM",
    DataType.STRING: "STRING",
    DataType.LOCATION: "LOCATION",
}


def template_of(caller: Caller, template_id: int) -> Product:
    """The caller's organization's product `template_id`; NotFound when it has none."""
    caller.principal.require(Permission.PRODUCT_VIEW)
    product = caller.catalog.products.get(template_id)
    if product is None or product.org_id != caller.principal.org_id:
        raise NotFound(NO_TEMPLATE)
    return product


def templates(caller: Caller, page: Page) -> dict[str, Any]:
    """One page of the organization's templates, by id."""
    caller.principal.require(Permission.PRODUCT_VIEW)
    org = caller.principal.org_id
    owned = sorted(
        (p for p in caller.catalog.products.values() if p.org_id == org), key=lambda p: p.id
    )
    return page_of(owned, page, template_json)


def template_json(product: Product) -> dict[str, Any]:
    item: dict[str, Any] = {"id": product.id, "name": product.name, "orgId": product.org_id}
    if product.root_id != product.id:
        item["parentId"] = product.root_id
    item["templateIds"] = []
    return item


def template_details(caller: Caller, template_id: int) -> dict[str, Any]:
    """A template with its datastreams, events and metafields (a variant: its root's)."""
    product = template_of(caller, template_id)
    return {
        **template_json(product),
        "dataStreams": [datastream_json(ds) for ds in product.schema.datastreams],
        "events": events_json(product),
        "metaFields": [describe(meta) for meta in product.metafields.fields],
    }


def datastreams(caller: Caller, template_id: int) -> list[dict[str, Any]]:
    return [datastream_json(ds) for ds in template_of(caller, template_id).schema.datastreams]


def events(caller: Caller, template_id: int) -> list[dict[str, Any]]:
    return events_json(template_of(caller, template_id))


def metafields(caller: Caller, template_id: int) -> list[dict[str, Any]]:
    return [describe(meta) for meta in template_of(caller, template_id).metafields.fields]


def datastream_json(ds: Datastream) -> dict[str, Any]:
    """A datastream as Blynk's TemplateDataStream: pinbase's pins are virtual (`v5` is pin 5)."""
    item: dict[str, Any] = {
        "id": ds.id,
        "label": ds.label,
        "alias": ds.alias,
        "type": BLYNK_TYPES[ds.type],
        "pin": int(ds.pin[1:]),
        "pinType": "VIRTUAL",
        "isHistory": ds.history,
    }
    optional = {"min": ds.min, "max": ds.max, "decimals": ds.decimals, "units": ds.units}
    item.update({key: value for key, value in optional.items() if value is not None})
    if ds.options is not None:
        item["options"] = [{"value": k, "label": v} for k, v in sorted(ds.options.items())]
    return item


def events_json(product: Product) -> list[dict[str, Any]]:
    """The system events ONLINE (id -1) and OFFLINE (id -2) first, then the product's, by id."""
    defined = sorted(product.events.values(), key=lambda e: e.id)
    return [
        {
            "id": e.id,
            "name": e.name,
            "eventCode": e.code,
            "type": e.type.value,
            "description": e.description,
            "showInTimeline": e.timeline,
        }
        for e in (*SYSTEM_EVENTS, *defined)
    ]
