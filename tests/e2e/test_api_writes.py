"""Organization API writes end to end: ops 4-8 (values, batch update, import, properties).

Every test writes the (device, datastream) it then reads and asserts only on what it wrote
itself; history checks use a timestamp window owned by the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers import Api, Server, assert_error, not_found, now_ms

VALUES = "/api/v2/organization/device/datastreams"
BATCH = "/api/v1/organization/device/datastreams/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
UPDATES = "/api/v1/organization/device/datastreams"
BATCH_UPDATE = "/api/v1/organization/product/devices/batch-update"
IMPORT = "/api/v1/organization/device/import/batch"
PROPERTY = "/api/v1/organization/device/datastream/property"

MISMATCH = "Value doesn't match the Datastream data type."
COUNTERS = (
    "invalidRowSize",
    "nullDeviceId",
    "nonNumericDeviceId",
    "deviceNotFound",
    "noAccessToDevice",
    "wrongProduct",
)
DAY_MS = 86_400_000
TEMPERATURE, HUMIDITY, STATUS, POSITION, MODE = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def api(server: Server, tokens: dict[str, str]) -> Iterator[Api]:
    """An organization-scoped client, closed when the module is done."""
    client = Api(server.url, tokens["org"])
    yield client
    client.http.close()


def window(n: int) -> int:
    """The start of a one-day window of the past that belongs to one test (a day apart)."""
    return 1_150_000_000_000 + 2 * n * DAY_MS


def current(api: Api, device_id: int, ds_id: int) -> dict[str, object]:
    """The DataStreamValue of one datastream ({} fields beyond naming when never written)."""
    response = api.get(VALUES, deviceId=device_id, dataStreamIds=str(ds_id))
    assert response.status_code == 200, response.text
    [item] = response.json()
    assert item["dataStreamId"] == ds_id
    return dict(item)


def value_of(api: Api, device_id: int, ds_id: int) -> object:
    return current(api, device_id, ds_id).get("value")


def write(api: Api, device_id: int, ds_id: int, value: object) -> None:
    response = api.post(UPDATE, {"deviceId": device_id, "dataStreamId": ds_id, "value": value})
    assert response.status_code == 204, response.text
    assert response.content == b""


def history(api: Api, device_id: int, ds_id: int, start: int, end: int) -> dict[str, object]:
    response = api.get(
        HISTORY, deviceId=device_id, dataStreamId=ds_id, size=1000, **{"from": start, "to": end}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def points(body: dict[str, object]) -> list[tuple[int, object]]:
    content = body["content"]
    assert isinstance(content, list)
    return [(p["createdAt"], p["value"]) for p in content]


def import_body(device_id: int, ds_id: int, pts: list[tuple[int, object]]) -> dict[str, object]:
    return {
        "deviceId": device_id,
        "dataStreamId": ds_id,
        "values": [{"ts": ts, "value": value} for ts, value in pts],
    }


def import_points(api: Api, device_id: int, ds_id: int, pts: list[tuple[int, object]]) -> None:
    response = api.post(IMPORT, import_body(device_id, ds_id, pts))
    assert response.status_code == 204, response.text


def batch_update(
    api: Api, fields: list[str], updates: list[object], **extra: object
) -> httpx.Response:
    return api.post(BATCH_UPDATE, {"fields": fields, "updates": updates, **extra})


# --- op 4: update one value ---------------------------------------------------------------


def test_update_value_sets_current_value_and_appends_history(api: Api) -> None:
    before = now_ms()
    write(api, 105, TEMPERATURE, 21.25)
    after = now_ms()

    item = current(api, 105, TEMPERATURE)
    assert item["value"] == 21.25
    assert isinstance(item["updatedAt"], int) and before <= item["updatedAt"] <= after
    assert points(history(api, 105, TEMPERATURE, before, after)) == [(item["updatedAt"], 21.25)]


def test_whole_numbers_written_as_floats_are_integers(api: Api) -> None:
    """As in JSON Schema 2020-12, the document's dialect: 105.0 and 1.05e2 are the integer 105."""
    response = api.raw(UPDATE, b'{"deviceId": 1.05e2, "dataStreamId": 3.0, "value": "whole"}')
    assert response.status_code == 204, response.text
    assert value_of(api, 105, STATUS) == "whole"
    start = window(13)
    body = {"deviceId": 108.0, "dataStreamId": 2.0, "values": [{"ts": float(start), "value": 7}]}
    response = api.post(IMPORT, body)
    assert response.status_code == 204, response.text
    assert points(history(api, 108, HUMIDITY, start, start + DAY_MS)) == [(start, 7)]


