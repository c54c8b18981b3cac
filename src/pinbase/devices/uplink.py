"""What every device interface shares: token login, pin lookup, the timestamps of a connection's
values, and text values written through the one write path under the per-device rate limit."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain.errors import DomainError
from ..domain.model import Catalog, Datastream, Device
from ..domain.values import Value, parse_text_value
from ..ingest import now_ms
from ..security import digest
from ..services import Services


class RateLimited(DomainError):
    """The device wrote more values than its rate allows; `wait` seconds until the next."""

    def __init__(self, wait: float) -> None:
        super().__init__("Too many values from this device; slow down.")
        self.wait = wait


class Clock:
    """Timestamps (epoch ms) for the values one device connection sends, in the order sent.

    They never go back, and each datastream's strictly increase: values of different
    datastreams share the current millisecond, and a value of a datastream already stamped in
    it moves the clock one millisecond on. So no history point of a fast device replaces
    another, and a device writing one datastream more often than once a millisecond runs its
    timestamps ahead of the wall clock by the excess (the rate limit bounds how far).
    """

    __slots__ = ("_last", "_taken")

    def __init__(self) -> None:
        self._last = 0
        self._taken: set[int] = set()
        """Datastreams already stamped at `_last`."""

    def stamp(
        self, values: Sequence[tuple[Datastream, Value]]
    ) -> list[tuple[Datastream, Value, int]]:
        """`values` with their timestamps, for `Ingest.write_points`."""
        last, taken = self._last, self._taken
        now = now_ms()
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


async def device_for_token(services: Services, token: str) -> tuple[Catalog, Device] | None:
    """The device owning an auth token, with the catalog it was found in."""
    catalog = await services.store.catalog()
    device = catalog.device_by_token_digest(digest(token))
    return None if device is None else (catalog, device)


def datastream_by_pin(catalog: Catalog, device: Device, pin: str) -> Datastream | None:
    """A virtual pin as devices name it: `v1`, `V1` or the bare number `1`."""
    key = pin.strip().lower()
    if key.isdigit():
        key = "v" + key
    return catalog.schema_of(device).by_pin.get(key)


def take_quota(services: Services, device: Device, count: int = 1) -> None:
    """Charge `count` values to the device's rate limit (all or none), or raise RateLimited."""
    wait = services.device_limits.take(device.id, count)
    if wait:
        raise RateLimited(wait)


async def write_text(
    services: Services,
    device: Device,
    items: Sequence[tuple[Datastream, Sequence[str]]],
    origin: object | None = None,
) -> list[tuple[Datastream, Value]]:
    """Parse text values (raising Mismatch on the first bad one), then write them all at once."""
    values = [(ds, parse_text_value(ds, parts)) for ds, parts in items]
    take_quota(services, device, len(values))
    await services.ingest.write(device, values, origin=origin)
    services.presence.seen(device.id)
    return values
