from __future__ import annotations

from collections import Counter

import pytest

from auditseal.ingest.envelope import validate
from auditseal.ingest.simulator import TrafficModel, pace, simulated_proxies


def test_proxies_cycle_through_the_kinds():
    proxies = simulated_proxies(8)
    assert [p.source for p in proxies[:4]] == [
        "proxy://db-gateway-1",
        "proxy://ssh-bastion-2",
        "proxy://api-gateway-3",
        "proxy://k8s-proxy-4",
    ]
    assert len({p.source for p in proxies}) == 8
    with pytest.raises(ValueError):
        simulated_proxies(0)


def test_every_simulated_event_is_valid_and_the_mix_is_realistic():
    model = TrafficModel(simulated_proxies(8), seed=7)
    types, statuses = Counter(), Counter()
    for i in range(2000):
        proxy, build = model.next()
        event = build(i + 1)
        assert validate(event) == [], event
        assert event["source"] == proxy.source
        types[event["type"]] += 1
        statuses[event["data"]["status_id"]] += 1
    assert len(types) == 3  # API activity, authentication, datastore activity
    assert 0 < statuses[2] < 0.2 * sum(statuses.values())  # some denials, not most


def test_the_model_is_reproducible():
    a, b = TrafficModel(simulated_proxies(4), seed=3), TrafficModel(simulated_proxies(4), seed=3)
    for _ in range(50):
        (pa, ba), (pb, bb) = a.next(), b.next()
        ea, eb = ba(1), bb(1)
        assert pa == pb and ea["data"] == {**eb["data"], "time": ea["data"]["time"]}


def test_pace_sleeps_until_each_event_is_due():
    now = [100.0]
    slept = []

    def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    wait = pace(10.0, clock=lambda: now[0], sleep=sleep)
    for i in range(5):
        wait(i)
    assert [round(d, 6) for d in slept] == [0.1, 0.1, 0.1, 0.1]
    with pytest.raises(ValueError):
        pace(0)
