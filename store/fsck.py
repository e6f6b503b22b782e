"""A full check of a store: every block replayed by the verifier, every stored node recomputed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from auditseal.store.blockstore import BlockStore
from auditseal.verifier.errors import VerificationError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.redaction import RedactionError, RedactionLedger
from auditseal.verifier.replay import LogReplay
from auditseal.verifier.rotation import (
    KeySet,
    RotationError,
    history_of,
    is_rotation_value,
)

__all__ = ["LogCheck", "check_log"]


@dataclass(frozen=True)
class LogCheck:
    origin: str
    blocks: int
    size: int
    redacted: int


def check_log(
    store: BlockStore, origin: str, verifiers: Iterable[NoteVerifier] | KeySet
) -> LogCheck:
    """Replay every block of ``origin``; raises VerificationError at the first fault.

    Every erased entry must have its redaction record and every record its erased entry
    (RedactionError, checked once the whole log is read). The log's rotation records are read
    first (RotationError for a bad one), so every checkpoint is opened with the key the log
    declares at its size.
    """
    key_set = verifiers if isinstance(verifiers, KeySet) else KeySet.of(verifiers)
    records = [(e.position, e) for e in store.log_records(origin) if is_rotation_value(e.value)]
    history, problems = history_of(key_set, origin, records)
    if problems:
        raise RotationError(f"{origin}: " + "; ".join(detail for _, detail in problems))
    replay = LogReplay(origin, key_set.keys(origin), history=history)
    ledger = RedactionLedger()
    blocks = 0
    for stored in store.blocks(origin):
        h = stored.header
        if stored.hash != h.hash():
            raise VerificationError(f"{origin}: block {h.number}: stored hash is not the header's")
        block = store.sealed_block(origin, h.number)
        nodes = replay.compact.copy().extend(e.leaf_hash() for e in block.entries)
        replay.apply(block)
        for level, index, want in nodes:
            if store.node(origin, level, index) != want:
                raise VerificationError(
                    f"{origin}: block {h.number}: stored tree node ({level}, {index}) is wrong"
                )
        ledger.feed(h.start, block.entries)
        blocks += 1
    problems = ledger.problems()
    if problems:
        raise RedactionError(f"{origin}: " + "; ".join(detail for _, detail in problems))
    return LogCheck(origin, blocks, replay.compact.size, len(ledger.explained()))
