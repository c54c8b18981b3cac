"""The MCP server over the running services, as routes the HTTP application mounts.

Streamable HTTP, stateless with JSON answers: each POST to `/mcp` carries one message and gets
its answer, no session is kept and no stream stays open. So any process sharing the database
answers any request (no session pinned to one process), and a stopping server waits for no
stream. `pinbase.server` mounts the routes and runs `session_manager` for the server's lifetime.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.routing import BaseRoute, Route

from pinbase import __version__
from pinbase.app.services import Services
from pinbase.mcp.auth import Verifier
from pinbase.mcp.tools import TOOLS

PATH = "/mcp"
TOKEN_PATH = "/oauth2/token"


@dataclass(frozen=True, slots=True)
class McpEndpoint:
    routes: list[BaseRoute]
    """The endpoint and its protected-resource metadata, for the HTTP application."""
    session_manager: StreamableHTTPSessionManager
    """Runs (`async with session_manager.run()`) while the server serves."""


def create_mcp(services: Services) -> McpEndpoint:
    """The MCP endpoint of `services`, its tools registered.

    Each route serves the SDK's whole Starlette application (its bearer middleware included),
    which routes by the unchanged path. The endpoint takes POST alone: stateless, it has no GET
    stream and no session to DELETE, so those answer 405 like any method a pinbase path lacks.
    """
    settings = services.settings
    base = f"http://{settings.host}:{settings.port}"

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        yield services

    server: MCPServer[Services] = MCPServer(
        "pinbase",
        version=__version__,
        instructions=(
            "pinbase, a self-hosted Blynk.Cloud: templates (products), devices, their datastream "
            "values, history and events."
        ),
        token_verifier=Verifier(services),
        auth=AuthSettings(
            issuer_url=base + TOKEN_PATH,  # type: ignore[arg-type]
            resource_server_url=base + PATH,  # type: ignore[arg-type]
            validate_token_resource=False,  # the verifier knows pinbase's tokens are for it
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )
    for tool in TOOLS:
        server.add_tool(tool, structured_output=False)
    app = server.streamable_http_app(
        streamable_http_path=PATH, json_response=True, stateless_http=True, host=settings.host
    )
    routes: list[BaseRoute] = []
    for route in app.routes:
        assert isinstance(route, Route)
        methods = sorted(route.methods - {"HEAD"}) if route.methods else ["POST"]
        routes.append(Route(route.path, endpoint=app, methods=methods))
    return McpEndpoint(routes, server.session_manager)
