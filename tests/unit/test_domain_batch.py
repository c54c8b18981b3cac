"""Batch update row classification (spec: operation 6)."""

from __future__ import annotations

from typing import Any

import pytest

from pinbase.domain.batch import COUNTERS, MAX_REASONS, MAX_ROWS, BatchOutcome, classify
from pinbase.domain.errors import Invalid
from pinbase.domain.model import ALL_PERMISSIONS, INT32_MAX, Catalog, Datastream
from pinbase.domain.permissions import Principal
from pinbase.store.catalog import build_catalog
from pinbase.store.records import (
    DatastreamRow,
    DeviceRow,
    Entities,
    OrgRow,
    ProductRow,
    RoleRow,
    UserRow,
)

ACME, GLOBEX = 1, 2
SENSOR, SENSOR_V2, PUMP, METER = 1, 2, 3, 4


def _ds(product_id: int, ds_id: int, label: str, kind: str, **extra: Any) -> DatastreamRow:
    fields: dict[str, Any] = {
        "min": None,
        "max": None,
        "decimals": None,
        "units": None,
        "options": None,
        "history": True,
    }
    fields.update(extra)
    return DatastreamRow(product_id, ds_id, f"v{ds_id}", label, label, kind, **fields)


def _device(device_id: int, org_id: int, product_id: int, owner_id: int | None) -> DeviceRow:
    return DeviceRow(device_id, org_id, product_id, f"device-{device_id}", owner_id, "hash")


CATALOG: Catalog = build_catalog(
    1,
    Entities(
        organizations=[OrgRow(ACME, "Acme"), OrgRow(GLOBEX, "Globex")],
        roles=[RoleRow(ACME, "Auditor", ("ORG_DEVICES_VIEW",))],
        users=[
            UserRow(10, ACME, "admin@acme.test", "x", "Admin"),
            UserRow(11, ACME, "user@acme.test", "x", "User"),
            UserRow(12, ACME, "other@acme.test", "x", "User"),
            UserRow(21, GLOBEX, "user@globex.test", "x", "User"),
        ],
        products=[
            ProductRow(SENSOR, ACME, "Sensor", None),
            ProductRow(SENSOR_V2, ACME, "Sensor v2", SENSOR),  # a variant of Sensor
            ProductRow(PUMP, ACME, "Pump", None),
            ProductRow(METER, GLOBEX, "Meter", None),
        ],
        datastreams=[
            _ds(SENSOR, 1, "Temperature", "double", min=-40.0, max=85.0),
            _ds(SENSOR, 2, "Humidity", "integer", min=0.0, max=100.0),
            _ds(SENSOR, 3, "Mode", "enum", options='{"0": "Off", "1": "On"}'),
            _ds(SENSOR, 4, "Status", "string"),
            _ds(SENSOR, 5, "Position", "location"),
            _ds(PUMP, 1, "Flow", "double"),
            _ds(METER, 1, "Temperature", "double"),
        ],
        devices=[
            _device(101, ACME, SENSOR, 11),
            _device(102, ACME, SENSOR, 12),
            _device(103, ACME, SENSOR_V2, 11),
            _device(104, ACME, PUMP, 11),
            _device(105, ACME, SENSOR, None),
            _device(201, GLOBEX, METER, 21),
        ],
    ),
)

SCHEMA = CATALOG.products[SENSOR].schema
TEMPERATURE = SCHEMA.by_label["Temperature"]
HUMIDITY = SCHEMA.by_label["Humidity"]
MODE = SCHEMA.by_label["Mode"]
STATUS = SCHEMA.by_label["Status"]
POSITION = SCHEMA.by_label["Position"]
FLOW = CATALOG.products[PUMP].schema.by_label["Flow"]

ORG = Principal(ACME, None, ALL_PERMISSIONS)
USER = Principal(ACME, 11, CATALOG.permissions_of(CATALOG.users[11]))  # owns 101, 103, 104

TEMP_FIELDS = ["deviceId", "Temperature"]
ALL_FIELDS = ["deviceId", "Temperature", "Humidity", "Mode", "Status", "Position"]


def counters(**nonzero: int) -> dict[str, int]:
    return {**dict.fromkeys(COUNTERS, 0), **nonzero}


def applied(outcome: BatchOutcome) -> list[tuple[int, int, Any]]:
    return [(device.id, ds.id, value) for device, ds, value in outcome.cells]


