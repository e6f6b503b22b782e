"""What ``auditseal verify`` shows the verifier, read from a block store.

:func:`block_material` gathers, for block ``N`` of a log, everything
:class:`verifier.verify.Verifier` checks: the block (header, signed checkpoint, entries), the
previous header and its signed checkpoint, the compact range at the block's start (stored tree
nodes), the latest confirmed anchor receipt of the log that covers the block, and the
consistency proof from the block's end to that receipt's checkpoint. None of it is trusted:
each piece is only an input to a check. :func:`store_bundle` wraps it, with an optional
event's inclusion proof, into the portable :class:`~verifier.bundle.Bundle`
that ``auditseal bundle`` writes and the read API serves.

A store that lost entries yields a block with fewer entries, one that lost the previous block
yields no previous state, one that lost its tail yields an empty consistency proof: the verifier
reports each, none is an error here.
"""

from __future__ import annotations

from sealer.errors import InputError, NotFoundError, StoreError
from sealer.store import BlockStore
from verifier.anchor import AnchorReceipt
from verifier.block import SealedBlock
from verifier.bundle import Bundle
from verifier.checkpoint import Checkpoint
from verifier.compact import CompactRange
from verifier.leaf import Entry
from verifier.verify import (
    AmbiguousEventError,
    BlockMaterial,
    EventCandidate,
    EventProof,
    event_fields,
    numbered_reference,
)

__all__ = ["block_material", "covering_receipt", "locate_event", "only_log", "store_bundle"]


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
        at_anchor = store.block_ending_at(origin, anchored.size)
        anchored_note = at_anchor.checkpoint if at_anchor is not None else None
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


def _event_source(store: BlockStore, origin: str, index: int) -> str | None:
    """The CloudEvents ``source`` the value of leaf ``index`` states (None: none, or erased)."""
    return event_fields(store.entries(origin, index, index + 1)[0].value)[1]


def locate_event(
    store: BlockStore, requested: str, origin: str | None, source: str | None = None
) -> tuple[str, int]:
    """``(origin, leaf index)`` of the event ``requested``: a CloudEvents id, ``position:N``
    (the Kafka offset it was sealed from) or ``index:N`` (its leaf index).

    Position and index need the log (``origin``, or the store's only log). An id is looked up
    in every log (or ``origin``), keeping the copies whose value states ``source`` if given.
    Copies of one source are redeliveries (at-least-once): the first is proven. Copies of more
    than one source (another source's token holder reused the id) raise AmbiguousEventError:
    the store cannot say which event was meant.
    """
    numbered = numbered_reference(requested)
    if numbered is not None:
        kind, number = numbered
        origin = origin or only_log(store)
        if not store.has_log(origin):
            raise NotFoundError(f"{store.path}: no log {origin!r}")
        if kind == "position":
            return origin, store.index_of_position(origin, number)
        if number >= store.size(origin):
            raise NotFoundError(f"{origin}: no leaf {number} (the log holds {store.size(origin)})")
        return origin, number
    if origin is not None and not store.has_log(origin):
        raise NotFoundError(f"{store.path}: no log {origin!r}")
    candidates = [
        EventCandidate(o, i, _event_source(store, o, i))
        for o, i in store.find_event(requested, origin)
    ]
    if source is not None:
        candidates = [c for c in candidates if c.source == source]
    if not candidates:
        where = f" in {origin}" if origin else ""
        of = f" of source {source!r}" if source is not None else ""
        raise NotFoundError(f"{store.path}: no event with id {requested!r}{of}{where}")
    if len({c.source for c in candidates}) > 1:
        raise AmbiguousEventError(requested, candidates)
    return candidates[0].origin, candidates[0].index


def store_bundle(
    store: BlockStore,
    origin: str | None,
    number: int | None = None,
    event: str | None = None,
    source: str | None = None,
) -> Bundle:
    """The bundle of block ``number`` of ``origin``, or of the block holding ``event`` (of
    CloudEvents ``source``, if given: the bundle records it and its event check demands it).

    ``origin`` None: the log of the event, or the store's only log.
    """
    proof = None
    if event is None:
        origin = origin or only_log(store)
    else:
        origin, index = locate_event(store, event, origin, source)
        stored = store.block_at(origin, index)
        if number is not None and number != stored.header.number:
            raise InputError(f"event {event!r} is in block {stored.header.number}, not {number}")
        number = stored.header.number
        inclusion = store.inclusion_proof(origin, index, stored.header.end)
        proof = EventProof(index, tuple(inclusion.proof), event, source)
    if number is None or origin is None:
        raise InputError("name a block (--block N) or an event (--event ID)")
    return Bundle(block_material(store, origin, number), proof)
