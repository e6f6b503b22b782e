"""The emitter against a real broker: order per source, refusals, a paused broker, restarts,
a damaged spool, a proxy killed while the broker is away."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditseal.ingest import events
from auditseal.ingest.emitter import (
    DEFAULT_SPOOL_AFTER,
    POLL_INTERVAL,
    Emitter,
    EmitterConfigError,
    producer_config,
)
from auditseal.ingest.envelope import encode_event
from auditseal.ingest.errors import EnvelopeError
from auditseal.ingest.spool import Spool

pytestmark = pytest.mark.kafka


def consume(
    bootstrap: str, topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[bytes, dict]]:
    """Every record of ``topic`` (partition by partition), as (key, event)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out: list[tuple[bytes, dict]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        out.append((msg.key(), orjson.loads(msg.value())))
    # a short grace period to catch duplicates beyond `expected`
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.append((msg.key(), orjson.loads(msg.value())))
    consumer.close()
    return out


def builder(i: int):
    return lambda source: (
        lambda seq: events.api_activity(
            source, seq, {"name": "alice"}, "GET", {"name": f"/v1/items/{i}"}, "success", "10.0.0.1"
        )
    )


def per_source(records: list[tuple[bytes, dict]]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for key, event in records:
        assert key == event["source"].encode()
        seqs[event["source"]].append(event["sequence"])
    return seqs


def test_round_trip_keeps_each_sources_order(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=3)
    emitter = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    sources = [f"proxy://test-{n}" for n in range(3)]
    for i in range(300):
        emitter.emit_with(sources[i % 3], builder(i)(sources[i % 3]))
    assert emitter.close() == 0
    assert emitter.acked == 300 and emitter.failures == 0
    seqs = per_source(consume(kafka_bootstrap, topic, 300))
    assert seqs == {s: list(range(1, 101)) for s in sources}


def test_sequences_continue_across_emitters(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    first = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    event = builder(0)("proxy://restart")(1)
    del event["sequence"]
    assert [first.emit(dict(event, id=f"a{i}")) for i in range(3)] == [1, 2, 3]
    first.close()
    second = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    assert second.emit(dict(event, id="b")) == 4
    second.close()


def test_invalid_events_are_refused_and_use_no_sequence(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    emitter = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    good = builder(0)("proxy://x")(1)
    del good["sequence"]
    with pytest.raises(EnvelopeError, match="sequence"):
        emitter.emit({**good, "sequence": 7})
    bad = {**good, "data": {**good["data"], "actor": {}}}
    with pytest.raises(EnvelopeError) as info:
        emitter.emit(bad)
    assert any(str(e).startswith("data.actor: Actor needs") for e in info.value.errors)
    assert emitter.emit(good) == 1  # the refused events did not consume a number
    emitter.close()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"enable.idempotence": False}, "enable.idempotence"),
        ({"acks": "1"}, "acks"),
        ({"acks": 0}, "acks"),
        ({"message.timeout.ms": 30000}, "message.timeout.ms"),
        ({"retries": 0}, "retries"),
        ({"max.in.flight.requests.per.connection": 10}, "max.in.flight"),
    ],
)
def test_configs_that_weaken_delivery_are_refused(override, message):
    with pytest.raises(EmitterConfigError, match=message):
        producer_config("127.0.0.1:9092", override)


def test_harmless_overrides_are_kept():
    config = producer_config("127.0.0.1:9092", {"linger.ms": 20, "acks": "all"})
    assert config["linger.ms"] == 20 and config["enable.idempotence"] is True


# --- a broker of our own, to pause -------------------------------------------------------


