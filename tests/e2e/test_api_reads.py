"""Organization API reads end to end: current values (ops 1, 2), history (op 3), properties.

History tests import their points with explicit timestamps in a window of their own (a past
range no other test uses), so they never depend on other tests' writes or on the clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import Api, Server, assert_error, not_found, now_ms

VALUES = "/api/v2/organization/device/datastreams"
BATCH = "/api/v1/organization/device/datastreams/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
IMPORT = "/api/v1/organization/device/import/batch"
PROPERTY = "/api/v1/organization/device/datastream/property"

WEATHER_STATION = [
    {"dataStreamId": 1, "pin": "v1", "dataStreamLabel": "Temperature"},
    {"dataStreamId": 2, "pin": "v2", "dataStreamLabel": "Humidity"},
    {"dataStreamId": 3, "pin": "v3", "dataStreamLabel": "Status"},
    {"dataStreamId": 4, "pin": "v4", "dataStreamLabel": "Position"},
    {"dataStreamId": 5, "pin": "v5", "dataStreamLabel": "Mode"},
]
ALIASES = {1: "Air temperature", 2: "Humidity", 3: "Status", 4: "Position", 5: "Mode"}
NAMING_KEYS = {"dataStreamId", "pin", "dataStreamLabel", "dataStreamAlias"}
NEVER_WRITTEN_DEVICE = 103  # owned by other@; no test writes to it
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def api(server: Server, tokens: dict[str, str]) -> Iterator[Api]:
    """An organization-scoped client, closed when the module is done."""
    client = Api(server.url, tokens["org"])
    yield client
    client.http.close()


def history(api: Api, device_id: int, start: int, end: int, **params: object) -> dict[str, object]:
    query = {"deviceId": device_id, "from": start, "to": end, **params}
    if "pin" not in query:
        query.setdefault("dataStreamId", 1)
    response = api.get(HISTORY, **query)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def import_points(api: Api, device_id: int, ds_id: int, points: list[tuple[int, object]]) -> None:
    body = {
        "deviceId": device_id,
        "dataStreamId": ds_id,
        "values": [{"ts": ts, "value": value} for ts, value in points],
    }
    response = api.post(IMPORT, body)
    assert response.status_code == 204, response.text


def ids_of(items: list[dict[str, object]]) -> list[object]:
    return [item["dataStreamId"] for item in items]


# --- op 1: current values of one device ----------------------------------------------------


def test_device_values_list_every_datastream_in_id_order(api: Api) -> None:
    response = api.get(VALUES, deviceId=NEVER_WRITTEN_DEVICE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    items = response.json()
    assert [{k: v for k, v in i.items() if k != "dataStreamAlias"} for i in items] == (
        WEATHER_STATION
    )
    assert {i["dataStreamId"]: i["dataStreamAlias"] for i in items} == ALIASES


def test_value_and_updated_at_are_absent_before_the_first_write(api: Api) -> None:
    items = api.get(VALUES, deviceId=NEVER_WRITTEN_DEVICE).json()
    for item in items:
        assert set(item) == NAMING_KEYS, item


def test_device_value_shape_after_a_write(api: Api) -> None:
    before = now_ms()
    written = api.post(UPDATE, {"deviceId": 110, "dataStreamId": 1, "value": 17.25})
    assert written.status_code == 204, written.text
    after = now_ms()

    items = api.get(VALUES, deviceId=110).json()
    assert ids_of(items) == [1, 2, 3, 4, 5]
    temperature = items[0]
    assert set(temperature) == NAMING_KEYS | {"value", "updatedAt"}
    assert temperature["dataStreamId"] == 1
    assert temperature["pin"] == "v1"
    assert temperature["dataStreamLabel"] == "Temperature"
    assert temperature["dataStreamAlias"] == "Air temperature"
    assert temperature["value"] == 17.25
    assert isinstance(temperature["updatedAt"], int)
    assert before <= temperature["updatedAt"] <= after


def test_values_of_every_type_come_back_as_json_values(api: Api) -> None:
    values = {1: 3.5, 2: 42, 3: "reading ok", 4: [13.38886, 52.517037], 5: 2}
    body = {"deviceId": 110, "values": {str(k): v for k, v in values.items()}}
    assert api.post("/api/v1/organization/device/datastreams", body).status_code == 204

    items = api.get(VALUES, deviceId=110).json()
    assert {i["dataStreamId"]: i["value"] for i in items} == values
    assert isinstance(items[1]["value"], int)  # integer stays a JSON integer
    assert isinstance(items[4]["value"], int)  # enum is returned as a number


@pytest.mark.parametrize(
    "params",
    [
        {"dataStreamIds": "1,3"},
        {"dataStreamIds": ["1", "3"]},
        {"dataStreamIds": ["3", "1"]},
        {"dataStreamIds": "3, 1,1"},
    ],
    ids=["comma-separated", "repeated-keys", "reversed", "spaces-and-duplicates"],
)
def test_device_values_filtered_by_datastream_ids(api: Api, params: dict[str, object]) -> None:
    response = api.get(VALUES, deviceId=NEVER_WRITTEN_DEVICE, **params)
    assert response.status_code == 200, response.text
    assert ids_of(response.json()) == [1, 3]


def test_unknown_ids_in_the_filter_are_ignored(api: Api) -> None:
    response = api.get(VALUES, deviceId=NEVER_WRITTEN_DEVICE, dataStreamIds="99,2,-4,0")
    assert response.status_code == 200, response.text
    assert ids_of(response.json()) == [2]


def test_device_values_of_another_product(api: Api) -> None:
    items = api.get(VALUES, deviceId=104).json()
    assert [(i["dataStreamId"], i["dataStreamLabel"]) for i in items] == [
        (1, "Flow"),
        (2, "Temperature"),
    ]


def test_variant_device_has_its_root_products_datastreams(api: Api) -> None:
    items = api.get(VALUES, deviceId=102).json()
    assert ids_of(items) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "params",
    [{}, {"deviceId": ""}, {"deviceId": "abc"}, {"deviceId": "1.5"}, {"deviceId": "2147483648"}],
    ids=["missing", "empty", "text", "fraction", "beyond-int32"],
)
def test_device_values_need_a_valid_device_id(api: Api, params: dict[str, object]) -> None:
    assert_error(api.get(VALUES, **params), 400)


@pytest.mark.parametrize("device_id", [999, 0, -1, 201, 2147483647])
def test_device_values_of_an_unknown_device_are_404(api: Api, device_id: int) -> None:
    assert_error(api.get(VALUES, deviceId=device_id), 404, not_found(device_id))


# --- op 2: current values of up to 10 devices ---------------------------------------------


def batch(api: Api, **params: object) -> list[dict[str, object]]:
    response = api.get(BATCH, **params)
    assert response.status_code == 200, response.text
    body: list[dict[str, object]] = response.json()
    return body


def test_batch_values_come_in_request_order(api: Api) -> None:
    body = batch(api, deviceIds="107,103,104,105")
    assert [d["deviceId"] for d in body] == [107, 103, 104, 105]
    for entry in body:
        assert set(entry) == {"deviceId", "dataStreamValues"}
    by_device = {d["deviceId"]: d["dataStreamValues"] for d in body}
    assert ids_of(by_device[104]) == [1, 2]  # type: ignore[arg-type]
    assert ids_of(by_device[103]) == [1, 2, 3, 4, 5]  # type: ignore[arg-type]


def test_batch_values_accept_repeated_keys(api: Api) -> None:
    body = batch(api, deviceIds=["106", "105"])
    assert [d["deviceId"] for d in body] == [106, 105]


def test_batch_values_match_single_device_values(api: Api) -> None:
    body = {"deviceId": 107, "dataStreamId": 3, "value": "twin"}
    assert api.post(UPDATE, body).status_code == 204
    single = api.get(VALUES, deviceId=107).json()
    assert batch(api, deviceIds="107")[0]["dataStreamValues"] == single


def test_batch_duplicate_ids_count_once(api: Api) -> None:
    body = batch(api, deviceIds="105,106,105,105")
    assert [d["deviceId"] for d in body] == [105, 106]
    ten_with_a_duplicate = "101,102,103,104,105,106,107,108,109,101"
    body = batch(api, deviceIds=ten_with_a_duplicate)
    assert [d["deviceId"] for d in body] == list(range(101, 110))


def test_batch_takes_at_most_10_ids_as_given(api: Api) -> None:
    """The document's `maxItems: 10` counts the ids as sent, a repeated one too."""
    eleven_with_a_duplicate = "101,102,103,104,105,106,107,108,109,110,101"
    assert_error(api.get(BATCH, deviceIds=eleven_with_a_duplicate), 400)


