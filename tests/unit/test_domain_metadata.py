"""Metafield types and the values each takes (`pinbase.domain.metadata`)."""

from __future__ import annotations

import pytest

from pinbase.domain.errors import Invalid
from pinbase.domain.metadata import MAX_TEXT, Metafield, MetaType, check_value, metafield_type


def field(kind: MetaType, **extra: object) -> Metafield:
    return Metafield(1, "F", kind, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("meta", "raw", "stored"),
    [
        (field(MetaType.TEXT), " WS-0001 ", " WS-0001 "),
        (field(MetaType.NUMBER), " 25.0", "25"),
        (field(MetaType.NUMBER, min=0.0, max=10.0), "2.5", "2.5"),
        (field(MetaType.LIST, options=("North", "South")), "South", "South"),
        (field(MetaType.EMAIL), "ops@acme.test", "ops@acme.test"),
        (field(MetaType.LOCATION), "50.45, 30.5236", "50.45 30.5236"),
        (field(MetaType.IMEI), "490154203237518", "490154203237518"),
        (field(MetaType.ICCID), "8938003992450123456", "8938003992450123456"),
    ],
)
def test_good_values_are_stored_in_canonical_form(meta: Metafield, raw: str, stored: str) -> None:
    assert check_value(meta, raw) == stored


@pytest.mark.parametrize(
    ("meta", "raw"),
    [
        (field(MetaType.TEXT), "a\x00b"),
        (field(MetaType.TEXT), "x" * (MAX_TEXT + 1)),
        (field(MetaType.TEXT, min=2.0, max=4.0), "x"),
        (field(MetaType.NUMBER), "1e999"),
        (field(MetaType.NUMBER), "nan"),
        (field(MetaType.NUMBER), "0x10"),
        (field(MetaType.NUMBER, max=10.0), "11"),
        (field(MetaType.LIST, options=("North",)), "north"),
        (field(MetaType.EMAIL), "ops@localhost"),
        (field(MetaType.EMAIL), "not an email"),
        (field(MetaType.LOCATION), "91 0"),
        (field(MetaType.LOCATION), "1 2 3"),
        (field(MetaType.IMEI), "12345"),
        (field(MetaType.ICCID), "89abc"),
        (field(MetaType.NUMBER), "1" * 2000),
    ],
)
def test_bad_values_are_invalid(meta: Metafield, raw: str) -> None:
    with pytest.raises(Invalid):
        check_value(meta, raw)


def test_types_are_read_leniently_and_unsupported_ones_named() -> None:
    assert metafield_type("Number") is MetaType.NUMBER
    with pytest.raises(Invalid, match="not supported"):
        metafield_type("Device Owner")
