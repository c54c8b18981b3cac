"""uvicorn's httptools protocol, bounded against strangers: admission, a header size limit, a
header-read timeout and an idle timeout for connections that never send a request.

What uvicorn (0.54, httptools) lacks, and this subclass adds:
- Admission. `connection_made` asks the listener's `Gate`; a refused connection is answered a
  canned 503 and closed at once, before uvicorn counts it, so it never reaches the application
  and holds its descriptor only for that instant. The client may see the 503 or a reset.
- A header size limit. httptools accumulates an unfinished header, and the trailers after a
  chunked body, in memory without bound. `data_received` counts the bytes of every read that
  starts while a head (request line and headers) is being read, and answers 431 and closes once
  they pass `max_header_bytes` with the head still unfinished. Counting whole reads never
  overcounts an unfinished head; a head that completes within a read larger than the limit is
  measured exactly in `on_headers_complete`; a head that starts in the middle of a read (after
  a pipelined body) is undercounted by at most that read, which delays the cut by one read.
  Trailers are counted, and timed, as a head of their own.
- A header-read timeout. The first byte of a head arms a timer of `header_timeout` seconds that
  only a complete head disarms: a client trickling a byte at a time is answered 408 and closed.
  The timer is armed only when a read ends inside a head, so a request that arrives whole (the
  hot path) arms none.
- An idle timeout from the start. uvicorn arms its keep-alive timer only after a response, so a
  connection that never sends a byte stayed open for ever; `connection_made` arms the same timer
  (`timeout_keep_alive`, set to the idle timeout), which the first byte disarms.
- Quiet logs. Connections cut off (invalid requests included) go to the gate's rate-limited log
  instead of one line each; uvicorn's two warnings per upgrade request are dropped.

pinbase serves no WebSocket, and `server.py` configures none: a protocol switch would hand the
transport to another protocol whose `connection_lost` would never release the admission ticket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from pinbase.net.admission import Ticket
from pinbase.net.gate import Gate

FIXED_HEAD = len(b" HTTP/1.1\r\n\r\n")


def canned(status: int, text: str) -> bytes:
    """A complete response that closes the connection."""
    body = text.encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


REFUSED = canned(503, "Too many connections.")
BAD_REQUEST = canned(400, "Invalid HTTP request received.")
HEAD_TOO_LARGE = canned(431, "Request header fields too large.")
HEAD_TIMEOUT = canned(408, "Request header timeout.")


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the limit."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """One HTTP connection; `bound_protocol` makes the subclass that carries the limits."""

    gate: ClassVar[Gate]
    header_timeout: ClassVar[float]
    max_header_bytes: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticket: Ticket | None = None
        self.reading_head = True
        """Between requests or inside a head (request line and headers), not in a body."""
        self.head_bytes = 0
        """Bytes of the reads that started while reading the current head."""
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        ticket = self.gate.admit(transport)
        if ticket is None:
            transport.write(REFUSED)
            transport.close()
            return
        self.ticket = ticket
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ticket is None:  # refused: uvicorn never saw it
            return
        self.gate.release(self.ticket)
        self._disarm_head_timer()
        # uvicorn leaves its keep-alive timer armed after a reset, holding this object for the
        # whole idle timeout: a flood of resets would pile them up.
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.reading_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, HeadTooLarge):
                self._cut("request head too large", HEAD_TOO_LARGE)
            else:
                self._cut("invalid HTTP request", BAD_REQUEST)
            return
        except httptools.HttpParserUpgrade:
            # Served as a plain request, as uvicorn does without a WebSocket library, minus the
            # two warnings uvicorn logs for every such request.
            return
        if self.reading_head and self.head_bytes:
            if self.head_bytes > self.max_header_bytes:
                self._cut("request head too large", HEAD_TOO_LARGE)
            elif self.head_timer is None:
                self.head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        if self.head_bytes > self.max_header_bytes and self._head_size() > self.max_header_bytes:
            raise HeadTooLarge
        self.reading_head = False
        self.head_bytes = 0
        if self.head_timer is not None:
            self._disarm_head_timer()
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        # Only chunked bodies get here. A chunk's size line may be the last one's, followed by
        # trailers, which httptools accumulates like headers: count them like a head until the
        # chunk's data shows it was not (`on_body`).
        self.reading_head = True
        self.head_bytes = 0

    def on_body(self, body: bytes) -> None:
        if self.reading_head:  # data after a chunk's size line
            self.reading_head = False
            if self.head_timer is not None:
                self._disarm_head_timer()
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        if self.head_timer is not None:  # armed while trailers were arriving
            self._disarm_head_timer()

    def timeout_keep_alive_handler(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self._note("idle, no request", logging.INFO)
        super().timeout_keep_alive_handler()

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self._cut("request head timeout", HEAD_TIMEOUT)

    def _head_size(self) -> int:
        size = len(self.parser.get_method()) + len(self.url) + FIXED_HEAD
        return size + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _note(self, reason: str, level: int = logging.WARNING) -> None:
        if self.ticket is not None:
            self.gate.cut(self.ticket, reason, level)

    def _cut(self, reason: str, response: bytes) -> None:
        """Answer `response` (unless another response is under way) and close."""
        self._note(reason)
        self._disarm_head_timer()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(response)
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # a peer that does not read must not hold the connection
        else:
            self.transport.close()


def bound_protocol(
    gate: Gate, header_timeout: float, max_header_bytes: int
) -> type[GuardedHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""

    class PinbaseHttpProtocol(GuardedHttpProtocol):
        pass

    PinbaseHttpProtocol.gate = gate
    PinbaseHttpProtocol.header_timeout = header_timeout
    PinbaseHttpProtocol.max_header_bytes = max_header_bytes
    return PinbaseHttpProtocol
