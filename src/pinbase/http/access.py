"""The access log: one INFO line per HTTP request on the `pinbase.access` logger.

`GET /external/api/get?token=[redacted]&pin=v1 200 1.3 ms 10.0.0.7 org=1`: method, path with
every secret-bearing query parameter's value replaced (and a first segment shaped like a device
token, blynk-server's `/{token}/get/v1`), status, duration, client address, and
the organization the request acted for (`-` when none: a refused token, the device API before
its token is known). The organization comes from the request's `state` (`ORG_KEY`), which the
routes set once they know it.

Cheap when off: a logger above INFO costs one level check per request and nothing else; when
on, the line is formatted by the handler (lazily), and the fields for `--log-format json` are
gathered once per request.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pinbase.access")

ORG_KEY = "pinbase_org"
"""The key in the request's state (`request.state.pinbase_org`) of its organization id."""
SECRET_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "password",
        "client_secret",
        "secret",
        "code",
        "authorization",
    }
)
REDACTED = "[redacted]"
TOKEN_SEGMENT = "[A-Za-z0-9_-]{32}"
"""A device token as the first segment of a path (blynk-server's HTTP API, `routes/legacy.py`)."""
_TOKEN_PATH = re.compile(f"^/{TOKEN_SEGMENT}(?=/|$)")


def redacted_path(path: str) -> str:
    """`path` with a first segment shaped like a device token replaced by `REDACTED`."""
    return _TOKEN_PATH.sub("/" + REDACTED, path, count=1)


def redacted_query(query: str) -> str:
    """`query` with the value of every secret-bearing parameter replaced by `REDACTED`.

    A parameter whose name is not plain (it would need decoding to be compared) is redacted
    too, and so is a part without `=`: nothing that might hide a secret is logged as sent.
    """
    if not query:
        return ""
    parts = []
    for piece in query.split("&"):
        name, sep, _ = piece.partition("=")
        pairs = parse_qsl(piece, keep_blank_values=True)
        plain = len(pairs) == 1 and quote(pairs[0][0], safe="") == name
        if sep and plain and name.lower() not in SECRET_PARAMETERS:
            parts.append(piece)
        else:
            parts.append(f"{name if plain else REDACTED}={REDACTED}")
    return "&".join(parts)


class AccessLog:
    """ASGI middleware writing the access log line of each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _log(scope, status, (time.perf_counter() - started) * 1000.0)


def _log(scope: Scope, status: int, ms: float) -> None:
    query = scope.get("query_string", b"").decode("latin-1")
    path = redacted_path(scope.get("path", ""))
    if query:
        path = f"{path}?{redacted_query(query)}"
    client = scope.get("client")
    address = client[0] if client else "-"
    state: dict[str, Any] = scope.get("state") or {}
    org = state.get(ORG_KEY)
    method = scope.get("method", "-")
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(ms, 2),
        "client": address,
        "org": org,
    }
    log.info(
        "%s %s %d %.1f ms %s org=%s",
        method,
        path,
        status,
        ms,
        address,
        "-" if org is None else org,
        extra={"fields": fields},
    )