@pytest.mark.parametrize(
    ("ds_id", "sent", "stored"),
    [
        (TEMPERATURE, 1000, 85.0),
        (TEMPERATURE, 85.5, 85.0),
        (TEMPERATURE, -1000.5, -40.0),
        (TEMPERATURE, 10**30, 85.0),
        (HUMIDITY, 150, 100),
        (HUMIDITY, -5, 0),
        (HUMIDITY, 2147483647, 100),
    ],
    ids=["above-max", "just-above-max", "below-min", "huge-int", "int-above", "int-below", "int32"],
)
def test_values_are_clamped_to_min_and_max(
    api: Api, ds_id: int, sent: object, stored: object
) -> None:
    before = now_ms()
    write(api, 105, ds_id, sent)
    after = now_ms()
    assert value_of(api, 105, ds_id) == stored
    assert [v for _, v in points(history(api, 105, ds_id, before, after))] == [stored]


@pytest.mark.parametrize(
    ("ds_id", "sent", "stored"),
    [
        (TEMPERATURE, 22.123456789012, 22.123456789012),
        (TEMPERATURE, "22.5", 22.5),
        (TEMPERATURE, -7, -7),
        (HUMIDITY, "42", 42),
        (HUMIDITY, 5.0, 5),
        (HUMIDITY, 0, 0),
        (STATUS, 'Ünïcødé ✓ "quoted"', 'Ünïcødé ✓ "quoted"'),
        (STATUS, "", ""),
        (STATUS, "x" * 1024, "x" * 1024),
        (STATUS, "42", "42"),
        (POSITION, [13.38886, 52.517037], [13.38886, 52.517037]),
        (POSITION, [-180, -90], [-180, -90]),
        (POSITION, [180, 90], [180, 90]),
        (MODE, 0, 0),
        (MODE, 2, 2),
    ],
    ids=[
        "double-full-precision",
        "double-from-string",
        "double-from-integer",
        "integer-from-string",
        "integer-from-whole-float",
        "integer-zero",
        "string-unicode",
        "string-empty",
        "string-1024",
        "string-of-digits",
        "location",
        "location-low-corner",
        "location-high-corner",
        "enum-first",
        "enum-last",
    ],
)
def test_update_value_round_trip(api: Api, ds_id: int, sent: object, stored: object) -> None:
    write(api, 106, ds_id, sent)
    got = value_of(api, 106, ds_id)
    assert got == stored
    if ds_id in (HUMIDITY, MODE):
        assert isinstance(got, int)  # integers and enums come back as JSON integers
    if ds_id == STATUS:
        assert isinstance(got, str)


@pytest.mark.parametrize(
    ("ds_id", "sent"),
    [
        (HUMIDITY, 22.7),
        (HUMIDITY, "22.7"),
        (HUMIDITY, "abc"),
        (HUMIDITY, 2147483648),
        (HUMIDITY, True),
        (TEMPERATURE, "abc"),
        (TEMPERATURE, "NaN"),
        (TEMPERATURE, "Infinity"),
        (TEMPERATURE, True),
        (TEMPERATURE, None),
        (TEMPERATURE, [1, 2]),
        (TEMPERATURE, {"value": 1}),
        (STATUS, 5),
        (STATUS, None),
        (STATUS, ["a"]),
        (STATUS, "x" * 1025),
        (POSITION, [52.517037, 181]),
        (POSITION, [181, 0]),
        (POSITION, [0, 91]),
        (POSITION, [1]),
        (POSITION, [1, 2, 3]),
        (POSITION, "13.4,52.5"),
        (POSITION, [True, False]),
        (MODE, 3),
        (MODE, -1),
        (MODE, 1.5),
        (MODE, "Eco"),
    ],
    ids=[
        "integer-fraction",
        "integer-fraction-string",
        "integer-text",
        "integer-beyond-int32",
        "integer-bool",
        "double-text",
        "double-nan-string",
        "double-infinity-string",
        "double-bool",
        "double-null",
        "double-array",
        "double-object",
        "string-number",
        "string-null",
        "string-array",
        "string-1025",
        "location-lat-first",
        "location-lon-range",
        "location-lat-range",
        "location-one",
        "location-three",
        "location-text",
        "location-bools",
        "enum-not-an-option",
        "enum-negative",
        "enum-fraction",
        "enum-label",
    ],
)
def test_mismatched_value_is_400_and_changes_nothing(api: Api, ds_id: int, sent: object) -> None:
    before = current(api, 107, ds_id)
    response = api.post(UPDATE, {"deviceId": 107, "dataStreamId": ds_id, "value": sent})
    assert_error(response, 400, MISMATCH)
    assert current(api, 107, ds_id) == before


