"""The sealer worker against the real broker: exactly once, crashes, takeover, malformed records."""

from __future__ import annotations

import random
import signal
import time

import pytest
from confluent_kafka import Producer

from auditseal.verifier.checkpoint import open_checkpoint
from tests.integration.sealer_harness import (
    Feeder,
    blocks_from_stream,
    check_exactly_once,
    make_stack,
    sealed_positions,
    sealed_stream,
    stop,
    wait_until_sealed,
)

pytestmark = pytest.mark.kafka


def test_end_to_end_every_offset_sealed_once_and_published(kafka_bootstrap, new_topic, tmp_path):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path)
    with Feeder(stack, rate=1000) as feeder:
        time.sleep(2)
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    assert check_exactly_once(stack) == feeder.sent
    blocks = blocks_from_stream(sealed_stream(stack))
    from auditseal.store.blockstore import BlockStore

    with BlockStore.open(stack.store_path, readonly=True) as store:
        stored = {(o, b.header.number): b for o in store.logs() for b in store.blocks(o)}
        assert set(blocks) == set(stored)
        for key, message in blocks.items():
            assert message["checkpoint"] == stored[key].checkpoint
            assert [e["index"] for e in message["entries"]] == list(
                range(message["start"], message["end"])
            )
            open_checkpoint(message["checkpoint"], [stack.signer.verifier])


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_forks_nothing(kafka_bootstrap, new_topic, tmp_path):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path)
    rng = random.Random(4)
    kills = 0
    sealed_after_kill = []
    with Feeder(stack, rate=400):
        while kills < 20:
            before = sum(len(v) for v in sealed_positions(stack).values())
            worker = stack.start_worker(max_events=rng.choice([5, 50, 200]))
            if kills % 2 == 0:  # during start-up and recovery, or just after
                time.sleep(rng.uniform(0.5, 5.0))
            else:  # mid-sealing, however long start-up takes on a loaded machine
                deadline = time.monotonic() + 60
                while sum(len(v) for v in sealed_positions(stack).values()) == before:
                    assert time.monotonic() < deadline, "a restarted worker sealed nothing in 60 s"
                    time.sleep(0.2)
                time.sleep(rng.uniform(0.0, 2.0))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
            sealed_after_kill.append(sum(len(v) for v in sealed_positions(stack).values()))
    # The kills landed while the worker was sealing, not only during its start-up.
    progress = sum(
        1 for a, b in zip([0, *sealed_after_kill[:-1]], sealed_after_kill, strict=True) if b > a
    )
    assert progress >= 10, sealed_after_kill
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack, timeout=180)
    finally:
        stop(worker)
    check_exactly_once(stack)
    # No two checkpoints of a log with the same size and different roots, anywhere they were
    # published (republished blocks after a crash must be identical).
    roots: dict[tuple[str, int], str] = {}
    for (log, _number), block in blocks_from_stream(sealed_stream(stack)).items():
        assert roots.setdefault((log, block["end"]), block["root"]) == block["root"]


def test_a_surviving_worker_takes_over_without_forking(kafka_bootstrap, new_topic, tmp_path):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path)
    a, b = stack.start_worker("a"), stack.start_worker("b")
    try:
        with Feeder(stack, rate=400):
            time.sleep(8)
            a.send_signal(signal.SIGKILL)
            a.wait()
            time.sleep(6)
        wait_until_sealed(stack, timeout=120)
    finally:
        stop(b)
    check_exactly_once(stack)
    logs = (tmp_path / "worker-b.log").read_text()
    assert "Traceback" not in logs, logs[-2000:]


def test_malformed_records_are_sealed_and_flagged(kafka_bootstrap, new_topic, tmp_path):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=1)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 3_000_000})
    values = [
        b"not json at all",
        b'{"specversion": "1.0"}',
        b"x" * 2_000_000,
        b"",
        b"\x00\x01\xfe\xff binary",
        None,
    ]
    for v in values:
        p.produce(stack.topic, v, b"bad-proxy")
    assert p.flush(30) == 0
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    check_exactly_once(stack)
    from auditseal.store.blockstore import BlockStore

    with BlockStore.open(stack.store_path, readonly=True) as store:
        origin = stack.origin(0)
        assert [e.value for e in store.entries(origin, 0, len(values))] == values
        flags = [row[3] for row in store.annotated_entries(origin, 0, len(values))]
    assert all(flags), flags
    messages = sealed_stream(stack)
    assert all(len(str(m)) < 3_000_000 for m in messages)
    entries = [e for b in blocks_from_stream(messages).values() for e in b["entries"]]
    assert [e["flag"] is not None for e in entries] == [True] * len(values)
    assert entries[2]["value_omitted"] and entries[2]["value_size"] == 2_000_000


def test_full_blocks_of_realistic_events_are_published(kafka_bootstrap, new_topic, tmp_path):
    """Regression: sealed-stream values filled to 1,000,000 bytes, plus key and batch, went
    over the producer's max request size and the worker crashed on the block forever."""
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=1)
    with Feeder(stack, rate=5000, sources=4) as feeder:
        while feeder.sent < 2500:
            time.sleep(0.1)
    worker = stack.start_worker(max_events=1000, max_interval=1.0)
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    check_exactly_once(stack)
    blocks = blocks_from_stream(sealed_stream(stack))
    assert any(b["end"] - b["start"] == 1000 and b["parts"] > 1 for b in blocks.values())
    assert "Traceback" not in (tmp_path / "worker-w.log").read_text()


def test_a_store_restored_from_a_backup_is_refilled_from_kafka_not_skipped(
    kafka_bootstrap, new_topic, tmp_path
):
    # The group's committed offsets are past what the restored store holds: the worker must
    # read from the store's offsets (Kafka offsets are no proof that a record was sealed).
    import sqlite3

    stack = make_stack(kafka_bootstrap, new_topic, tmp_path)
    with Feeder(stack, rate=1000):
        time.sleep(1.5)
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    backup = tmp_path / "backup.db"
    live, copy = sqlite3.connect(stack.store_path), sqlite3.connect(backup)
    live.backup(copy)
    live.close()
    copy.close()
    with Feeder(stack, rate=1000):
        time.sleep(1.5)
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack)  # the group's offsets now point past everything
    finally:
        stop(worker)
    before = sum(len(v) for v in sealed_positions(stack).values())
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"store.db{suffix}").unlink(missing_ok=True)
    backup.rename(stack.store_path)
    assert sum(len(v) for v in sealed_positions(stack).values()) < before
    worker = stack.start_worker()
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    assert check_exactly_once(stack) == before  # every record again, none skipped, no gap
