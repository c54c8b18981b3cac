"""MQTT 3.1.1 and 5 packets: an incremental decoder for what devices send and encoders for what
the server answers. Pure and I/O-free.

Only the subset the device API needs: CONNECT, PUBLISH at QoS 0 and 1, PUBACK, SUBSCRIBE,
UNSUBSCRIBE, PINGREQ and DISCONNECT in; CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP
and (MQTT 5) DISCONNECT out. Anything else a client sends (QoS 2 and its PUBREC/PUBREL/PUBCOMP
flow, MQTT 5's AUTH, server-only packet types, reserved types or flags) is a `CodecError`, after
which the connection is unusable.

The decoder reads the protocol level from the CONNECT and decodes what follows in that version.
MQTT 5's properties are read (`properties`) and checked against their packet; those the server
has a use for are kept on the packet (CONNECT's session expiry, receive maximum, maximum packet
size, authentication method; a PUBLISH's topic alias), the rest skipped, user properties
included. What MQTT 5 adds to the subscription options (no local, retain as published, retain
handling) is checked and ignored: devices are never routed to each other and nothing is
retained.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pinbase.devices.mqtt import properties as props
from pinbase.devices.mqtt import reasons
from pinbase.devices.mqtt.errors import CodecError

__all__ = ["CodecError"]

MAX_PACKET_SIZE = 1024 * 1024
"""Largest packet accepted by default (fixed header included), in bytes."""
MAX_REMAINING_LENGTH = 268_435_455  # four bytes of variable-length integer

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4  # MQTT 3.1.1
MQTT5 = 5
LEVELS = (PROTOCOL_LEVEL, MQTT5)

# CONNACK return codes
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL_VERSION = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_USERNAME_OR_PASSWORD = 4
NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80

_CONNECT = 1
_CONNACK = 2
_PUBLISH = 3
_PUBACK = 4
_SUBSCRIBE = 8
_SUBACK = 9
_UNSUBSCRIBE = 10
_UNSUBACK = 11
_PINGREQ = 12
_PINGRESP = 13
_DISCONNECT = 14
_AUTH = 15


class PacketTooLarge(CodecError):
    """A packet's fixed header announces more than the decoder's `max_packet_size`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reasons.PACKET_TOO_LARGE)


class BadConnect(CodecError):
    """An MQTT 5 CONNECT that is not well formed: answer a CONNACK with `reason`, then close."""


class UnsupportedProtocol(CodecError):
    """A CONNECT for another MQTT version: answer CONNACK 1, then close."""

    def __init__(self, name: str, level: int) -> None:
        super().__init__(f"unsupported protocol {name!r} level {level}")
        self.name = name
        self.level = level


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_session: bool
    keep_alive: int
    """Seconds; 0 turns keep-alive off."""
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_message: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    level: int = PROTOCOL_LEVEL
    """4 (MQTT 3.1.1) or 5; what follows the CONNECT is decoded in this version."""
    session_expiry: int = 0
    """MQTT 5: seconds the client asks its session to outlive the connection."""
    receive_maximum: int = 65535
    """MQTT 5: QoS 1 PUBLISHes the client takes unacknowledged at once."""
    maximum_packet_size: int | None = None
    """MQTT 5: the largest packet the client takes (None: no limit but the protocol's)."""
    auth_method: str | None = None
    """MQTT 5: an extended authentication method (none is supported)."""


