"""Publish/subscribe of value, property and metadata changes and device events in one process.

Writers publish after their transaction committed. Subscribers register a callback for one
device (device connections) or one organization (dashboards, live feeds); publishing costs one
dictionary lookup per key, so a batch of 20,000 changes with 1,000 connected devices stays
cheap. Callbacks must not block: they queue the event and return. The bus is the seam where a
cross-process transport (PostgreSQL LISTEN/NOTIFY) can later fan events out to other servers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pinbase.store.records import LoggedEvent


@dataclass(frozen=True, slots=True)
class ValueChanged:
    org_id: int
    device_id: int
    ds_id: int
    pin: str
    value: Any
    ts: int
    origin: object | None = None
    """The device session that wrote the value, which is not sent its own write back."""


@dataclass(frozen=True, slots=True)
class PropertyChanged:
    org_id: int
    device_id: int
    ds_id: int
    pin: str
    name: str
    value: str
    origin: object | None = None


@dataclass(frozen=True, slots=True)
class EventLogged:
    """A device event was stored (its timeline grew): published after the commit, for the live
    stream, and for notifications and webhooks to build on."""

    org_id: int
    device_id: int
    entry: LoggedEvent
    shown: bool = True
    """Whether it shows on the timeline (its definition's `timeline`)."""
    origin: object | None = None


@dataclass(frozen=True, slots=True)
class EventResolved:
    """A logged event was resolved (`entry` carries `resolved_at` and the comment)."""

    org_id: int
    device_id: int
    entry: LoggedEvent
    origin: object | None = None


@dataclass(frozen=True, slots=True)
class MetaChanged:
    """A device's value of a metafield was stored through the API or by the device."""

    org_id: int
    device_id: int
    field_id: int
    name: str
    value: str | int | float
    """As the JSON answers carry it (`domain.metadata.json_value`)."""
    origin: object | None = None


Event = ValueChanged | PropertyChanged | EventLogged | EventResolved | MetaChanged
Deliver = Callable[[Event], None]


class Relay(Protocol):
    """Carries published events to the other server processes sharing the database."""

    def send(self, events: Sequence[Event]) -> None:
        """Queue events for the other processes (never blocks)."""


class Bus:
    def __init__(self) -> None:
        self._devices: dict[int, list[Deliver]] = {}
        self._orgs: dict[int, list[Deliver]] = {}
        self._on_close: list[Callable[[], None]] = []
        self.closed = False
        self.relay: Relay | None = None

    def when_closed(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` once the server stops (`close`), so that a subscriber that would
        wait forever (a live stream) ends; returns the function that forgets it."""
        self._on_close.append(callback)

        def forget() -> None:
            if callback in self._on_close:
                self._on_close.remove(callback)

        return forget

    def close(self) -> None:
        """The server is stopping: tell every `when_closed` callback, once."""
        self.closed = True
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    def subscribe_device(self, device_id: int, deliver: Deliver) -> Callable[[], None]:
        """Call `deliver` for every change of one device; returns the unsubscribe function."""
        return self._subscribe(self._devices, device_id, deliver)

    def subscribe_org(self, org_id: int, deliver: Deliver) -> Callable[[], None]:
        """Call `deliver` for every change in one organization."""
        return self._subscribe(self._orgs, org_id, deliver)

    @staticmethod
    def _subscribe(
        table: dict[int, list[Deliver]], key: int, deliver: Deliver
    ) -> Callable[[], None]:
        table.setdefault(key, []).append(deliver)

        def unsubscribe() -> None:
            listeners = table.get(key)
            if listeners and deliver in listeners:
                listeners.remove(deliver)
                if not listeners:
                    del table[key]

        return unsubscribe

    def publish(self, events: Iterable[Event]) -> None:
        """Deliver events of a committed write here, and relay them to other processes."""
        if self.relay is not None:
            events = list(events)
            self.relay.send(events)
        self.deliver(events)

    def deliver(self, events: Iterable[Event]) -> None:
        """Deliver events to this process's subscribers only."""
        devices, orgs = self._devices, self._orgs
        if not devices and not orgs:
            return
        for event in events:
            for deliver in devices.get(event.device_id, ()):
                deliver(event)
            for deliver in orgs.get(event.org_id, ()):
                deliver(event)
