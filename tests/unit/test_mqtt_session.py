"""The MQTT device session as a state machine: bytes and times in, requests and bytes out.

No socket, no event loop, no clock: every time is given explicitly. Datastreams are plain
strings here (the session only looks them up by label and passes them through).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pinbase.devices.mqtt.codec import (
    PINGRESP,
    encode_connack,
    encode_puback,
    encode_publish,
    encode_remaining_length,
    encode_suback,
    encode_unsuback,
)
from pinbase.devices.mqtt.session import (
    CONNECT_BYTES,
    CONNECT_TIMEOUT,
    DIAG_PER_SECOND,
    DIAG_TOPIC,
    DISCONNECTED,
    OVER_RATE,
    QUOTA_WARN_PERIOD,
    TURN_BYTES,
    TURN_PACKETS,
    BatchValues,
    EraseProperty,
    EraseValue,
    GetCurrent,
    GetMeta,
    GetUtc,
    LogEvent,
    Login,
    MqttSession,
    ReportInfo,
    SetMeta,
    SetProperty,
    State,
    TimestampedBatch,
    WriteValues,
)

TOKEN = "TestToken0123456789abcdefghijklm"
DATASTREAMS = {"Temperature": "T", "Humidity": "H", "a/b": "AB"}
"""Label -> datastream; a label may contain a slash."""
T0 = 1000.0

# packets a device sends -------------------------------------------------------------------


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect(
    token: bytes | None = TOKEN.encode(),
    *,
    username: str | None = "device",
    client_id: str = "dev",
    clean: bool = True,
    keep_alive: int = 60,
    level: int = 4,
    name: str = "MQTT",
) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if token is not None else 0
    body = _string(name) + bytes((level, flags)) + keep_alive.to_bytes(2, "big")
    body += _string(client_id)
    if username is not None:
        body += _string(username)
    if token is not None:
        body += len(token).to_bytes(2, "big") + token
    return _packet(0x10, body)


def publish(topic: str, payload: bytes | str = b"", packet_id: int | None = None) -> bytes:
    """QoS 1 when a packet id is given, else QoS 0."""
    data = payload.encode() if isinstance(payload, str) else payload
    head = _string(topic) + (packet_id.to_bytes(2, "big") if packet_id else b"")
    return _packet(0x32 if packet_id else 0x30, head + data)


def subscribe(packet_id: int, *filters: tuple[str, int]) -> bytes:
    body = packet_id.to_bytes(2, "big")
    for topic_filter, qos in filters:
        body += _string(topic_filter) + bytes((qos,))
    return _packet(0x82, body)


def unsubscribe(packet_id: int, *filters: str) -> bytes:
    return _packet(0xA2, packet_id.to_bytes(2, "big") + b"".join(map(_string, filters)))


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK_OK = encode_connack(0)

# what the server sends --------------------------------------------------------------------


def split(data: bytes) -> list[bytes]:
    """The packets in `data`, each whole."""
    packets = []
    pos = 0
    while pos < len(data):
        length, shift, index = 0, 0, pos + 1
        while True:
            byte = data[index]
            index += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        packets.append(data[pos : index + length])
        pos = index + length
    return packets


def publishes(data: bytes) -> list[tuple[str, bytes, int, int | None]]:
    """(topic, payload, qos, packet id) of each PUBLISH in `data` (other packets skipped)."""
    found = []
    for packet in split(data):
        if packet[0] >> 4 != 3:
            continue
        qos = (packet[0] >> 1) & 3
        body = packet[2:] if packet[1] < 0x80 else packet[3:]
        size = int.from_bytes(body[:2], "big")
        topic, rest = body[2 : 2 + size].decode(), body[2 + size :]
        packet_id = int.from_bytes(rest[:2], "big") if qos else None
        found.append((topic, rest[2:] if qos else rest, qos, packet_id))
    return found


def diags(data: bytes) -> list[str]:
    return [p.decode() for topic, p, _, _ in publishes(data) if topic == DIAG_TOPIC]


def connected(keep_alive: int = 60, now: float = T0) -> MqttSession[str]:
    """A session past its CONNECT, with the CONNACK taken."""
    session: MqttSession[str] = MqttSession(now)
    assert session.receive_data(connect(keep_alive=keep_alive), now) == [Login(TOKEN)]
    assert session.accept(DATASTREAMS, now) == []
    assert session.data_to_send() == CONNACK_OK
    return session


def finish(session: MqttSession[str], requests: Sequence[object], now: float = T0) -> bytes:
    """Report every request done, in order; what the session then has to send."""
    for request in requests:
        session.done(request, now)
    return session.data_to_send()


# CONNECT ---------------------------------------------------------------------------------


def test_connect_is_a_login_request_and_accept_answers_connack_0() -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.state is State.CONNECTING
    assert session.receive_data(connect(), T0 + 1) == [Login(TOKEN)]
    assert session.state is State.LOGGING_IN
    assert session.data_to_send() == b""
    assert session.next_deadline() is None  # the app layer decides; no timer runs
    assert session.accept(DATASTREAMS, T0 + 2) == []
    assert session.state is State.CONNECTED
    assert session.data_to_send() == CONNACK_OK
    assert not session.closed


def test_connect_split_across_reads() -> None:
    session: MqttSession[str] = MqttSession(T0)
    data = connect()
    assert session.receive_data(data[:5], T0) == []
    assert session.receive_data(data[5:], T0) == [Login(TOKEN)]


def test_packets_after_the_connect_wait_for_the_login() -> None:
    session: MqttSession[str] = MqttSession(T0)
    first = connect() + publish("ds/Temperature", "21.5", packet_id=7)
    assert session.receive_data(first, T0) == [Login(TOKEN)]
    assert session.receive_data(PINGREQ, T0) == []  # still logging in: kept
    requests = session.accept(DATASTREAMS, T0)
    assert requests == [WriteValues([("T", b"21.5")])]
    assert session.data_to_send() == CONNACK_OK  # the PUBACK waits for the write
    assert finish(session, requests) == encode_puback(7) + PINGRESP


@pytest.mark.parametrize(
    "data",
    [
        connect(b"X" * 32, username="someone"),  # the user name must be `device`
        connect(None),  # no password
        connect(b"\xff\xfe"),  # a token is ASCII
        connect(None, username=None),
    ],
    ids=["user-name", "no-password", "not-ascii", "no-credentials"],
)
def test_bad_credentials_are_connack_4_and_close(data: bytes) -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(data, T0) == []
    assert session.data_to_send() == encode_connack(4)
    assert session.closed
    assert "bad user name or password" in session.reason


def test_an_unknown_token_is_refused_with_connack_4() -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(connect() + publish("ds/Temperature", "1"), T0) == [Login(TOKEN)]
    session.refuse()
    assert session.data_to_send() == encode_connack(4)
    assert session.closed
    assert session.accept(DATASTREAMS, T0) == []  # too late: nothing is acted on
    assert session.data_to_send() == b""


@pytest.mark.parametrize(("name", "level"), [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 3)])
def test_unsupported_protocol_level_is_connack_1(name: str, level: int) -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(connect(name=name, level=level), T0) == []
    assert session.data_to_send() == encode_connack(1)
    assert session.closed


def test_empty_client_id_needs_a_clean_session() -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(connect(client_id="", clean=False), T0) == []
    assert session.data_to_send() == encode_connack(2)
    assert session.closed
    clean: MqttSession[str] = MqttSession(T0)
    assert clean.receive_data(connect(client_id="", clean=True), T0) == [Login(TOKEN)]


def test_a_first_packet_other_than_connect_closes() -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(publish("ds/Temperature", "1"), T0) == []
    assert session.closed
    assert session.data_to_send() == b""
    assert "CONNECT" in session.reason
    assert session.receive_data(connect(), T0) == []  # closed: ignored


def test_a_second_connect_closes_after_the_packets_before_it() -> None:
    session = connected()
    data = publish("ds/Temperature", "1", packet_id=1) + connect() + publish("ds/Humidity", "2")
    requests = session.receive_data(data, T0)
    assert requests == [WriteValues([("T", b"1")])]
    assert session.closed
    assert "second CONNECT" in session.reason
    assert finish(session, requests) == encode_puback(1)


def test_connect_timeout() -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.next_deadline() == T0 + CONNECT_TIMEOUT
    assert session.receive_data(connect()[:3], T0 + 5) == []  # a partial CONNECT: no reprieve
    assert session.next_deadline() == T0 + CONNECT_TIMEOUT
    assert not session.expire(T0 + CONNECT_TIMEOUT - 0.001)
    assert session.expire(T0 + CONNECT_TIMEOUT)
    assert session.closed
    assert "CONNECT" in session.reason
    assert session.next_deadline() is None


def test_the_connect_timeout_counts_from_the_accept_however_the_bytes_trickle() -> None:
    session: MqttSession[str] = MqttSession(T0, connect_timeout=2.0)
    data = connect()
    for index in range(len(data) - 1):
        assert session.receive_data(data[index : index + 1], T0 + index * 0.01) == []
        assert session.next_deadline() == T0 + 2.0
    assert session.expire(T0 + 2.0)
    assert session.reason.startswith("no CONNECT in time")


# what a stranger may send ----------------------------------------------------------------


def test_a_connect_above_the_limit_closes_at_its_fixed_header() -> None:
    session: MqttSession[str] = MqttSession(T0)
    header = b"\x10" + encode_remaining_length(CONNECT_BYTES)  # with its header: too large
    assert session.receive_data(header, T0) == []
    assert session.closed and session.reason.startswith("too much data before login")
    assert session.data_to_send() == b""  # not even a CONNACK


def test_bytes_before_the_connect_is_accepted_are_limited() -> None:
    session: MqttSession[str] = MqttSession(T0, connect_bytes=200)
    data = connect() + publish("ds/Temperature", "1") * 5  # within 200 bytes
    assert len(data) <= 200
    assert session.receive_data(data, T0) == [Login(TOKEN)]
    assert session.receive_data(b"\xc0\x00" * ((200 - len(data)) // 2 + 1), T0) == []
    assert session.closed and session.reason.startswith("too much data before login")
    assert session.accept(DATASTREAMS, T0) == []  # too late
    assert session.data_to_send() == b""


def test_after_the_connack_packets_may_be_larger() -> None:
    session = connected()
    payload = b"x" * (2 * CONNECT_BYTES)
    requests = session.receive_data(publish("ds/Temperature", payload), T0)
    assert requests == [WriteValues([("T", payload)])]


# turns -----------------------------------------------------------------------------------


def test_packets_are_decoded_a_turn_at_a_time() -> None:
    session = connected()
    data = publish("ds/Temperature", "1", packet_id=1) * (2 * TURN_PACKETS + 3)
    for size in (TURN_PACKETS, TURN_PACKETS, 3):
        (write,) = session.receive_data(data, T0)
        data = b""
        assert isinstance(write, WriteValues) and len(write.values) == size
        assert finish(session, [write]) == encode_puback(1) * size
        assert session.pending is (size != 3)
    big = publish("ds/Temperature", b"x" * 995)  # 1,000 bytes
    (write,) = session.receive_data(big * 100, T0)
    assert isinstance(write, WriteValues) and len(write.values) == TURN_BYTES // len(big) + 1
    assert session.pending


def test_a_device_over_its_rate_is_told_once_a_period() -> None:
    session = connected()
    session.over_rate(T0)
    session.over_rate(T0 + 1)
    assert diags(session.data_to_send()) == [OVER_RATE]
    session.over_rate(T0 + QUOTA_WARN_PERIOD)
    assert diags(session.data_to_send()) == [OVER_RATE]


# keep-alive ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("announced", "in_force"), [(60, 60), (1, 1), (600, 600), (0, 600), (601, 600), (65535, 600)]
)
def test_keep_alive_deadline_is_one_and_a_half_times(announced: int, in_force: int) -> None:
    session = connected(keep_alive=announced, now=T0)
    assert session.keep_alive == in_force
    assert session.next_deadline() == T0 + 1.5 * in_force


def test_traffic_restarts_the_keep_alive_and_silence_expires_it() -> None:
    session = connected(keep_alive=10)
    assert session.receive_data(PINGREQ, T0 + 14) == []
    assert session.data_to_send() == PINGRESP
    assert session.next_deadline() == T0 + 29
    assert session.receive_data(publish("ds/Temperature", "2")[:2], T0 + 20) == []  # partial
    assert session.next_deadline() == T0 + 35
    assert not session.expire(T0 + 34.9)
    assert session.expire(T0 + 35)
    assert session.closed
    assert "silent" in session.reason


def test_no_keep_alive_runs_while_requests_are_performed() -> None:
    session = connected(keep_alive=10)
    requests = session.receive_data(publish("ds/Temperature", "2"), T0 + 1)
    assert session.next_deadline() is None
    assert not session.expire(T0 + 100)
    session.done(requests[0], T0 + 50)
    assert session.next_deadline() == T0 + 65  # from when the server was done


# subscriptions and downlink --------------------------------------------------------------


def test_subscribe_grants_at_most_qos_1_and_unsubscribe_stops_delivery() -> None:
    session = connected()
    data = subscribe(5, ("downlink/ds/Temperature", 0), ("downlink/ds/a/b", 1), ("x/#", 2))
    assert session.receive_data(data, T0) == []
    assert session.data_to_send() == encode_suback(5, [0, 1, 1])
    assert dict(session.subscriptions) == {
        "downlink/ds/Temperature": 0,
        "downlink/ds/a/b": 1,
        "x/#": 1,
    }
    session.publish_value("Temperature", "21.5")
    assert session.data_to_send() == encode_publish("downlink/ds/Temperature", b"21.5")
    assert session.receive_data(unsubscribe(6, "downlink/ds/Temperature"), T0) == []
    assert session.data_to_send() == encode_unsuback(6)
    session.publish_value("Temperature", "22.5")
    assert session.data_to_send() == b""
    session.publish_value("a/b", "1")
    assert publishes(session.data_to_send()) == [("downlink/ds/a/b", b"1", 1, 1)]


def test_nothing_is_sent_without_a_matching_subscription() -> None:
    session = connected()
    session.publish_value("Temperature", "1")
    session.publish_property("Temperature", "color", "#FF0000")
    assert session.data_to_send() == b""


def test_wildcards_and_the_best_granted_qos() -> None:
    session = connected()
    session.receive_data(subscribe(1, ("downlink/ds/+", 0)), T0)
    assert session.data_to_send() == encode_suback(1, [0])
    session.publish_value("Humidity", "5")
    session.publish_property("Humidity", "color", "#00FF00")  # `+` is one level
    assert publishes(session.data_to_send()) == [("downlink/ds/Humidity", b"5", 0, None)]
    session.receive_data(subscribe(2, ("downlink/#", 1)), T0)
    assert session.data_to_send() == encode_suback(2, [1])
    session.publish_value("Humidity", "6")  # both match: the better QoS wins
    session.publish_property("Humidity", "color", "#00FF00")
    assert publishes(session.data_to_send()) == [
        ("downlink/ds/Humidity", b"6", 1, 1),
        ("downlink/ds/Humidity/prop/color", b"#00FF00", 1, 2),
    ]


def test_qos_1_downlink_packet_ids_wrap_after_65535() -> None:
    session = connected()
    session.receive_data(subscribe(1, ("downlink/#", 1)), T0)
    session.data_to_send()
    ids = []
    for _ in range(65_537):
        session.publish_value("Temperature", "1")
        ids.append(publishes(session.data_to_send())[0][3])
    assert ids[:2] == [1, 2]
    assert ids[-3:] == [65_535, 1, 2]


def test_a_puback_from_the_device_is_taken_silently() -> None:
    session = connected()
    assert session.receive_data(b"\x40\x02\x00\x01", T0) == []
    assert session.data_to_send() == b""
    assert not session.closed


# uplink topics ---------------------------------------------------------------------------


def test_topics_become_requests() -> None:
    session = connected()
    data = b"".join(
        (
            publish("ds/Temperature", "21.5"),
            publish("ds/Humidity", "40"),
            publish("ds/a/b", "1"),  # a label with a slash
            publish("batch_ds", '{"Humidity": 41}'),
            publish("ds/Temperature", "22.5"),
            publish("ds/Temperature/timestamped_batch", "[[1, 2.5]]"),
            publish("ds/Humidity/prop/color", "#FF0000"),
            publish("get/ds", "Temperature, Humidity,,"),
            publish("get/ds/all"),
            publish("info/mcu", "{}"),
            publish("info/other", "{}"),  # ignored
        )
    )
    assert session.receive_data(data, T0) == [
        WriteValues([("T", b"21.5"), ("H", b"40"), ("AB", b"1")]),
        BatchValues(b'{"Humidity": 41}'),
        WriteValues([("T", b"22.5")]),
        TimestampedBatch("T", "ds/Temperature/timestamped_batch", b"[[1, 2.5]]"),
        SetProperty("H", "color", "ds/Humidity/prop/color", b"#FF0000"),
        GetCurrent(["T", "H"]),
        GetCurrent(None),
        ReportInfo("info/mcu", b"{}"),
    ]
    assert session.data_to_send() == b""


def test_unknown_labels_are_told_on_diag() -> None:
    session = connected()
    data = b"".join(
        (
            publish("ds/Nope", "1", packet_id=1),
            publish("ds/Nope/prop/color", "#FF0000"),
            publish("ds/Nope/timestamped_batch", "[]"),
            publish("ds/Nope/erase"),
            publish("ds/Nope/prop/color/erase"),
            publish("get/ds", "Temperature,Nope", packet_id=2),
        )
    )
    requests = session.receive_data(data, T0)
    assert requests == [GetCurrent(["T"])]
    first = session.data_to_send()  # told before the read is performed
    assert diags(first) == [
        "ds/Nope: no datastream with label 'Nope'.",
        "ds/Nope/prop/color: no datastream with label 'Nope'.",
        "ds/Nope/timestamped_batch: no datastream with label 'Nope'.",
        "ds/Nope/erase: no datastream with label 'Nope'.",
        "ds/Nope/prop/color/erase: no datastream with label 'Nope'.",
        "get/ds: no datastream with label 'Nope'.",
    ]
    assert split(first)[1] == encode_puback(1)  # in the order of what they answer
    assert finish(session, requests) == encode_puback(2)


def test_erase_topics_are_requests_in_order_with_the_values_around_them() -> None:
    session = connected()
    data = b"".join(
        (
            publish("ds/Temperature", "1"),
            publish("ds/Temperature/erase", packet_id=1),
            publish("ds/a/b/erase"),
            publish("ds/Humidity/prop/color/erase", packet_id=2),
            publish("ds/a/b/prop/label/erase"),
        )
    )
    requests = session.receive_data(data, T0)
    assert requests == [
        WriteValues([("T", b"1")]),
        EraseValue("T", "ds/Temperature/erase"),
        EraseValue("AB", "ds/a/b/erase"),
        EraseProperty("H", "color", "ds/Humidity/prop/color/erase"),
        EraseProperty("AB", "label", "ds/a/b/prop/label/erase"),
    ]
    assert session.data_to_send() == b"", "nothing is told: erasing is supported"
    assert finish(session, requests) == encode_puback(1) + encode_puback(2)


def test_values_around_commands_that_are_not_requests_stay_one_write() -> None:
    session = connected()
    data = publish("ds/Temperature", "1") + publish("ds/Nope", "1") + PINGREQ
    data += subscribe(3, ("downlink/#", 0)) + publish("ds/Humidity", "2")
    assert session.receive_data(data, T0) == [WriteValues([("T", b"1"), ("H", b"2")])]


def test_datastreams_follow_the_mapping_the_caller_keeps() -> None:
    session = connected()
    assert session.receive_data(publish("ds/Pressure", "1"), T0) == []
    session.data_to_send()
    session.datastreams = {**DATASTREAMS, "Pressure": "P"}
    assert session.receive_data(publish("ds/Pressure", "1"), T0) == [WriteValues([("P", b"1")])]


# answers wait for the writes before them -------------------------------------------------


def test_pubacks_follow_the_writes_before_them_in_order() -> None:
    session = connected()
    data = b"".join(
        (
            publish("ds/Temperature", "1", packet_id=1),
            publish("ds/Humidity", "2", packet_id=2),
            PINGREQ,
            publish("get/ds/all", packet_id=3),
            subscribe(9, ("downlink/#", 0)),
            publish("ds/Temperature", "3", packet_id=4),
        )
    )
    requests = session.receive_data(data, T0)
    assert [type(r) for r in requests] == [WriteValues, GetCurrent, WriteValues]
    assert session.data_to_send() == b""  # nothing before the first write is durable
    session.done(requests[0], T0)
    assert session.data_to_send() == encode_puback(1) + encode_puback(2) + PINGRESP
    session.publish_value("Temperature", "2")  # subscribed once read; the SUBACK waits
    assert session.data_to_send() == encode_publish("downlink/ds/Temperature", b"2")
    session.done(requests[1], T0)
    assert session.data_to_send() == encode_puback(3) + encode_suback(9, [0])
    session.done(requests[2], T0)
    assert session.data_to_send() == encode_puback(4)


def test_done_releases_every_request_before_it() -> None:
    session = connected()
    data = publish("ds/Temperature", "1", packet_id=1) + publish("batch_ds", "{}", packet_id=2)
    data += publish("ds/Humidity", "2", packet_id=3)
    requests = session.receive_data(data, T0)
    assert len(requests) == 3
    session.done(requests[-1], T0)  # one write for all three
    assert session.data_to_send() == b"".join(encode_puback(i) for i in (1, 2, 3))
    session.done(requests[0], T0)  # already released: nothing more
    assert session.data_to_send() == b""


def test_get_current_answers_come_before_its_puback() -> None:
    session = connected()
    session.receive_data(subscribe(1, ("downlink/ds/+", 1)), T0)
    session.data_to_send()
    requests = session.receive_data(publish("get/ds", "Temperature", packet_id=8), T0)
    assert requests == [GetCurrent(["T"])]
    session.publish_value("Temperature", "21.5")
    session.done(requests[0], T0)
    data = session.data_to_send()
    assert publishes(split(data)[0]) == [("downlink/ds/Temperature", b"21.5", 1, 1)]
    assert split(data)[1] == encode_puback(8)


def test_disconnect_closes_after_the_requests_before_it() -> None:
    session = connected()
    data = publish("ds/Temperature", "1", packet_id=1) + DISCONNECT + publish("ds/Humidity", "2")
    requests = session.receive_data(data, T0)
    assert requests == [WriteValues([("T", b"1")])]
    assert session.closed
    assert session.reason == DISCONNECTED
    assert finish(session, requests) == encode_puback(1)
    assert session.receive_data(publish("ds/Humidity", "3"), T0) == []


# malformed input -------------------------------------------------------------------------


def test_qos_2_closes() -> None:
    session = connected()
    assert session.receive_data(b"\x34\x00", T0) == []
    assert session.closed
    assert "QoS 2" in session.reason


def test_a_malformed_packet_closes_and_nothing_of_its_read_is_acted_on() -> None:
    session = connected()
    data = publish("ds/Temperature", "1", packet_id=1) + b"\x30\x05\x00\x09ds/"
    assert session.receive_data(data, T0) == []
    assert session.closed
    assert "malformed" in session.reason
    assert session.data_to_send() == b""


def test_an_oversized_packet_closes_before_it_arrives() -> None:
    session = connected()
    header = b"\x30" + encode_remaining_length(1024 * 1024 + 1)
    assert session.receive_data(header, T0) == []
    assert session.closed
    assert "exceeds" in session.reason


# diagnostics -----------------------------------------------------------------------------


def test_diag_is_limited_to_10_a_second() -> None:
    session = connected()
    for index in range(DIAG_PER_SECOND + 5):
        session.diag(f"problem {index}", T0)
    assert diags(session.data_to_send()) == [f"problem {i}" for i in range(DIAG_PER_SECOND)]
    session.diag("still too soon", T0 + 0.999)
    assert session.data_to_send() == b""
    session.diag("a second later", T0 + 1.0)
    assert diags(session.data_to_send()) == ["a second later"]


def test_diag_from_topics_shares_the_limit() -> None:
    session = connected()
    data = b"".join(publish(f"ds/Nope{i}", "1") for i in range(DIAG_PER_SECOND))
    session.receive_data(data, T0)
    assert len(diags(session.data_to_send())) == DIAG_PER_SECOND
    session.diag("one more", T0 + 0.5)
    assert session.data_to_send() == b""


def test_diag_reaches_the_device_without_a_subscription_at_qos_0() -> None:
    session = connected()
    session.diag("ds/Humidity: Value doesn't match the Datastream data type.", T0)
    assert publishes(session.data_to_send()) == [
        (DIAG_TOPIC, b"ds/Humidity: Value doesn't match the Datastream data type.", 0, None)
    ]


def test_get_utc_is_a_request_answered_on_its_downlink_topic() -> None:
    session = connected()
    session.publish_utc('{"time": 1}')
    assert session.data_to_send() == b""  # no subscription yet
    assert session.receive_data(subscribe(1, ("downlink/#", 0)), T0) == []
    session.data_to_send()
    data = publish("get/utc/all/json") + publish("get/utc/all") + publish("get/utc/all/json/x")
    assert session.receive_data(data, T0) == [GetUtc()]
    session.publish_utc('{"time": 1}')
    assert session.data_to_send() == encode_publish("downlink/utc/all/json", b'{"time": 1}')


def test_meta_topics_become_requests_and_values_go_downlink() -> None:
    session = connected()
    assert session.receive_data(subscribe(1, ("downlink/meta/#", 0)), T0) == []
    session.data_to_send()
    data = (
        publish("meta/Site", "North")
        + publish("get/meta", " Site, ,Serial Number")
        + publish("meta/")
    )
    assert session.receive_data(data, T0) == [
        SetMeta("Site", "meta/Site", b"North"),
        GetMeta(["Site", "Serial Number"]),
    ]
    session.publish_meta("Site", "North")
    assert session.data_to_send() == encode_publish("downlink/meta/Site", b"North")


# device events ---------------------------------------------------------------------------------


def test_event_topics_become_requests_in_order_with_the_values_around_them() -> None:
    session = connected()
    data = b"".join(
        (
            publish("ds/Temperature", "41"),
            publish("event/high_temp", "41 \u00b0C", packet_id=1),
            publish("event/door_open"),  # empty: the definition's description
            publish("ds/Temperature", "42"),
        )
    )
    requests = session.receive_data(data, T0)
    assert requests == [
        WriteValues([("T", b"41")]),
        LogEvent("high_temp", "event/high_temp", "41 \u00b0C".encode()),
        LogEvent("door_open", "event/door_open", b""),
        WriteValues([("T", b"42")]),
    ]
    assert session.data_to_send() == b""  # the PUBACK waits for the event to be stored
    assert finish(session, requests) == encode_puback(1)


def test_an_event_topic_without_a_code_is_told_on_diag() -> None:
    session = connected()
    assert session.receive_data(publish("event/", "x", packet_id=1), T0) == []
    sent = session.data_to_send()
    assert diags(sent) == ["event/: Event code is not provided."]
    assert split(sent)[-1] == encode_puback(1)
