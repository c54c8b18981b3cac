"""The store's health as a readiness probe sees it, kept without querying a healthy database.

Each backend reports the failures it meets (`failed`) at the one place where its driver's errors
are translated, so the health costs nothing while all is well: `status()` of a healthy store is
an attribute read, never a query (`/healthz` is probed often, and benchmarked as the cheapest
endpoint).

Decisions:

- **Recovery is proved by a write, not assumed.** While the store is failing, `status()` runs
  the backend's probe, one small write (`Store.probe`), at most once per `PROBE_INTERVAL_S`,
  shared by concurrent callers and waited for at most `PROBE_WAIT_S` (a slow database delays a
  readiness answer by that much, never more). The probe's success clears the failure. A write,
  because the failures that matter most are the ones reads do not see: a full disk, a file
  turned read-only. Without the probe a server taken out of rotation for a failing store would
  get no traffic, so no successful write, and never come back.
- **A damaged database stays failing** until the process restarts (and the start-up check runs
  again): nothing a running server does repairs it, and a probe that happens to miss the
  damaged pages would hide it.
- **Only transitions are logged** (failing with what, then recovered), so a full disk does not
  also fill the log with one line per refused write.
- Failures may be reported from any thread (the SQLite writer's); they replace one immutable
  `Failure`, which needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pinbase.store.errors import Corrupt, StorageFull, StoreError, StoreUnavailable

log = logging.getLogger("pinbase.store")

PROBE_INTERVAL_S = 1.0
PROBE_WAIT_S = 1.0

Kind = Literal["unavailable", "full", "corrupt"]
KINDS: tuple[Kind, ...] = ("unavailable", "full", "corrupt")


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the store is failing: the kind and the message of the error that said so."""

    kind: Kind
    reason: str


def kind_of(error: StoreUnavailable) -> Kind:
    if isinstance(error, Corrupt):
        return "corrupt"
    if isinstance(error, StorageFull):
        return "full"
    return "unavailable"


class Health:
    """The last failure of a store, until a probe proves it over (see the module)."""

    def __init__(self, probe: Callable[[], Awaitable[object]]) -> None:
        self._probe = probe
        self._failure: Failure | None = None
        self._probing: asyncio.Task[None] | None = None
        self._probed_at = -PROBE_INTERVAL_S

    def failed(self, error: StoreUnavailable) -> None:
        """Record a failure the store met (from any thread)."""
        current = self._failure
        if current is not None and current.kind == "corrupt":
            return
        failure = Failure(kind_of(error), str(error))
        self._failure = failure
        if current is None or (current.kind, current.reason) != (failure.kind, failure.reason):
            log.error("storage failing (%s): %s", failure.kind, failure.reason)

    @property
    def failure(self) -> Failure | None:
        """The failure as last seen, without probing."""
        return self._failure

    async def status(self) -> Failure | None:
        """None when the store is healthy, else why not; probes a failing store (see module)."""
        failure = self._failure
        if failure is None or failure.kind == "corrupt":
            return failure
        task = self._probing
        if task is None and time.monotonic() - self._probed_at >= PROBE_INTERVAL_S:
            task = self._probing = asyncio.create_task(self._run_probe(failure))
        if task is not None:
            await asyncio.wait([task], timeout=PROBE_WAIT_S)  # the probe goes on if slower
        return self._failure

    async def _run_probe(self, failure: Failure) -> None:
        try:
            await self._probe()
        except StoreError:
            pass  # a failure the backend has recorded itself
        else:
            if self._failure is failure:  # nothing new failed while the probe ran
                self._failure = None
                log.info("storage recovered (was %s)", failure.kind)
        finally:
            self._probed_at = time.monotonic()
            self._probing = None

    async def close(self) -> None:
        """Stop a probe in flight (the store is closing)."""
        task = self._probing
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["KINDS", "Failure", "Health", "Kind", "kind_of"]
