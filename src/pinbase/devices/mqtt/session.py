"""One MQTT device connection as a sans-IO state machine: bytes and time in, requests and bytes
out (in the manner of h11's `Connection`). Nothing here touches a socket, an event loop or a
clock: whatever needs the time takes `now`, in monotonic seconds. `transport` moves the bytes,
enforces the deadlines and performs the requests with the app layer.

The protocol, as a device sees it:

- CONNECT with user name `device` and the device's auth token as password; anything else is
  CONNACK 4 (bad user name or password; MQTT 5: 0x86) and the connection is closed. Protocol
  levels 4 (MQTT 3.1.1) and 5 (MQTT 5) are spoken, each in its own packet forms; another level
  is CONNACK 1. A 3.1.1 empty client id without a clean session is CONNACK 2; an MQTT 5 one is
  assigned `pinbase-<n>`.
  Sessions are always clean: CONNACK says no session is present, and nothing survives a
  connection (no queued QoS 1 messages, no subscriptions, no will message: devices are not
  routed to each other). A first packet other than CONNECT, or a second CONNECT, closes the
  connection (a second CONNECT once the packets before it are handled).
- What a stranger can make the server hold is bounded: a connection whose CONNECT has not come
  `connect_timeout` seconds after it was accepted is closed, however it trickles its bytes;
  until its CONNECT is accepted it may send `connect_bytes` bytes in all (4 KiB by default: the
  CONNECT, its will message included, and whatever it pipelines after it) and no larger
  packet: the fixed header of a larger one (it announces the size) closes the connection
  before the body arrives. After the CONNACK packets may be up to 1 MiB.
- One connection per device: a new CONNECT with the same token closes the older connection.
  The end of the TCP connection, whether or not a DISCONNECT came first, marks the device
  offline. A connection silent for 1.5 x its keep-alive is closed (a keep-alive of 0, "off",
  or above 10 minutes counts as 10 minutes, so that a device that vanished is seen offline);
  the time the server spends on what the device sent does not count as silence.
- Uplink topics, datastreams named by label: `ds/<label>` (payload = the value as text; parts
  of a multi-part value such as a location are separated by NUL or, for a location, a comma),
  `batch_ds` (JSON object label -> JSON value), `ds/<label>/timestamped_batch`
  (`[[ts_ms, value], ...]`, at most 10,000 points; points more than a month in the future
  are skipped, as on every interface (`Ingest.import_points`); one bad point refuses the
  whole batch; charged as one import request against the per-device import limit),
  `ds/<label>/prop/<property>` (widget property),
  `get/ds` (comma-separated labels) and `get/ds/all` (answered on `downlink/ds/<label>` for
  every requested datastream that has a value), `get/utc/all/json` (the device's time and
  timezone, answered on `downlink/utc/all/json`), `event/<code>` (log an event of the
  product; payload = its description, empty: the event's own; what is refused, an unknown
  code, a description over 300 characters, an event over the limits, is told on
  `downlink/diag`). Blynk's `ds/<label>/erase` is not supported
  (told on `downlink/diag`); `info/mcu` (a JSON object: firmware version, build, template,
  board) is kept as the device's hardware info (`domain.hardware`); other topics are ignored.
- Metadata: `meta/<name>` sets the device's value of a metafield (the payload, UTF-8 text);
  `get/meta` (comma-separated names) is answered on `downlink/meta/<name>` per metafield
  (an empty payload when it has no value). An unknown name or a refused value is told on
  `downlink/diag` (the transport checks them: the session knows no metafields).
- Every PUBLISH at QoS 0 or 1 goes through the one write path; a QoS 1 PUBACK is sent only once
  the write is durable, and PUBACKs keep the order of their PUBLISHes. QoS 2 closes the
  connection. The retain flag is ignored.
- What cannot be stored is dropped, and QoS 1 PUBLISHes are still acknowledged (an MQTT 3.1.1
  PUBACK cannot refuse): mismatched values, unknown labels, bad properties. The device is told
  on `downlink/diag`, the topic Blynk uses for server diagnostics, which like Blynk's reaches
  the device without a subscription, at QoS 0: one line of text such as
  `ds/Humidity: Value doesn't match the Datastream data type.` (at most 10 a second).
- Values beyond the device's rate limit are not dropped: the adapter stores those that fit and
  stops reading the socket until the rest fit too (back-pressure through TCP), so a device
  publishing faster than its rate is slowed down to it; their PUBACKs follow once they are
  stored. The device is told once (`over_rate`, at most every `QUOTA_WARN_PERIOD` seconds) on
  `downlink/diag`.
- Downlink: value changes go to `downlink/ds/<label>`, property changes to
  `downlink/ds/<label>/prop/<property>`, only when a subscription of the device matches (`+`
  and `#` work). SUBACK grants the requested QoS capped at 1; a QoS 1 subscription receives
  QoS 1 PUBLISHes. A device is never sent its own writes back.
- A malformed packet, or one above 1 MiB, closes that connection only; nothing of the turn
  (below) it was decoded in is acted on.
- Erasing: `ds/<label>/erase` (`EraseValue`) empties the current value, and
  `ds/<label>/prop/<name>/erase` (`EraseProperty`) removes a widget property.

MQTT 5, beside the packet forms (properties read and skipped, user properties ignored):

- The CONNACK says what the server does: Session Expiry 0 (sessions are always clean, whatever
  the client asked), Receive Maximum `TURN_PACKETS`, Maximum QoS 1, Maximum Packet Size 1 MiB,
  Topic Alias Maximum 0, no subscription identifiers or shared subscriptions; Server Keep
  Alive when the keep-alive in force is not the client's; an Assigned Client Identifier for an
  empty one. A CONNECT naming an authentication method is refused (0x8C); a malformed MQTT 5
  CONNECT gets a CONNACK with its reason code (0x81, 0x82).
- The device's Receive Maximum is honoured: QoS 1 downlinks beyond it, unacknowledged, go at
  QoS 0, and a packet id still in flight is never reused. Its Maximum Packet Size too: a
  downlink or diagnostic larger than it is not sent.
- Reason codes: a PUBACK refuses a PUBLISH to an unknown label (0x90 topic name invalid); a
  SUBACK grants QoS 0 or 1, or refuses a shared subscription (0x9E); an UNSUBACK says whether
  there was a subscription (0x00, 0x11).
- A protocol violation once logged in is answered with a DISCONNECT carrying its reason code,
  after the answers due before it, then the connection closes: a malformed packet (0x81), a
  protocol error (0x82, a second CONNECT, AUTH), a packet above 1 MiB (0x95, at its fixed
  header), QoS 2 (0x9B), a topic alias (0x94), a subscription identifier (0xA1), keep-alive
  expiry (0x8D). Before the login, as with 3.1.1, the connection is only closed.

How the machine is driven:

- `receive_data(data, now)` decodes and returns the *requests* the app layer must perform, in
  order, a turn at a time: at most `TURN_PACKETS` packets, none starting past `TURN_BYTES`
  bytes. What follows stays undecoded (`pending`) until the caller, having performed the
  turn's requests, calls `receive_data(b"", now)`; so one large read never makes the server
  work through thousands of packets at once, and the caller can let other connections run
  between turns. Before the login the only request is `Login`, answered by `accept()` or
  `refuse()`.
  Then: consecutive `ds/<label>` values become one `WriteValues`; `batch_ds` is `BatchValues`;
  `TimestampedBatch`, `SetProperty` and `GetCurrent` follow. Label lookups use `datastreams`,
  a mapping the app layer keeps current, whose values the session only passes through (so it
  knows nothing of the domain). Unknown labels and `erase` are told on `downlink/diag` here.
- Everything the session answers by itself (PUBACK, PINGRESP, SUBACK, UNSUBACK, diagnostics) is
  held until the requests before it are done: the caller reports each with `done(request,
  now)`, in order, once its writes are durable. So a PUBACK (or PINGRESP) follows every write
  its packet came after, and answers keep the order of what they answer. A subscription
  counts from the moment its SUBSCRIBE is read (MQTT lets a server publish before the SUBACK).
- `publish_value` / `publish_property` (downlink, honouring subscriptions and granted QoS, with
  packet ids 1..65535 that wrap), `diag` (rate limited) and the CONNACKs queue bytes at once;
  `data_to_send()` takes whatever is ready, in order.
- `next_deadline()` is when `expire(now)` should be called: the CONNECT timeout, then the
  keep-alive; None while the caller is performing requests or deciding a login. The session is
  `closed` after a refusal, a protocol violation, a DISCONNECT, an expiry or `close()`, with a
  `reason` for the log; requests already returned are still to be performed and `done`.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from pinbase.devices.mqtt import properties as props
from pinbase.devices.mqtt import reasons
from pinbase.devices.mqtt.codec import (
    ACCEPTED,
    BAD_USERNAME_OR_PASSWORD,
    IDENTIFIER_REJECTED,
    MAX_PACKET_SIZE,
    MQTT5,
    PINGRESP,
    UNACCEPTABLE_PROTOCOL_VERSION,
    BadConnect,
    CodecError,
    Connect,
    Decoder,
    Disconnect,
    Packet,
    PacketTooLarge,
    PingReq,
    PubAck,
    Publish,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocol,
    encode_connack,
    encode_connack5,
    encode_disconnect5,
    encode_puback,
    encode_puback5,
    encode_publish,
    encode_publish5,
    encode_suback,
    encode_suback5,
    encode_unsuback,
    encode_unsuback5,
    topic_matches,
)

USERNAME = "device"
CONNECT_TIMEOUT = 10.0
"""Seconds a new connection has to send its CONNECT, by default."""
CONNECT_BYTES = 4096
"""Bytes a connection may send before its CONNECT is accepted (the CONNECT included), by
default."""
TURN_PACKETS = 512
TURN_BYTES = 64 * 1024
"""Packets decoded at a time: at most `TURN_PACKETS`, and none starting past `TURN_BYTES`."""
QUOTA_WARN_PERIOD = 60.0
"""Seconds between two diagnostics telling a device it is over its rate limit."""
KEEP_ALIVE_FACTOR = 1.5
MAX_KEEP_ALIVE = 600
"""Seconds; a keep-alive of 0 (off) or above this counts as this, so a vanished device that
never closed its connection is still seen offline."""
MAX_META_NAMES = 50
"""Names a `get/meta` asks for beyond this many are ignored."""
DIAG_TOPIC = "downlink/diag"
DIAG_PER_SECOND = 10
MATCH_CACHE_SIZE = 1024
"""Downlink topics whose best matching subscription is remembered (cleared when exceeded)."""
DISCONNECTED = "DISCONNECT"
"""The `reason` of a session the device ended itself."""
TOO_MUCH_BEFORE_LOGIN = "too much data before login"
OVER_RATE = "Too many values: reading paused until the rate limit lets more through."

ASSIGNED_ID_PREFIX = "pinbase-"
"""MQTT 5: an empty client id is given `pinbase-<n>` (the CONNACK says so)."""
SHARED_PREFIX = "$share/"

_TIMESTAMPED = "/timestamped_batch"
_ERASE = "/erase"
_EVENT = "event/"
_PROP = "/prop/"
_CONNACK_ACCEPTED = encode_connack(ACCEPTED)

D = TypeVar("D")
"""A datastream as the app layer knows it; the session only looks it up by label."""


class State(enum.Enum):
    CONNECTING = "connecting"
    """Waiting for the CONNECT."""
    LOGGING_IN = "logging in"
    """The CONNECT was well formed: waiting for `accept()` or `refuse()`."""
    CONNECTED = "connected"
    CLOSED = "closed"


# requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    """A well-formed CONNECT: does `token` open a device? Answer `accept()` or `refuse()`."""

    token: str


@dataclass(frozen=True, slots=True)
class WriteValues(Generic[D]):
    """`ds/<label>` PUBLISHes in a row: (datastream, payload as sent), in order."""

    values: list[tuple[D, bytes]]


@dataclass(frozen=True, slots=True)
class BatchValues:
    """A `batch_ds` PUBLISH: a JSON object label -> value, written with the values around it."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class TimestampedBatch(Generic[D]):
    """`ds/<label>/timestamped_batch`: `[[ts_ms, value], ...]` for one datastream."""

    datastream: D
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class SetProperty(Generic[D]):
    """`ds/<label>/prop/<name>`: a widget property, the payload its value."""

    datastream: D
    name: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class EraseValue(Generic[D]):
    """`ds/<label>/erase`: the datastream's current value becomes empty."""

    datastream: D
    topic: str