@dataclass(slots=True)
class Publish:
    """Not frozen, unlike the other packets: one is made per value a device sends, and a frozen
    dataclass takes several times as long to construct."""

    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False
    topic_alias: int | None = None
    """MQTT 5: none is allowed (the CONNACK announces a Topic Alias Maximum of 0)."""


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]
    """(topic filter, requested QoS) pairs."""
    subscription_id: int | None = None
    """MQTT 5: a Subscription Identifier (not supported)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = Connect | Publish | PubAck | Subscribe | Unsubscribe | PingReq | Disconnect

_PINGREQ_PACKET = PingReq()
_DISCONNECT_PACKET = Disconnect()


class Decoder:
    """Turns a byte stream into packets, whatever way the stream is cut into reads."""

    __slots__ = ("_buffer", "level", "max_packet_size", "more")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()
        self.more = False
        """The last `feed` stopped at its limits with bytes left: `feed(b"")` may decode more."""
        self.level = PROTOCOL_LEVEL
        """The protocol level of the CONNECT decoded (4 until one is)."""

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buffer)

    def feed(
        self, data: bytes, max_packets: int = sys.maxsize, max_bytes: int = sys.maxsize
    ) -> list[Packet]:
        """The packets completed by `data`, in order; raises CodecError on a bad one.

        Decoding stops after `max_packets` packets, or at the first packet that starts once the
        packets decoded span `max_bytes` bytes; what follows stays buffered for the next call
        (`feed(b"")` goes on) and `more` is set. A packet's size is checked against
        `max_packet_size` as soon as its fixed header is in, before its body arrives."""
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        end = len(buffer)
        pos = 0
        limit = self.max_packet_size
        more = False
        while pos < end:
            if len(packets) >= max_packets or pos >= max_bytes:
                more = True
                break
            first = buffer[pos]
            _check_first(first, self.level)
            length = 0
            shift = 0
            index = pos + 1
            complete = False
            while index < end:
                byte = buffer[index]
                index += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift == 28:
                    raise CodecError("remaining length is longer than four bytes")
            if not complete:
                break  # the remaining length itself is still incomplete
            size = index - pos + length
            if size > limit:
                raise PacketTooLarge(f"packet of {size} bytes exceeds the limit of {limit}")
            if index + length > end:
                break
            packet = _decode(first, bytes(buffer[index : index + length]), self.level)
            if type(packet) is Connect:
                self.level = packet.level
            packets.append(packet)
            pos = index + length
        self.more = more
        if pos:
            del buffer[:pos]
        return packets


_FLAGS = {
    _CONNECT: 0,
    _PUBACK: 0,
    _SUBSCRIBE: 2,
    _UNSUBSCRIBE: 2,
    _PINGREQ: 0,
    _DISCONNECT: 0,
}


def _check_first(first: int, level: int) -> None:
    """Refuse a bad fixed header at its first byte, before waiting for the rest."""
    kind = first >> 4
    flags = first & 0x0F
    if kind == _PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise CodecError("PUBLISH QoS 3 is invalid")
        if qos == 2:
            raise CodecError("QoS 2 is not supported", reasons.QOS_NOT_SUPPORTED)
        if flags & 0x08 and not qos:
            raise CodecError("PUBLISH at QoS 0 must not have the DUP flag")
        return
    expected = _FLAGS.get(kind)
    if expected is None:
        if kind in (5, 6, 7):
            raise CodecError("QoS 2 is not supported", reasons.PROTOCOL_ERROR)
        if kind in (_CONNACK, _SUBACK, _UNSUBACK, _PINGRESP):
            raise CodecError(f"packet type {kind} is sent by servers only", reasons.PROTOCOL_ERROR)
        if kind == _AUTH and level == MQTT5:
            raise CodecError("extended authentication is not supported", reasons.PROTOCOL_ERROR)
        raise CodecError(f"reserved packet type {kind}")
    if flags != expected:
        raise CodecError(f"packet type {kind} has invalid fixed-header flags {flags:#x}")


def _decode(first: int, body: bytes, level: int) -> Packet:
    """The packet of a checked first byte and its complete body, in protocol `level`."""
    kind = first >> 4
    if kind == _PUBLISH:
        if level == MQTT5:
            return _publish5(first & 0x0F, body)
        return _publish(first & 0x0F, body)
    if kind == _PUBACK:
        if level == MQTT5 and len(body) > 2:
            if len(body) > 3:
                props.read(body, 3, props.PUBACK)  # reason code, then properties: ignored
            return PubAck(_packet_id(body, 0))
        if len(body) != 2:
            raise CodecError("PUBACK must have a remaining length of 2")
        return PubAck(_packet_id(body, 0))
    if kind == _PINGREQ:
        _empty(kind, body)
        return _PINGREQ_PACKET
    if kind == _SUBSCRIBE:
        return _subscribe(body, level)
    if kind == _UNSUBSCRIBE:
        return _unsubscribe(body, level)
    if kind == _CONNECT:
        return _connect(body)
    if level == MQTT5 and len(body) > 1:
        props.read(body, 1, props.DISCONNECT)  # a reason code, then properties: ignored
        return _DISCONNECT_PACKET
    if level != MQTT5:
        _empty(kind, body)
    return _DISCONNECT_PACKET


def _empty(kind: int, body: bytes) -> None:
    if body:
        raise CodecError(f"packet type {kind} must have a remaining length of 0")


def _packet_id(body: bytes, pos: int) -> int:
    if pos + 2 > len(body):
        raise CodecError("packet identifier is missing")
    packet_id = (body[pos] << 8) | body[pos + 1]
    if packet_id == 0:
        raise CodecError("packet identifier 0 is invalid")
    return packet_id


def _binary(body: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(body):
        raise CodecError("length prefix is missing")
    size = (body[pos] << 8) | body[pos + 1]
    start = pos + 2
    if start + size > len(body):
        raise CodecError("field is longer than the packet")
    return body[start : start + size], start + size


def _text(body: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _binary(body, pos)
    return _utf8(raw), pos


def _utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise CodecError("string contains U+0000")
    return text


def _connect(body: bytes) -> Connect:
    name, pos = _text(body, 0)
    if pos >= len(body):
        raise CodecError("CONNECT is truncated")
    level = body[pos]
    if name != PROTOCOL_NAME or level not in LEVELS:
        if name in (PROTOCOL_NAME, "MQIsdp"):
            raise UnsupportedProtocol(name, level)
        raise CodecError(f"unknown protocol name {name!r}")
    if level == MQTT5:
        try:
            return _connect_fields(body, pos)
        except BadConnect:
            raise
        except CodecError as exc:
            raise BadConnect(str(exc), exc.reason) from None
    return _connect_fields(body, pos)


def _connect_fields(body: bytes, pos: int) -> Connect:
    """A CONNECT from its protocol level (at `pos`) on."""
    level = body[pos]
    if pos + 4 > len(body):
        raise CodecError("CONNECT is truncated")
    flags = body[pos + 1]
    keep_alive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    if flags & 0x01:
        raise CodecError("CONNECT reserved flag is set")
    will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if will_qos == 3:
        raise CodecError("will QoS 3 is invalid")
    if not will and (will_qos or will_retain):
        raise CodecError("will QoS and retain need the will flag")
    if has_password and not has_username and level != MQTT5:
        raise CodecError("a password needs a user name")
    found: dict[int, props.Value] = {}
    if level == MQTT5:
        found, pos = props.read(body, pos, props.CONNECT)
    client_id, pos = _text(body, pos)
    will_topic: str | None = None
    will_message: bytes | None = None
    if will:
        if level == MQTT5:
            _, pos = props.read(body, pos, props.WILL)
        will_topic, pos = _text(body, pos)
        will_message, pos = _binary(body, pos)
    username: str | None = None
    password: bytes | None = None
    if has_username:
        username, pos = _text(body, pos)
    if has_password:
        password, pos = _binary(body, pos)
    if pos != len(body):
        raise CodecError("CONNECT has trailing bytes")
    receive_maximum = found.get(props.RECEIVE_MAXIMUM, 65535)
    maximum_packet_size = found.get(props.MAXIMUM_PACKET_SIZE)
    auth_method = found.get(props.AUTH_METHOD)
    if receive_maximum == 0 or maximum_packet_size == 0:
        raise CodecError("Receive Maximum and Maximum Packet Size must not be 0")
    if props.AUTH_DATA in found and auth_method is None:
        raise CodecError("authentication data needs a method", reasons.PROTOCOL_ERROR)
    return Connect(
        client_id=client_id,
        clean_session=bool(flags & 0x02),
        keep_alive=keep_alive,
        username=username,
        password=password,
        will_topic=will_topic,
        will_message=will_message,
        will_qos=will_qos,
        will_retain=will_retain,
        level=level,
        session_expiry=int(found.get(props.SESSION_EXPIRY, 0)),
        receive_maximum=int(receive_maximum),
        maximum_packet_size=None if maximum_packet_size is None else int(maximum_packet_size),
        auth_method=None if auth_method is None else str(auth_method),
    )


def _publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if len(body) < 2:
        raise CodecError("PUBLISH topic is missing")
    size = (body[0] << 8) | body[1]
    pos = 2 + size
    if pos > len(body):
        raise CodecError("PUBLISH topic is longer than the packet")
    topic = _utf8(body[2:pos])
    if not topic:
        raise CodecError("PUBLISH topic is empty")
    if "+" in topic or "#" in topic:
        raise CodecError("PUBLISH topic contains a wildcard")
    packet_id: int | None = None
    if qos:
        packet_id = _packet_id(body, pos)
        pos += 2
    return Publish(topic, body[pos:], qos, packet_id, bool(flags & 0x01), bool(flags & 0x08))


def _publish5(flags: int, body: bytes) -> Publish:
    """An MQTT 5 PUBLISH: properties after the packet identifier; a topic alias is kept (for the
    session to refuse), the other properties skipped."""
    qos = (flags >> 1) & 0x03
    topic, pos = _text(body, 0)
    if "+" in topic or "#" in topic:
        raise CodecError("PUBLISH topic contains a wildcard")
    packet_id: int | None = None
    if qos:
        packet_id = _packet_id(body, pos)
        pos += 2
    found, pos = props.read(body, pos, props.PUBLISH)
    alias = found.get(props.TOPIC_ALIAS)
    if alias is None and not topic:
        raise CodecError("PUBLISH topic is empty", reasons.PROTOCOL_ERROR)
    return Publish(
        topic,
        body[pos:],
        qos,
        packet_id,
        bool(flags & 0x01),
        bool(flags & 0x08),
        None if alias is None else int(alias),
    )


def _subscribe(body: bytes, level: int) -> Subscribe:
    packet_id = _packet_id(body, 0)
    pos = 2
    subscription_id: int | None = None
    if level == MQTT5:
        found, pos = props.read(body, pos, props.SUBSCRIBE)
        if props.SUBSCRIPTION_ID in found:
            subscription_id = int(found[props.SUBSCRIPTION_ID])
    topics: list[tuple[str, int]] = []
    while pos < len(body):
        topic_filter, pos = _text(body, pos)
        if pos >= len(body):
            raise CodecError("SUBSCRIBE requested QoS is missing")
        qos = body[pos]
        pos += 1
        if level == MQTT5:
            if qos & 0xC0 or (qos >> 4) & 0x03 == 3:
                raise CodecError(f"SUBSCRIBE options byte {qos:#x} is invalid")
            qos &= 0x03  # no local, retain as published, retain handling: nothing is retained
        if qos > 2:
            raise CodecError(f"SUBSCRIBE requested QoS byte {qos:#x} is invalid")
        if not valid_filter(topic_filter):
            raise CodecError(f"invalid topic filter {topic_filter!r}", reasons.TOPIC_FILTER_INVALID)
        topics.append((topic_filter, qos))
    if not topics:
        raise CodecError("SUBSCRIBE has no topic filter", reasons.PROTOCOL_ERROR)
    return Subscribe(packet_id, tuple(topics), subscription_id)


def _unsubscribe(body: bytes, level: int) -> Unsubscribe:
    packet_id = _packet_id(body, 0)
    pos = 2
    if level == MQTT5:
        _, pos = props.read(body, pos, props.UNSUBSCRIBE)
    topics: list[str] = []
    while pos < len(body):
        topic_filter, pos = _text(body, pos)
        if not valid_filter(topic_filter):
            raise CodecError(f"invalid topic filter {topic_filter!r}")
        topics.append(topic_filter)
    if not topics:
        raise CodecError("UNSUBSCRIBE has no topic filter")
    return Unsubscribe(packet_id, tuple(topics))


# topics ----------------------------------------------------------------------------------


def valid_filter(topic_filter: str) -> bool:
    """Whether a topic filter is well formed: `#` last and alone in its level, `+` alone."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a topic name matches a (valid) topic filter with `+` and `#` wildcards."""
    if topic_filter == topic:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True  # also matches the parent level itself ("a/#" matches "a")
        if index >= len(levels):
            return False
        if level != "+" and level != levels[index]:
            return False
    return len(wanted) == len(levels)


