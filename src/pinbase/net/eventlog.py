"""Rate-limited logging: at most one line per interval per kind of event, carrying a count.

A flood of hostile connections must not become a flood of log lines. The first event of a kind
is logged at once; the next ones within the interval are only counted, and their count is
logged (with the latest event's message) once the interval has passed: by the next event of
that kind, or by `flush`, which a caller runs at `deadline()` so that the last count of a burst
is not lost. Times are explicit (seconds on any monotonic clock), so the rules are unit-tested
without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL = 10.0
"""Seconds between two lines about the same kind of event."""

Emit = Callable[[int, str], None]
"""Writes one line at a logging level."""


@dataclass(slots=True)
class _Kind:
    logged_at: float
    pending: int = 0
    message: str = ""
    level: int = logging.WARNING


class EventLog:
    """One line per `interval` per kind; the events in between are counted, not logged."""

    def __init__(self, emit: Emit, interval: float = INTERVAL) -> None:
        self.emit = emit
        self.interval = interval
        self._kinds: dict[str, _Kind] = {}

    @classmethod
    def to_logger(cls, logger: logging.Logger, interval: float = INTERVAL) -> EventLog:
        return cls(logger.log, interval)

    def note(self, kind: str, now: float, message: str, level: int = logging.WARNING) -> None:
        """One event of `kind`, described by `message`."""
        state = self._kinds.get(kind)
        if state is None or (state.pending == 0 and now - state.logged_at >= self.interval):
            self._kinds[kind] = _Kind(logged_at=now)
            self.emit(level, message)
            return
        state.pending += 1
        state.message = message
        state.level = level
        if now - state.logged_at >= self.interval:
            self._summarize(state, now)

    def flush(self, now: float) -> None:
        """Log the counts whose interval has passed."""
        for state in self._kinds.values():
            if state.pending and now - state.logged_at >= self.interval:
                self._summarize(state, now)

    def flush_all(self, now: float) -> None:
        """Log every pending count, due or not (at shutdown)."""
        for state in self._kinds.values():
            if state.pending:
                self._summarize(state, now)

    def deadline(self) -> float | None:
        """When the earliest pending count becomes due; None when nothing is pending."""
        due = [s.logged_at + self.interval for s in self._kinds.values() if s.pending]
        return min(due) if due else None

    def _summarize(self, state: _Kind, now: float) -> None:
        seconds = max(now - state.logged_at, 0.0)
        times = "time" if state.pending == 1 else "times"
        self.emit(
            state.level,
            f"{state.message} ({state.pending} {times} in the last {seconds:.0f} s)",
        )
        state.logged_at = now
        state.pending = 0