@dataclass(frozen=True, slots=True)
class EraseProperty(Generic[D]):
    """`ds/<label>/prop/<name>/erase`: the widget property is removed."""

    datastream: D
    name: str
    topic: str


@dataclass(frozen=True, slots=True)
class GetCurrent(Generic[D]):
    """`get/ds` or `get/ds/all`: send the current values with `publish_value`."""

    datastreams: list[D] | None
    """None: every datastream of the device."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """`event/<code>`: log an event of the device's product; the payload is its description
    (empty: the event's own)."""

    code: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class GetUtc:
    """`get/utc/all/json`: send the device's time and timezone with `publish_utc`."""


@dataclass(frozen=True, slots=True)
class SetMeta:
    """`meta/<name>`: the device's value of a metafield, the payload its text."""

    name: str
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """`info/mcu`: what the device tells of itself, a JSON object (`domain.hardware`)."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class GetMeta:
    """`get/meta`: send the named metafields' values with `publish_meta`."""

    names: list[str]


Request: TypeAlias = (
    Login
    | WriteValues[D]
    | BatchValues
    | TimestampedBatch[D]
    | SetProperty[D]
    | EraseValue[D]
    | EraseProperty[D]
    | GetCurrent[D]
    | GetUtc
    | SetMeta
    | GetMeta
    | ReportInfo
    | LogEvent
)


@dataclass(slots=True)
class _Held:
    """A request not yet done, and the answers due once it is."""

    request: object
    answers: list[bytes] = field(default_factory=list)


# the session -----------------------------------------------------------------------------


class MqttSession(Generic[D]):
    """The protocol state of one device connection (see the module docstring)."""

    __slots__ = (
        "_connect_bytes",
        "_connect_timeout",
        "_deadline",
        "_decoder",
        "_diag_count",
        "_diag_since",
        "_early",
        "_granted_cache",
        "_held",
        "_inflight",
        "_login_bytes",
        "_max_out",
        "_out",
        "_packet_id",
        "_quota_warned",
        "_receive_max",
        "_server_keep_alive",
        "_subscriptions",
        "_timeout",
        "client_id",
        "datastreams",
        "keep_alive",
        "level",
        "reason",
        "state",
    )

    _assigned = 0
    """Client ids assigned so far (MQTT 5, empty client ids), process-wide."""

    def __init__(
        self,
        now: float,
        connect_timeout: float = CONNECT_TIMEOUT,
        connect_bytes: int = CONNECT_BYTES,
    ) -> None:
        """A connection accepted at `now`: it has `connect_timeout` seconds to send its CONNECT
        and may send `connect_bytes` bytes until the CONNECT is accepted."""
        self.state = State.CONNECTING
        self.reason = ""
        """Why the session closed (empty while it is not): a fixed phrase, then `: ` and
        details, if any; the phrase alone says which kind of close it is (for a log that counts
        them)."""
        self.datastreams: Mapping[str, D] = {}
        """Label -> datastream of the logged-in device; the caller keeps it current."""
        self.keep_alive = 0
        """The keep-alive in force, seconds (0 until the CONNECT)."""
        self._decoder = Decoder(connect_bytes)
        self._connect_timeout = connect_timeout
        self._connect_bytes = connect_bytes
        self._login_bytes = connect_bytes
        """Bytes the connection may still send before its CONNECT is accepted."""
        self._deadline: float | None = now + connect_timeout
        self._timeout = 0.0
        self._early: list[Packet] = []
        self._held: list[_Held] = []
        self._out: list[bytes] = []
        self._subscriptions: dict[str, int] = {}
        self._granted_cache: dict[str, int | None] = {}
        self._packet_id = 0
        self._diag_since = -math.inf
        self._diag_count = 0
        self._quota_warned = -math.inf
        self.level = 4
        """The protocol level of the CONNECT: 4 (MQTT 3.1.1) or 5."""
        self.client_id = ""
        self._receive_max = 0xFFFF
        """MQTT 5: QoS 1 downlinks the device takes unacknowledged; beyond, they go at QoS 0."""
        self._inflight: set[int] = set()
        """MQTT 5: packet ids of QoS 1 downlinks not yet acknowledged."""
        self._max_out = MAX_PACKET_SIZE
        """MQTT 5: the largest packet the device takes; larger downlinks are not sent."""
        self._server_keep_alive = False

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def pending(self) -> bool:
        """Bytes received wait, undecoded, beyond the last turn: `receive_data(b"")` goes on."""
        return self._decoder.more and self.state is not State.CLOSED

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Topic filter -> granted QoS."""
        return self._subscriptions

    def close(self, reason: str) -> None:
        """End the session (the first reason given stays); later input is ignored."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.reason = reason
            self._deadline = None
            self._early = []

    # input --------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[Request[D]]:
        """The requests completed by `data` (b"": none, decode what waits), in order, of one
        turn at most (see the module docstring)."""
        state = self.state
        if state is State.CLOSED:
            return []
        if data and state is not State.CONNECTED:
            self._login_bytes -= len(data)
            if self._login_bytes < 0:
                self.close(
                    f"{TOO_MUCH_BEFORE_LOGIN}: more than {self._connect_bytes} bytes "
                    "before the CONNECT was accepted"
                )
                return []
        try:
            packets = self._decoder.feed(data, TURN_PACKETS, TURN_BYTES)
        except PacketTooLarge as exc:
            if state is State.CONNECTED:
                self._violation(f"malformed packet: {exc}", exc.reason)
            else:
                self.close(f"{TOO_MUCH_BEFORE_LOGIN}: {exc}")
            return []
        except UnsupportedProtocol as exc:
            if state is State.CONNECTING:
                self._out.append(encode_connack(UNACCEPTABLE_PROTOCOL_VERSION))
                self.close(f"CONNECT refused: {exc}")
            else:
                self._violation(f"malformed packet: {exc}", reasons.PROTOCOL_ERROR)
            return []
        except BadConnect as exc:
            if state is State.CONNECTING:
                self._out.append(encode_connack5(exc.reason))
                self.close(f"malformed packet: {exc}")
            else:
                self._violation(f"malformed packet: {exc}", reasons.PROTOCOL_ERROR)
            return []
        except CodecError as exc:
            self._violation(f"malformed packet: {exc}", exc.reason)
            return []
        if state is State.CONNECTED:
            requests = self._translate(packets, now)
            self._restart(now)
            return requests
        if state is State.LOGGING_IN:
            self._early += packets
            return []
        return self._connect(packets) if packets else []

    def _violation(self, reason: str, code: int, out: list[bytes] | None = None) -> None:
        """Close for a protocol violation: an MQTT 5 device is told why (a DISCONNECT with
        `code`, in `out`: after the answers due before it) once the CONNECT was accepted; a
        3.1.1 device, or one not logged in, is not."""
        if self.level == MQTT5 and self.state is State.CONNECTED:
            (self._out if out is None else out).append(encode_disconnect5(code))
        self.close(reason)

    def _connect(self, packets: list[Packet]) -> list[Request[D]]:
        connect = packets[0]
        if not isinstance(connect, Connect):
            self.close("malformed packet: the first packet must be CONNECT")
            return []
        v5 = connect.level == MQTT5
        self.level = connect.level
        self.client_id = connect.client_id
        if not connect.client_id and not connect.clean_session and not v5:
            self._out.append(encode_connack(IDENTIFIER_REJECTED))
            self.close("CONNECT refused: an empty client id needs a clean session")
            return []
        if v5 and connect.auth_method is not None:
            self._out.append(encode_connack5(reasons.BAD_AUTHENTICATION_METHOD))
            self.close("CONNECT refused: extended authentication is not supported")
            return []
        token: str | None = None
        if connect.username == USERNAME and connect.password is not None:
            with contextlib.suppress(UnicodeDecodeError):
                token = connect.password.decode("ascii")
        if token is None:
            self._refuse_login()
            self.close("CONNECT refused: bad user name or password")
            return []
        if v5:
            self._receive_max = connect.receive_maximum
            if connect.maximum_packet_size is not None:
                self._max_out = min(connect.maximum_packet_size, MAX_PACKET_SIZE)
        keep_alive = connect.keep_alive
        self._server_keep_alive = not 0 < keep_alive <= MAX_KEEP_ALIVE
        self.keep_alive = keep_alive if 0 < keep_alive <= MAX_KEEP_ALIVE else MAX_KEEP_ALIVE
        self._timeout = self.keep_alive * KEEP_ALIVE_FACTOR
        self.state = State.LOGGING_IN
        self._early = packets[1:]
        self._deadline = None
        return [Login(token)]

    def accept(self, datastreams: Mapping[str, D], now: float) -> list[Request[D]]:
        """The token opens a device with these datastreams: CONNACK 0, and the requests of the
        packets that came after the CONNECT."""
        if self.state is not State.LOGGING_IN:
            if self.state is State.CLOSED:
                return []
            raise RuntimeError(f"accept() while {self.state.value}")
        self.state = State.CONNECTED
        self.datastreams = datastreams
        self._decoder.max_packet_size = MAX_PACKET_SIZE
        self._out.append(_CONNACK_ACCEPTED if self.level != MQTT5 else self._connack5())
        early, self._early = self._early, []
        requests = self._translate(early, now)
        self._restart(now)
        return requests

    def _connack5(self) -> bytes:
        """The MQTT 5 CONNACK of an accepted login: what the server supports and bounds."""
        items: list[tuple[int, props.Value]] = [
            (props.SESSION_EXPIRY, 0),  # sessions are always clean
            (props.RECEIVE_MAXIMUM, TURN_PACKETS),
            (props.MAXIMUM_QOS, 1),
            (props.MAXIMUM_PACKET_SIZE, MAX_PACKET_SIZE),
            (props.TOPIC_ALIAS_MAXIMUM, 0),
            (props.SUBSCRIPTION_ID_AVAILABLE, 0),
            (props.SHARED_AVAILABLE, 0),
        ]
        if self._server_keep_alive:
            items.append((props.SERVER_KEEP_ALIVE, self.keep_alive))
        if not self.client_id:
            MqttSession._assigned += 1
            self.client_id = f"{ASSIGNED_ID_PREFIX}{MqttSession._assigned}"
            items.append((props.ASSIGNED_CLIENT_ID, self.client_id))
        return encode_connack5(reasons.SUCCESS, items)

    def _refuse_login(self) -> None:
        if self.level == MQTT5:
            self._out.append(encode_connack5(reasons.BAD_USERNAME_OR_PASSWORD))
        else:
            self._out.append(encode_connack(BAD_USERNAME_OR_PASSWORD))

    def refuse(self) -> None:
        """The token opens no device: CONNACK 4 (MQTT 5: 0x86), and the session closes."""
        if self.state is State.LOGGING_IN:
            self._refuse_login()
            self.close("CONNECT refused: unknown token")

    def _translate(self, packets: list[Packet], now: float) -> list[Request[D]]:
        """The requests of a connected session's packets; queues the answers to the rest."""
        requests: list[Request[D]] = []
        held = self._held
        tail = held[-1].answers if held else self._out
        """Where answers go: due once the last request before them is done."""
        values: list[tuple[D, bytes]] | None = None
        """The open WriteValues: later `ds/<label>` values join it."""
        datastreams = self.datastreams
        v5 = self.level == MQTT5
        for packet in packets:
            if type(packet) is Publish:
                if packet.topic_alias is not None:
                    self._violation(
                        "malformed packet: topic aliases are not supported",
                        reasons.TOPIC_ALIAS_INVALID,
                        tail,
                    )
                    break
                topic = packet.topic
                if topic.startswith("ds/") and (ds := datastreams.get(topic[3:])) is not None:
                    if values is None:
                        values = []
                        write = WriteValues(values)
                        requests.append(write)
                        entry = _Held(write)
                        held.append(entry)
                        tail = entry.answers
                    values.append((ds, packet.payload))
                    if packet.packet_id is not None:
                        tail.append(encode_puback(packet.packet_id))
                    continue
                command = self._command(topic, packet.payload, tail, now)
                code = reasons.SUCCESS
                if isinstance(command, int):
                    code = command
                elif command is not None:
                    values = None
                    requests.append(command)
                    entry = _Held(command)
                    held.append(entry)
                    tail = entry.answers
                if packet.packet_id is not None:
                    if v5:
                        tail.append(encode_puback5(packet.packet_id, code))
                    else:
                        tail.append(encode_puback(packet.packet_id))
            elif type(packet) is PingReq:
                tail.append(PINGRESP)
            elif type(packet) is Subscribe:
                if packet.subscription_id is not None:
                    self._violation(
                        "malformed packet: subscription identifiers are not supported",
                        reasons.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                        tail,
                    )
                    break
                granted: list[int] = []
                for topic_filter, qos in packet.topics:
                    if v5 and topic_filter.startswith(SHARED_PREFIX):
                        granted.append(reasons.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
                        continue
                    granted.append(min(qos, 1))
                    self._subscriptions[topic_filter] = min(qos, 1)
                self._granted_cache.clear()
                if v5:
                    tail.append(encode_suback5(packet.packet_id, granted))
                else:
                    tail.append(encode_suback(packet.packet_id, granted))
            elif type(packet) is Unsubscribe:
                codes: list[int] = []
                for topic_filter in packet.topics:
                    had = self._subscriptions.pop(topic_filter, None) is not None
                    codes.append(reasons.SUCCESS if had else reasons.NO_SUBSCRIPTION_EXISTED)
                self._granted_cache.clear()
                if v5:
                    tail.append(encode_unsuback5(packet.packet_id, codes))
                else:
                    tail.append(encode_unsuback(packet.packet_id))
            elif type(packet) is PubAck:
                # acknowledges a QoS 1 downlink; nothing is redelivered
                self._inflight.discard(packet.packet_id)
            elif type(packet) is Disconnect:
                self.close(DISCONNECTED)
                break
            else:  # Connect
                self._violation("malformed packet: a second CONNECT", reasons.PROTOCOL_ERROR, tail)
                break
        return requests

    def _command(
        self, topic: str, payload: bytes, tail: list[bytes], now: float
    ) -> Request[D] | int | None:
        """The request of a PUBLISH other than a known `ds/<label>` value; or, when there is
        none, the MQTT 5 reason code of its PUBACK: an unknown label is told (in `tail`) and
        refused, other topics ignored (None)."""
        datastreams = self.datastreams
        if topic.startswith("ds/"):
            rest = topic[3:]
            label = rest
            if rest.endswith(_TIMESTAMPED):
                label = rest[: -len(_TIMESTAMPED)]
                ds = datastreams.get(label)
                if ds is not None:
                    return TimestampedBatch(ds, topic, payload)
            elif rest.endswith(_ERASE) and (ds := datastreams.get(rest[: -len(_ERASE)])):
                return EraseValue(ds, topic)
            elif _PROP in rest:
                label, _, name = rest.rpartition(_PROP)
                ds = datastreams.get(label)
                if ds is not None:
                    if name.endswith(_ERASE):
                        return EraseProperty(ds, name[: -len(_ERASE)], topic)
                    return SetProperty(ds, name, topic, payload)
            elif rest.endswith(_ERASE):
                label = rest[: -len(_ERASE)]
            self._diag(f"{topic}: no datastream with label '{label}'.", now, tail)
            return reasons.TOPIC_NAME_INVALID
        if topic == "batch_ds":
            return BatchValues(payload)
        if topic == "get/ds":
            wanted: list[D] = []
            for part in payload.decode(errors="replace").split(","):
                label = part.strip()
                if not label:
                    continue
                ds = datastreams.get(label)
                if ds is None:
                    self._diag(f"get/ds: no datastream with label '{label}'.", now, tail)
                else:
                    wanted.append(ds)
            return GetCurrent(wanted)
        if topic == "get/ds/all":
            return GetCurrent(None)
        if topic == "get/utc/all/json":
            return GetUtc()
        if topic.startswith("meta/") and len(topic) > 5:
            return SetMeta(topic[5:], topic, payload)
        if topic == "get/meta":
            names = [n.strip() for n in payload.decode(errors="replace").split(",")]
            return GetMeta([n for n in names if n][:MAX_META_NAMES])
        if topic == "info/mcu":
            return ReportInfo(topic, payload)
        if topic.startswith(_EVENT):
            if not topic[len(_EVENT) :]:
                self._diag(f"{topic}: Event code is not provided.", now, tail)
                return reasons.TOPIC_NAME_INVALID
            return LogEvent(topic[len(_EVENT) :], topic, payload)
        return None

    def done(self, request: object, now: float) -> None:
        """`request`, and every request returned before it, is done (its writes durable):
        release the answers that waited for it."""
        held = self._held
        for count, entry in enumerate(held, 1):
            if entry.request is request:
                for finished in held[:count]:
                    self._out += finished.answers
                del held[:count]
                self._restart(now)
                return

    def _restart(self, now: float) -> None:
        """The keep-alive runs only while no request is being performed."""
        if self.state is State.CONNECTED:
            self._deadline = None if self._held else now + self._timeout

    # time ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `expire` should next be called (monotonic seconds), or None for no deadline."""
        return self._deadline

    def expire(self, now: float) -> bool:
        """Close the session if its deadline has passed; whether it did."""
        deadline = self._deadline
        if deadline is None or now < deadline:
            return False
        if self.state is State.CONNECTING:
            self.close(f"no CONNECT in time: none within {self._connect_timeout:g} s")
        else:
            self._violation(f"silent for more than {self._timeout:g} s", reasons.KEEP_ALIVE_TIMEOUT)
        return True

    # output -------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """The bytes ready to go to the device, in order (b"" when none)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def publish_value(self, label: str, text: str) -> None:
        """A datastream's value, to `downlink/ds/<label>` if a subscription matches."""
        if self._subscriptions:
            self._downlink("downlink/ds/" + label, text)

    def publish_utc(self, payload: str) -> None:
        """The device's time and timezone (JSON), to `downlink/utc/all/json`, where Blynk
        answers `get/utc/all/json`, if a subscription matches."""
        if self._subscriptions:
            self._downlink("downlink/utc/all/json", payload)

    def publish_meta(self, name: str, value: str) -> None:
        """A metafield's value, to `downlink/meta/<name>` if a subscription matches."""
        if self._subscriptions:
            self._downlink("downlink/meta/" + name, value)

    def publish_property(self, label: str, name: str, value: str) -> None:
        """A widget property, to `downlink/ds/<label>/prop/<name>` if a subscription matches."""
        if self._subscriptions:
            self._downlink(f"downlink/ds/{label}/prop/{name}", value)

    def diag(self, message: str, now: float) -> None:
        """Tell the device what went wrong, on Blynk's diagnostics topic (rate limited)."""
        self._diag(message, now, self._out)

    def over_rate(self, now: float) -> None:
        """Values wait for the device's rate limit: tell it so at most once a
        `QUOTA_WARN_PERIOD` (the diagnostics' own limit aside)."""
        if now - self._quota_warned >= QUOTA_WARN_PERIOD:
            self._quota_warned = now
            self.diag(OVER_RATE, now)

    def _diag(self, message: str, now: float, out: list[bytes]) -> None:
        if now - self._diag_since >= 1.0:
            self._diag_since = now
            self._diag_count = 0
        if self._diag_count < DIAG_PER_SECOND:
            self._diag_count += 1
            if self.level != MQTT5:
                out.append(encode_publish(DIAG_TOPIC, message.encode()))
                return
            packet = encode_publish5(DIAG_TOPIC, message.encode())
            if len(packet) <= self._max_out:
                out.append(packet)

    def _downlink(self, topic: str, payload: str) -> None:
        qos = self._granted(topic)
        if qos is None:
            return
        if self.level != MQTT5:
            packet_id: int | None = None
            if qos:
                self._packet_id = packet_id = self._packet_id % 0xFFFF + 1
            self._out.append(encode_publish(topic, payload.encode(), qos, packet_id))
            return
        inflight = self._inflight
        if qos and len(inflight) >= self._receive_max:
            qos = 0  # the device's Receive Maximum is reached: this one goes unacknowledged
        packet_id = None
        if qos:
            packet_id = self._packet_id % 0xFFFF + 1
            while packet_id in inflight:
                packet_id = packet_id % 0xFFFF + 1
            self._packet_id = packet_id
        packet = encode_publish5(topic, payload.encode(), qos, packet_id)
        if len(packet) > self._max_out:
            return  # larger than the device takes: not sent, as MQTT 5 requires
        if packet_id is not None:
            inflight.add(packet_id)
        self._out.append(packet)

    def _granted(self, topic: str) -> int | None:
        """The QoS of the best subscription matching `topic`, or None when none does."""
        cache = self._granted_cache
        if topic in cache:
            return cache[topic]
        best: int | None = None
        for topic_filter, qos in self._subscriptions.items():
            if topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        if len(cache) >= MATCH_CACHE_SIZE:
            cache.clear()
        cache[topic] = best
        return best
