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
