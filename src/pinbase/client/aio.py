"""The asyncio client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx

import pinbase.client.exchange as core
from pinbase.client.api import AsyncRunner, Operations
from pinbase.client.errors import PinbaseError
from pinbase.client.models import LiveEvent
from pinbase.client.operations import live_request
from pinbase.client.sse import EventParser
from pinbase.client.tokens import Credentials, Tokens
from pinbase.client.wire import failure_of, outgoing, reply_of

T = TypeVar("T")


class AsyncClient(AsyncRunner, Operations):
    """pinbase's Organization and Platform API for asyncio; safe to share between tasks of
    one event loop. Every operation of `Client`, awaited."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        retries: core.Retries = core.Retries(),
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.http.base_url = httpx.URL(base_url)
        self.tokens = Tokens(credentials, clock)
        self.retries = retries
        self.sleep = sleep
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self, plan: core.Plan[T]) -> T:
        outcome: Any = None
        error: PinbaseError | None = None
        while not isinstance(step := core.resume(plan, outcome, error), core.Finished):
            try:
                outcome, error = await self._perform(step), None
            except PinbaseError as exc:
                outcome, error = None, exc
        result: T = step.value
        return result

    async def _perform(self, action: core.Action) -> Any:
        match action:
            case core.Exchange(request):
                return await self.run(core.exchange(request, self.retries))
            case core.Send(request, token):
                try:
                    sending = outgoing(self.http, request, token)
                    response = await self.http.send(sending, stream=request.streamed)
                    if not response.is_success:
                        await response.aread()
                    return reply_of(response)
                except httpx.TransportError as exc:
                    return failure_of(exc)
            case core.Sleep(seconds):
                return await self.sleep(seconds)
            case core.Authorize(stale):
                async with self._lock:
                    return self.tokens.usable(stale) or await self.run(self.tokens.obtain())

    @asynccontextmanager
    async def _opened(self, request: core.Request) -> AsyncIterator[httpx.Response]:
        """The open response of a streamed request's 2xx answer; see `Client._opened`."""
        response: httpx.Response = (await self.run(core.exchange(request, self.retries))).opened
        try:
            yield response
        finally:
            await response.aclose()

    async def stream(self, request: core.Request) -> AsyncIterator[bytes]:
        async with self._opened(request) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def live(self, device_ids: Sequence[int] = ()) -> AsyncIterator[LiveEvent]:
        """The live stream of changes (pinbase); see `Client.live`."""
        async with self._opened(live_request(device_ids)) as response:
            parser = EventParser()
            async for line in response.aiter_lines():
                if event := parser.feed(line):
                    yield event
