"""Blynk's device HTTPS API (`/external/api/...`) end to end, against real server processes.

State is asserted on a server of this module's own (its own fleet, one device per concern), so
nothing here depends on, or disturbs, what other modules do on the shared server. The shared
server is only read (with device 101's token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from helpers import (
    ACME,
    Api,
    Server,
    apply_fleet_text,
    client_token,
    now_ms,
    weather_fleet,
)

SHARED_TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"  # device 101 of tests/fleet.yaml

INVALID_TOKEN = "Invalid token."
WRONG_PIN = "Wrong pin format."
MISMATCH = "Value doesn't match the Datastream data type."
NO_DATASTREAM = "No datastream setup for that pin."

VALUES = "/api/v2/organization/device/datastreams"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
ORG_UPDATE = "/api/v1/organization/device/datastream"

TEMPERATURE, HUMIDITY, STATUS, POSITION, MODE = 1, 2, 3, 4, 5
DEVICE_IDS = range(101, 131)


def token_of(device_id: int) -> str:
    """The 32-character auth token of a device of this module's fleet."""
    return f"pinbaseDeviceHttpTest{device_id:03d}".ljust(32, "Q")


FLEET = weather_fleet("Acme Farms", ACME, {d: token_of(d) for d in DEVICE_IDS})