@pytest.fixture
def own_broker(tmp_path) -> Iterator[tuple[str, int]]:
    from auditseal.infra import broker
    from auditseal.infra.processes import free_port

    service = broker.spawn(free_port(), tmp_path / "broker.log")
    try:
        broker.wait_ready(service, timeout=60)
        broker.create_topic(service.address, "audit.events", 2)
        assert service.pid is not None
        yield service.address, service.pid
    finally:
        os.kill(service.pid, signal.SIGCONT)
        broker.stop(service, timeout=2.0)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_broker_paused_mid_stream_loses_nothing_and_keeps_order(own_broker, tmp_path):
    bootstrap, pid = own_broker
    emitter = Emitter(bootstrap, tmp_path / "state", buffer_max=50)
    sources = ["proxy://a", "proxy://b"]
    for i in range(100):
        emitter.emit_with(sources[i % 2], builder(i)(sources[i % 2]))
    assert emitter.flush(30) == 0
    os.kill(pid, signal.SIGSTOP)
    for i in range(100, 500):
        emitter.emit_with(sources[i % 2], builder(i)(sources[i % 2]))
    waiting = emitter.pending()
    assert waiting["spool"] > 0, waiting  # the memory buffer overflowed into the spool
    assert waiting["memory"] <= 50
    os.kill(pid, signal.SIGCONT)
    assert emitter.close(timeout=60) == 0
    seqs = per_source(consume(bootstrap, "audit.events", 500))
    assert seqs == {s: list(range(1, 251)) for s in sources}


def test_close_with_the_broker_away_keeps_events_for_the_next_run(own_broker, tmp_path):
    bootstrap, pid = own_broker
    state = tmp_path / "state"
    first = Emitter(bootstrap, state, buffer_max=10)
    assert first.emit_with("proxy://a", builder(0)("proxy://a")) == 1
    assert first.flush(30) == 0
    os.kill(pid, signal.SIGSTOP)
    for i in range(1, 40):
        first.emit_with("proxy://a", builder(i)("proxy://a"))
    left = first.close(timeout=2)
    assert left > 0
    os.kill(pid, signal.SIGCONT)
    second = Emitter(bootstrap, state, buffer_max=10)
    assert second.pending()["spool"] >= 39 - 10  # what was in memory went back to the spool
    assert second.emit_with("proxy://a", builder(40)("proxy://a")) == 41
    assert second.close(timeout=60) == 0
    seqs = per_source(consume(bootstrap, "audit.events", 41))["proxy://a"]
    # Everything arrives; a record in flight at the first close may arrive twice, never out of
    # order at its first appearance.
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1, 42))
    assert len(seqs) - len(first_seen) <= 10


