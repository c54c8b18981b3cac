"""The long-lived parts of a running server, built once and shared by every interface."""

from __future__ import annotations

from dataclasses import dataclass

from .access_tokens import AccessTokens
from .config import Settings
from .devices.presence import Presence
from .ingest import Ingest
from .live import Bus
from .ratelimit import TokenBuckets
from .store.base import Store


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    bus: Bus
    ingest: Ingest
    presence: Presence
    tokens: AccessTokens
    org_limits: TokenBuckets
    """Organization API requests per organization."""
    import_limits: TokenBuckets
    """Import requests per device."""
    device_limits: TokenBuckets
    """Values written by each device through the device interfaces."""

    @classmethod
    def build(cls, settings: Settings, store: Store) -> Services:
        bus = Bus()
        per_minute = settings.org_rate_limit
        return cls(
            settings=settings,
            store=store,
            bus=bus,
            ingest=Ingest(store, bus),
            presence=Presence(bus),
            tokens=AccessTokens(store),
            org_limits=TokenBuckets(per_minute / 60.0, per_minute),
            import_limits=TokenBuckets(settings.import_rate, settings.import_burst),
            device_limits=TokenBuckets(settings.device_rate, settings.device_burst),
        )
