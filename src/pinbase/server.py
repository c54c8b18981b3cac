"""The one place that assembles a running pinbase: the store, the services every interface
shares, the relay between processes, the device listeners, the retention job and the HTTP
server; and that stops them again, in the reverse order.

On SIGTERM or SIGINT the HTTP server stops accepting and finishes its in-flight requests, the
device listeners close their connections, and the store finishes its queued writes and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from pinbase.app.retention import enforce_retention
from pinbase.app.services import Services
from pinbase.config import Settings
from pinbase.devices.listeners import start_device_listeners, stop_device_listeners
from pinbase.http.app import create_app
from pinbase.live.relay import ChannelRelay
from pinbase.store import Store, open_store

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after a clean shutdown.

    uvicorn re-sends SIGTERM/SIGINT to itself once it has shut down, which turns a graceful
    stop into exit status 143/130; pinbase exits 0 after a clean shutdown instead.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, store: Store | None = None
) -> AsyncIterator[Services]:
    """The store opened, the services built, the relay, device listeners and retention running;
    all of it stopped again on exit."""
    the_store = store if store is not None else open_store(settings.database_url)
    await the_store.open()
    try:
        services = Services.build(settings, the_store)
        channel = the_store.channel()
        relay = ChannelRelay(services.bus, channel) if channel is not None else None
        if relay is not None:
            relay.start()
        try:
            listeners = await start_device_listeners(services)
            retention = asyncio.create_task(
                enforce_retention(the_store, settings.history_retention_days)
            )
            try:
                yield services
            finally:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
                await stop_device_listeners(listeners)
        finally:
            if relay is not None:
                await relay.stop()
    finally:
        await the_store.close()


def http_server(services: Services, log_level: str = "info") -> GracefulServer:
    """The HTTP server of `services`, not yet started."""
    settings = services.settings
    config = uvicorn.Config(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # pinbase reads no client address; a proxy's headers change nothing
        timeout_graceful_shutdown=30,
        lifespan="off",
    )
    return GracefulServer(config)


async def serve(settings: Settings, http: asyncio.Future[GracefulServer] | None = None) -> None:
    """Run everything until SIGTERM/SIGINT. `http`, when given, receives the HTTP server."""
    async with running_services(settings) as services:
        server = http_server(services, settings.log_level)
        if http is not None:
            http.set_result(server)
        await server.serve()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` (`serve(settings)`, or something around it) on uvloop when installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