def test_integer_22_7_is_rejected_with_blynks_message(api: Api) -> None:
    write(api, 107, HUMIDITY, 22)
    response = api.post(UPDATE, {"deviceId": 107, "dataStreamId": HUMIDITY, "value": 22.7})
    assert_error(response, 400, "Value doesn't match the Datastream data type.")
    assert value_of(api, 107, HUMIDITY) == 22


def test_update_value_of_an_unknown_datastream_is_404(api: Api) -> None:
    response = api.post(UPDATE, {"deviceId": 107, "dataStreamId": 9, "value": 1})
    assert "9" in assert_error(response, 404)
    # The pump (product 20) has no datastream 3.
    response = api.post(UPDATE, {"deviceId": 104, "dataStreamId": 3, "value": "x"})
    assert_error(response, 404)


@pytest.mark.parametrize("device_id", [999, 201])
def test_update_value_of_an_unknown_device_is_404(api: Api, device_id: int) -> None:
    response = api.post(UPDATE, {"deviceId": device_id, "dataStreamId": 1, "value": 1})
    assert_error(response, 404, not_found(device_id))


# --- op 5: update several values of one device ---------------------------------------------


def test_update_values_applies_every_value(api: Api) -> None:
    values = {"1": 12.5, "2": 55, "3": "op5 all", "4": [2.35, 48.85], "5": 1}
    before = now_ms()
    response = api.post(UPDATES, {"deviceId": 108, "values": values})
    assert response.status_code == 204, response.text
    after = now_ms()

    items = api.get(VALUES, deviceId=108).json()
    assert {str(i["dataStreamId"]): i["value"] for i in items} == values
    assert all(before <= i["updatedAt"] <= after for i in items)
    assert [v for _, v in points(history(api, 108, STATUS, before, after))] == ["op5 all"]


def test_update_values_skips_unknown_ids_and_mismatched_values(api: Api) -> None:
    write(api, 108, HUMIDITY, 33)
    write(api, 108, MODE, 0)
    values = {
        "1": 999,  # clamped to 85
        "2": 22.7,  # mismatched: skipped
        "3": "op5 partial",
        "5": 7,  # not an option: skipped
        "99": 1,  # unknown datastream: skipped
        "abc": 2,  # not an id: skipped
        "-1": 3,
    }
    response = api.post(UPDATES, {"deviceId": 108, "values": values})
    assert response.status_code == 204, response.text
    assert value_of(api, 108, TEMPERATURE) == 85.0
    assert value_of(api, 108, HUMIDITY) == 33
    assert value_of(api, 108, STATUS) == "op5 partial"
    assert value_of(api, 108, MODE) == 0


def test_update_values_with_nothing_applicable_is_204_and_changes_nothing(api: Api) -> None:
    before = api.get(VALUES, deviceId=108).json()
    for values in ({}, {"99": 1}, {"2": "not a number", "3": 5}):
        response = api.post(UPDATES, {"deviceId": 108, "values": values})
        assert response.status_code == 204, response.text
    assert api.get(VALUES, deviceId=108).json() == before


@pytest.mark.parametrize(
    "body",
    [
        {"deviceId": 108},
        {"deviceId": 108, "values": None},
        {"deviceId": 108, "values": [1, 2]},
        {"deviceId": 108, "values": "1=2"},
        {"deviceId": 108, "values": 5},
        {"values": {"3": "no device"}},
    ],
    ids=[
        "values-missing",
        "values-null",
        "values-array",
        "values-string",
        "values-number",
        "no-device",
    ],
)
def test_update_values_needs_a_values_object(api: Api, body: dict[str, object]) -> None:
    before = api.get(VALUES, deviceId=108).json()
    assert_error(api.post(UPDATES, body), 400)
    assert api.get(VALUES, deviceId=108).json() == before


@pytest.mark.parametrize("device_id", [999, 201])
def test_update_values_of_an_unknown_device_is_404(api: Api, device_id: int) -> None:
    response = api.post(UPDATES, {"deviceId": device_id, "values": {"1": 1}})
    assert_error(response, 404, not_found(device_id))


