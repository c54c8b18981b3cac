"""The one place that assembles a running pinbase: the store, the services every interface
shares, the relay between processes, the device listeners, the retention job and the HTTP
server with the MCP endpoint mounted in it; and that stops them again, in the reverse order.

On SIGTERM or SIGINT the HTTP server stops accepting and finishes its in-flight requests, the
device listeners close their connections, and the store finishes its queued writes and closes.

At start the process's soft fd limit is raised to its hard limit, and the process's connection
budget is set below it (`pinbase.net`): a flood of connections is refused before the process runs
out of descriptors. Every listener draws from it: the HTTP listener runs uvicorn with pinbase's
own protocol class (`pinbase.http.protocol`), which adds admission, a header size limit, and
header and idle timeouts; the device listeners admit through `pinbase.net.entry`
(`pinbase.devices.listeners`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from pinbase.app.auth.secrets import use_password_hash_memory
from pinbase.app.retention import enforce_retention
from pinbase.app.revoked_devices import close_revoked_devices
from pinbase.app.services import Services
from pinbase.app.webhook_delivery import policy_of, run_deliveries, smtp_of
from pinbase.config import Settings
from pinbase.devices.listeners import start_device_listeners, stop_device_listeners
from pinbase.http.app import create_app
from pinbase.http.protocol import bound_protocol
from pinbase.live.bus import Bus
from pinbase.live.relay import ChannelRelay
from pinbase.mcp.endpoint import LazyMcp
from pinbase.net.admission import Admission, Budget
from pinbase.net.eventlog import EventLog
from pinbase.net.fdlimit import connection_capacity, raise_fd_limit
from pinbase.net.gate import Gate
from pinbase.net.startup import StartupError, check_ports, tls_context
from pinbase.store import Store, open_store

log = logging.getLogger("pinbase.server")


class GracefulServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after a clean shutdown.

    uvicorn re-sends SIGTERM/SIGINT to itself once it has shut down, which turns a graceful
    stop into exit status 143/130; pinbase exits 0 after a clean shutdown instead. Once stopped,
    the admission gate logs the counts it still holds.
    """

    def __init__(self, config: uvicorn.Config, gate: Gate, bus: Bus) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self.gate = gate
        self.bus = bus
        self.followers: list[GracefulServer] = []
        """Servers of further listeners (HTTPS): they take no signals and stop with this one."""
        self.takes_signals = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.takes_signals:
            yield
            return
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()

    async def shutdown(self, sockets: Any = None) -> None:
        for follower in self.followers:
            follower.should_exit = True
        self.bus.close()  # live streams end now rather than at the graceful-shutdown timeout
        await super().shutdown(sockets)
        self.gate.close()


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings, store: Store | None = None, budget: Budget | None = None
) -> AsyncIterator[Services]:
    """The store opened, the services built, the relay, device listeners, retention and the
    closing of revoked device connections running; all of it stopped again on exit. The device
    listeners draw from `budget` (default: a new `connection_budget`)."""
    use_password_hash_memory(settings.password_hash_memory)
    try:
        smtp = smtp_of(settings)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    budget = budget if budget is not None else connection_budget(settings)
    the_store = store if store is not None else open_store(settings.database_url)
    await the_store.open()
    try:
        services = Services.build(settings, the_store)
        channel = the_store.channel()
        relay = ChannelRelay(services.bus, channel) if channel is not None else None
        if relay is not None:
            relay.start()
        try:
            listeners = await start_device_listeners(services, budget)
            jobs = [
                asyncio.create_task(enforce_retention(the_store, settings.history_retention_days)),
                asyncio.create_task(close_revoked_devices(the_store, services.presence)),
                asyncio.create_task(
                    run_deliveries(the_store, policy_of(settings), settings.webhook_log_days, smtp)
                ),
            ]
            try:
                yield services
            finally:
                for job in jobs:
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job
                await stop_device_listeners(listeners)
                await services.events.drain()  # the OFFLINE events of the closed connections
        finally:
            if relay is not None:
                await relay.stop()
    finally:
        await the_store.close()


