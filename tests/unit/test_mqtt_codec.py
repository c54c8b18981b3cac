"""The MQTT 3.1.1 codec: decoding what devices send, encoding what the server answers (MQTT 5:
test_mqtt5.py)."""

from __future__ import annotations

import pytest

from pinbase.devices.mqtt.codec import (
    PINGRESP,
    CodecError,
    Connect,
    Decoder,
    Disconnect,
    PacketTooLarge,
    PingReq,
    PubAck,
    Publish,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocol,
    encode_connack,
    encode_puback,
    encode_publish,
    encode_remaining_length,
    encode_suback,
    encode_unsuback,
    topic_matches,
    valid_filter,
)


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect_packet(
    client_id: str = "dev-1",
    username: str | None = "device",
    password: bytes | None = b"token",
    keep_alive: int = 45,
    level: int = 4,
    name: str = "MQTT",
    flags: int | None = None,
    will: tuple[str, bytes] | None = None,
) -> bytes:
    if flags is None:
        flags = 0x02
        if username is not None:
            flags |= 0x80
        if password is not None:
            flags |= 0x40
        if will is not None:
            flags |= 0x04
    body = _string(name) + bytes((level, flags)) + keep_alive.to_bytes(2, "big")
    body += _string(client_id)
    if will is not None:
        body += _string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    if username is not None:
        body += _string(username)
    if password is not None:
        body += len(password).to_bytes(2, "big") + password
    return _packet(0x10, body)