# --- op 6: batch update -------------------------------------------------------------------


def assert_counters(response: httpx.Response, **expected: int) -> dict[str, object]:
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert {k: body.get(k) for k in COUNTERS} == {k: expected.get(k, 0) for k in COUNTERS}
    return body


def test_batch_update_with_every_row_applied_is_204(api: Api) -> None:
    fields = ["deviceId", "Temperature", "Humidity", "Status", "Position", "Mode"]
    updates = [
        [105, 10.5, 11, "batch 105", [1.5, 2.5], 1],
        [106, 12.5, 13, "batch 106", [3.5, 4.5], 2],
    ]
    before = now_ms()
    response = batch_update(api, fields, updates)
    assert response.status_code == 204, response.text
    assert response.content == b""
    after = now_ms()

    got = api.get(BATCH, deviceIds="105,106").json()
    for row, device in zip(updates, got, strict=True):
        assert device["deviceId"] == row[0]
        assert [v["value"] for v in device["dataStreamValues"]] == row[1:]
    assert [v for _, v in points(history(api, 106, STATUS, before, after))] == ["batch 106"]


def test_batch_update_labels_in_any_order(api: Api) -> None:
    response = batch_update(api, ["deviceId", "Status", "Temperature"], [[110, "ordered", 30.5]])
    assert response.status_code == 204, response.text
    assert value_of(api, 110, STATUS) == "ordered"
    assert value_of(api, 110, TEMPERATURE) == 30.5


def test_batch_update_accepts_variants_of_the_product(api: Api) -> None:
    fields = ["deviceId", "Status"]
    updates = [[108, "variant first"], [105, "root after variant"], [102, "variant 102"]]
    response = batch_update(api, fields, updates)
    assert response.status_code == 204, response.text
    assert value_of(api, 108, STATUS) == "variant first"
    assert value_of(api, 105, STATUS) == "root after variant"
    assert value_of(api, 102, STATUS) == "variant 102"


def test_batch_update_counts_every_kind_of_skipped_row(api: Api) -> None:
    write(api, 104, 2, 17)
    updates = [
        [107, 1.5],  # row 0: applied
        [999, 2.5],  # row 1: no such device
        [None, 3.5],  # row 2: null device id
        ["abc", 4.5],  # row 3: not numeric
        [107],  # row 4: wrong size
        [104, 5.5],  # row 5: the pump: another product family
        [201, 6.5],  # row 6: Globex's device: not found in this organization
        "not a row",  # row 7: wrong size
        [True, 7.5],  # row 8: not numeric
    ]
    body = assert_counters(
        batch_update(api, ["deviceId", "Temperature"], updates),
        invalidRowSize=2,
        nullDeviceId=1,
        nonNumericDeviceId=2,
        deviceNotFound=2,
        wrongProduct=1,
    )
    assert "skippedRows" not in body
    assert value_of(api, 107, TEMPERATURE) == 1.5
    assert value_of(api, 104, 2) == 17


def test_batch_update_all_counters_present_when_one_row_skipped(api: Api) -> None:
    response = batch_update(api, ["deviceId", "Humidity"], [[107, 61], [424242, 62]])
    assert_counters(response, deviceNotFound=1)
    assert value_of(api, 107, HUMIDITY) == 61


def test_batch_update_debug_names_skipped_rows_from_zero(api: Api) -> None:
    updates = [[999, 1], [107, 2], [None, 3], [104, 4], [107, 5, 6]]
    response = batch_update(api, ["deviceId", "Humidity"], updates, debug=True)
    assert response.status_code == 200, response.text
    reasons = response.json()["skippedRows"]
    assert isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)
    assert [r.split(":")[0] for r in reasons] == ["row 0", "row 2", "row 3", "row 4"]
    assert "999" in reasons[0]
    assert "104" in reasons[2]
    assert value_of(api, 107, HUMIDITY) == 2


def test_batch_update_debug_lists_at_most_100_reasons(api: Api) -> None:
    updates: list[object] = [[107, "kept"]] + [[1000 + i, "lost"] for i in range(150)]
    response = batch_update(api, ["deviceId", "Status"], updates, debug=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["skippedRows"]) == 100
    assert body["skippedRows"][0].startswith("row 1:")
    if "deviceNotFound" in body:
        assert body["deviceNotFound"] == 150
    assert value_of(api, 107, STATUS) == "kept"