def test_catalog_fixture_is_what_the_tests_assume() -> None:
    assert CATALOG.devices[103].root_product_id == SENSOR
    assert CATALOG.devices[104].root_product_id == PUMP
    assert CATALOG.products[SENSOR_V2].schema.by_label.keys() == SCHEMA.by_label.keys()
    assert not USER.covers(CATALOG.devices[102])
    assert USER.covers(CATALOG.devices[101])


# --- fields and size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        [],
        ["deviceId"],
        ["Temperature"],
        ["Temperature", "deviceId"],
        ["deviceid", "Temperature"],
        ["DeviceId", "Temperature"],
        ["deviceId", "Temperature", "Temperature"],
        ["deviceId", "deviceId"],
        ["deviceId", "Temperature", "Humidity", "Temperature"],
    ],
)
def test_malformed_fields_are_invalid(fields: list[str]) -> None:
    rows = [[101] + [20.0] * (len(fields) - 1)] if fields else [[101]]
    with pytest.raises(Invalid):
        classify(CATALOG, ORG, fields, rows)


@pytest.mark.parametrize(
    "label",
    [
        "Pressure",  # no such datastream anywhere
        "temperature",  # labels are case-sensitive
        "Flow",  # a label of another product of the same organization
        "v1",  # a pin is not a label
    ],
)
def test_a_label_the_derived_product_lacks_is_invalid(label: str) -> None:
    with pytest.raises(Invalid) as err:
        classify(CATALOG, ORG, ["deviceId", label], [[101, 1.0]])
    assert label in str(err.value)


def test_more_than_10000_rows_is_invalid() -> None:
    assert MAX_ROWS == 10_000
    with pytest.raises(Invalid):
        classify(CATALOG, ORG, TEMP_FIELDS, [[101, 1.0]] * (MAX_ROWS + 1))


def test_exactly_10000_rows_is_accepted() -> None:
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, [[101, 1.0]] * MAX_ROWS)
    assert len(outcome.cells) == MAX_ROWS
    assert outcome.skipped == 0


# --- skip counters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "counter"),
    [
        ([102], "invalidRowSize"),
        ([102, 1.0, 2.0], "invalidRowSize"),
        ([], "invalidRowSize"),
        (None, "invalidRowSize"),
        ("102,1.0", "invalidRowSize"),
        ({"deviceId": 102, "Temperature": 1.0}, "invalidRowSize"),
        ([None, 1.0], "nullDeviceId"),
        (["abc", 1.0], "nonNumericDeviceId"),
        (["", 1.0], "nonNumericDeviceId"),
        (["10 2", 1.0], "nonNumericDeviceId"),
        (["١٠٢", 1.0], "nonNumericDeviceId"),  # non-ASCII digits
        ([True, 1.0], "nonNumericDeviceId"),
        ([102.5, 1.0], "nonNumericDeviceId"),
        ([[102], 1.0], "nonNumericDeviceId"),
        ([{"id": 102}, 1.0], "nonNumericDeviceId"),
        pytest.param(
            ["--5", 1.0],
            "nonNumericDeviceId",
            id="double-minus",
        ),
        pytest.param(
            ["1" * 5000, 1.0],
            "nonNumericDeviceId",
            id="5000-digits",
        ),
        ([999, 1.0], "deviceNotFound"),
        ([-1, 1.0], "deviceNotFound"),
        ([0, 1.0], "deviceNotFound"),
        ([INT32_MAX + 1, 1.0], "deviceNotFound"),
        ([10**30, 1.0], "deviceNotFound"),
        (["999", 1.0], "deviceNotFound"),
        ([201, 1.0], "deviceNotFound"),  # another organization's device: "not found"
        ([104, 1.0], "wrongProduct"),  # Pump, while the batch is for Sensor
    ],
)
def test_each_bad_row_is_skipped_under_its_counter(row: Any, counter: str) -> None:
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, [[101, 20.0], row, [105, 21.0]])
    assert outcome.counters == counters(**{counter: 1})
    assert outcome.skipped == 1
    assert applied(outcome) == [(101, 1, 20.0), (105, 1, 21.0)]
    assert len(outcome.reasons) == 1
    assert outcome.reasons[0].startswith("row 1:")


