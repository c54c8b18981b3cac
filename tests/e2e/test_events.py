"""Device events end to end: a real `pinbase serve` with the hardware and MQTT listeners on;
events logged over raw hardware frames, paho-mqtt and the device HTTP API, read back on the
timeline, triggered and resolved through the Organization API, and seen on the live stream.

The limit of one event per second per code is tested with an injected clock (tests/unit and
tests/store); here only the daily limit is, with a product of 101 event codes, which needs no
timing.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import BlynkLib  # type: ignore[import-untyped]
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
    assert_error,
    device_server,
    pinbase,
    wait_for,
)

CLIENT = ("events-backend", "events-secret-0123456789abcdef")
PASSWORD = "events-password-1"
TIMELINE = "/api/v1/organization/device/timeline"
TRIGGER = "/api/v1/organization/device/trigger-event"
RESOLVE = "/api/v1/organization/device/resolve-event"
TEMPLATE_EVENTS = "/api/v1/organization/template/events"
LOG_EVENT = "/external/api/logEvent"
DEADLINE = 30.0  # bounds a wait, never decides a result

# hardware commands and statuses, spelled out rather than imported from the code under test
RESPONSE, LOGIN, EVENT_LOG, EVENT_CLEAR = 0, 2, 64, 65
OK, QUOTA_LIMIT, ILLEGAL_COMMAND_BODY = 200, 1, 11

HTTP_DEVICE, HW_DEVICE, MQTT_DEVICE, API_DEVICE, LIVE_DEVICE = 201, 202, 203, 204, 205
OWNED, LIMITED, PRESENCE, PAGED, HIDDEN, BLYNKLIB = 206, 207, 208, 209, 210, 211


def token_of(device_id: int) -> str:
    return f"EventsTestToken{device_id:017d}"


EVENTS = [
    {"id": 1, "code": "high_temp", "name": "High temperature", "type": "WARNING",
     "description": "Temperature above the limit", "timeline": True,
     "notify": {"email": ["owner", "ops@events.test"], "period": 300}},
    {"id": 2, "code": "door_open", "name": "Door open", "type": "INFORMATION",
     "description": "The door was opened"},
    {"id": 3, "code": "hidden", "name": "Hidden", "type": "CRITICAL", "timeline": False},
]  # fmt: skip


def fleet() -> str:
    users = [
        ("admin@events.test", "Admin"),
        ("auditor@events.test", "Auditor"),
        ("user@events.test", "User"),
    ]
    devices = [
        {"id": d, "name": f"Device {d}", "product": 30, "token": token_of(d)}
        for d in (
            HTTP_DEVICE,
            HW_DEVICE,
            MQTT_DEVICE,
            API_DEVICE,
            LIVE_DEVICE,
            PRESENCE,
            PAGED,
            HIDDEN,
            BLYNKLIB,
        )
    ]
    devices.append({"id": OWNED, "name": "Owned", "product": 31, "token": token_of(OWNED),
                    "owner": "user@events.test"})  # fmt: skip
    devices.append({"id": LIMITED, "name": "Chatty", "product": 32, "token": token_of(LIMITED)})
    document = {
        "organizations": [
            {
                "id": 3,
                "name": "Events Inc",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "roles": [{"name": "Auditor", "permissions": ["ORG_DEVICES_VIEW"]}],
                "users": [
                    {"email": email, "password": PASSWORD, "role": role} for email, role in users
                ],
                "products": [
                    {
                        "id": 30,
                        "name": "Sensor",
                        "events": EVENTS,
                        "variants": [{"id": 31, "name": "Sensor Pro"}],
                    },
                    {
                        "id": 32,
                        "name": "Chatty",
                        "events": [
                            {"id": n + 1, "code": f"e{n}", "name": f"E{n}", "type": "INFORMATION"}
                            for n in range(101)
                        ],
                    },
                ],
                "devices": devices,
            }
        ]
    }
    text: str = yaml.safe_dump(document)
    return text


def password_token(url: str, email: str) -> str:
    response = httpx.post(
        f"{url}/oauth2/token",
        data={"grant_type": "password", "username": email, "password": PASSWORD},
        auth=CLIENT,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


class Env:
    def __init__(self, server: Server, mqtt_port: int, hardware_port: int) -> None:
        self.server = server
        self.mqtt_port = mqtt_port
        self.hardware_port = hardware_port
        self.admin = Api(server.url, self.token("admin@events.test"))
        self.auditor = Api(server.url, self.token("auditor@events.test"))
        self.user = Api(server.url, self.token("user@events.test"))

    def token(self, email: str) -> str:
        return password_token(self.server.url, email)

    def timeline(self, device_id: int, **params: object) -> dict[str, Any]:
        response = self.admin.get(TIMELINE, deviceId=device_id, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def codes(self, device_id: int, **params: object) -> list[str]:
        return [item["eventCode"] for item in self.timeline(device_id, **params)["content"]]

    def log(self, device_id: int, **params: str) -> httpx.Response:
        return httpx.get(
            self.server.url + LOG_EVENT, params={"token": token_of(device_id), **params}
        )


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"events-{backend}")
    server = device_server(data_dir, fleet())
    env = Env(server, server.mqtt_port, server.hardware_port)
    try:
        yield env
    finally:
        for api in (env.admin, env.auditor, env.user):
            api.close()
        assert server.stop() == 0, Path(server.log).read_text()


# the device HTTP API -------------------------------------------------------------------------


def test_http_logs_events_with_blynks_answers(env: Env) -> None:
    assert env.log(HTTP_DEVICE, code="high_temp", description="41.5 °C").status_code == 200
    assert env.log(HTTP_DEVICE, code="door_open").status_code == 200  # the event's description
    assert_error(env.log(HTTP_DEVICE), 400, "Event code is not provided.")
    assert_error(env.log(HTTP_DEVICE, code=""), 400, "Event code is not provided.")
    unknown = "Can't find Event with this code in Product template"
    assert_error(env.log(HTTP_DEVICE, code="nope"), 400, unknown)
    assert_error(env.log(HTTP_DEVICE, code="x" * 5000), 400, unknown)
    long = env.log(HTTP_DEVICE, code="door_open", description="d" * 301)
    assert_error(long, 400, "Event description is longer than 300 characters.")
    bad = httpx.get(env.server.url + LOG_EVENT, params={"token": "nope", "code": "high_temp"})
    assert_error(bad, 400, "Invalid token.")

    page = env.timeline(HTTP_DEVICE)
    assert page["totalElements"] == 2
    newest, oldest = page["content"]
    assert newest["eventCode"] == "door_open"
    assert newest["description"] == "The door was opened"
    assert newest["eventType"] == "INFORMATION" and newest["eventId"] == 2
    assert oldest["eventCode"] == "high_temp" and oldest["description"] == "41.5 °C"
    assert oldest["isResolved"] is False and oldest["resolvedAt"] is None
    assert oldest["ts"] <= newest["ts"] and oldest["id"] < newest["id"]


def test_events_off_the_timeline_are_stored_but_not_listed(env: Env) -> None:
    assert env.log(HIDDEN, code="hidden", description="quiet").status_code == 200
    assert env.log(HIDDEN, code="door_open").status_code == 200
    assert env.codes(HIDDEN) == ["door_open"]


# the hardware protocol -----------------------------------------------------------------------


class Hardware:
    """A raw hardware connection: frames out, RESPONSE statuses back by message id."""

    def __init__(self, env: Env, device_id: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", env.hardware_port), timeout=DEADLINE)
        self.next_id = 0
        self.buffer = b""
        assert self.send(LOGIN, token_of(device_id).encode()) == OK

    def send(self, command: int, body: bytes) -> int:
        self.next_id += 1
        self.sock.sendall(struct.pack("!BHH", command, self.next_id, len(body)) + body)
        while True:
            while len(self.buffer) < 5:
                chunk = self.sock.recv(4096)
                assert chunk, "connection closed"
                self.buffer += chunk
            command, msg_id, length = struct.unpack("!BHH", self.buffer[:5])
            if command == RESPONSE:
                self.buffer = self.buffer[5:]
                if msg_id == self.next_id:
                    return length
                continue
            while len(self.buffer) < 5 + length:
                self.buffer += self.sock.recv(4096)
            self.buffer = self.buffer[5 + length :]

    def close(self) -> None:
        self.sock.close()


def test_hardware_logs_and_resolves_events(env: Env) -> None:
    device = Hardware(env, HW_DEVICE)
    try:
        assert device.send(EVENT_LOG, b"high_temp\0too hot") == OK
        assert device.send(EVENT_LOG, b"door_open") == OK
        assert device.send(EVENT_LOG, b"nope\0x") == ILLEGAL_COMMAND_BODY
        assert device.send(EVENT_LOG, b"door_open\0" + b"d" * 301) == ILLEGAL_COMMAND_BODY
        assert device.send(EVENT_LOG, b"\xff\xfe") == ILLEGAL_COMMAND_BODY
        assert device.send(EVENT_CLEAR, b"high_temp") == OK
        assert device.send(EVENT_CLEAR, b"nope") == ILLEGAL_COMMAND_BODY
    finally:
        device.close()
    items = env.timeline(HW_DEVICE, eventType="WARNING")["content"]
    assert [(i["eventCode"], i["description"], i["isResolved"]) for i in items] == [
        ("high_temp", "too hot", True)
    ]
    assert items[0]["resolvedAt"] >= items[0]["ts"] and items[0]["resolvedComment"] is None
    assert env.codes(HW_DEVICE, eventType="INFORMATION") == ["door_open"]


def test_the_blynk_library_logs_events(env: Env) -> None:
    """blynk-library-python's `log_event`, its loop in a thread of its own."""
    blynk = BlynkLib.Blynk(token_of(BLYNKLIB), server="127.0.0.1", port=env.hardware_port)
    calls: queue.Queue[Callable[[Any], object]] = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                blynk.run()
                while not calls.empty():
                    calls.get()(blynk)
        except Exception as exc:  # the library's own crash, kept for the test
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        calls.put(lambda b: b.log_event("high_temp", "from BlynkLib"))
        calls.put(lambda b: b.log_event("door_open"))
        wait_for("both events", lambda: len(env.codes(BLYNKLIB, eventType="WARNING")) == 1
                 and len(env.codes(BLYNKLIB, eventType="INFORMATION")) == 1)  # fmt: skip
        (warning,) = env.timeline(BLYNKLIB, eventType="WARNING")["content"]
        assert warning["description"] == "from BlynkLib"
        assert not errors, errors
    finally:
        stop.set()
        thread.join(DEADLINE)
        blynk.disconnect()
        blynk.conn.close()


