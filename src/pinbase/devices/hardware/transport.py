"""Blynk's hardware protocol over TCP (and TLS), as spoken by Blynk firmware and `blynklib`.

Framing lives in `hardware_codec`; this module is the server. Choices where Blynk's protocol
description is silent:

Login and session
- The first frame must be LOGIN (2) or HW_LOGIN (29) whose first body field is the device token:
  RESPONSE 200, or RESPONSE 9 (invalid token) and the connection is closed. Any other first
  frame closes the connection. A connection that has not logged in within `LOGIN_TIMEOUT`
  seconds is closed. A LOGIN after login is answered ILLEGAL_COMMAND.
- One session per device: a new login with the same token closes the older connection. Traffic
  marks the device seen; a device silent for 1.5 x its heartbeat (the `h-beat` it announced,
  else `Settings.heartbeat`) is disconnected, and the end of the connection marks it offline.

What the device sends
- HARDWARE `vw\\0<pin>\\0<value>[\\0<value>]` writes through the one write path (pin `1`, `v1`
  or `V1`). Blynk acknowledges nothing on success, and neither does pinbase. A write that
  cannot be stored (no datastream on that pin, a value that does not match the datastream type,
  a malformed body) stores nothing and is answered RESPONSE ILLEGAL_COMMAND (2) with the
  frame's id: the status Blynk's server gives a hardware command it cannot apply, and one that
  every client library tolerates (they log responses and carry on).
- All writes decoded from one socket read become one ingest write (one transaction), awaited
  before the next read (back-pressure through TCP); a read, sync or property request in between
  first waits for the writes before it. Each value has its own timestamp from the connection's
  clock (`device_session.Clock`): never going back, and strictly increasing per pin, so every value
  stays in history even when a read carries one pin many times (a fast device runs ahead of the
  wall clock by a millisecond per repeat beyond one a millisecond). Live subscribers get every
  value in order, and the last of each pin becomes current.
- Values beyond the device's rate limit (`DeviceSession.admit`) are dropped; like Blynk's server,
  the device is told RESPONSE QUOTA_LIMIT (1) at most once every `QUOTA_WARN_PERIOD` seconds.
- `vr\\0<pin>[\\0<pin>...]` is answered with HARDWARE `vw\\0<pin>\\0<value>` per pin that has a
  value (pins travel as bare numbers). HARDWARE_SYNC with an empty body, or just `vr`, means every
  datastream that has a value; `vr\\0<pin>...` names pins. One HARDWARE message per pin, carrying
  the request's id. Pins without a value or datastream get nothing, as in Blynk.
- A location travels as two fields, `vw\\0<pin>\\0<lon>\\0<lat>`, the way devices send one.
- INTERNAL (17) `ver..h-beat..buff-in..dev..` sets the heartbeat and receive buffer and is
  answered RESPONSE 200; INTERNAL `rtc` is answered INTERNAL `rtc\\0<unix seconds>` as Blynk does.
- PROPERTY (19) `<pin>\\0<property>\\0<value>[\\0<value>...]` from a device sets a widget property
  (several values become a JSON array of strings, Blynk's `labels` form).
- PING is answered RESPONSE 200. Any other command is answered ILLEGAL_COMMAND and the
  connection stays up (framing does not depend on the command). A malformed frame (message id
  0, a body larger than the limit) closes the connection. The body limit is the larger of 1024
  bytes and the `buff-in` the device announced. (blynklib 0.2.6 numbers its messages 0 after
  the 65,535th; it is then disconnected and reconnects with fresh ids, as it also does against
  Blynk's server, whose answer with id 0 it rejects.)

What the device receives
- Every frame is strictly smaller than the device's `buff-in` (1024 until announced); a value
  whose frame would not fit is not sent (Blynk's libraries reject such frames and reconnect).
- Nothing is sent between the RESPONSE to LOGIN and the RESPONSE to the device's INTERNAL info
  (blynklib expects each as the very next frame). The downlink opens after that INTERNAL, after
  the first other frame, or `HANDSHAKE_GRACE` seconds after login, whichever comes first;
  changes meanwhile wait in order.
- Clients are told apart by the INTERNAL info they send after login:
  * the Arduino/C++ library always sends a `build` key. It reads the stream frame by frame
    and handles PROPERTY, so it gets property changes, and frames go out as fast as the socket
    takes them.
  * `blynklib` (PyPI) announces `dev` = `python` (`...-mpython` for its MicroPython twin). It
    parses only the first message of each socket read and treats PROPERTY as fatal, so it gets
    no PROPERTY frames and each frame must arrive in a read of its own. Timing alone cannot
    promise that (a retransmitted segment, or a slow device, makes the kernel hand two frames
    over at once), so pinbase uses a read barrier. After every frame (responses and sync
    answers included) it sends a PING, `BARRIER_DELAY` later so that the two rarely share a
    read, and it sends the next frame only once the device has answered that PING. blynklib
    answers only a message that came first in its read, so the answer proves that everything
    sent before the PING was consumed by earlier reads. A PING that shared a read with the
    frame is lost unanswered: it is sent again after 10 ms, then at doubling intervals up to
    `BARRIER_RETRY_MAX`. A device that never answers is given up on after `BARRIER_PROBATION`
    seconds and is paced instead (below); one that has answered before is waited for up to
    `BARRIER_GIVE_UP` seconds per frame. The barrier completes within a round trip, so a frame
    after an idle spell goes out at once: it costs latency only in bursts (about 1.3 ms per
    frame on loopback).
  * anything else (no INTERNAL at all, or another library) gets no PROPERTY frames and is paced:
    consecutive frames leave at least `PACING_GAP` seconds apart, so that a client reading one
    message per read still sees each frame alone when it keeps up.
- A device whose outgoing queue exceeds `MAX_OUTBOX` frames (it stopped reading) is
  disconnected.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import cast

import orjson

from pinbase.app.device_session import DeviceSession, RateLimited
from pinbase.app.services import Services
from pinbase.devices.hardware import codec as codec
from pinbase.domain.errors import DomainError
from pinbase.domain.model import Datastream
from pinbase.domain.values import Value, parse_text_value, to_text
from pinbase.live.bus import Event, ValueChanged
from pinbase.store.base import StoreUnavailable

log = logging.getLogger(__name__)

PROTOCOL = "hardware"
LOGIN_TIMEOUT = 10.0
"""Seconds a new connection has to log in."""
HANDSHAKE_GRACE = 1.0
"""Seconds after login the downlink waits for the device's INTERNAL info."""
HEARTBEAT_FACTOR = 1.5
MIN_HEARTBEAT = 1
MAX_HEARTBEAT = 3600
MIN_BUFFER = 16
QUOTA_WARN_PERIOD = 60.0
MAX_OUTBOX = 10_000
BARRIER_DELAY = 0.001
BARRIER_RETRY_FIRST = 0.01
BARRIER_RETRY_MAX = 0.25
BARRIER_PROBATION = 3.0
BARRIER_GIVE_UP = 5.0
PACING_GAP = 0.005


