"""The MQTT device API end to end: a real `pinbase serve`, paho-mqtt as the device.

Every test uses its own device, so tests never see each other's values. Waits are bounded by
generous deadlines; none of them decides a result by sleeping.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from helpers import (
    Api,
    Listener,
    Server,
    apply_fleet_text,
    client_token,
    free_port,
    history_of,
    now_ms,
    weather_fleet,
)
from pinbase.devices.mqtt.codec import encode_remaining_length

CLIENT = ("mqtt-backend", "mqtt-secret-0123456789abcdef")
DEADLINE = 15.0  # seconds; bounds a wait, never decides a result by itself

VALUES = "/api/v2/organization/device/datastreams"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
PROPERTY = "/api/v1/organization/device/datastream/property"
STATUS = "/api/v1/organization/device/status"

TEMPERATURE, HUMIDITY, STATUS_DS, POSITION, MODE = 1, 2, 3, 4, 5
FIRST_DEVICE = 301
DEVICES = 60


def token_of(device_id: int) -> str:
    """The 32-character auth token the test fleet gives a device."""
    return f"MqttTestToken{device_id:019d}"


FLEET_YAML = weather_fleet(
    "MQTT Farms",
    CLIENT,
    {d: token_of(d) for d in range(FIRST_DEVICE, FIRST_DEVICE + DEVICES)},
)


class Devices:
    """Hands out one unused fleet device per test."""

    def __init__(self) -> None:
        self._next = FIRST_DEVICE

    def take(self) -> int:
        device_id = self._next
        self._next += 1
        assert device_id < FIRST_DEVICE + DEVICES, "add devices to FLEET_YAML"
        return device_id


class Env:
    def __init__(self, server: Server, mqtt_port: int, token: str) -> None:
        self.server = server
        self.mqtt_port = mqtt_port
        self.token = token
        self.api = Api(server.url, token)
        self.devices = Devices()

    def status(self, device_id: int) -> dict[str, Any]:
        response = self.api.get(STATUS, deviceId=device_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def value(self, device_id: int, ds_id: int) -> Any:
        response = self.api.get(VALUES, deviceId=device_id, dataStreamIds=ds_id)
        assert response.status_code == 200, response.text
        (item,) = response.json()
        return item.get("value")

    def wait_for(self, what: str, check: Any, deadline: float = DEADLINE) -> Any:
        """Poll `check()` until it returns something truthy."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            result = check()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One server per store backend, with the MQTT listener on."""
    data_dir = tmp_path_factory.mktemp(f"mqtt-{backend}")
    apply_fleet_text(data_dir, FLEET_YAML)
    mqtt_port = free_port()
    server = Server(data_dir, "--mqtt-port", str(mqtt_port)).start()
    env = Env(server, mqtt_port, client_token(server.url, CLIENT))
    try:
        yield env
    finally:
        env.api.close()
        assert server.stop() == 0, Path(server.log).read_text()


class Device:
    """A paho-mqtt client as a Blynk MQTT device."""

    def __init__(
        self,
        env: Env,
        device_id: int,
        token: str | None = None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv311,
    ) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.username_pw_set("device", token if token is not None else token_of(device_id))
        self.client.reconnect_delay_set(min_delay=60, max_delay=120)
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.reason: Any = None
        self.connack_properties: Any = None
        self.disconnect_reason: Any = None
        self.acked: dict[int, Any] = {}
        """PUBACK reason codes (MQTT 5) by message id."""
        self.granted: list[Any] = []
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", env.mqtt_port, keepalive=60)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.reason = reason
        self.connack_properties = props
        (self.refused if reason.is_failure else self.connected).set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acked[mid] = reason

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reasons: list[Any], props: Any
    ) -> None:
        self.granted = reasons
        self.subscribed.set()

    def wait_connected(self) -> Device:
        assert self.connected.wait(DEADLINE), f"not connected: {self.reason}"
        return self

    def subscribe(self, topic_filter: str = "downlink/#", qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos)
        assert self.subscribed.wait(DEADLINE), "no SUBACK"

    def publish(self, topic: str, payload: str | bytes, qos: int = 1) -> Any:
        """Publish; at QoS 1 wait for the PUBACK and return its reason code (MQTT 5)."""
        info = self.client.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(DEADLINE)
            assert info.is_published(), "no PUBACK"
            return self.acked.get(info.mid)
        return None

    def expect(self, topic: str, deadline: float = DEADLINE) -> bytes:
        """The payload of the next message on `topic`; messages before it go to `seen`."""
        end = time.monotonic() + deadline
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message on {topic}; saw {self.seen}")
            try:
                got, payload = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append((got, payload))
            if got == topic:
                return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(env: Env) -> Iterator[list[Device]]:
    """Paho devices a test opens; each is disconnected when the test ends."""
    opened: list[Device] = []
    yield opened
    for device in opened:
        device.close()


