"""Device events without a server: the fleet file's `events` key, the `Events` use case with an
injected clock (Blynk's limits need no waiting), ONLINE/OFFLINE from presence, the relay's
encoding of event messages."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from helpers import fresh_store
from pinbase.app.events import UNKNOWN_CODE, Events
from pinbase.app.provisioning import ProvisioningError, apply, plan
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.events import DAY_MS, MAX_PER_DAY, TOO_FAST, EventLimit
from pinbase.live.bus import Bus, Event, EventLogged, EventResolved
from pinbase.live.presence import Presence
from pinbase.live.relay import decode, encode
from pinbase.store.base import Store
from pinbase.store.records import Entities, EventDefRow, LoggedEvent

T = TypeVar("T")
DAY = 1_700_006_400_000  # the start of a UTC day (epoch ms)

FLEET = """
organizations:
  - id: 1
    name: Acme
    products:
      - id: 10
        name: Station
        events:
          - {id: 1, code: high_temp, name: High temperature, type: WARNING,
             description: "Temperature above the limit", timeline: true,
             notify: {email: [owner, "ops@acme.test"], period: 300}}
          - {id: 2, code: door_open, name: Door open, type: INFORMATION}
          - {id: 3, code: quiet, name: Quiet, type: CRITICAL, timeline: false}
        variants:
          - {id: 11, name: Station Pro}
    devices:
      - {id: 101, name: Roof, product: 10, token: "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"}
      - {id: 102, name: Barn, product: 11}
