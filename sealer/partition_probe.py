"""Reading the record Kafka holds at a log's last sealed offset (the topic-reset check).

I/O only; :meth:`auditseal.sealer.pipeline.Sealer.check_partition` decides. Reading starts at the
lower of that offset and the partition's reported end offset, because Tansu reports end offsets
below the real end (the start of the last batch) and returns nothing, not OFFSET_OUT_OF_RANGE,
for a fetch past the end: reading forward from a reported end always reaches either the
record or the end-of-partition event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from auditseal.sealer.pipeline import KafkaRecord

__all__ = ["probe"]

_quiet = logging.getLogger("auditseal.sealer.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def probe(
    bootstrap: str,
    topic: str,
    last: Mapping[int, int],
    kafka_config: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> dict[int, KafkaRecord | None]:
    """For each partition ``p`` of ``last``: the first record at or after offset ``last[p]``,
    or None if the partition ends before it. A partition left out was not decided in time
    (broker unreachable, slow): the caller asks again later, it MUST NOT assume a reset.
    ``kafka_config``: librdkafka security properties (--kafka-config)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            **(kafka_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": "auditseal-sealer-probe",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "logger": _quiet,
        }
    )
    out: dict[int, KafkaRecord | None] = {}
    try:
        starts = {}
        for p, position in last.items():
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout, cached=False
            )
            starts[p] = max(low, min(position, high))
        consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        deadline = time.monotonic() + timeout
        while len(out) < len(last) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.partition() in out or msg.partition() not in last:
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and offset <= last[partition]:
                    out[partition] = None  # nothing at or after the offset the log ends with
                elif error.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                    out[partition] = None
                continue
            if offset >= last[partition]:
                ts = msg.timestamp()[1]
                out[partition] = KafkaRecord(topic, partition, offset, ts, msg.key(), msg.value())
    except KafkaException:
        pass  # undecided: asked again later
    finally:
        consumer.close()
    return out