def start_own_server(tmp_path: Path, *extra: str) -> Server:
    data_dir = tmp_path / "data"
    apply_fleet_text(data_dir, FLEET)
    return Server(data_dir, *extra).start()


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    """A server of this module alone, with the fleet above."""
    running = start_own_server(tmp_path_factory.mktemp(f"device-http-{backend}"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def org(own: Server) -> Iterator[Api]:
    """The Organization API of the module's server (organization-scoped token)."""
    api = Api(own.url, client_token(own.url))
    yield api
    api.close()


class Device:
    """The device HTTPS API, as one device (its token) sees it."""

    def __init__(self, server: Server, device_id: int, token: str | None = None) -> None:
        self.server = server
        self.id = device_id
        self.token = token if token is not None else token_of(device_id)

    def with_token(self, token: str) -> Device:
        return Device(self.server, self.id, token)

    def call(self, path: str, query: str = "") -> httpx.Response:
        """GET /external/api/<path>?token=..&<query>; `query` is sent verbatim (`&v1` stays)."""
        tail = f"&{query}" if query else ""
        url = f"{self.server.url}/external/api/{path}?token={self.token}{tail}"
        return httpx.get(url, timeout=30)

    def update(self, query: str) -> httpx.Response:
        return self.call("update", query)

    def get(self, query: str) -> httpx.Response:
        return self.call("get", query)

    def text(self, pin: str) -> str:
        response = self.get(pin)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def upload(
        self, pin: str, body: bytes, content_type: str | None = "application/json"
    ) -> httpx.Response:
        headers = {"Content-Type": content_type} if content_type else {}
        return httpx.post(
            f"{self.server.url}/external/api/batch/update?token={self.token}&pin={pin}",
            content=body,
            headers=headers,
            timeout=30,
        )


Devices = Callable[[int], "Device"]


@pytest.fixture
def devices(own: Server) -> Devices:
    """Clients for devices of the module's server; each test uses devices no other test uses."""

    def make(device_id: int) -> Device:
        return Device(own, device_id)

    return make


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content == b""


def assert_error(response: httpx.Response, message: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": {"message": message}}


def assert_refused(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message"], body
    message: str = body["error"]["message"]
    assert message
    return message


def org_current(org: Api, device_id: int) -> dict[int, dict[str, Any]]:
    response = org.get(VALUES, deviceId=device_id)
    assert response.status_code == 200, response.text
    return {item["dataStreamId"]: item for item in response.json()}


def org_history(org: Api, device_id: int, ds_id: int) -> list[dict[str, Any]]:
    response = org.get(
        HISTORY,
        deviceId=device_id,
        dataStreamId=ds_id,
        order="asc",
        size=1000,
        **{
            "from": 0,
            "to": 2**62,
        },
    )
    assert response.status_code == 200, response.text
    content: list[dict[str, Any]] = response.json()["content"]
    return content


# --- writes and reads by pin --------------------------------------------------------------


def test_update_one_pin_then_get_it_as_text(devices: Devices, org: Api) -> None:
    device = devices(101)
    assert_ok(device.update("v1=21.5"))
    assert device.text("v1") == "21.5"
    current = org_current(org, device.id)[TEMPERATURE]
    assert current["value"] == 21.5 and current["pin"] == "v1"


def test_pins_are_case_insensitive(devices: Devices) -> None:
    device = devices(102)
    assert_ok(device.update("V2=40"))
    assert device.text("v2") == "40"
    assert device.text("V2") == "40"
    assert_ok(device.update("v2=41"))
    assert device.text("V2") == "41"
    body = device.get("V2&v3")
    assert body.status_code == 200, body.text
    assert body.json() == {"v2": 41, "v3": None}


def test_several_pairs_in_one_update(devices: Devices, org: Api) -> None:
    device = devices(103)
    assert_ok(device.update("v1=10&v2=20&v3=hello%20world&v5=2"))
    response = device.get("v1&v2&v3&v5")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"v1": 10.0, "v2": 20, "v3": "hello world", "v5": 2}
    current = org_current(org, device.id)
    stamps = {current[ds]["updatedAt"] for ds in (TEMPERATURE, HUMIDITY, STATUS, MODE)}
    assert len(stamps) == 1, "one write, one timestamp"


def test_values_are_parsed_and_clamped_by_type(devices: Devices) -> None:
    device = devices(104)
    assert_ok(device.update("v1=1000"))
    assert device.text("v1") == "85.0"
    assert_ok(device.update("v2=-5"))
    assert device.text("v2") == "0"
    assert_ok(device.update("v2=7.0"))
    assert device.text("v2") == "7"
    assert_ok(device.update("v3="))  # an empty string is a string
    assert device.text("v3") == ""
    assert_ok(device.update("v3=12"))  # text from a device: the string "12"
    assert device.get("v3&v2").json() == {"v3": "12", "v2": 7}


def test_wrong_type_stores_nothing(devices: Devices, org: Api) -> None:
    device = devices(105)
    for query in ("v2=22.7", "v2=abc", "v1=NaN", "v1=inf", "v5=7", "v5=x", "v4=200,10", "v4=1"):
        assert_error(device.update(query), MISMATCH)
    current = org_current(org, device.id)
    assert all("value" not in current[ds] for ds in current), current
    assert org_history(org, device.id, HUMIDITY) == []
    assert_refused(device.get("v2"))  # no value yet


def test_several_pairs_are_atomic(devices: Devices, org: Api) -> None:
    device = devices(106)
    assert_ok(device.update("v1=1.5&v2=15"))
    before = org_current(org, device.id)
    assert_error(device.update("v1=2.5&v2=notanumber"), MISMATCH)
    assert_error(device.update("v1=3.5&v9=1"), NO_DATASTREAM)
    assert_error(device.update("v1=4.5&x9=1"), WRONG_PIN)
    assert_error(device.update("v3=text&v1=abc"), MISMATCH)
    assert org_current(org, device.id) == before
    assert device.get("v1&v2&v3").json() == {"v1": 1.5, "v2": 15, "v3": None}
    assert [p["value"] for p in org_history(org, device.id, TEMPERATURE)] == [1.5]


def test_update_by_datastream_id_and_location(devices: Devices) -> None:
    device = devices(107)
    assert_ok(device.update("dataStreamId=2&value=55"))
    assert device.text("v2") == "55"
    assert_ok(device.update("dataStreamId=4&value=24.1&value=56.9"))
    assert device.text("v4") == "24.1,56.9"
    assert device.get("v4&v2").json() == {"v4": [24.1, 56.9], "v2": 55}
    assert_ok(device.update("pin=V4&value=-3.5&value=40.25"))
    assert device.text("v4") == "-3.5,40.25"
    assert_ok(device.update("v4=10,20"))
    assert device.text("V4") == "10.0,20.0"
    assert_ok(device.update("v4=11&v4=21"))
    assert device.text("v4") == "11.0,21.0"
    assert_error(device.update("dataStreamId=4&value=1"), MISMATCH)
    assert_error(device.update("dataStreamId=4&value=1&value=2&value=3"), MISMATCH)
    assert_error(device.update("dataStreamId=2&value=1.5"), MISMATCH)
    assert_error(device.update("dataStreamId=abc&value=1"), "Wrong dataStreamId format.")
    assert_refused(device.update("dataStreamId=99&value=1"))
    assert_error(device.update("pin=q1&value=1"), WRONG_PIN)
    assert_error(device.update("pin=v99&value=1"), NO_DATASTREAM)
    assert device.text("v4") == "11.0,21.0"
    assert device.text("v2") == "55"


def test_batch_update_by_query_uses_one_timestamp(devices: Devices, org: Api) -> None:
    device = devices(108)
    assert_ok(device.call("batch/update", "v1=1&V2=2&v3=three"))
    assert device.get("v1&v2&v3").json() == {"v1": 1.0, "v2": 2, "v3": "three"}
    current = org_current(org, device.id)
    assert current[TEMPERATURE]["updatedAt"] == current[HUMIDITY]["updatedAt"]
    assert current[HUMIDITY]["updatedAt"] == current[STATUS]["updatedAt"]
    assert_error(device.call("batch/update", "v1=5&v2=x"), MISMATCH)
    assert device.text("v1") == "1.0"


# --- timestamped upload (POST batch/update) -----------------------------------------------


def test_upload_timestamped_points(devices: Devices, org: Api) -> None:
    device = devices(109)
    base = now_ms() - 60_000
    points = [[base + i * 1000, 20 + i] for i in range(5)]
    assert_ok(device.upload("v1", orjson.dumps(points)))
    history = org_history(org, device.id, TEMPERATURE)
    assert [(p["createdAt"], p["value"]) for p in history] == [(t, float(v)) for t, v in points]
    assert device.text("v1") == "24.0"  # the newest point became the current value
    # numbers as strings are accepted as Blynk does; upper-case pin; charset in the header
    body = orjson.dumps([[base + 10_000, "7"], [base + 11_000, 8]])
    assert_ok(device.upload("V2", body, "application/json; charset=utf-8"))
    assert [p["value"] for p in org_history(org, device.id, HUMIDITY)] == [7, 8]
    location = orjson.dumps([[base, [24.1, 56.9]]])
    assert_ok(device.upload("v4", location))
    assert device.text("v4") == "24.1,56.9"
    assert_ok(device.upload("v3", orjson.dumps([[base, "ok"]])))
    assert device.text("v3") == "ok"


def test_upload_refuses_bad_requests_and_stores_nothing(devices: Devices, org: Api) -> None:
    device = devices(110)
    base = now_ms() - 3_600_000
    good = orjson.dumps([[base, 1.0]])
    assert_refused(device.upload("v1", good, None))
    assert_refused(device.upload("v1", good, "text/plain"))
    assert_refused(device.upload("v1", good, "application/x-www-form-urlencoded"))
    too_many = orjson.dumps([[base + i, 1.0] for i in range(10_001)])
    assert_refused(device.upload("v1", too_many))
    mixed = orjson.dumps([[base, 1.0], [base + 1, "abc"], [base + 2, 3.0]])
    assert_error(device.upload("v1", mixed), MISMATCH)
    assert_error(device.upload("v2", orjson.dumps([[base, 1.5]])), MISMATCH)
    assert_error(device.upload("v3", orjson.dumps([[base, 12]])), MISMATCH)
    assert_error(device.upload("v4", orjson.dumps([[base, [1, 2, 3]]])), MISMATCH)
    for body in (b"", b"{}", b"[[1]]", b'[["x", 1]]', b"[[1.5, 1]]", b"[[1, 2]", b"[]"):
        assert_refused(device.upload("v1", body))
    assert_error(device.upload("x1", good), WRONG_PIN)
    assert_error(device.upload("v42", good), NO_DATASTREAM)
    assert_error(device.with_token("wrong").upload("v1", good), INVALID_TOKEN)
    assert org_history(org, device.id, TEMPERATURE) == []
    assert all("value" not in item for item in org_current(org, device.id).values())


def test_upload_of_exactly_ten_thousand_points(devices: Devices, org: Api) -> None:
    device = devices(111)
    base = 1_600_000_000_000
    points = [[base + i * 1000, i % 50] for i in range(10_000)]
    assert_ok(device.upload("v2", orjson.dumps(points)))
    response = org.get(
        HISTORY, deviceId=device.id, dataStreamId=HUMIDITY, size=1, **{"from": 0, "to": 2**62}
    )
    assert response.json()["totalElements"] == 10_000


# --- reads --------------------------------------------------------------------------------


def test_get_keys_without_values_and_several_pins(devices: Devices) -> None:
    device = devices(112)
    assert_ok(device.update("v1=12.25&v3=abc"))
    assert device.text("v1") == "12.25"
    response = device.get("v1=&V3")  # a value given to a key is ignored
    assert response.json() == {"v1": 12.25, "v3": "abc"}
    assert device.get("v1&v1").text == "12.25"  # one pin, asked twice
    assert_refused(device.get("v2"))  # never written
    assert_error(device.get("v1&vx"), WRONG_PIN)
    assert_error(device.get("v1&v77"), NO_DATASTREAM)
    assert_refused(device.call("get"))  # no pin at all


def test_get_by_datastream_id_and_pin_parameter(devices: Devices) -> None:
    device = devices(130)
    assert_ok(device.update("v1=12.5&v4=24.1,56.9"))
    assert device.text("dataStreamId=1") == "12.5"
    assert device.text("pin=V1") == "12.5"
    assert device.text("dataStreamId=4") == "24.1,56.9"
    response = device.get("dataStreamId=1&dataStreamId=3&pin=v4")
    assert response.json() == {"v1": 12.5, "v3": None, "v4": [24.1, 56.9]}
    assert device.get("dataStreamId=1&v1").text == "12.5"  # one datastream, named twice
    assert_refused(device.get("dataStreamId=2"))  # never written
    assert_error(device.get("dataStreamId=x"), "Wrong dataStreamId format.")
    assert_error(device.get("dataStreamId="), "Wrong dataStreamId format.")
    assert_error(device.get("dataStreamId=99"), "No datastream setup for that dataStreamId.")
    assert_error(device.get("pin=w1"), WRONG_PIN)


def test_get_all_lists_only_datastreams_with_a_value(devices: Devices) -> None:
    device = devices(113)
    response = device.call("getAll")
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert_ok(device.update("v3=on&v1=-2&v4=30.5,-20"))
    response = device.call("getAll")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"v1": -2.0, "v3": "on", "v4": [30.5, -20.0]}
    assert list(response.json()) == ["v1", "v3", "v4"]


def test_is_hardware_connected_is_false_without_a_session(devices: Devices) -> None:
    device = devices(114)
    response = device.call("isHardwareConnected")
    assert response.status_code == 200, response.text
    assert response.text == "false"
    assert response.json() is False
    assert_ok(device.update("v1=1"))  # an HTTP write is no session
    assert device.call("isHardwareConnected").text == "false"


# --- both APIs see the same data ----------------------------------------------------------


def test_organization_api_reads_what_the_device_wrote(devices: Devices, org: Api) -> None:
    device = devices(115)
    before = now_ms()
    assert_ok(device.update("v1=18.75&v3=fine&v4=1.5,2.5&v5=1"))
    current = org_current(org, device.id)
    assert current[TEMPERATURE]["value"] == 18.75
    assert current[STATUS]["value"] == "fine"
    assert current[POSITION]["value"] == [1.5, 2.5]
    assert current[MODE]["value"] == 1
    assert current[TEMPERATURE]["updatedAt"] >= before
    [point] = org_history(org, device.id, TEMPERATURE)
    assert point["value"] == 18.75
    assert org_history(org, device.id, MODE) == []  # history is off for v5


def test_device_reads_what_the_organization_api_wrote(devices: Devices, org: Api) -> None:
    device = devices(116)
    for ds, value, text in (
        (TEMPERATURE, 33.3, "33.3"),
        (HUMIDITY, 61, "61"),
        (STATUS, "from the cloud", "from the cloud"),
        (POSITION, [-0.5, 51.25], "-0.5,51.25"),
    ):
        response = org.post(ORG_UPDATE, {"deviceId": device.id, "dataStreamId": ds, "value": value})
        assert response.status_code == 204, response.text
        assert device.text(f"v{ds}") == text
    assert device.call("getAll").json() == {
        "v1": 33.3,
        "v2": 61,
        "v3": "from the cloud",
        "v4": [-0.5, 51.25],
    }


# --- widget properties --------------------------------------------------------------------


def org_properties(org: Api, device_id: int, ds_id: int) -> dict[str, str]:
    response = org.get(PROPERTIES, deviceId=device_id, dataStreamIds=str(ds_id))
    assert response.status_code == 200, response.text
    [item] = response.json()
    found: dict[str, str] = item["properties"]
    return found


def test_update_properties(devices: Devices, org: Api) -> None:
    device = devices(117)
    assert_ok(device.call("update/property", "pin=v1&color=%23FF0000"))
    assert org_properties(org, device.id, TEMPERATURE) == {"color": "#FF0000"}
    assert_ok(device.call("update/property", "pin=V3&label=Hot%20air&isHidden=true"))
    assert org_properties(org, device.id, STATUS) == {"label": "Hot air", "isHidden": "true"}


def test_bad_properties_store_nothing(devices: Devices, org: Api) -> None:
    device = devices(118)
    for query in (
        "pin=v1&color=red-ish",
        "pin=v1&label=ok&opacity=500",
        "pin=v1&label=ok&noSuchProperty=1",
        "pin=v1&label=a&label=b",
        "pin=v1",
    ):
        assert_refused(device.call("update/property", query))
    assert_error(device.call("update/property", "label=x"), WRONG_PIN)
    assert_error(device.call("update/property", "pin=w1&label=x"), WRONG_PIN)
    assert_error(device.call("update/property", "pin=v30&label=x"), NO_DATASTREAM)
    assert org_properties(org, device.id, TEMPERATURE) == {}


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("update", "v1=1"),
        ("update", "dataStreamId=1&value=1"),
        ("batch/update", "v1=1"),
        ("get", "v1"),
        ("getAll", ""),
        ("isHardwareConnected", ""),
        ("update/property", "pin=v1&color=%23FF0000"),
    ],
)
def test_invalid_token(own: Server, path: str, query: str) -> None:
    for token in ("nosuchtokennosuchtokennosuchtok1", "", SHARED_TOKEN.lower(), "x" * 5000):
        client = Device(own, 0, token)
        assert_error(client.call(path, query), INVALID_TOKEN)
    response = httpx.get(f"{own.url}/external/api/{path}?{query}")  # no token at all
    assert_error(response, INVALID_TOKEN)
    response = httpx.get(
        f"{own.url}/external/api/{path}?token={token_of(120)}&token={token_of(121)}&{query}"
    )
    assert_error(response, INVALID_TOKEN)