"""


def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(FLEET)
    return loaded


def in_store(tmp_path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    """`body` run with a new SQLite store."""

    async def main() -> T:
        async with fresh_store("sqlite", tmp_path) as store:
            return await body(store)

    return asyncio.run(main())


# --- the fleet file ------------------------------------------------------------------------------


def test_events_are_provisioned_and_applying_again_changes_nothing(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        report = await apply(store, document())
        assert report.created["events"] == 3
        events = (await store.entities()).events
        assert sorted(events, key=lambda e: e.id) == [
            EventDefRow(
                10,
                1,
                "high_temp",
                "High temperature",
                "WARNING",
                "Temperature above the limit",
                True,
                '{"email":["owner","ops@acme.test"],"period":300}',
            ),
            EventDefRow(10, 2, "door_open", "Door open", "INFORMATION", None, True, None),
            EventDefRow(10, 3, "quiet", "Quiet", "CRITICAL", None, False, None),
        ]
        assert not (await apply(store, document())).changed
        changed = document()
        changed["organizations"][0]["products"][0]["events"][1]["type"] = "WARNING"
        assert (await apply(store, changed)).updated == {"events": 1}

    in_store(tmp_path, body)


INVALID = [
    ({"code": "has space"}, r"events\[0\]\.code: invalid code"),
    ({"code": "x" * 201}, r"events\[0\]\.code: invalid code"),
    ({"code": "ONLINE"}, r"events\[0\]\.code: ONLINE is a system event"),
    ({"type": "ONLINE"}, r"events\[0\]\.type: unknown type"),
    ({"type": "LOUD"}, r"events\[0\]\.type: unknown type"),
    ({"name": "n" * 201}, r"events\[0\]\.name: longer than 200"),
    ({"description": "d" * 1025}, r"events\[0\]\.description: longer than 1024"),
    ({"timeline": "yes"}, r"events\[0\]\.timeline: expected true or false"),
    ({"colour": "red"}, r"events\[0\]\.colour: unknown key"),
    ({"notify": {"email": ["not-an-address"]}}, r"notify\.email\[0\]: .* is not an email"),
    ({"notify": {"period": -1}}, r"notify\.period"),
    ({"notify": {"sms": []}}, r"notify\.sms: unknown key"),
    ({"id": 2}, r"events\[1\]\.id: .*event id"),
    ({"code": "door_open"}, r"events\[1\]\.code: .*event code"),
]


@pytest.mark.parametrize(("change", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_events_are_refused_with_their_path(change: dict[str, Any], message: str) -> None:
    doc = document()
    doc["organizations"][0]["products"][0]["events"][0].update(change)
    with pytest.raises(ProvisioningError, match=message):
        plan(doc, Entities())


def test_variants_have_no_events_of_their_own() -> None:
    doc = document()
    doc["organizations"][0]["products"][0]["variants"][0]["events"] = []
    with pytest.raises(ProvisioningError, match=r"variants\[0\]\.events: unknown key"):
        plan(doc, Entities())


def test_a_code_a_stored_event_keeps_is_refused(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await apply(store, document())
        doc = copy.deepcopy(document())
        events = doc["organizations"][0]["products"][0]["events"]
        doc["organizations"][0]["products"][0]["events"] = [{**events[0], "id": 9}]
        with pytest.raises(ProvisioningError, match='code "high_temp" is also used by event 1'):
            plan(doc, await store.entities())

    in_store(tmp_path, body)


# --- the use case, with an injected clock -------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = DAY + 1_000

    def __call__(self) -> int:
        return self.now


def run_events(
    tmp_path: Path, body: Callable[[Events, Store, Clock, list[Event]], Awaitable[None]]
) -> None:
    async def main(store: Store) -> None:
        await apply(store, document())
        bus, clock, seen = Bus(), Clock(), []
        bus.subscribe_org(1, seen.append)
        await body(Events(store, bus, clock), store, clock, seen)

    in_store(tmp_path, main)


def test_logging_checks_stamps_stores_and_publishes(tmp_path: Path) -> None:
    async def body(events: Events, store: Store, clock: Clock, seen: list[Event]) -> None:
        catalog = await store.catalog()
        barn = catalog.devices[102]  # a variant: its root product's events
        entry = await events.log(catalog, barn, "high_temp", "41 C", origin="me")
        assert entry == LoggedEvent(entry.id, 102, 1, "high_temp", "WARNING", "41 C", clock.now)
        assert seen == [EventLogged(1, 102, entry, True, "me")]
        default = await events.log(catalog, barn, "door_open", "")
        assert default.description is None  # the definition has none
        clock.now += 1_000
        own = await events.log(catalog, barn, "high_temp", None)
        assert own.description == "Temperature above the limit"
        quiet = await events.log(catalog, barn, "quiet")
        assert seen[-1] == EventLogged(1, 102, quiet, False)  # off the timeline
        with pytest.raises(NotFound, match=UNKNOWN_CODE):
            await events.log(catalog, barn, "nope")
        with pytest.raises(Invalid, match="longer than 300"):
            await events.log(catalog, barn, "door_open", "d" * 301)
        with pytest.raises(Invalid, match="NUL"):
            await events.log(catalog, barn, "door_open", "a\0b")

    run_events(tmp_path, body)


def test_the_limits_with_a_clock(tmp_path: Path) -> None:
    async def body(events: Events, store: Store, clock: Clock, seen: list[Event]) -> None:
        catalog = await store.catalog()
        roof = catalog.devices[101]
        await events.log(catalog, roof, "door_open")
        clock.now += 999
        with pytest.raises(EventLimit, match=TOO_FAST) as refused:
            await events.log(catalog, roof, "door_open")
        assert refused.value.reason == "per_second"
        await events.log(catalog, roof, "high_temp")  # another code
        clock.now += 1
        await events.log(catalog, roof, "door_open")
        for _ in range(MAX_PER_DAY - 3):
            clock.now += 1_000
            await events.log(catalog, roof, "door_open")
        clock.now += 1_000
        with pytest.raises(EventLimit, match="today") as refused:
            await events.log(catalog, roof, "door_open")
        assert refused.value.reason == "per_day"
        assert events.refused == {"per_second": 1, "per_day": 1}
        assert len([e for e in seen if isinstance(e, EventLogged)]) == MAX_PER_DAY
        clock.now = DAY + DAY_MS  # the next UTC day
        await events.log(catalog, roof, "door_open")

    run_events(tmp_path, body)


def test_resolving_publishes_each_resolution(tmp_path: Path) -> None:
    async def body(events: Events, store: Store, clock: Clock, seen: list[Event]) -> None:
        catalog = await store.catalog()
        roof = catalog.devices[101]
        warning = await events.log(catalog, roof, "high_temp")
        clock.now += 5
        (resolved,) = await events.resolve(roof, "id", warning.id, "done")
        assert resolved.resolved_at == clock.now and resolved.resolved_comment == "done"
        assert seen[-1] == EventResolved(1, 101, resolved)
        assert await events.resolve(roof, "code", "high_temp") == []
        assert len(seen) == 2

    run_events(tmp_path, body)


class FakeSession:
    protocol = "test"
    token_digest = "x"

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self.closed = False

    def deliver(self, event: Event) -> None:
        pass

    def replaced(self) -> None:
        self.closed = True

    def revoked(self) -> None:
        self.closed = True


def test_online_and_offline_follow_presence_without_duplicates(tmp_path: Path) -> None:
    async def body(events: Events, store: Store, clock: Clock, seen: list[Event]) -> None:
        presence = Presence(events.bus)
        events.watch(presence)
        first, second = FakeSession(101), FakeSession(101)
        presence.attach(first)
        clock.now += 1
        presence.attach(second)  # replaces the first: still online
        presence.detach(first)  # the replaced connection ends: nothing
        clock.now += 1
        presence.detach(second)
        presence.detach(second)  # twice: nothing more
        await events.drain()
        assert first.closed
        codes = [e.entry.code for e in seen if isinstance(e, EventLogged)]
        assert codes == ["ONLINE", "OFFLINE"]
        _, page = await store.timeline(101, None, 0, 2**62, 0, 10)
        assert [(e.code, e.event_id, e.ts) for e in page] == [
            ("OFFLINE", -2, DAY + 1_002),
            ("ONLINE", -1, DAY + 1_000),
        ]

    run_events(tmp_path, body)


def test_event_messages_cross_the_relay_unchanged() -> None:
    entry = LoggedEvent(7, 101, 1, "high_temp", "WARNING", "hot", DAY, DAY + 5, "fixed")
    for event in (
        EventLogged(1, 101, entry, False),
        EventLogged(1, 101, entry, True),
        EventResolved(1, 101, entry),
    ):
        assert decode(encode(event)) == event
