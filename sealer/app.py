"""The sealer's Kafka wiring: read records in batches, call the pipeline, publish, acknowledge.

Everything that decides lives in :mod:`auditseal.sealer.pipeline`; this module only moves records
between Kafka and it, in the order the pipeline's docstring prescribes (store, publish, then
acknowledge). One thread does it all, with one confluent-kafka consumer (a member of the
sealers' consumer group, cooperative-sticky assignment) and one producer for the sealed stream:

* ``consume()`` hands over up to :data:`BATCH` records at once; the consumer's group callbacks
  (assignment, revocation) run inside that call, between batches, never in the middle of one;
* an assigned partition starts at the offset after what the *store* holds of it (given to
  ``incremental_assign``): the group's committed offsets are no proof that a record was sealed,
  since a store restored from a backup ends before them;
* a block's offsets are stored for the next auto-commit only after the block was committed to
  the store and delivered to the sealed stream.

docs/ARCHITECTURE.md says why this is not a Faust agent: Faust's per-event stream machinery
cost more than the whole sealing pipeline.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaPartition

from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.metrics import SealerMetrics
from auditseal.sealer.partition_probe import probe
from auditseal.sealer.pipeline import (
    KafkaRecord,
    Sealed,
    Sealer,
    SealerConfig,
    TopicPartition,
    Triage,
)
from auditseal.sealer.publisher import Publisher
from auditseal.sealer.sealed_stream import encode_block
from auditseal.sealer.signer import load_signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.tls import ServerTLS
from auditseal.verifier.origin import generation_origin

__all__ = [
    "PRODUCER_MAX_MESSAGE_BYTES",
    "SealerWorker",
    "WorkerConfig",
    "run_worker",
]

log = logging.getLogger(__name__)

BATCH = 1000  # records per consume() call
CHECK_ENDS_EVERY = 5.0  # seconds between end-offset checks of the assigned partitions
LIBRDKAFKA_REPEAT = 60.0  # seconds before the same librdkafka line is logged again
# A sealed-stream value is at most MAX_MESSAGE_BYTES; key and framing come on top, and Kafka's
# default message.max.bytes (1 MiB) is the broker's bound.
PRODUCER_MAX_MESSAGE_BYTES = 1_048_576
RESEEK_AFTER = 3.0  # a rewinding partition still delivering old records this long after its
# seek was moved by something else (a rebalance): seek again


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    store_path: Location
    key_file: Path | str  # a key file or a pkcs11: URI
    sealer: SealerConfig
    topic: str = "audit.events"
    sealed_topic: str = "audit.sealed"
    group: str = "auditseal-sealer"
    session_timeout_s: float = 6.0
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9464)
    # --kafka-config: librdkafka security properties for the consumer, producer and probe
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    metrics_tls: ServerTLS | None = None
    metrics_insecure_plaintext: bool = False
    previous_key_file: Path | str | None = None
    """During a key rotation, the old key (docs/SEALER.md, Rotating the log key)."""

    @property
    def tick_s(self) -> float:
        """The longest wait for records before due blocks are sealed and partitions checked."""
        return min(0.1, self.sealer.max_interval_s / 2)


class SealerWorker:
    """One sealer process: store, pipeline, the consumer and the sealed stream's producer."""

    def __init__(self, config: WorkerConfig, triage: Triage) -> None:
        self.config = config
        self.store = BlockStore.open(config.store_path, create=True)
        previous = config.previous_key_file
        writer = LogWriter(
            self.store,
            load_signer(config.key_file),
            _now_ms,
            load_signer(previous) if previous is not None else None,
        )
        self.sealer = Sealer(writer, config.sealer, triage)
        self.name = f"{socket.gethostname()}/{os.getpid()}"  # in the store's claims
        self.highwater: dict[TopicPartition, int] = {}
        self.assignment: set[TopicPartition] = set()
        self.seeks: set[TopicPartition] = set()  # reset partitions to seek to their start
        self.sought_at: dict[TopicPartition, float] = {}
        self.checked_at = 0.0
        self.stopping = threading.Event()
        self.metrics = SealerMetrics(self.lag)
        # librdkafka's own lines (connection failures, authentication errors) at the worker's
        # log level, each at most once per LIBRDKAFKA_REPEAT (it retries a dead broker every
        # few ms); the partition probe's throwaway consumer stays quiet.
        librdkafka = logging.getLogger("auditseal.sealer.kafka")
        if not any(isinstance(f, _Repeats) for f in librdkafka.filters):
            librdkafka.addFilter(_Repeats(LIBRDKAFKA_REPEAT))
        common = {
            **config.kafka.confluent(),
            "bootstrap.servers": config.bootstrap,
            "logger": librdkafka,
        }
        self.consumer = Consumer(
            {
                **common,
                "group.id": config.group,
                "partition.assignment.strategy": "cooperative-sticky",
                "auto.offset.reset": "earliest",
                "enable.auto.offset.store": False,  # stored per block, after its publication
                "auto.commit.interval.ms": 1000,
                "session.timeout.ms": int(config.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(max(0.5, config.session_timeout_s / 6) * 1000),
            }
        )
        self.producer = Producer(
            {
                **common,
                "acks": "all",
                "message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES,
                "linger.ms": 0,
                # A failure is reported (and the block produced again) well within the patience.
                "message.timeout.ms": 30_000,
            }
        )
        self.publisher: Publisher[tuple[TopicPartition, int]] = Publisher(
            self.producer, config.sealed_topic, self.published
        )

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        """Seal until :meth:`stop` (SIGTERM, SIGINT); then leave the group. What is buffered
        is never acknowledged: the partitions' next owner receives it again."""
        if self.config.metrics_listen is not None:
            from auditseal.transport.listen import serve_metrics

            serve_metrics(
                self.config.metrics_listen,
                self.metrics.registry,
                self.config.metrics_tls,
                self.config.metrics_insecure_plaintext,
            )
        self.consumer.subscribe(
            [self.config.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self.stopping.is_set():
                for message in self.consumer.consume(BATCH, self.config.tick_s):
                    self.receive(message)
                self.tick()
        finally:
            try:
                self.publisher.flush(10.0)  # what is still in flight is republished on restart
            finally:
                self.consumer.close()  # commits, leaves the group; revocation drops buffers
                self.store.close()

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def receive(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: %s", error.str())
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        kind, timestamp = message.timestamp()
        tp = (topic, partition)
        dropped = self.sealer.dropped
        skipped = self.sealer.skipped
        sealed = self.sealer.add(
            KafkaRecord(
                topic,
                partition,
                offset,
                -1 if kind == TIMESTAMP_NOT_AVAILABLE else timestamp,
                message.key(),
                message.value(),
            )
        )
        if self.sealer.skipped > skipped:
            self.metrics.skipped.inc()  # already in the store: a redelivery
        elif (
            self.sealer.dropped > dropped
            and tp not in self.seeks
            and time.monotonic() - self.sought_at.get(tp, 0.0) > RESEEK_AFTER
        ):
            # A reset partition being sought back to its start: read again after the seek.
            # Records still coming from elsewhere mean a rebalance moved our seek: seek again.
            self.seeks.add(tp)
        if sealed is not None:
            self.finish(sealed)
        self.handle_resets()

    def tick(self) -> None:
        """Between batches: seal due blocks, seek reset partitions, check the partitions' ends."""
        for sealed in self.sealer.due():
            self.finish(sealed)
        self.seek_reset()
        self.check_ends()
        self.publisher.poll()
        for tp in self.assignment:
            _low, high = self.consumer.get_watermark_offsets(KafkaPartition(*tp), cached=True)
            if high >= 0:
                self.highwater[tp] = high

    def lag(self) -> dict[str, int]:
        return {
            self.sealer.origin(tp): max(0, hw - 1 - self.sealer.last_sealed_offset(tp))
            for tp, hw in list(self.highwater.items())
        }

    # -- resets ----------------------------------------------------------------------------

    def handle_resets(self) -> None:
        """Say loudly that a partition was reset, and schedule its seek to the start."""
        for r in self.sealer.take_resets():
            log.error(
                "topic partition %s/%d was reset: log %s is closed, the partition is sealed "
                "again from its start as log %s (generation %d): %s",
                r.tp[0],
                r.tp[1],
                r.closed,
                r.origin,
                r.generation,
                r.reason,
            )
            self.metrics.resets.labels(r.closed).inc()
            self.metrics.generation.labels(self.config.sealer.origin(*r.tp)).set(r.generation)
            self.seeks.add(r.tp)

    def seek_reset(self) -> None:
        """Seek each reset partition to its first offset; the sealer accepts from there."""
        for tp in sorted(self.seeks):
            if tp not in self.assignment:
                self.seeks.discard(tp)
                continue
            try:
                start = self._start_of(tp)
                self.consumer.seek(KafkaPartition(*tp, start))
            except KafkaException as exc:  # not fetching yet, or the broker is away
                log.warning("cannot seek %s/%d to its start yet: %s", tp[0], tp[1], exc)
                continue
            self.seeks.discard(tp)
            self.sought_at[tp] = time.monotonic()
            self.sealer.rewound(tp, start)

    def _start_of(self, tp: TopicPartition) -> int:
        low, _high = self.consumer.get_watermark_offsets(KafkaPartition(*tp), timeout=5.0)
        return max(0, low)

    def check_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Compare each partition's record at its log's last sealed offset with the store's."""
        last = {
            tp: pos
            for tp in partitions
            if not self.sealer.rewinding(tp) and (pos := self.sealer.last_sealed_offset(tp)) >= 0
        }
        logs = {tp: self.sealer.origin(tp) for tp in last}
        by_topic: dict[str, dict[int, int]] = defaultdict(dict)
        for (topic, partition), pos in last.items():
            by_topic[topic][partition] = pos
        for topic, positions in by_topic.items():
            found = probe(self.config.bootstrap, topic, positions, self.config.kafka.confluent())
            for partition, record in found.items():
                tp = (topic, partition)
                sealed = self.sealer.check_partition(tp, record, positions[partition], logs[tp])
                if sealed is not None:
                    self.finish(sealed)
        self.handle_resets()

    def check_ends(self) -> None:
        """Every few seconds: a partition whose end offset is below the log's resume offset
        may be a new topic the consumer waits past (Tansu returns nothing, not an error, for a
        fetch past the end, and reports low end offsets: the record itself is read to decide)."""
        if time.monotonic() - self.checked_at < CHECK_ENDS_EVERY or not self.assignment:
            return
        self.checked_at = time.monotonic()
        suspects = set()
        for tp in sorted(self.assignment):
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    KafkaPartition(*tp), timeout=2.0, cached=False
                )
            except KafkaException:  # broker away: next time
                return
            if high <= self.sealer.last_sealed_offset(tp):
                suspects.add(tp)
        if suspects:
            self.check_partitions(suspects)

    # -- publish and acknowledge -----------------------------------------------------------

    def finish(self, sealed: Sealed) -> None:
        """Step 1 (the commit) is done; now publish (2); :meth:`published` acknowledges (3)."""
        origin = sealed.origin
        labels = self.metrics
        labels.blocks.labels(origin).inc()
        labels.events.labels(origin).inc(len(sealed.records))
        labels.invalid.labels(origin).inc(sum(1 for r in sealed.records if r.flag))
        labels.latency.observe(max(0.0, time.time() - sealed.oldest_timestamp_ms / 1000))
        self.publish_outbox(origin, just_sealed=sealed)

    def publish_outbox(self, origin: str, just_sealed: Sealed | None = None) -> None:
        """Publish every stored, unpublished block of ``origin`` not in flight, oldest first."""
        for number in self.store.unpublished(origin):
            if self.publisher.in_flight(origin, number):
                continue
            acknowledge = None
            if just_sealed is not None and just_sealed.block.header.number == number:
                block, records, gaps = just_sealed.block, just_sealed.records, just_sealed.gaps
                acknowledge = (just_sealed.tp, just_sealed.last_offset)
            else:
                block = self.store.sealed_block(origin, number)
                h = block.header
                records = tuple(self.store.records(origin, h.start, h.end))
                gaps = tuple(self.store.gaps(origin, number))
            messages = encode_block(block, records, gaps)
            self.publisher.publish(origin, number, messages, acknowledge)

    def published(
        self, origin: str, number: int, settled: tuple[TopicPartition, int] | None
    ) -> None:
        """Every message of the block was acknowledged: mark it, and store the offsets after
        ``settled`` (the last offset of the newest block of the log with none before it in
        flight)."""
        self.store.mark_published(origin, number)
        if settled is None:
            return
        tp, last_offset = settled
        if tp not in self.assignment:
            return  # revoked meanwhile: the next owner reads the store
        try:
            self.consumer.store_offsets(offsets=[KafkaPartition(*tp, last_offset + 1)])
        except (KafkaException, RuntimeError) as exc:  # revoked, or the consumer closed
            log.info("offsets of %s/%d not stored: %s", tp[0], tp[1], exc)

    # -- the group -------------------------------------------------------------------------

    def _on_revoke(self, _consumer: Any, partitions: list[KafkaPartition]) -> None:
        self.revoked({(p.topic, p.partition) for p in partitions})

    def _on_assign(self, consumer: Any, partitions: list[KafkaPartition]) -> None:
        starts = self.assigned({(p.topic, p.partition) for p in partitions})
        consumer.incremental_assign([KafkaPartition(*tp, o) for tp, o in sorted(starts.items())])

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.sealer.forget(partitions)  # never acknowledged: the next owner receives them
        self.assignment -= partitions
        for tp in partitions:
            self.highwater.pop(tp, None)
            self.seeks.discard(tp)

    def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Claim the partitions' logs and say where reading starts: after what the store holds,
        or at the partition's start when it was found reset."""
        self.sealer.forget(partitions)  # another worker may have sealed meanwhile
        self.assignment |= partitions
        rewind = set()
        for tp in sorted(partitions):
            self.sealer.claim(tp, self.name)  # a worker that held it before can append no more
            base = self.config.sealer.origin(*tp)
            generation = self.store.generation(base)
            for g in range(generation + 1):  # a closed generation's last blocks too
                if self.store.has_log(origin := generation_origin(base, g)):
                    self.publish_outbox(origin)
            if generation > 0:
                self.metrics.generation.labels(base).set(generation)
                if self.sealer.last_sealed_offset(tp) < 0:
                    rewind.add(tp)  # crashed between starting the generation and its first block
        # Is each partition still the one its log was built from? A rebalance follows every
        # broker restart.
        self.check_partitions(partitions - rewind)
        starts = {}
        for tp in partitions:
            if tp in rewind or tp in self.seeks or self.sealer.rewinding(tp):
                # Read from the start; the exact offset is sought once the partition fetches.
                self.sealer.rewind(tp)
                self.seeks.add(tp)
                starts[tp] = OFFSET_BEGINNING
            else:
                starts[tp] = self.sealer.last_sealed_offset(tp) + 1
        return starts


class _Repeats(logging.Filter):
    """Lets a line through once per ``interval`` seconds, saying how often it was held back
    (librdkafka's lines differ only in their timings: "... (after 0ms in state CONNECT)")."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = text.split(" (after ", 1)[0]
        now = time.monotonic()
        last, held = self.seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self.seen[key] = (last, held + 1)
            return False
        self.seen[key] = (now, 0)
        if held:
            record.msg, record.args = f"{text} ({held} more like it since)", None
        return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_worker(config: WorkerConfig, triage: Triage) -> None:
    """Run one worker in this process until SIGTERM or SIGINT."""
    worker = SealerWorker(config, triage)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
