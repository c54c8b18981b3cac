"""MCP authentication: the Organization API's bearer tokens, checked by the SDK's middleware.

`Verifier` lets the SDK answer a missing or bad token 401 with its `WWW-Authenticate` header
naming the protected-resource metadata. Each tool call then admits the token again
(`pinbase.app.caller.admit`): the caller is judged against the catalog of that moment and the
organization's rate limit is charged per call.
"""

from __future__ import annotations

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context

from pinbase.app.auth.bearer import Unauthorized, authenticate
from pinbase.app.services import Services


class Verifier:
    """The SDK's `TokenVerifier` over pinbase's access tokens."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal, _ = await authenticate(self.services, token)
        except Unauthorized:
            return None
        subject = None if principal.user_id is None else str(principal.user_id)
        return AccessToken(token=token, client_id=str(principal.org_id), scopes=[], subject=subject)


def bearer_token(ctx: Context) -> str:
    """The access token the SDK's middleware verified for the request carrying this call."""
    request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    user = scope.get("user")
    return user.access_token.token if isinstance(user, AuthenticatedUser) else ""
