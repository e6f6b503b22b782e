"""Replaying a log block by block: recompute everything, trust nothing but the pinned keys.

:class:`LogReplay` holds the state of one log after the blocks it has checked (the compact range
and the last header). :meth:`LogReplay.apply` checks one more block, in this order:

1. the header follows the previous header (number, range, prev hash);
2. the block holds ``end - start`` entries of this log with strictly increasing Kafka positions
   (a log record's position is its own index, :func:`auditseal.verifier.redaction.open_record`);
3. each entry re-hashes to its leaf (a redacted entry uses its stored commitment);
4. the leaves, appended to the previous state, give the header's root;
5. the checkpoint opens with a pinned key and states this origin, size ``end`` and that root;
   after a key rotation (a rotation record in this or an earlier block,
   :mod:`auditseal.verifier.rotation`), with a key the log declares at size ``end``.

Any failure raises a :class:`~auditseal.verifier.errors.VerificationError` naming the block and the
check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from auditseal.verifier.block import BlockHeader, ChainError, SealedBlock
from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import RootMismatchError, VerificationError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.redaction import open_record
from auditseal.verifier.rotation import (
    KeyHistory,
    KeySet,
    is_rotation_value,
    open_rotation_record,
)

__all__ = ["BlockResult", "LogReplay"]


@dataclass(frozen=True)
class BlockResult:
    header: BlockHeader
    checkpoint: Checkpoint
    redacted: tuple[int, ...]
    """Leaf indices of redacted entries: present in the tree, their values erased."""


class LogReplay:
    def __init__(
        self,
        origin: str,
        verifiers: Iterable[NoteVerifier],
        compact: CompactRange | None = None,
        prev: BlockHeader | None = None,
        last_position: int = -1,
        history: KeyHistory | None = None,
    ) -> None:
        """Start at the beginning of the log, or after ``prev`` whose state is ``compact``.

        ``history`` holds the log's rotation records met so far (or read ahead); without it,
        ``verifiers`` are pinned for every size and rotations are followed from them.
        """
        self.origin = origin
        self.verifiers = tuple(verifiers)
        self.history = (
            history if history is not None else KeyHistory(KeySet.of(self.verifiers), origin)
        )
        self._history = self.history
        self.compact = compact.copy() if compact is not None else CompactRange()
        self.prev = prev
        self.last_position = last_position
        if (prev.end if prev else 0) != self.compact.size:
            raise ValueError("compact range size does not match the previous block's end")

    def apply(self, block: SealedBlock) -> BlockResult:
        header = block.header
        where = f"{self.origin}: block {header.number}"
        if header.origin != self.origin:
            raise ChainError(f"{where}: header names origin {header.origin!r}")
        header.verify_follows(self.prev)  # 1

        if len(block.entries) != header.size:  # 2
            raise VerificationError(
                f"{where}: holds {len(block.entries)} entries, header says {header.size}"
            )
        last = self.last_position
        leaves: list[bytes] = []
        redacted: list[int] = []
        history = self.history.copy()  # kept only if the whole block checks
        for i, entry in enumerate(block.entries):
            index = header.start + i
            if entry.origin != self.origin:
                raise VerificationError(f"{where}: entry {index} belongs to {entry.origin!r}")
            if entry.log_record and is_rotation_value(entry.value):
                history.observe(index, open_rotation_record(entry, index, self.origin))
            elif entry.log_record:
                open_record(entry, index)  # RedactionError: not a well-formed record here
            elif entry.position <= last:
                raise VerificationError(
                    f"{where}: entry {index} at position {entry.position} does not follow "
                    f"position {last}"
                )
            else:
                last = entry.position
            if entry.redacted and not entry.log_record:
                redacted.append(index)
            leaves.append(entry.leaf_hash())  # 3: raises LeafMismatchError

        compact = self.compact.copy()
        compact.extend(leaves)
        calculated = compact.root()
        if calculated != header.root:  # 4
            raise RootMismatchError(f"{where}: tree root", header.root, calculated)

        self._history = history  # what open_checkpoint checks this block's checkpoint against
        try:
            checkpoint = self.open_checkpoint(block.checkpoint)  # 5
        finally:
            self._history = self.history
        if (checkpoint.origin, checkpoint.size, checkpoint.root) != (
            self.origin,
            header.end,
            header.root,
        ):
            raise VerificationError(
                f"{where}: checkpoint states ({checkpoint.origin}, {checkpoint.size}, "
                f"{checkpoint.root.hex()}), "
                f"header ({self.origin}, {header.end}, {header.root.hex()})"
            )

        self.compact, self.prev, self.last_position = compact, header, last
        self.history = self._history = history
        return BlockResult(header, checkpoint, tuple(redacted))

    def open_checkpoint(self, raw_note: str) -> Checkpoint:
        """Step 5's opening of a block's signed checkpoint: with a pinned (or followed) key,
        one the log declares at its size (LogKeyError otherwise)."""
        history = self._history
        checkpoint = open_checkpoint(raw_note, history.trusted_keys())
        if not history.trivial:
            history.check_signers(raw_note, checkpoint)
        return checkpoint
