"""The MCP endpoint as the HTTP application routes to it, built on its first request.

Importing the MCP SDK costs about 0.4 s of CPU (it declares hundreds of pydantic models): a
server that is never asked for MCP does not pay it, and the first MCP request pays it once.
The SDK's session manager then runs in a task of its own until `aclose` (the server's stop).
"""

from __future__ import annotations

import asyncio

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pinbase.app.services import Services
from pinbase.mcp.paths import ROUTES


class LazyMcp:
    """An ASGI application that builds the MCP server when first called, then serves it."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._app: ASGIApp | None = None
        self._building = asyncio.Lock()
        self._stop = asyncio.Event()
        self._running: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        """The routes of `ROUTES`, for the HTTP application: each is served by this object."""
        return [Route(path, endpoint=self, methods=list(m)) for path, m in ROUTES.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app if self._app is not None else await self._build()
        await app(scope, receive, send)

    async def _build(self) -> ASGIApp:
        async with self._building:
            if self._app is None:
                from pinbase.mcp.server import create_mcp  # the SDK, imported only now

                server = create_mcp(self.services)
                started = asyncio.Event()

                async def run() -> None:
                    async with server.session_manager.run():
                        started.set()
                        await self._stop.wait()

                self._running = asyncio.create_task(run())
                await started.wait()
                self._app = server.app
        return self._app

    async def aclose(self) -> None:
        """Stop the session manager, if it was started (after the last request)."""
        self._stop.set()
        if self._running is not None:
            await self._running
