"""The long-lived parts of a running server, built once and shared by every interface."""

from __future__ import annotations

from dataclasses import dataclass

from pinbase.app.auth.access_tokens import AccessTokens
from pinbase.app.auth.guard import LoginGuard
from pinbase.app.events import Events
from pinbase.app.ingest import Ingest
from pinbase.app.notifications import Notifications
from pinbase.app.users import Users
from pinbase.app.webhooks import Webhooks
from pinbase.config import Settings
from pinbase.domain.ratelimit import TokenBuckets
from pinbase.live.bus import Bus
from pinbase.live.presence import Presence
from pinbase.store.base import Store


@dataclass(frozen=True, slots=True)
class Limiter:
    """A named family of token buckets kept by the store, so that it holds across processes."""

    store: Store
    name: str
    rate: float
    burst: float

    async def take(self, key: int | str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        return await self.store.take_token(f"{self.name}:{key}", self.rate, self.burst)


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    bus: Bus
    ingest: Ingest
    presence: Presence
    tokens: AccessTokens
    guard: LoginGuard
    """What /oauth2/token checks before and after each credential it verifies."""
    org_limits: Limiter
    """Organization API requests per organization."""
    import_limits: Limiter
    """Import requests per device."""
    device_limits: TokenBuckets
    """Values written by each device through the device interfaces."""
    webhooks: Webhooks
    """The webhook triggers (`pinbase.app.webhooks`)."""
    events: Events
    """Device events: logging, resolving, ONLINE/OFFLINE."""
    users: Users
    """The users of the organizations (the Platform API's Users operations)."""

    @classmethod
    def build(cls, settings: Settings, store: Store) -> Services:
        bus = Bus()
        presence = Presence(bus)
        webhooks = Webhooks(store)
        notifications = Notifications(settings.smtp_url is not None)
        events = Events(store, bus, webhooks=webhooks, notifications=notifications)
        events.watch(presence)
        per_minute = settings.org_rate_limit
        tokens = AccessTokens(store)
        guard = LoginGuard(settings)
        store.watch_revocations(tokens.forget)
        return cls(
            settings=settings,
            store=store,
            bus=bus,
            ingest=Ingest(store, bus, webhooks),
            presence=presence,
            tokens=tokens,
            guard=guard,
            org_limits=Limiter(store, "org", per_minute / 60.0, per_minute),
            import_limits=Limiter(store, "import", settings.import_rate, settings.import_burst),
            device_limits=TokenBuckets(settings.device_rate, settings.device_burst),
            webhooks=webhooks,
            events=events,
            users=Users(store, guard, settings.invitation_days, settings.smtp_url is not None),
        )
