"""The way into a device listener, on loopback sockets in this process: admission before
anything else, a refused connection closed with no protocol of its own, an admitted one handed
to its own protocol, which releases its ticket when it is lost. On asyncio's loop and uvloop's.
(The TLS handshake after admission is exercised end to end, with a real certificate.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop

from pinbase.net.admission import PER_ADDRESS, Admission, Budget, Ticket
from pinbase.net.entry import Entry
from pinbase.net.eventlog import EventLog
from pinbase.net.gate import Gate

DEADLINE = 10.0


class Echo(asyncio.Protocol):
    """A listener's own protocol: echoes, and releases its ticket when the connection ends."""

    def __init__(self, gate: Gate, ticket: Ticket) -> None:
        self.gate = gate
        self.ticket = ticket
        self.transport: asyncio.Transport | None = None
        self.took_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.took_over = transport.get_protocol() is self  # the door stepped aside

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.release(self.ticket)


async def until(what: str, check: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not check():
            await asyncio.sleep(0.01)


async def admitted_then_refused_then_admitted_again() -> None:
    lines: list[tuple[int, str]] = []
    admission = Admission("test", Budget(10), 1, EventLog(lambda *line: lines.append(line)))
    gate = Gate(admission)
    made: list[Echo] = []

    def make(ticket: Ticket) -> Echo:
        made.append(Echo(gate, ticket))
        return made[-1]

    entry = Entry(gate, make)
    server = await asyncio.get_running_loop().create_server(entry.door, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        assert len(made) == 1 and made[0].took_over
        refused_reader, refused_writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(DEADLINE):
            assert await refused_reader.read() == b""  # closed at once: one per address
        refused_writer.close()
        assert len(made) == 1 and admission.refused == {PER_ADDRESS: 1}
        assert lines and "per-address limit of 1 reached" in lines[0][1]
        writer.close()
        await until("the ticket to be released", lambda: admission.open == 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"again")
        assert await reader.readexactly(5) == b"again"
        writer.close()
        await until("the ticket to be released", lambda: admission.open == 0)
    finally:
        server.close()
        await entry.close()
        await server.wait_closed()
        gate.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_admission_comes_first_and_the_connection_protocol_takes_over(loop: str) -> None:
    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(admitted_then_refused_then_admitted_again())
