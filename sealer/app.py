"""The Faust wiring of the sealer: decode records, call the pipeline, publish, acknowledge.

Everything that decides lives in :mod:`sealer.pipeline`; this module only moves records between
Faust and it, in the order the pipeline's docstring prescribes (store, publish, acknowledge).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from sealer.blocks import Record
from sealer.log_writer import LogWriter
from sealer.metrics import SealerMetrics
from sealer.pipeline import KafkaRecord, Sealed, Sealer, SealerConfig, TopicPartition, Triage
from sealer.sealed_stream import encode_block
from sealer.signer import Signer
from sealer.store import BlockStore
from verifier.block import SealedBlock

__all__ = ["WorkerConfig", "create_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    store_path: Path
    key_file: Path
    state_dir: Path
    sealer: SealerConfig
    topic: str = "audit.events"
    sealed_topic: str = "audit.sealed"
    group: str = "auditseal-sealer"
    session_timeout_s: float = 6.0
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9464)


class _Worker:
    """The state one worker process holds: store, pipeline, unacknowledged events."""

    def __init__(self, config: WorkerConfig, triage: Triage, sealed_topic: Any) -> None:
        self.config = config
        self.store = BlockStore.open(config.store_path, create=True)
        writer = LogWriter(self.store, Signer.from_file(config.key_file), _now_ms)
        self.sealer = Sealer(writer, config.sealer, triage)
        self.sealed_topic = sealed_topic
        self.pending: dict[TopicPartition, deque[Any]] = defaultdict(deque)
        self.highwater: dict[TopicPartition, int] = {}
        self.metrics = SealerMetrics(self.lag)

    def lag(self) -> dict[str, int]:
        return {
            self.config.sealer.origin(*tp): max(0, hw - 1 - self.sealer.last_sealed_offset(tp))
            for tp, hw in self.highwater.items()
        }

    async def receive(self, event: Any) -> None:
        m = event.message
        tp = (m.topic, m.partition)
        skipped = self.sealer.skipped
        sealed = self.sealer.add(
            KafkaRecord(m.topic, m.partition, m.offset, int(m.timestamp * 1000), m.key, m.value)
        )
        if self.sealer.skipped > skipped:
            event.ack()  # already in the store: a redelivery
            self.metrics.skipped.inc()
        else:
            self.pending[tp].append(event)
        if sealed is not None:
            await self.finish(sealed)

    async def finish(self, sealed: Sealed) -> None:
        """Step 1 (the commit) is done; now publish (2) and acknowledge (3)."""
        origin = self.config.sealer.origin(*sealed.tp)
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
        futures = [
            await self.sealed_topic.send(key=origin.encode(), value=message)
            for message in encode_block(block, records, gaps)
        ]
        for fut in futures:
            await fut  # delivered (acks=-1) before the block counts as published

    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.sealer.forget(partitions)
        for tp in partitions:
            self.pending.pop(tp, None)  # never acknowledged: the next owner receives them
            self.highwater.pop(tp, None)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.sealer.forget(partitions)  # another worker may have sealed meanwhile
        for tp in sorted(partitions):
            origin = self.config.sealer.origin(*tp)
            if self.store.has_log(origin):
                await self.publish_outbox(origin)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(config: WorkerConfig, triage: Triage) -> tuple[faust.App, _Worker]:
    """The Faust app and the worker state it drives (store open, key loaded)."""
    app = faust.App(
        config.group,
        broker=f"kafka://{config.bootstrap}",
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
            from prometheus_client import start_http_server

            host, port = config.metrics_listen
            start_http_server(port, host, registry=worker.metrics.registry)

    @app.agent(events_topic, name="auditseal-seal")
    async def seal(stream: Any) -> None:
        async for event in stream.noack().events():
            await worker.receive(event)

    # Faust's decorators are loosely typed; the handlers' shapes are theirs.
    @app.timer(interval=min(0.1, config.sealer.max_interval_s / 2))  # type: ignore[untyped-decorator]
    async def tick() -> None:
        for sealed in worker.sealer.due():
            await worker.finish(sealed)
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

    return app, worker