def connect(
    env: Env,
    devices: list[Device],
    device_id: int,
    token: str | None = None,
    protocol: MQTTProtocolVersion = mqtt.MQTTv311,
) -> Device:
    device = Device(env, device_id, token, protocol)
    devices.append(device)
    return device


# a raw MQTT client, for what paho will not do ----------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_bytes(token: str, keep_alive: int = 60, level: int = 4) -> bytes:
    body = _string("MQTT") + bytes((level, 0xC2)) + keep_alive.to_bytes(2, "big")
    body += b"\x00" if level == 5 else b""  # MQTT 5: no properties
    body += _string("raw") + _string("device") + _string(token)
    return b"\x10" + encode_remaining_length(len(body)) + body


def raw_connect(env: Env, token: str, keep_alive: int = 60, level: int = 4) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", env.mqtt_port), timeout=DEADLINE)
    sock.sendall(connect_bytes(token, keep_alive, level))
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_packet(sock: socket.socket) -> bytes:
    """One whole packet the server sent."""
    head = recv_exactly(sock, 2)
    assert len(head) == 2, "closed"
    assert head[1] < 0x80, "only short packets are expected here"
    return head + recv_exactly(sock, head[1])


def wait_closed(sock: socket.socket) -> None:
    """Read until the server closes the connection (deadline: the socket timeout)."""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return
        if not chunk:
            return


# connecting ------------------------------------------------------------------------------