def test_pending_events_are_a_prometheus_metric(own_broker, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    bootstrap, pid = own_broker
    registry = CollectorRegistry()
    emitter = Emitter(bootstrap, tmp_path / "state", buffer_max=5, registry=registry)
    os.kill(pid, signal.SIGSTOP)
    for i in range(20):
        emitter.emit_with("proxy://m", builder(i)("proxy://m"))
    text = generate_latest(registry).decode()
    assert 'auditseal_emitter_pending_events{buffer="spool",topic="audit.events"} 15.0' in text
    assert 'auditseal_emitter_pending_events{buffer="memory",topic="audit.events"} 5.0' in text
    os.kill(pid, signal.SIGCONT)
    assert emitter.close(timeout=60) == 0
    assert "auditseal_emitter_pending_events" not in generate_latest(registry).decode()


# --- a damaged spool, delivered through a real broker ----------------------------------------


FORMAT1 = Path(__file__).parents[1] / "unit" / "ingest" / "spool_format1"


def spool_events(state: Path, n: int) -> tuple[list[str], list[tuple[int, int]]]:
    """A spool of ``n`` events as a previous run left it; their ids and [start, end) offsets."""
    source = "proxy://spooled"
    spool = Spool(state, "events")
    ids, frames, start = [], [], 0
    for i in range(1, n + 1):
        event = builder(i)(source)(i)
        end = spool.append(source.encode(), encode_event(event))
        ids.append(event["id"])
        frames.append((start, end))
        start = end
    spool.sync()
    spool.close()
    return ids, frames


def flip_bit(path: Path, byte: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("case", "lost", "quarantined"),
    [
        ("middle record", [10], True),
        ("first record", [0], True),
        ("three records", [3, 4, 15], True),
        ("torn last record", [19], False),
    ],
)
def test_damaged_spool_delivers_every_record_that_checks(
    kafka_bootstrap, new_topic, tmp_path, caplog, case, lost, quarantined
):
    from prometheus_client import CollectorRegistry, generate_latest

    state = tmp_path / "state"
    ids, frames = spool_events(state, 20)
    path = state / "events.spool"
    if case == "torn last record":
        path.write_bytes(path.read_bytes()[: frames[-1][0] + 30])
    else:
        for i in lost:
            flip_bit(path, (frames[i][0] + frames[i][1]) // 2)
    damaged_file = path.read_bytes()
    topic = new_topic()
    registry = CollectorRegistry()
    reported = []
    with caplog.at_level(logging.WARNING):
        emitter = Emitter(
            kafka_bootstrap, state, topic=topic, registry=registry, on_spool_damage=reported.append
        )
    metrics = generate_latest(registry).decode()
    assert emitter.close(timeout=60) == 0
    expected = [x for i, x in enumerate(ids) if i not in lost]
    got = [event["id"] for _key, event in consume(kafka_bootstrap, topic, len(expected))]
    assert got == expected, case
    kept = sorted(state.glob("events.spool.damaged-*"))
    damaged = f'auditseal_emitter_spool_damaged_records_total{{topic="{topic}"}}'
    if quarantined:
        assert [p.read_bytes() for p in kept] == [damaged_file]
        assert len(reported) == 1 and emitter.spool_damage == reported
        message = str(reported[0])
        assert str(path) in message and str(kept[0]) in message
        assert f"{len(lost)} damaged record(s)" in message
        assert f"{20 - len(lost)} record(s) that check were recovered" in message
        assert message in caplog.text
        assert f"{damaged} {float(len(lost))}" in metrics
    else:
        assert kept == [] and reported == [] and emitter.spool_damaged_records == 0
        assert f"{damaged} 0.0" in metrics
        assert "torn last record of" in caplog.text


def test_a_format1_spool_is_delivered(kafka_bootstrap, new_topic, tmp_path):
    shutil.copytree(FORMAT1, tmp_path / "state")
    topic = new_topic()
    emitter = Emitter(kafka_bootstrap, tmp_path / "state", topic=topic, registry=_registry())
    assert emitter.close(timeout=60) == 0
    got = [event["id"] for _key, event in consume(kafka_bootstrap, topic, 3)]
    assert got == ["format1-3", "format1-4", "format1-5"]


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


# --- a proxy killed while the broker is away -------------------------------------------------

# The emitting proxy: 200 events with the broker up, then (once told the broker is away) events
# without end, each printed as "sequence monotonic-time" after emit() returned for it.
CRASH_CHILD = """
import sys, time
from auditseal.ingest import events
from auditseal.ingest.emitter import Emitter

bootstrap, state = sys.argv[1], sys.argv[2]
source = "proxy://crash"
emitter = Emitter(bootstrap, state)

def build(i):
    return lambda seq: events.api_activity(
        source, seq, {"name": "alice"}, "GET", {"name": f"/v1/items/{i}"}, "success", "10.0.0.1"
    )

for i in range(200):
    emitter.emit_with(source, build(i))
assert emitter.flush(60) == 0
print("ready", flush=True)
sys.stdin.readline()
i = 200
while True:
    seq = emitter.emit_with(source, build(i))
    print(seq, time.monotonic(), flush=True)
    i += 1
    if i % 10 == 0:
        time.sleep(0.005)
"""


def test_proxy_killed_during_an_outage_loses_at_most_the_documented_window(own_broker, tmp_path):
    bootstrap, pid = own_broker
    state = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, bootstrap, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering
        child.stdin.write("go\n")
        child.stdin.flush()
        lines = []
        while len(lines) < 2_000:
            line = child.stdout.readline()
            assert line, "the emitting process ended early"
            lines.append(line)
        child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # every event the child printed before it died: sequence -> when emit() returned for it
    accepted: dict[int, float] = {}
    for line in [*lines, *rest.splitlines()]:
        seq, at = line.split()
        accepted[int(seq)] = float(at)
    os.kill(pid, signal.SIGCONT)
    emitter = Emitter(bootstrap, state, registry=_registry())
    assert emitter.close(timeout=60) == 0
    delivered = per_source(consume(bootstrap, "audit.events", 200 + len(accepted)))["proxy://crash"]
    first_seen = list(dict.fromkeys(delivered))
    assert first_seen == sorted(first_seen)  # order kept at each event's first appearance
    window = DEFAULT_SPOOL_AFTER + POLL_INTERVAL
    due = {seq for seq, at in accepted.items() if at <= killed_at - window}
    missing = sorted(due - set(delivered))
    assert not missing, f"{len(missing)} of {len(due)} accepted events lost: {missing[:10]}"
    assert set(range(1, 201)) <= set(delivered)