class Client(enum.Enum):
    UNKNOWN = "unknown"
    FRAMED = "framed"
    """Reads frame by frame and handles PROPERTY (the Arduino/C++ library)."""
    ONE_PER_READ = "one-per-read"
    """Parses only the first message of each socket read (blynklib)."""


def classify(info: dict[str, str]) -> Client:
    """Which kind of client sent this INTERNAL info."""
    if "build" in info:
        return Client.FRAMED
    if "python" in info.get("dev", "").lower():
        return Client.ONE_PER_READ
    return Client.UNKNOWN


class HardwareServer:
    """The listener: accepts connections and closes them all on `close()`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.connections: set[HardwareConnection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HardwareConnection(self), host, port, ssl=ssl_context, backlog=1024
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
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


async def serve_hardware(
    services: Services, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> HardwareServer:
    """Start the hardware protocol listener (TLS when `ssl_context` is given)."""
    server = HardwareServer(services)
    await server.start(host, port, ssl_context)
    return server


class HardwareConnection(asyncio.Protocol):
    """One device connection; a presence `Session` once logged in."""

    protocol = PROTOCOL

    def __init__(self, server: HardwareServer) -> None:
        self.server = server
        self.services = server.services
        self.device_id = 0
        self.client = Client.UNKNOWN
        self._classified = False
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._decoder = codec.FrameDecoder(codec.DEFAULT_BUFFER)
        self._ids = codec.MessageIds()
        self._closing = False
        self._lost = False
        self._logged_in = False
        # reading
        self._inbox: deque[codec.Frame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._task: asyncio.Task[None] | None = None
        self._last_rx = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._heartbeat = float(self.services.settings.heartbeat)
        self._buffer = codec.DEFAULT_BUFFER
        self.session: DeviceSession | None = None
        self._quota_warned = -QUOTA_WARN_PERIOD
        self._pins: dict[bytes, Datastream | None] = {}
        self._pins_generation = -1
        # writing
        self._outbox: deque[bytes] = deque()
        self._gate_open = False
        self._write_paused = False
        self._grace: asyncio.TimerHandle | None = None
        self._next_send = 0.0
        self._pace: asyncio.TimerHandle | None = None
        self._barrier = False
        self._barrier_started = 0.0
        self._barrier_attempt = 0
        self._barrier_timer: asyncio.TimerHandle | None = None
        self._barrier_answered = False
        self._ping_ids: set[int] = set()
        """PINGs of the current read barrier; an answer to any of them completes it."""
        self._ping_on_drain = False

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        # Pause writing once bytes stay buffered: "drained" then means handed to the kernel (for
        # TLS: to the socket transport). high=1, not 0: the TLS transport pauses at size >= high.
        self._transport.set_write_buffer_limits(high=1, low=0)
        self.server.connections.add(self)
        self._timer = self.loop.call_later(LOGIN_TIMEOUT, self._login_timeout)
        self._task = self.loop.create_task(self._run())

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        self._cancel_timers()
        if self._logged_in:
            self.services.presence.detach(self)
        self._wake()
        self.server.connections.discard(self)
        if self._task is None or self._task.done():
            self._finish()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_rx = self.loop.time()
        try:
            frames = self._decoder.feed(data)
        except codec.CodecError as exc:
            log.info("hardware device %s: malformed frame (%s); closing", self.device_id, exc)
            self.close()
            return
        if not frames:
            return
        if self._logged_in:
            self.services.presence.seen(self.device_id)
            for frame in frames:
                if frame.command == codec.RESPONSE:
                    self._on_response(frame)
                else:
                    self._inbox.append(frame)
        else:
            self._inbox.extend(frames)
        if not self._inbox:
            return
        if self._waiter is not None:
            self._wake()
        elif not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._ping_on_drain:
            self._ping_on_drain = False
            self._barrier_timer = self.loop.call_later(BARRIER_DELAY, self._barrier_ping)
        self._pump()

    # Session ------------------------------------------------------------------------------
    def deliver(self, event: Event) -> None:
        if event.origin is self or self._closing:
            return
        pin = codec.bare_pin(event.pin)
        if isinstance(event, ValueChanged):
            value = event.value
            texts = [str(v) for v in value] if isinstance(value, list) else [to_text(value)]
            frame = codec.hardware_write(self._ids.next(), pin, texts)
        elif self.client is Client.FRAMED:
            frame = codec.property_message(self._ids.next(), pin, event.name, event.value)
        else:
            return
        self._send(frame)

    def replaced(self) -> None:
        log.info("hardware device %s: logged in again elsewhere; closing", self.device_id)
        self.close()

    # closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close after sending what is already written to the transport."""
        if self._closing:
            return
        self._closing = True
        self._cancel_timers()
        self._outbox.clear()
        if self._transport is not None:
            self._transport.close()
        self._wake()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._grace, self._pace, self._barrier_timer):
            if handle is not None:
                handle.cancel()
        self._timer = self._grace = self._pace = self._barrier_timer = None

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    def _login_timeout(self) -> None:
        if not self._logged_in:
            log.info("hardware connection: no login within %ss; closing", LOGIN_TIMEOUT)
            self.close()

    def _check_heartbeat(self) -> None:
        self._timer = None
        if self._closing:
            return
        now = self.loop.time()
        if self._reading_paused or self._inbox:
            self._last_rx = now  # its frames wait for the server, not the other way round
        deadline = self._last_rx + HEARTBEAT_FACTOR * self._heartbeat
        if now >= deadline:
            log.info("hardware device %s: heartbeat timeout; closing", self.device_id)
            self.close()
        else:
            self._timer = self.loop.call_at(deadline, self._check_heartbeat)

    def _arm_heartbeat(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self._last_rx + HEARTBEAT_FACTOR * self._heartbeat
        self._timer = self.loop.call_at(deadline, self._check_heartbeat)

    # reading ------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _take(self) -> list[codec.Frame] | None:
        """Every frame received so far (waiting for some), or None once the connection ends."""
        while not self._inbox:
            if self._closing:
                return None
            if self._reading_paused and self._transport is not None:
                self._reading_paused = False
                self._transport.resume_reading()
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._closing:
            return None
        frames = list(self._inbox)
        self._inbox.clear()
        return frames

    async def _run(self) -> None:
        try:
            frames = await self._take()
            if frames is None:
                return
            rest = await self._login(frames)
            if rest is None:
                return
            if rest:
                await self._handle(rest)
            while (frames := await self._take()) is not None:
                await self._handle(frames)
        except Exception:
            log.exception("hardware device %s: connection failed", self.device_id)
            self.close()
        finally:
            if self._lost:
                self._finish()

    async def _login(self, frames: list[codec.Frame]) -> list[codec.Frame] | None:
        first = frames[0]
        if first.command not in (codec.LOGIN, codec.HW_LOGIN):
            log.info("hardware connection: first frame is command %s, not login", first.command)
            self.close()
            return None
        fields = first.fields()
        try:
            token = fields[0].decode() if fields else ""
        except UnicodeDecodeError:
            token = ""
        session = await DeviceSession.login(self.services, token, origin=self)
        if self._closing:
            return None
        assert self._transport is not None
        if session is None:
            self._transport.write(codec.response(first.msg_id, codec.INVALID_TOKEN))
            self.close()
            return None
        self.session = session
        self.device_id = session.device_id
        self._logged_in = True
        self._arm_heartbeat()
        self.services.presence.attach(self)
        self._transport.write(codec.response(first.msg_id, codec.OK))
        self._grace = self.loop.call_later(HANDSHAKE_GRACE, self._open_gate)
        rest = [f for f in frames[1:] if f.command != codec.RESPONSE]
        for frame in frames[1:]:
            if frame.command == codec.RESPONSE:
                self._on_response(frame)
        return rest

    async def _handle(self, frames: list[codec.Frame]) -> None:
        session = self.session
        assert session is not None
        if not await session.refresh():
            log.info("hardware device %s: its token no longer opens it; closing", self.device_id)
            self.close()
            return
        if session.catalog.generation != self._pins_generation:
            self._pins.clear()
            self._pins_generation = session.catalog.generation
        writes: list[tuple[Datastream, Value, int]] = []
        for frame in frames:
            if self._closing:
                break  # what was decoded before is still stored
            command = frame.command
            if not self._gate_open and command != codec.INTERNAL:
                self._open_gate()
            if command == codec.HARDWARE:
                fields = frame.fields()
                if len(fields) >= 3 and fields[0] == b"vw":
                    self._parse_write(session, frame, fields, writes)
                    continue
                if writes:
                    await self._write(session, writes)
                    writes = []
                if len(fields) >= 2 and fields[0] == b"vr":
                    await self._read(session, frame, fields[1:])
                else:
                    self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
                continue
            if writes:
                await self._write(session, writes)
                writes = []
            if command == codec.PING:
                self._answer(frame.msg_id, codec.OK)
            elif command == codec.HARDWARE_SYNC:
                fields = frame.fields()
                if fields and fields[0] == b"vr":
                    fields = fields[1:]
                await self._read(session, frame, fields, everything=not fields)
            elif command == codec.INTERNAL:
                self._internal(frame)
            elif command == codec.PROPERTY:
                await self._property(session, frame)
            else:
                self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
        if writes:
            await self._write(session, writes)

    def _datastream(self, session: DeviceSession, pin: bytes) -> Datastream | None:
        try:
            return self._pins[pin]
        except KeyError:
            pass
        try:
            ds = session.by_pin(pin.decode("ascii"))
        except UnicodeDecodeError:
            ds = None
        if len(self._pins) < 1024:
            self._pins[pin] = ds
        return ds

    def _parse_write(
        self,
        session: DeviceSession,
        frame: codec.Frame,
        fields: list[bytes],
        writes: list[tuple[Datastream, Value, int]],
    ) -> None:
        ds = self._datastream(session, fields[1])
        if ds is None:
            self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
            return
        try:
            value = parse_text_value(ds, [f.decode() for f in fields[2:]])
        except (DomainError, UnicodeDecodeError):
            self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
            return
        writes.append((ds, value, frame.msg_id))

    async def _write(
        self, session: DeviceSession, writes: list[tuple[Datastream, Value, int]]
    ) -> None:
        """Store the values of one read in one write, charged to the device's rate limit."""
        admitted = session.admit(len(writes))
        if admitted < len(writes):
            self._warn_quota(writes[admitted][2])
        if not admitted:
            return
        try:
            await session.write([(ds, value) for ds, value, _ in writes[:admitted]])
        except StoreUnavailable as exc:
            log.warning("hardware device %s: values not stored: %s", session.device_id, exc)

    def _warn_quota(self, msg_id: int) -> None:
        now = self.loop.time()
        if now - self._quota_warned >= QUOTA_WARN_PERIOD:
            self._quota_warned = now
            self._answer(msg_id, codec.QUOTA_LIMIT)

    async def _read(
        self,
        session: DeviceSession,
        frame: codec.Frame,
        pins: Sequence[bytes],
        everything: bool = False,
    ) -> None:
        """Answer a `vr` or a sync with one HARDWARE `vw` per requested pin that has a value."""
        wanted = None
        if not everything:
            wanted = [ds for p in pins if (ds := self._datastream(session, p)) is not None]
            if not wanted:
                return
        try:
            found = await session.read(wanted)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: cannot read values: %s", session.device_id, exc)
            return
        for ds, value in found:
            texts = [str(v) for v in value] if isinstance(value, list) else [to_text(value)]
            self._send(codec.hardware_write(frame.msg_id, codec.bare_pin(ds.pin), texts))

    def _internal(self, frame: codec.Frame) -> None:
        fields = frame.fields()
        if fields and fields[0] == b"rtc":
            self._send(codec.message(codec.INTERNAL, frame.msg_id, ("rtc", str(int(time.time())))))
            return
        info = codec.key_values(fields)
        self._configure(info)
        if info and not self._classified:
            self._classified = True
            self.client = classify(info)
        if not self._gate_open:
            assert self._transport is not None
            # The answer must be the very next frame the device sees: it bypasses the queue.
            self._transport.write(codec.response(frame.msg_id, codec.OK))
            self._open_gate(after_frame=True)
        else:
            self._answer(frame.msg_id, codec.OK)

    def _configure(self, info: dict[str, str]) -> None:
        beat = info.get("h-beat", "")
        if beat.isdigit() and MIN_HEARTBEAT <= int(beat) <= MAX_HEARTBEAT:
            self._heartbeat = float(int(beat))
            self._arm_heartbeat()
        size = info.get("buff-in", "")
        if size.isdigit() and int(size) >= MIN_BUFFER:
            self._buffer = min(int(size), codec.HEADER_SIZE + codec.MAX_BODY + 1)
            self._decoder.max_body = min(max(self._buffer, codec.DEFAULT_BUFFER), codec.MAX_BODY)

    async def _property(self, session: DeviceSession, frame: codec.Frame) -> None:
        fields = frame.fields()
        ds = self._datastream(session, fields[0]) if len(fields) >= 3 else None
        if ds is None:
            self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
            return
        try:
            name = fields[1].decode()
            texts = [f.decode() for f in fields[2:]]
            value = texts[0] if len(texts) == 1 else orjson.dumps(texts).decode()
            await session.set_properties(ds, [(name, value)])
        except RateLimited:
            self._warn_quota(frame.msg_id)
        except (DomainError, UnicodeDecodeError):
            self._answer(frame.msg_id, codec.ILLEGAL_COMMAND)
        except StoreUnavailable as exc:
            log.warning("hardware device %s: property not stored: %s", session.device_id, exc)

    # writing ------------------------------------------------------------------------------
    def _answer(self, msg_id: int, status: int) -> None:
        self._send(codec.response(msg_id, status))

    def _send(self, frame: bytes) -> None:
        """Queue a frame for the device: sent in order, as its kind of client can take them."""
        if self._closing:
            return
        if len(frame) >= self._buffer:
            log.debug("hardware device %s: frame too large for its buffer", self.device_id)
            return
        self._outbox.append(frame)
        if len(self._outbox) > MAX_OUTBOX:
            log.warning("hardware device %s: not reading its downlink; closing", self.device_id)
            self.close()
            return
        self._pump()

    def _open_gate(self, after_frame: bool = False) -> None:
        if self._gate_open:
            return
        self._gate_open = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if after_frame:
            self._after_send()
        self._pump()

    def _pump(self) -> None:
        transport = self._transport
        outbox = self._outbox
        if transport is None or not self._gate_open:
            return
        while outbox and not self._closing and not self._write_paused and not self._barrier:
            if self.client is Client.FRAMED:
                transport.write(b"".join(outbox))
                outbox.clear()
                return
            if self.client is Client.UNKNOWN:
                now = self.loop.time()
                if now < self._next_send:
                    if self._pace is None:
                        self._pace = self.loop.call_at(self._next_send, self._paced)
                    return
            transport.write(outbox.popleft())
            self._after_send()

    def _paced(self) -> None:
        self._pace = None
        self._pump()

    def _after_send(self) -> None:
        if self.client is Client.ONE_PER_READ:
            self._barrier = True
            self._barrier_started = self.loop.time()
            self._barrier_attempt = 0
            self._barrier_timer = self.loop.call_later(BARRIER_DELAY, self._barrier_ping)
        elif self.client is Client.UNKNOWN:
            self._next_send = self.loop.time() + PACING_GAP

    def _barrier_ping(self) -> None:
        self._barrier_timer = None
        if self._closing or not self._barrier:
            return
        waited = self.loop.time() - self._barrier_started
        if waited >= (BARRIER_GIVE_UP if self._barrier_answered else BARRIER_PROBATION):
            self._ping_ids.clear()
            self._barrier = False
            if not self._barrier_answered:
                log.info("hardware device %s: no answer to PING; pacing", self.device_id)
                self.client = Client.UNKNOWN
            self._after_send_fallback()
            return
        if self._write_paused:
            self._ping_on_drain = True
            return
        assert self._transport is not None
        # Earlier PINGs of this barrier stay valid: over TLS a PING can wait in the device's
        # TLS buffer, unread, until the next record arrives and is then answered late.
        ping_id = self._ids.next()
        self._ping_ids.add(ping_id)
        self._transport.write(codec.ping(ping_id))
        delay = min(BARRIER_RETRY_FIRST * 2**self._barrier_attempt, BARRIER_RETRY_MAX)
        self._barrier_attempt += 1
        self._barrier_timer = self.loop.call_later(delay, self._barrier_ping)

    def _after_send_fallback(self) -> None:
        self._next_send = self.loop.time() + PACING_GAP
        self._pump()

    def _on_response(self, frame: codec.Frame) -> None:
        if self._barrier and frame.msg_id in self._ping_ids:
            self._barrier_answered = True
            self._barrier = False
            self._ping_ids.clear()
            if self._barrier_timer is not None:
                self._barrier_timer.cancel()
                self._barrier_timer = None
            self._pump()
