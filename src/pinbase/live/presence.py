"""Which devices are connected: one live session per device, and when each was last seen.

A session is anything that speaks to one device (a TCP or MQTT connection). Attaching a session
for a device that already has one closes the old session: a new login replaces the old one.
While attached, the session receives the device's value and property changes from the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pinbase.domain.clock import now_ms
from pinbase.live.bus import Bus, Event

log = logging.getLogger("pinbase.devices")


class Session(Protocol):
    device_id: int
    protocol: str

    @property
    def token_digest(self) -> str:
        """The SHA-256 digest of the token the device logged in with."""

    def deliver(self, event: Event) -> None:
        """Queue a change for the device (never blocks)."""

    def replaced(self) -> None:
        """Another session logged in with the same token: close this one."""

    def revoked(self) -> None:
        """The token no longer opens the device (rotated, or the device is gone): close."""


@dataclass(slots=True)
class DeviceStatus:
    device_id: int
    connected: bool
    protocol: str | None
    connected_since: int | None
    last_seen: int | None


@dataclass(slots=True)
class _Attached:
    session: Session
    since: int
    unsubscribe: Callable[[], None]


class Presence:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._attached: dict[int, _Attached] = {}
        self._last_seen: dict[int, int] = {}
        self.on_change: Callable[[int, bool], None] | None = None
        """Called with (device id, True) when a device without a session attaches one, and
        (device id, False) when its session detaches (not when a new login replaces it)."""

    def attach(self, session: Session) -> None:
        device_id = session.device_id
        previous = self._attached.pop(device_id, None)
        if previous is not None:
            self._release(previous)
            previous.session.replaced()
        now = now_ms()
        unsubscribe = self._bus.subscribe_device(device_id, session.deliver)
        self._attached[device_id] = _Attached(session, now, unsubscribe)
        self._last_seen[device_id] = now
        log.info("device %d connected (%s)", device_id, session.protocol)
        if previous is None and self.on_change is not None:
            self.on_change(device_id, True)

    def detach(self, session: Session) -> None:
        """Forget the session if it is still the device's current one."""
        current = self._attached.get(session.device_id)
        if current is not None and current.session is session:
            del self._attached[session.device_id]
            self._release(current)
            self._last_seen[session.device_id] = now_ms()
            log.info("device %d disconnected (%s)", session.device_id, session.protocol)
            if self.on_change is not None:
                self.on_change(session.device_id, False)

    def close_revoked(self, device_tokens: Mapping[str, int]) -> int:
        """Close every session whose token no longer opens its device, given the catalog's
        device ids by token digest; how many were closed."""
        stale = [
            attached.session
            for device_id, attached in self._attached.items()
            if device_tokens.get(attached.session.token_digest) != device_id
        ]
        for session in stale:
            log.info(
                "device %d: its token was revoked; closing (%s)",
                session.device_id,
                session.protocol,
            )
            session.revoked()
        return len(stale)

    @staticmethod
    def _release(attached: _Attached) -> None:
        attached.unsubscribe()

    def seen(self, device_id: int) -> None:
        """The device showed it is alive (any traffic, over any interface)."""
        self._last_seen[device_id] = now_ms()

    def is_connected(self, device_id: int) -> bool:
        return device_id in self._attached

    def status(self, device_id: int) -> DeviceStatus:
        attached = self._attached.get(device_id)
        return DeviceStatus(
            device_id=device_id,
            connected=attached is not None,
            protocol=attached.session.protocol if attached else None,
            connected_since=attached.since if attached else None,
            last_seen=self._last_seen.get(device_id),
        )

    @property
    def connected_count(self) -> int:
        return len(self._attached)
