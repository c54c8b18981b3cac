"""What a device may do once its token is known, whatever carries its messages.

The three device interfaces (the HTTP device API, Blynk's hardware protocol, MQTT) only
translate their wire formats; every operation they share lives here, once: logging in by
token, finding datastreams by pin or label, charging the per-device rate limit, writing values
(each stamped by the session's `Clock`), importing timestamped points, setting widget
properties and reading current values back. A connection keeps one session for its lifetime
(and is its `origin`: it is never sent its own writes back); an HTTP request opens one per
request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import orjson

from pinbase.app import metadata
from pinbase.app.auth.secrets import digest
from pinbase.app.services import Services
from pinbase.app.timezones import UnknownTimezone, load_zone
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import DomainError
from pinbase.domain.hardware import HARDWARE_KEYS, hardware_info
from pinbase.domain.metadata import Metafield, check_value
from pinbase.domain.model import Catalog, Datastream, Device, Schema
from pinbase.domain.properties import check_property_name, parse_property
from pinbase.domain.utc import Zone
from pinbase.domain.values import Value
from pinbase.store.records import LoggedEvent

TOO_MANY_VALUES = "Too many values from this device; slow down."
TOO_MANY_IMPORTS = "Too many uploads from this device; slow down."
HOLD_STEP = 0.05
"""Values over the rate limit that a connection holds (`resume_in`) are let through in steps of
this many seconds' worth of the device's rate: not one value per transaction, nor a long pause
for the whole lot."""


class RateLimited(DomainError):
    """The device wrote more than its rate allows; `wait` seconds until it may again."""

    def __init__(self, wait: float, message: str = TOO_MANY_VALUES) -> None:
        super().__init__(message)
        self.wait = wait


class Clock:
    """Timestamps (epoch ms) for the values one device session writes, in the order written.

    They never go back, and each datastream's strictly increase: values of different
    datastreams share the current millisecond, and a value of a datastream already stamped in
    it moves the clock one millisecond on. So the points of a fast device keep distinct
    timestamps in the order written (each would stay in history anyway: see `Ingest`), and a
    device writing one datastream more often than once a millisecond runs its timestamps ahead
    of the wall clock by the excess (the rate limit bounds how far).
    """

    __slots__ = ("_last", "_taken")

    def __init__(self) -> None:
        self._last = 0
        self._taken: set[int] = set()
        """Datastreams already stamped at `_last`."""

    def stamp(
        self, values: Sequence[tuple[Datastream, Value]], now: int | None = None
    ) -> list[tuple[Datastream, Value, int]]:
        """`values` with their timestamps, for `Ingest.write_points`."""
        last, taken = self._last, self._taken
        now = now_ms() if now is None else now
        if now > last:
            last = now
            taken.clear()
        points: list[tuple[Datastream, Value, int]] = []
        for ds, value in values:
            if ds.id in taken:
                last += 1
                taken.clear()
            taken.add(ds.id)
            points.append((ds, value, last))
        self._last = last
        return points


def pin_key(pin: str) -> str:
    """A virtual pin as devices name it (`v1`, `V1` or the bare number `1`) in catalog form."""
    key = pin.strip().lower()
    return "v" + key if key.isdigit() else key


class DeviceSession:
    """One logged-in device: its catalog entry and everything it may do."""

    __slots__ = ("catalog", "clock", "device", "origin", "schema", "services", "token_digest")

    def __init__(
        self,
        services: Services,
        catalog: Catalog,
        device: Device,
        token_digest: str,
        origin: object | None = None,
    ) -> None:
        self.services = services
        self.catalog = catalog
        self.device = device
        self.schema: Schema = catalog.schema_of(device)
        self.token_digest = token_digest
        self.origin = origin
        """The connection the session's writes come from; it is not sent them back."""
        self.clock = Clock()

    @classmethod
    async def login(
        cls, services: Services, token: str, origin: object | None = None
    ) -> DeviceSession | None:
        """The session of the device owning `token`, or None when no device does."""
        if not token:
            return None
        token_digest = digest(token)
        catalog = await services.store.catalog()
        device = catalog.device_by_token_digest(token_digest)
        if device is None:
            return None
        return cls(services, catalog, device, token_digest, origin)

    @property
    def device_id(self) -> int:
        return self.device.id

    async def refresh(self) -> bool:
        """Follow provisioning (new datastreams, a renamed device); False when the token no
        longer opens this device, and the connection is to be closed."""
        catalog = await self.services.store.catalog()
        if catalog is self.catalog:
            return True
        device = catalog.device_by_token_digest(self.token_digest)
        if device is None or device.id != self.device.id:
            return False
        self.catalog, self.device = catalog, device
        self.schema = catalog.schema_of(device)
        return True

    # datastreams ---------------------------------------------------------------------------
    def by_pin(self, pin: str) -> Datastream | None:
        """A virtual pin: `v1`, `V1` or `1`."""
        return self.schema.by_pin.get(pin_key(pin))

    def by_label(self, label: str) -> Datastream | None:
        return self.schema.by_label.get(label)

    def by_id(self, ds_id: int) -> Datastream | None:
        return self.schema.by_id.get(ds_id)

    # the per-device rate limit -------------------------------------------------------------
    def charge(self, count: int = 1) -> None:
        """Charge `count` values at once (all or none), or raise RateLimited."""
        wait = self.services.device_limits.take(self.device.id, count)
        if wait:
            raise RateLimited(wait)

    def admit(self, count: int) -> int:
        """How many of `count` values the rate limit lets through now (as many as it holds, the
        same as charging them one at a time until one is refused); those are charged."""
        return self.services.device_limits.take_some(self.device.id, count)

    def resume_in(self, held: int) -> float:
        """Seconds until `admit` lets through the next step of `held` values that did not fit:
        `HOLD_STEP` seconds of the device's rate (at least one value), or all of them when
        fewer. Infinite when the rate is 0."""
        step = max(1, math.ceil(self.services.device_limits.rate * HOLD_STEP))
        return self.ready_in(min(held, step))

    def ready_in(self, count: int = 1) -> float:
        """Seconds until `count` values (at most the burst) fit the rate limit, charging
        nothing: 0 when they fit now, infinite when the rate is 0 and they do not."""
        return self.services.device_limits.ready_in(self.device.id, count)

    # operations ----------------------------------------------------------------------------
    def seen(self) -> None:
        """The device showed it is alive."""
        self.services.presence.seen(self.device.id)

    def zone(self) -> Zone:
        """The device's timezone, else its organization's, else UTC (also when this system no
        longer knows the zone the fleet file named)."""
        try:
            return load_zone(self.catalog.timezone_of(self.device))
        except UnknownTimezone:
            return load_zone(None)

    async def write(
        self, values: Sequence[tuple[Datastream, Value]], ts: int | None = None
    ) -> None:
        """Write values already admitted by the rate limit, in one transaction; live
        subscribers get every value in order. Each is stamped by the session's clock, or all
        at `ts` (epoch ms: a device's timestamped group), each then a history point of its own
        and current only where no newer value is."""
        if not values:
            return
        if ts is None:
            points = self.clock.stamp(values)
            await self.services.ingest.write_points(self.device, points, origin=self.origin)
        else:
            points = [(ds, value, ts) for ds, value in values]
            await self.services.ingest.write_points(
                self.device, points, origin=self.origin, current_if_newer=True
            )

    async def write_charged(self, values: Sequence[tuple[Datastream, Value]]) -> None:
        """Charge every value (all or none: RateLimited), then write them."""
        self.charge(len(values))
        await self.write(values)

    async def import_points(self, ds: Datastream, points: Sequence[tuple[int, Value]]) -> None:
        """Store timestamped points of one datastream (`Ingest.import_points` says which are
        kept). One import request against the device's import limit, and one value against its
        rate limit; RateLimited when either is exhausted, and nothing is stored."""
        wait = await self.services.import_limits.take(self.device.id)
        if wait:
            raise RateLimited(wait, TOO_MANY_IMPORTS)
        self.charge(1)
        await self.services.ingest.import_points(self.device, ds, points, origin=self.origin)

    async def set_properties(self, ds: Datastream, properties: Sequence[tuple[str, str]]) -> None:
        """Check every property (Invalid on the first bad one), charge them all (RateLimited),
        then store them, each in its stored form (`parse_property`)."""
        stored = [(name, parse_property(name, value)) for name, value in properties]
        self.charge(len(stored))
        for name, value in stored:
            await self.services.ingest.set_property(
                self.device, ds, name, value, origin=self.origin
            )

    async def erase_value(self, ds: Datastream) -> None:
        """The datastream's current value becomes empty (charged as one value: RateLimited)."""
        self.charge(1)
        await self.services.ingest.erase_value(self.device, ds, origin=self.origin)

    async def erase_property(self, ds: Datastream, name: str) -> None:
        """Remove a widget property: Invalid for a name that is not one, RateLimited as one
        value."""
        check_property_name(name)
        self.charge(1)
        await self.services.ingest.erase_property(self.device, ds, name, origin=self.origin)

    async def log_event(self, code: str, description: str | None = None) -> LoggedEvent:
        """Log an event of the product by code (`Events.log`: NotFound, Invalid, EventLimit)."""
        return await self.services.events.log(
            self.catalog, self.device, code, description, origin=self.origin
        )

    async def resolve_events(self, code: str) -> list[LoggedEvent]:
        """Resolve the device's unresolved warnings and critical events of a code (NotFound
        for a code the product does not define)."""
        self.services.events.definition(self.catalog, self.device, code)
        return await self.services.events.resolve(self.device, "code", code, origin=self.origin)

    async def read(
        self, wanted: Sequence[Datastream] | None = None
    ) -> list[tuple[Datastream, Value]]:
        """The current values of `wanted` (every datastream when None) that have one."""
        stored = (await self.services.store.current_values([self.device.id])).get(
            self.device.id, {}
        )
        found: list[tuple[Datastream, Value]] = []
        for ds in self.schema.datastreams if wanted is None else wanted:
            current = stored.get(ds.id)
            if current is not None:
                found.append((ds, orjson.loads(current.value)))
        return found

    # metadata ------------------------------------------------------------------------------
    def metafield(self, name: str) -> Metafield:
        """The device's metafield of that exact name (NotFound when there is none)."""
        return metadata.find(metadata.metafields_of(self.catalog, self.device), name=name)

    async def read_meta(self, wanted: Sequence[Metafield]) -> list[tuple[Metafield, str | None]]:
        """The values the device reads (its own, else the default, else None)."""
        fields = metadata.metafields_of(self.catalog, self.device)
        return await metadata.read(self.services.store, fields, self.device.id, wanted)

    async def write_meta(self, meta: Metafield, raw: str) -> str:
        """Check (Invalid), charge one value (RateLimited), then store; the stored text."""
        check_value(meta, raw)
        self.charge(1)
        services = self.services
        return await metadata.write(
            services.store, services.bus, self.device, meta, raw, self.origin
        )

    async def report_hardware(
        self, reported: Mapping[str, object], keys: Mapping[str, str] = HARDWARE_KEYS
    ) -> None:
        """Keep what the device reported of itself (`domain.hardware`; `keys` are its
        protocol's) for the Platform API's `hardwareInfo`: in the store, so that every process
        answers it."""
        info = hardware_info(reported, keys)
        if info:
            await self.services.store.set_hardware_info(
                self.device.id, orjson.dumps(info).decode(), now_ms()
            )
