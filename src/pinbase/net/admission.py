"""Who may open a connection: a cap on every open connection of the process, and a cap per
peer address on each listener. Refusals are counted and logged through a rate-limited
`EventLog`.

The process-wide `Budget` is one per process, shared by every listener (HTTP and the device
listeners), because the file descriptors it protects are the process's; it is set below the
fd limit (`pinbase.net.fdlimit`) so that accepting, and refusing, never fails for want of a
descriptor. Each listener has its own `Admission` with its own per-address cap, since an HTTP
client and a fleet of devices behind one NAT need different ones.

IPv6 peers are counted per /64 network, the block one subscriber gets; an IPv4-mapped IPv6
address counts as its IPv4 address. Pure bookkeeping with explicit times: a listener calls
`admit` when a connection is made and `release` when it is lost.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from pinbase.net.eventlog import EventLog

TOTAL = "connection limit"
PER_ADDRESS = "per-address limit"


class Budget:
    """The open connections of the whole process, across listeners, and their cap."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a connection budget needs room for at least one connection")
        self.capacity = capacity
        self.open = 0


@dataclass(slots=True)
class Ticket:
    """One admitted connection; released once, however often `release` is called."""

    address: str
    held: bool = True


@lru_cache(maxsize=4096)
def address_key(host: str) -> str:
    """What a peer is counted as: its IPv4 address, or its IPv6 /64 network."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Admission:
    """Admits connections to one listener within the shared `budget` and `per_address`
    connections per address (0: no per-address cap)."""

    def __init__(self, listener: str, budget: Budget, per_address: int, events: EventLog) -> None:
        self.listener = listener
        self.budget = budget
        self.per_address = per_address
        self.events = events
        self.by_address: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Refusals by reason (`TOTAL`, `PER_ADDRESS`) since start."""

    @property
    def open(self) -> int:
        """This listener's open connections."""
        return self.by_address.total()

    def admit(self, host: str | None, now: float) -> Ticket | None:
        """A ticket for a connection from `host`, or None (counted and logged) when a cap is
        reached; the caller then closes the connection at once."""
        address = address_key(host) if host else "unknown"
        if self.budget.open >= self.budget.capacity:
            self._refuse(TOTAL, address, self.budget.capacity, now)
            return None
        if self.per_address and self.by_address[address] >= self.per_address:
            self._refuse(PER_ADDRESS, address, self.per_address, now)
            return None
        self.budget.open += 1
        self.by_address[address] += 1
        return Ticket(address)

    def release(self, ticket: Ticket) -> None:
        if not ticket.held:
            return
        ticket.held = False
        self.budget.open -= 1
        left = self.by_address[ticket.address] - 1
        if left:
            self.by_address[ticket.address] = left
        else:
            del self.by_address[ticket.address]

    def cut(self, reason: str, address: str, now: float, level: int = logging.WARNING) -> None:
        """Log (rate-limited) that the listener closed a connection from `address` for `reason`
        (a fixed phrase: one line per interval per reason)."""
        self.events.note(
            f"{self.listener}: {reason}",
            now,
            f"{self.listener}: closed a connection from {address}: {reason}",
            level,
        )

    def _refuse(self, reason: str, address: str, limit: int, now: float) -> None:
        self.refused[reason] += 1
        self.events.note(
            f"{self.listener}: {reason}",
            now,
            f"{self.listener}: refused a connection from {address}: {reason} of {limit} reached",
        )
