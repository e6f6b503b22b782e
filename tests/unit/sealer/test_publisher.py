"""The sealed stream's publisher: a block counts as published only once every message of it is
acknowledged, offsets never move past a block still in flight, a failed block is produced again
until the patience runs out. A fake producer stands in for librdkafka (pure logic only; the
integration tests run the real one)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from auditseal.sealer import publisher as publisher_module
from auditseal.sealer.publisher import MAX_IN_FLIGHT, PATIENCE, Publisher


class FakeProducer:
    """Queues produced messages; ``deliver`` reports them, as librdkafka's poll() would."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes, bytes, Any]] = []
        self.produced: list[tuple[bytes, bytes]] = []
        self.full = 0  # produce() calls to refuse with BufferError first
        self.on_poll: Any = None

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.queued.append((topic, value, key, on_delivery))
        self.produced.append((key, value))

    def poll(self, _timeout: float = 0.0) -> int:
        if self.on_poll is not None:
            self.on_poll()
        return 0

    def deliver(self, n: int | None = None, error: Any = None) -> None:
        batch = self.queued[: n if n is not None else len(self.queued)]
        del self.queued[: len(batch)]
        for _topic, _value, _key, report in batch:
            report(error, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Publisher[str], FakeProducer, Clock, list[tuple[str, int, str | None]]]:
    producer, clock = FakeProducer(), Clock()
    published: list[tuple[str, int, str | None]] = []
    pub: Publisher[str] = Publisher(
        producer, "audit.sealed", lambda o, n, a: published.append((o, n, a)), clock
    )
    return pub, producer, clock, published


def test_a_block_counts_only_when_every_message_is_acknowledged():
    pub, producer, _, published = make()
    pub.publish("log", 1, [b"part-0", b"part-1"], "ack-1")
    assert producer.produced == [(b"log", b"part-0"), (b"log", b"part-1")]
    assert pub.in_flight("log", 1)
    producer.deliver(1)
    assert published == []  # one part still unacknowledged
    producer.deliver(1)
    assert published == [("log", 1, "ack-1")]
    assert not pub.in_flight("log", 1)


def test_offsets_never_move_past_a_block_still_in_flight():
    pub, producer, _, published = make()
    pub.publish("log", 1, [b"one"], "after-1")
    pub.publish("log", 2, [b"two"], "after-2")
    pub.publish("other", 7, [b"seven"], "after-7")
    # Block 2 and the other log's block are acknowledged before block 1.
    two, seven = producer.queued[1], producer.queued[2]
    del producer.queued[1:]
    two[3](None, None)
    seven[3](None, None)
    assert published == [("log", 2, None), ("other", 7, "after-7")]
    producer.deliver()  # block 1: now both are settled, and the newest acknowledge is given
    assert published[-1] == ("log", 1, "after-2")


def test_a_failed_block_is_produced_again_after_a_pause(caplog):
    pub, producer, clock, published = make()
    pub.publish("log", 3, [b"a", b"b"], "after-3")
    producer.deliver(1)
    with caplog.at_level(logging.WARNING):
        producer.deliver(1, error=KafkaError(KafkaError.UNKNOWN))
    assert published == []
    assert "publishing block 3 of log to the sealed stream failed" in caplog.text
    pub.poll()
    assert len(producer.produced) == 2  # not before the pause
    clock.now += publisher_module.FIRST_PAUSE
    pub.poll()
    assert producer.produced[2:] == [(b"log", b"a"), (b"log", b"b")]  # the whole block again
    producer.deliver()
    assert published == [("log", 3, "after-3")]


def test_a_block_that_cannot_be_published_within_the_patience_stops_the_worker():
    pub, producer, clock, published = make()
    pub.publish("log", 4, [b"a"])
    with pytest.raises(KafkaException):
        while True:
            producer.deliver(error=KafkaError(KafkaError._MSG_TIMED_OUT))
            clock.now += publisher_module.LAST_PAUSE
            pub.poll()
            assert clock.now < 1000.0 + 2 * PATIENCE, "never gave up"
    assert published == []
    assert clock.now - 1000.0 <= PATIENCE + publisher_module.LAST_PAUSE


def test_at_most_so_many_blocks_wait_for_the_broker():
    pub, producer, _, published = make()
    for n in range(MAX_IN_FLIGHT):
        pub.publish("log", n, [b"x"])
    producer.on_poll = lambda: producer.deliver(1)  # the broker acknowledges one per poll
    pub.publish("log", MAX_IN_FLIGHT, [b"x"])  # waits until one is acknowledged
    assert published[0][:2] == ("log", 0)
    assert len(pub.pending("log")) == MAX_IN_FLIGHT


def test_a_full_local_queue_is_waited_on_not_dropped():
    pub, producer, _, published = make()
    producer.full = 3
    pub.publish("log", 1, [b"a"], "after-1")
    assert producer.produced == [(b"log", b"a")]
    producer.deliver()
    assert published == [("log", 1, "after-1")]


def test_flush_waits_for_what_is_in_flight():
    pub, producer, _, published = make()
    pub.publish("log", 1, [b"a"])
    producer.on_poll = producer.deliver
    pub.flush(5.0)
    assert published == [("log", 1, None)]