def test_batch_update_product_comes_from_the_first_valid_row(api: Api) -> None:
    # The pump (product 20) comes first, so the Weather Station is the wrong product.
    write(api, 110, HUMIDITY, 12)
    write(api, 110, TEMPERATURE, 8.5)
    response = batch_update(api, ["deviceId", "Temperature"], [[999, 1], [104, 30], [110, 31]])
    assert_counters(response, deviceNotFound=1, wrongProduct=1)
    assert value_of(api, 104, 2) == 30  # the pump's "Temperature" is its datastream 2
    assert value_of(api, 110, HUMIDITY) == 12
    assert value_of(api, 110, TEMPERATURE) == 8.5


def test_batch_update_null_cells_leave_values_unchanged(api: Api) -> None:
    fields = ["deviceId", "Temperature", "Humidity", "Status"]
    first = batch_update(api, fields, [[107, 5.5, 6, "before nulls"]])
    assert first.status_code == 204, first.text
    kept = current(api, 107, TEMPERATURE)

    second = batch_update(api, fields, [[107, None, 7, None]])
    assert second.status_code == 204, second.text
    assert current(api, 107, TEMPERATURE) == kept  # value and updatedAt untouched
    assert value_of(api, 107, HUMIDITY) == 7
    assert value_of(api, 107, STATUS) == "before nulls"


def test_batch_update_skips_mismatched_cells_silently(api: Api) -> None:
    fields = ["deviceId", "Temperature", "Humidity"]
    assert batch_update(api, fields, [[110, 5.0, 9]]).status_code == 204
    response = batch_update(api, fields, [[110, "warm", 10], [105, 6.0, 22.7]])
    assert response.status_code == 204, response.text
    assert value_of(api, 110, TEMPERATURE) == 5.0
    assert value_of(api, 110, HUMIDITY) == 10
    assert value_of(api, 105, TEMPERATURE) == 6.0


def test_batch_update_clamps_values(api: Api) -> None:
    response = batch_update(api, ["deviceId", "Temperature", "Humidity"], [[110, 500, -3]])
    assert response.status_code == 204, response.text
    assert value_of(api, 110, TEMPERATURE) == 85.0
    assert value_of(api, 110, HUMIDITY) == 0


def test_batch_update_accepts_numeric_device_id_text(api: Api) -> None:
    response = batch_update(api, ["deviceId", "Status"], [["110", "id as text"]])
    assert response.status_code == 204, response.text
    assert value_of(api, 110, STATUS) == "id as text"


@pytest.mark.parametrize(
    "updates",
    [[], [[999, 1]], [[None, 1], ["x", 1], [105]], [[201, 1]], [[0, 1], [-5, 1]]],
    ids=["empty", "unknown", "all-malformed", "other-organization", "non-positive"],
)
def test_batch_update_without_a_valid_device_is_400(api: Api, updates: list[object]) -> None:
    assert_error(batch_update(api, ["deviceId", "Temperature"], updates), 400)


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        (["deviceId", "Nope"], "Nope"),
        (["deviceId", "Temperature", "Flow"], "Flow"),
        (["deviceId", "temperature"], "temperature"),
        (["deviceId", "Temperature", "Temperature"], "Temperature"),
        (["deviceId", "deviceId"], "deviceId"),
        (["Temperature", "deviceId"], "deviceId"),
        (["deviceId"], "fields"),
        ([], "fields"),
    ],
    ids=[
        "unknown-label",
        "label-of-another-product",
        "label-case",
        "duplicated-label",
        "duplicated-device-id",
        "device-id-not-first",
        "no-label",
        "empty",
    ],
)
def test_batch_update_rejects_bad_fields(api: Api, fields: list[str], mentions: str) -> None:
    before = api.get(VALUES, deviceId=110).json()
    row = [110, *([1.0] * (len(fields) - 1))] if fields else [110]
    message = assert_error(batch_update(api, fields, [row]), 400)
    assert mentions in message
    assert api.get(VALUES, deviceId=110).json() == before


def test_batch_update_over_10000_rows_is_400_and_writes_nothing(api: Api) -> None:
    before = api.get(VALUES, deviceId=110).json()
    updates = [[110, f"row {i}"] for i in range(10_001)]
    assert_error(batch_update(api, ["deviceId", "Status"], updates), 400)
    assert api.get(VALUES, deviceId=110).json() == before


