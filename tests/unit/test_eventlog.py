"""The rate-limited event log: one line per interval per kind, with the count in between."""

from __future__ import annotations

import logging

import pytest

from pinbase.net.eventlog import EventLog


def collect() -> tuple[EventLog, list[str]]:
    lines: list[str] = []
    return EventLog(lambda level, message: lines.append(message), interval=10.0), lines


def test_the_first_event_is_logged_at_once() -> None:
    log, lines = collect()
    log.note("a", 100.0, "first")
    assert lines == ["first"]
    assert log.deadline() is None


def test_events_within_the_interval_are_counted_then_summarized_by_the_next() -> None:
    log, lines = collect()
    log.note("a", 0.0, "a 0")
    for t in (1.0, 2.0, 3.0):
        log.note("a", t, f"a {t:.0f}")
    assert lines == ["a 0"]
    assert log.deadline() == 10.0
    log.note("a", 12.0, "a 12")
    assert lines == ["a 0", "a 12 (4 times in the last 12 s)"]
    assert log.deadline() is None


def test_flush_logs_a_due_count_without_a_further_event() -> None:
    log, lines = collect()
    log.note("a", 0.0, "a")
    log.note("a", 5.0, "a again")
    log.flush(9.0)
    assert lines == ["a"]
    log.flush(10.0)
    assert lines == ["a", "a again (1 time in the last 10 s)"]
    log.flush(100.0)
    assert len(lines) == 2


def test_a_quiet_kind_logs_its_next_event_at_once() -> None:
    log, lines = collect()
    log.note("a", 0.0, "a")
    log.note("a", 10.0, "a later")
    assert lines == ["a", "a later"]


def test_kinds_are_independent() -> None:
    log, lines = collect()
    log.note("a", 0.0, "a")
    log.note("b", 1.0, "b")
    log.note("a", 2.0, "a2")
    log.note("b", 3.0, "b2")
    assert lines == ["a", "b"]
    assert log.deadline() == 10.0
    log.flush(10.5)
    assert lines == ["a", "b", "a2 (1 time in the last 10 s)"]
    assert log.deadline() == 11.0


def test_flush_all_logs_what_is_pending_at_the_end() -> None:
    log, lines = collect()
    log.note("a", 0.0, "a")
    log.note("a", 1.0, "a")
    log.flush_all(2.0)
    assert lines == ["a", "a (1 time in the last 2 s)"]


def test_the_level_is_the_latest_events() -> None:
    levels: list[int] = []
    log = EventLog(lambda level, message: levels.append(level), interval=10.0)
    log.note("a", 0.0, "a", logging.INFO)
    log.note("a", 1.0, "a", logging.WARNING)
    log.flush(10.0)
    assert levels == [logging.INFO, logging.WARNING]


def test_to_logger_writes_to_a_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pinbase.test"):
        EventLog.to_logger(logging.getLogger("pinbase.test")).note("a", 0.0, "hello")
    assert [r.getMessage() for r in caplog.records] == ["hello"]
