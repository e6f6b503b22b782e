"""A full check of a store: every block replayed by the verifier, every stored node recomputed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sealer.store import BlockStore
from verifier.errors import VerificationError
from verifier.note import NoteVerifier
from verifier.replay import LogReplay

__all__ = ["LogCheck", "check_log"]


@dataclass(frozen=True)
class LogCheck:
    origin: str
    blocks: int
    size: int
    redacted: int


def check_log(store: BlockStore, origin: str, verifiers: Iterable[NoteVerifier]) -> LogCheck:
    """Replay every block of ``origin``; raises VerificationError at the first fault."""
    replay = LogReplay(origin, verifiers)
    blocks = redacted = 0
    for stored in store.blocks(origin):
        h = stored.header
        if stored.hash != h.hash():
            raise VerificationError(f"{origin}: block {h.number}: stored hash is not the header's")
        block = store.sealed_block(origin, h.number)
        nodes = replay.compact.copy().extend(e.leaf_hash() for e in block.entries)
        result = replay.apply(block)
        for level, index, want in nodes:
            if store.node(origin, level, index) != want:
                raise VerificationError(
                    f"{origin}: block {h.number}: stored tree node ({level}, {index}) is wrong"
                )
        blocks += 1
        redacted += len(result.redacted)
    return LogCheck(origin, blocks, replay.compact.size, redacted)
