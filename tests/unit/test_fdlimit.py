"""The fd limit and the connection cap below it."""

from __future__ import annotations

import resource

import pytest

from pinbase.net import fdlimit
from pinbase.net.fdlimit import connection_capacity, derived_capacity, raise_fd_limit


def test_the_derived_cap_keeps_a_tenth_of_the_limit_at_least_64() -> None:
    assert derived_capacity(1024) == 1024 - 102
    assert derived_capacity(20_000) == 18_000
    assert derived_capacity(256) == 192
    assert derived_capacity(10) == 1


def test_a_configured_cap_is_used_but_never_above_the_derived_one() -> None:
    assert connection_capacity(0, 1024) == 922
    assert connection_capacity(100, 1024) == 100
    assert connection_capacity(5000, 1024) == 922


def test_the_soft_limit_is_raised_to_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(
        fdlimit.resource, "setrlimit", lambda _, value: limits.__setitem__("now", value)
    )
    assert raise_fd_limit() == 4096
    assert limits["now"] == (4096, 4096)
    assert raise_fd_limit() == 4096


def test_a_refused_raise_keeps_the_soft_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_: int, __: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda _: (256, resource.RLIM_INFINITY))
    monkeypatch.setattr(fdlimit.resource, "setrlimit", refuse)
    assert raise_fd_limit() == 256


def test_an_unlimited_soft_limit_counts_as_large(monkeypatch: pytest.MonkeyPatch) -> None:
    infinity = resource.RLIM_INFINITY
    monkeypatch.setattr(fdlimit.resource, "getrlimit", lambda _: (infinity, infinity))
    assert raise_fd_limit() == fdlimit.UNLIMITED
