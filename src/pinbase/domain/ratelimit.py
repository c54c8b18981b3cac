"""Token-bucket rate limiting, one bucket per key (organization, device, ...)."""

from __future__ import annotations

import math
import time
from collections.abc import Hashable


class TokenBuckets:
    """One token bucket per key: `rate` tokens per second, holding at most `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def _level(self, key: Hashable, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def take(self, key: Hashable, count: int = 1, now: float | None = None) -> float:
        """Take `count` tokens at once (all or none); 0 when granted, else the seconds to wait.

        A request for more than `burst` tokens takes a full bucket, so it is never refused
        for ever.
        """
        now = time.monotonic() if now is None else now
        need = min(count, self.burst)
        tokens = self._level(key, now)
        if tokens >= need:
            self._buckets[key] = (tokens - need, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (need - tokens) / self.rate if self.rate > 0 else math.inf

    def take_some(self, key: Hashable, count: int, now: float | None = None) -> int:
        """Take as many of `count` tokens as the bucket holds whole; how many were taken (the
        same as taking them one at a time until one is refused)."""
        now = time.monotonic() if now is None else now
        tokens = self._level(key, now)
        taken = min(count, int(tokens))
        self._buckets[key] = (tokens - taken, now)
        return taken

    def ready_in(self, key: Hashable, count: int = 1, now: float | None = None) -> float:
        """Seconds until `count` tokens (at most `burst`) are in the bucket, taking none: 0 when
        they are now, infinite when the rate is 0 and they are not."""
        now = time.monotonic() if now is None else now
        missing = min(count, self.burst) - self._level(key, now)
        if missing <= 0:
            return 0.0
        return missing / self.rate if self.rate > 0 else math.inf


MAX_RETRY_AFTER = 86_400


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1, at most a day."""
    return str(max(1, math.ceil(min(seconds, MAX_RETRY_AFTER))))


class FailureBuckets:
    """Failures allowed per key (a client, a user, an address): `burst` at once, regained at
    `rate` per second.

    Unlike `TokenBuckets`, asking costs nothing: `wait` tells whether one more failure is
    allowed, `spend` takes one for an attempt about to be judged, and `refund` gives it back
    when the attempt succeeded. Spending before a slow check (a password hash) and refunding
    after makes concurrent attempts count exactly, and an attempt abandoned half-way stays
    counted. A bucket back at full is forgotten, so memory holds only the keys that failed
    within the time they take to refill.
    """

    SWEEP_EVERY = 1024  # spends between sweeps of the buckets that refilled

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        self._buckets: dict[Hashable, tuple[float, float]] = {}
        self._spends = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: Hashable, now: float) -> float:
        """0 when one more failure of `key` is allowed, else the seconds until it is."""
        tokens = self._tokens(key, now)
        if tokens >= 1:
            return 0.0
        return (1 - tokens) / self.rate if self.rate > 0 else math.inf

    def spend(self, key: Hashable, now: float) -> None:
        """Count one failure of `key` (whether or not `wait` allowed it; never below empty)."""
        self._buckets[key] = (max(0.0, self._tokens(key, now) - 1), now)
        self._spends += 1
        if self._spends % self.SWEEP_EVERY == 0:
            self._sweep(now)

    def refund(self, key: Hashable, now: float) -> None:
        """Give back a failure spent for an attempt that succeeded."""
        tokens = self._tokens(key, now) + 1
        if tokens >= self.burst:
            self._buckets.pop(key, None)
        else:
            self._buckets[key] = (tokens, now)

    def _tokens(self, key: Hashable, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self.burst
        tokens, stamp = found
        return min(self.burst, tokens + max(0.0, now - stamp) * self.rate)

    def _sweep(self, now: float) -> None:
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
