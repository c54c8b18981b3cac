"""MQTT 5 properties: reading those a client sends (each checked against the packet it came in,
user properties skipped) and encoding those the server sends. Pure and I/O-free.

A property a packet may not carry, or one given twice (user properties aside), is a protocol
error; a value of the wrong form (bad UTF-8, a zero Receive Maximum, ...) a malformed packet.
The properties of one packet may span `MAX_LENGTH` bytes: reading a megabyte of tiny user
properties would hold the event loop for a third of a second, where the payload of a packet of
that size costs next to nothing.
"""

from __future__ import annotations

from pinbase.devices.mqtt import reasons
from pinbase.devices.mqtt.errors import CodecError

PAYLOAD_FORMAT = 0x01
MESSAGE_EXPIRY = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_ID = 0x0B
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTH_METHOD = 0x15
AUTH_DATA = 0x16
REQUEST_PROBLEM_INFO = 0x17
WILL_DELAY = 0x18
REQUEST_RESPONSE_INFO = 0x19
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_AVAILABLE = 0x28
SUBSCRIPTION_ID_AVAILABLE = 0x29
SHARED_AVAILABLE = 0x2A

_BYTE, _TWO, _FOUR, _VARINT, _TEXT, _BINARY, _PAIR = range(7)
_KINDS = {
    PAYLOAD_FORMAT: _BYTE,
    MESSAGE_EXPIRY: _FOUR,
    CONTENT_TYPE: _TEXT,
    RESPONSE_TOPIC: _TEXT,
    CORRELATION_DATA: _BINARY,
    SUBSCRIPTION_ID: _VARINT,
    SESSION_EXPIRY: _FOUR,
    ASSIGNED_CLIENT_ID: _TEXT,
    SERVER_KEEP_ALIVE: _TWO,
    AUTH_METHOD: _TEXT,
    AUTH_DATA: _BINARY,
    REQUEST_PROBLEM_INFO: _BYTE,
    WILL_DELAY: _FOUR,
    REQUEST_RESPONSE_INFO: _BYTE,
    SERVER_REFERENCE: _TEXT,
    REASON_STRING: _TEXT,
    RECEIVE_MAXIMUM: _TWO,
    TOPIC_ALIAS_MAXIMUM: _TWO,
    TOPIC_ALIAS: _TWO,
    MAXIMUM_QOS: _BYTE,
    RETAIN_AVAILABLE: _BYTE,
    USER_PROPERTY: _PAIR,
    MAXIMUM_PACKET_SIZE: _FOUR,
    WILDCARD_AVAILABLE: _BYTE,
    SUBSCRIPTION_ID_AVAILABLE: _BYTE,
    SHARED_AVAILABLE: _BYTE,
}

CONNECT = frozenset(
    {
        SESSION_EXPIRY,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFO,
        REQUEST_PROBLEM_INFO,
        USER_PROPERTY,
        AUTH_METHOD,
        AUTH_DATA,
    }
)
WILL = frozenset(
    {
        WILL_DELAY,
        PAYLOAD_FORMAT,
        MESSAGE_EXPIRY,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    }
)
PUBLISH = frozenset(
    {
        PAYLOAD_FORMAT,
        MESSAGE_EXPIRY,
        TOPIC_ALIAS,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
        CONTENT_TYPE,
    }
)
"""A Subscription Identifier is sent by servers only."""
PUBACK = frozenset({REASON_STRING, USER_PROPERTY})
SUBSCRIBE = frozenset({SUBSCRIPTION_ID, USER_PROPERTY})
UNSUBSCRIBE = frozenset({USER_PROPERTY})
DISCONNECT = frozenset({SESSION_EXPIRY, REASON_STRING, USER_PROPERTY, SERVER_REFERENCE})

Value = int | str | bytes

MAX_LENGTH = 16 * 1024
"""Bytes the properties of one packet may span; more is refused as too large (0x95)."""


def read_varint(body: bytes, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, position after it)."""
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(body):
            raise CodecError("variable byte integer is truncated")
        byte = body[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise CodecError("variable byte integer is longer than four bytes")


def _utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise CodecError("string contains U+0000")
    return text


def _binary(body: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise CodecError("property is truncated")
    size = (body[pos] << 8) | body[pos + 1]
    start = pos + 2
    if start + size > end:
        raise CodecError("property is longer than its properties")
    return body[start : start + size], start + size


def read(body: bytes, pos: int, allowed: frozenset[int]) -> tuple[dict[int, Value], int]:
    """The properties at `pos` (their length first): identifier -> value, user properties left
    out; and the position after them."""
    length, pos = read_varint(body, pos)
    if length > MAX_LENGTH:
        raise CodecError(
            f"properties of {length} bytes exceed the limit of {MAX_LENGTH}",
            reasons.PACKET_TOO_LARGE,
        )
    end = pos + length
    if end > len(body):
        raise CodecError("properties are longer than the packet")
    found: dict[int, Value] = {}
    while pos < end:
        identifier, pos = read_varint(body, pos)
        kind = _KINDS.get(identifier)
        if kind is None or identifier not in allowed:
            raise CodecError(
                f"property {identifier:#x} is not allowed here", reasons.PROTOCOL_ERROR
            )
        value: Value
        if kind == _BYTE:
            if pos + 1 > end:
                raise CodecError("property is truncated")
            value, pos = body[pos], pos + 1
        elif kind == _TWO:
            if pos + 2 > end:
                raise CodecError("property is truncated")
            value, pos = int.from_bytes(body[pos : pos + 2], "big"), pos + 2
        elif kind == _FOUR:
            if pos + 4 > end:
                raise CodecError("property is truncated")
            value, pos = int.from_bytes(body[pos : pos + 4], "big"), pos + 4
        elif kind == _VARINT:
            value, pos = read_varint(body[:end], pos)
        elif kind == _BINARY:
            value, pos = _binary(body, pos, end)
        elif kind == _TEXT:
            raw, pos = _binary(body, pos, end)
            value = _utf8(raw)
        else:  # a user property: a name and a value, ignored
            raw, pos = _binary(body, pos, end)
            _utf8(raw)
            raw, pos = _binary(body, pos, end)
            _utf8(raw)
            continue
        if identifier in found:
            raise CodecError(f"property {identifier:#x} is given twice", reasons.PROTOCOL_ERROR)
        found[identifier] = value
    return found, end


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(items: list[tuple[int, Value]]) -> bytes:
    """Properties the server sends, their length first."""
    out = bytearray()
    for identifier, value in items:
        kind = _KINDS[identifier]
        out += encode_varint(identifier)
        if isinstance(value, int):
            size = {_BYTE: 1, _TWO: 2, _FOUR: 4}.get(kind)
            out += encode_varint(value) if size is None else value.to_bytes(size, "big")
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += len(raw).to_bytes(2, "big") + raw
    return encode_varint(len(out)) + bytes(out)


EMPTY = b"\x00"
"""No properties."""