def test_online_and_offline_are_recorded_once(env: Env) -> None:
    first = Hardware(env, PRESENCE)
    wait_for("ONLINE", lambda: env.codes(PRESENCE) == ["ONLINE"])
    second = Hardware(env, PRESENCE)  # replaces the first connection: still online
    assert first.sock.recv(4096) == b""  # the server closed the replaced connection
    first.close()
    second.close()
    wait_for("OFFLINE", lambda: env.codes(PRESENCE) == ["OFFLINE", "ONLINE"])
    assert env.timeline(PRESENCE, eventType="ONLINE")["content"][0]["eventId"] == -1
    # a new connection is a new ONLINE
    third = Hardware(env, PRESENCE)
    wait_for("ONLINE again", lambda: env.codes(PRESENCE)[0] == "ONLINE")
    third.close()
    wait_for("OFFLINE again", lambda: env.codes(PRESENCE) == ["OFFLINE", "ONLINE"] * 2)


# MQTT ----------------------------------------------------------------------------------------


class MqttDevice:
    def __init__(self, env: Env, device_id: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set("device", token_of(device_id))
        self.client.reconnect_delay_set(min_delay=60, max_delay=120)
        self.connected = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_connect = lambda c, u, f, reason, p: self.connected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", env.mqtt_port, keepalive=60)
        self.client.loop_start()
        assert self.connected.wait(DEADLINE), "not connected"

    def publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(DEADLINE)
        assert info.is_published(), "no PUBACK"

    def diag(self) -> bytes:
        while True:
            topic, payload = self.messages.get(timeout=DEADLINE)
            if topic == "downlink/diag":
                return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_event_topics(env: Env) -> None:
    device = MqttDevice(env, MQTT_DEVICE)
    try:
        device.publish("event/high_temp", "hot from MQTT")
        device.publish("event/door_open", "")  # empty: the event's description
        device.publish("event/nope", "x")
        assert device.diag() == b"event/nope: Can't find Event with this code in Product template"
        device.publish("event/door_open", "d" * 301)
        assert device.diag().startswith(b"event/door_open: Event description is longer")
    finally:
        device.close()
    items = env.timeline(MQTT_DEVICE, eventType="WARNING")["content"]
    assert [(i["eventCode"], i["description"]) for i in items] == [("high_temp", "hot from MQTT")]
    items = env.timeline(MQTT_DEVICE, eventType="INFORMATION")["content"]
    assert [(i["eventCode"], i["description"]) for i in items] == [
        ("door_open", "The door was opened")
    ]


# the Organization API --------------------------------------------------------------------------


def test_trigger_and_resolve_through_the_api(env: Env) -> None:
    body = {"deviceId": API_DEVICE, "eventCode": "high_temp", "eventDescription": "from the API"}
    assert env.admin.post(TRIGGER, body).status_code == 204
    info = {"deviceId": API_DEVICE, "eventCode": "door_open"}
    assert env.admin.post(TRIGGER, info).status_code == 204
    missing = env.admin.post(TRIGGER, {"deviceId": API_DEVICE, "eventCode": "nope"})
    assert_error(missing, 404, "Event with provided code is not found.")
    assert env.admin.post(TRIGGER, {"deviceId": API_DEVICE}).status_code == 400
    too_long = {**info, "eventDescription": "d" * 301}
    assert env.admin.post(TRIGGER, too_long).status_code == 400
    assert env.admin.post(TRIGGER, {**info, "deviceId": 999_999}).status_code == 404

    warning, information = (
        env.timeline(API_DEVICE, eventType=kind)["content"][0]
        for kind in ("WARNING", "INFORMATION")
    )
    resolve = {"deviceId": API_DEVICE, "logEventId": warning["id"], "comment": "fan fixed"}
    assert env.admin.post(RESOLVE, resolve).status_code == 204
    assert_error(env.admin.post(RESOLVE, resolve), 400, "The event is already resolved.")
    other = {"deviceId": API_DEVICE, "logEventId": information["id"]}
    assert_error(env.admin.post(RESOLVE, other), 400)
    assert env.admin.post(RESOLVE, {"deviceId": API_DEVICE, "logEventId": 2**40}).status_code == (
        404
    )
    wrong_device = {"deviceId": HTTP_DEVICE, "logEventId": warning["id"]}
    assert env.admin.post(RESOLVE, wrong_device).status_code == 404
    resolved = env.timeline(API_DEVICE, eventType="WARNING")["content"][0]
    assert resolved["isResolved"] is True and resolved["resolvedComment"] == "fan fixed"


def test_timeline_paging_and_filters(env: Env) -> None:
    for code in ("door_open", "high_temp"):
        assert env.log(PAGED, code=code).status_code == 200
    everything = env.timeline(PAGED)
    assert everything["totalElements"] >= 2
    first = env.timeline(PAGED, size=1, page=0)
    second = env.timeline(PAGED, size=1, page=1)
    assert first["totalElements"] == everything["totalElements"]
    assert [first["content"][0], second["content"][0]] == everything["content"][:2]
    newest = everything["content"][0]["ts"]
    assert env.timeline(PAGED, **{"from": newest + 1})["content"] == []
    assert env.timeline(PAGED, to=newest)["totalElements"] == everything["totalElements"]
    for params in ({"size": 0}, {"size": 101}, {"page": -1}, {"eventType": "NOPE"}):
        assert env.admin.get(TIMELINE, deviceId=PAGED, **params).status_code == 400
    empty = env.admin.get(TIMELINE, deviceId=PAGED, **{"from": 2, "to": 1})
    assert empty.json() == {"totalElements": 0, "content": []}
    assert env.admin.get(TIMELINE, deviceId=999_999).status_code == 404
    assert env.admin.get(TIMELINE).status_code == 400


def test_permissions(env: Env) -> None:
    # reading needs a view permission on the device; triggering and resolving need control
    assert env.auditor.get(TIMELINE, deviceId=API_DEVICE).status_code == 200
    trigger = {"deviceId": API_DEVICE, "eventCode": "door_open"}
    assert env.auditor.post(TRIGGER, trigger).status_code == 403
    assert env.auditor.post(RESOLVE, {"deviceId": API_DEVICE, "logEventId": 1}).status_code == 403
    # a User sees (and controls) only the devices they own
    assert env.user.get(TIMELINE, deviceId=API_DEVICE).status_code == 404
    assert env.user.post(TRIGGER, trigger).status_code == 404
    assert env.user.post(TRIGGER, {"deviceId": OWNED, "eventCode": "door_open"}).status_code == 204
    assert [i["eventCode"] for i in env.user.get(TIMELINE, deviceId=OWNED).json()["content"]] == [
        "door_open"
    ]
    assert httpx.get(env.server.url + TIMELINE, params={"deviceId": OWNED}).status_code == 401


def test_template_events(env: Env) -> None:
    for template in (30, 31):  # a variant has its root product's events
        response = env.admin.get(TEMPLATE_EVENTS, templateId=template)
        assert response.status_code == 200, response.text
        listed = response.json()
        assert [(e["id"], e["eventCode"], e["type"]) for e in listed] == [
            (-1, "ONLINE", "ONLINE"),
            (-2, "OFFLINE", "OFFLINE"),
            (1, "high_temp", "WARNING"),
            (2, "door_open", "INFORMATION"),
            (3, "hidden", "CRITICAL"),
        ]
        assert listed[2]["description"] == "Temperature above the limit"
        assert [e["showInTimeline"] for e in listed[2:]] == [True, True, False]
    assert_error(env.admin.get(TEMPLATE_EVENTS, templateId=999), 404, "Template not found.")
    assert env.admin.get(TEMPLATE_EVENTS).status_code == 400
    # templates need PRODUCT_VIEW: viewing devices is not enough
    assert_error(env.auditor.get(TEMPLATE_EVENTS, templateId=30), 403)


def test_live_stream_carries_events_and_resolutions(env: Env) -> None:
    listener = Listener(
        env.server.url, env.token("admin@events.test"), {"deviceIds": str(LIVE_DEVICE)}
    )
    try:
        body = {"deviceId": LIVE_DEVICE, "eventCode": "high_temp", "eventDescription": "live"}
        assert env.admin.post(TRIGGER, body).status_code == 204
        assert env.log(LIVE_DEVICE, code="hidden").status_code == 200  # not on the timeline
        kind, logged = listener.next()
        assert kind == "event"
        assert logged["eventCode"] == "high_temp" and logged["description"] == "live"
        assert logged["isResolved"] is False and logged["deviceId"] == LIVE_DEVICE
        resolve = {"deviceId": LIVE_DEVICE, "logEventId": logged["id"], "comment": "ok"}
        assert env.admin.post(RESOLVE, resolve).status_code == 204
        kind, resolved = listener.next()
        assert kind == "event" and resolved["id"] == logged["id"]
        assert resolved["isResolved"] is True and resolved["resolvedComment"] == "ok"
    finally:
        listener.close()


# limits --------------------------------------------------------------------------------------


def test_a_hundred_events_a_day(env: Env) -> None:
    for n in range(100):
        response = env.log(LIMITED, code=f"e{n}")
        assert response.status_code == 200, response.text
    over = env.log(LIMITED, code="e100")
    assert_error(over, 429, "Too many events from this device today (at most 100).")
    trigger = env.admin.post(TRIGGER, {"deviceId": LIMITED, "eventCode": "e100"})
    assert trigger.status_code == 429
    device = Hardware(env, LIMITED)
    try:
        assert device.send(EVENT_LOG, b"e100") == QUOTA_LIMIT
    finally:
        device.close()
    mqtt_device = MqttDevice(env, LIMITED)
    try:
        mqtt_device.publish("event/e100", "")
        assert mqtt_device.diag() == b"event/e100: " + over.json()["error"]["message"].encode()
    finally:
        mqtt_device.close()
    # the device's connections were recorded anyway: system events are never refused
    wait_for("OFFLINE", lambda: env.codes(LIMITED, eventType="OFFLINE"))
    assert env.timeline(LIMITED, eventType="INFORMATION")["totalElements"] == 100


# several processes on one PostgreSQL database ---------------------------------------------------


@pytest.mark.own_backends
@pytest.mark.skipif(not POSTGRES, reason="needs PINBASE_TEST_POSTGRES")
def test_processes_share_the_timeline_the_limits_and_the_stream(tmp_path: Path) -> None:
    url = fresh_database(f"ev_{os.getpid()}_{time.monotonic_ns()}")
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet())
    assert pinbase("apply", str(path), "--database", url).returncode == 0
    servers = [Server(tmp_path / name, "--database", url).start() for name in ("a", "b")]
    try:
        first, second = servers
        token = password_token(first.url, "admin@events.test")
        listener = Listener(second.url, token, {"deviceIds": str(LIMITED)})
        try:
            for n in range(100):  # the daily limit counts both processes' events
                server = servers[n % 2]
                response = httpx.get(
                    server.url + LOG_EVENT, params={"token": token_of(LIMITED), "code": f"e{n}"}
                )
                assert response.status_code == 200, response.text
            for server in servers:
                over = httpx.get(
                    server.url + LOG_EVENT, params={"token": token_of(LIMITED), "code": "e100"}
                )
                assert over.status_code == 429
            # the stream of one process carries the events logged through the other
            seen = {listener.next()[1]["eventCode"] for _ in range(100)}
            assert seen == {f"e{n}" for n in range(100)}
        finally:
            listener.close()
    finally:
        for server in servers:
            server.stop()