def test_batch_update_of_10000_rows_succeeds(api: Api) -> None:
    devices = [105, 106, 107, 108, 110]
    updates = [[devices[i % 5], f"bulk {devices[i % 5]}", i % 101] for i in range(10_000)]
    # Every row of one device carries the same status, so the outcome is order-independent.
    response = batch_update(api, ["deviceId", "Status", "Humidity"], updates)
    assert response.status_code == 204, response.text
    got = api.get(BATCH, deviceIds=",".join(map(str, devices)), dataStreamIds="3").json()
    assert [d["dataStreamValues"][0]["value"] for d in got] == [f"bulk {d}" for d in devices]


# --- op 7: import historical data ------------------------------------------------------------


def test_import_lands_in_history(api: Api) -> None:
    start = window(1)
    pts: list[tuple[int, object]] = [(start + 1000, 5), (start + 2000, 2), (start + 500, 9)]
    response = api.post(IMPORT, import_body(108, HUMIDITY, pts))
    assert response.status_code == 204, response.text
    assert response.content == b""
    body = history(api, 108, HUMIDITY, start, start + DAY_MS)
    assert body["totalElements"] == 3
    assert points(body) == [(start + 2000, 2), (start + 1000, 5), (start + 500, 9)]


def test_import_clamps_and_converts_values(api: Api) -> None:
    start = window(2)
    import_points(api, 108, TEMPERATURE, [(start, 1000), (start + 1, "-99.5"), (start + 2, 7)])
    assert points(history(api, 108, TEMPERATURE, start, start + DAY_MS)) == [
        (start + 2, 7.0),
        (start + 1, -40.0),
        (start, 85.0),
    ]


def test_import_of_older_points_keeps_the_current_value(api: Api) -> None:
    write(api, 110, HUMIDITY, 40)
    live = current(api, 110, HUMIDITY)
    import_points(api, 110, HUMIDITY, [(window(3), 1), (window(3) + 1, 2)])
    assert current(api, 110, HUMIDITY) == live


def test_import_of_a_newer_point_becomes_the_current_value(api: Api) -> None:
    write(api, 110, HUMIDITY, 41)
    live = current(api, 110, HUMIDITY)
    newest = now_ms() + 1
    assert isinstance(live["updatedAt"], int) and newest > live["updatedAt"]
    import_points(api, 110, HUMIDITY, [(window(4), 3), (newest, 77), (newest - 1, 76)])
    assert current(api, 110, HUMIDITY) == {**live, "value": 77, "updatedAt": newest}


def test_import_into_a_datastream_never_written_sets_the_current_value(api: Api) -> None:
    # Datastream 4 of device 109 (the importer's) is not written by any other test.
    stamp = window(5)
    import_points(api, 109, POSITION, [(stamp, [10.0, 20.0]), (stamp + 1, [11.0, 21.0])])
    item = current(api, 109, POSITION)
    assert (item["value"], item["updatedAt"]) == ([11.0, 21.0], stamp + 1)


def test_importing_the_same_data_twice_does_not_duplicate(api: Api) -> None:
    start = window(6)
    pts: list[tuple[int, object]] = [(start + i * 1000, float(i)) for i in range(5)]
    import_points(api, 108, TEMPERATURE, pts)
    first = history(api, 108, TEMPERATURE, start, start + DAY_MS)
    import_points(api, 108, TEMPERATURE, pts)
    assert history(api, 108, TEMPERATURE, start, start + DAY_MS) == first
    assert first["totalElements"] == 5


def test_a_later_import_at_the_same_timestamp_wins(api: Api) -> None:
    stamp = window(7)
    import_points(api, 108, STATUS, [(stamp, "first")])
    import_points(api, 108, STATUS, [(stamp, "second")])
    assert points(history(api, 108, STATUS, stamp, stamp)) == [(stamp, "second")]


def test_import_skips_points_more_than_a_month_ahead(api: Api) -> None:
    now = now_ms()
    past = window(8)
    soon = now + 20 * DAY_MS
    far = now + 40 * DAY_MS
    response = api.post(
        IMPORT,
        import_body(105, POSITION, [(past, [1.0, 1.0]), (far, [3.0, 3.0]), (soon, [2.0, 2.0])]),
    )
    assert response.status_code == 204, response.text
    assert points(history(api, 105, POSITION, past, past)) == [(past, [1.0, 1.0])]
    assert points(history(api, 105, POSITION, soon, soon)) == [(soon, [2.0, 2.0])]
    assert history(api, 105, POSITION, now + 35 * DAY_MS, now + 60 * DAY_MS)["totalElements"] == 0
    item = current(api, 105, POSITION)
    assert (item["value"], item["updatedAt"]) == ([2.0, 2.0], soon)


