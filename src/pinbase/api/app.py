"""The application factory: routes, error handlers, limits and the store's lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..devices.servers import start_device_servers, stop_device_servers
from ..ingest import now_ms
from ..relay import ChannelRelay
from ..services import Services
from ..store import Store, StoreUnavailable, open_store
from .errors import install_error_handlers
from .limits import BodyLimit
from .openapi import install_openapi
from .routes import datastreams, device_api, devices, live, oauth, system

log = logging.getLogger("pinbase.api")

DESCRIPTION = (
    "Blynk's Organization datastream API, self-hosted. Obtain a token at `/oauth2/token`, then "
    "send it as `Authorization: Bearer <token>`. Every error answers "
    '`{"error": {"message": "..."}}`.'
)


RETENTION_INTERVAL_S = 3600.0


async def enforce_retention(store: Store, settings: Settings) -> None:
    """Drop expired history at start-up and every hour, while the server runs."""
    days = settings.history_retention_days
    if not days:
        return
    while True:
        try:
            await store.drop_history_before(now_ms() - days * 86_400_000)
        except StoreUnavailable:
            log.warning("retention skipped: the database is unavailable")
        await asyncio.sleep(RETENTION_INTERVAL_S)


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    """A pinbase application; it opens (and at shutdown closes) the store of `settings`."""
    the_store = store if store is not None else open_store(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_store.open()
        services = app.state.services = Services.build(settings, the_store)
        channel = the_store.channel()
        relay = ChannelRelay(services.bus, channel) if channel is not None else None
        try:
            if relay is not None:
                relay.start()
            device_servers = await start_device_servers(services)
            retention = asyncio.create_task(enforce_retention(the_store, settings))
            try:
                yield
            finally:
                retention.cancel()
                await stop_device_servers(device_servers)
        finally:
            if relay is not None:
                await relay.stop()
            await the_store.close()

    app = FastAPI(
        title="pinbase",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    # The routes join the application's own route list: FastAPI's include_router wraps each
    # router in a layer that matches every request twice, a quarter of a small request's cost.
    for router in (
        system.router,
        oauth.router,
        datastreams.router,
        devices.router,
        device_api.router,
        live.router,
    ):
        app.router.routes.extend(router.routes)
    system.mount_docs_assets(app)
    app.add_middleware(BodyLimit, limit=settings.body_limit)
    return app
