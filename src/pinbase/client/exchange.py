"""The client's core, without I/O: requests and answers as values, and every decision about
them (retry, wait, obtain a new token, raise) as a generator of `Action`s.

An operation is a `Plan`: a generator that yields actions and returns the operation's result.
The sync and async clients each run plans with one small loop (`Client.run`,
`AsyncClient.run`) that performs the actions with httpx: everything else is shared.

Retries. A request is sent again:
- after a 429 or a 503 that carries `Retry-After`, waiting that long (a 503 without it means a
  damaged database: retrying does not help), at most `Retries.attempts` times in all, and never
  when the wait asked for is longer than `Retries.longest_wait` (the error is raised at once);
- after a 401, once, with a new access token (the old one expired or was revoked);
- after a connection failure, when the request cannot have reached the server (the connection
  was never made), or when sending it twice is harmless (`Request.replayable`: reads, imports,
  which replace the same points, properties, metadata and renames, which set a state). A write
  that may have been applied (a value, a batch update, an event, a creation, a refresh token,
  which works once) is not sent again: `TransportError` says it was `sent`, and the caller
  decides, knowing whether its write may be repeated.

Streamed answers (`Request.streamed`: the live stream, the CSV export) follow the same rules up
to their answer's status: a 2xx answer comes back unread (`Reply.opened`) for the client to read
as it arrives; any other is read whole and handled as above.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import msgspec

from pinbase.client.errors import BY_STATUS, ApiError, TokenError, TransportError, UnexpectedAnswer

T = TypeVar("T")

Query: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Request:
    """One HTTP request of the API, before a token is added."""

    method: str
    path: str
    params: Query = ()
    json: Any = None
    form: Mapping[str, str] | None = None
    basic_auth: tuple[str, str] | None = None
    replayable: bool = False
    authorized: bool = True
    streamed: bool = False
    """A 2xx answer's body is not read: its `Reply` holds the open response (`opened`)."""


@dataclass(frozen=True)
class Reply:
    """A status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    opened: Any = None
    """The open HTTP response of a `streamed` request's 2xx answer, its body unread."""

    def decode(self, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(self.body, type=kind)
        except msgspec.ValidationError as exc:
            raise UnexpectedAnswer(f"{self.status} answer: {exc}") from None
        except msgspec.DecodeError:
            raise UnexpectedAnswer(
                f"{self.status} answer is not JSON: {self.body[:200]!r}"
            ) from None


@dataclass(frozen=True)
class Failure:
    """No answer; `sent` when the request may have reached the server."""

    detail: str
    sent: bool


@dataclass(frozen=True)
class Exchange:
    """Action: send `request` with the client's retries and token; yields back a `Reply` with
    a 2xx status (errors are raised into the plan)."""

    request: Request


@dataclass(frozen=True)
class Send:
    """Action: send `request` once, with `token` as bearer; yields back a `Reply` or `Failure`."""

    request: Request
    token: str | None


@dataclass(frozen=True)
class Sleep:
    """Action: wait `seconds`."""

    seconds: float


@dataclass(frozen=True)
class Authorize:
    """Action: yields back a usable access token, a new one if the current one is `stale`."""

    stale: str | None


Action: TypeAlias = Exchange | Send | Sleep | Authorize
Plan: TypeAlias = Generator[Action, Any, T]


@dataclass(frozen=True)
class Retries:
    """How persistently to retry: `attempts` sends in all per request, and no wait longer than
    `longest_wait` seconds (a longer `Retry-After` raises at once)."""

    attempts: int = 5
    longest_wait: float = 60.0
    reconnect_wait: float = 0.2

    def wait_for(self, reply: Reply) -> float | None:
        """Seconds to wait before sending again, or None when the answer stands."""
        if reply.status not in (429, 503):
            return None
        try:
            seconds = float(reply.headers.get("retry-after", ""))
        except ValueError:
            return None
        if not 0 <= seconds <= self.longest_wait:
            return None
        return seconds


def error_from(reply: Reply) -> ApiError:
    """The typed exception of an error answer, with Blynk's (or OAuth's) message."""
    message, code = reply.body.decode("utf-8", "replace")[:500] or f"HTTP {reply.status}", None
    try:
        body = msgspec.json.decode(reply.body)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            code = error
            message = str(body.get("error_description", error))
    kind = TokenError if code else BY_STATUS.get(reply.status, ApiError)
    return kind(reply.status, message, reply.headers, code)


def exchange(request: Request, retries: Retries) -> Plan[Reply]:
    """Send `request` until it has an answer that stands (see the module's rules)."""
    stale: str | None = None
    renewed = False
    attempt = 0
    while True:
        token = (yield Authorize(stale)) if request.authorized else None
        outcome = yield Send(request, token)
        attempt += 1
        if isinstance(outcome, Failure):
            if (outcome.sent and not request.replayable) or attempt >= retries.attempts:
                raise TransportError(outcome.detail, outcome.sent)
            yield Sleep(retries.reconnect_wait)
            continue
        if outcome.status == 401 and request.authorized and not renewed:
            stale, renewed = token, True
            continue
        wait = retries.wait_for(outcome) if attempt < retries.attempts else None
        if wait is not None:
            yield Sleep(wait)
            continue
        reply: Reply = outcome
        if reply.status >= 400:
            raise error_from(reply)
        return reply


def call(request: Request, kind: type[T]) -> Plan[T]:
    """One request whose answer decodes as `kind`."""
    reply: Reply = yield Exchange(request)
    return reply.decode(kind)


def command(request: Request) -> Plan[None]:
    """One request whose answer has no content worth reading."""
    yield Exchange(request)


@dataclass(frozen=True)
class Finished:
    """A plan's result."""

    value: Any


def resume(plan: Plan[T], outcome: Any, error: Exception | None) -> Action | Finished:
    """Hand a plan the outcome of its last action (or raise `error` into it); its next action,
    or its result."""
    try:
        return plan.throw(error) if error is not None else plan.send(outcome)
    except StopIteration as stop:
        return Finished(stop.value)
