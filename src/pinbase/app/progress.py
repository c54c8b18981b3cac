"""How long-running use cases (a migration, applying a large fleet) report how far they got;
the command line shows it as progress bars, everything else passes nothing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where a use case reports how far it got (a progress bar, or nothing)."""

    def begin(self, phase: str, total: int) -> None:
        """A phase starts; `total` steps (rows, users, ...) are expected."""

    def advance(self, phase: str, steps: int) -> None:
        """`steps` more steps of the phase are done."""


class NoProgress:
    def begin(self, phase: str, total: int) -> None:
        pass

    def advance(self, phase: str, steps: int) -> None:
        pass
