"""Every record the emitter and the gateway put on Kafka is a CloudEvent in the Kafka protocol
binding's structured content mode, as the official CloudEvents Python SDK reads it; and
``sequence`` stays within the CloudEvents Integer range everywhere it enters."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from auditseal.infra.processes import free_port
from auditseal.ingest import events
from auditseal.ingest.emitter import Emitter
from auditseal.ingest.errors import EnvelopeError
from tests.integration.test_gateway import SOURCE, start_gateway

pytestmark = pytest.mark.kafka

INT32_MAX = (1 << 31) - 1


def consume_records(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Every record of ``topic`` as confluent-kafka messages (headers included)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "ce-reader", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            out.append(msg)
    consumer.close()
    assert len(out) == expected, f"{len(out)} of {expected} records"
    return out


def read_with_sdk(msg) -> CloudEvent:
    """The record as the CloudEvents SDK's Kafka binding reads it, after checking the header
    that says structured mode (the SDK's ``from_structured`` itself does not look at it)."""
    headers = dict(msg.headers() or [])
    assert headers == {"content-type": b"application/cloudevents+json"}
    assert not any(name.startswith("ce_") for name in headers)  # structured, not binary mode
    message = KafkaMessage(headers=headers, key=msg.key(), value=msg.value())
    event = from_structured(message, JSONFormat(), CloudEvent)
    assert isinstance(event, CloudEvent)
    return event


def assert_same(event: CloudEvent, sent: dict) -> None:
    assert event.get_id() == sent["id"]
    assert event.get_source() == sent["source"]
    assert event.get_type() == sent["type"]
    assert event.get_specversion() == "1.0"
    assert event.get_extension("sequence") == sent["sequence"]
    # Kafka key = source: the binding surfaces it as the partitionkey extension.
    assert event.get_extension("partitionkey") == sent["source"]
    assert event.get_data() == sent["data"]


def api_event(source: str, seq: int, path: str = "/x") -> dict:
    return events.api_activity(
        source, seq, {"name": "alice"}, "GET", {"name": path}, "success", "10.1.2.3"
    )


def unnumbered(source: str, i: int) -> dict:
    event = api_event(source, 1, f"/v1/items/{i}")
    del event["sequence"]
    return event


def test_emitter_records_direct_and_replayed_from_the_spool_are_cloudevents(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    source = "proxy://ce-emitter"
    # A first run that never reaches a broker: its events wait in the spool ...
    away = Emitter(f"127.0.0.1:{free_port()}", tmp_path, topic=topic, spool_after=0.05)
    spooled = [unnumbered(source, i) for i in range(3)]
    for event in spooled:
        away.emit(event)
    assert away.close(timeout=0.5) == 3
    # ... and the next run replays them from the spool before the events it is given.
    emitter = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    direct = [unnumbered(source, i) for i in range(3, 6)]
    for event in direct:
        emitter.emit(event)
    assert emitter.close() == 0
    sent = [{**e, "sequence": n} for n, e in enumerate(spooled + direct, start=1)]
    records = consume_records(kafka_bootstrap, topic, len(sent))
    for msg, want in zip(records, sent, strict=True):
        assert_same(read_with_sdk(msg), want)


def test_gateway_records_are_cloudevents(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    gw = start_gateway(kafka_bootstrap, topic, tmp_path)
    try:
        sent = [api_event(SOURCE, n, f"/g/{n}") for n in (1, 2, INT32_MAX)]
        status, payload, _ = gw.request("POST", "/v1/events", orjson.dumps(sent), gw.tokens[SOURCE])
        assert status == 202, payload
        for msg, want in zip(consume_records(kafka_bootstrap, topic, 3), sent, strict=True):
            assert_same(read_with_sdk(msg), want)
    finally:
        gw.stop()


def test_gateway_refuses_a_sequence_beyond_the_cloudevents_integer(
    kafka_bootstrap, new_topic, tmp_path
):
    topic = new_topic()
    gw = start_gateway(kafka_bootstrap, topic, tmp_path)
    try:
        body = orjson.dumps({**api_event(SOURCE, 1), "sequence": 3_000_000_000})
        status, payload, _ = gw.request("POST", "/v1/events", body, gw.tokens[SOURCE])
        assert status == 400
        assert payload["errors"] == [f"sequence: must be at most {INT32_MAX}"], payload
    finally:
        gw.stop()


@pytest.mark.parametrize("stored", [3_000_000_000, INT32_MAX + 1])
def test_emitter_refuses_a_sequence_beyond_the_cloudevents_integer(
    kafka_bootstrap, new_topic, tmp_path: Path, stored: int
):
    source = "proxy://ce-limit"
    (tmp_path / "sequences.json").write_text(json.dumps({source: stored}))
    emitter = Emitter(kafka_bootstrap, tmp_path, topic=new_topic())
    try:
        with pytest.raises(EnvelopeError) as info:
            emitter.emit(unnumbered(source, 0))
        assert [str(e) for e in info.value.errors] == [f"sequence: must be at most {INT32_MAX}"]
    finally:
        emitter.close()


def test_emitter_accepts_the_largest_cloudevents_integer(kafka_bootstrap, new_topic, tmp_path):
    source = "proxy://ce-limit"
    topic = new_topic()
    (tmp_path / "sequences.json").write_text(json.dumps({source: INT32_MAX}))
    emitter = Emitter(kafka_bootstrap, tmp_path, topic=topic)
    event = unnumbered(source, 0)
    assert emitter.emit(event) == INT32_MAX
    assert emitter.close() == 0
    [msg] = consume_records(kafka_bootstrap, topic, 1)
    assert_same(read_with_sdk(msg), {**event, "sequence": INT32_MAX})