def test_blynk_error_messages(devices: Devices) -> None:
    device = devices(119)
    for query in ("x1=1", "v=1", "vv1=1", "v1.0=1", "v-1=1", "v1234=1", "%20=1", "abc"):
        assert_error(device.update(query), WRONG_PIN)
    for query in ("v99=1", "V6=1", "v0=1", "d3=1", "A0=1"):
        assert_error(device.update(query), NO_DATASTREAM)
    for query in ("v1=abc", "v2=1.5", "v1=1&v1=2", "v5=3"):
        assert_error(device.update(query), MISMATCH)
    assert_refused(device.update(""))  # nothing to write
    assert_refused(device.update("value=1"))  # a value without pin or dataStreamId
    assert device.call("getAll").json() == {}


def test_shared_server_answers_device_101(server: Server) -> None:
    """Read-only use of the shared server: the router is mounted there too."""
    client = Device(server, 101, SHARED_TOKEN)
    assert client.call("isHardwareConnected").json() is False
    assert client.call("getAll").status_code == 200
    assert_error(client.update("v99=1"), NO_DATASTREAM)
    assert_error(
        Device(server, 0, "nosuchtokennosuchtokennosuchtok1").call("getAll"), INVALID_TOKEN
    )


# --- rate limit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    running = start_own_server(
        tmp_path_factory.mktemp(f"device-http-rate-{backend}"),
        "--device-rate",
        "0.001",
        "--device-burst",
        "2",
    )
    yield running
    running.stop()