def test_connect_ok(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    connect(env, devices, device_id).wait_connected()
    status = env.wait_for("connected", lambda: (s := env.status(device_id))["connected"] and s)
    assert status["protocol"] == "mqtt"


def test_bad_token_is_refused_with_connack_4(env: Env, devices: list[Device]) -> None:
    device = connect(env, devices, env.devices.take(), token="X" * 32)
    assert device.refused.wait(DEADLINE), "no CONNACK"
    assert device.reason == "Bad user name or password"
    assert not device.connected.is_set()


def test_bad_credentials_on_the_wire(env: Env) -> None:
    device_id = env.devices.take()
    with raw_connect(env, "Y" * 32) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x04"
        wait_closed(sock)
    body = _string("MQTT") + bytes((4, 0xC2)) + (60).to_bytes(2, "big")
    body += _string("raw") + _string("someone") + _string(token_of(device_id))
    with socket.create_connection(("127.0.0.1", env.mqtt_port), timeout=DEADLINE) as sock:
        sock.sendall(b"\x10" + encode_remaining_length(len(body)) + body)
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x04"  # user name must be `device`
        wait_closed(sock)


def test_unsupported_protocol_level_is_connack_1(env: Env) -> None:
    with raw_connect(env, token_of(env.devices.take()), level=6) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x01"
        wait_closed(sock)


def test_second_connection_replaces_the_first(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    first = connect(env, devices, device_id).wait_connected()
    second = connect(env, devices, device_id).wait_connected()
    assert first.disconnected.wait(DEADLINE), "the first connection was not closed"
    assert not second.disconnected.is_set()
    second.publish("ds/Temperature", "12.5")
    assert env.value(device_id, TEMPERATURE) == 12.5
    assert env.status(device_id)["connected"] is True


def test_dropped_connection_marks_the_device_offline(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = Device(env, device_id).wait_connected()
    env.wait_for("connected", lambda: env.status(device_id)["connected"])
    device.client.loop_stop()  # no DISCONNECT: the TCP connection just ends
    sock = device.client.socket()
    assert isinstance(sock, socket.socket)
    sock.close()
    env.wait_for("offline", lambda: env.status(device_id)["connected"] is False, deadline=30)


def test_keep_alive_expiry_closes_the_connection(env: Env) -> None:
    device_id = env.devices.take()
    with raw_connect(env, token_of(device_id), keep_alive=1) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
        started = time.monotonic()
        wait_closed(sock)  # silent: the server closes after 1.5 x keep-alive
        assert time.monotonic() - started >= 1.0
    env.wait_for("offline", lambda: env.status(device_id)["connected"] is False)


def test_malformed_bytes_close_only_that_connection(env: Env, devices: list[Device]) -> None:
    good_id, bad_id = env.devices.take(), env.devices.take()
    good = connect(env, devices, good_id).wait_connected()
    with raw_connect(env, token_of(bad_id)) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(b"\x30\x05\x00\x09ds/")  # topic longer than the packet
        wait_closed(sock)
    with raw_connect(env, token_of(bad_id)) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(b"\x34\x00")  # QoS 2 is refused
        wait_closed(sock)
    with socket.create_connection(("127.0.0.1", env.mqtt_port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_closed(sock)
    good.publish("ds/Temperature", "30.5")
    assert env.value(good_id, TEMPERATURE) == 30.5
    assert not good.disconnected.is_set()
    assert env.status(good_id)["connected"] is True


# uplink ----------------------------------------------------------------------------------


def test_publish_qos0_and_qos1(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.publish("ds/Temperature", "21.5", qos=0)
    env.wait_for("the QoS 0 value", lambda: env.value(device_id, TEMPERATURE) == 21.5)
    device.publish("ds/Humidity", "40", qos=1)
    assert env.value(device_id, HUMIDITY) == 40  # durable once PUBACKed
    device.publish("ds/Temperature", "99", qos=1)  # clamped to max
    assert env.value(device_id, TEMPERATURE) == 85
    device.publish("ds/Position", "30.5,50.25")
    assert env.value(device_id, POSITION) == [30.5, 50.25]
    device.publish("ds/Position", b"31.5\x0051.25")  # Blynk's NUL-separated multi-value
    assert env.value(device_id, POSITION) == [31.5, 51.25]
    device.publish("ds/Status", "all good")
    assert env.value(device_id, STATUS_DS) == "all good"


def test_batch_ds(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.publish("batch_ds", '{"Temperature": 23.1, "Humidity": 72, "Position": [1.5, 2.5]}')
    assert env.value(device_id, TEMPERATURE) == 23.1
    assert env.value(device_id, HUMIDITY) == 72
    assert env.value(device_id, POSITION) == [1.5, 2.5]


def test_a_burst_keeps_every_value_in_history(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    start = int(time.time() * 1000) - 1000
    infos = [device.client.publish("ds/Humidity", str(i), qos=1) for i in range(1, 51)]
    for info in infos:
        info.wait_for_publish(DEADLINE)
        assert info.is_published()
    assert env.value(device_id, HUMIDITY) == 50
    window = {"from": start, "to": int(time.time() * 1000) + 60_000}
    response = env.api.get(
        HISTORY, deviceId=device_id, dataStreamId=HUMIDITY, order="asc", size=1000, **window
    )
    assert response.status_code == 200, response.text
    assert [point["value"] for point in response.json()["content"]] == list(range(1, 51))


def publish_bytes(topic: str, payload: str, packet_id: int | None = None) -> bytes:
    """One PUBLISH: QoS 1 with a packet id, else QoS 0."""
    body = _string(topic) + (packet_id.to_bytes(2, "big") if packet_id else b"") + payload.encode()
    return bytes((0x32 if packet_id else 0x30,)) + encode_remaining_length(len(body)) + body


def test_a_topic_repeated_in_one_packet_keeps_every_value_in_history(env: Env) -> None:
    device_id = env.devices.take()
    start = int(time.time() * 1000)
    with raw_connect(env, token_of(device_id)) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(b"".join(publish_bytes("ds/Humidity", str(i), i + 1) for i in range(60)))
        acks = recv_exactly(sock, 4 * 60)  # sent once the values are durable, in order
        assert acks == b"".join(b"\x40\x02" + (i + 1).to_bytes(2, "big") for i in range(60))
    assert env.value(device_id, HUMIDITY) == 59
    history = history_of(env.api, device_id, HUMIDITY, start)
    assert [value for _, value in history] == list(range(60))
    stamps = [ts for ts, _ in history]
    assert stamps == sorted(set(stamps))  # strictly increasing


def test_interleaved_repeated_topics_in_one_packet_all_reach_history(env: Env) -> None:
    device_id = env.devices.take()
    start = int(time.time() * 1000)
    packets = []
    for i in range(10):
        packets.append(publish_bytes("ds/Temperature", f"{i}.5"))
        packets.append(publish_bytes("batch_ds", f'{{"Status": "s{i}", "Mode": {i % 3}}}'))
    with raw_connect(env, token_of(device_id)) as sock:
        assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
        sock.sendall(b"".join(packets) + b"\xc0\x00")  # ... and a PINGREQ
        assert recv_exactly(sock, 2) == b"\xd0\x00"  # PINGRESP: everything before is stored
    assert env.value(device_id, TEMPERATURE) == 9.5
    assert env.value(device_id, STATUS_DS) == "s9"
    assert env.value(device_id, MODE) == 0
    assert [v for _, v in history_of(env.api, device_id, TEMPERATURE, start)] == [
        i + 0.5 for i in range(10)
    ]
    assert [v for _, v in history_of(env.api, device_id, STATUS_DS, start)] == [
        f"s{i}" for i in range(10)
    ]


def test_timestamped_batch_lands_in_history(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    base = int(time.time() * 1000) - 3_600_000
    device.publish("ds/Temperature/timestamped_batch", f"[[{base}, 20.5], [{base + 1000}, 21.5]]")
    response = env.api.get(
        HISTORY, deviceId=device_id, dataStreamId=TEMPERATURE, **{"from": base, "to": base + 1000}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "totalElements": 2,
        "content": [{"createdAt": base + 1000, "value": 21.5}, {"createdAt": base, "value": 20.5}],
    }
    assert env.value(device_id, TEMPERATURE) == 21.5


def test_property(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe()
    device.publish("ds/Temperature/prop/color", "#FF0000")
    response = env.api.get(PROPERTIES, deviceId=device_id, dataStreamIds=TEMPERATURE)
    assert response.status_code == 200, response.text
    assert response.json()[0]["properties"] == {"color": "#FF0000"}
    device.publish("ds/Temperature/prop/color", "not a colour")
    assert b"color" in device.expect("downlink/diag")
    response = env.api.get(PROPERTIES, deviceId=device_id, dataStreamIds=TEMPERATURE)
    assert response.json()[0]["properties"] == {"color": "#FF0000"}


def test_mismatched_value_stores_nothing(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.publish("ds/Humidity", "22.7")  # integer datastream: acknowledged, not stored
    assert device.expect("downlink/diag") == (
        b"ds/Humidity: Value doesn't match the Datastream data type."
    )
    device.publish("ds/Mode", "7")
    device.publish("ds/Nope", "1")
    device.publish("batch_ds", '{"Humidity": "wet"}')
    device.publish("ds/Temperature/timestamped_batch", '[[1, "hot"]]')
    for _ in range(4):
        device.expect("downlink/diag")
    assert env.value(device_id, HUMIDITY) is None
    assert env.value(device_id, MODE) is None
    assert env.value(device_id, TEMPERATURE) is None
    assert env.status(device_id)["connected"] is True


# downlink --------------------------------------------------------------------------------


def test_get_ds_and_get_ds_all(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    for ds_id, value in ((TEMPERATURE, 21.5), (STATUS_DS, "ok")):
        body = {"deviceId": device_id, "dataStreamId": ds_id, "value": value}
        assert env.api.post(UPDATE, body).status_code == 204
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe()
    device.publish("get/ds", "Temperature,Humidity")
    assert device.expect("downlink/ds/Temperature") == b"21.5"
    device.publish("get/ds/all", "")
    assert device.expect("downlink/ds/Temperature") == b"21.5"
    assert device.expect("downlink/ds/Status") == b"ok"
    topics = [topic for topic, _ in device.seen]
    assert "downlink/ds/Humidity" not in topics  # no value yet: nothing to send


def test_organization_write_reaches_the_device(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe("downlink/#", qos=1)
    assert [int(r.value) for r in device.granted] == [1]
    body = {"deviceId": device_id, "dataStreamId": HUMIDITY, "value": 55}
    assert env.api.post(UPDATE, body).status_code == 204
    assert device.expect("downlink/ds/Humidity") == b"55"
    location = {"deviceId": device_id, "dataStreamId": POSITION, "value": [10.5, 20.5]}
    assert env.api.post(UPDATE, location).status_code == 204
    assert device.expect("downlink/ds/Position") == b"10.5,20.5"
    prop = {"deviceId": device_id, "dataStreamId": TEMPERATURE, "property": "color"}
    assert env.api.post(PROPERTY, {**prop, "value": "#00FF00"}).status_code == 204
    assert device.expect("downlink/ds/Temperature/prop/color") == b"#00FF00"


def test_only_matching_subscriptions_receive(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe("downlink/ds/+", qos=0)
    prop = {"deviceId": device_id, "dataStreamId": TEMPERATURE, "property": "color"}
    assert env.api.post(PROPERTY, {**prop, "value": "#0000FF"}).status_code == 204
    body = {"deviceId": device_id, "dataStreamId": HUMIDITY, "value": 5}
    assert env.api.post(UPDATE, body).status_code == 204
    assert device.expect("downlink/ds/Humidity") == b"5"
    assert device.seen == [("downlink/ds/Humidity", b"5")]  # the property did not match


def test_own_writes_are_not_echoed(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe()
    device.publish("ds/Temperature", "19.5")
    device.publish("batch_ds", '{"Status": "fine"}')
    device.publish("ds/Temperature/prop/label", "Air")
    stamp = time.time_ns() // 1_000_000
    device.publish("ds/Temperature/timestamped_batch", f"[[{stamp}, 20.5]]")
    body = {"deviceId": device_id, "dataStreamId": HUMIDITY, "value": 61}
    assert env.api.post(UPDATE, body).status_code == 204
    assert device.expect("downlink/ds/Humidity") == b"61"
    assert device.seen == [("downlink/ds/Humidity", b"61")]


def test_unsubscribe_stops_delivery(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe("downlink/ds/Humidity")
    device.subscribe("downlink/ds/Temperature")
    unsubscribed = threading.Event()
    device.client.on_unsubscribe = lambda *args: unsubscribed.set()
    device.client.unsubscribe("downlink/ds/Humidity")
    assert unsubscribed.wait(DEADLINE)
    for ds_id, value in ((HUMIDITY, 7), (TEMPERATURE, 7.5)):
        body = {"deviceId": device_id, "dataStreamId": ds_id, "value": value}
        assert env.api.post(UPDATE, body).status_code == 204
    assert device.expect("downlink/ds/Temperature") == b"7.5"
    assert device.seen == [("downlink/ds/Temperature", b"7.5")]


def test_values_beyond_the_rate_limit_are_held_not_dropped(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    start = now_ms()
    batch = '{"Temperature": 1.5, "Humidity": 2, "Status": "s", "Position": [1, 2], "Mode": 1}'
    for _ in range(220):  # 1,100 values at once: the default burst is 1,000, the rate 100/s
        device.client.publish("batch_ds", batch, qos=0)
    device.publish("ds/Status", "last")  # its PUBACK follows the values held before it
    assert b"Too many values" in device.expect("downlink/diag")
    assert env.value(device_id, STATUS_DS) == "last"
    assert len(history_of(env.api, device_id, HUMIDITY, start)) == 220
    assert env.status(device_id)["connected"] is True


# TLS -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mqtt_over_tls_and_shutdown_with_a_device_connected(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    made = subprocess.run(
        command,
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    data_dir = tmp_path / "data"
    apply_fleet_text(data_dir, FLEET_YAML)
    tls_port = free_port()
    flags = ["--mqtt-tls-port", str(tls_port), "--tls-cert", str(cert), "--tls-key", str(key)]
    server = Server(data_dir, *flags).start()
    device_id = FIRST_DEVICE
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(min_delay=60, max_delay=120)
    try:
        client.tls_set(ca_certs=str(cert))
        client.username_pw_set("device", token_of(device_id))
        connected, disconnected = threading.Event(), threading.Event()
        client.on_connect = lambda c, u, f, reason, p: connected.set()
        client.on_disconnect = lambda c, u, f, reason, p: disconnected.set()
        client.connect("127.0.0.1", tls_port, keepalive=60)
        client.loop_start()
        assert connected.wait(DEADLINE)
        info = client.publish("ds/Humidity", "33", qos=1)
        info.wait_for_publish(DEADLINE)
        assert info.is_published()
        api = Api(server.url, client_token(server.url, CLIENT))
        try:
            response = api.get(VALUES, deviceId=device_id, dataStreamIds=HUMIDITY)
            assert response.json()[0]["value"] == 33
        finally:
            api.close()
        assert server.stop() == 0, server.log.read_text()  # closes the device's connection
        assert disconnected.wait(DEADLINE)
    finally:
        client.disconnect()
        client.loop_stop()
        server.stop()


def test_get_utc_all_json_answers_the_time_and_timezone(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id).wait_connected()
    device.subscribe()
    before = int(time.time() * 1000)
    device.publish("get/utc/all/json", "")
    answer = json.loads(device.expect("downlink/utc/all/json"))
    assert before <= answer["time"] <= int(time.time() * 1000)
    assert (answer["tz_name"], answer["tz_rule"], answer["tz"], answer["dst"]) == (
        "UTC",
        "UTC0",
        0,
        0,
    )
    assert answer["iso"].endswith("+00:00") and answer["dst_next"] == []


# MQTT 3.1.1 and 5 ------------------------------------------------------------------------

PROTOCOLS = pytest.mark.parametrize(
    "protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt3.1.1", "mqtt5"]
)


def properties_of(env: Env, device_id: int, ds_id: int) -> dict[str, str]:
    response = env.api.get(PROPERTIES, deviceId=device_id, dataStreamIds=ds_id)
    assert response.status_code == 200, response.text
    found: dict[str, str] = response.json()[0]["properties"]
    return found


@PROTOCOLS
def test_a_device_session_in_either_version(
    env: Env, devices: list[Device], protocol: MQTTProtocolVersion
) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id, protocol=protocol).wait_connected()
    device.subscribe("downlink/#", qos=1)
    assert [int(r.value) for r in device.granted] == [1]
    device.publish("ds/Humidity", "41", qos=0)
    env.wait_for("the QoS 0 value", lambda: env.value(device_id, HUMIDITY) == 41)
    device.publish("ds/Temperature", "21.5", qos=1)
    assert env.value(device_id, TEMPERATURE) == 21.5

    body = {"deviceId": device_id, "dataStreamId": MODE, "value": 2}
    assert env.api.post(UPDATE, body).status_code == 204
    assert device.expect("downlink/ds/Mode") == b"2"

    device.publish("ds/Temperature/prop/color", "E4F6F7")  # as Blynk's samples send them
    device.publish("ds/Temperature/prop/isDisabled", "1")
    assert properties_of(env, device_id, TEMPERATURE) == {
        "color": "#E4F6F7",
        "isDisabled": "true",
    }
    prop = {"deviceId": device_id, "dataStreamId": TEMPERATURE, "property": "isHidden"}
    assert env.api.post(PROPERTY, {**prop, "value": "0"}).status_code == 204
    assert device.expect("downlink/ds/Temperature/prop/isHidden") == b"false"

    device.publish("ds/Temperature/erase", "")
    assert env.value(device_id, TEMPERATURE) is None
    assert env.value(device_id, HUMIDITY) == 41, "only the erased datastream"
    device.publish("ds/Temperature/prop/color/erase", "")
    assert properties_of(env, device_id, TEMPERATURE) == {
        "isDisabled": "true",
        "isHidden": "false",
    }
    device.publish("get/ds", "Temperature,Humidity")
    assert device.expect("downlink/ds/Humidity") == b"41"
    assert ("downlink/ds/Temperature", b"21.5") not in device.seen

    device.publish("ds/Temperature", "22.5")
    assert env.value(device_id, TEMPERATURE) == 22.5
    assert not device.disconnected.is_set(), "the connection stays up"
    assert env.status(device_id)["connected"] is True


def test_erases_reach_the_live_stream(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id, protocol=mqtt.MQTTv5).wait_connected()
    device.publish("ds/Status", "ok")
    device.publish("ds/Status/prop/label", "State")
    listener = Listener(env.server.url, env.token, {"deviceIds": str(device_id)})
    try:
        device.publish("ds/Status/erase", "")
        device.publish("ds/Status/prop/label/erase", "")
        device.publish("ds/Status/prop/color", "ff0000")
        events = [listener.next() for _ in range(3)]
    finally:
        listener.close()
    common = {"deviceId": device_id, "dataStreamId": STATUS_DS, "pin": "v3"}
    kind, value = events[0]
    assert kind == "value" and value.items() >= {**common, "value": None}.items()
    assert events[1:] == [
        ("property", {**common, "property": "label", "value": ""}),
        ("property", {**common, "property": "color", "value": "#FF0000"}),
    ]
    assert env.value(device_id, STATUS_DS) is None


def test_mqtt5_connack_properties_and_reason_codes(env: Env, devices: list[Device]) -> None:
    device_id = env.devices.take()
    device = connect(env, devices, device_id, protocol=mqtt.MQTTv5).wait_connected()
    props = device.connack_properties
    assert props.MaximumQoS == 1
    assert props.TopicAliasMaximum == 0
    assert props.MaximumPacketSize == 1024 * 1024
    assert props.SessionExpiryInterval == 0
    assert device.publish("ds/Temperature", "20").value == 0
    assert device.publish("ds/Nope", "1").value == 0x90  # topic name invalid
    assert device.expect("downlink/diag") == b"ds/Nope: no datastream with label 'Nope'."
    device.subscribe("$share/group/downlink/#", qos=1)
    assert [int(r.value) for r in device.granted] == [0x9E]
    assert env.value(device_id, TEMPERATURE) == 20
    assert not device.disconnected.is_set()


def _publish5(topic: str, properties: bytes) -> bytes:
    body = _string(topic) + properties + b"1"
    return b"\x30" + encode_remaining_length(len(body)) + body


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x30\x05\x00\x09ds/", 0x81),  # the topic is longer than the packet
        (b"\x34\x00", 0x9B),  # QoS 2
        (b"\x30\xff\xff\xff\x7f", 0x95),  # 256 MiB announced: refused at its header
        (_publish5("ds/Temperature", b"\x03\x23\x00\x01"), 0x94),  # a topic alias
        (connect_bytes("x" * 32, level=5), 0x82),  # a second CONNECT
    ],
    ids=["malformed", "qos2", "too-large", "topic-alias", "second-connect"],
)
def test_an_mqtt5_violation_gets_its_disconnect_and_spares_the_others(
    env: Env, devices: list[Device], packet: bytes, reason: int
) -> None:
    good_id, bad_id = env.devices.take(), env.devices.take()
    good = connect(env, devices, good_id, protocol=mqtt.MQTTv5).wait_connected()
    with raw_connect(env, token_of(bad_id), level=5) as sock:
        connack = recv_packet(sock)
        assert connack[:4] == b"\x20" + bytes((len(connack) - 2,)) + b"\x00\x00"
        sock.sendall(packet)
        assert recv_packet(sock) == bytes((0xE0, 2, reason, 0))
        wait_closed(sock)
    good.publish("ds/Temperature", "30.5")
    assert env.value(good_id, TEMPERATURE) == 30.5
    assert not good.disconnected.is_set()
    assert env.status(good_id)["connected"] is True


def test_an_oversized_mqtt5_connect_is_only_closed(env: Env) -> None:
    """Before the login MQTT 5 has the 3.1.1 limits: a CONNECT above the login byte limit is
    refused at its fixed header, with nothing sent back."""
    with socket.create_connection(("127.0.0.1", env.mqtt_port), timeout=DEADLINE) as sock:
        sock.sendall(b"\x10\xff\xff\x03\x00\x04MQTT\x05")
        assert sock.recv(16) == b""