@pytest.mark.parametrize("cell", [101, 101.0, "101", " 101 "])
def test_numeric_device_id_forms_name_the_device(cell: Any) -> None:
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, [[cell, 20.0]])
    assert applied(outcome) == [(101, 1, 20.0)]
    assert outcome.counters == counters()


def test_user_principal_skips_devices_it_does_not_own_as_no_access() -> None:
    rows = [[101, 20.0], [102, 21.0], [105, 22.0], [103, 23.0], [201, 24.0]]
    outcome = classify(CATALOG, USER, TEMP_FIELDS, rows)
    # 102 (owned by someone else) and 105 (unowned) are in the organization but not covered;
    # 201 is in another organization, which is "not found", never "no access".
    assert outcome.counters == counters(noAccessToDevice=2, deviceNotFound=1)
    assert applied(outcome) == [(101, 1, 20.0), (103, 1, 23.0)]
    assert outcome.reasons == [
        "row 1: no access to device 102",
        "row 2: no access to device 105",
        "row 4: device 201 not found",
    ]


def test_organization_principal_covers_every_device_of_its_organization() -> None:
    rows = [[101, 20.0], [102, 21.0], [105, 22.0], [103, 23.0]]
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, rows)
    assert outcome.counters == counters()
    assert [device.id for device, _, _ in outcome.cells] == [101, 102, 105, 103]


def test_other_organization_sees_its_own_device_and_not_ours() -> None:
    globex = Principal(GLOBEX, None, ALL_PERMISSIONS)
    outcome = classify(CATALOG, globex, TEMP_FIELDS, [[101, 1.0], [201, 2.0]])
    assert outcome.counters == counters(deviceNotFound=1)
    assert applied(outcome) == [(201, 1, 2.0)]


# --- product family ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows",
    [
        [[101, 20.0], [103, 21.0]],  # root first, then a variant
        [[103, 21.0], [101, 20.0]],  # variant first: the family is still the root's
    ],
)
def test_variants_belong_to_the_same_product_family(rows: list[list[Any]]) -> None:
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, rows)
    assert outcome.counters == counters()
    assert sorted(applied(outcome)) == [(101, 1, 20.0), (103, 1, 21.0)]
    assert all(ds is TEMPERATURE for _, ds, _ in outcome.cells)


def test_product_comes_from_the_first_valid_row_after_invalid_ones() -> None:
    rows = [
        [None, 1.0],  # 0 nullDeviceId
        ["x", 1.0],  # 1 nonNumericDeviceId
        [999, 1.0],  # 2 deviceNotFound
        [201, 1.0],  # 3 deviceNotFound (other org)
        [102, 1.0],  # 4 noAccessToDevice: must not decide the product
        [104],  # 5 invalidRowSize: must not decide the product
        [104, 5.0],  # 6 the first valid row: Pump
        [101, 20.0],  # 7 wrongProduct (Sensor)
        [104, 6.0],  # 8 applied
    ]
    outcome = classify(CATALOG, USER, ["deviceId", "Flow"], rows)
    assert applied(outcome) == [(104, FLOW.id, 5.0), (104, FLOW.id, 6.0)]
    assert all(ds is FLOW for _, ds, _ in outcome.cells)
    assert outcome.counters == counters(
        nullDeviceId=1,
        nonNumericDeviceId=1,
        deviceNotFound=2,
        noAccessToDevice=1,
        invalidRowSize=1,
        wrongProduct=1,
    )
    assert [reason.split(":")[0] for reason in outcome.reasons] == [
        f"row {i}" for i in (0, 1, 2, 3, 4, 5, 7)
    ]


def test_labels_are_resolved_against_the_product_of_the_first_valid_row() -> None:
    # The first valid device is a Pump, which has no "Temperature"; later Sensor rows do not help.
    with pytest.raises(Invalid):
        classify(CATALOG, ORG, TEMP_FIELDS, [[999, 1.0], [104, 1.0], [101, 1.0]])


@pytest.mark.parametrize(
    ("principal", "rows"),
    [
        (ORG, []),
        (ORG, [[None, 1.0]]),
        (ORG, [["abc", 1.0], [999, 1.0], [101]]),
        (ORG, [[201, 1.0]]),  # only another organization's device
        (USER, [[102, 1.0], [105, 1.0]]),  # only devices it may not access
    ],
)
def test_no_valid_device_in_the_batch_is_invalid(principal: Principal, rows: list[Any]) -> None:
    with pytest.raises(Invalid):
        classify(CATALOG, principal, TEMP_FIELDS, rows)