def test_flood_from_one_device_gets_429(throttled: Server) -> None:
    first = Device(throttled, 101)
    assert_ok(first.update("v1=1"))
    assert_ok(first.update("v1=2"))
    response = first.update("v1=3")
    message = assert_refused(response, 429)
    assert message
    assert int(response.headers["Retry-After"]) >= 1
    assert first.text("v1") == "2.0"  # the refused value is not stored; reads still work
    assert first.call("update/property", "pin=v1&label=x").status_code == 429
    # another device has its own allowance; two values in one request use up both
    second = Device(throttled, 102)
    assert_ok(second.update("v1=5&v2=6"))
    assert second.update("v3=x").status_code == 429
    assert second.get("v1&v2&v3").json() == {"v1": 5.0, "v2": 6, "v3": None}


# --- OpenAPI ------------------------------------------------------------------------------

DEVICE_OPERATIONS = [
    ("get", "/external/api/update"),
    ("get", "/external/api/batch/update"),
    ("post", "/external/api/batch/update"),
    ("get", "/external/api/get"),
    ("get", "/external/api/getAll"),
    ("get", "/external/api/isHardwareConnected"),
    ("get", "/external/api/update/property"),
]


def test_device_api_is_documented(own: Server) -> None:
    document = httpx.get(f"{own.url}/openapi.json").json()
    for method, path in DEVICE_OPERATIONS:
        operation = document["paths"][path][method]
        assert operation["summary"], (method, path)
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert parameters["token"]["required"] is True, (method, path)
        assert "400" in operation["responses"] and "429" in operation["responses"]
    upload = document["paths"]["/external/api/batch/update"]["post"]
    assert "application/json" in upload["requestBody"]["content"]
