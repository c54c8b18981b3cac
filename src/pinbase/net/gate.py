"""The asyncio face of `Admission` for one listener.

A listener's protocol calls `admit(transport)` in `connection_made` (and closes the connection
at once when it gets None), `release(ticket)` in `connection_lost`, and `cut(...)` when it closes
a connection itself for a reason worth an operator's eye. The gate reads the loop's clock and
keeps one timer at the event log's next deadline, so the count of a burst's last refusals is
logged even when nothing follows it.
"""

from __future__ import annotations

import asyncio
import logging

from pinbase.net.admission import Admission, Ticket


class Gate:
    """Admission for one listener, on the running event loop."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, transport: asyncio.BaseTransport) -> Ticket | None:
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        loop = asyncio.get_running_loop()
        ticket = self.admission.admit(host, loop.time())
        if ticket is None:
            self._arm(loop)
        return ticket

    def release(self, ticket: Ticket) -> None:
        self.admission.release(ticket)

    def cut(self, ticket: Ticket, reason: str, level: int = logging.WARNING) -> None:
        """Log (rate-limited) that the listener closes the connection of `ticket` for `reason`."""
        loop = asyncio.get_running_loop()
        self.admission.cut(reason, ticket.address, loop.time(), level)
        self._arm(loop)

    def close(self) -> None:
        """Log every pending count and stop the timer (the listener has stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.admission.events.flush_all(asyncio.get_running_loop().time())

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            return
        deadline = self.admission.events.deadline()
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self.admission.events.flush(loop.time())
        self._arm(loop)
