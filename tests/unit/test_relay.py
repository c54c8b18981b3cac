"""The relay between processes: the wire format, chunking, and two relays on one channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from pinbase.live.bus import Bus, Event, MetaChanged, PropertyChanged, ValueChanged
from pinbase.live.relay import MAX_PAYLOAD, ChannelRelay, chunks, decode, encode


class MemoryChannel:
    """A broadcast channel inside one process: every subscriber gets every payload."""

    def __init__(self) -> None:
        self.receivers: list[Callable[[str], None]] = []
        self.sent: list[str] = []

    async def notify(self, payload: str) -> None:
        self.sent.append(payload)
        for receive in self.receivers:
            receive(payload)

    def subscribe(self, receive: Callable[[str], None]) -> None:
        self.receivers.append(receive)


VALUE = ValueChanged(1, 7, 2, "v2", [24.1, 56.9], 1_700_000_000_000)
PROPERTY = PropertyChanged(1, 7, 2, "v2", "color", "#FF0000")


def test_events_survive_the_wire_format() -> None:
    metadata = (MetaChanged(1, 7, 2, "Site", "South"), MetaChanged(1, 7, 3, "Weight", 7.5))
    for event in (VALUE, PROPERTY, ValueChanged(2, 8, 1, "v1", "text", 5), *metadata):
        assert decode(orjson.loads(orjson.dumps(encode(event)))) == event


def test_chunks_stay_under_the_notify_limit_and_keep_order() -> None:
    events: list[Event] = [ValueChanged(1, 7, 1, "v1", "x" * 100, n) for n in range(500)]
    payloads = chunks("sender", events)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    received = [decode(item) for p in payloads for item in orjson.loads(p)["e"]]
    assert received == events
    assert {orjson.loads(p)["s"] for p in payloads} == {"sender"}


def test_two_processes_see_each_others_events_but_not_their_own_twice() -> None:
    async def scenario() -> tuple[list[Event], list[Event]]:
        channel = MemoryChannel()
        first_bus, second_bus = Bus(), Bus()
        first_seen: list[Event] = []
        second_seen: list[Event] = []
        first_bus.subscribe_org(1, first_seen.append)
        second_bus.subscribe_org(1, second_seen.append)
        first, second = ChannelRelay(first_bus, channel), ChannelRelay(second_bus, channel)
        first.start()
        second.start()
        first_bus.publish([VALUE])
        second_bus.publish([PROPERTY])
        await first.stop()
        await second.stop()
        return first_seen, second_seen

    first_seen, second_seen = asyncio.run(scenario())
    assert first_seen == [VALUE, PROPERTY]
    assert second_seen == [PROPERTY, VALUE]


def test_a_malformed_message_is_ignored() -> None:
    async def scenario() -> list[Event]:
        channel = MemoryChannel()
        bus = Bus()
        seen: list[Event] = []
        bus.subscribe_org(1, seen.append)
        relay = ChannelRelay(bus, channel)
        relay.start()
        for junk in ("not json", '{"s": "x"}', '{"s": "x", "e": [["v", 1]]}', "[]"):
            await channel.notify(junk)
        await channel.notify('{"s":"other","e":' + orjson.dumps([encode(VALUE)]).decode() + "}")
        await relay.stop()
        return seen

    assert asyncio.run(scenario()) == [VALUE]
