"""The HTTP port against strangers: huge unfinished heads, silent and trickling connections,
floods past the per-address and the process-wide caps.

Every attacker is a raw loopback socket, bounded in count; each test starts its own server with
small limits and waits for outcomes with a deadline, never for a time.
"""

from __future__ import annotations

import re
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from helpers import DEADLINE, Server, log_counts, most_log_lines, rss_mib, wait_for

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: pinbase\r\n\r\n"
MIB = 1024 * 1024


class Client:
    """One raw HTTP/1.1 connection to a server, from `source` (any loopback address)."""

    def __init__(self, server: Server, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", server.port), timeout=DEADLINE, source_address=(source, 0)
        )
        self.received = b""
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send `data`; False when the server has already closed the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
        return not self.closed

    def poll(self) -> bool:
        """Read what has arrived without waiting; True once the server has closed (what it sent
        before is in `received`)."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            self.received += chunk
            self.closed = not chunk
        return self.closed

    def request(self, headers: bytes = b"") -> int:
        """GET /healthz over this connection (with extra `headers` lines); the response's
        status (0: closed without one)."""
        if not self.send(HEALTHZ[:-2] + headers + b"\r\n"):
            return 0
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return 0
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.I)
        remaining = (int(length.group(1)) if length else 0) - len(body)
        while remaining > 0:
            chunk = self.sock.recv(remaining)
            if not chunk:
                return 0
            remaining -= len(chunk)
        return int(head.split(b" ", 2)[1])


def refused(client: Client) -> bool:
    """The server closed `client` at once, answering the canned 503 before any request."""
    wait_for("the connection to be closed", client.poll)
    return client.received.startswith(b"HTTP/1.1 503 ")


def a_new_connection_is_served(server: Server, source: str = "127.0.0.1") -> bool:
    with Client(server, source) as client:
        return client.request() == 200


@pytest.fixture
def start() -> Iterator[Callable[[Server], Server]]:
    """Starts a server; kills what is left of it at teardown."""
    started: list[Server] = []

    def run(server: Server) -> Server:
        started.append(server)
        return server.start()

    yield run
    for server in started:
        server.kill()


class FdLimitedServer(Server):
    """A server whose process starts with RLIMIT_NOFILE soft and hard at `FD_LIMIT`."""

    FD_LIMIT = 200
    EXEC = (
        "import os, resource, sys; n = int(sys.argv[1]); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
    )

    def arguments(self) -> list[str]:
        return [sys.executable, "-c", self.EXEC, str(self.FD_LIMIT), *super().arguments()]


def test_unfinished_huge_heads_are_cut_off_and_memory_stays_bounded(
    tmp_path: Path, start: Callable[[Server], Server]
) -> None:
    server = start(Server(
        tmp_path / "data",
        "--max-header-bytes", "16384",
        "--header-timeout", "60",
        "--idle-timeout", "60",
        "--max-connections-per-address", "0",
    ))  # fmt: skip
    baseline = peak = rss_mib(server)
    unfinished = b"GET /healthz HTTP/1.1\r\nHost: pinbase\r\nX-Pad: " + b"a" * MIB
    with ExitStack() as stack:
        attackers = [stack.enter_context(Client(server)) for _ in range(200)]
        for attacker in attackers:  # 200 MiB of header in all, none of it finished
            attacker.send(unfinished)
            peak = max(peak, rss_mib(server))
        assert peak - baseline < 64, f"RSS grew from {baseline:.0f} to {peak:.0f} MiB"
        for attacker in attackers:
            wait_for("an unfinished huge head to be cut off", attacker.poll)
            assert attacker.received == b"" or attacker.received.startswith(b"HTTP/1.1 431 ")
    chunked = b"POST /healthz HTTP/1.1\r\nHost: pinbase\r\nTransfer-Encoding: chunked\r\n\r\n"
    with ExitStack() as stack:  # trailers after a chunked body are bounded like a head
        attackers = [stack.enter_context(Client(server)) for _ in range(50)]
        for attacker in attackers:
            attacker.send(chunked + b"5\r\nhello\r\n0\r\nX-Trailer: " + b"a" * MIB)
            peak = max(peak, rss_mib(server))
        for attacker in attackers:
            wait_for("an unfinished huge trailer to be cut off", attacker.poll)
        assert peak - baseline < 64, f"RSS grew from {baseline:.0f} to {peak:.0f} MiB"
    with Client(server) as client:  # a large head within the limit is served
        assert client.request(b"X-Pad: " + b"a" * 12_000 + b"\r\n") == 200
    with Client(server) as client:  # a complete head over the limit, in one piece
        client.send(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 40_000 + b"\r\n\r\n")
        wait_for("the oversized head to be answered", client.poll)
        assert client.received.startswith(b"HTTP/1.1 431 ")
    assert rss_mib(server) - baseline < 64  # and no more once the attack has ended


def test_silent_trickling_and_idle_connections_are_closed(
    tmp_path: Path, start: Callable[[Server], Server]
) -> None:
    server = start(Server(
        tmp_path / "data",
        "--idle-timeout", "1",
        "--header-timeout", "1",
        "--max-connections-per-address", "0",
    ))  # fmt: skip
    with ExitStack() as stack:
        silent = [stack.enter_context(Client(server)) for _ in range(100)]
        kept_alive = stack.enter_context(Client(server))
        assert kept_alive.request() == 200
        trickler = stack.enter_context(Client(server))
        assert trickler.send(b"GET /healthz HTTP/1.1\r\nHost: pinbase\r\n")

        def trickled_out() -> bool:  # one more header byte per poll: the head never ends
            return not trickler.send(b"X") or trickler.poll()

        wait_for("the trickling head to be cut off", trickled_out)
        assert trickler.received == b"" or trickler.received.startswith(b"HTTP/1.1 408 ")
        for client in [*silent, kept_alive]:
            wait_for("an idle connection to be closed", client.poll)
            assert client.received == b""
    assert a_new_connection_is_served(server)
    assert log_counts(server, "request head timeout") == (1, 1)


def test_per_address_cap_refuses_the_excess_of_one_address_only(
    tmp_path: Path, start: Callable[[Server], Server]
) -> None:
    began = time.monotonic()
    server = start(
        Server(tmp_path / "data", "--max-connections-per-address", "4", "--idle-timeout", "60")
    )
    with ExitStack() as stack:
        holders = [stack.enter_context(Client(server)) for _ in range(4)]
        assert [holder.request() for holder in holders] == [200] * 4
        for _ in range(20):
            with Client(server) as extra:
                assert refused(extra)
        assert a_new_connection_is_served(server, source="127.0.0.2")
        assert holders[0].request() == 200  # existing connections keep working
        holders[1].close()
        wait_for(
            "the capped address to be served again", lambda: a_new_connection_is_served(server)
        )
    assert server.stop() == 0
    lines, events = log_counts(server, "refused a connection from 127.0.0.1: per-address limit")
    assert events >= 20
    assert lines <= most_log_lines(began), server.log.read_text()


def test_the_process_cap_below_the_fd_limit_refuses_a_flood(
    tmp_path: Path, start: Callable[[Server], Server]
) -> None:
    began = time.monotonic()
    server = start(
        FdLimitedServer(
            tmp_path / "data", "--max-connections-per-address", "0", "--idle-timeout", "60"
        )
    )
    with ExitStack() as stack:
        existing = stack.enter_context(Client(server))
        assert existing.request() == 200
        holders: list[Client] = []
        while len(holders) < FdLimitedServer.FD_LIMIT:  # fill up to the cap
            holder = stack.enter_context(Client(server))
            if holder.request() != 200:
                holder.close()
                break
            holders.append(holder)
        # The cap leaves descriptors for the store, files and listeners: not a mere few.
        assert 0 < len(holders) + 1 <= FdLimitedServer.FD_LIMIT - 50, "no cap below the fd limit"
        flood = [stack.enter_context(Client(server)) for _ in range(100)]
        assert all(refused(attacker) for attacker in flood)
        assert existing.request() == 200
        assert server.process is not None and server.process.poll() is None
        for holder in holders:
            holder.close()
        wait_for("new connections to be served again", lambda: a_new_connection_is_served(server))
        assert existing.request() == 200
    assert server.stop() == 0
    lines, events = log_counts(server, "refused a connection from 127.0.0.1: connection limit")
    assert events >= 100
    assert lines <= most_log_lines(began), server.log.read_text()
    assert "Too many open files" not in server.log.read_text()