def publish_packet(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    body = _string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return _packet(0x30 | (qos << 1), body)


def subscribe_packet(packet_id: int, *filters: tuple[str, int]) -> bytes:
    body = packet_id.to_bytes(2, "big")
    for topic_filter, qos in filters:
        body += _string(topic_filter) + bytes((qos,))
    return _packet(0x82, body)


def decode_all(data: bytes) -> list[object]:
    return list(Decoder().feed(data))


# decoding ----------------------------------------------------------------------------------


def test_connect_fields() -> None:
    packet = decode_all(connect_packet(will=("last/will", b"bye")))
    assert packet == [
        Connect(
            client_id="dev-1",
            clean_session=True,
            keep_alive=45,
            username="device",
            password=b"token",
            will_topic="last/will",
            will_message=b"bye",
        )
    ]


def test_connect_without_credentials() -> None:
    (packet,) = decode_all(connect_packet(client_id="", username=None, password=None))
    assert packet == Connect(client_id="", clean_session=True, keep_alive=45)


@pytest.mark.parametrize(("name", "level"), [("MQTT", 6), ("MQTT", 3), ("MQIsdp", 3)])
def test_other_protocol_versions_are_unsupported(name: str, level: int) -> None:
    with pytest.raises(UnsupportedProtocol) as caught:
        decode_all(connect_packet(name=name, level=level))
    assert caught.value.level == level


@pytest.mark.parametrize(
    "flags",
    [
        0x03,  # reserved bit
        0x42,  # password without user name
        0x0A,  # will QoS without will flag
        0x22,  # will retain without will flag
        0x1E,  # will QoS 3
    ],
)
def test_connect_bad_flags(flags: int) -> None:
    with pytest.raises(CodecError):
        decode_all(connect_packet(username=None, password=None, flags=flags))


def test_connect_unknown_protocol_name() -> None:
    with pytest.raises(CodecError):
        decode_all(connect_packet(name="HTTP"))


def test_connect_trailing_bytes() -> None:
    data = connect_packet()
    with pytest.raises(CodecError):
        decode_all(bytes((data[0], data[1] + 1)) + data[2:] + b"x")


def test_publish_qos0_and_qos1() -> None:
    data = publish_packet("ds/Temperature", b"22.5") + publish_packet(
        "batch_ds", b"{}", qos=1, packet_id=7
    )
    assert decode_all(data) == [
        Publish("ds/Temperature", b"22.5"),
        Publish("batch_ds", b"{}", qos=1, packet_id=7),
    ]


def test_publish_flags() -> None:
    body = _string("a") + (5).to_bytes(2, "big") + b"x"
    (packet,) = decode_all(_packet(0x3B, body))  # DUP, QoS 1, retain
    assert packet == Publish("a", b"x", qos=1, packet_id=5, retain=True, dup=True)


@pytest.mark.parametrize(
    "first",
    [
        0x34,  # QoS 2
        0x36,  # QoS 3
        0x38,  # DUP at QoS 0
    ],
)
def test_publish_bad_qos_flags(first: int) -> None:
    body = _string("a") + (1).to_bytes(2, "big") + b"x"
    with pytest.raises(CodecError):
        decode_all(_packet(first, body))


@pytest.mark.parametrize("topic", ["", "ds/+", "ds/#"])
def test_publish_bad_topic(topic: str) -> None:
    with pytest.raises(CodecError):
        decode_all(publish_packet(topic, b"1"))


def test_publish_topic_not_utf8() -> None:
    body = b"\x00\x02\xff\xfe" + b"1"
    with pytest.raises(CodecError):
        decode_all(_packet(0x30, body))


def test_publish_packet_id_zero() -> None:
    with pytest.raises(CodecError):
        decode_all(publish_packet("a", b"1", qos=1, packet_id=0))


def test_subscribe_unsubscribe_ping_puback_disconnect() -> None:
    data = (
        subscribe_packet(3, ("downlink/#", 1), ("downlink/ds/+", 2))
        + _packet(0xA2, (4).to_bytes(2, "big") + _string("downlink/#"))
        + bytes((0xC0, 0))
        + encode_puback(9)
        + bytes((0xE0, 0))
    )
    assert decode_all(data) == [
        Subscribe(3, (("downlink/#", 1), ("downlink/ds/+", 2))),
        Unsubscribe(4, ("downlink/#",)),
        PingReq(),
        PubAck(9),
        Disconnect(),
    ]


@pytest.mark.parametrize(
    "data",
    [
        _packet(0x80, (1).to_bytes(2, "big") + _string("a") + b"\x00"),  # flags must be 0010
        _packet(0x82, (1).to_bytes(2, "big")),  # no filter
        _packet(0x82, (1).to_bytes(2, "big") + _string("a/#/b") + b"\x00"),  # bad filter
        _packet(0x82, (1).to_bytes(2, "big") + _string("a") + b"\x03"),  # QoS 3
        _packet(0x82, (1).to_bytes(2, "big") + _string("a")),  # QoS missing
        _packet(0xA2, (1).to_bytes(2, "big")),  # unsubscribe without filter
        bytes((0xC1, 0)),  # PINGREQ flags
        bytes((0xC0, 1, 0)),  # PINGREQ with a body
        bytes((0xE0, 1, 0)),  # DISCONNECT with a body
        bytes((0x40, 3, 0, 1, 0)),  # PUBACK of 3 bytes
    ],
)
def test_bad_control_packets(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_all(data)


@pytest.mark.parametrize("kind", [0, 2, 5, 6, 7, 9, 11, 13, 15])
def test_refused_packet_types(kind: int) -> None:
    flags = 2 if kind == 6 else 0
    with pytest.raises(CodecError):
        decode_all(bytes(((kind << 4) | flags, 0)))


def test_bad_first_byte_is_refused_before_the_rest_arrives() -> None:
    with pytest.raises(CodecError):
        Decoder().feed(b"\xf0")


# framing -----------------------------------------------------------------------------------


def test_split_packets_byte_by_byte() -> None:
    data = connect_packet() + publish_packet("ds/Temperature", b"1" * 300, qos=1, packet_id=2)
    decoder = Decoder()
    packets = []
    for index in range(len(data)):
        packets.extend(decoder.feed(data[index : index + 1]))
        if index == len(connect_packet()) - 2:
            assert packets == []
    assert [type(p) for p in packets] == [Connect, Publish]
    assert isinstance(packets[1], Publish)
    assert packets[1].payload == b"1" * 300
    assert decoder.buffered == 0


def test_several_packets_in_one_read_with_a_partial_tail() -> None:
    data = b"".join(publish_packet(f"ds/n{i}", str(i).encode()) for i in range(100))
    tail = publish_packet("ds/last", b"x")
    decoder = Decoder()
    packets = decoder.feed(data + tail[:3])
    assert [p.topic for p in packets if isinstance(p, Publish)] == [f"ds/n{i}" for i in range(100)]
    assert decoder.buffered == 3
    assert decoder.feed(tail[3:]) == [Publish("ds/last", b"x")]


def test_remaining_length_longer_than_four_bytes() -> None:
    with pytest.raises(CodecError):
        Decoder(max_packet_size=1 << 30).feed(b"\x30\xff\xff\xff\xff\x01")


def test_remaining_length_incomplete_waits() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x30\x80") == []
    assert decoder.feed(b"\x01") == []  # 128 bytes announced, none arrived yet
    assert decoder.buffered == 3


def test_oversized_packet_is_refused_from_its_header() -> None:
    decoder = Decoder(max_packet_size=1024)
    header = b"\x30" + encode_remaining_length(2000)
    with pytest.raises(PacketTooLarge):
        decoder.feed(header)  # refused before the body is buffered


def test_packets_are_decoded_as_many_at_a_time_as_asked() -> None:
    decoder = Decoder()
    data = b"".join(publish_packet("t", str(i).encode()) for i in range(10))
    assert decoder.feed(data, max_packets=4) == [Publish("t", str(i).encode()) for i in range(4)]
    assert decoder.more
    assert len(decoder.feed(b"", max_packets=4)) == 4
    assert len(decoder.feed(b"\xc0", max_packets=4)) == 2  # a partial PINGREQ follows
    assert not decoder.more
    assert decoder.feed(b"\x00") == [PingReq()]


def test_a_byte_limit_stops_at_the_first_packet_starting_past_it() -> None:
    decoder = Decoder()
    packet = publish_packet("t", b"x" * 97)  # 100 bytes
    assert len(decoder.feed(packet * 5, max_bytes=150)) == 2
    assert decoder.more
    assert len(decoder.feed(b"", max_bytes=1)) == 1  # at least one packet
    assert len(decoder.feed(b"")) == 2
    assert not decoder.more and decoder.buffered == 0


def test_packet_at_the_size_limit_passes() -> None:
    data = publish_packet("t", b"x" * 100)
    assert len(Decoder(max_packet_size=len(data)).feed(data)) == 1
    with pytest.raises(CodecError):
        Decoder(max_packet_size=len(data) - 1).feed(data)


# encoding ----------------------------------------------------------------------------------


def test_remaining_length_encoding() -> None:
    assert encode_remaining_length(0) == b"\x00"
    assert encode_remaining_length(127) == b"\x7f"
    assert encode_remaining_length(128) == b"\x80\x01"
    assert encode_remaining_length(16_383) == b"\xff\x7f"
    assert encode_remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        encode_remaining_length(268_435_456)


def test_connack_is_exactly_two_bytes_of_variable_header() -> None:
    assert encode_connack(0) == b"\x20\x02\x00\x00"
    assert encode_connack(4) == b"\x20\x02\x00\x04"
    assert encode_connack(0, session_present=True) == b"\x20\x02\x01\x00"


def test_server_packets() -> None:
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert encode_suback(5, [1, 0, 0x80]) == b"\x90\x05\x00\x05\x01\x00\x80"
    assert encode_unsuback(6) == b"\xb0\x02\x00\x06"
    assert PINGRESP == b"\xd0\x00"


def test_publish_encoding_round_trips_through_the_decoder() -> None:
    data = encode_publish("downlink/ds/Temperature", b"22.5")
    assert data == publish_packet("downlink/ds/Temperature", b"22.5")
    qos1 = encode_publish("downlink/ds/Mode", b"2", qos=1, packet_id=65535)
    assert Decoder().feed(qos1) == [Publish("downlink/ds/Mode", b"2", qos=1, packet_id=65535)]
    big = encode_publish("t", b"x" * 20_000)
    assert Decoder().feed(big) == [Publish("t", b"x" * 20_000)]
    with pytest.raises(ValueError):
        encode_publish("t", b"", qos=1)
    with pytest.raises(ValueError):
        encode_publish("t", b"", qos=2, packet_id=1)


# topics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("downlink/#", "downlink/ds/Temperature", True),
        ("downlink/#", "downlink", True),
        ("#", "downlink/ds/Temperature", True),
        ("downlink/ds/+", "downlink/ds/Temperature", True),
        ("downlink/ds/+", "downlink/ds/Temperature/prop/color", False),
        ("downlink/ds/+/prop/+", "downlink/ds/Temperature/prop/color", True),
        ("downlink/+/Temperature", "downlink/ds/Temperature", True),
        ("downlink/ds/Temperature", "downlink/ds/Temperature", True),
        ("downlink/ds/Temperature", "downlink/ds/Humidity", False),
        ("downlink/ds", "downlink/ds/Temperature", False),
        ("+", "downlink/ds", False),
        ("#", "$SYS/x", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("downlink/#", True),
        ("#", True),
        ("+/+", True),
        ("", False),
        ("a/#/b", False),
        ("a#", False),
        ("a/b+", False),
    ],
)
def test_valid_filter(topic_filter: str, expected: bool) -> None:
    assert valid_filter(topic_filter) is expected
