"""What every device interface shares: token login, pin lookup, and text values written
through the one write path under the per-device rate limit."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain.errors import DomainError
from ..domain.model import Catalog, Datastream, Device
from ..domain.values import Value, parse_text_value
from ..security import digest
from ..services import Services


class RateLimited(DomainError):
    """The device wrote more values than its rate allows; `wait` seconds until the next."""

    def __init__(self, wait: float) -> None:
        super().__init__("Too many values from this device; slow down.")
        self.wait = wait


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
