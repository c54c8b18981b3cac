"""The way into a listener whose connections asyncio's `create_server` makes: admission first,
then (on a TLS port) the TLS handshake, then the listener's own protocol.

`Entry.door` is the protocol factory given to `loop.create_server`, always without `ssl`. Each
accepted connection gets a `_Door`, which asks the listener's `Gate`; a refused connection is
closed at once, without a protocol of its own, so it costs nothing more. An admitted one gets
the listener's protocol, made by `make(ticket)`, which then owns the transport and releases the
ticket in its `connection_lost`. The door steps aside (`set_protocol`), so no layer stays
between the socket and the protocol.

Why the TLS handshake happens here, after admission: with `create_server(ssl=...)` asyncio
runs the handshake before any protocol code sees the connection, so a stranger that opens
connections and never completes a handshake would hold descriptors unseen by admission (for
asyncio's 60 s handshake timeout). Here the door admits the TCP connection first, then runs
the handshake with `loop.start_tls`, bounded by `handshake_timeout`; a failed or timed-out
handshake releases the ticket and is logged through the gate (rate-limited). What the TLS
layer delivers before the listener's protocol takes over (data and EOF can come with the
handshake's last flight) is held by the door and replayed to it in order.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

from pinbase.net.admission import Ticket
from pinbase.net.gate import Gate

TLS_FAILED = "TLS handshake failed or timed out"


class Entry:
    """Admission and TLS for one listener; `door` is its protocol factory."""

    def __init__(
        self,
        gate: Gate,
        make: Callable[[Ticket], asyncio.Protocol],
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.gate = gate
        self.make = make
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.handshakes: set[_Door] = set()
        """Doors whose TLS handshake is under way."""

    def door(self) -> asyncio.Protocol:
        return _Door(self)

    async def close(self) -> None:
        """Abort the handshakes under way and wait for them to end (the listener is closing;
        the gate's counts are logged by `Gate.close` once its connections are gone too)."""
        tasks = []
        for door in list(self.handshakes):
            door.abort()
            if door.task is not None:
                tasks.append(door.task)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


class _Door(asyncio.Protocol):
    """One accepted connection until its own protocol takes it over."""

    __slots__ = ("entry", "eof", "lost", "protocol", "received", "task", "transport")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.transport: asyncio.Transport | None = None
        """The TCP transport while the TLS handshake is under way."""
        self.task: asyncio.Task[None] | None = None
        self.protocol: asyncio.Protocol | None = None
        """The connection's own protocol, once it has taken over."""
        self.received: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        entry = self.entry
        ticket = entry.gate.admit(transport)
        if ticket is None:
            transport.close()
            return
        plain = cast(asyncio.Transport, transport)
        if entry.tls is None:
            protocol = entry.make(ticket)
            plain.set_protocol(protocol)
            protocol.connection_made(plain)
            return
        self.transport = plain
        entry.handshakes.add(self)
        self.task = asyncio.get_running_loop().create_task(self._handshake(plain, ticket))

    async def _handshake(self, plain: asyncio.Transport, ticket: Ticket) -> None:
        entry = self.entry
        assert entry.tls is not None
        loop = asyncio.get_running_loop()
        # The transport started reading once `connection_made` returned (uvloop starts it even
        # when the protocol paused it there), so the start of the handshake may have come to
        # the door: it goes to the TLS protocol that `start_tls` puts in place before anything
        # it reads itself (`_replay_early`, scheduled before `start_tls` runs).
        if self.received:
            early = b"".join(self.received)
            self.received = []
            loop.call_soon(_replay_early, plain, early)
        secure: asyncio.Transport | None = None
        try:
            secure = await loop.start_tls(
                plain,
                self,
                entry.tls,
                server_side=True,
                ssl_handshake_timeout=entry.handshake_timeout,
            )
        except Exception:  # any failure ends the connection alike
            secure = None
        finally:
            entry.handshakes.discard(self)
            self.transport = None
            # A connection lost during the handshake may still "succeed" (uvloop ends the wait
            # without an error): only a completed handshake has a cipher.
            if secure is None or secure.get_extra_info("cipher") is None:
                entry.gate.cut(ticket, TLS_FAILED, logging.INFO)
                entry.gate.release(ticket)
                plain.abort()
                secure = None
        if secure is None:
            return
        protocol = self.protocol = entry.make(ticket)
        secure.set_protocol(protocol)
        protocol.connection_made(secure)
        for data in self.received:
            protocol.data_received(data)
        self.received = []
        if self.eof:
            protocol.eof_received()  # the TLS layer closes after an EOF whatever it answers
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])

    def abort(self) -> None:
        """End a handshake under way (or about to start)."""
        if self.transport is not None:
            self.transport.abort()

    # What the TLS layer delivers before the connection's own protocol takes over, and a
    # connection_lost it scheduled for this door before then.
    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.protocol is not None:
            self.protocol.connection_lost(exc)
        else:
            self.lost = (exc,)


def _replay_early(plain: asyncio.BaseTransport, data: bytes) -> None:
    """Give the TLS protocol now on `plain` the bytes that came before it: they wait in its
    incoming buffer until its handshake starts. asyncio's and uvloop's TLS protocols are both
    buffered protocols (uvloop's is no `asyncio.BufferedProtocol` instance: duck-typed)."""
    if plain.is_closing():
        return
    protocol = cast(asyncio.BufferedProtocol, plain.get_protocol())
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]
