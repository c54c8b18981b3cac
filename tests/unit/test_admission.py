"""Connection admission: the process-wide budget, the per-address cap, refusal accounting and
its rate-limited log, all with explicit times."""

from __future__ import annotations

import logging

import pytest

from pinbase.net.admission import PER_ADDRESS, TOTAL, Admission, Budget, address_key
from pinbase.net.eventlog import EventLog


class Lines:
    """An EventLog's output, kept."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def __call__(self, level: int, message: str) -> None:
        self.lines.append((level, message))


def admission(capacity: int = 100, per_address: int = 2) -> tuple[Admission, Lines]:
    lines = Lines()
    return Admission("http", Budget(capacity), per_address, EventLog(lines, 10.0)), lines


def test_the_per_address_cap_refuses_the_excess_of_one_address_only() -> None:
    gate, _ = admission(per_address=2)
    first, second = gate.admit("192.0.2.1", 0.0), gate.admit("192.0.2.1", 0.0)
    assert first is not None and second is not None
    assert gate.admit("192.0.2.1", 0.0) is None
    assert gate.admit("192.0.2.2", 0.0) is not None
    assert gate.refused == {PER_ADDRESS: 1}
    gate.release(first)
    assert gate.admit("192.0.2.1", 1.0) is not None


def test_the_budget_is_shared_by_every_listener() -> None:
    budget = Budget(3)
    lines = Lines()
    http = Admission("http", budget, 0, EventLog(lines))
    mqtt = Admission("mqtt", budget, 0, EventLog(lines))
    tickets = [http.admit("192.0.2.1", 0.0), http.admit("192.0.2.2", 0.0)]
    tickets.append(mqtt.admit("192.0.2.3", 0.0))
    assert all(tickets)
    assert mqtt.admit("192.0.2.4", 0.0) is None
    assert http.admit("192.0.2.5", 0.0) is None
    assert mqtt.refused == {TOTAL: 1} and http.refused == {TOTAL: 1}
    ticket = tickets[0]
    assert ticket is not None
    http.release(ticket)
    assert mqtt.admit("192.0.2.4", 0.0) is not None
    assert budget.open == 3 and http.open == 1 and mqtt.open == 2


def test_the_global_cap_is_checked_before_the_per_address_one() -> None:
    gate, lines = admission(capacity=1, per_address=1)
    assert gate.admit("192.0.2.1", 0.0) is not None
    assert gate.admit("192.0.2.1", 0.0) is None
    assert gate.refused == {TOTAL: 1}
    assert lines.lines == [
        (
            logging.WARNING,
            "http: refused a connection from 192.0.2.1: connection limit of 1 reached",
        )
    ]


def test_a_ticket_is_released_once() -> None:
    gate, _ = admission(capacity=2, per_address=0)
    ticket = gate.admit("192.0.2.1", 0.0)
    assert ticket is not None
    gate.release(ticket)
    gate.release(ticket)
    assert gate.budget.open == 0 and gate.open == 0 and not gate.by_address


def test_no_per_address_cap_when_zero() -> None:
    gate, _ = admission(capacity=1000, per_address=0)
    assert all(gate.admit("192.0.2.1", 0.0) for _ in range(500))


def test_an_unknown_peer_is_one_address() -> None:
    gate, _ = admission(per_address=1)
    assert gate.admit(None, 0.0) is not None
    assert gate.admit(None, 0.0) is None


def test_refusals_are_logged_once_per_interval_per_reason_with_a_count() -> None:
    gate, lines = admission(capacity=1000, per_address=1)
    assert gate.admit("192.0.2.1", 0.0)
    for second in range(25):  # one refusal a second, 25 seconds long
        assert gate.admit("192.0.2.1", float(second)) is None
    messages = [message for _, message in lines.lines]
    assert messages == [
        "http: refused a connection from 192.0.2.1: per-address limit of 1 reached",
        "http: refused a connection from 192.0.2.1: per-address limit of 1 reached"
        " (10 times in the last 10 s)",
        "http: refused a connection from 192.0.2.1: per-address limit of 1 reached"
        " (10 times in the last 10 s)",
    ]
    assert gate.events.deadline() == 30.0  # the last four are pending, due at 30 s
    gate.events.flush(29.9)
    assert len(lines.lines) == 3
    gate.events.flush(30.0)
    assert lines.lines[-1][1].endswith("(4 times in the last 10 s)")
    assert gate.events.deadline() is None
    assert gate.refused == {PER_ADDRESS: 25}


def test_connections_cut_off_are_logged_per_reason() -> None:
    gate, lines = admission()
    gate.cut("request head timeout", "192.0.2.1", 0.0)
    gate.cut("request head timeout", "192.0.2.9", 1.0)
    gate.cut("idle, no request", "192.0.2.1", 2.0, logging.INFO)
    assert lines.lines == [
        (logging.WARNING, "http: closed a connection from 192.0.2.1: request head timeout"),
        (logging.INFO, "http: closed a connection from 192.0.2.1: idle, no request"),
    ]
    gate.events.flush_all(3.0)
    assert lines.lines[-1] == (
        logging.WARNING,
        "http: closed a connection from 192.0.2.9: request head timeout (1 time in the last 3 s)",
    )


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_ipv6_peers_count_per_64_network(host: str, key: str) -> None:
    assert address_key(host) == key


def test_a_budget_holds_at_least_one_connection() -> None:
    with pytest.raises(ValueError):
        Budget(0)
