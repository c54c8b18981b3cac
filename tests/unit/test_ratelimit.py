"""Token buckets, driven by an explicit clock."""

from __future__ import annotations

import math

from pinbase.domain.ratelimit import FailureBuckets, TokenBuckets, retry_after


def test_a_burst_is_granted_then_refused_until_refilled() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("d", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("d", now=0.0) == 0.5
    assert buckets.take("d", now=0.5) == 0.0
    assert buckets.take("other", now=0.5) == 0.0  # buckets are per key


def test_several_tokens_are_taken_all_or_none() -> None:
    buckets = TokenBuckets(rate=1.0, burst=10)
    assert buckets.take("d", 8, now=0.0) == 0.0
    assert buckets.take("d", 3, now=0.0) == 1.0  # only 2 left: nothing is taken
    assert buckets.take("d", 2, now=0.0) == 0.0


def test_more_than_a_burst_takes_a_full_bucket() -> None:
    buckets = TokenBuckets(rate=1.0, burst=5)
    assert buckets.take("d", 50, now=0.0) == 0.0
    assert buckets.take("d", 1, now=0.0) == 1.0


def test_a_zero_rate_never_refills() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1)
    assert buckets.take("d", now=0.0) == 0.0
    assert math.isinf(buckets.take("d", now=1e9))


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(2.3) == "3"
    assert retry_after(math.inf) == "86400"


def test_take_some_takes_what_the_bucket_holds() -> None:
    buckets = TokenBuckets(rate=10.0, burst=5)
    assert buckets.take_some("d", 3, now=0.0) == 3
    assert buckets.take_some("d", 3, now=0.0) == 2  # only whole tokens: 2 left
    assert buckets.take_some("d", 3, now=0.0) == 0
    assert buckets.take_some("d", 3, now=0.25) == 2  # 2.5 refilled: 2 whole ones taken
    assert buckets.take_some("d", 3, now=0.3125) == 1  # 0.5 kept + 0.625 refilled
    assert buckets.take_some("d", 100, now=10.0) == 5  # never more than the burst


def test_ready_in_says_when_tokens_will_be_there_and_takes_none() -> None:
    buckets = TokenBuckets(rate=4.0, burst=8)
    assert buckets.ready_in("d", 8, now=0.0) == 0.0
    assert buckets.take_some("d", 8, now=0.0) == 8
    assert buckets.ready_in("d", 1, now=0.0) == 0.25
    assert buckets.ready_in("d", 2, now=0.25) == 0.25  # one is back already
    assert buckets.ready_in("d", 100, now=0.0) == 2.0  # at most a full bucket is waited for
    assert buckets.take_some("d", 1, now=0.5) == 2 - 1  # ready_in took nothing: 2 by now
    empty = TokenBuckets(rate=0.0, burst=1)
    empty.take("d", now=0.0)
    assert math.isinf(empty.ready_in("d", 1, now=1e9))


# --- failure buckets --------------------------------------------------------------------------


def test_failures_are_allowed_up_to_the_burst_then_regained_at_the_rate() -> None:
    failures = FailureBuckets(burst=3, rate=0.5)
    for _ in range(3):
        assert failures.wait("alice", now=0.0) == 0.0
        failures.spend("alice", now=0.0)
    assert failures.wait("alice", now=0.0) == 2.0  # one failure regained every 2 s
    assert failures.wait("alice", now=1.5) == 0.5
    assert failures.wait("alice", now=2.0) == 0.0
    assert failures.wait("bob", now=0.0) == 0.0  # per key


def test_asking_costs_nothing_and_a_refund_undoes_a_spend() -> None:
    failures = FailureBuckets(burst=2, rate=0.1)
    for _ in range(10):
        assert failures.wait("alice", now=0.0) == 0.0
    failures.spend("alice", now=0.0)
    failures.spend("alice", now=0.0)  # two attempts under way, say
    assert failures.wait("alice", now=0.0) == 10.0
    failures.refund("alice", now=0.0)  # one of them was right
    assert failures.wait("alice", now=0.0) == 0.0
    assert len(failures) == 1
    failures.refund("alice", now=0.0)
    assert len(failures) == 0, "a full bucket is forgotten"


def test_spending_never_goes_below_empty() -> None:
    failures = FailureBuckets(burst=1, rate=1.0)
    for _ in range(5):
        failures.spend("k", now=0.0)
    assert failures.wait("k", now=0.0) == 1.0


def test_buckets_that_refilled_are_swept() -> None:
    failures = FailureBuckets(burst=2, rate=1.0)
    for n in range(FailureBuckets.SWEEP_EVERY - 1):
        failures.spend(n, now=float(n))
    assert len(failures) == FailureBuckets.SWEEP_EVERY - 1
    failures.spend("last", now=10_000.0)  # every other bucket refilled long ago
    assert len(failures) == 1


def test_without_a_rate_spent_failures_never_come_back() -> None:
    failures = FailureBuckets(burst=1, rate=0.0)
    failures.spend("k", now=0.0)
    assert failures.wait("k", now=1e9) == math.inf
