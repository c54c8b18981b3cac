"""The blocking client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

import pinbase.client.exchange as core
from pinbase.client.api import Operations, SyncRunner
from pinbase.client.errors import PinbaseError
from pinbase.client.models import LiveEvent
from pinbase.client.operations import live_request
from pinbase.client.sse import EventParser
from pinbase.client.tokens import Credentials, Tokens
from pinbase.client.wire import failure_of, outgoing, reply_of

T = TypeVar("T")


class Client(SyncRunner, Operations):
    """pinbase's Organization and Platform API, blocking; safe to share between threads.

    `sleep` and `clock` are what the client waits with and reads expiry times from."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        retries: core.Retries = core.Retries(),
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http or httpx.Client(timeout=timeout)
        self.http.base_url = httpx.URL(base_url)
        self.tokens = Tokens(credentials, clock)
        self.retries = retries
        self.sleep = sleep
        self._lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def run(self, plan: core.Plan[T]) -> T:
        outcome: Any = None
        error: PinbaseError | None = None
        while not isinstance(step := core.resume(plan, outcome, error), core.Finished):
            try:
                outcome, error = self._perform(step), None
            except PinbaseError as exc:
                outcome, error = None, exc
        result: T = step.value
        return result

    def _perform(self, action: core.Action) -> Any:
        match action:
            case core.Exchange(request):
                return self.run(core.exchange(request, self.retries))
            case core.Send(request, token):
                try:
                    sending = outgoing(self.http, request, token)
                    response = self.http.send(sending, stream=request.streamed)
                    if not response.is_success:
                        response.read()
                    return reply_of(response)
                except httpx.TransportError as exc:
                    return failure_of(exc)
            case core.Sleep(seconds):
                return self.sleep(seconds)
            case core.Authorize(stale):
                with self._lock:
                    return self.tokens.usable(stale) or self.run(self.tokens.obtain())

    @contextmanager
    def _opened(self, request: core.Request) -> Iterator[httpx.Response]:
        """The open response of a streamed request's 2xx answer, sent with the client's
        retries and token; closed on leaving."""
        response: httpx.Response = self.run(core.exchange(request, self.retries)).opened
        try:
            yield response
        finally:
            response.close()

    def stream(self, request: core.Request) -> Iterator[bytes]:
        with self._opened(request) as response:
            yield from response.iter_bytes()

    def live(self, device_ids: Sequence[int] = ()) -> Iterator[LiveEvent]:
        """The live stream of changes (pinbase), until the server ends it or the iterator is
        closed. Not resumed after a disconnection: read the current values to catch up."""
        with self._opened(live_request(device_ids)) as response:
            parser = EventParser()
            for line in response.iter_lines():
                if event := parser.feed(line):
                    yield event
