"""Presence: one session per device, replacement on a new login, last seen, bus delivery."""

from __future__ import annotations

from pinbase.live.bus import Bus, Event, PropertyChanged, ValueChanged
from pinbase.live.presence import Presence


class FakeSession:
    def __init__(self, device_id: int, protocol: str = "hardware", token_digest: str = "") -> None:
        self.device_id = device_id
        self.protocol = protocol
        self.token_digest = token_digest
        self.delivered: list[Event] = []
        self.was_replaced = False
        self.was_revoked = False

    def deliver(self, event: Event) -> None:
        self.delivered.append(event)

    def replaced(self) -> None:
        self.was_replaced = True

    def revoked(self) -> None:
        self.was_revoked = True


def change(device_id: int, value: object = 1) -> ValueChanged:
    return ValueChanged(1, device_id, 1, "v1", value, 1_000)


def test_an_attached_session_gets_its_device_changes_only() -> None:
    bus = Bus()
    presence = Presence(bus)
    session = FakeSession(7)
    presence.attach(session)
    prop = PropertyChanged(1, 7, 1, "v1", "color", "#FF0000")
    bus.publish([change(7), change(8), prop])
    assert session.delivered == [change(7), prop]


def test_a_new_login_replaces_the_old_session() -> None:
    bus = Bus()
    presence = Presence(bus)
    old, new = FakeSession(7, "hardware"), FakeSession(7, "mqtt")
    presence.attach(old)
    presence.attach(new)
    assert old.was_replaced and not new.was_replaced
    bus.publish([change(7)])
    assert old.delivered == [] and new.delivered == [change(7)]
    status = presence.status(7)
    assert status.connected and status.protocol == "mqtt"
    assert presence.connected_count == 1


def test_detaching_a_replaced_session_leaves_the_new_one_attached() -> None:
    bus = Bus()
    presence = Presence(bus)
    old, new = FakeSession(7), FakeSession(7)
    presence.attach(old)
    presence.attach(new)
    presence.detach(old)  # the old connection ends after it was replaced
    assert presence.is_connected(7)
    presence.detach(new)
    assert not presence.is_connected(7)
    bus.publish([change(7)])
    assert new.delivered == []


def test_status_of_a_device_never_seen_and_of_one_seen_over_http() -> None:
    presence = Presence(Bus())
    never = presence.status(9)
    assert (never.connected, never.protocol, never.connected_since, never.last_seen) == (
        False,
        None,
        None,
        None,
    )
    presence.seen(9)
    seen = presence.status(9)
    assert not seen.connected and seen.last_seen is not None


def test_last_seen_stays_after_the_session_ends() -> None:
    presence = Presence(Bus())
    session = FakeSession(3)
    presence.attach(session)
    since = presence.status(3).connected_since
    assert since is not None
    presence.detach(session)
    status = presence.status(3)
    assert not status.connected and status.last_seen is not None and status.last_seen >= since


def test_close_revoked_closes_the_sessions_whose_token_no_longer_opens_their_device() -> None:
    presence = Presence(Bus())
    kept, rotated = FakeSession(1, token_digest="a"), FakeSession(2, token_digest="b")
    gone = FakeSession(3, "mqtt", token_digest="c")
    for session in (kept, rotated, gone):
        presence.attach(session)
    assert presence.close_revoked({"a": 1, "b2": 2}) == 2
    assert (kept.was_revoked, rotated.was_revoked, gone.was_revoked) == (False, True, True)


def test_close_revoked_closes_a_session_whose_token_moved_to_another_device() -> None:
    presence = Presence(Bus())
    session = FakeSession(1, token_digest="a")
    presence.attach(session)
    assert presence.close_revoked({"a": 2}) == 1
    assert session.was_revoked
