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

0. a record at or below the log's last sealed position is skipped only if it is byte-identical
   to the one sealed there (key, value, Kafka timestamp): the store, not Kafka's committed
   offset, says what is sealed, so a redelivered record never becomes a second leaf.

A record there that differs (or an offset the log recorded as a gap, or a partition that now
ends before the log's last position, see :meth:`Sealer.check_partition`) means the partition
is not the one the log was built from: it was reset (a broker restarted with in-memory
topics, a topic deleted and recreated). Nothing is skipped then: the log is closed and the
partition is sealed again from its beginning as a new log, the next *generation* of the same
base origin (FORMAT.md §1.1), recorded in the store so every worker and every restart
continues it. The caller learns of it through :meth:`Sealer.take_resets` and must seek the
partition to its first offset and call :meth:`Sealer.rewound`; until then the partition's
records are dropped unacknowledged (they are read again after the seek).

When another worker appended to the same log first (a rebalance race), the append fails with
ConflictError; the pipeline reloads the tip, drops what the other worker sealed, and seals the
rest on top, so the log never forks. A worker that claimed a partition (:meth:`Sealer.claim`,
on assignment) and finds the claim replaced (ClaimLostError: it was paused while the partition
moved to another worker) seals nothing more of it until it is assigned the partition again;
what it buffered is dropped unacknowledged, so the partition's owner receives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from auditseal.sealer.errors import InputError
from auditseal.sealer.log_writer import LogWriter
from auditseal.store.errors import ClaimLostError, ConflictError
from auditseal.store.model import Record
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.leaf import Entry
from auditseal.verifier.origin import generation_origin

__all__ = ["KafkaRecord", "Reset", "Sealed", "Sealer", "SealerConfig", "TopicPartition"]

log = logging.getLogger(__name__)

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
        """The base origin of a partition's logs (generation 0)."""
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
    origin: str
    block: SealedBlock
    gaps: tuple[tuple[int, int], ...]
    records: tuple[Record, ...]
    last_offset: int
    """Every record of this partition up to here is sealed: acknowledge them."""
    oldest_timestamp_ms: int


@dataclass(frozen=True)
class Reset:
    """A partition found reset: ``closed`` is no longer written, ``origin`` continues it."""

    tp: TopicPartition
    closed: str
    origin: str
    generation: int
    reason: str


def same_record(entry: Entry | Record, record: KafkaRecord) -> bool:
    """Is ``record`` the one sealed as ``entry`` (a redelivery)?

    Key, value and Kafka timestamp must be byte-identical. A redacted entry (value and salt
    erased) can no longer show its value, and its commitment cannot be recomputed without the
    salt: only the key, the timestamp and whether the value was null are compared then.
    """
    # Stores sealed before the worker rounded Faust's float seconds hold some timestamps 1 ms
    # low (truncated); the same record read again must not look like a reset there.
    if entry.key != record.key or record.timestamp_ms - entry.timestamp_ms not in (0, 1):
        return False
    if isinstance(entry, Entry) and entry.salt is None and entry.value is None:
        return entry.value_null == (record.value is None)  # redacted
    return entry.value == record.value


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
        self._generations: dict[TopicPartition, int] = {}
        self._rewinding: dict[TopicPartition, int | None] = {}  # tp -> offset sought, if yet
        self._lost: set[TopicPartition] = set()  # claims another worker replaced
        self._resets: list[Reset] = []
        self.skipped = 0  # redelivered records already sealed (byte-identical)
        self.dropped = 0  # records of a rewinding partition, read again after the seek
        self.conflicts = 0  # appends lost to another worker
        self.claims_lost = 0  # partitions found claimed by another worker

    def origin(self, tp: TopicPartition) -> str:
        """The origin of the log ``tp`` is sealed into now (its current generation)."""
        generation = self._generations.get(tp)
        if generation is None:
            generation = self._generations[tp] = self.writer.store.generation(
                self.config.origin(*tp)
            )
        return generation_origin(self.config.origin(*tp), generation)

    def add(self, record: KafkaRecord) -> Sealed | None:
        """Buffer one record; returns the block it completed, if any.

        A record at or below what the log already holds (or buffers) is skipped and counted
        when it is byte-identical to the sealed one; otherwise the partition was reset (see
        the module docstring) and the record is dropped until the caller rewinds.
        """
        tp = record.tp
        if tp in self._lost:
            self.dropped += 1  # not ours any more: the partition's owner seals it
            return None
        if tp in self._rewinding:
            target = self._rewinding[tp]
            if target is None or record.offset != target:
                self.dropped += 1
                return None
            del self._rewinding[tp]
        buffer = self._buffers.get(tp)
        if buffer is None:
            buffer = self._buffers[tp] = _Buffer()
        last = buffer.records[-1].position if buffer.records else self._last_sealed(tp)
        if record.offset <= last:
            held = self._held(tp, buffer, record.offset)
            if held is not None and same_record(held, record):
                self.skipped += 1
                return None
            self.dropped += 1
            what = "an offset the log recorded as a gap" if held is None else "a different record"
            return self._reset(
                tp,
                f"offset {record.offset} at or below the last sealed or buffered offset {last} "
                f"holds {what}",
            )
        event_id, flag = self._triage(record.value)
        if not buffer.records:
            buffer.since = self._clock()
        buffer.records.append(
            Record(record.offset, record.timestamp_ms, record.key, record.value, event_id, flag)
        )
        if len(buffer.records) >= self.config.max_events:
            return self._seal(tp)
        return None

    def check_partition(
        self,
        tp: TopicPartition,
        found: KafkaRecord | None,
        probed: int | None = None,
        log: str | None = None,
    ) -> Sealed | None:
        """Compare the record the log holds at offset ``probed`` (default: its last sealed
        offset) with what Kafka holds there.

        ``found`` is the record Kafka returned at or after ``probed``, or None when the
        partition ends before it (its end offset is below the log's resume offset). Anything
        but the byte-identical record (or a later one: the offset was compacted away) is a
        reset, which redelivery alone cannot show: a consumer positioned past the new
        partition's end waits there, and the records before its position are never read.

        The probe runs beside the sealing (the caller reads Kafka in another thread), so the
        log may have moved on meanwhile: ``probed`` and ``log`` (the origin probed) say what
        was asked. A log that changed generation since is not judged; one that sealed past
        ``probed`` is compared at ``probed``, and its records show the partition goes on.
        """
        if tp in self._rewinding or (log is not None and log != self.origin(tp)):
            return None
        last = self._last_sealed(tp)
        offset = last if probed is None else probed
        if last < 0 or offset < 0 or offset > last:
            return None
        if found is not None:
            if found.offset > offset:
                return None  # the offset was compacted away
            held = self._held(tp, self._buffers.get(tp, _Buffer()), offset)
            if held is not None and same_record(held, found):
                return None
            which = "the log's last" if offset == last else "sealed by the log"
            return self._reset(tp, f"offset {offset}, {which}, holds a different record")
        if offset < last:
            return None  # records past the probed offset were sealed since: not a new topic
        return self._reset(tp, f"the partition ends before offset {last}, the log's last")

    def take_resets(self) -> list[Reset]:
        """The resets found since the last call; for each, seek and call :meth:`rewound`."""
        resets, self._resets = self._resets, []
        return resets

    def rewinding(self, tp: TopicPartition) -> bool:
        return tp in self._rewinding

    def rewind(self, tp: TopicPartition) -> None:
        """Drop ``tp``'s records until the caller has sought it back (see :meth:`rewound`)."""
        self._buffers.pop(tp, None)
        self._rewinding[tp] = None

    def rewound(self, tp: TopicPartition, offset: int) -> None:
        """The caller sought ``tp`` to ``offset``: accept records again from that one on."""
        self._rewinding[tp] = offset

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

    def claim(self, tp: TopicPartition, writer: str) -> int:
        """Claim the logs of an assigned partition for ``writer``; returns the epoch. Another
        worker's appends to them fail from now on, and so do ours once it claims them."""
        self._lost.discard(tp)
        return self.writer.claim(self.config.origin(*tp), writer)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop buffers, cached tips, generations and claims of revoked partitions: their
        records are not acknowledged, so their next owner receives them again."""
        for tp in partitions:
            self.writer.release(self.config.origin(*tp))
            self._lost.discard(tp)
            self._buffers.pop(tp, None)
            self._rewinding.pop(tp, None)
            self.writer.forget(self.origin(tp))
            self._generations.pop(tp, None)

    def buffered(self) -> int:
        return sum(len(b.records) for b in self._buffers.values())

    def last_sealed_offset(self, tp: TopicPartition) -> int:
        return self._last_sealed(tp)

    def _last_sealed(self, tp: TopicPartition) -> int:
        return self.writer.tip(self.origin(tp)).last_position

    def _held(self, tp: TopicPartition, buffer: _Buffer, offset: int) -> Entry | Record | None:
        """What the log holds (or buffers) at ``offset``, None for a gap."""
        if buffer.records and buffer.records[0].position <= offset:
            return next((r for r in buffer.records if r.position == offset), None)
        return self.writer.store.entry_at(self.origin(tp), offset)

    def _reset(self, tp: TopicPartition, reason: str) -> Sealed | None:
        """Seal what is buffered into the closed log, then start the next generation."""
        sealed = self._seal(tp)
        closed = self.origin(tp)
        base = self.config.origin(*tp)
        generation = self.writer.store.start_generation(
            base, self._generations[tp], f"{closed}: {reason}"
        )
        self.writer.forget(closed)
        self._generations[tp] = generation
        self.rewind(tp)
        self._resets.append(
            Reset(tp, closed, generation_origin(base, generation), generation, reason)
        )
        return sealed

    def _seal(self, tp: TopicPartition) -> Sealed | None:
        buffer = self._buffers.get(tp)
        if buffer is None:
            return None
        origin = self.origin(tp)
        records = buffer.records
        while records:
            try:
                built = self.writer.append_built(origin, records)
            except ClaimLostError as exc:
                log.warning("%s; dropping %d unacknowledged records", exc, len(records))
                self.claims_lost += 1
                self._lost.add(tp)
                self.writer.release(self.config.origin(*tp))
                buffer.records = []
                return None
            except ConflictError:
                # Another worker sealed part of this log: continue on top of what it wrote.
                self.conflicts += 1
                self.writer.forget(origin)
                self._generations.pop(tp, None)
                if self.origin(tp) != origin:
                    # ...or found the partition reset and started a new generation: these
                    # records are read again from the partition's start and sealed there.
                    self.rewind(tp)
                    self._resets.append(
                        Reset(
                            tp,
                            origin,
                            self.origin(tp),
                            self._generations[tp],
                            "another worker started this generation",
                        )
                    )
                    return None
                last = self.writer.tip(origin).last_position
                self.skipped += sum(1 for r in records if r.position <= last)
                records = [r for r in records if r.position > last]
                continue
            buffer.records = []
            return Sealed(
                tp,
                origin,
                built.block,
                built.gaps,
                built.records,
                records[-1].position,
                min(r.timestamp_ms for r in records),
            )
        buffer.records = []
        return None