# encoders --------------------------------------------------------------------------------


def encode_remaining_length(length: int) -> bytes:
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} cannot be encoded")
    return props.encode_varint(length)


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_connack(return_code: int, session_present: bool = False) -> bytes:
    """CONNACK: exactly two bytes of variable header, no payload."""
    return bytes((_CONNACK << 4, 2, 1 if session_present else 0, return_code))


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    if qos not in (0, 1):
        raise ValueError("only QoS 0 and 1 are sent")
    name = topic.encode()
    header = len(name).to_bytes(2, "big") + name
    if qos:
        if packet_id is None or not 0 < packet_id <= 0xFFFF:
            raise ValueError("a QoS 1 PUBLISH needs a packet identifier from 1 to 65535")
        header += packet_id.to_bytes(2, "big")
    first = (_PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return _packet(first, header + payload)


def encode_puback(packet_id: int) -> bytes:
    return bytes((_PUBACK << 4, 2, packet_id >> 8, packet_id & 0xFF))


def encode_suback(packet_id: int, return_codes: tuple[int, ...] | list[int]) -> bytes:
    return _packet(_SUBACK << 4, packet_id.to_bytes(2, "big") + bytes(return_codes))


def encode_unsuback(packet_id: int) -> bytes:
    return bytes((_UNSUBACK << 4, 2, packet_id >> 8, packet_id & 0xFF))


PINGRESP = bytes((_PINGRESP << 4, 0))


# MQTT 5 encoders -------------------------------------------------------------------------


def encode_connack5(reason: int, properties: list[tuple[int, props.Value]] | None = None) -> bytes:
    """An MQTT 5 CONNACK: no session present, a reason code, properties."""
    return _packet(_CONNACK << 4, bytes((0, reason)) + props.encode(properties or []))


def encode_publish5(
    topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None
) -> bytes:
    """An MQTT 5 PUBLISH, without properties."""
    name = topic.encode()
    header = len(name).to_bytes(2, "big") + name
    if qos:
        if packet_id is None or not 0 < packet_id <= 0xFFFF:
            raise ValueError("a QoS 1 PUBLISH needs a packet identifier from 1 to 65535")
        header += packet_id.to_bytes(2, "big")
    return _packet((_PUBLISH << 4) | (qos << 1), header + props.EMPTY + payload)


def encode_puback5(packet_id: int, reason: int) -> bytes:
    """An MQTT 5 PUBACK; its short form (no reason code) for success."""
    if reason == reasons.SUCCESS:
        return encode_puback(packet_id)
    return bytes((_PUBACK << 4, 4, packet_id >> 8, packet_id & 0xFF, reason, 0))


def encode_suback5(packet_id: int, reason_codes: list[int]) -> bytes:
    return _packet(_SUBACK << 4, packet_id.to_bytes(2, "big") + props.EMPTY + bytes(reason_codes))


def encode_unsuback5(packet_id: int, reason_codes: list[int]) -> bytes:
    return _packet(_UNSUBACK << 4, packet_id.to_bytes(2, "big") + props.EMPTY + bytes(reason_codes))


def encode_disconnect5(reason: int) -> bytes:
    """An MQTT 5 DISCONNECT from the server: a reason code, no properties."""
    return bytes((_DISCONNECT << 4, 2, reason, 0))