def test_batch_values_filtered_by_datastream_ids(api: Api) -> None:
    body = batch(api, deviceIds="105,104", dataStreamIds=["2", "5"])
    assert [ids_of(d["dataStreamValues"]) for d in body] == [[2, 5], [2]]  # type: ignore[arg-type]


def test_batch_leaves_out_unknown_and_foreign_devices(api: Api) -> None:
    body = batch(api, deviceIds="999,105,201,0,106")
    assert [d["deviceId"] for d in body] == [105, 106]
    assert batch(api, deviceIds="999,201") == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"deviceIds": ""},
        {"deviceIds": ","},
        {"deviceIds": ",".join(str(i) for i in range(101, 112))},
        {"deviceIds": [str(i) for i in range(1, 12)]},
        {"deviceIds": "101,abc"},
        {"deviceIds": "2147483648"},
        {"deviceIds": "101", "dataStreamIds": "x"},
    ],
    ids=[
        "missing",
        "empty",
        "only-commas",
        "eleven",
        "eleven-repeated",
        "text",
        "beyond-int32",
        "bad-filter",
    ],
)
def test_batch_values_reject_bad_device_lists(api: Api, params: dict[str, object]) -> None:
    assert_error(api.get(BATCH, **params), 400)


# --- op 3: history ------------------------------------------------------------------------


