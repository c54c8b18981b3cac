"""Blynk's hardware protocol over TCP (and TLS): the asyncio adapter around `HardwareSession`.

The protocol itself (login, frames, downlink gating, pacing, the read barrier, timeouts) lives in
the sans-IO `session` module, whose docstring records its choices; framing lives in `codec`.
This module moves bytes and time between a socket and the session and performs the session's
requests against the app layer (`DeviceSession`):

- Admission: the listener's `Entry` admits each connection through the listener's `Gate`
  (the process's connection budget, a per-address cap) before anything else, then runs the TLS
  handshake on a TLS port; the connection releases its ticket when it is lost. A stranger's
  connection closed by the session (no login in time, too much before login, a malformed
  frame, an invalid token) is logged through the gate, at most once an interval per reason.
- Back-pressure through TCP: frames that arrive while the connection is busy with earlier ones
  pause reading until every received frame is handled. The requests of one connection are
  performed one at a time, in order, by one task; so all writes decoded in one turn (the session
  decodes at most `TURN_FRAMES` frames at a time) become one ingest write (one transaction),
  awaited before the next turn, and a read, sync or property request after writes waits for them.
  Between turns the task yields to the event loop, so a device that sends thousands of frames in
  one read shares the loop with the others. Each value has its own timestamp from the
  connection's clock (`device_session.Clock`): never going back, and strictly increasing per pin,
  so every value stays in history even when a read carries one pin many times (a fast device runs
  ahead of the wall clock by a millisecond per repeat beyond one a millisecond). Live subscribers
  get every value in order, and the last of each pin becomes current.
- The rate limit pushes back instead of dropping: of a run of writes, those that fit the
  device's rate limit (`DeviceSession.admit`) are stored at once; the rest are held, reading
  the socket stops (`pause_reading`), and they are stored in steps as tokens return
  (`DeviceSession.resume_in`), before the next frame is handled. A device over its rate is so
  slowed to it by TCP, the server parses no more of its frames than it stores, and no value
  is lost (a device rate of 0 drops what does not fit, as nothing ever would). A property over
  the rate waits the same way. The device is told QUOTA_LIMIT at most once a minute. The
  catalog is followed (`DeviceSession.refresh`) once per batch of frames; a connection whose
  token no longer opens its device is closed.
- One loop timer per connection, at `session.next_deadline()`. It is moved only when the deadline
  comes earlier; a timer that fires early finds nothing due and is set again, so traffic (which
  pushes the heartbeat deadline back) costs no timer operations.
- Writes pause once bytes stay buffered in the transport (write buffer limits high=1, low=0), so
  "drained" means handed to the kernel (for TLS: to the socket transport); the session holds its
  queue meanwhile.
- The connection is the device's presence `Session` once logged in: it queues the device's value
  changes (except those it wrote itself) into the session; property changes are not sent, as
  no hardware client library handles PROPERTY (`clients`).
- A GROUP's timestamped writes (`Write.ts`) are stored at that time: each a history point, and
  current only where no newer value is; a group stamped beyond the import window (31 days
  ahead, `domain.clock`) is skipped, as any import. INTERNAL `utc` is answered in the device's
  zone (`DeviceSession.zone`).
- A store that is unavailable loses that batch's values, reads or property (logged); the
  connection stays up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from typing import cast

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.devices.hardware.session import (
    CloseReason,
    HardwareSession,
    Info,
    LogEvent,
    Login,
    Meta,
    Read,
    Request,
    ResolveEvent,
    Rtc,
    SetProperty,
    State,
    Utc,
    Write,
)
from pinbase.domain.clock import importable, now_ms
from pinbase.domain.errors import DomainError
from pinbase.domain.events import EventLimit
from pinbase.domain.model import Datastream
from pinbase.domain.utc import utc_answer
from pinbase.domain.values import Value, parse_text_value, to_text
from pinbase.live.bus import Event, ValueChanged
from pinbase.net.admission import Ticket
from pinbase.net.entry import Entry
from pinbase.net.gate import Gate
from pinbase.store.base import StoreUnavailable

log = logging.getLogger(__name__)

PROTOCOL = "hardware"
MAX_PIN_CACHE = 1024
"""Pin spellings remembered per connection (a device naming endless pins cannot grow it)."""


class HardwareServer:
    """The listener: admits connections through `gate` (TLS after admission when
    `ssl_context` is given) and closes them all on `close()`."""

    def __init__(
        self, services: Services, gate: Gate, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.services = services
        self.gate = gate
        settings = services.settings
        self.login_timeout = settings.device_login_timeout
        self.login_bytes = settings.device_login_bytes
        self.entry = Entry(
            gate, lambda ticket: HardwareConnection(self, ticket), ssl_context, self.login_timeout
        )
        self.connections: set[HardwareConnection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.entry.door, host, port, backlog=1024)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.entry.close()
        connections = list(self.connections)
        for connection in connections:
            connection.close()
        if connections:
            _, pending = await asyncio.wait([c.finished for c in connections], timeout=2.0)
            for connection in connections:
                if not connection.finished.done():
                    connection.abort()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()
        self.gate.close()


async def serve_hardware(
    services: Services,
    host: str,
    port: int,
    gate: Gate,
    ssl_context: ssl.SSLContext | None = None,
) -> HardwareServer:
    """Start the hardware protocol listener, admitting connections through `gate` (TLS when
    `ssl_context` is given)."""
    server = HardwareServer(services, gate, ssl_context)
    await server.start(host, port)
    return server


def texts_of(value: Value) -> list[str]:
    """A value as the fields of a `vw` (a location is two)."""
    return [str(v) for v in value] if isinstance(value, list) else [to_text(value)]


class HardwareConnection(asyncio.Protocol):
    """One device connection; a presence `Session` once logged in."""

    protocol = PROTOCOL

    __slots__ = (
        "_closing",
        "_lost",
        "_pins",
        "_pins_generation",
        "_reading_paused",
        "_task",
        "_timer",
        "_timer_at",
        "_transport",
        "_waiter",
        "device",
        "device_id",
        "finished",
        "loop",
        "server",
        "services",
        "session",
        "ticket",
    )

    def __init__(self, server: HardwareServer, ticket: Ticket) -> None:
        self.server = server
        self.services = server.services
        self.ticket = ticket
        """Admission; released when the connection is lost."""
        self.loop = asyncio.get_running_loop()
        self.session = HardwareSession(
            float(self.services.settings.heartbeat),
            self.loop.time(),
            server.login_timeout,
            server.login_bytes,
        )
        self.device: DeviceSession | None = None
        """The app-layer session, once logged in."""
        self.device_id = 0
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self._lost = False
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._pins: dict[bytes, Datastream | None] = {}
        self._pins_generation = -1

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        # Pause writing once bytes stay buffered: "drained" then means handed to the kernel (for
        # TLS: to the socket transport). high=1, not 0: the TLS transport pauses at size >= high.
        self._transport.set_write_buffer_limits(high=1, low=0)
        self.server.connections.add(self)
        self._flush()  # arms the login timeout
        self._task = self.loop.create_task(self._run())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.gate.release(self.ticket)
        self._lost = True
        self._closing = True
        self.session.close()
        self._cancel_timer()
        if self.device is not None:
            self.services.presence.detach(self)
        self._wake()
        self.server.connections.discard(self)
        if self._task is None or self._task.done():
            self._finish()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        session = self.session
        if session.receive_data(data, self.loop.time()):
            if self.device is not None:
                self.device.seen()
            if self._waiter is not None:
                self._wake()
            elif not self._reading_paused and self._transport is not None:
                self._reading_paused = True
                self._transport.pause_reading()
            # The runner flushes once it has handled the frames; a PONG that completed the read
            # barrier releases the next frame now.
            if session.has_output:
                self._flush()
        else:
            self._flush()  # a malformed frame, RESPONSEs alone, part of a frame

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def resume_writing(self) -> None:
        self.session.resume_writing(self.loop.time())
        self._flush()

    # Session ----------------------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        if event.origin is self or self._closing:
            return
        # An erased value (None) is not sent: the libraries would read an empty write as 0,
        # which could switch a relay. Property changes are not sent either: no client library
        # handles PROPERTY (`clients`).
        if isinstance(event, ValueChanged) and event.value is not None:
            self._send_value(event.pin, texts_of(event.value))
            self._flush()

    def replaced(self) -> None:
        log.info("hardware device %s: logged in again elsewhere; closing", self.device_id)
        self.close()

    @property
    def token_digest(self) -> str:
        return self.device.token_digest if self.device is not None else ""

    def revoked(self) -> None:
        self.close()

    # closing ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close after sending what is already written to the transport."""
        if self._closing:
            return
        self.session.close()
        self._shut()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _shut(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    # the session's output and time ----------------------------------------------------------
    def _flush(self) -> None:
        """Write what the session releases, close if it closed, and keep the timer at its next
        deadline. Called after each interaction with the session that can change them; the
        runner calls it once a batch of frames is handled (and before an app-layer wait when
        answers are queued), not after every request."""
        if self._closing:
            return
        session = self.session
        data = session.data_to_send(self.loop.time())
        if data and self._transport is not None:
            self._transport.write(data)
        if session.state is State.CLOSED:
            reason = session.close_reason
            if reason is None or reason is CloseReason.LOCAL:
                pass
            elif self.device is None:  # a stranger: counted, logged at most once an interval
                level = logging.INFO if reason is CloseReason.LOGIN_TIMEOUT else logging.WARNING
                self.server.gate.cut(self.ticket, reason.value, level)
            else:
                level = logging.WARNING if reason is CloseReason.OUTBOX_FULL else logging.INFO
                detail = f" ({session.close_detail})" if session.close_detail else ""
                log.log(
                    level, "hardware device %s: %s%s; closing", self.device_id, reason.value, detail
                )
            self._shut()
            return
        deadline = session.next_deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if deadline >= self._timer_at:
                return
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _send_queued(self) -> None:
        """Before waiting for the app layer: send what is queued (the runner flushes fully
        once the batch is handled)."""
        if self.session.has_output:
            self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        if self._closing:
            return
        session = self.session
        client = session.client
        session.on_timer(self.loop.time())
        if session.client is not client:
            log.info("hardware device %s: no answer to PING; pacing", self.device_id)
        self._flush()

    # reading ----------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        """Until frames arrive or the connection ends; reading resumes meanwhile."""
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def _run(self) -> None:
        """Perform the session's requests, in order, one at a time."""
        session = self.session
        try:
            while not self._closing:
                if not session.pending:
                    await self._wait()
                    continue
                device = self.device
                if device is not None:
                    if not await device.refresh():
                        log.info(
                            "hardware device %s: its token no longer opens it; closing",
                            self.device_id,
                        )
                        self.close()
                        return
                    if device.catalog.generation != self._pins_generation:
                        self._pins.clear()
                        self._pins_generation = device.catalog.generation
                # Each request flushes what is queued before it waits for the app layer.
                while not self._closing:
                    request = session.next_request(self.loop.time())
                    if request is None:
                        break
                    await self._perform(request)
                self._flush()
                if session.pending and not self._closing:
                    # The turn is handled and more frames wait undecoded: let the other
                    # connections run, then decode the next turn.
                    await asyncio.sleep(0)
                    if not self._closing:
                        session.receive_data(b"", self.loop.time())
                        self._flush()
        except Exception:
            log.exception("hardware device %s: connection failed", self.device_id)
            self.close()
        finally:
            if self._lost:
                self._finish()

    async def _perform(self, request: Request) -> None:
        if type(request) is Write:
            await self._write(request)
        elif type(request) is Login:
            await self._login(request)
        elif type(request) is Read:
            await self._read(request)
        elif type(request) is SetProperty:
            await self._property(request)
        elif type(request) is Rtc:
            self.session.answer_rtc(request.msg_id, int(time.time()))
        elif type(request) is Utc:
            self._utc(request)
        elif type(request) is Meta:
            await self._meta(request)
        elif type(request) is LogEvent or type(request) is ResolveEvent:
            await self._event(request)
        elif type(request) is Info:
            await self._info(request)

    async def _login(self, request: Login) -> None:
        device = await DeviceSession.login(self.services, request.token, origin=self)
        if self._closing:
            return
        if device is None:
            self.session.refuse_login()
            return
        self.device = device
        self.device_id = device.device_id
        self._pins_generation = device.catalog.generation
        self.session.accept_login(self.loop.time())
        self.services.presence.attach(self)

    def _datastream(self, device: DeviceSession, pin: bytes) -> Datastream | None:
        try:
            return self._pins[pin]
        except KeyError:
            pass
        try:
            ds = device.by_pin(pin.decode("ascii"))
        except UnicodeDecodeError:
            ds = None
        if len(self._pins) < MAX_PIN_CACHE:
            self._pins[pin] = ds
        return ds

    async def _write(self, request: Write) -> None:
        """Store the values of one run of `vw` frames in one write, charged to the device's
        rate limit; those over it are held, reading paused, and stored as it lets them."""
        device = self.device
        assert device is not None
        session = self.session
        datastream = self._datastream
        points: list[tuple[Datastream, Value]] = []
        ids: list[int] = []
        for msg_id, pin, texts in request.values:
            ds = datastream(device, pin)
            if ds is None:
                session.refuse(msg_id)
                continue
            try:
                value = parse_text_value(ds, texts)
            except DomainError:
                session.refuse(msg_id)
                continue
            points.append((ds, value))
            ids.append(msg_id)
        if request.ts is not None and not importable(request.ts, now_ms()):
            return  # a GROUP stamped beyond the import window: skipped, as any import
        admitted = device.admit(len(points))
        held = points[admitted:]
        if held:
            session.quota_exceeded(ids[admitted], self.loop.time())
            del points[admitted:]
        if points:
            self._send_queued()  # refusals go out before the write is awaited
            await self._store(device, points, request.ts)
        while held and not self._closing:
            wait = device.resume_in(len(held))
            if wait == math.inf:
                return  # a rate of 0 lets nothing more through: the rest is dropped
            await self._hold(wait)
            admitted = device.admit(len(held))
            if admitted and not self._closing:
                await self._store(device, held[:admitted], request.ts)
                del held[:admitted]

    async def _store(
        self, device: DeviceSession, points: list[tuple[Datastream, Value]], ts: int | None
    ) -> None:
        try:
            await device.write(points, ts)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: values not stored: %s", self.device_id, exc)

    async def _hold(self, seconds: float) -> None:
        """Stop reading the socket for `seconds` (values wait for the rate limit), or until
        the connection ends; what is queued goes out first."""
        self._send_queued()
        transport = self._transport
        if not self._reading_paused and transport is not None and not self._closing:
            self._reading_paused = True
            transport.pause_reading()
        self._waiter = self.loop.create_future()
        timer = self.loop.call_later(seconds, self._wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _read(self, request: Read) -> None:
        """Answer a `vr` or a sync with one HARDWARE `vw` per requested pin that has a value."""
        device = self.device
        assert device is not None
        self._send_queued()
        wanted = None
        if request.pins is not None:
            wanted = [ds for p in request.pins if (ds := self._datastream(device, p)) is not None]
            if not wanted:
                return
        try:
            found = await device.read(wanted)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: cannot read values: %s", self.device_id, exc)
            return
        for ds, value in found:
            self._send_value(ds.pin, texts_of(value), request.msg_id)

    async def _property(self, request: SetProperty) -> None:
        device = self.device
        assert device is not None
        ds = self._datastream(device, request.pin)
        if ds is None:
            self.session.refuse(request.msg_id)
            return
        wait = device.ready_in(1)
        if wait:  # wait for a token, reading paused (a rate of 0: refused below)
            self.session.quota_exceeded(request.msg_id, self.loop.time())
            while wait and wait != math.inf and not self._closing:
                await self._hold(wait)
                wait = device.ready_in(1)
        self._send_queued()
        try:
            await device.set_properties(ds, [(request.name, request.value)])
        except RateLimited:
            self.session.quota_exceeded(request.msg_id, self.loop.time())
        except DomainError:
            self.session.refuse(request.msg_id)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: property not stored: %s", self.device_id, exc)

    async def _event(self, request: LogEvent | ResolveEvent) -> None:
        device = self.device
        assert device is not None
        self._send_queued()
        try:
            if isinstance(request, LogEvent):
                await device.log_event(request.code, request.description)
            else:
                await device.resolve_events(request.code)
        except EventLimit:
            self.session.limit_reached(request.msg_id)
        except DomainError:
            self.session.refuse_body(request.msg_id)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: event not stored: %s", self.device_id, exc)
        else:
            self.session.acknowledge(request.msg_id)

    def _utc(self, request: Utc) -> None:
        """INTERNAL `utc`: the device's timezone (else its organization's, else UTC)."""
        device = self.device
        assert device is not None
        fields = utc_answer(request.what, device.zone(), now_ms())
        if fields is None:
            self.session.refuse_body(request.msg_id)
        else:
            self.session.answer_utc(request.msg_id, fields)

    async def _info(self, request: Info) -> None:
        """The device's INTERNAL info, kept as its hardware info (already answered)."""
        if self.device is None:
            return
        try:
            await self.device.report_hardware(request.fields)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: hardware info not stored: %s", self.device_id, exc)

    async def _meta(self, request: Meta) -> None:
        """INTERNAL `meta get|set`: the device's metadata (`app.metadata`)."""
        device = self.device
        assert device is not None
        try:
            meta = device.metafield(request.name)
            if request.value is None:
                ((_, value),) = await device.read_meta([meta])
                self.session.answer_meta(request.msg_id, meta.name, value or "")
            else:
                await device.write_meta(meta, request.value)
                self.session.answer_ok(request.msg_id)
        except RateLimited:
            self.session.quota_exceeded(request.msg_id, self.loop.time())
        except DomainError:
            self.session.refuse_body(request.msg_id)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: metadata not stored: %s", self.device_id, exc)

    def _send_value(self, pin: str, texts: list[str], msg_id: int | None = None) -> None:
        if not self.session.send_value(pin, texts, msg_id) and not self.session.closed:
            log.debug("hardware device %s: frame too large for its buffer", self.device_id)