# --- cells ---------------------------------------------------------------------------------------


def test_null_cells_leave_their_datastreams_out() -> None:
    rows = [
        [101, None, 40, None, None, None],
        [102, 21.5, None, None, None, None],
        [105, None, None, None, None, None],
    ]
    outcome = classify(CATALOG, ORG, ALL_FIELDS, rows)
    assert applied(outcome) == [(101, HUMIDITY.id, 40), (102, TEMPERATURE.id, 21.5)]
    assert outcome.counters == counters()


def test_every_type_of_cell_is_parsed_and_clamped() -> None:
    row = [101, 100, 150.0, 1, "ok", [24.1, 56.9]]
    outcome = classify(CATALOG, ORG, ALL_FIELDS, [row])
    assert applied(outcome) == [
        (101, TEMPERATURE.id, 85.0),  # clamped to max, stored as float
        (101, HUMIDITY.id, 100),  # integral float accepted, clamped to max
        (101, MODE.id, 1),
        (101, STATUS.id, "ok"),
        (101, POSITION.id, [24.1, 56.9]),
    ]
    assert type(outcome.cells[1][2]) is int
    assert type(outcome.cells[0][2]) is float


@pytest.mark.parametrize(
    ("row", "kept"),
    [
        ([101, "hot", 40, 1, "ok", [0, 0]], {"Humidity", "Mode", "Status", "Position"}),
        ([101, 20.0, 40.5, 1, "ok", [0, 0]], {"Temperature", "Mode", "Status", "Position"}),
        ([101, 20.0, 40, 7, "ok", [0, 0]], {"Temperature", "Humidity", "Status", "Position"}),
        ([101, 20.0, 40, 1, 42, [0, 0]], {"Temperature", "Humidity", "Mode", "Position"}),
        ([101, 20.0, 40, 1, "ok", [0, 91]], {"Temperature", "Humidity", "Mode", "Status"}),
        ([101, True, "x", "On", None, "0,0"], set()),
    ],
)
def test_a_mismatched_cell_is_skipped_silently_and_the_rest_of_the_row_applies(
    row: list[Any], kept: set[str]
) -> None:
    outcome = classify(CATALOG, ORG, ALL_FIELDS, [row])
    assert {ds.label for _, ds, _ in outcome.cells} == kept
    assert outcome.counters == counters()
    assert outcome.reasons == []


# --- counters and reasons ------------------------------------------------------------------------


def test_all_counters_are_present_when_nothing_is_skipped() -> None:
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, [[101, 1.0]])
    assert set(COUNTERS) == {
        "invalidRowSize",
        "nullDeviceId",
        "nonNumericDeviceId",
        "deviceNotFound",
        "noAccessToDevice",
        "wrongProduct",
    }
    assert outcome.counters == counters()
    assert outcome.skipped == 0
    assert outcome.reasons == []


def test_reasons_number_rows_from_zero_in_updates_order() -> None:
    rows = [[999, 1.0], [101, 1.0], [None, 1.0], [101], ["x", 1.0], [104, 1.0]]
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, rows)
    assert outcome.reasons[0] == "row 0: device 999 not found"
    assert [reason.split(":")[0] for reason in outcome.reasons] == [
        "row 0",
        "row 2",
        "row 3",
        "row 4",
        "row 5",
    ]
    assert "104" in outcome.reasons[4]


def test_reasons_are_capped_at_100_but_counters_count_every_row() -> None:
    assert MAX_REASONS == 100
    rows: list[Any] = [[None, 1.0]] * 150 + [[101, 1.0]] + [[999, 1.0]] * 30
    outcome = classify(CATALOG, ORG, TEMP_FIELDS, rows)
    assert outcome.counters == counters(nullDeviceId=150, deviceNotFound=30)
    assert outcome.skipped == 180
    assert len(outcome.reasons) == 100
    assert outcome.reasons[0].startswith("row 0:")
    assert outcome.reasons[99].startswith("row 99:")
    assert applied(outcome) == [(101, 1, 1.0)]


def test_datastream_objects_come_from_the_catalog_schema() -> None:
    outcome = classify(CATALOG, ORG, ["deviceId", "Status", "Temperature"], [[101, "a", 1.0]])
    kinds: list[Datastream] = [ds for _, ds, _ in outcome.cells]
    assert kinds == [STATUS, TEMPERATURE]
