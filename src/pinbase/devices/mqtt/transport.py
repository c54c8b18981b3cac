"""The MQTT device API on the network: the listener, and per connection an asyncio protocol that
moves bytes between the socket and the connection's `MqttSession`, enforces the deadlines the
session reports, and performs its requests with the app layer's `DeviceSession`. What a device
sees is described in `session`; this module decides how the work is scheduled.

- Throughput and back-pressure: the bytes of one socket read, together with whatever arrived
  while the previous read was being handled, are handled as one batch, and all value PUBLISHes
  decoded from a batch become one ingest write (one transaction), awaited before the next batch
  (reading pauses once more than `READ_SIZE` bytes wait, so TCP pushes back on the device).
  Other topics (reads, properties, timestamped batches) first wait for the writes before them.
  The session releases a QoS 1 PUBACK once the write it follows is reported done. Each value
  has its own timestamp from the connection's clock (`device_session.Clock`, as in the hardware
  interface): never going back and strictly increasing per datastream, so a datastream
  published many times in one batch keeps every value in history; a connection writing one
  datastream more often than once a millisecond runs its timestamps ahead of the wall clock by
  the excess.
- No task exists for an idle connection: one is started when bytes arrive and ends when every
  byte received has been handled. Answers wait for the device to read the ones before (the
  transport's write buffer back under its high-water mark) before the next batch is handled;
  a device whose unread output passes `MAX_OUTBOUND` (downlink while it does not read) is
  disconnected.
- A device that closes its side still has everything it sent handled, and is answered before
  the connection closes; a connection the server drops (a new login for the device, a token
  that no longer opens it, shutdown) finishes only the batch in hand. On shutdown, batches in
  hand get `SHUTDOWN_GRACE` seconds.
- The store failing (`StoreUnavailable`) closes the connection with a warning; the device
  reconnects and resends what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import cast

import orjson

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.devices.mqtt.session import (
    DISCONNECTED,
    BatchValues,
    GetCurrent,
    Login,
    MqttSession,
    Request,
    SetProperty,
    TimestampedBatch,
    WriteValues,
)
from pinbase.domain.errors import DomainError
from pinbase.domain.model import Datastream
from pinbase.domain.values import Value, parse_json_value, parse_text_value, to_text
from pinbase.live.bus import Event, ValueChanged
from pinbase.store.base import StoreUnavailable

log = logging.getLogger(__name__)

PROTOCOL = "mqtt"
READ_SIZE = 64 * 1024
"""Bytes received and waiting to be handled above which reading pauses."""
MAX_OUTBOUND = 1024 * 1024
"""Bytes queued towards a device that does not read them before its connection is closed."""
CLOSE_GRACE = 5.0
"""Seconds a closing connection has to take what was sent to it before it is dropped."""
SHUTDOWN_GRACE = 30.0
MAX_TIMESTAMPED_POINTS = 10_000

Requests = list[Request[Datastream]]


class MqttServer:
    """The MQTT listener on one port and the connections it accepted."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._server: asyncio.Server | None = None
        self._connections: set[MqttConnection] = set()
        self._closing = False
        self._gone: asyncio.Future[None] | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: MqttConnection(self, loop),
            host,
            port,
            ssl=ssl_context,
            reuse_address=True,
            backlog=1024,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def opened(self, connection: MqttConnection) -> bool:
        """Count a new connection in; False while shutting down."""
        if self._closing:
            return False
        self._connections.add(connection)
        return True

    def ended(self, connection: MqttConnection) -> None:
        """A connection is gone and its work done."""
        self._connections.discard(connection)
        gone = self._gone
        if not self._connections and gone is not None and not gone.done():
            gone.set_result(None)

    async def close(self) -> None:
        """Stop accepting, close every connection, and return once they are gone."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._connections:
            self._gone = asyncio.get_running_loop().create_future()
            for connection in list(self._connections):
                connection.abort("the server is shutting down")
            done, _ = await asyncio.wait([self._gone], timeout=SHUTDOWN_GRACE)
            if not done:
                for connection in list(self._connections):
                    connection.cancel()
                await self._gone
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


class MqttConnection(asyncio.Protocol):
    """One device connection; once logged in, the device's `Session` in `Presence`."""

    protocol = PROTOCOL

    __slots__ = (
        "_aborted",
        "_backlog",
        "_backlog_size",
        "_device",
        "_drained",
        "_eof",
        "_loop",
        "_lost",
        "_read_paused",
        "_server",
        "_session",
        "_timer",
        "_transport",
        "_work",
        "_write_paused",
        "device_id",
    )

    def __init__(self, server: MqttServer, loop: asyncio.AbstractEventLoop) -> None:
        self.device_id = 0
        self._server = server
        self._loop = loop
        self._session: MqttSession[Datastream] = MqttSession(loop.time())
        self._device: DeviceSession | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        """The session's next deadline, or the end of the close grace once closing."""
        self._work: asyncio.Task[None] | None = None
        self._backlog: list[bytes] = []
        """Bytes received while a batch was being handled."""
        self._backlog_size = 0
        self._read_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._eof = False
        self._aborted = False
        self._lost = False

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._server.opened(self):
            self._aborted = True
            self._transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._work is None:
            self._work = self._loop.create_task(self._handle(data))
            return
        self._backlog.append(data)
        self._backlog_size += len(data)
        if self._backlog_size > READ_SIZE and not self._read_paused:
            self._read_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        """The device closed its side: answer what it sent, then close (TLS closes at once)."""
        self._eof = True
        if self._work is None:
            self._close()
            return None
        assert self._transport is not None
        return self._transport.get_extra_info("sslcontext") is None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drained()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._device is not None:
            self._server.services.presence.detach(self)
        self._wake_drained()
        if self._work is None:
            self._server.ended(self)

    # Session (presence) -------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        """Publish a change of the device's datastreams if a subscription wants it."""
        session = self._session
        if event.origin is self or not session.subscriptions or self._closing():
            return
        assert self._device is not None
        ds = self._device.schema.by_id.get(event.ds_id)
        if ds is None:
            return
        if isinstance(event, ValueChanged):
            session.publish_value(ds.label, to_text(event.value))
        else:
            session.publish_property(ds.label, event.name, event.value)
        self._flush()

    def replaced(self) -> None:
        log.info("MQTT connection of device %d replaced by a new login", self.device_id)
        self.abort("replaced by a new login")

    # closing ------------------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Drop the connection now; the batch in hand is still handled."""
        self._aborted = True
        self._session.close(reason)
        if self._transport is not None:
            self._transport.abort()

    def cancel(self) -> None:
        """Stop handling the batch in hand (shutdown, once its grace is over)."""
        if self._work is not None:
            self._work.cancel()

    def _closing(self) -> bool:
        transport = self._transport
        return transport is None or transport.is_closing()

    def _close(self) -> None:
        """Send what is queued, then close; drop the connection if the device does not take
        it within CLOSE_GRACE."""
        if self._closing():
            return
        self._flush()
        transport = self._transport
        assert transport is not None
        transport.close()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(CLOSE_GRACE, transport.abort)

    def _log_close(self, reason: str, level: int = logging.INFO) -> None:
        assert self._transport is not None
        peer = self._transport.get_extra_info("peername")
        log.log(level, "MQTT connection from %s closed: %s", peer, reason)

    # deadlines ----------------------------------------------------------------------------
    def _arm(self) -> None:
        """Have `_expire` called by the session's deadline (one timer, moved only earlier)."""
        deadline = self._session.next_deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first, and moves itself on
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._work is not None or self._closing():
            return  # the device waits for the server: armed again when the work is done
        session = self._session
        if session.expire(self._loop.time()):
            self._log_close(session.reason)
            self._close()
        else:
            self._arm()

    # handling what the device sent --------------------------------------------------------
    async def _handle(self, data: bytes) -> None:
        """Handle `data`, then what arrived meanwhile, a batch at a time."""
        session = self._session
        try:
            while True:
                if self._write_paused and not self._lost:
                    await self._drain()
                await self._receive(data)
                self._flush()
                if session.closed or self._aborted or not self._backlog:
                    break
                data = b"".join(self._backlog)
                self._backlog.clear()
                self._backlog_size = 0
        except StoreUnavailable as exc:
            self._log_close(str(exc), logging.WARNING)
            self._close()
        except Exception:
            log.exception("MQTT connection of device %d failed", self.device_id)
            self._close()
        finally:
            self._work = None
            self._done()

    def _done(self) -> None:
        """The work ended: close, or read on and watch the deadline."""
        if self._lost:
            self._server.ended(self)
            return
        if self._closing():
            return
        session = self._session
        if session.closed:
            if session.reason != DISCONNECTED:
                self._log_close(session.reason)
            self._close()
            return
        if self._eof:
            self._close()
            return
        if self._read_paused:
            self._read_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        self._arm()

    async def _drain(self) -> None:
        """Wait for the device to read what was sent before handling more of its input."""
        self._drained = self._loop.create_future()
        try:
            await self._drained
        finally:
            self._drained = None

    def _wake_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def _receive(self, data: bytes) -> None:
        session = self._session
        device = self._device
        if device is None:
            requests = session.receive_data(data, self._loop.time())
            if not requests:
                return
            login = requests[0]
            assert isinstance(login, Login)
            requests = await self._login(login)
        else:
            if not await device.refresh():
                log.info("MQTT connection of device %d closed: its token changed", self.device_id)
                self.abort("its token changed")
                return
            session.datastreams = device.schema.by_label
            device.seen()
            requests = session.receive_data(data, self._loop.time())
        if requests:
            await self._perform(requests)

    async def _login(self, login: Login) -> Requests:
        """Log in with the CONNECT's token; the requests of the packets that came after it."""
        session = self._session
        device = await DeviceSession.login(self._server.services, login.token, origin=self)
        if self._aborted:
            return []
        if device is None:
            session.refuse()
            return []
        self._device = device
        self.device_id = device.device_id
        if not self._lost:
            self._server.services.presence.attach(self)
        return session.accept(device.schema.by_label, self._loop.time())

    async def _perform(self, requests: Requests) -> None:
        """Perform the requests in order, each once the writes before it are durable."""
        session = self._session
        device = self._device
        assert device is not None
        values: list[tuple[Datastream, Value]] = []
        unwritten: Request[Datastream] | None = None
        """The last value request whose values are not yet written."""
        for request in requests:
            if isinstance(request, WriteValues):
                self._parse_values(request.values, values)
                unwritten = request
                continue
            if isinstance(request, BatchValues):
                self._parse_batch(request.payload, values)
                unwritten = request
                continue
            if unwritten is not None:
                await self._write(device, values)
                values = []
                session.done(unwritten, self._loop.time())
                unwritten = None
            if isinstance(request, TimestampedBatch):
                await self._timestamped(device, request)
            elif isinstance(request, SetProperty):
                await self._property(device, request)
            elif isinstance(request, GetCurrent):
                for ds, value in await device.read(request.datastreams):
                    session.publish_value(ds.label, to_text(value))
            session.done(request, self._loop.time())
            self._flush()  # at once: a change delivered later must not overtake a get/ds
        if unwritten is not None:
            await self._write(device, values)
            session.done(unwritten, self._loop.time())

    async def _write(self, device: DeviceSession, values: list[tuple[Datastream, Value]]) -> None:
        """Write the values gathered so far, as far as the device's rate limit lets them."""
        if not values:
            return
        admitted = device.admit(len(values))
        if admitted < len(values):
            self._diag(f"Too many values: {len(values) - admitted} dropped; slow down.")
            del values[admitted:]
            if not values:
                return
        await device.write(values)

    def _diag(self, message: str) -> None:
        self._session.diag(message, self._loop.time())

    def _parse_values(
        self, values: list[tuple[Datastream, bytes]], into: list[tuple[Datastream, Value]]
    ) -> None:
        append = into.append
        for ds, payload in values:
            try:
                text = payload.decode()
                append((ds, parse_text_value(ds, text.split("\0") if "\0" in text else (text,))))
            except (UnicodeDecodeError, DomainError) as exc:
                self._diag(f"ds/{ds.label}: {_reason(exc)}")

    def _parse_batch(self, payload: bytes, into: list[tuple[Datastream, Value]]) -> None:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            self._diag("batch_ds: the payload must be a JSON object of label -> value.")
            return
        by_label = self._session.datastreams
        for label, raw in document.items():
            ds = by_label.get(label)
            if ds is None:
                self._diag(f"batch_ds: no datastream with label '{label}'.")
                continue
            try:
                into.append((ds, parse_json_value(ds, raw)))
            except DomainError as exc:
                self._diag(f"batch_ds: {label}: {exc}")

    async def _timestamped(
        self, device: DeviceSession, request: TimestampedBatch[Datastream]
    ) -> None:
        ds, topic = request.datastream, request.topic
        try:
            document = orjson.loads(request.payload)
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
        try:
            await device.import_points(ds, points)
        except RateLimited:
            self._diag(f"{topic}: too many timestamped batches; this one was dropped.")

    async def _property(self, device: DeviceSession, request: SetProperty[Datastream]) -> None:
        try:
            await device.set_properties(
                request.datastream, [(request.name, request.payload.decode())]
            )
        except RateLimited:
            self._diag(f"{request.topic}: too many writes; dropped.")
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{request.topic}: {_reason(exc)}")

    # sending ------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Send what the session has ready; drop a device that does not read."""
        data = self._session.data_to_send()
        if not data or self._closing():
            return
        transport = self._transport
        assert transport is not None
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_OUTBOUND:
            log.info("MQTT connection of device %d closed: it does not read", self.device_id)
            self.abort("it does not read")


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the payload is not UTF-8 text."
    return str(exc)
