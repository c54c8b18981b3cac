"""Metafields and devices' metadata values in the fleet file (`pinbase.app.provisioning`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pinbase.app.provisioning import ProvisioningError, plan
from pinbase.store.records import Entities, MetaValueRow

TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"


def document(metafields: list[Any], meta: Any = None) -> dict[str, Any]:
    device: dict[str, Any] = {"id": 101, "name": "Roof", "product": 10, "token": TOKEN}
    if meta is not None:
        device["meta"] = meta
    return {
        "organizations": [
            {
                "id": 1,
                "name": "Acme",
                "products": [{"id": 10, "name": "Station", "metafields": metafields}],
                "devices": [device],
            }
        ]
    }


FIELDS = [
    {"id": 1, "name": "Serial Number", "type": "text"},
    {"id": 2, "name": "Site", "type": "list", "options": ["North", "South"], "default": "North"},
    {"id": 3, "name": "Weight", "type": "number", "min": 0, "max": 100},
]


def test_metafields_and_values_become_rows() -> None:
    rows, report = plan(document(FIELDS, {"Site": "South", "Weight": 12.50}), Entities())
    assert [(m.id, m.name, m.default_value) for m in rows.metafields] == [
        (1, "Serial Number", None),
        (2, "Site", "North"),
        (3, "Weight", None),
    ]
    assert rows.meta_values == [MetaValueRow(101, 2, "South"), MetaValueRow(101, 3, "12.5")]
    assert report.created["meta_values"] == 2


def test_stored_values_the_file_does_not_mention_are_kept_and_equal_ones_unchanged() -> None:
    first, _ = plan(document(FIELDS, {"Site": "South"}), Entities())
    stored = Entities(**{k: getattr(first, k) for k in first.__slots__})  # type: ignore[attr-defined]
    stored.meta_values = [*first.meta_values, MetaValueRow(101, 1, "from the API")]
    rows, report = plan(document(FIELDS, {"Site": "South"}), stored)
    assert rows.is_empty()
    assert "meta_values" not in report.updated


@pytest.mark.parametrize(
    ("fields", "meta", "problem"),
    [
        (FIELDS, {"Nope": "x"}, "devices[0].meta.Nope: product 10 has no metafield"),
        (FIELDS, {"Site": "East"}, "devices[0].meta.Site: Site:"),
        (FIELDS, {"Weight": 101}, "above the maximum"),
        ([{"id": 1, "name": "Owner", "type": "device owner"}], None, "is not supported"),
        ([{"id": 1, "name": "L", "type": "list"}], None, "missing (required for type list)"),
        ([{"id": 1, "name": "Auth Token", "type": "text"}], None, "reserved"),
        ([{"id": 1, "name": "A", "type": "number", "default": "x"}], None, "not a number"),
        ([*FIELDS, {"id": 4, "name": "Site", "type": "text"}], None, "duplicate metafield name"),
    ],
)
def test_bad_metadata_is_refused(fields: list[Any], meta: Any, problem: str) -> None:
    with pytest.raises(ProvisioningError, match=re.escape(problem)):
        plan(document(fields, meta), Entities())
