"""The Faust wiring of the sealer: decode records, call the pipeline, publish, acknowledge.

Everything that decides lives in :mod:`auditseal.sealer.pipeline`; this module only moves records
between Faust and it, in the order the pipeline's docstring prescribes (store, publish,
acknowledge).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError

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
from auditseal.sealer.sealed_stream import encode_block
from auditseal.sealer.signer import load_signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location
from auditseal.store.model import Record
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.tls import ServerTLS
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.origin import generation_origin

__all__ = ["WorkerConfig", "create_app"]

log = logging.getLogger(__name__)

PUBLISH_PATIENCE = 120.0  # seconds a block may wait for the sealed stream before the worker stops


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    store_path: Location
    key_file: Path | str  # a key file or a pkcs11: URI
    state_dir: Path
    sealer: SealerConfig
    topic: str = "audit.events"
    sealed_topic: str = "audit.sealed"
    group: str = "auditseal-sealer"
    session_timeout_s: float = 6.0
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9464)
    # --kafka-config: aiokafka settings for Faust, librdkafka properties for the probe
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    metrics_tls: ServerTLS | None = None
    metrics_insecure_plaintext: bool = False
    previous_key_file: Path | str | None = None
    """During a key rotation, the old key (docs/SEALER.md, Rotating the log key)."""


class _Worker:
    """The state one worker process holds: store, pipeline, unacknowledged events."""

    def __init__(self, config: WorkerConfig, triage: Triage, sealed_topic: Any) -> None:
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
        self.sealed_topic = sealed_topic
        self.pending: dict[TopicPartition, deque[Any]] = defaultdict(deque)
        self.highwater: dict[TopicPartition, int] = {}
        self.assignment: set[TopicPartition] = set()
        self.seeks: set[TopicPartition] = set()  # reset partitions to seek to their start
        self.resume: dict[TopicPartition, int] = {}  # assigned: the store's next offsets
        self.sought_at: dict[TopicPartition, float] = {}
        self.checked_at = 0.0
        self.metrics = SealerMetrics(self.lag)

    def lag(self) -> dict[str, int]:
        return {
            self.sealer.origin(tp): max(0, hw - 1 - self.sealer.last_sealed_offset(tp))
            for tp, hw in self.highwater.items()
        }

    async def receive(self, event: Any) -> None:
        m = event.message
        tp = (m.topic, m.partition)
        skipped, dropped = self.sealer.skipped, self.sealer.dropped
        sealed = self.sealer.add(
            KafkaRecord(m.topic, m.partition, m.offset, _ms(m.timestamp), m.key, m.value)
        )
        if self.sealer.skipped > skipped:
            event.ack()  # already in the store: a redelivery
            self.metrics.skipped.inc()
        elif self.sealer.dropped > dropped:
            # A reset partition being sought back to its start: read again after the seek.
            # If records keep coming from elsewhere, Faust's own seek (after a rebalance)
            # overrode ours: seek again.
            if tp not in self.seeks and time.monotonic() - self.sought_at.get(tp, 0.0) > 3.0:
                self.seeks.add(tp)
        else:
            self.pending[tp].append(event)
        if sealed is not None:
            await self.finish(sealed)
        self.handle_resets()

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
            self.pending.pop(r.tp, None)  # never acknowledged: read again after the seek
            self.seeks.add(r.tp)

    async def resume_from_store(self, consumer: Any) -> None:
        """Commit, as the group's offsets, the offsets after what the store holds of each newly
        assigned partition: Faust seeks every assigned partition to its committed offset right
        after the rebalance completes, so reading resumes where the store ends. The group's own
        offsets are no proof that a record was sealed: a store restored from a backup ends
        before them, and trusting them would seal the records in between as a gap of the log."""
        offsets = {
            tp: o
            for tp, o in self.resume.items()
            # A partition found reset meanwhile is sought to its start instead.
            if tp in self.assignment and tp not in self.seeks and not self.sealer.rewinding(tp)
        }
        self.resume.clear()
        if not offsets:
            return
        try:
            # Faust's commit of given offsets (its public commit() commits acknowledged ones).
            done = await consumer._commit({faust.types.TP(*tp): o for tp, o in offsets.items()})
        except Exception as exc:  # the group rebalanced again: the next assignment retries
            done, reason = False, str(exc)
        else:
            reason = "the group rebalanced meanwhile"
        if not done:
            log.warning("cannot resume %s from the store's offsets: %s", sorted(offsets), reason)

    async def seek_reset(self, consumer: Any) -> None:
        """Seek each reset partition to its first offset; the sealer accepts from there."""
        for tp in sorted(self.seeks):
            if tp not in self.assignment:
                self.seeks.discard(tp)
                continue
            ftp = faust.types.TP(*tp)
            try:
                start = (await consumer.earliest_offsets(ftp))[ftp]
                await consumer.seek(ftp, start)
            except Exception as exc:  # broker away: try again at the next tick
                log.warning("cannot seek %s/%d to its start yet: %s", tp[0], tp[1], exc)
                continue
            self.seeks.discard(tp)
            self.sought_at[tp] = time.monotonic()
            self.sealer.rewound(tp, start)

    async def check_partitions(self, partitions: set[TopicPartition]) -> None:
        """Compare each partition's record at its log's last sealed offset with the store's."""
        last = {
            tp: pos
            for tp in partitions
            if not self.sealer.rewinding(tp) and (pos := self.sealer.last_sealed_offset(tp)) >= 0
        }
        logs = {tp: self.sealer.origin(tp) for tp in last}  # the generation probed
        by_topic: dict[str, dict[int, int]] = defaultdict(dict)
        for (topic, partition), pos in last.items():
            by_topic[topic][partition] = pos
        for topic, positions in by_topic.items():
            # Sealing goes on while Kafka is read: the sealer compares at the offset probed.
            found = await asyncio.to_thread(
                probe, self.config.bootstrap, topic, positions, self.config.kafka.confluent()
            )
            for partition, record in found.items():
                tp = (topic, partition)
                sealed = self.sealer.check_partition(tp, record, positions[partition], logs[tp])
                if sealed is not None:
                    await self.finish(sealed)
        self.handle_resets()

    async def check_ends(self, consumer: Any) -> None:
        """Every few seconds: a partition whose end offset is below the log's resume offset
        may be a new topic the consumer waits past (Tansu reports low end offsets, so the
        record itself is read to decide)."""
        if time.monotonic() - self.checked_at < 5.0 or not self.assignment:
            return
        self.checked_at = time.monotonic()
        tps = sorted(self.assignment)
        try:
            ends = await consumer.highwaters(*(faust.types.TP(*tp) for tp in tps))
        except Exception:  # broker away: next time
            return
        suspects = {
            tp
            for tp in tps
            if ends.get(faust.types.TP(*tp)) is not None
            and ends[faust.types.TP(*tp)] <= self.sealer.last_sealed_offset(tp)
        }
        if suspects:
            await self.check_partitions(suspects)

    async def finish(self, sealed: Sealed) -> None:
        """Step 1 (the commit) is done; now publish (2) and acknowledge (3)."""
        origin = sealed.origin
        labels = self.metrics
        labels.blocks.labels(origin).inc()
        labels.events.labels(origin).inc(len(sealed.records))
        labels.invalid.labels(origin).inc(sum(1 for r in sealed.records if r.flag))
        labels.latency.observe(max(0.0, time.time() - sealed.oldest_timestamp_ms / 1000))
        await self.publish_outbox(origin, just_sealed=sealed)
        events = self.pending[sealed.tp]
        while events and events[0].message.offset <= sealed.last_offset:
            events.popleft().ack()

    async def publish_outbox(self, origin: str, just_sealed: Sealed | None = None) -> None:
        """Publish every stored, unpublished block of ``origin``, oldest first."""
        for number in self.store.unpublished(origin):
            if just_sealed is not None and just_sealed.block.header.number == number:
                block, records, gaps = just_sealed.block, just_sealed.records, just_sealed.gaps
            else:
                block = self.store.sealed_block(origin, number)
                h = block.header
                records = tuple(self.store.records(origin, h.start, h.end))
                gaps = tuple(self.store.gaps(origin, number))
            await self._send(origin, block, records, gaps)
            self.store.mark_published(origin, number)

    async def _send(
        self,
        origin: str,
        block: SealedBlock,
        records: tuple[Record, ...],
        gaps: tuple[tuple[int, int], ...],
    ) -> None:
        messages = encode_block(block, records, gaps)
        delay = 0.5
        deadline = time.monotonic() + PUBLISH_PATIENCE
        while True:
            try:
                futures = [
                    await self.sealed_topic.send(key=origin.encode(), value=message)
                    for message in messages
                ]
                for fut in futures:
                    await fut  # delivered (acks=-1) before the block counts as published
                return
            except KafkaError as exc:
                # The block is safe in the store; publishing it again is a republish, which
                # readers of the sealed stream expect (FORMAT.md §7). A broker that restarts
                # or re-creates the topic answers errors for a while: wait for it, and give up
                # (a crash the supervisor restarts from the store) only after the patience.
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "publishing block %d of %s to the sealed stream failed (%r); again in %.1f s",
                    block.header.number,
                    origin,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.sealer.forget(partitions)
        self.assignment -= partitions
        for tp in partitions:
            self.resume.pop(tp, None)
            self.pending.pop(tp, None)  # never acknowledged: the next owner receives them
            self.highwater.pop(tp, None)
            self.seeks.discard(tp)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.sealer.forget(partitions)  # another worker may have sealed meanwhile
        self.assignment |= partitions
        for tp in sorted(partitions):
            self.sealer.claim(tp, self.name)  # a worker that held it before can append no more
            base = self.config.sealer.origin(*tp)
            generation = self.store.generation(base)
            for g in range(generation + 1):  # a closed generation's last blocks too
                if self.store.has_log(origin := generation_origin(base, g)):
                    await self.publish_outbox(origin)
            if generation > 0:
                self.metrics.generation.labels(base).set(generation)
                if self.sealer.last_sealed_offset(tp) < 0:
                    # Crashed between starting the generation and its first block.
                    self.sealer.rewind(tp)
                    self.seeks.add(tp)
                    continue
            self.resume[tp] = self.sealer.last_sealed_offset(tp) + 1
        # A rebalance follows every broker restart: is each partition still the one its
        # log was built from? (Partitions are paused until this returns.)
        await self.check_partitions(partitions)