def test_import_of_only_far_future_points_is_204_and_stores_nothing(api: Api) -> None:
    before = current(api, 105, MODE)
    far = now_ms() + 45 * DAY_MS
    import_points(api, 105, MODE, [(far, 1), (far + 1, 2)])
    assert current(api, 105, MODE) == before


@pytest.mark.parametrize(
    "bad_point",
    [
        {"ts": 0, "value": "warm"},
        {"ts": 0, "value": None},
        {"ts": 1.5, "value": 1},
        {"ts": "1150000000000", "value": 1},
        {"value": 1},
        {"ts": 0},
        {"ts": None, "value": 1},
        {"ts": 2**63, "value": 1},
    ],
    ids=[
        "mismatched-value",
        "null-value",
        "fractional-ts",
        "string-ts",
        "missing-ts",
        "missing-value",
        "null-ts",
        "ts-beyond-int64",
    ],
)
def test_a_bad_point_rejects_the_whole_import(api: Api, bad_point: dict[str, object]) -> None:
    start = window(9)
    if bad_point.get("ts") == 0:
        bad_point = {**bad_point, "ts": start + 2}
    body = import_body(107, TEMPERATURE, [(start, 1.0), (start + 1, 2.0)])
    body["values"].append(bad_point)  # type: ignore[attr-defined]
    body["values"].append({"ts": start + 3, "value": 4.0})  # type: ignore[attr-defined]
    before = current(api, 107, TEMPERATURE)

    message = assert_error(api.post(IMPORT, body), 400)
    assert "values[2]" in message
    assert history(api, 107, TEMPERATURE, start, start + DAY_MS)["totalElements"] == 0
    assert current(api, 107, TEMPERATURE) == before


def test_import_names_the_first_bad_index(api: Api) -> None:
    start = window(10)
    pts: list[tuple[int, object]] = [(start, 1), (start + 1, "bad"), (start + 2, "worse")]
    message = assert_error(api.post(IMPORT, import_body(107, HUMIDITY, pts)), 400)
    assert "values[1]" in message
    assert "values[2]" not in message


@pytest.mark.parametrize("count", [0, 10_001])
def test_import_point_count_limits(api: Api, count: int) -> None:
    start = window(11)
    pts: list[tuple[int, object]] = [(start + i, 1) for i in range(count)]
    assert_error(api.post(IMPORT, import_body(110, HUMIDITY, pts)), 400)
    assert history(api, 110, HUMIDITY, start, start + DAY_MS)["totalElements"] == 0


def test_import_of_10000_points_succeeds(api: Api) -> None:
    start = window(12)
    import_points(api, 110, TEMPERATURE, [(start + i, i / 10) for i in range(10_000)])
    assert history(api, 110, TEMPERATURE, start, start + DAY_MS)["totalElements"] == 10_000


@pytest.mark.parametrize(
    "body",
    [
        {"deviceId": 999, "dataStreamId": 1, "values": [{"ts": 1, "value": 1}]},
        {"deviceId": 201, "dataStreamId": 1, "values": [{"ts": 1, "value": 1}]},
        {"deviceId": 110, "dataStreamId": 9, "values": [{"ts": 1, "value": 1}]},
    ],
    ids=["unknown-device", "other-organization", "unknown-datastream"],
)
def test_import_into_unknown_targets_is_404(api: Api, body: dict[str, object]) -> None:
    message = assert_error(api.post(IMPORT, body), 404)
    if body["dataStreamId"] == 1:
        assert message == not_found(body["deviceId"])  # type: ignore[arg-type]


# --- op 8: widget properties ----------------------------------------------------------------


def properties_of(api: Api, device_id: int, ds_id: int) -> dict[str, str]:
    response = api.get(PROPERTIES, deviceId=device_id, dataStreamIds=str(ds_id))
    assert response.status_code == 200, response.text
    [item] = response.json()
    found: dict[str, str] = item["properties"]
    return found