def window(n: int) -> int:
    """The start of a one-day window of the past that belongs to one test (a day apart)."""
    return 1_100_000_000_000 + 2 * n * DAY_MS


def test_history_shape_and_newest_first(api: Api) -> None:
    start = window(1)
    import_points(api, 106, 1, [(start + 10, 1.5), (start + 30, 3.5), (start + 20, 2.5)])

    body = history(api, 106, start, start + DAY_MS)
    assert body == {
        "totalElements": 3,
        "content": [
            {"createdAt": start + 30, "value": 3.5},
            {"createdAt": start + 20, "value": 2.5},
            {"createdAt": start + 10, "value": 1.5},
        ],
    }


def test_history_in_ascending_order(api: Api) -> None:
    start = window(2)
    import_points(api, 106, 1, [(start + 3, 3), (start + 1, 1), (start + 2, 2)])
    body = history(api, 106, start, start + DAY_MS, order="asc")
    assert [p["createdAt"] for p in body["content"]] == [start + 1, start + 2, start + 3]  # type: ignore[attr-defined]
    assert body["totalElements"] == 3


def test_history_paging(api: Api) -> None:
    start = window(3)
    import_points(api, 106, 1, [(start + i, float(i)) for i in range(7)])
    pages = [history(api, 106, start, start + DAY_MS, page=p, size=3) for p in range(4)]
    assert [page["totalElements"] for page in pages] == [7, 7, 7, 7]
    stamps = [[p["createdAt"] for p in page["content"]] for page in pages]  # type: ignore[attr-defined]
    assert stamps == [
        [start + 6, start + 5, start + 4],
        [start + 3, start + 2, start + 1],
        [start],
        [],
    ]