def _ms(seconds: float) -> int:
    """Kafka's millisecond timestamp back from Faust's float seconds: rounded, since
    ``ms / 1000 * 1000`` can land just below ``ms`` and truncating would lose a millisecond."""
    return round(seconds * 1000)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(config: WorkerConfig, triage: Triage) -> tuple[faust.App, _Worker]:
    """The Faust app and the worker state it drives (store open, key loaded)."""
    app = faust.App(
        config.group,
        broker=f"kafka://{config.bootstrap}",
        broker_credentials=config.kafka.faust_credentials(),
        store="memory://",
        datadir=str(config.state_dir / "faust"),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=max(0.5, config.session_timeout_s / 6),
        broker_commit_interval=1.0,
        producer_acks=-1,
        # On shutdown Faust would wait for buffered records to be acknowledged, but the agent
        # and the block timer have stopped: SIGTERM hung. Unacknowledged records are simply
        # delivered again and skipped by position, so there is nothing to wait for.
        stream_wait_empty=False,
        # A sealed-stream value is at most MAX_MESSAGE_BYTES; the key and the record batch
        # come on top. Kafka's default message.max.bytes (1 MiB) is the real bound.
        producer_max_request_size=1_048_576,
    )
    events_topic = app.topic(
        config.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    sealed_topic = app.topic(config.sealed_topic, key_serializer="raw", value_serializer="raw")
    worker = _Worker(config, triage, sealed_topic)

    @app.task  # type: ignore[untyped-decorator]
    async def serve_metrics() -> None:
        if config.metrics_listen is not None:
            from auditseal.transport.listen import serve_metrics

            serve_metrics(
                config.metrics_listen,
                worker.metrics.registry,
                config.metrics_tls,
                config.metrics_insecure_plaintext,
            )

    @app.agent(events_topic, name="auditseal-seal")
    async def seal(stream: Any) -> None:
        async for event in stream.noack().events():
            await worker.receive(event)

    # Faust's decorators are loosely typed; the handlers' shapes are theirs.
    @app.timer(interval=min(0.1, config.sealer.max_interval_s / 2))  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for sealed in worker.sealer.due():
            await worker.finish(sealed)
        await worker.seek_reset(app.consumer)
        await worker.check_ends(app.consumer)
        for tp in list(worker.pending) + list(worker.highwater):
            try:
                worker.highwater[tp] = app.consumer.highwater(faust.types.TP(*tp))
            except Exception:  # unassigned meanwhile: lag is best effort
                worker.highwater.pop(tp, None)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        worker.revoked({(tp.topic, tp.partition) for tp in revoked if tp.topic == config.topic})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
        await worker.assigned(
            {(tp.topic, tp.partition) for tp in assigned if tp.topic == config.topic}
        )

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def rebalanced(app: faust.App, **_: Any) -> None:
        await worker.resume_from_store(app.consumer)  # before Faust seeks to the committed

    return app, worker
