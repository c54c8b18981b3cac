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

    def take(self, key: Hashable, now: float | None = None) -> float:
        """Take one token; return 0 when granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate if self.rate > 0 else math.inf


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
