"""The store's health: free while healthy, probed while failing, sticky when damaged; and the
errors a full disk becomes on each backend."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pinbase.store import health as health_module
from pinbase.store.errors import Corrupt, StorageFull, StoreUnavailable
from pinbase.store.health import Health
from pinbase.store.postgres.store import _translated


class Probe:
    """A probe that fails while `failing` holds an error, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.failing: StoreUnavailable | None = None
        self.health: Health | None = None

    async def __call__(self) -> None:
        self.runs += 1
        if self.failing is not None:
            assert self.health is not None
            self.health.failed(self.failing)  # as a backend reports its own failures
            raise self.failing


def watched() -> tuple[Health, Probe]:
    probe = Probe()
    health = probe.health = Health(probe)
    return health, probe


def test_a_healthy_store_is_never_probed() -> None:
    health, probe = watched()

    async def body() -> None:
        for _ in range(3):
            assert await health.status() is None

    asyncio.run(body())
    assert probe.runs == 0


def test_a_failing_store_is_probed_at_most_once_an_interval_until_a_write_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    health, probe = watched()
    full = StorageFull("the disk holding x is full")

    async def body() -> None:
        health.failed(full)
        probe.failing = full
        failure = await health.status()
        assert failure is not None and (failure.kind, failure.reason) == ("full", str(full))
        assert await health.status() is not None
        assert probe.runs == 1  # within the interval: the last answer stands
        monkeypatch.setattr(health_module, "PROBE_INTERVAL_S", 0.0)
        probe.failing = None
        assert await health.status() is None
        assert probe.runs == 2

    asyncio.run(body())


def test_a_failure_met_while_a_probe_runs_is_not_cleared_by_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    health, _ = watched()
    gate = asyncio.Event()

    async def slow_probe() -> None:
        await gate.wait()

    health._probe = slow_probe
    monkeypatch.setattr(health_module, "PROBE_WAIT_S", 0.01)

    async def body() -> None:
        health.failed(StoreUnavailable("cannot reach PostgreSQL"))
        assert await health.status() is not None  # the probe is still waiting
        health.failed(StorageFull("the disk is full"))
        gate.set()
        await asyncio.sleep(0.01)
        failure = health.failure
        assert failure is not None and failure.kind == "full"
        await health.close()

    asyncio.run(body())


def test_a_damaged_database_stays_failing_and_is_not_probed() -> None:
    health, probe = watched()

    async def body() -> None:
        health.failed(Corrupt("damaged"))
        health.failed(StoreUnavailable("locked"))
        failure = await health.status()
        assert failure is not None and failure.kind == "corrupt"

    asyncio.run(body())
    assert probe.runs == 0


def test_a_full_postgresql_disk_is_storage_full() -> None:
    error = _translated(asyncpg.DiskFullError("could not extend file: No space left on device"))
    assert isinstance(error, StorageFull)
    assert "disk of the PostgreSQL server is full" in str(error)
