"""The operations as methods: one list (`Operations`) that the sync and the async client both
inherit. Each entry is a descriptor over a plan of `operations.py`: on a `Client` it runs the
plan and returns its result, on an `AsyncClient` it returns a coroutine of it, and mypy sees
the plan's own parameters either way."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, overload

import pinbase.client.operations as ops
from pinbase.client.exchange import Authorize, Plan, Request
from pinbase.client.operations import Walk

P = ParamSpec("P")
T = TypeVar("T")


class SyncRunner(ABC):
    """Runs plans by blocking."""

    @abstractmethod
    def run(self, plan: Plan[T]) -> T:
        """Run a plan of requests; its result."""

    @abstractmethod
    def stream(self, request: Request) -> Iterator[bytes]:
        """The body of a streamed request's answer, a chunk at a time as it arrives."""

    def walk(self, walk: Walk[T]) -> Iterator[T]:
        index = 0
        while True:
            page = self.run(walk.page(index))
            yield from page.content
            if not walk.more(index, page):
                return
            index += 1


class AsyncRunner(ABC):
    """Runs plans in asyncio."""

    @abstractmethod
    async def run(self, plan: Plan[T]) -> T:
        """Run a plan of requests; its result."""

    @abstractmethod
    def stream(self, request: Request) -> AsyncIterator[bytes]:
        """The body of a streamed request's answer, a chunk at a time as it arrives."""

    async def walk(self, walk: Walk[T]) -> AsyncIterator[T]:
        index = 0
        while True:
            page = await self.run(walk.page(index))
            for item in page.content:
                yield item
            if not walk.more(index, page):
                return
            index += 1


def access_token() -> Plan[str]:
    """A usable access token (obtained or renewed if needed)."""
    token: str = yield Authorize(None)
    return token


class Operation(Generic[P, T]):
    """An operation of a single plan: a method of both clients."""

    def __init__(self, plan: Callable[P, Plan[T]]) -> None:
        self.plan = plan
        self.__doc__ = plan.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Operation[P, T]: ...
    @overload
    def __get__(self, client: SyncRunner, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncRunner, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: SyncRunner | AsyncRunner | None, owner: type) -> object:
        if client is None:
            return self
        plan, run = self.plan, client.run

        @functools.wraps(plan)
        def bound(*args: P.args, **kwargs: P.kwargs) -> object:
            return run(plan(*args, **kwargs))

        return bound


class Pages(Generic[P, T]):
    """An operation that walks pages: an iterator (sync) or async iterator of the items."""

    def __init__(self, walk: Callable[P, Walk[T]]) -> None:
        self.walk = walk
        self.__doc__ = walk.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Pages[P, T]: ...
    @overload
    def __get__(self, client: SyncRunner, owner: type) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, client: AsyncRunner, owner: type) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: SyncRunner | AsyncRunner | None, owner: type) -> object:
        if client is None:
            return self
        walk, run = self.walk, client.walk

        @functools.wraps(walk)
        def bound(*args: P.args, **kwargs: P.kwargs) -> object:
            return run(walk(*args, **kwargs))

        return bound


class Streamed(Generic[P]):
    """An operation whose answer is read as it arrives: an iterator (sync) or async iterator of
    the body's chunks of bytes. The request is sent when the first chunk is asked for."""

    def __init__(self, request: Callable[P, Request]) -> None:
        self.request = request
        self.__doc__ = request.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Streamed[P]: ...
    @overload
    def __get__(self, client: SyncRunner, owner: type) -> Callable[P, Iterator[bytes]]: ...
    @overload
    def __get__(self, client: AsyncRunner, owner: type) -> Callable[P, AsyncIterator[bytes]]: ...
    def __get__(self, client: SyncRunner | AsyncRunner | None, owner: type) -> object:
        if client is None:
            return self
        request, stream = self.request, client.stream

        @functools.wraps(request)
        def bound(*args: P.args, **kwargs: P.kwargs) -> object:
            return stream(request(*args, **kwargs))

        return bound


class Operations:
    """Every operation of the Organization and Platform API (see `operations.py`)."""

    access_token = Operation(access_token)
    # reading
    current_values = Operation(ops.current_values)
    batch_values = Operation(ops.batch_values)
    history = Operation(ops.history)
    iter_history = Pages(ops.iter_history)
    history_aggregate = Operation(ops.history_aggregate)
    export = Streamed(ops.export)
    properties = Operation(ops.properties)
    status = Operation(ops.status)
    # writing
    write_value = Operation(ops.write_value)
    write_values = Operation(ops.write_values)
    batch_update = Operation(ops.batch_update)
    import_history = Operation(ops.import_history)
    set_property = Operation(ops.set_property)
    # events and metadata
    timeline = Operation(ops.timeline)
    trigger_event = Operation(ops.trigger_event)
    resolve_event = Operation(ops.resolve_event)
    template_events = Operation(ops.template_events)
    metafields = Operation(ops.metafields)
    set_metafield = Operation(ops.set_metafield)
    template_metafields = Operation(ops.template_metafields)
    # webhooks
    webhooks = Operation(ops.webhooks)
    webhook = Operation(ops.webhook)
    create_webhook = Operation(ops.create_webhook)
    replace_webhook = Operation(ops.replace_webhook)
    delete_webhook = Operation(ops.delete_webhook)
    webhook_deliveries = Operation(ops.webhook_deliveries)
    # the Platform API
    devices = Operation(ops.devices)
    iter_devices = Pages(ops.iter_devices)
    search_devices = Operation(ops.search_devices)
    device = Operation(ops.device)
    create_device = Operation(ops.create_device)
    rename_device = Operation(ops.rename_device)
    delete_device = Operation(ops.delete_device)
    clear_device = Operation(ops.clear_device)
    device_online = Operation(ops.device_online)
    reprovision_token = Operation(ops.reprovision_token)
    templates = Operation(ops.templates)
    template = Operation(ops.template)
    template_datastreams = Operation(ops.template_datastreams)
    users = Operation(ops.users)
    search_users = Operation(ops.search_users)
    user = Operation(ops.user)
    my_profile = Operation(ops.my_profile)
    organization = Operation(ops.organization)
    create_user = Operation(ops.create_user)
    invite_user = Operation(ops.invite_user)
    set_user_role = Operation(ops.set_user_role)
