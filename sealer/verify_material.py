"""What ``auditseal verify --block N --store PATH`` shows the verifier, read from a block store.

:func:`block_material` gathers, for block ``N`` of a log, everything
:class:`verifier.verify.Verifier` checks: the block (header, signed checkpoint, entries), the
previous header and its signed checkpoint, the compact range at the block's start (stored tree
nodes), the latest confirmed anchor receipt of the log that covers the block, and the
consistency proof from the block's end to that receipt's checkpoint. None of it is trusted:
each piece is only an input to a check. A store that lost entries yields a block with fewer
entries, one that lost the previous block yields no previous state, one that lost its tail
yields an empty consistency proof: the verifier reports each, none is an error here.
"""

from __future__ import annotations

from sealer.errors import InputError, NotFoundError, StoreError
from sealer.store import BlockStore
from verifier.anchor import AnchorReceipt
from verifier.block import SealedBlock
from verifier.checkpoint import Checkpoint
from verifier.compact import CompactRange
from verifier.leaf import Entry
from verifier.verify import BlockMaterial

__all__ = ["block_material", "covering_receipt", "only_log"]


def only_log(store: BlockStore) -> str:
    """The store's one log; InputError if it holds none or several (then ``--log`` is needed)."""
    logs = store.logs()
    if len(logs) != 1:
        raise InputError(
            f"{store.path}: holds {len(logs)} logs ({', '.join(logs) or 'none'}); "
            "name one with --log"
        )
    return logs[0]


def covering_receipt(store: BlockStore, origin: str, end: int) -> AnchorReceipt | None:
    """The latest confirmed receipt of ``origin`` whose checkpoint covers size ``end``."""
    covering = [
        r
        for r in store.log_anchor_receipts(origin)
        if r.status == "confirmed" and Checkpoint.from_text(r.checkpoint).size >= end
    ]
    return covering[-1] if covering else None


def _entries(store: BlockStore, origin: str, start: int, end: int) -> tuple[Entry, ...]:
    try:
        return tuple(store.entries(origin, start, end))
    except NotFoundError:  # some are missing: show what is there, the verifier counts
        found: list[Entry] = []
        for index in range(start, end):
            try:
                found.extend(store.entries(origin, index, index + 1))
            except NotFoundError:
                continue
        return tuple(found)


def _note_at(store: BlockStore, origin: str, size: int) -> str | None:
    """The signed checkpoint of the block of ``origin`` that ends at ``size``, if stored."""
    for stored in store.blocks(origin):
        if stored.header.end == size:
            return stored.checkpoint
        if stored.header.end > size:
            break
    return None


def block_material(store: BlockStore, origin: str, number: int) -> BlockMaterial:
    """The material of block ``number`` of ``origin``; NotFoundError if the store lacks it."""
    if not store.has_log(origin):
        raise NotFoundError(f"{store.path}: no log {origin!r}")
    stored = store.block(origin, number)
    header = stored.header
    block = SealedBlock(
        header, stored.checkpoint, _entries(store, origin, header.start, header.end)
    )
    prev = None
    if number > 0:
        try:
            prev = store.block(origin, number - 1)
        except NotFoundError:  # a removed block: the verifier finds no previous state
            prev = None
    compact = tuple(
        store.node(origin, lvl, idx) for lvl, idx in CompactRange.node_ids(header.start)
    )
    receipt = covering_receipt(store, origin, header.end)
    consistency: tuple[bytes, ...] = ()
    anchored_note: str | None = None
    if receipt is not None:
        anchored = Checkpoint.from_text(receipt.checkpoint)
        anchored_note = _note_at(store, origin, anchored.size)
        try:
            consistency = tuple(store.consistency_proof(origin, header.end, anchored.size).proof)
        except StoreError:  # the store lost part of the tree: an empty proof, which fails
            consistency = ()
        except InputError:  # the store holds less than was anchored (a truncated tail)
            consistency = ()
    return BlockMaterial(
        origin=origin,
        block=block,
        prev=prev.header if prev else None,
        prev_checkpoint=prev.checkpoint if prev else None,
        compact_at_start=compact,
        receipt=receipt,
        consistency=consistency,
        anchored_note=anchored_note,
    )