def test_history_default_page_size_is_50(api: Api) -> None:
    start = window(4)
    import_points(api, 106, 2, [(start + i, i) for i in range(60)])
    body = history(api, 106, start, start + DAY_MS, dataStreamId=2)
    assert body["totalElements"] == 60
    content = body["content"]
    assert isinstance(content, list) and len(content) == 50
    assert content[0] == {"createdAt": start + 59, "value": 59}
    full = history(api, 106, start, start + DAY_MS, dataStreamId=2, size=1000)
    assert len(full["content"]) == 60  # type: ignore[arg-type]


def test_history_bounds_are_inclusive(api: Api) -> None:
    start = window(5)
    import_points(api, 106, 1, [(start, 0.0), (start + 10, 1.0), (start + 20, 2.0)])
    assert history(api, 106, start + 10, start + 20)["totalElements"] == 2
    exact = history(api, 106, start + 10, start + 10)
    assert exact == {"totalElements": 1, "content": [{"createdAt": start + 10, "value": 1.0}]}
    assert history(api, 106, start + 11, start + 19)["totalElements"] == 0


@pytest.mark.parametrize(("pin", "day"), [("v2", 6), ("V2", 8)])
def test_history_by_pin_is_case_insensitive(api: Api, pin: str, day: int) -> None:
    start = window(day)
    import_points(api, 107, 2, [(start + 1, 11), (start + 2, 12)])
    by_id = history(api, 107, start, start + DAY_MS, dataStreamId=2)
    by_pin = history(api, 107, start, start + DAY_MS, pin=pin)
    assert by_pin == by_id
    assert by_pin["totalElements"] == 2


def test_history_keeps_live_writes(api: Api) -> None:
    before = now_ms()
    body = {"deviceId": 107, "dataStreamId": 3, "value": "live history point"}
    assert api.post(UPDATE, body).status_code == 204
    after = now_ms()
    found = history(api, 107, before, after, dataStreamId=3)
    assert found["totalElements"] == 1
    [point] = found["content"]  # type: ignore[misc]
    assert point["value"] == "live history point"
    assert before <= point["createdAt"] <= after


def test_datastream_without_history_keeps_no_history(api: Api) -> None:
    before = now_ms()
    live = api.post(UPDATE, {"deviceId": 107, "dataStreamId": 5, "value": 1})
    assert live.status_code == 204, live.text
    import_points(api, 107, 5, [(window(7), 2), (window(7) + 1, 0)])
    after = now_ms()

    current = api.get(VALUES, deviceId=107, dataStreamIds=5).json()[0]
    assert current["value"] == 1  # the live write is newer than the imported points
    assert before <= current["updatedAt"] <= after
    assert history(api, 107, 0, after + DAY_MS, dataStreamId=5) == {
        "totalElements": 0,
        "content": [],
    }


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"from": 2, "to": 1}, "from"),
        ({"from": 0, "to": 1, "size": 0}, "size"),
        ({"from": 0, "to": 1, "size": 1001}, "size"),
        ({"from": 0, "to": 1, "size": -1}, "size"),
        ({"from": 0, "to": 1, "page": -1}, "page"),
        ({"from": 0, "to": 1, "page": "first"}, "page"),
        ({"to": 1}, "from"),
        ({"from": 0}, "to"),
        ({"from": "yesterday", "to": 1}, "from"),
        ({"from": 0, "to": "9223372036854775808"}, "to"),
        ({"from": 0, "to": 1, "dataStreamId": None}, "dataStreamId"),
        ({"from": 0, "to": 1, "dataStreamId": "one"}, "dataStreamId"),
        ({"from": 0, "to": 1, "order": "sideways"}, "order"),
    ],
    ids=[
        "from-after-to",
        "size-0",
        "size-1001",
        "size-negative",
        "page-negative",
        "page-text",
        "from-missing",
        "to-missing",
        "from-text",
        "to-beyond-int64",
        "no-datastream",
        "datastream-text",
        "order-unknown",
    ],
)
def test_history_rejects_bad_parameters(api: Api, params: dict[str, object], mentions: str) -> None:
    query: dict[str, object] = {"deviceId": 106, "dataStreamId": 1, **params}
    query = {k: v for k, v in query.items() if v is not None}
    message = assert_error(api.get(HISTORY, **query), 400)
    assert mentions in message


