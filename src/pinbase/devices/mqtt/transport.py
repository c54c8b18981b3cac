"""The MQTT device API on the network: the listener, and per connection an asyncio protocol that
moves bytes between the socket and the connection's `MqttSession`, enforces the deadlines the
session reports, and performs its requests with the app layer's `DeviceSession`. What a device
sees is described in `session`; this module decides how the work is scheduled.

- Admission: the listener's `Entry` admits each connection through the listener's `Gate`
  (the process's connection budget, a per-address cap) before anything else, then runs the TLS
  handshake on a TLS port; the connection releases its ticket when it is lost. A stranger's
  connection (no CONNECT accepted yet) that is closed is logged through the gate, at most once
  an interval per kind of reason; until its CONNECT is accepted, reading pauses once more than
  the login byte limit waits.
- Throughput and back-pressure: the bytes of one socket read, together with whatever arrived
  while the previous read was being handled, are handled a turn at a time (the session decodes
  at most `TURN_PACKETS` packets at once), and all value PUBLISHes decoded in a turn become one
  ingest write (one transaction), awaited before the next turn; between turns the task yields
  to the event loop, so one device's large reads share the loop with the others. Reading
  pauses once more than `READ_SIZE` bytes wait, so TCP pushes back on the device, and resumes
  when the waiting bytes are taken in hand. Other topics (reads, properties, timestamped
  batches) first wait for the writes before them.
  The session releases a QoS 1 PUBACK once the write it follows is reported done. Each value
  has its own timestamp from the connection's clock (`device_session.Clock`, as in the hardware
  interface): never going back and strictly increasing per datastream, so a datastream
  published many times in one batch keeps every value in history; a connection writing one
  datastream more often than once a millisecond runs its timestamps ahead of the wall clock by
  the excess.
- The rate limit pushes back instead of dropping: of a turn's values, those that fit the
  device's rate limit (`DeviceSession.admit`) are written at once; the rest are held, reading
  stops, and they are written in steps as tokens return (`DeviceSession.resume_in`), their
  PUBACKs after them. A device over its rate is so slowed to it by TCP and the server decodes
  no more of its packets than it stores. Held values are given up when the connection ends
  (the device gets no PUBACK for them), and dropped when the rate is 0 (nothing would ever
  let them through). Properties and timestamped batches over the rate wait the same way.
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
import math
import ssl
from typing import cast

import orjson

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.devices.mqtt.session import (
    DISCONNECTED,
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
    Request,
    SetMeta,
    SetProperty,
    TimestampedBatch,
    WriteValues,
)
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import DomainError
from pinbase.domain.hardware import MQTT_KEYS
from pinbase.domain.model import Datastream
from pinbase.domain.utc import utc_all
from pinbase.domain.values import Value, parse_json_value, parse_text_value, to_text
from pinbase.live.bus import Event, PropertyChanged, ValueChanged
from pinbase.net.admission import Ticket
from pinbase.net.entry import Entry
from pinbase.net.gate import Gate
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
    """The MQTT listener on one port and the connections it accepted, admitted through `gate`
    (TLS after admission when `ssl_context` is given)."""

    def __init__(
        self, services: Services, gate: Gate, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.services = services
        self.gate = gate
        settings = services.settings
        self.login_timeout = settings.device_login_timeout
        self.login_bytes = settings.device_login_bytes
        self.entry = Entry(gate, self._connection, ssl_context, self.login_timeout)
        self._server: asyncio.Server | None = None
        self._connections: set[MqttConnection] = set()
        self._closing = False
        self._gone: asyncio.Future[None] | None = None

    def _connection(self, ticket: Ticket) -> MqttConnection:
        return MqttConnection(self, asyncio.get_running_loop(), ticket)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.entry.door, host, port, reuse_address=True, backlog=1024
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
        await self.entry.close()
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
        self.gate.close()


async def serve_mqtt(
    services: Services,
    host: str,
    port: int,
    gate: Gate,
    ssl_context: ssl.SSLContext | None = None,
) -> MqttServer:
    """Listen for MQTT devices on `host:port`, admitting connections through `gate` (TLS when
    `ssl_context` is given)."""
    server = MqttServer(services, gate, ssl_context)
    await server.start(host, port)
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
        "_eof",
        "_loop",
        "_lost",
        "_read_paused",
        "_server",
        "_session",
        "_timer",
        "_transport",
        "_waiter",
        "_work",
        "_write_paused",
        "device_id",
        "ticket",
    )

    def __init__(self, server: MqttServer, loop: asyncio.AbstractEventLoop, ticket: Ticket) -> None:
        self.device_id = 0
        self.ticket = ticket
        """Admission; released when the connection is lost."""
        self._server = server
        self._loop = loop
        self._session: MqttSession[Datastream] = MqttSession(
            loop.time(), server.login_timeout, server.login_bytes
        )
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
        self._waiter: asyncio.Future[None] | None = None
        """What the work waits for: the device to read (`_drain`), or tokens (`_hold`)."""
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
        limit = READ_SIZE if self._device is not None else self._server.login_bytes
        if self._backlog_size > limit:
            self._pause_reading()

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
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.gate.release(self.ticket)
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._device is not None:
            self._server.services.presence.detach(self)
        self._wake()
        if self._work is None:
            self._server.ended(self)

    # Session (presence) -------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        """Publish a change of the device's datastreams if a subscription wants it."""
        session = self._session
        if event.origin is self or not session.subscriptions or self._closing():
            return
        if not isinstance(event, ValueChanged | PropertyChanged):
            return  # device events are not sent to the device
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

    @property
    def token_digest(self) -> str:
        return self._device.token_digest if self._device is not None else ""

    def revoked(self) -> None:
        self.abort("its token was revoked")

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
        """Log why the connection closes: a device's, a line each; a stranger's (not logged
        in) through the gate, counted by the fixed phrase the reason starts with."""
        if self._device is None:
            phrase = reason.partition(":")[0]
            if phrase.startswith("no CONNECT"):
                level = logging.INFO
            elif level < logging.WARNING:
                level = logging.WARNING
            self._server.gate.cut(self.ticket, phrase, level)
            return
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
        """Handle `data`, then what arrived meanwhile, a turn at a time."""
        session = self._session
        try:
            while True:
                if self._write_paused and not self._lost:
                    await self._drain()
                await self._receive(data)
                self._flush()
                if session.closed or self._aborted:
                    break
                if session.pending:
                    # The turn is handled and more packets wait undecoded: let the other
                    # connections run, then decode the next turn.
                    await asyncio.sleep(0)
                    data = b""
                    continue
                if not self._backlog:
                    break
                data = b"".join(self._backlog)
                self._backlog.clear()
                self._backlog_size = 0
                self._resume_reading()
        except StoreUnavailable as exc:
            self._log_close(f"store unavailable: {exc}", logging.WARNING)
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
        self._resume_reading()
        self._arm()

    def _pause_reading(self) -> None:
        if not self._read_paused and not self._closing():
            self._read_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._closing():
            self._read_paused = False
            assert self._transport is not None
            self._transport.resume_reading()

    async def _drain(self) -> None:
        """Wait for the device to read what was sent before handling more of its input."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _hold(self, seconds: float) -> None:
        """Stop reading for `seconds` (values wait for the rate limit), or until the connection
        ends; what is queued goes out first."""
        self._flush()
        self._pause_reading()
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(seconds, self._wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _stopped(self) -> bool:
        """Held work is given up: the connection is gone or being dropped."""
        return self._lost or self._aborted

    async def _await_rate(self, device: DeviceSession, count: int) -> None:
        """Until `count` values fit the rate limit (reading paused meanwhile), unless they
        never will (a rate of 0) or the connection ends; charges nothing."""
        wait = device.ready_in(count)
        if wait:
            self._session.over_rate(self._loop.time())
        while wait and wait != math.inf and not self._stopped():
            await self._hold(wait)
            wait = device.ready_in(count)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
            elif isinstance(request, (EraseValue, EraseProperty)):
                await self._erase(device, request)
            elif isinstance(request, GetCurrent):
                for ds, value in await device.read(request.datastreams):
                    session.publish_value(ds.label, to_text(value))
            elif isinstance(request, GetUtc):
                session.publish_utc(orjson.dumps(utc_all(device.zone(), now_ms())).decode())
            elif isinstance(request, SetMeta):
                await self._set_meta(device, request)
            elif isinstance(request, GetMeta):
                await self._get_meta(device, request)
            elif isinstance(request, ReportInfo):
                await self._info(device, request)
            elif isinstance(request, LogEvent):
                await self._event(device, request)
            session.done(request, self._loop.time())
            self._flush()  # at once: a change delivered later must not overtake a get/ds
        if unwritten is not None:
            await self._write(device, values)
            session.done(unwritten, self._loop.time())

    async def _write(self, device: DeviceSession, values: list[tuple[Datastream, Value]]) -> None:
        """Write the values gathered so far: at once those the device's rate limit lets
        through, then the rest in steps as it lets them, reading paused meanwhile (given up if
        the connection ends; dropped if the rate is 0)."""
        if not values:
            return
        admitted = device.admit(len(values))
        held = values[admitted:]
        if held:
            self._session.over_rate(self._loop.time())
            del values[admitted:]
        if values:
            await device.write(values)
        while held and not self._stopped():
            wait = device.resume_in(len(held))
            if wait == math.inf:
                return
            await self._hold(wait)
            admitted = device.admit(len(held))
            if admitted and not self._stopped():
                await device.write(held[:admitted])
                del held[:admitted]

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
        await self._await_rate(device, 1)
        try:
            await device.import_points(ds, points)
        except RateLimited:
            self._diag(f"{topic}: too many timestamped batches; this one was dropped.")

    async def _property(self, device: DeviceSession, request: SetProperty[Datastream]) -> None:
        await self._await_rate(device, 1)
        try:
            await device.set_properties(
                request.datastream, [(request.name, request.payload.decode())]
            )
        except RateLimited:
            self._diag(f"{request.topic}: too many writes; dropped.")
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{request.topic}: {_reason(exc)}")

    async def _set_meta(self, device: DeviceSession, request: SetMeta) -> None:
        await self._await_rate(device, 1)
        try:
            await device.write_meta(device.metafield(request.name), request.payload.decode())
        except RateLimited:
            self._diag(f"{request.topic}: too many writes; dropped.")
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{request.topic}: {_reason(exc)}")

    async def _get_meta(self, device: DeviceSession, request: GetMeta) -> None:
        wanted = []
        for name in request.names:
            try:
                wanted.append(device.metafield(name))
            except DomainError:
                self._diag(f"get/meta: no metafield named '{name}'.")
        for meta, value in await device.read_meta(wanted):
            self._session.publish_meta(meta.name, value or "")

    async def _info(self, device: DeviceSession, request: ReportInfo) -> None:
        """`info/mcu`, charged as one value: kept as the device's hardware info."""
        await self._await_rate(device, 1)
        try:
            reported = orjson.loads(request.payload)
        except orjson.JSONDecodeError:
            reported = None
        if not isinstance(reported, dict):
            self._diag(f"{request.topic}: a JSON object is expected.")
            return
        try:
            device.charge(1)
            await device.report_hardware(reported, MQTT_KEYS)
        except RateLimited:
            self._diag(f"{request.topic}: too many writes; dropped.")

    async def _event(self, device: DeviceSession, request: LogEvent) -> None:
        try:
            await device.log_event(request.code, request.payload.decode())
        except (UnicodeDecodeError, DomainError) as exc:
            self._diag(f"{request.topic}: {_reason(exc)}")

    async def _erase(
        self, device: DeviceSession, request: EraseValue[Datastream] | EraseProperty[Datastream]
    ) -> None:
        await self._await_rate(device, 1)
        try:
            if isinstance(request, EraseValue):
                await device.erase_value(request.datastream)
            else:
                await device.erase_property(request.datastream, request.name)
        except RateLimited:
            self._diag(f"{request.topic}: too many writes; dropped.")
        except DomainError as exc:
            self._diag(f"{request.topic}: {exc}")

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
