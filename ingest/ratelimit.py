"""A token bucket per client: events per second, with a burst.

A request is let in while its client's bucket is not empty, and then charged what it cost (its
events, at least one), which may take the bucket below zero: a batch larger than the burst still
passes once, and its client then waits until the bucket has refilled past zero. So a client gets
``rate`` events per second over time, never more than ``burst`` plus one batch at once, and a
client refused (429) is told when to come back (``Retry-After``). Pure: the clock is an argument.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    level: float
    at: float


class RateLimiter:
    """Buckets of ``burst`` events refilled at ``rate`` per second, one per key."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.level = min(self.burst, bucket.level + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def retry_after(self, key: str) -> int | None:
        """None if ``key`` may send now; else the whole seconds until it may (at least 1)."""
        bucket = self._bucket(key)
        if bucket.level > 0:
            return None
        return max(1, math.ceil((-bucket.level + 1e-9) / self.rate))

    def charge(self, key: str, cost: int) -> None:
        """Take ``cost`` events (at least one) from ``key``'s bucket."""
        self._bucket(key).level -= max(1, cost)