def test_history_page_size_limits_are_accepted(api: Api) -> None:
    for size in (1, 1000):
        history(api, 106, 0, 1, size=size)


def test_history_of_an_unknown_datastream_is_404(api: Api) -> None:
    message = assert_error(
        api.get(HISTORY, deviceId=106, dataStreamId=9, **{"from": 0, "to": 1}), 404
    )
    assert "9" in message
    message = assert_error(api.get(HISTORY, deviceId=106, pin="v9", **{"from": 0, "to": 1}), 404)
    assert "v9" in message
    # Datastream 5 exists on product 10 but not on the pump's product 20.
    assert_error(api.get(HISTORY, deviceId=104, dataStreamId=5, **{"from": 0, "to": 1}), 404)


@pytest.mark.parametrize("device_id", [999, 201])
def test_history_of_an_unknown_device_is_404(api: Api, device_id: int) -> None:
    response = api.get(HISTORY, deviceId=device_id, dataStreamId=1, **{"from": 0, "to": 1})
    assert_error(response, 404, not_found(device_id))


# --- widget properties read-back (a pinbase extension) -------------------------------------


def set_property(api: Api, device_id: int, ds_id: int, name: str, value: str) -> None:
    body = {"deviceId": device_id, "dataStreamId": ds_id, "property": name, "value": value}
    response = api.post(PROPERTY, body)
    assert response.status_code == 204, response.text


def test_properties_read_back(api: Api) -> None:
    set_property(api, 108, 1, "color", "#FF0000")
    set_property(api, 108, 1, "label", "Shed temperature")
    set_property(api, 108, 3, "isHidden", "true")

    response = api.get(PROPERTIES, deviceId=108)
    assert response.status_code == 200, response.text
    items = response.json()
    assert [(i["dataStreamId"], i["pin"]) for i in items] == [
        (1, "v1"),
        (2, "v2"),
        (3, "v3"),
        (4, "v4"),
        (5, "v5"),
    ]
    by_id = {i["dataStreamId"]: i["properties"] for i in items}
    assert by_id[1].items() >= {"color": "#FF0000", "label": "Shed temperature"}.items()
    assert by_id[3]["isHidden"] == "true"
    assert all(isinstance(v, str) for props in by_id.values() for v in props.values())


def test_properties_are_kept_per_device(api: Api) -> None:
    set_property(api, 105, 2, "suffix", "% on Silo")
    set_property(api, 106, 2, "suffix", "% on Pond")
    silo = api.get(PROPERTIES, deviceId=105, dataStreamIds="2").json()
    pond = api.get(PROPERTIES, deviceId=106, dataStreamIds="2").json()
    assert silo[0]["properties"]["suffix"] == "% on Silo"
    assert pond[0]["properties"]["suffix"] == "% on Pond"


@pytest.mark.parametrize("params", [{"dataStreamIds": "3,1"}, {"dataStreamIds": ["1", "3"]}])
def test_properties_filtered_by_datastream_ids(api: Api, params: dict[str, object]) -> None:
    set_property(api, 108, 3, "offLabel", "closed")
    items = api.get(PROPERTIES, deviceId=108, **params).json()
    assert [i["dataStreamId"] for i in items] == [1, 3]


def test_properties_of_a_datastream_never_set_are_empty(api: Api) -> None:
    items = api.get(PROPERTIES, deviceId=NEVER_WRITTEN_DEVICE).json()
    assert [i["properties"] for i in items] == [{}] * 5


@pytest.mark.parametrize("device_id", [999, 201])
def test_properties_of_an_unknown_device_are_404(api: Api, device_id: int) -> None:
    assert_error(api.get(PROPERTIES, deviceId=device_id), 404, not_found(device_id))


def test_properties_need_a_valid_device_id(api: Api) -> None:
    assert_error(api.get(PROPERTIES), 400)
    assert_error(api.get(PROPERTIES, deviceId="abc"), 400)
