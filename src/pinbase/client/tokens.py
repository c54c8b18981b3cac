"""Access tokens without I/O: which grant to ask for, when a token is due for renewal, and
what to keep from an answer.

Refresh tokens work once: every refresh answer's new refresh token replaces the old one. A
failed refresh (expired, revoked, or reused by someone else) falls back to a fresh grant with
the client's credentials. A refresh request is never sent twice (`replayable=False`): a refresh
token the server already consumed would count as reused, which revokes the whole family.
The clients serialise `obtain` behind a lock (a thread lock, an asyncio lock), so concurrent
calls that find the token stale renew it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from pinbase.client.errors import ApiError
from pinbase.client.exchange import Exchange, Plan, Reply, Request

TOKEN_PATH = "/oauth2/token"


@dataclass(frozen=True)
class ClientCredentials:
    """The organization's OAuth client: a token with every permission of the organization."""

    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Password:
    """A user of the organization, through its OAuth client: a token with the user's role."""

    client_id: str
    client_secret: str
    email: str
    password: str


Credentials = ClientCredentials | Password


class TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float
    refresh_token: str | None = None


class Tokens:
    """The current access token, its expiry and the refresh token."""

    def __init__(self, credentials: Credentials, clock: Callable[[], float] = time.monotonic):
        self.credentials = credentials
        self.clock = clock
        self.access: str | None = None
        self.refresh: str | None = None
        self.renew_at = 0.0

    def usable(self, stale: str | None) -> str | None:
        """The access token, unless there is none, it is `stale` (refused by the server) or
        it is due for renewal (in its last tenth, and at most its last minute)."""
        if self.access is None or self.access == stale or self.clock() >= self.renew_at:
            return None
        return self.access

    def obtain(self) -> Plan[str]:
        """Renew the access token: refresh it if possible, else a grant."""
        if self.refresh is not None:
            refresh, self.refresh = self.refresh, None
            try:
                reply = yield Exchange(
                    self._request({"grant_type": "refresh_token", "refresh_token": refresh}, False)
                )
            except ApiError as exc:
                if exc.status not in (400, 401):
                    raise
            else:
                return self.accept(reply)
        reply = yield Exchange(self._request(self._grant(), True))
        return self.accept(reply)

    def accept(self, reply: Reply) -> str:
        answer = reply.decode(TokenAnswer)
        self.access = answer.access_token
        self.refresh = answer.refresh_token
        self.renew_at = self.clock() + answer.expires_in - min(60.0, answer.expires_in / 10)
        return answer.access_token

    def _grant(self) -> dict[str, str]:
        match self.credentials:
            case Password(email=email, password=password):
                return {"grant_type": "password", "username": email, "password": password}
            case ClientCredentials():
                return {"grant_type": "client_credentials"}

    def _request(self, form: dict[str, str], replayable: bool) -> Request:
        auth = (self.credentials.client_id, self.credentials.client_secret)
        return Request(
            "POST", TOKEN_PATH, form=form, basic_auth=auth, replayable=replayable, authorized=False
        )
