"""The MCP server over the running services, as an ASGI application.

Streamable HTTP, stateless with JSON answers: each POST to `/mcp` carries one message and gets
its answer, no session is kept and no stream stays open. So any process sharing the database
answers any request (no session pinned to one process), and a stopping server waits for no
stream. `pinbase.mcp.endpoint` builds it on the first MCP request and runs its
`session_manager` until the server stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.routing import Route
from starlette.types import ASGIApp

from pinbase import __version__
from pinbase.app.services import Services
from pinbase.mcp.auth import Verifier
from pinbase.mcp.paths import PATH, ROUTES
from pinbase.mcp.tools import TOOLS

TOKEN_PATH = "/oauth2/token"


@dataclass(frozen=True, slots=True)
class McpServer:
    app: ASGIApp
    """The SDK's Starlette application (its bearer middleware included): it serves the paths
    of `ROUTES`, routing by the unchanged path."""
    session_manager: StreamableHTTPSessionManager
    """Runs (`async with session_manager.run()`) while the application serves."""


def create_mcp(services: Services) -> McpServer:
    """The MCP server of `services`, its tools registered."""
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
    served = {route.path for route in app.routes if isinstance(route, Route)}
    if served != set(ROUTES):
        raise RuntimeError(f"the MCP SDK serves {sorted(served)}, not {sorted(ROUTES)}")
    return McpServer(app, server.session_manager)