def set_property(api: Api, device_id: int, ds_id: int, name: str, value: object) -> httpx.Response:
    body = {"deviceId": device_id, "dataStreamId": ds_id, "property": name, "value": value}
    return api.post(PROPERTY, body)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("label", "Roof temperature"),
        ("onLabel", "ON"),
        ("offLabel", ""),
        ("suffix", "°C"),
        ("valueFormatting", "{value} units"),
        ("color", "#FF0000"),
        ("onColor", "#00FF00AA"),
        ("offColor", "red"),
        ("onBackColor", "#123456"),
        ("offBackColor", "#ABCDEF12"),
        ("isDisabled", "true"),
        ("isHidden", "false"),
        ("isOnPlay", "true"),
        ("isMuted", "false"),
        ("min", "-10.5"),
        ("max", "100"),
        ("step", "0.5"),
        ("maximumFractionDigits", "0"),
        ("maximumFractionDigits", "10"),
        ("opacity", "0"),
        ("scale", "100"),
        ("rotation", "360"),
        ("url", "https://example.com/path?q=1"),
        ("url", "http://example.com"),
        ("labels", '["low", "high"]'),
        ("urls", '["https://a.example", "http://b.example/x"]'),
        ("label", "x" * 200),
    ],
)
def test_property_update_is_stored_and_read_back(api: Api, name: str, value: str) -> None:
    response = set_property(api, 105, TEMPERATURE, name, value)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert properties_of(api, 105, TEMPERATURE)[name] == value


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("color", "FF0000", "#FF0000"),
        ("onColor", "#00ff00aa", "#00FF00AA"),
        ("offColor", "RED", "red"),
        ("isHidden", "True", "true"),
        ("isDisabled", "1", "true"),
        ("isMuted", "0", "false"),
    ],
)
def test_lenient_property_forms_are_stored_in_one_form(
    api: Api, name: str, value: str, stored: str
) -> None:
    assert set_property(api, 105, TEMPERATURE, name, value).status_code == 204
    assert properties_of(api, 105, TEMPERATURE)[name] == stored


def test_property_update_overwrites_and_keeps_other_properties(api: Api) -> None:
    assert set_property(api, 106, STATUS, "color", "#111111").status_code == 204
    assert set_property(api, 106, STATUS, "label", "Status label").status_code == 204
    assert set_property(api, 106, STATUS, "color", "#222222").status_code == 204
    found = properties_of(api, 106, STATUS)
    assert found["color"] == "#222222"
    assert found["label"] == "Status label"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("colour", "#FF0000"),
        ("Color", "#FF0000"),
        ("", "x"),
        ("color", "#FF00"),
        ("color", "#GG0000"),
        ("color", "GG0000"),
        ("color", "not-a-colour"),
        ("isHidden", "yes"),
        ("isHidden", "2"),
        ("min", "abc"),
        ("min", "NaN"),
        ("max", "inf"),
        ("step", "1e400"),
        ("maximumFractionDigits", "11"),
        ("maximumFractionDigits", "-1"),
        ("maximumFractionDigits", "2.5"),
        ("opacity", "101"),
        ("opacity", "-1"),
        ("scale", "100.5"),
        ("rotation", "361"),
        ("rotation", "-0.5"),
        ("url", "ftp://example.com"),
        ("url", "javascript:alert(1)"),
        ("url", "example.com"),
        ("labels", "low,high"),
        ("labels", "[1, 2]"),
        ("labels", '{"a": "b"}'),
        ("urls", '["javascript:alert(1)"]'),
        ("label", "x" * 201),
        ("label", 5),
        ("label", None),
        ("label", ["a"]),
    ],
)
def test_bad_property_update_is_400_and_changes_nothing(api: Api, name: str, value: object) -> None:
    assert set_property(api, 106, TEMPERATURE, "label", "kept").status_code == 204
    assert set_property(api, 106, TEMPERATURE, "color", "#010203").status_code == 204
    before = properties_of(api, 106, TEMPERATURE)
    assert_error(set_property(api, 106, TEMPERATURE, name, value), 400)
    assert properties_of(api, 106, TEMPERATURE) == before


def test_unknown_property_message_names_it(api: Api) -> None:
    message = assert_error(set_property(api, 106, TEMPERATURE, "sparkle", "yes"), 400)
    assert "sparkle" in message


@pytest.mark.parametrize(
    ("device_id", "ds_id"),
    [(999, 1), (201, 1), (106, 9)],
    ids=["unknown-device", "other-organization", "unknown-datastream"],
)
def test_property_of_unknown_targets_is_404(api: Api, device_id: int, ds_id: int) -> None:
    message = assert_error(set_property(api, device_id, ds_id, "color", "#FFFFFF"), 404)
    if ds_id == 1:
        assert message == not_found(device_id)
