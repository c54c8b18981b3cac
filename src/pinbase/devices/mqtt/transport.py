"""The MQTT device API (Blynk's device MQTT API), served inside the pinbase process.

Why no embedded broker: pinbase implements the MQTT 3.1.1 subset it needs with its own codec
(`mqtt_codec`) instead of embedding amqtt's broker. pinbase is not a general broker: devices
only talk to the server (no device-to-device routing, no retained messages or wildcard fan-out
between clients), and an embedded broker would put its own session/topic machinery and an extra
hop between the socket and pinbase's write path, while the hooks pinbase needs (token as
password, every publish into the write path, downlink injected to one client) are the whole of
the job. What amqtt 0.12.1 offers for those hooks: authentication plugins
(`BaseAuthPlugin.authenticate(session=...) -> bool | None`), topic plugins
(`BaseTopicPlugin.topic_filtering(session, topic, action)`) and event hooks such as
`on_broker_message_received`, which the broker fires without waiting for them (`fire_event`
with `wait=False`), so a QoS 1 PUBACK could not wait for pinbase's durable write; and its
`BrokerContext.broadcast_message(topic, data)` sends to every subscriber of a topic, not to the
one connection of a device.

The protocol, as a device sees it:

- CONNECT with user name `device` and the device's auth token as password; anything else is
  CONNACK 4 (bad user name or password) and the connection is closed. A protocol level other
  than 4 (MQTT 3.1.1) is CONNACK 1. Sessions are always clean: CONNACK says no session is
  present, and nothing survives a connection (no queued QoS 1 messages, no subscriptions, no
  will message: devices are not routed to each other).
- One connection per device: a new CONNECT with the same token closes the older connection.
  The end of the TCP connection, whether or not a DISCONNECT came first, marks the device
  offline. A connection silent for 1.5 x its keep-alive is closed (a keep-alive of 0, "off",
  or above 10 minutes counts as 10 minutes, so that a device that vanished is seen offline).
- Uplink topics, datastreams named by label: `ds/<label>` (payload = the value as text; parts
  of a multi-part value such as a location are separated by NUL or, for a location, a comma),
  `batch_ds` (JSON object label -> JSON value), `ds/<label>/timestamped_batch`
  (`[[ts_ms, value], ...]`, at most 10,000 points; points more than a month in the future
  are skipped, as on every interface (`Ingest.import_points`); one bad point refuses the
  whole batch; charged as one import request against the per-device import limit),
  `ds/<label>/prop/<property>` (widget property),
  `get/ds` (comma-separated labels) and `get/ds/all` (answered on `downlink/ds/<label>` for
  every requested datastream that has a value). Blynk's `ds/<label>/erase` is not supported
  (told on `downlink/diag`); other topics (`info/mcu`, ...) are ignored.
- Every PUBLISH at QoS 0 or 1 goes through the one write path; a QoS 1 PUBACK is sent only once
  the write is durable, and PUBACKs keep the order of their PUBLISHes. QoS 2 closes the
  connection. The retain flag is ignored.
- What cannot be stored is dropped, and QoS 1 PUBLISHes are still acknowledged (an MQTT 3.1.1
  PUBACK cannot refuse): mismatched values, unknown labels, bad properties and values beyond the
  device's rate limit (`DeviceSession.admit`). The device is told on `downlink/diag`, the topic
  Blynk uses for server diagnostics, which like Blynk's reaches the device without a
  subscription, at QoS 0: one line of text such as
  `ds/Humidity: Value doesn't match the Datastream data type.` (at most 10 a second).
- Downlink: value changes go to `downlink/ds/<label>`, property changes to
  `downlink/ds/<label>/prop/<property>`, only when a subscription of the device matches (`+`
  and `#` work). SUBACK grants the requested QoS capped at 1; a QoS 1 subscription receives
  QoS 1 PUBLISHes. A device is never sent its own writes back.
- A malformed packet, or one above 1 MiB, closes that connection only.

Throughput: all value PUBLISHes decoded from one socket read become one ingest write (one
transaction), awaited before the next read (back-pressure through TCP); other topics (reads,
properties, timestamped batches) first wait for the writes before them. Each value has its own
timestamp from the connection's clock (`device_session.Clock`, as in the hardware interface): never
going back and strictly increasing per datastream, so a datastream published many times in one
read keeps every value in history; a connection writing one datastream more often than once a
millisecond runs its timestamps ahead of the wall clock by the excess.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable

import orjson

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.devices.mqtt.codec import (
    ACCEPTED,
    BAD_USERNAME_OR_PASSWORD,
    IDENTIFIER_REJECTED,
    PINGRESP,
    UNACCEPTABLE_PROTOCOL_VERSION,
    CodecError,
    Connect,
    Decoder,
    Disconnect,
    Packet,
    PingReq,
    PubAck,
    Publish,
    Subscribe,
    Unsubscribe,
    UnsupportedProtocol,
    encode_connack,
    encode_puback,
    encode_publish,
    encode_suback,
    encode_unsuback,
    topic_matches,
)
from pinbase.domain.errors import DomainError
from pinbase.domain.model import Datastream, Schema
from pinbase.domain.values import Value, parse_json_value, parse_text_value, to_text
from pinbase.live.bus import Event, ValueChanged
from pinbase.store.base import StoreUnavailable

log = logging.getLogger(__name__)

USERNAME = "device"
CONNECT_TIMEOUT = 10.0
"""Seconds a new connection has to send its CONNECT."""
KEEP_ALIVE_FACTOR = 1.5
MAX_KEEP_ALIVE = 600
"""Seconds; a keep-alive of 0 (off) or above this counts as this, so a vanished device that
never closed its connection is still seen offline."""
READ_SIZE = 64 * 1024
MAX_OUTBOUND = 1024 * 1024
"""Bytes queued towards a device that does not read them before its connection is closed."""
CLOSE_GRACE = 5.0
SHUTDOWN_GRACE = 30.0
DIAG_TOPIC = "downlink/diag"
DIAG_PER_SECOND = 10
MAX_TIMESTAMPED_POINTS = 10_000


class MqttServer:
    """The MQTT listener on one port and the connections it accepted."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._server: asyncio.Server | None = None
        self._connections: dict[_Connection, asyncio.Task[None]] = {}
        self._closing = False

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        self._server = await asyncio.start_server(
            self._accept, host, port, ssl=ssl_context, reuse_address=True, backlog=1024
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        connection = _Connection(self._services, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections[connection] = task
        try:
            await connection.run()
        finally:
            self._connections.pop(connection, None)

    async def close(self) -> None:
        """Stop accepting, close every connection, and return once they are gone."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections.values())
        for connection in list(self._connections):
            connection.abort()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()


async def serve_mqtt(
    services: Services, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> MqttServer:
    """Listen for MQTT devices on `host:port` (TLS when `ssl_context` is given)."""
    server = MqttServer(services)
    await server.start(host, port, ssl_context)
    kind = "MQTT over TLS" if ssl_context else "MQTT"
    log.info("%s device API listening on %s:%d", kind, host, server.port)
    return server


class _Connection:
    """One device connection; once logged in, the device's session in `Presence`."""

    protocol = "mqtt"

    def __init__(
        self, services: Services, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.device_id = 0
        self._services = services
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._decoder = Decoder()
        self._closed = False
        self._logged_in = False
        self._session: DeviceSession | None = None
        self._schema = Schema(())
        self._keep_alive = 0
        self._subscriptions: dict[str, int] = {}
        self._granted_cache: dict[str, int | None] = {}
        self._packet_id = 0
        self._values: list[tuple[Datastream, Value]] = []
        self._out: list[bytes] = []
        self._diag_since = 0.0
        self._diag_count = 0

    # Session ------------------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        """Publish a change of the device's datastreams if a subscription wants it."""
        if event.origin is self or self._closed or not self._subscriptions:
            return
        ds = self._schema.by_id.get(event.ds_id)
        if ds is None:
            return
        if isinstance(event, ValueChanged):
            topic = "downlink/ds/" + ds.label
            payload = to_text(event.value)
        else:
            topic = f"downlink/ds/{ds.label}/prop/{event.name}"
            payload = event.value
        qos = self._granted(topic)
        if qos is not None:
            self._send(self._downlink(topic, payload, qos))

    def replaced(self) -> None:
        log.info("MQTT connection of device %d replaced by a new login", self.device_id)
        self.abort()

    def abort(self) -> None:
        """Drop the connection now; `run` then finishes and cleans up."""
        self._closed = True
        self._transport.abort()

    # connection lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        peer = self._writer.get_extra_info("peername")
        try:
            packets = await self._login()
            if packets is not None:
                await self._serve(packets)
        except CodecError as exc:
            log.info("MQTT connection from %s closed: malformed packet: %s", peer, exc)
        except TimeoutError:
            log.info("MQTT connection from %s closed: silent for too long", peer)
        except (ConnectionError, OSError):
            pass
        except StoreUnavailable as exc:
            log.warning("MQTT connection from %s closed: %s", peer, exc)
        except Exception:
            log.exception("MQTT connection from %s failed", peer)
        finally:
            if self._logged_in:
                self._services.presence.detach(self)
            await self._close()

    async def _close(self) -> None:
        self._closed = True
        writer = self._writer
        if writer.transport.is_closing():
            writer.transport.abort()
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await writer.wait_closed()
        except Exception:  # the peer is gone or does not read: nothing more to say to it
            writer.transport.abort()

    async def _login(self) -> list[Packet] | None:
        """Read and answer the CONNECT; the packets that came after it, or None to close."""
        packets: list[Packet] = []
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                while not packets:
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        return None
                    packets = self._decoder.feed(data)
        except UnsupportedProtocol as exc:
            log.info("MQTT CONNECT refused: %s", exc)
            self._send(encode_connack(UNACCEPTABLE_PROTOCOL_VERSION))
            return None
        connect = packets[0]
        if not isinstance(connect, Connect):
            raise CodecError("the first packet must be CONNECT")
        if not connect.client_id and not connect.clean_session:
            self._send(encode_connack(IDENTIFIER_REJECTED))
            return None
        session = await self._authenticate(connect)
        if session is None:
            self._send(encode_connack(BAD_USERNAME_OR_PASSWORD))
            return None
        self._session = session
        self._schema = session.schema
        self.device_id = session.device_id
        self._keep_alive = connect.keep_alive
        self._services.presence.attach(self)
        self._logged_in = True
        self._send(encode_connack(ACCEPTED))
        return packets[1:]

    async def _authenticate(self, connect: Connect) -> DeviceSession | None:
        if connect.username != USERNAME or connect.password is None:
            return None
        try:
            token = connect.password.decode("ascii")
        except UnicodeDecodeError:
            return None
        return await DeviceSession.login(self._services, token, origin=self)

    async def _serve(self, packets: list[Packet]) -> None:
        keep_alive = self._keep_alive
        if not 0 < keep_alive <= MAX_KEEP_ALIVE:
            keep_alive = MAX_KEEP_ALIVE
        timeout = keep_alive * KEEP_ALIVE_FACTOR
        reader = self._reader
        decoder = self._decoder
        while True:
            if packets and not await self._handle(packets):
                return
            if self._closed:
                return
            async with asyncio.timeout(timeout):
                data = await reader.read(READ_SIZE)
            if not data:
                return
            packets = decoder.feed(data)

    async def _refresh(self) -> None:
        """Follow provisioning: new datastreams, or a token that no longer opens this device."""
        assert self._session is not None
        if not await self._session.refresh():
            log.info("MQTT connection of device %d closed: its token changed", self.device_id)
            self.abort()
            return
        self._schema = self._session.schema

    # packets ------------------------------------------------------------------------------
    async def _handle(self, packets: list[Packet]) -> bool:
        """Act on the packets of one read; False when the connection is to be closed."""
        await self._refresh()
        if self._closed:
            return False
        self._services.presence.seen(self.device_id)
        by_label = self._schema.by_label
        out = self._out
        for packet in packets:
            match packet:
                case Publish(topic=topic):
                    if topic.startswith("ds/") and (ds := by_label.get(topic[3:])) is not None:
                        value = self._text_value(ds, topic, packet.payload)
                        if value is not None:
                            self._values.append((ds, value))
                    elif topic == "batch_ds":
                        self._values.extend(self._batch_values(packet.payload))
                    else:
                        await self._command(topic, packet.payload)
                    if packet.packet_id is not None:
                        out.append(encode_puback(packet.packet_id))
                case PingReq():
                    out.append(PINGRESP)
                case Subscribe(packet_id=packet_id, topics=topics):
                    granted = [min(qos, 1) for _, qos in topics]
                    for (topic_filter, _), qos in zip(topics, granted, strict=True):
                        self._subscriptions[topic_filter] = qos
                    self._granted_cache.clear()
                    out.append(encode_suback(packet_id, granted))
                case Unsubscribe(packet_id=packet_id, topics=filters):
                    for topic_filter in filters:
                        self._subscriptions.pop(topic_filter, None)
                    self._granted_cache.clear()
                    out.append(encode_unsuback(packet_id))
                case PubAck():
                    pass  # acknowledges a QoS 1 downlink; nothing is redelivered
                case Disconnect():
                    await self._flush()
                    self._send_out()
                    return False
                case Connect():
                    raise CodecError("a second CONNECT")
        await self._flush()
        self._send_out()
        await self._writer.drain()
        return True

    async def _flush(self) -> None:
        """Write the values gathered so far; what answers them may be sent once this returns."""
        values = self._values
        if values:
            self._values = []
            admitted = self._admit(len(values))
            if admitted < len(values):
                self._diag(f"Too many values: {len(values) - admitted} dropped; slow down.")
                values = values[:admitted]
            if values:
                assert self._session is not None
                await self._session.write(values)

    def _send_out(self) -> None:
        """Send the answers gathered so far (only when everything they answer is durable)."""
        if self._out:
            self._send(b"".join(self._out))
            self._out.clear()

    def _admit(self, count: int) -> int:
        """How many of `count` values the device's rate limit lets through now."""
        assert self._session is not None
        return self._session.admit(count)

    def _text_value(self, ds: Datastream, topic: str, payload: bytes) -> Value | None:
        try:
            text = payload.decode()
            return parse_text_value(ds, text.split("\0") if "\0" in text else (text,))
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{topic}: {_reason(exc)}")
            return None

    def _batch_values(self, payload: bytes) -> Iterable[tuple[Datastream, Value]]:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            self._diag("batch_ds: the payload must be a JSON object of label -> value.")
            return ()
        by_label = self._schema.by_label
        accepted: list[tuple[Datastream, Value]] = []
        for label, raw in document.items():
            ds = by_label.get(label)
            if ds is None:
                self._diag(f"batch_ds: no datastream with label '{label}'.")
                continue
            try:
                accepted.append((ds, parse_json_value(ds, raw)))
            except DomainError as exc:
                self._diag(f"batch_ds: {label}: {exc}")
        return accepted

    async def _command(self, topic: str, payload: bytes) -> None:
        """Topics other than plain value writes; each sees every earlier write done."""
        if topic.startswith("ds/"):
            rest = topic[3:]
            by_label = self._schema.by_label
            if rest.endswith("/timestamped_batch"):
                label = rest[: -len("/timestamped_batch")]
                ds = by_label.get(label)
                if ds is not None:
                    await self._timestamped(ds, topic, payload)
                    return
            elif rest.endswith("/erase") and rest[: -len("/erase")] in by_label:
                self._diag(f"{topic}: erasing a value is not supported.")
                return
            elif "/prop/" in rest:
                label, _, name = rest.rpartition("/prop/")
                ds = by_label.get(label)
                if ds is not None:
                    await self._property(ds, name, topic, payload)
                    return
            else:
                label = rest
            self._diag(f"{topic}: no datastream with label '{label}'.")
        elif topic == "get/ds":
            labels = [part.strip() for part in payload.decode(errors="replace").split(",")]
            await self._send_current([label for label in labels if label])
        elif topic == "get/ds/all":
            await self._send_current(None)

    async def _timestamped(self, ds: Datastream, topic: str, payload: bytes) -> None:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, list) or not 0 < len(document) <= MAX_TIMESTAMPED_POINTS:
            self._diag(
                f"{topic}: the payload must be a JSON array of 1 to "
                f"{MAX_TIMESTAMPED_POINTS} [timestamp, value] points."
            )
            return
        points: list[tuple[int, Value]] = []
        for index, point in enumerate(document):
            if (
                not isinstance(point, list)
                or len(point) != 2
                or not isinstance(point[0], int)
                or isinstance(point[0], bool)
            ):
                self._diag(f"{topic}: point {index} is not [timestamp_ms, value]; none stored.")
                return
            try:
                value = parse_json_value(ds, point[1])
            except DomainError as exc:
                self._diag(f"{topic}: point {index}: {exc} None stored.")
                return
            points.append((point[0], value))
        await self._flush()
        assert self._session is not None
        try:
            await self._session.import_points(ds, points)
        except RateLimited:
            self._diag(f"{topic}: too many timestamped batches; this one was dropped.")

    async def _property(self, ds: Datastream, name: str, topic: str, payload: bytes) -> None:
        await self._flush()
        assert self._session is not None
        try:
            await self._session.set_properties(ds, [(name, payload.decode())])
        except RateLimited:
            self._diag(f"{topic}: too many writes; dropped.")
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{topic}: {_reason(exc)}")

    async def _send_current(self, labels: list[str] | None) -> None:
        """Answer get/ds: the current value of each datastream asked for, where it has one."""
        await self._flush()
        schema = self._schema
        wanted: list[Datastream] = []
        if labels is None:
            wanted = list(schema.datastreams)
        else:
            for label in labels:
                ds = schema.by_label.get(label)
                if ds is None:
                    self._diag(f"get/ds: no datastream with label '{label}'.")
                else:
                    wanted.append(ds)
        assert self._session is not None
        for ds, value in await self._session.read(wanted):
            topic = "downlink/ds/" + ds.label
            qos = self._granted(topic)
            if qos is not None:
                self._out.append(self._downlink(topic, to_text(value), qos))
        self._send_out()  # at once: a change delivered later must not be overtaken by this

    # sending ------------------------------------------------------------------------------
    def _granted(self, topic: str) -> int | None:
        """The QoS of the best subscription matching `topic`, or None when none does."""
        cache = self._granted_cache
        if topic in cache:
            return cache[topic]
        best: int | None = None
        for topic_filter, qos in self._subscriptions.items():
            if topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        if len(cache) > 1024:
            cache.clear()
        cache[topic] = best
        return best

    def _downlink(self, topic: str, payload: str, qos: int) -> bytes:
        packet_id: int | None = None
        if qos:
            self._packet_id = self._packet_id % 0xFFFF + 1
            packet_id = self._packet_id
        return encode_publish(topic, payload.encode(), qos, packet_id)

    def _diag(self, message: str) -> None:
        """Tell the device what went wrong, on Blynk's diagnostics topic (rate limited)."""
        clock = time.monotonic()
        if clock - self._diag_since >= 1.0:
            self._diag_since = clock
            self._diag_count = 0
        if self._diag_count < DIAG_PER_SECOND:
            self._diag_count += 1
            self._out.append(encode_publish(DIAG_TOPIC, message.encode()))

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_OUTBOUND:
            log.info("MQTT connection of device %d closed: it does not read", self.device_id)
            self.abort()


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the payload is not UTF-8 text."
    return str(exc)
