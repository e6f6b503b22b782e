"""What the store and the sealer exchange: input records, a log's tip, a block to write.

The store hands out :class:`LogTip` and writes :class:`BuiltBlock`; the sealer
(:mod:`auditseal.sealer.blocks`) builds blocks from a tip and records. Plain data, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from auditseal.verifier.block import BlockHeader, SealedBlock
from auditseal.verifier.compact import CompactRange, Node
from auditseal.verifier.redaction import Redaction

__all__ = ["BuiltBlock", "LogTip", "Record", "RedactionSealer"]


@dataclass(frozen=True)
class Record:
    """One input record (a Kafka record, or a line appended by the CLI)."""

    position: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    event_id: str | None = None
    flag: str | None = None
    """Why the record is not a valid event (sealed anyway), or None."""


@dataclass(frozen=True)
class LogTip:
    """What a log holds after its last block: enough to append, nothing more."""

    origin: str
    compact: CompactRange
    last_header: BlockHeader | None
    last_position: int

    @property
    def size(self) -> int:
        return self.compact.size

    @property
    def next_position(self) -> int:
        return self.last_position + 1


@dataclass(frozen=True)
class BuiltBlock:
    block: SealedBlock
    records: tuple[Record, ...]
    nodes: tuple[Node, ...]
    """Every complete subtree the block creates, leaves included: what the store must write."""
    tip: LogTip
    """The log's tip once this block is committed."""
    gaps: tuple[tuple[int, int], ...] = ()
    """Position ranges ``[from, to)`` skipped before or between this block's records (Kafka
    offsets of compacted records or transaction markers); they hold no leaf."""


RedactionSealer = Callable[[LogTip, Redaction, int], BuiltBlock]
"""Builds and signs the block that holds a redaction record on a tip, sealed at a time in ms
(:func:`auditseal.sealer.blocks.redaction_sealer`); the store calls it under its write lock."""
