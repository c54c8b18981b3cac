"""Where the MCP endpoint answers, declared apart from the SDK so that the HTTP application can
route to it without importing the SDK (`pinbase.mcp.endpoint`)."""

from __future__ import annotations

PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
"""The protected-resource metadata (RFC 9728) that a 401 of the endpoint points to."""

ROUTES: dict[str, tuple[str, ...]] = {PATH: ("POST",), METADATA_PATH: ("GET", "HEAD")}
"""Each path with its methods. Stateless, the endpoint has no GET stream and no session to
DELETE: those answer 405 like any method a pinbase path lacks."""