def connection_budget(settings: Settings) -> Budget:
    """The process's connection budget: raises the soft fd limit to the hard one first."""
    fd_limit = raise_fd_limit()
    return Budget(connection_capacity(settings.max_connections, fd_limit))


def http_server(
    app: ASGIApp, services: Services, budget: Budget, log_level: str = "info", tls: bool = False
) -> GracefulServer:
    """The HTTP server of `app` (`create_app(services)`), not yet started, admitting
    connections within `budget`; with `tls`, the HTTPS server of `--https-port`."""
    settings = services.settings
    admission = Admission(
        "https" if tls else "http",
        budget,
        settings.max_connections_per_address,
        EventLog.to_logger(logging.getLogger("pinbase.http")),
    )
    gate = Gate(admission)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.https_port if tls else settings.port,
        ssl_certfile=settings.tls_cert if tls else None,
        ssl_keyfile=settings.tls_key if tls else None,
        http=bound_protocol(gate, settings.header_timeout, settings.max_header_bytes),
        ws="none",  # no WebSocket route; a protocol switch would escape the admission gate
        # uvicorn annotates it int, but it is seconds for call_later: a float works.
        timeout_keep_alive=settings.idle_timeout,  # type: ignore[arg-type]
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through pinbase's handler (`net.logformat`)
        access_log=False,  # pinbase's own access log: `http.access`
        server_header=False,
        proxy_headers=False,  # admission counts the socket's peer; forwarded headers change nothing
        timeout_graceful_shutdown=30,
        lifespan="off",
    )
    return GracefulServer(config, gate, services.bus)


def preflight(settings: Settings) -> None:
    """Raise `StartupError` (one line naming the flag or file) when a listener cannot start:
    a port in use or not ours to bind, a TLS file missing or not a matching certificate and key.
    The database is checked as the store opens (`StoreError`, one line as well)."""
    check_ports(
        settings.host,
        {
            "--port": settings.port,
            "--https-port": settings.https_port,
            "--hardware-port": settings.hardware_port,
            "--hardware-tls-port": settings.hardware_tls_port,
            "--mqtt-port": settings.mqtt_port,
            "--mqtt-tls-port": settings.mqtt_tls_port,
        },
    )
    if settings.https_port or settings.hardware_tls_port or settings.mqtt_tls_port:
        tls_context(settings.tls_cert, settings.tls_key)


async def serve(settings: Settings, http: asyncio.Future[GracefulServer] | None = None) -> None:
    """Run everything until SIGTERM/SIGINT. `http`, when given, receives the HTTP server.

    Raises `StartupError` or the store's `StoreError` (each one line) when it cannot start."""
    preflight(settings)
    budget = connection_budget(settings)
    async with running_services(settings, budget=budget) as services:
        log.info("accepting up to %d connections", budget.capacity)
        mcp = LazyMcp(services)
        app = create_app(services)
        app.router.routes.extend(mcp.routes())  # one application for both ports
        server = http_server(app, services, budget, settings.log_level)
        if settings.https_port:
            https = http_server(app, services, budget, settings.log_level, tls=True)
            https.takes_signals = False
            server.followers.append(https)
        if http is not None:
            http.set_result(server)
        try:
            followers = [await _started(follower) for follower in server.followers]
            await server.serve()
            for follower in server.followers:  # also when it stopped before its shutdown
                follower.should_exit = True
            await asyncio.gather(*followers)
        finally:
            await mcp.aclose()


async def _started(server: GracefulServer) -> asyncio.Task[None]:
    """`server` serving in a task of its own, once it accepts connections (or has failed), so
    that the HTTPS port is open by the time the HTTP port answers."""
    serving = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if serving.done():
        await serving  # its failure, if it failed
    return serving


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` (`serve(settings)`, or something around it) on uvloop when installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
