"""The emitter against a real broker: order per source, refusals, a paused broker, restarts."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator

import orjson
import pytest

from ingest import events
from ingest.emitter import Emitter, EmitterConfigError, producer_config
from ingest.errors import EnvelopeError

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
    assert any(str(e).startswith("data.actor.user") for e in info.value.errors)
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
    from infra import broker
    from infra.processes import free_port

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
