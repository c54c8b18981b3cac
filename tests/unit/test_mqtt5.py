"""MQTT 5 in the codec and the sans-IO session: CONNECT properties, reason codes, what is
refused and how, and the limits a device sets (receive maximum, maximum packet size).

Packets are built here byte by byte, as the MQTT 5 specification lays them out, so that the
tests do not lean on the server's own encoders.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pinbase.devices.mqtt import properties as props
from pinbase.devices.mqtt import reasons
from pinbase.devices.mqtt.codec import (
    MAX_PACKET_SIZE,
    BadConnect,
    CodecError,
    Connect,
    Decoder,
    Disconnect,
    PubAck,
    Publish,
    Subscribe,
    encode_remaining_length,
)
from pinbase.devices.mqtt.session import (
    CONNECT_BYTES,
    DIAG_TOPIC,
    DISCONNECTED,
    TURN_PACKETS,
    GetCurrent,
    Login,
    MqttSession,
    State,
    WriteValues,
)

TOKEN = "TestToken0123456789abcdefghijklm"
DATASTREAMS = {"Temperature": "T", "Humidity": "H"}
T0 = 1000.0

# building packets ----------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def _props(*items: bytes) -> bytes:
    raw = b"".join(items)
    return _varint(len(raw)) + raw


USER = bytes((0x26,)) + _string("site") + _string("north")
"""A user property: ignored wherever it comes."""


def connect5(
    token: str | None = TOKEN,
    *,
    properties: bytes = _props(),
    client_id: str = "dev",
    keep_alive: int = 60,
    will: tuple[bytes, str, bytes] | None = None,
    username: str = "device",
) -> bytes:
    flags = 0x02 | 0x80 | (0x40 if token is not None else 0) | (0x04 if will else 0)
    body = _string("MQTT") + bytes((5, flags)) + keep_alive.to_bytes(2, "big") + properties
    body += _string(client_id)
    if will is not None:
        will_props, topic, message = will
        body += will_props + _string(topic) + len(message).to_bytes(2, "big") + message
    body += _string(username)
    if token is not None:
        body += _string(token)
    return _packet(0x10, body)


def publish5(
    topic: str, payload: bytes | str = b"", packet_id: int | None = None, properties: bytes = b"\0"
) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    head = _string(topic) + (packet_id.to_bytes(2, "big") if packet_id else b"")
    return _packet(0x32 if packet_id else 0x30, head + properties + data)


def subscribe5(packet_id: int, *filters: tuple[str, int], properties: bytes = b"\0") -> bytes:
    body = packet_id.to_bytes(2, "big") + properties
    for topic_filter, options in filters:
        body += _string(topic_filter) + bytes((options,))
    return _packet(0x82, body)


def unsubscribe5(packet_id: int, *filters: str) -> bytes:
    return _packet(0xA2, packet_id.to_bytes(2, "big") + b"\0" + b"".join(map(_string, filters)))


def puback5(packet_id: int) -> bytes:
    return bytes((0x40, 2)) + packet_id.to_bytes(2, "big")


def decode(*packets: bytes) -> list[object]:
    return list(Decoder().feed(b"".join(packets)))


# reading what the server sends ---------------------------------------------------------------


def split(data: bytes) -> list[tuple[int, bytes]]:
    """(packet type, body) of each packet in `data`."""
    found = []
    pos = 0
    while pos < len(data):
        length, index = props.read_varint(data, pos + 1)
        found.append((data[pos], data[index : index + length]))
        pos = index + length
    return found


def read_props(body: bytes, pos: int) -> tuple[dict[int, int | str], int]:
    """Properties the server sent (test-side reader: integers and strings only)."""
    length, pos = props.read_varint(body, pos)
    end = pos + length
    found: dict[int, int | str] = {}
    sizes = {0x11: 4, 0x13: 2, 0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x29: 1, 0x2A: 1}
    while pos < end:
        identifier = body[pos]
        pos += 1
        if identifier in sizes:
            size = sizes[identifier]
            found[identifier] = int.from_bytes(body[pos : pos + size], "big")
            pos += size
        else:
            size = int.from_bytes(body[pos : pos + 2], "big")
            found[identifier] = body[pos + 2 : pos + 2 + size].decode()
            pos += 2 + size
    return found, end


def connack(data: bytes) -> tuple[int, dict[int, int | str]]:
    """(reason code, properties) of the one CONNACK in `data`."""
    [(first, body)] = split(data)
    assert first == 0x20
    assert body[0] == 0, "no session is ever present"
    found, end = read_props(body, 2)
    assert end == len(body)
    return body[1], found


def disconnect_reason(data: bytes) -> int:
    """The reason code of the DISCONNECT that ends `data`."""
    first, body = split(data)[-1]
    assert first == 0xE0
    assert body[1:] == b"\0"
    return body[0]


def publishes(data: bytes) -> list[tuple[str, bytes, int, int | None]]:
    """(topic, payload, qos, packet id) of each MQTT 5 PUBLISH in `data`."""
    found = []
    for first, body in split(data):
        if first >> 4 != 3:
            continue
        qos = (first >> 1) & 3
        size = int.from_bytes(body[:2], "big")
        topic, pos = body[2 : 2 + size].decode(), 2 + size
        packet_id = None
        if qos:
            packet_id = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
        _, pos = read_props(body, pos)
        found.append((topic, body[pos:], qos, packet_id))
    return found


def connected(properties: bytes = _props(), keep_alive: int = 60) -> MqttSession[str]:
    session: MqttSession[str] = MqttSession(T0)
    data = connect5(properties=properties, keep_alive=keep_alive)
    assert session.receive_data(data, T0) == [Login(TOKEN)]
    assert session.accept(DATASTREAMS, T0) == []
    assert connack(session.data_to_send())[0] == reasons.SUCCESS
    return session


def finish(session: MqttSession[str], requests: Sequence[object]) -> bytes:
    for request in requests:
        session.done(request, T0)
    return session.data_to_send()


# the codec -------------------------------------------------------------------------------


def test_a_connect_with_properties_keeps_those_the_server_uses() -> None:
    properties = _props(
        bytes((0x11,)) + (3600).to_bytes(4, "big"),  # session expiry
        bytes((0x21,)) + (5).to_bytes(2, "big"),  # receive maximum
        bytes((0x27,)) + (2000).to_bytes(4, "big"),  # maximum packet size
        bytes((0x22,)) + (10).to_bytes(2, "big"),  # topic alias maximum
        bytes((0x17, 1, 0x19, 0)),  # request problem / response information
        USER,
        USER,  # user properties may repeat
    )
    will = (_props(bytes((0x18,)) + (5).to_bytes(4, "big"), USER), "will/topic", b"gone")
    [packet] = decode(connect5(properties=properties, will=will))
    assert packet == Connect(
        client_id="dev",
        clean_session=True,
        keep_alive=60,
        username="device",
        password=TOKEN.encode(),
        will_topic="will/topic",
        will_message=b"gone",
        level=5,
        session_expiry=3600,
        receive_maximum=5,
        maximum_packet_size=2000,
    )


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        (_props(bytes((0x21,)) + (5).to_bytes(2, "big")), None),
        (_props(*[bytes((0x21,)) + (5).to_bytes(2, "big")] * 2), reasons.PROTOCOL_ERROR),
        (_props(bytes((0x23,)) + (1).to_bytes(2, "big")), reasons.PROTOCOL_ERROR),  # alias
        (_props(bytes((0x7F, 0))), reasons.PROTOCOL_ERROR),  # no such property
        (_props(bytes((0x21,)) + (0).to_bytes(2, "big")), reasons.MALFORMED_PACKET),
        (_props(bytes((0x27,)) + (0).to_bytes(4, "big")), reasons.MALFORMED_PACKET),
        (_props(bytes((0x16,)) + _string("x")), reasons.PROTOCOL_ERROR),  # data, no method
        (_varint(200) + bytes((0x21, 0)), reasons.MALFORMED_PACKET),  # longer than the packet
        (_props(bytes((0x26,)) + _string("a")), reasons.MALFORMED_PACKET),  # half a pair
        (_props(bytes((0x26,)) + _string("a") + b"\x00\x01\xff"), reasons.MALFORMED_PACKET),
        (b"\xff\xff\xff\xff\x01", reasons.MALFORMED_PACKET),  # a five-byte length
    ],
)
def test_a_bad_connect_property_is_refused_with_its_reason(
    properties: bytes, reason: int | None
) -> None:
    data = connect5(properties=properties)
    if reason is None:
        assert isinstance(decode(data)[0], Connect)
        return
    with pytest.raises(BadConnect) as caught:
        decode(data)
    assert caught.value.reason == reason


def test_what_follows_a_v5_connect_is_decoded_as_v5() -> None:
    publish_props = _props(
        bytes((0x01, 1)),  # payload format: UTF-8
        bytes((0x02,)) + (60).to_bytes(4, "big"),  # message expiry
        bytes((0x03,)) + _string("text/plain"),
        bytes((0x08,)) + _string("reply/here"),
        bytes((0x09,)) + _string("corr"),
        USER,
    )
    packets = decode(
        connect5(),
        publish5("ds/Temperature", "21.5", 7, publish_props),
        subscribe5(3, ("downlink/#", 0x01 | 0x04 | 0x08 | 0x20), properties=_props(USER)),
        puback5(9),
        _packet(0x40, (10).to_bytes(2, "big") + bytes((0x10,))),  # a reason code
        _packet(0x40, (11).to_bytes(2, "big") + bytes((0x80,)) + _props(USER)),
        _packet(0xE0, bytes((0x04,)) + _props(bytes((0x1F,)) + _string("bye"))),
    )
    assert packets[1:] == [
        Publish("ds/Temperature", b"21.5", 1, 7),
        Subscribe(3, (("downlink/#", 1),)),
        PubAck(9),
        PubAck(10),
        PubAck(11),
        Disconnect(),
    ]


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (publish5("", "1", properties=_props()), reasons.PROTOCOL_ERROR),  # no topic, no alias
        (publish5("ds/T", properties=_props(bytes((0x0B, 1)))), reasons.PROTOCOL_ERROR),
        (publish5("ds/T", properties=_props(USER[:-1])), reasons.MALFORMED_PACKET),
        (subscribe5(1, ("a/#", 0xC0)), reasons.MALFORMED_PACKET),  # reserved option bits
        (subscribe5(1, ("a/#", 0x30)), reasons.MALFORMED_PACKET),  # retain handling 3
        (subscribe5(1, ("a/#+", 0)), reasons.TOPIC_FILTER_INVALID),
        (_packet(0xF0, b"\x00"), reasons.PROTOCOL_ERROR),  # AUTH
        (_packet(0x34, _string("ds/T") + b"\x00\x01\x00"), reasons.QOS_NOT_SUPPORTED),
    ],
)
def test_a_bad_v5_packet_carries_its_reason_code(packet: bytes, reason: int) -> None:
    decoder = Decoder()
    decoder.feed(connect5())
    with pytest.raises(CodecError) as caught:
        decoder.feed(packet)
    assert caught.value.reason == reason


def test_properties_are_bounded_whatever_the_packet_size() -> None:
    """Reading tiny user properties costs far more than a payload: 16 KiB of them at most."""
    many = bytes((0x26,)) + b"\x00\x00\x00\x00"
    decoder = Decoder()
    decoder.feed(connect5())
    fits = (props.MAX_LENGTH // len(many)) * many
    [packet] = decoder.feed(publish5("ds/T", "1", properties=_varint(len(fits)) + fits))
    assert isinstance(packet, Publish) and packet.payload == b"1"
    over = fits + many
    with pytest.raises(CodecError) as caught:
        decoder.feed(publish5("ds/T", "1", properties=_varint(len(over)) + over))
    assert caught.value.reason == reasons.PACKET_TOO_LARGE


def test_a_topic_alias_and_a_subscription_identifier_are_decoded_for_the_session() -> None:
    alias = publish5("ds/T", "1", properties=_props(bytes((0x23,)) + (1).to_bytes(2, "big")))
    sub_id = subscribe5(1, ("a/#", 0), properties=_props(bytes((0x0B, 5))))
    _, publish, subscribe = decode(connect5(), alias, sub_id)
    assert isinstance(publish, Publish) and publish.topic_alias == 1
    assert isinstance(subscribe, Subscribe) and subscribe.subscription_id == 5


def test_server_properties_round_trip_through_the_reader() -> None:
    encoded = props.encode([(props.RECEIVE_MAXIMUM, 7), (props.ASSIGNED_CLIENT_ID, "x")])
    found, end = props.read(encoded, 0, frozenset({props.RECEIVE_MAXIMUM, 0x12}))
    assert (found, end) == ({props.RECEIVE_MAXIMUM: 7, props.ASSIGNED_CLIENT_ID: "x"}, 8)


# the session: CONNECT --------------------------------------------------------------------


def test_a_v5_login_is_answered_with_what_the_server_supports() -> None:
    session: MqttSession[str] = MqttSession(T0)
    properties = _props(bytes((0x11,)) + (3600).to_bytes(4, "big"))
    assert session.receive_data(connect5(properties=properties), T0) == [Login(TOKEN)]
    session.accept(DATASTREAMS, T0)
    reason, found = connack(session.data_to_send())
    assert reason == reasons.SUCCESS
    assert found == {
        props.SESSION_EXPIRY: 0,  # asked for an hour: sessions end with the connection
        props.RECEIVE_MAXIMUM: TURN_PACKETS,
        props.MAXIMUM_QOS: 1,
        props.MAXIMUM_PACKET_SIZE: MAX_PACKET_SIZE,
        props.TOPIC_ALIAS_MAXIMUM: 0,
        props.SUBSCRIPTION_ID_AVAILABLE: 0,
        props.SHARED_AVAILABLE: 0,
    }
    assert session.level == 5 and session.client_id == "dev"


def test_an_empty_client_id_is_assigned_one_and_an_unbounded_keep_alive_is_bounded() -> None:
    session: MqttSession[str] = MqttSession(T0)
    session.receive_data(connect5(client_id="", keep_alive=0), T0)
    session.accept(DATASTREAMS, T0)
    _, found = connack(session.data_to_send())
    assigned = found[props.ASSIGNED_CLIENT_ID]
    assert isinstance(assigned, str) and assigned.startswith("pinbase-")
    assert found[props.SERVER_KEEP_ALIVE] == 600 == session.keep_alive
    assert session.next_deadline() == T0 + 900


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (connect5(username="user"), reasons.BAD_USERNAME_OR_PASSWORD),
        (connect5(None), reasons.BAD_USERNAME_OR_PASSWORD),
        (connect5(properties=_props(bytes((0x15,)) + _string("SCRAM"))), 0x8C),
        (connect5(properties=_props(bytes((0x21, 0, 0)))), reasons.MALFORMED_PACKET),
        (connect5(properties=_props(bytes((0x02, 0, 0, 0, 1)))), reasons.PROTOCOL_ERROR),
    ],
)
def test_a_refused_v5_connect_gets_a_v5_connack_with_its_reason(data: bytes, reason: int) -> None:
    session: MqttSession[str] = MqttSession(T0)
    assert session.receive_data(data, T0) == []
    assert connack(session.data_to_send()) == (reason, {})
    assert session.closed


def test_an_unknown_token_is_refused_with_0x86() -> None:
    session: MqttSession[str] = MqttSession(T0)
    session.receive_data(connect5(), T0)
    session.refuse()
    assert connack(session.data_to_send()) == (reasons.BAD_USERNAME_OR_PASSWORD, {})
    assert session.closed


def test_the_pre_login_limits_are_those_of_3_1_1() -> None:
    session: MqttSession[str] = MqttSession(T0)
    big = connect5(properties=_props(*[USER] * (CONNECT_BYTES // len(USER) + 1)))
    assert session.receive_data(big[:6], T0) == []
    assert session.closed and "too much data before login" in session.reason
    assert session.data_to_send() == b"", "no CONNACK: nothing was decoded"
    slow: MqttSession[str] = MqttSession(T0)
    slow.receive_data(connect5()[:10], T0 + 1)
    assert slow.expire(T0 + 10) and slow.data_to_send() == b""


# the session: reason codes -------------------------------------------------------------------


def test_pubacks_refuse_unknown_labels_with_0x90_and_accept_the_rest() -> None:
    session = connected()
    data = b"".join(
        (
            publish5("ds/Temperature", "1", 1),
            publish5("ds/Nope", "1", 2),
            publish5("info/other", "{}", 3),  # ignored
            publish5("get/ds", "Humidity", 4),
        )
    )
    requests = session.receive_data(data, T0)
    assert requests == [WriteValues([("T", b"1")]), GetCurrent(["H"])]
    raw = finish(session, requests)
    acks = [(first, body) for first, body in split(raw) if first == 0x40]
    assert acks == [
        (0x40, b"\x00\x01"),
        (0x40, b"\x00\x02" + bytes((reasons.TOPIC_NAME_INVALID, 0))),
        (0x40, b"\x00\x03"),
        (0x40, b"\x00\x04"),
    ]
    diag = [p for t, p, _, _ in publishes(raw) if t == DIAG_TOPIC]
    assert diag == [b"ds/Nope: no datastream with label 'Nope'."]


def test_suback_and_unsuback_carry_reason_codes() -> None:
    session = connected()
    data = subscribe5(5, ("downlink/#", 2), ("downlink/ds/+", 0), ("$share/g/downlink/#", 1))
    data += unsubscribe5(6, "downlink/ds/+", "never/subscribed")
    assert session.receive_data(data, T0) == []
    assert split(session.data_to_send()) == [
        (0x90, b"\x00\x05\x00" + bytes((1, 0, reasons.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED))),
        (0xB0, b"\x00\x06\x00" + bytes((0, reasons.NO_SUBSCRIPTION_EXISTED))),
    ]
    assert dict(session.subscriptions) == {"downlink/#": 1}


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (publish5("ds/T", "1", properties=_props(bytes((0x23, 0, 1)))), 0x94),
        (subscribe5(1, ("a/#", 0), properties=_props(bytes((0x0B, 5)))), 0xA1),
        (_packet(0x34, _string("ds/T") + b"\x00\x01\x00"), reasons.QOS_NOT_SUPPORTED),
        (publish5("ds/T", properties=_props(USER[:-1])), reasons.MALFORMED_PACKET),
        (connect5(), reasons.PROTOCOL_ERROR),  # a second CONNECT
        (b"\x30\xff\xff\xff\x7f", reasons.PACKET_TOO_LARGE),  # its header alone
    ],
)
def test_a_violation_is_answered_with_a_disconnect_and_its_reason(
    packet: bytes, reason: int
) -> None:
    session = connected()
    requests = session.receive_data(publish5("ds/Temperature", "1", 1) + packet, T0)
    assert session.closed and session.reason != DISCONNECTED
    sent = finish(session, requests)
    assert disconnect_reason(sent) == reason
    assert session.receive_data(publish5("ds/Temperature", "2"), T0) == []


def test_the_disconnect_follows_the_answers_due_before_it() -> None:
    session = connected()
    alias = publish5("ds/T", "1", properties=_props(bytes((0x23, 0, 1))))
    requests = session.receive_data(publish5("ds/Temperature", "1", 1) + alias, T0)
    assert requests == [WriteValues([("T", b"1")])]
    assert session.data_to_send() == b"", "the PUBACK, then the DISCONNECT, wait for the write"
    assert [first for first, _ in split(finish(session, requests))] == [0x40, 0xE0]


def test_keep_alive_expiry_is_a_disconnect_0x8d() -> None:
    session = connected(keep_alive=10)
    assert session.expire(T0 + 15)
    assert disconnect_reason(session.data_to_send()) == reasons.KEEP_ALIVE_TIMEOUT


def test_a_device_disconnect_with_a_reason_ends_the_session_quietly() -> None:
    session = connected()
    session.receive_data(_packet(0xE0, bytes((0x04,)) + _props(USER)), T0)
    assert session.state is State.CLOSED and session.reason == DISCONNECTED
    assert session.data_to_send() == b""


# the session: what the device bounds --------------------------------------------------------


def test_qos_1_downlinks_beyond_the_receive_maximum_go_at_qos_0() -> None:
    session = connected(_props(bytes((0x21,)) + (2).to_bytes(2, "big")))
    session.receive_data(subscribe5(1, ("downlink/#", 1)), T0)
    session.data_to_send()
    for value in "123":
        session.publish_value("Temperature", value)
    assert [(p, q, i) for _, p, q, i in publishes(session.data_to_send())] == [
        (b"1", 1, 1),
        (b"2", 1, 2),
        (b"3", 0, None),
    ]
    session.receive_data(puback5(1), T0)
    session.publish_value("Temperature", "4")
    session.publish_value("Temperature", "5")
    assert [(p, q, i) for _, p, q, i in publishes(session.data_to_send())] == [
        (b"4", 1, 3),
        (b"5", 0, None),
    ]


def test_a_packet_id_still_in_flight_is_skipped() -> None:
    session = connected()
    session.receive_data(subscribe5(1, ("downlink/#", 1)), T0)
    session.data_to_send()
    for _ in range(0xFFFF):
        session.publish_value("Temperature", "x")
    session.data_to_send()
    for packet_id in range(2, 0x10000):
        session.receive_data(puback5(packet_id), T0)
    session.publish_value("Temperature", "y")
    assert [i for _, _, _, i in publishes(session.data_to_send())] == [2], "1 awaits its PUBACK"


def test_downlinks_larger_than_the_device_takes_are_not_sent() -> None:
    session = connected(_props(bytes((0x27,)) + (60).to_bytes(4, "big")))
    session.receive_data(subscribe5(1, ("downlink/#", 0)), T0)
    session.data_to_send()
    session.publish_value("Temperature", "x" * 100)
    session.publish_property("Temperature", "label", "short")
    session.diag("d" * 100, T0)
    session.diag("short", T0)
    assert [(t, p) for t, p, _, _ in publishes(session.data_to_send())] == [
        ("downlink/ds/Temperature/prop/label", b"short"),
        (DIAG_TOPIC, b"short"),
    ]
