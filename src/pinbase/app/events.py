"""Device events: logging them from any interface, resolving them, and the system events.

Every interface (the hardware protocol's EVENT_LOG and EVENT_CLEAR, MQTT's `event/<code>`, the
device HTTP API's `logEvent`, the Organization API's trigger and resolve) goes through `Events`:
it finds the definition by code in the device's product, checks the description, stamps the
event with its clock, has the store apply Blynk's limits in the transaction that stores it
(so they hold across processes), and publishes `EventLogged` / `EventResolved` on the bus once
committed. The DEVICE_LOG_EVENT webhook deliveries (`Webhooks.for_event`) and the e-mail
notification (`Notifications.for_event`) of an event go into the outbox in the transaction that
stores it, in the process that logs it: never from a bus subscriber, which runs in every
process.

ONLINE and OFFLINE are recorded from `Presence`: ONLINE when a device connects while it had no
connection in this process, OFFLINE when its connection closes (a heartbeat that lapsed closes
it) and no other replaced it. A login that replaces a connection records nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from pinbase.app.notifications import Notifications
from pinbase.app.webhooks import Outbox, Webhooks
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import NotFound
from pinbase.domain.events import (
    MAX_PER_DAY,
    MIN_GAP_MS,
    OFFLINE,
    ONLINE,
    EventDefinition,
    check_description,
    limit_error,
)
from pinbase.domain.model import Catalog, Device
from pinbase.live.bus import Bus, EventLogged, EventResolved
from pinbase.live.presence import Presence
from pinbase.store.base import Store
from pinbase.store.errors import StoreError
from pinbase.store.records import LoggedEvent

log = logging.getLogger("pinbase.events")

UNKNOWN_CODE = "Can't find Event with this code in Product template"
NO_CODE = "Event code is not provided."


class Events:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        clock: Callable[[], int] = now_ms,
        webhooks: Webhooks | None = None,
        notifications: Notifications | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.webhooks = webhooks
        self.notifications = notifications
        self.clock = clock
        """Epoch ms; injected by tests of the limits."""
        self.refused: Counter[str] = Counter()
        """Events refused by this process, by limit (`per_day`, `per_second`)."""
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def definition(catalog: Catalog, device: Device, code: str) -> EventDefinition:
        """The device's product's event with this code; NotFound when there is none."""
        product = catalog.products.get(device.product_id)
        found = product.events.get(code) if product is not None else None
        if found is None:
            raise NotFound(UNKNOWN_CODE)
        return found

    async def log(
        self,
        catalog: Catalog,
        device: Device,
        code: str,
        description: str | None = None,
        origin: object | None = None,
    ) -> LoggedEvent:
        """Log an event by code: NotFound for a code the product does not define, Invalid for
        a description over the limit, EventLimit (and counted) when a limit refuses it. An
        empty description takes the definition's."""
        definition = self.definition(catalog, device, code)
        text = check_description(description) or definition.description
        return await self._store(catalog, device, definition, text, definition.timeline, origin)

    async def _store(
        self,
        catalog: Catalog,
        device: Device,
        definition: EventDefinition,
        description: str | None,
        shown: bool,
        origin: object | None,
        ts: int | None = None,
    ) -> LoggedEvent:
        at = self.clock() if ts is None else ts
        entry = LoggedEvent(
            0, device.id, definition.id, definition.code, definition.type.value, description, at
        )
        outbox: Outbox = []
        if self.webhooks is not None:
            outbox += await self.webhooks.for_event(device, definition.code, description, at)
        notice = None
        if self.notifications is not None:
            notice = self.notifications.for_event(catalog, device, definition, description, at)
        stored = await self.store.log_event(
            entry, shown, per_day=MAX_PER_DAY, gap_ms=MIN_GAP_MS, outbox=outbox, notice=notice
        )
        if isinstance(stored, str):
            self.refused[stored] += 1
            log.info("device %d: event %s refused (%s)", device.id, definition.code, stored)
            raise limit_error(stored)
        self.bus.publish([EventLogged(device.org_id, device.id, stored, shown, origin)])
        return stored

    async def resolve(
        self,
        device: Device,
        by: str,
        key: int | str,
        comment: str | None = None,
        origin: object | None = None,
    ) -> list[LoggedEvent]:
        """Resolve the device's unresolved warnings and critical events by `id` or `code`."""
        resolved = await self.store.resolve_events(device.id, by, key, self.clock(), comment)
        if resolved:
            self.bus.publish(
                [EventResolved(device.org_id, device.id, entry, origin) for entry in resolved]
            )
        return resolved

    # system events --------------------------------------------------------------------------
    def watch(self, presence: Presence) -> None:
        """Record ONLINE and OFFLINE as `presence` sees devices connect and disconnect."""
        presence.on_change = self._presence_changed

    def _presence_changed(self, device_id: int, online: bool) -> None:
        ts = self.clock()  # stamped now: a quick reconnect keeps OFFLINE before ONLINE
        task = asyncio.get_running_loop().create_task(self.system(device_id, online, ts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def system(self, device_id: int, online: bool, ts: int) -> None:
        try:
            catalog = await self.store.catalog()
            device = catalog.devices.get(device_id)
            if device is not None:
                event = ONLINE if online else OFFLINE
                await self._store(catalog, device, event, None, True, None, ts)
        except StoreError as exc:
            log.warning("device %d: system event not recorded: %s", device_id, exc)

    async def drain(self) -> None:
        """Wait for the system events being recorded (before the store closes)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
