"""The sealing pipeline: Kafka records in, committed blocks out. No Kafka, no Faust here.

One log per (topic, partition). Records are buffered per partition and sealed as a block when
``max_events`` are waiting or the oldest has waited ``max_interval_s``, whichever comes first.
The caller (the Faust agent) feeds records, calls :meth:`Sealer.due` on a timer, and for every
:class:`Sealed` result publishes the block and only then acknowledges its records. Per block:

1. commit the block to the store in one transaction (entries, nodes, signed checkpoint, header
   chained to the previous block) — :meth:`LogWriter.append`;
2. publish it to the sealed stream (the caller; the store's outbox keeps what is not yet
   published, and a restarted worker publishes it first);
3. acknowledge its records so their offsets get committed (the caller).

A crash between 1 and 2 leaves a stored, unpublished block (published on restart); between 2 and
3, a block published twice or records delivered again, which step 0 below makes harmless:

0. a record at or below the log's last sealed position is skipped: the store, not Kafka's
   committed offset, says what is sealed, so a redelivered record never becomes a second leaf.

When another worker appended to the same log first (a rebalance race), the append fails with
ConflictError; the pipeline reloads the tip, drops what the other worker sealed, and seals the
rest on top, so the log never forks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sealer.blocks import Record
from sealer.errors import ConflictError, InputError
from sealer.log_writer import LogWriter
from verifier.block import SealedBlock

__all__ = ["KafkaRecord", "Sealed", "Sealer", "SealerConfig", "TopicPartition"]

TopicPartition = tuple[str, int]
Triage = Callable[[bytes | None], tuple[str | None, str | None]]


@dataclass(frozen=True)
class SealerConfig:
    """How the sealer cuts blocks and names logs. Defaults work on loopback."""

    origin_prefix: str = "auditseal.local"
    max_events: int = 1000
    max_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.origin_prefix or any(c.isspace() for c in self.origin_prefix):
            raise InputError("origin prefix: must be non-empty without spaces")
        if self.max_events < 1:
            raise InputError("max events: must be at least 1")
        if self.max_interval_s <= 0:
            raise InputError("max interval: must be positive")

    def origin(self, topic: str, partition: int) -> str:
        return f"{self.origin_prefix}/{topic}/{partition}"


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


@dataclass(frozen=True)
class Sealed:
    """A committed block and the Kafka offsets it covers."""

    tp: TopicPartition
    block: SealedBlock
    gaps: tuple[tuple[int, int], ...]
    records: tuple[Record, ...]
    last_offset: int
    """Every record of this partition up to here is sealed: acknowledge them."""
    oldest_timestamp_ms: int


@dataclass
class _Buffer:
    records: list[Record] = field(default_factory=list)
    since: float = 0.0


class Sealer:
    def __init__(
        self,
        writer: LogWriter,
        config: SealerConfig,
        triage: Triage,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.config = config
        self._triage = triage
        self._clock = clock
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self.skipped = 0  # redelivered records already sealed
        self.conflicts = 0  # appends lost to another worker

    def add(self, record: KafkaRecord) -> Sealed | None:
        """Buffer one record; returns the block it completed, if any.

        A record at or below what the log already holds (or buffers) is skipped and counted.
        """
        buffer = self._buffers.get(record.tp)
        if buffer is None:
            buffer = self._buffers[record.tp] = _Buffer()
        last = buffer.records[-1].position if buffer.records else self._last_sealed(record.tp)
        if record.offset <= last:
            self.skipped += 1
            return None
        event_id, flag = self._triage(record.value)
        if not buffer.records:
            buffer.since = self._clock()
        buffer.records.append(
            Record(record.offset, record.timestamp_ms, record.key, record.value, event_id, flag)
        )
        if len(buffer.records) >= self.config.max_events:
            return self._seal(record.tp)
        return None

    def due(self) -> list[Sealed]:
        """Seal every partition whose oldest buffered record waited ``max_interval_s``."""
        now = self._clock()
        ready = [
            tp
            for tp, b in self._buffers.items()
            if b.records and now - b.since >= self.config.max_interval_s
        ]
        return [s for tp in ready if (s := self._seal(tp)) is not None]

    def flush(self) -> list[Sealed]:
        """Seal everything buffered (a clean shutdown)."""
        return [s for tp in list(self._buffers) if (s := self._seal(tp)) is not None]

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop buffers and cached tips of revoked partitions: their records are not
        acknowledged, so their next owner receives them again."""
        for tp in partitions:
            self._buffers.pop(tp, None)
            self.writer.forget(self.config.origin(*tp))

    def buffered(self) -> int:
        return sum(len(b.records) for b in self._buffers.values())

    def last_sealed_offset(self, tp: TopicPartition) -> int:
        return self._last_sealed(tp)

    def _last_sealed(self, tp: TopicPartition) -> int:
        return self.writer.tip(self.config.origin(*tp)).last_position

    def _seal(self, tp: TopicPartition) -> Sealed | None:
        buffer = self._buffers[tp]
        origin = self.config.origin(*tp)
        records = buffer.records
        while records:
            try:
                built = self.writer.append_built(origin, records)
            except ConflictError:
                # Another worker sealed part of this log: continue on top of what it wrote.
                self.conflicts += 1
                self.writer.forget(origin)
                last = self.writer.tip(origin).last_position
                self.skipped += sum(1 for r in records if r.position <= last)
                records = [r for r in records if r.position > last]
                continue
            buffer.records = []
            return Sealed(
                tp,
                built.block,
                built.gaps,
                built.records,
                records[-1].position,
                min(r.timestamp_ms for r in records),
            )
        buffer.records = []
        return None
