"""Publish/subscribe of value and property changes inside one server process.

Writers publish after their transaction committed; each subscriber owns a bounded queue and a
predicate choosing the events it wants. A subscriber that cannot keep up loses its oldest events
rather than slowing writers down, and learns it through `dropped`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ValueChanged:
    org_id: int
    device_id: int
    ds_id: int
    pin: str
    value: Any
    ts: int


@dataclass(frozen=True, slots=True)
class PropertyChanged:
    org_id: int
    device_id: int
    ds_id: int
    pin: str
    name: str
    value: str


Event = ValueChanged | PropertyChanged


@dataclass(eq=False)
class Subscription:
    wants: Callable[[Event], bool]
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(maxsize=1024))
    dropped: int = 0

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class Bus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, wants: Callable[[Event], bool]) -> Subscription:
        subscription = Subscription(wants)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, events: Iterable[Event]) -> None:
        if not self._subscriptions:
            return
        for event in events:
            for subscription in self._subscriptions:
                if subscription.wants(event):
                    subscription.offer(event)
