"""Device metadata end to end: a real `pinbase serve` with the hardware and MQTT listeners on;
metafield values read and written over raw hardware frames, paho-mqtt, the device HTTP API and
the Organization API, each write read back through every interface; refusals with each
interface's answer; permissions; and `pinbase apply` keeping what the file does not name.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from test_multiprocess import fresh_database  # e2e/test_multiprocess.py

from helpers import (
    POSTGRES,
    Api,
    Listener,
    Server,
    apply_fleet,
    assert_error,
    client_token,
    device_server,
    pinbase,
    user_token,
    wait_for,
)

CLIENT = ("meta-backend", "meta-secret-0123456789abcdef")
OTHER_CLIENT = ("metaother-backend", "metaother-secret-0123456789abcdef")
PASSWORD = "meta-password-1"
FIELD = "/api/v1/organization/device/metafield"
TEMPLATE_FIELDS = "/api/v1/organization/template/metafields"
GET_META = "/external/api/device/meta"
UPDATE_META = "/external/api/device/meta/update"
DEADLINE = 30.0  # bounds a wait, never decides a result

# hardware commands and statuses, spelled out rather than imported from the code under test
RESPONSE, LOGIN, INTERNAL = 0, 2, 17
OK, QUOTA_LIMIT, ILLEGAL_COMMAND_BODY = 200, 1, 11

READER, HTTP_WRITER, HW_WRITER, MQTT_WRITER, API_WRITER = 501, 502, 503, 504, 505
REFUSED, PERMITTED, OWNED, APPLIED, LIVE, MOVED = 506, 507, 508, 509, 510, 511
FOREIGN = 601

SERIAL, SITE, WEIGHT, CONTACT, PLACE = 1, 2, 3, 4, 5
NAMES = {SERIAL: "Serial Number", SITE: "Site", WEIGHT: "Weight", CONTACT: "Contact",
         PLACE: "Place"}  # fmt: skip
METAFIELDS = [
    {"id": SERIAL, "name": "Serial Number", "type": "text", "max": 40},
    {"id": SITE, "name": "Site", "type": "list", "options": ["North", "South"],
     "default": "North"},
    {"id": WEIGHT, "name": "Weight", "type": "number", "min": 0, "max": 100, "default": 10},
    {"id": CONTACT, "name": "Contact", "type": "email"},
    {"id": PLACE, "name": "Place", "type": "location"},
]  # fmt: skip


def token_of(device_id: int) -> str:
    return f"MetaTestToken{device_id:019d}"


def fleet(applied_meta: dict[str, object], moved_product: int = 50) -> str:
    users = [("admin@meta.test", "Admin"), ("auditor@meta.test", "Auditor"),
             ("user@meta.test", "User"), ("blind@meta.test", "Blind")]  # fmt: skip
    devices: list[dict[str, object]] = [
        {"id": d, "name": f"Device {d}", "product": 50, "token": token_of(d)}
        for d in (READER, HTTP_WRITER, HW_WRITER, MQTT_WRITER, API_WRITER, REFUSED, PERMITTED)
    ]
    devices[0]["meta"] = {"Serial Number": "WS-0001", "Site": "South", "Weight": 42.5}
    devices += [
        {
            "id": OWNED,
            "name": "Owned",
            "product": 51,
            "token": token_of(OWNED),
            "owner": "user@meta.test",
        },
        {
            "id": APPLIED,
            "name": "Applied",
            "product": 50,
            "token": token_of(APPLIED),
            "meta": applied_meta,
        },
        {"id": LIVE, "name": "Live", "product": 50, "token": token_of(LIVE)},
        {"id": MOVED, "name": "Moved", "product": moved_product, "token": token_of(MOVED)},
    ]
    if moved_product == 52:
        devices[-1]["meta"] = {"Gate Code": "G-1"}  # fmt: skip
    document = {
        "organizations": [
            {
                "id": 5,
                "name": "Meta Inc",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "roles": [
                    {"name": "Auditor", "permissions": ["ORG_DEVICES_VIEW"]},
                    {"name": "Blind", "permissions": ["ORG_DEVICES_CONTROL"]},
                ],
                "users": [
                    {"email": email, "password": PASSWORD, "role": role} for email, role in users
                ],
                "products": [
                    {
                        "id": 50,
                        "name": "Station",
                        "metafields": METAFIELDS,
                        "variants": [{"id": 51, "name": "Station Pro"}],
                    },
                    {
                        "id": 52,
                        "name": "Gate",
                        "metafields": [{"id": SERIAL, "name": "Gate Code", "type": "text"}],
                    },
                ],
                "devices": devices,
            },
            {
                "id": 6,
                "name": "Other Inc",
                "clients": [{"client_id": OTHER_CLIENT[0], "client_secret": OTHER_CLIENT[1]}],
                "products": [
                    {
                        "id": 60,
                        "name": "Other",
                        "metafields": [{"id": 1, "name": "Site", "type": "text"}],
                    }
                ],
                "devices": [
                    {
                        "id": FOREIGN,
                        "name": "Foreign",
                        "product": 60,
                        "token": token_of(FOREIGN),
                        "meta": {"Site": "elsewhere"},
                    },
                ],
            },
        ]
    }
    text: str = yaml.safe_dump(document)
    return text


FIRST_APPLIED = {"Serial Number": "WS-0509", "Site": "South"}


def password_token(url: str, email: str) -> str:
    return user_token(url, email, CLIENT, PASSWORD)


class Env:
    def __init__(self, server: Server, fleet_path: Path) -> None:
        self.server = server
        self.fleet_path = fleet_path
        self.admin = Api(server.url, password_token(server.url, "admin@meta.test"))
        self.auditor = Api(server.url, password_token(server.url, "auditor@meta.test"))
        self.user = Api(server.url, password_token(server.url, "user@meta.test"))

    def platform(self, device_id: int) -> dict[str, Any]:
        """name -> value (absent when the device reads none) from the Organization API."""
        response = self.admin.get(FIELD, deviceId=device_id)
        assert response.status_code == 200, response.text
        items = response.json()
        assert [item["id"] for item in items] == sorted(NAMES)
        assert all(item["name"] == NAMES[item["id"]] for item in items)
        return {item["name"]: item["value"] for item in items if "value" in item}

    def http_get(self, device_id: int, **params: str) -> httpx.Response:
        return httpx.get(
            self.server.url + GET_META, params={"token": token_of(device_id), **params}
        )

    def http_read(self, device_id: int, name: str) -> str:
        response = self.http_get(device_id, metaFieldName=name)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def http_update(self, device_id: int, **params: str) -> httpx.Response:
        return httpx.get(
            self.server.url + UPDATE_META, params={"token": token_of(device_id), **params}
        )

    def post(self, api: Api, device_id: int, field_id: int, value: object) -> httpx.Response:
        body = {"deviceId": device_id, "metaFieldId": field_id, "newValue": value}
        return api.post(FIELD, body)

    def close(self) -> None:
        for api in (self.admin, self.auditor, self.user):
            api.close()


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"metadata-{backend}")
    server = device_server(data_dir, fleet(FIRST_APPLIED))
    env = Env(server, data_dir / "fleet.yaml")
    try:
        yield env
    finally:
        env.close()
        assert server.stop() == 0, Path(server.log).read_text()


class Hardware:
    """A raw hardware connection: a frame out, the answer with the same message id back."""

    def __init__(self, env: Env, device_id: int) -> None:
        address = ("127.0.0.1", env.server.hardware_port)
        self.sock = socket.create_connection(address, timeout=DEADLINE)
        self.next_id = 0
        self.buffer = b""
        assert self.send(LOGIN, token_of(device_id).encode()) == (RESPONSE, OK, b"")

    def _frame(self) -> tuple[int, int, int, bytes]:
        while True:
            if len(self.buffer) >= 5:
                command, msg_id, length = struct.unpack("!BHH", self.buffer[:5])
                if command == RESPONSE:
                    self.buffer = self.buffer[5:]
                    return command, msg_id, length, b""
                if len(self.buffer) >= 5 + length:
                    body = self.buffer[5 : 5 + length]
                    self.buffer = self.buffer[5 + length :]
                    return command, msg_id, length, body
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed"
            self.buffer += chunk

    def send(self, command: int, body: bytes) -> tuple[int, int, bytes]:
        """(command, status or length, body) of the answer to this frame."""
        self.next_id += 1
        self.sock.sendall(struct.pack("!BHH", command, self.next_id, len(body)) + body)
        while True:
            answer, msg_id, length, data = self._frame()
            if msg_id == self.next_id:
                return answer, length, data

    def get(self, name: str) -> str:
        command, _, body = self.send(INTERNAL, b"meta\0get\0" + name.encode())
        assert command == INTERNAL, (command, body)
        fields = body.split(b"\0")
        assert fields[:2] == [b"meta", name.encode()] and len(fields) == 3, body
        return fields[2].decode()

    def set(self, name: str, value: str) -> int:
        command, status, _ = self.send(INTERNAL, f"meta\0set\0{name}\0{value}".encode())
        assert command == RESPONSE
        return status

    def close(self) -> None:
        self.sock.close()


class MqttDevice:
    def __init__(self, env: Env, device_id: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set("device", token_of(device_id))
        self.client.reconnect_delay_set(min_delay=60, max_delay=120)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_connect = lambda c, u, f, reason, p: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", env.server.mqtt_port, keepalive=60)
        self.client.loop_start()
        assert self.connected.wait(DEADLINE), "not connected"
        self.client.subscribe("downlink/#", 1)
        assert self.subscribed.wait(DEADLINE), "no SUBACK"

    def publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(DEADLINE)
        assert info.is_published(), "no PUBACK"

    def next(self, prefix: str) -> tuple[str, bytes]:
        while True:
            topic, payload = self.messages.get(timeout=DEADLINE)
            if topic.startswith(prefix):
                return topic, payload

    def get(self, *names: str) -> dict[str, str]:
        self.publish("get/meta", ",".join(names))
        found: dict[str, str] = {}
        while len(found) < len(names):
            topic, payload = self.next("downlink/meta/")
            found[topic.removeprefix("downlink/meta/")] = payload.decode()
        return found

    def diag(self) -> str:
        return self.next("downlink/diag")[1].decode()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def read_everywhere(env: Env, device_id: int, name: str) -> dict[str, object]:
    """The device's value of `name` through each interface (the Platform's as JSON)."""
    hardware = Hardware(env, device_id)
    try:
        by_hardware = hardware.get(name)
    finally:
        hardware.close()
    device = MqttDevice(env, device_id)
    try:
        by_mqtt = device.get(name)[name]
    finally:
        device.close()
    return {
        "http": env.http_read(device_id, name),
        "hardware": by_hardware,
        "mqtt": by_mqtt,
        "platform": env.platform(device_id).get(name),
    }


def same_everywhere(text: str, platform: object = None) -> dict[str, object]:
    return {"http": text, "hardware": text, "mqtt": text,
            "platform": text if platform is None else platform}  # fmt: skip


# reading -------------------------------------------------------------------------------------


def test_defaults_and_own_values_read_the_same_everywhere(env: Env) -> None:
    # own values from the fleet file
    assert read_everywhere(env, READER, "Serial Number") == same_everywhere("WS-0001")
    assert read_everywhere(env, READER, "Site") == same_everywhere("South")
    assert read_everywhere(env, READER, "Weight") == same_everywhere("42.5", 42.5)
    # defaults, and nothing (empty text; left out of the Platform's answer) without one
    assert read_everywhere(env, HTTP_WRITER, "Site") == same_everywhere("North")
    assert read_everywhere(env, HTTP_WRITER, "Weight") == same_everywhere("10", 10)
    assert read_everywhere(env, HTTP_WRITER, "Contact") == {
        "http": "", "hardware": "", "mqtt": "", "platform": None}  # fmt: skip
    assert env.platform(READER) == {"Serial Number": "WS-0001", "Site": "South", "Weight": 42.5}
    assert env.platform(HTTP_WRITER) == {"Site": "North", "Weight": 10}
    # the device HTTP API by id, and MQTT several at once
    assert env.http_get(READER, metaFieldId=str(SERIAL)).text == "WS-0001"
    device = MqttDevice(env, READER)
    try:
        assert device.get("Site", "Serial Number", "Contact") == {
            "Site": "South", "Serial Number": "WS-0001", "Contact": ""}  # fmt: skip
    finally:
        device.close()


def test_template_metafields(env: Env) -> None:
    for template in (50, 51):  # a variant has its root product's metafields
        response = env.admin.get(TEMPLATE_FIELDS, templateId=template)
        assert response.status_code == 200, response.text
        assert response.json() == [
            {"id": 1, "name": "Serial Number", "type": "Text", "max": 40},
            {"id": 2, "name": "Site", "type": "List", "default": "North",
             "options": ["North", "South"]},
            {"id": 3, "name": "Weight", "type": "Number", "default": 10, "min": 0, "max": 100},
            {"id": 4, "name": "Contact", "type": "Email"},
            {"id": 5, "name": "Place", "type": "Location"},
        ]  # fmt: skip
    assert_error(env.admin.get(TEMPLATE_FIELDS, templateId=999), 404, "Template not found.")
    assert env.admin.get(TEMPLATE_FIELDS).status_code == 400
    # templates need PRODUCT_VIEW: viewing devices is not enough
    assert_error(env.auditor.get(TEMPLATE_FIELDS, templateId=50), 403)


# writing -------------------------------------------------------------------------------------


def test_http_writes_are_read_everywhere(env: Env) -> None:
    assert env.http_update(HTTP_WRITER, metaFieldName="Site", value="South").status_code == 200
    by_id = env.http_update(HTTP_WRITER, metaFieldId=str(WEIGHT), value=" 7.50 ")
    assert by_id.status_code == 200 and by_id.text == ""
    assert env.http_update(HTTP_WRITER, metaFieldName="Place", value="51.5,-0.25").status_code == (
        200
    )
    assert read_everywhere(env, HTTP_WRITER, "Site") == same_everywhere("South")
    assert read_everywhere(env, HTTP_WRITER, "Weight") == same_everywhere("7.5", 7.5)
    assert read_everywhere(env, HTTP_WRITER, "Place") == same_everywhere("51.5 -0.25")


def test_hardware_writes_are_read_everywhere(env: Env) -> None:
    device = Hardware(env, HW_WRITER)
    try:
        assert device.set("Serial Number", "HW-0503") == OK
        assert device.set("Contact", "ops@meta.test") == OK
        assert device.set("Weight", "100") == OK
        assert device.get("Serial Number") == "HW-0503"
    finally:
        device.close()
    assert read_everywhere(env, HW_WRITER, "Serial Number") == same_everywhere("HW-0503")
    assert read_everywhere(env, HW_WRITER, "Contact") == same_everywhere("ops@meta.test")
    assert read_everywhere(env, HW_WRITER, "Weight") == same_everywhere("100", 100)


def test_mqtt_writes_are_read_everywhere(env: Env) -> None:
    device = MqttDevice(env, MQTT_WRITER)
    try:
        device.publish("meta/Site", "South")
        device.publish("meta/Serial Number", "MQ-0504")
        # one connection's messages are handled in order: the value is stored before the get
        assert device.get("Serial Number") == {"Serial Number": "MQ-0504"}
    finally:
        device.close()
    assert read_everywhere(env, MQTT_WRITER, "Serial Number") == same_everywhere("MQ-0504")
    assert read_everywhere(env, MQTT_WRITER, "Site") == same_everywhere("South")


def test_platform_writes_are_read_everywhere(env: Env) -> None:
    assert env.post(env.admin, API_WRITER, SITE, "South").status_code == 204
    assert env.post(env.admin, API_WRITER, WEIGHT, 0.25).status_code == 204
    assert env.post(env.admin, API_WRITER, SERIAL, 12345).status_code == 204  # as text
    assert env.post(env.admin, API_WRITER, PLACE, "-33.9 151.2").status_code == 204
    assert read_everywhere(env, API_WRITER, "Site") == same_everywhere("South")
    assert read_everywhere(env, API_WRITER, "Weight") == same_everywhere("0.25", 0.25)
    assert read_everywhere(env, API_WRITER, "Serial Number") == same_everywhere("12345")
    assert read_everywhere(env, API_WRITER, "Place") == same_everywhere("-33.9 151.2")


# refusals ------------------------------------------------------------------------------------

BAD = [
    ("Weight", "heavy"),
    ("Weight", "101"),
    ("Weight", "-1"),
    ("Site", "East"),
    ("Site", "north"),
    ("Contact", "not-an-email"),
    ("Contact", "a@b"),
    ("Place", "91 0"),
    ("Place", "somewhere"),
    ("Serial Number", "x" * 41),
]
IDS = {name: field_id for field_id, name in NAMES.items()}


def assert_unchanged(env: Env) -> None:
    assert env.platform(REFUSED) == {"Site": "North", "Weight": 10}


def test_refused_values_over_http(env: Env) -> None:
    for name, value in BAD:
        message = assert_error(env.http_update(REFUSED, metaFieldName=name, value=value), 400)
        assert message.startswith("Wrong value: "), message
    assert_error(env.http_update(REFUSED, metaFieldName="Nope", value="1"), 400,
                 "MetaField doesn't exist.")  # fmt: skip
    assert_error(env.http_update(REFUSED, metaFieldId="x", value="1"), 400,
                 "Wrong metaField format.")  # fmt: skip
    both = env.http_update(REFUSED, metaFieldId="2", metaFieldName="Site", value="South")
    assert_error(both, 400, "Give either 'metaFieldId' or 'metaFieldName', not both.")
    assert_error(env.http_update(REFUSED, metaFieldName="Site"), 400, "Wrong value")
    assert_error(env.http_get(REFUSED, metaFieldId="99"), 400, "MetaField doesn't exist.")
    bad_token = httpx.get(env.server.url + GET_META, params={"token": "nope", "metaFieldId": "2"})
    assert_error(bad_token, 400, "Invalid token.")
    assert_unchanged(env)


def test_refused_values_over_hardware(env: Env) -> None:
    device = Hardware(env, REFUSED)
    try:
        for name, value in BAD:
            assert device.set(name, value) == ILLEGAL_COMMAND_BODY, (name, value)
        assert device.set("Nope", "1") == ILLEGAL_COMMAND_BODY
        command, status, _ = device.send(INTERNAL, b"meta\0get\0Nope")
        assert (command, status) == (RESPONSE, ILLEGAL_COMMAND_BODY)
        command, status, _ = device.send(INTERNAL, b"meta\0drop\0Site")
        assert (command, status) == (RESPONSE, ILLEGAL_COMMAND_BODY)
        assert device.get("Site") == "North"  # the connection is still usable
    finally:
        device.close()
    assert_unchanged(env)


def test_refused_values_over_mqtt(env: Env) -> None:
    # diagnostics are limited to 10 a second per connection: a few on each
    for chunk in (BAD[:5], BAD[5:]):
        device = MqttDevice(env, REFUSED)
        try:
            for name, value in chunk:
                device.publish(f"meta/{name}", value)
                diag = device.diag()
                assert diag.startswith(f"meta/{name}: {name}: "), diag
        finally:
            device.close()
    device = MqttDevice(env, REFUSED)
    try:
        device.publish("meta/Nope", "1")
        assert device.diag().startswith("meta/Nope: ")
        device.publish("get/meta", "Nope,Site")
        assert device.diag() == "get/meta: no metafield named 'Nope'."
        assert device.next("downlink/meta/") == ("downlink/meta/Site", b"North")
    finally:
        device.close()
    assert_unchanged(env)


def test_refused_values_over_the_platform_api(env: Env) -> None:
    for name, value in BAD:
        message = assert_error(env.post(env.admin, REFUSED, IDS[name], value), 400)
        assert message.startswith("The provided value for metafield is invalid. "), message
    assert_error(env.post(env.admin, REFUSED, WEIGHT, 500), 400)
    assert_error(env.post(env.admin, REFUSED, 99, "1"), 404, "Meta field is not found.")
    missing = env.admin.post(FIELD, {"deviceId": REFUSED, "metaFieldId": SITE})
    assert_error(missing, 400)
    assert_unchanged(env)


# permissions ---------------------------------------------------------------------------------


def test_permissions(env: Env) -> None:
    # an Auditor views but does not control
    assert env.auditor.get(FIELD, deviceId=PERMITTED).status_code == 200
    assert_error(env.post(env.auditor, PERMITTED, SITE, "South"), 403)
    # a User sees and controls only the devices they own
    assert_error(env.user.get(FIELD, deviceId=PERMITTED), 404)
    assert_error(env.post(env.user, PERMITTED, SITE, "South"), 404)
    assert env.post(env.user, OWNED, SITE, "South").status_code == 204
    owned = env.user.get(FIELD, deviceId=OWNED).json()
    assert {item["name"]: item.get("value") for item in owned}["Site"] == "South"
    assert env.platform(PERMITTED) == {"Site": "North", "Weight": 10}
    # control without any view permission is not enough, as elsewhere in the API
    blind = Api(env.server.url, password_token(env.server.url, "blind@meta.test"))
    try:
        assert_error(blind.get(FIELD, deviceId=PERMITTED), 403)
        assert_error(env.post(blind, PERMITTED, SITE, "South"), 403)
        assert_error(blind.get(TEMPLATE_FIELDS, templateId=50), 403)
    finally:
        blind.close()
    assert env.user.get(TEMPLATE_FIELDS, templateId=50).status_code == 200
    # another organization's devices and templates are not found
    assert_error(env.admin.get(FIELD, deviceId=FOREIGN), 404)
    assert_error(env.post(env.admin, FOREIGN, 1, "mine"), 404)
    assert_error(env.admin.get(TEMPLATE_FIELDS, templateId=60), 404, "Template not found.")
    assert_error(env.admin.get(FIELD, deviceId=999_999), 404)
    # and without a token, nothing
    assert httpx.get(env.server.url + FIELD, params={"deviceId": OWNED}).status_code == 401
    # the other organization still reads its own value
    foreign = Api(env.server.url, client_token(env.server.url, OTHER_CLIENT))
    try:
        answer = foreign.get(FIELD, deviceId=FOREIGN)
        assert answer.status_code == 200, answer.text
        assert answer.json() == [{"id": 1, "name": "Site", "value": "elsewhere"}]
        assert_error(foreign.get(FIELD, deviceId=PERMITTED), 404)
        assert_error(foreign.get(TEMPLATE_FIELDS, templateId=50), 404)
    finally:
        foreign.close()


# the live stream -----------------------------------------------------------------------------


def metadata_events(listener: Listener, count: int) -> list[tuple[str, dict[str, object]]]:
    """The next `count` `meta` events (devices connecting add ONLINE and OFFLINE events)."""
    found: list[tuple[str, dict[str, object]]] = []
    while len(found) < count:
        kind, data = listener.next()
        if kind == "meta":
            found.append((kind, data))
    return found


def test_changes_are_sent_on_the_live_stream(env: Env) -> None:
    listener = Listener(env.server.url, password_token(env.server.url, "auditor@meta.test"),
                        {"deviceIds": str(LIVE)})  # fmt: skip
    try:
        assert env.post(env.admin, LIVE, WEIGHT, "12.5").status_code == 204
        assert env.http_update(LIVE, metaFieldName="Site", value="South").status_code == 200
        assert_error(env.http_update(LIVE, metaFieldName="Site", value="East"), 400)  # not sent
        hardware = Hardware(env, LIVE)
        try:
            assert hardware.set("Place", "1,2") == OK
        finally:
            hardware.close()
        device = MqttDevice(env, LIVE)
        try:
            device.publish("meta/Serial Number", "LIVE-1")
        finally:
            device.close()
        seen = metadata_events(listener, 4)
    finally:
        listener.close()
    assert seen == [
        ("meta", {"deviceId": LIVE, "id": WEIGHT, "name": "Weight", "value": 12.5}),
        ("meta", {"deviceId": LIVE, "id": SITE, "name": "Site", "value": "South"}),
        ("meta", {"deviceId": LIVE, "id": PLACE, "name": "Place", "value": "1 2"}),
        ("meta", {"deviceId": LIVE, "id": SERIAL, "name": "Serial Number", "value": "LIVE-1"}),
    ]


def test_the_live_stream_leaves_out_devices_the_user_does_not_see(env: Env) -> None:
    listener = Listener(env.server.url, password_token(env.server.url, "user@meta.test"))
    try:
        assert env.post(env.admin, PERMITTED, SERIAL, "hidden").status_code == 204
        assert env.post(env.admin, OWNED, SERIAL, "shown").status_code == 204
        seen = metadata_events(listener, 1)
    finally:
        listener.close()
    assert seen == [("meta", {"deviceId": OWNED, "id": SERIAL, "name": "Serial Number",
                                     "value": "shown"})]  # fmt: skip


# apply ---------------------------------------------------------------------------------------


def test_apply_keeps_values_the_file_does_not_name(env: Env) -> None:
    assert env.platform(APPLIED) == {"Serial Number": "WS-0509", "Site": "South", "Weight": 10}
    assert env.http_update(APPLIED, metaFieldName="Weight", value="55").status_code == 200
    assert env.post(env.admin, APPLIED, CONTACT, "ops@meta.test").status_code == 204
    assert env.post(env.admin, APPLIED, SERIAL, "changed by the API").status_code == 204
    device = Hardware(env, APPLIED)
    try:
        assert device.set("Site", "North") == OK
    finally:
        device.close()
    # the same file again: the values it names are set again, the others stay
    # (a server sees a change another process commits within its catalog's re-check period)
    apply_fleet(env.server.data_dir, env.fleet_path)
    again = {"Serial Number": "WS-0509", "Site": "South", "Weight": 55, "Contact": "ops@meta.test"}
    wait_for("the file's values again", lambda: env.platform(APPLIED) == again)
    # a file naming other metafields: those are set, nothing is deleted
    env.fleet_path.write_text(fleet({"Place": "10 20", "Weight": 3}))
    apply_fleet(env.server.data_dir, env.fleet_path)
    other = {
        "Serial Number": "WS-0509", "Site": "South", "Weight": 3, "Contact": "ops@meta.test",
        "Place": "10 20",
    }  # fmt: skip
    wait_for("the other file's values", lambda: env.platform(APPLIED) == other)
    assert env.http_read(APPLIED, "Weight") == "3"
    assert env.platform(READER)["Serial Number"] == "WS-0001"


def test_a_device_moved_to_another_product_reads_none_of_its_old_values(env: Env) -> None:
    assert env.post(env.admin, MOVED, SERIAL, "S-MOVED").status_code == 204
    env.fleet_path.write_text(fleet(FIRST_APPLIED, moved_product=52))
    applied = pinbase("apply", str(env.fleet_path), "--data-dir", str(env.server.data_dir))
    assert applied.returncode == 0, applied.stderr
    said = "deleted the metadata values of devices moved to another product: 511"
    assert said in applied.stdout.replace("\n", " ")
    # the server sees the change within its catalog's re-check period
    gate = [{"id": SERIAL, "name": "Gate Code", "value": "G-1"}]
    wait_for(
        "the device in its new product", lambda: env.admin.get(FIELD, deviceId=MOVED).json() == gate
    )
    # moved back without a value in the file: the Gate's value is not read as a serial number
    env.fleet_path.write_text(fleet(FIRST_APPLIED))
    apply_fleet(env.server.data_dir, env.fleet_path)

    def moved_back() -> bool:
        fields = env.admin.get(FIELD, deviceId=MOVED).json()
        return [field["name"] for field in fields] == [NAMES[i] for i in sorted(NAMES)]

    wait_for("the device back in its product", moved_back)
    assert "Serial Number" not in env.platform(MOVED)
    assert env.http_read(MOVED, "Serial Number") == ""


@pytest.mark.own_backends
@pytest.mark.skipif(not POSTGRES, reason="needs PINBASE_TEST_POSTGRES")
def test_processes_share_values_and_the_stream(tmp_path: Path) -> None:
    url = fresh_database(f"meta_{os.getpid()}_{time.monotonic_ns()}")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet(FIRST_APPLIED))
    assert pinbase("apply", str(path), "--database", url).returncode == 0
    servers = [Server(tmp_path / name, "--database", url).start() for name in ("a", "b")]
    try:
        first, second = servers
        listener = Listener(second.url, password_token(second.url, "admin@meta.test"),
                            {"deviceIds": str(LIVE)})  # fmt: skip
        try:
            written = httpx.get(
                first.url + UPDATE_META,
                params={"token": token_of(LIVE), "metaFieldName": "Site", "value": "South"},
            )
            assert written.status_code == 200, written.text
            # the other process reads it at once, and its stream carries it
            read = httpx.get(
                second.url + GET_META, params={"token": token_of(LIVE), "metaFieldId": str(SITE)}
            )
            assert read.text == "South"
            assert metadata_events(listener, 1) == [
                ("meta", {"deviceId": LIVE, "id": SITE, "name": "Site", "value": "South"})
            ]
        finally:
            listener.close()
    finally:
        for server in servers:
            server.stop()
