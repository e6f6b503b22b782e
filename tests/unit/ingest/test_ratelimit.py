"""The per-client token bucket: rate over time, a burst at once, and when to come back."""

from __future__ import annotations

import pytest

from auditseal.ingest.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_burst_then_waits_for_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    for _ in range(20):
        assert limiter.retry_after("a") is None
        limiter.charge("a", 1)
    assert limiter.retry_after("a") == 1  # empty: one event's worth of refill is 0.1 s
    clock.now += 0.15
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("b") is None  # every client has a bucket of its own


def test_a_batch_larger_than_the_bucket_passes_once_and_is_paid_back():
    clock = Clock()
    limiter = RateLimiter(rate=100, burst=200, clock=clock)
    assert limiter.retry_after("a") is None
    limiter.charge("a", 1000)  # 800 in debt: 8 s until the bucket is above zero again
    assert limiter.retry_after("a") == 9
    clock.now += 7.5
    assert limiter.retry_after("a") == 1
    clock.now += 0.6
    assert limiter.retry_after("a") is None


def test_a_request_costs_at_least_one_and_the_bucket_never_overfills():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    limiter.charge("a", 0)
    limiter.charge("a", 0)
    assert limiter.retry_after("a") == 1
    clock.now += 3600
    limiter.charge("a", 2)
    assert limiter.retry_after("a") == 1  # refilled to the burst (2), not to 3600


def test_settings_are_checked():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=10)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0.5)
