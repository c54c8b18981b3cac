"""The guard of /oauth2/token: failure budgets per client, user and address, the bound on
password hashing, and the failure log. Driven by an explicit clock; the "hash" is a function the
test controls, so nothing here depends on timing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable

import pytest

from pinbase.app.auth.guard import Busy, LoginGuard, Throttled, address_key, shown
from pinbase.config import Settings

ADDRESS, OTHER_ADDRESS = "192.0.2.1", "192.0.2.2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock, **limits: object) -> LoginGuard:
    chosen: dict[str, object] = {
        "auth_failure_window": 600.0,
        "auth_client_failures": 2,
        "auth_user_failures": 3,
        "auth_address_failures": 5,
        **limits,
    }
    settings = dataclasses.replace(Settings(), **chosen)  # type: ignore[arg-type]
    return LoginGuard(settings, clock, cpus=lambda: 2)


def verdict(valid: bool, calls: list[str] | None = None) -> Callable[[], bool]:
    def verify() -> bool:
        if calls is not None:
            calls.append("hashed")
        return valid

    return verify


async def login(
    g: LoginGuard,
    valid: bool,
    email: str = "alice@acme.test",
    address: str = ADDRESS,
    calls: list[str] | None = None,
) -> bool:
    return await g.verify_password(address, "acme", 1, email, True, verdict(valid, calls))


def test_a_client_is_throttled_after_its_failures_and_others_are_not() -> None:
    clock = Clock()
    g = guard(clock)
    for _ in range(2):
        g.check_client(ADDRESS, "acme")
        g.client_failed(ADDRESS, "acme", known=True)
    with pytest.raises(Throttled) as caught:
        g.check_client(OTHER_ADDRESS, "acme")  # from anywhere: the client's own budget is spent
    assert caught.value.wait == 300.0  # two failures per 600 s: one back every 300 s
    g.check_client(ADDRESS, "globex")
    clock.now += 300
    g.check_client(ADDRESS, "acme")


def test_an_unknown_client_id_is_counted_like_a_known_one() -> None:
    g = guard(Clock())
    for _ in range(2):
        g.client_failed(ADDRESS, "nobody", known=False)
    with pytest.raises(Throttled):
        g.check_client(ADDRESS, "nobody")


def test_an_address_out_of_failures_is_refused_for_every_client_and_user() -> None:
    clock = Clock()
    g = guard(clock)

    async def main() -> None:
        for n in range(5):
            assert not await login(g, False, email=f"user{n}@acme.test")
        with pytest.raises(Throttled):
            await login(g, True, email="bob@acme.test")
        with pytest.raises(Throttled):
            g.check_client(ADDRESS, "globex")
        assert await login(g, True, email="bob@acme.test", address=OTHER_ADDRESS)

    asyncio.run(main())


def test_a_user_is_throttled_after_its_failures_the_right_password_included() -> None:
    clock = Clock()
    g = guard(clock)
    calls: list[str] = []

    async def main() -> None:
        for _ in range(3):
            assert not await login(g, False, calls=calls)
        with pytest.raises(Throttled) as caught:
            await login(g, True, calls=calls)
        assert caught.value.wait == 200.0
        assert calls == ["hashed"] * 3, "a throttled attempt is not even hashed"
        assert await login(g, True, email="bob@acme.test"), "another user logs in"
        clock.now += 200
        assert await login(g, True)

    asyncio.run(main())


def test_successful_logins_cost_no_budget() -> None:
    g = guard(Clock())

    async def main() -> None:
        for _ in range(20):
            assert await login(g, True)
        assert g.users is not None and g.addresses is not None
        assert len(g.users) == 0 and len(g.addresses) == 0

    asyncio.run(main())


def test_concurrent_guesses_are_counted_before_they_are_hashed() -> None:
    g = guard(Clock(), auth_user_failures=1)
    calls: list[str] = []

    async def main() -> None:
        # two slots: both attempts get one at once, but only one failure is left to spend
        results = await asyncio.gather(
            login(g, False, calls=calls), login(g, False, calls=calls), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["Throttled", "bool"]
        assert calls == ["hashed"]

    asyncio.run(main())


class Blocked:
    """A hash that runs until the test releases it."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> bool:
        self.started.set()
        self.release.wait(10)
        return True


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition()` holds (bounded, never decides a result)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


def test_beyond_the_slots_and_the_queue_logins_are_refused_at_once() -> None:
    g = guard(Clock(), password_hash_slots=1, password_hash_queue=1)

    async def main() -> None:
        hashing = Blocked()
        first = asyncio.create_task(g.verify_password(ADDRESS, "acme", 1, "a@x", True, hashing))
        await until(hashing.started.is_set)
        second = asyncio.create_task(login(g, True, email="b@x"))
        await until(lambda: g.hashing.waiting == 1)
        with pytest.raises(Busy):
            await login(g, True, email="c@x")
        hashing.release.set()
        assert await first and await second
        assert await login(g, True, email="c@x")

    asyncio.run(main())


def test_an_abandoned_login_keeps_its_slot_until_its_hash_is_done() -> None:
    g = guard(Clock(), password_hash_slots=1, password_hash_queue=0)

    async def main() -> None:
        hashing = Blocked()
        first = asyncio.create_task(g.verify_password(ADDRESS, "acme", 1, "a@x", True, hashing))
        await until(hashing.started.is_set)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(Busy):  # the hash still runs: its memory is still taken
            await login(g, True, email="b@x")
        hashing.release.set()
        await until(lambda: not g.hashing._semaphore.locked())
        assert await login(g, True, email="b@x")

    asyncio.run(main())


def test_an_abandoned_guess_stays_counted() -> None:
    g = guard(Clock(), auth_user_failures=1)

    async def main() -> None:
        hashing = Blocked()
        guess = asyncio.create_task(g.verify_password(ADDRESS, "acme", 1, "a@x", True, hashing))
        await until(hashing.started.is_set)
        guess.cancel()
        hashing.release.set()
        with pytest.raises(asyncio.CancelledError):
            await guess
        with pytest.raises(Throttled):
            await login(g, True, email="a@x")

    asyncio.run(main())


def test_failures_are_logged_without_secrets_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    g = guard(clock, auth_failure_logs=2, auth_address_failures=100, auth_user_failures=100)

    async def main() -> None:
        await g.verify_password(ADDRESS, "acme", 1, "alice@acme.test", True, verdict(False))
        await g.verify_password(ADDRESS, "acme", 1, "hunter2-typed-here", False, verdict(False))
        g.client_failed(ADDRESS, "acme", known=True)  # over the budget of 2 lines a minute
        g.client_failed(ADDRESS, "acme", known=True)
        clock.now += 30  # one line's worth regained
        g.refresh_failed(ADDRESS, "acme", "reused refresh token")

    with caplog.at_level(logging.WARNING, logger="pinbase.app.auth"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert lines == [
        "token request failed: wrong password; client=acme user=alice@acme.test address=192.0.2.1",
        "token request failed: unknown user; client=acme "
        f"user={shown('hunter2-typed-here', False)} address=192.0.2.1",
        "token request failed: reused refresh token; client=acme user=- address=192.0.2.1 "
        "(2 more failures since the last line were not logged)",
    ]
    assert "hunter2" not in " ".join(lines)


def test_addresses_are_keyed_by_host_and_ipv6_by_its_64() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown"
    assert address_key("testclient") == "testclient"


def test_a_limit_of_zero_is_no_limit_and_no_log_lines_for_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = guard(Clock(), auth_user_failures=0, auth_address_failures=0, auth_failure_logs=0)

    async def main() -> None:
        for _ in range(50):
            assert not await login(g, False)
        assert await login(g, True)

    with caplog.at_level(logging.WARNING, logger="pinbase.app.auth"):
        asyncio.run(main())
    assert caplog.records == []
