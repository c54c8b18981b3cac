"""blynk-server's HTTP API (`/{token}/get/{pin}`, `/{token}/update/{pin}`, ...) end to end.

Its own servers and fleet, one device per concern: what the legacy routes write is read back
through the Organization API (current values, history, properties, the live stream) and through
`/external/api`, whose device session, rate limits and token lookup they share.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    wait_for,
    weather_fleet,
)

INVALID_TOKEN = "Invalid token."
WRONG_PIN = "Wrong pin format."
NO_PIN = "Requested pin doesn't exist in the app."
NO_DATASTREAM = "No datastream setup for that pin."
MISMATCH = "Value doesn't match the Datastream data type."
WRONG_REQUEST = "Wrong request format."
NO_VALUES = "No pin for update provided."

VALUES = "/api/v2/organization/device/datastreams"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
LIVE = "/api/v1/organization/live"
DEADLINE = 30.0  # bounds a hung stream; never decides a result

TEMPERATURE, HUMIDITY, STATUS, POSITION, MODE = 1, 2, 3, 4, 5
DEVICE_IDS = range(101, 121)
UNKNOWN_TOKEN = "NoSuchTokenNoSuchTokenNoSuchTok1"


def token_of(device_id: int) -> str:
    return f"pinbaseLegacyApiTest{device_id:03d}".ljust(32, "Z")


def start_server(tmp_path: Path, *extra: str) -> Server:
    data_dir = tmp_path / "data"
    tokens = {d: token_of(d) for d in DEVICE_IDS}
    apply_fleet_text(data_dir, weather_fleet("Acme Farms", ACME, tokens))
    return Server(data_dir, *extra).start()


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp(f"legacy-{backend}"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def org(own: Server) -> Iterator[Api]:
    api = Api(own.url, client_token(own.url))
    yield api
    api.close()


class Legacy:
    """blynk-server's HTTP API as one device (its token) sees it."""

    def __init__(self, server: Server, device_id: int, token: str | None = None) -> None:
        self.url = server.url
        self.id = device_id
        self.token = token if token is not None else token_of(device_id)

    def get(self, path: str) -> httpx.Response:
        """GET /<token>/<path>; `path` may carry a query string, sent verbatim."""
        return httpx.get(f"{self.url}/{self.token}/{path}", timeout=30)

    def put(self, path: str, body: bytes) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return httpx.put(f"{self.url}/{self.token}/{path}", content=body, headers=headers)

    def read(self, pin: str) -> Any:
        response = self.get(f"get/{pin}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.content == b""


def assert_text(response: httpx.Response, message: str, status: int = 400) -> None:
    """blynk-server's refusal: plain text, not the JSON error body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == message


def assert_json_404(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert list(response.json()) == ["error"]


def current(org: Api, device_id: int) -> dict[int, Any]:
    response = org.get(VALUES, deviceId=device_id)
    assert response.status_code == 200, response.text
    return {item["dataStreamId"]: item["value"] for item in response.json() if "value" in item}


def history(org: Api, device_id: int, ds_id: int) -> list[Any]:
    window = {"from": 0, "to": 2**62}
    response = org.get(
        HISTORY, deviceId=device_id, dataStreamId=ds_id, order="asc", size=100, **window
    )
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json()["content"]]


# --- writes and reads -------------------------------------------------------------------------


def test_update_by_query_then_get_as_an_array_of_strings(own: Server, org: Api) -> None:
    device = Legacy(own, 101)
    assert_ok(device.get("update/V1?value=21.5"))
    assert device.read("V1") == ["21.5"]
    assert_ok(device.get("update/v1?value=22.5"))
    assert device.read("v1") == ["22.5"]
    assert device.read("1") == ["22.5"]
    assert_ok(device.get("update/v3?value=all%20good"))
    assert device.read("v3") == ["all good"]
    assert current(org, device.id) == {TEMPERATURE: 22.5, STATUS: "all good"}
    assert history(org, device.id, TEMPERATURE) == [21.5, 22.5]
    # /external/api reads what the legacy API wrote, and the other way round
    response = httpx.get(f"{own.url}/external/api/get?token={device.token}&v1")
    assert response.text == "22.5"
    external = f"{own.url}/external/api/update?token={device.token}&v2=48"
    assert httpx.get(external).status_code == 200
    assert device.read("V2") == ["48"]


def test_location_takes_two_values(own: Server, org: Api) -> None:
    device = Legacy(own, 102)
    assert_ok(device.get("update/V4?value=24.1&value=56.9"))
    assert device.read("V4") == ["24.1", "56.9"]
    assert current(org, device.id) == {POSITION: [24.1, 56.9]}
    assert_ok(device.get("update/V4?value=10.5,20.25"))
    assert device.read("V4") == ["10.5", "20.25"]
    assert_text(device.get("update/V4?value=1"), MISMATCH)
    assert_text(device.get("update/V4?value=1&value=2&value=3"), MISMATCH)
    assert_text(device.get("update/V1?value=1&value=2"), MISMATCH)
    assert device.read("V4") == ["10.5", "20.25"]


def test_put_takes_a_json_array(own: Server, org: Api) -> None:
    device = Legacy(own, 103)
    assert_ok(device.put("update/V2", b'["40"]'))
    assert device.read("V2") == ["40"]
    assert_ok(device.put("update/v2", b"[41]"))  # numbers are taken as their text
    assert_ok(device.put("pin/V1", b"[20.5]"))  # blynk-server's older path
    assert_ok(device.put("update/V4", b'["1.5", "2.5"]'))
    assert current(org, device.id) == {TEMPERATURE: 20.5, HUMIDITY: 41, POSITION: [1.5, 2.5]}
    assert history(org, device.id, HUMIDITY) == [40, 41]


def test_put_refuses_bad_bodies_and_stores_nothing(own: Server, org: Api) -> None:
    device = Legacy(own, 104)
    wrong_body = 'The body must be a JSON array of values, e.g. ["40"].'
    for body in (b"", b"40", b'{"v": 1}', b"[true]", b"[null]", b"[[1]]", b"[" * 5000, b"\xff"):
        assert_text(device.put("update/V2", body), wrong_body)
    assert_text(device.put("update/V2", b"[]"), NO_VALUES)
    assert_text(device.put("update/V2", b'["1", "2"]'), MISMATCH)
    assert_text(device.put("update/V2", b'["x"]'), MISMATCH)
    assert_text(device.put("update/V9", b'["1"]'), NO_DATASTREAM)
    assert_text(device.put("update/X9", b'["1"]'), WRONG_PIN)
    assert current(org, device.id) == {}


def test_get_of_a_pin_without_a_value_or_datastream(own: Server) -> None:
    device = Legacy(own, 105)
    assert device.read("V5") == []  # a datastream without a value, as blynk-server's widget
    for pin in ("V9", "v0", "D3", "A0", "d1", "a1"):  # datastreams are virtual pins only
        assert_text(device.get(f"get/{pin}"), NO_PIN)
    for pin in ("X1", "V", "v1.5", "v-1", "V1234", "%20", "vv1"):
        assert_text(device.get(f"get/{pin}"), WRONG_PIN)


def test_update_errors(own: Server, org: Api) -> None:
    device = Legacy(own, 106)
    assert_text(device.get("update/V1"), WRONG_REQUEST)  # neither value nor property
    assert_text(device.get("update/V1?other=1"), WRONG_REQUEST)
    assert_text(device.get("update/V1?value="), MISMATCH)
    assert_text(device.get("update/V1?value=abc"), MISMATCH)
    assert_text(device.get("update/V5?value=7"), MISMATCH)  # not one of the enum's keys
    assert_text(device.get("update/D3?value=1"), NO_DATASTREAM)
    assert_text(device.get("update/V9?value=1"), NO_DATASTREAM)
    assert_text(device.get("update/Q1?value=1"), WRONG_PIN)
    assert_text(device.get("update/V1?value=" + "9" * 5000), MISMATCH)
    assert current(org, device.id) == {}
    # clamped to the datastream's max, as every interface does
    assert_ok(device.get("update/V1?value=1000&_=cache-buster"))
    assert device.read("V1") == ["85.0"]


def test_property_writes(own: Server, org: Api) -> None:
    device = Legacy(own, 107)
    assert_ok(device.get("update/V1?color=%23FF0000"))
    assert_ok(device.get("update/v3?label=Hot%20air&isHidden=true"))
    for ds_id, expected in (
        (TEMPERATURE, {"color": "#FF0000"}),
        (STATUS, {"label": "Hot air", "isHidden": "true"}),
    ):
        response = org.get(PROPERTIES, deviceId=device.id, dataStreamIds=str(ds_id))
        assert response.status_code == 200, response.text
        assert response.json()[0]["properties"] == expected
    refused = device.get("update/V1?color=red-ish")
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/")
    assert_text(
        device.get("update/V1?label=a&label=b"), "Property 'label' is given more than once."
    )
    assert_text(device.get("update/V9?color=%23FF0000"), NO_DATASTREAM)
    assert device.read("V1") == []  # properties are no value


def test_connection_questions(own: Server) -> None:
    device = Legacy(own, 108)
    for path in ("isHardwareConnected", "isAppConnected"):
        response = device.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() is False


def test_services_pinbase_lacks_answer_501_in_plain_text(own: Server) -> None:
    device = Legacy(own, 109)
    for method, path in (
        ("POST", "notify"),
        ("POST", "email"),
        ("GET", "project"),
        ("GET", "qr"),
        ("GET", "rtc"),
        ("GET", "data/V1"),
    ):
        url = f"{own.url}/{device.token}/{path}"
        response = httpx.request(method, url, json={"body": "hi"})
        assert response.status_code == 501, (path, response.text)
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith("Not supported by pinbase")
        unknown = httpx.request(method, f"{own.url}/{UNKNOWN_TOKEN}/{path}", json={})
        assert_text(unknown, INVALID_TOKEN)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "get/V1", None),
        ("GET", "update/V1?value=1", None),
        ("GET", "update/V1?color=%23FF0000", None),
        ("PUT", "update/V1", b'["1"]'),
        ("PUT", "pin/V1", b'["1"]'),
        ("GET", "isHardwareConnected", None),
        ("GET", "isAppConnected", None),
    ],
)
def test_invalid_token_is_plain_text(own: Server, method: str, path: str, body: bytes) -> None:
    for token in (UNKNOWN_TOKEN, token_of(101).lower(), "A" * 31 + "_", "-" * 32):
        response = httpx.request(method, f"{own.url}/{token}/{path}", content=body)
        assert_text(response, INVALID_TOKEN)


# --- nothing is shadowed ------------------------------------------------------------------------


def test_other_routes_are_not_shadowed(own: Server) -> None:
    assert httpx.get(f"{own.url}/healthz").json()["status"] == "ok"
    document = httpx.get(f"{own.url}/openapi.json").json()
    # the legacy routes stay out of the document (plain-text answers; docs/devices.md)
    assert not [path for path in document["paths"] if "{token" in path or "/get/" in path]
    assert "/external/api/get" in document["paths"]
    assert httpx.get(f"{own.url}/docs").status_code == 200
    assert (
        httpx.get(f"{own.url}/external/api/isHardwareConnected?token={token_of(110)}").json()
        is False
    )
    for path in (
        "/api/get/V1",
        "/external/get/V1",
        "/oauth2/get/V1",
        "/healthz/get/V1",
        "/docs/update/V1?value=1",
        "/api/isHardwareConnected",
        f"/{token_of(110)}",
        f"/{token_of(110)}/",
        f"/{token_of(110)}/nosuch",
        f"/{token_of(110)}/get",
        f"/{token_of(110)}/get/V1/more",
        f"/{token_of(110)[:31]}/get/V1",  # not a token's shape: 31 characters
        f"/{token_of(110)}X/get/V1",  # 33
        f"/{token_of(110)[:31]}.get/V1",
        f"/x/{token_of(110)}/get/V1",
    ):
        assert_json_404(httpx.get(f"{own.url}{path}"))
    # a method a legacy path lacks is the JSON 405 with Allow, OPTIONS its 204
    response = httpx.post(f"{own.url}/{token_of(110)}/get/V1")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD, OPTIONS"
    response = httpx.options(f"{own.url}/{token_of(110)}/update/V1")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, HEAD, OPTIONS, PUT"


# --- one device session: live events and rate limits --------------------------------------------


def test_a_legacy_write_reaches_a_live_subscriber(own: Server) -> None:
    device = Legacy(own, 111)
    headers = {"Authorization": f"Bearer {client_token(own.url)}"}
    with (
        httpx.Client(base_url=own.url, timeout=DEADLINE) as client,
        client.stream("GET", LIVE, headers=headers, params={"deviceIds": "111"}) as stream,
    ):
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith(": connected"))
        assert_ok(device.get("update/V3?value=live-legacy"))
        data = next(line for line in lines if line.startswith("data: "))
    event = orjson.loads(data[6:])
    assert event["deviceId"] == 111 and event["dataStreamId"] == STATUS
    assert event["value"] == "live-legacy"


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp(f"legacy-rate-{backend}"),
        "--device-rate",
        "0.001",
        "--device-burst",
        "3",
        "--log-level",
        "info",
    )
    yield running
    running.stop()


def test_rate_limit_is_shared_with_the_device_api(throttled: Server) -> None:
    device = Legacy(throttled, 101)
    external = f"{throttled.url}/external/api/update?token={device.token}"
    assert httpx.get(f"{external}&v1=1").status_code == 200
    assert_ok(device.get("update/V1?value=2"))
    assert_ok(device.put("update/V1", b'["3"]'))
    response = device.get("update/V1?value=4")
    assert response.status_code == 429 and response.headers["content-type"].startswith("text/")
    assert response.text and int(response.headers["Retry-After"]) >= 1
    assert device.put("update/V1", b'["5"]').status_code == 429
    assert device.get("update/V1?label=x").status_code == 429
    assert httpx.get(f"{external}&v1=6").status_code == 429
    assert device.read("V1") == ["3.0"]  # reads are not charged
    # another device has its own allowance
    assert_ok(Legacy(throttled, 102).get("update/V1?value=7"))


def test_the_access_log_hides_the_token_of_the_path(throttled: Server) -> None:
    device = Legacy(throttled, 103)
    assert device.read("V1") == []
    assert_text(Legacy(throttled, 0, UNKNOWN_TOKEN).get("get/V1"), INVALID_TOKEN)
    wait_for(
        "both access lines",
        lambda: throttled.log.read_text().count("GET /[redacted]/get/V1 ") >= 2,
    )
    log = throttled.log.read_text()
    assert device.token not in log and UNKNOWN_TOKEN not in log
