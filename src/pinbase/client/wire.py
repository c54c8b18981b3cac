"""The few lines between the sans-IO core and httpx, shared by both clients."""

from __future__ import annotations

import base64

import httpx

from pinbase.client.exchange import Failure, Reply, Request

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before a byte of the request left: sending again is always safe."""


def outgoing(
    http: httpx.Client | httpx.AsyncClient, request: Request, token: str | None
) -> httpx.Request:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if request.basic_auth is not None:
        pair = ":".join(request.basic_auth).encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return http.build_request(
        request.method,
        request.path,
        params=request.params,
        json=request.json,
        data=request.form,
        headers=headers,
    )


def reply_of(response: httpx.Response) -> Reply:
    """The `Reply` of a response: its body, or the response itself while its body is unread
    (the 2xx answer of a streamed request)."""
    if not response.is_stream_consumed:
        return Reply(response.status_code, dict(response.headers), opened=response)
    return Reply(response.status_code, dict(response.headers), response.content)


def failure_of(exc: httpx.TransportError) -> Failure:
    return Failure(f"{type(exc).__name__}: {exc}", sent=not isinstance(exc, NOT_SENT))
