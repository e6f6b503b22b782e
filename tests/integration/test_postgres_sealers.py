"""Several sealers, one PostgreSQL store: workers killed and paused at random moments seal every
acknowledged record exactly once, and no log forks (issue: the store on several hosts)."""

from __future__ import annotations

import random
import signal
import time

import pytest

from auditseal.store.blockstore import BlockStore
from tests.integration.sealer_harness import (
    Feeder,
    assert_running,
    blocks_from_stream,
    check_exactly_once,
    make_stack,
    sealed_positions,
    sealed_stream,
    stop,
    wait_until_sealed,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _no_two_roots_per_size(stack) -> None:
    roots: dict[tuple[str, int], str] = {}
    for (log, _number), block in blocks_from_stream(sealed_stream(stack)).items():
        assert roots.setdefault((log, block["end"]), block["root"]) == block["root"], log


@pytest.mark.slow
def test_three_sealers_killed_at_random_moments_seal_everything_once(
    kafka_bootstrap, new_topic, tmp_path, pg_url
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=6)
    stack.store_url = pg_url
    rng = random.Random(13)
    workers = {name: stack.start_worker(name, max_events=50) for name in ("a", "b", "c")}
    kills = 0
    sealed_after_kill = []
    try:
        with Feeder(stack, rate=400):
            time.sleep(6)  # the group forms and every worker seals
            while kills < 20:
                name = rng.choice(sorted(workers))
                workers[name].send_signal(signal.SIGKILL)
                workers[name].wait()
                kills += 1
                sealed_after_kill.append(sum(len(v) for v in sealed_positions(stack).values()))
                workers[name] = stack.start_worker(name, max_events=rng.choice([5, 50, 200]))
                time.sleep(rng.uniform(1.5, 4.0))
        # The kills landed while the group was sealing, not only during start-ups.
        progress = sum(
            1 for a, b in zip([0, *sealed_after_kill[:-1]], sealed_after_kill, strict=True) if b > a
        )
        assert progress >= 10, sealed_after_kill
        assert_running(stack, workers)
        wait_until_sealed(stack, timeout=180)
    finally:
        for worker in workers.values():
            stop(worker)
    total = check_exactly_once(stack)
    assert total > 4000
    _no_two_roots_per_size(stack)
    with BlockStore.open(pg_url, readonly=True) as store:
        claimed = {base: store.claims(base) for base in (stack.origin(p) for p in range(6))}
    # Every partition changed hands as workers died: each hand-over is a claim of its own.
    assert all(len(c) >= 2 for c in claimed.values()), claimed
    assert all([e for e, _, _ in c] == list(range(1, len(c) + 1)) for c in claimed.values())


@pytest.mark.slow
def test_a_paused_sealer_woken_after_its_partitions_moved_forks_nothing(
    kafka_bootstrap, new_topic, tmp_path, pg_url
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=6)
    stack.store_url = pg_url
    a, b = stack.start_worker("a"), stack.start_worker("b")
    try:
        with Feeder(stack, rate=400):
            time.sleep(8)
            a.send_signal(signal.SIGSTOP)  # past its 3 s session: b takes every partition
            time.sleep(10)
            a.send_signal(signal.SIGCONT)  # a wakes up with blocks half-built on old tips
            time.sleep(8)
        assert_running(stack, {"a": a, "b": b})
        wait_until_sealed(stack, timeout=120)
    finally:
        stop(a)
        stop(b)
    check_exactly_once(stack)
    _no_two_roots_per_size(stack)
    with BlockStore.open(pg_url, readonly=True) as store:
        writers = {w for p in range(6) for _, w, _ in store.claims(stack.origin(p))}
    assert len(writers) == 2, writers  # both held partitions at some point
