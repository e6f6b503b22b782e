"""What ``auditseal verify`` shows the verifier, read from a block store.

:func:`block_material` gathers, for block ``N`` of a log, everything
:class:`auditseal.verifier.verify.Verifier` checks: the block (header, signed checkpoint, entries),
the previous header and its signed checkpoint, the compact range at the block's start (stored tree
nodes), the latest confirmed anchor receipt of the log that covers the block, and the
consistency proof from the block's end to that receipt's checkpoint. None of it is trusted:
each piece is only an input to a check. :func:`store_bundle` wraps it, with an optional
event's inclusion proof, into the portable :class:`~auditseal.verifier.bundle.Bundle`
that ``auditseal bundle`` writes and the read API serves.

A store that lost entries yields a block with fewer entries, one that lost the previous block
yields no previous state, one that lost its tail yields an empty consistency proof: the verifier
reports each, none is an error here.
"""

from __future__ import annotations

from collections.abc import Collection

from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import InputError, NotFoundError, StoreError
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.anchored_state import ChainState
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.bundle import Bundle
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import FormatError
from auditseal.verifier.leaf import Entry
from auditseal.verifier.redaction import ProvenLeaf, Redaction
from auditseal.verifier.rotation import is_rotation_value
from auditseal.verifier.verify import (
    AmbiguousEventError,
    BlockMaterial,
    EventCandidate,
    EventProof,
    event_fields,
    numbered_reference,
)

__all__ = [
    "block_material",
    "chain_receipt",
    "covering_receipt",
    "locate_event",
    "only_log",
    "store_bundle",
]


def only_log(store: BlockStore) -> str:
    """The store's one log; InputError if it holds none or several (then ``--log`` is needed)."""
    logs = store.logs()
    if len(logs) != 1:
        raise InputError(
            f"{store.location}: holds {len(logs)} logs ({', '.join(logs) or 'none'}); "
            "name one with --log"
        )
    return logs[0]


def covering_receipt(
    store: BlockStore, origin: str, end: int, not_final: Collection[int] = ()
) -> AnchorReceipt | None:
    """The latest confirmed receipt of ``origin`` whose checkpoint covers size ``end``, leaving
    out the anchors ``not_final`` (on chain, but short of the pinned confirmation depth)."""
    covering = [
        r
        for r in store.log_anchor_receipts(origin)
        if r.status == "confirmed"
        and r.seq not in not_final
        and Checkpoint.from_text(r.checkpoint).size >= end
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


def chain_receipt(
    store: BlockStore, origin: str, end: int, chain: ChainState
) -> AnchorReceipt | None:
    """The store's receipt of ``origin`` in the latest anchor on chain that the store rebuilds,
    if that anchor covers size ``end``: the chain, not the store, picks the anchor. Otherwise
    the store's own latest covering receipt, whose claim checks 6-8 then test (and the
    ``anchored-state`` check reports what the chain holds that the store cannot show)."""
    anchored = chain.logs.get(origin)
    if anchored is not None and anchored.size >= end:
        receipt = store.anchor_receipt(anchored.anchor.seq, origin)
        if receipt is not None:
            return receipt
    return covering_receipt(store, origin, end, chain.unconfirmed)


def block_material(
    store: BlockStore, origin: str, number: int, *, chain: ChainState | None = None
) -> BlockMaterial:
    """The material of block ``number`` of ``origin``; NotFoundError if the store lacks it.

    The anchor receipt is that of the chain's latest anchor of the log when ``chain`` is given
    (:func:`chain_receipt`), else the store's latest confirmed receipt covering the block.
    """
    if not store.has_log(origin):
        raise NotFoundError(f"{store.location}: no log {origin!r}")
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
    receipt = (
        covering_receipt(store, origin, header.end)
        if chain is None
        else chain_receipt(store, origin, header.end, chain)
    )
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
    anchored_size = Checkpoint.from_text(receipt.checkpoint).size if receipt else None
    return BlockMaterial(
        origin=origin,
        block=block,
        prev=prev.header if prev else None,
        prev_checkpoint=prev.checkpoint if prev else None,
        compact_at_start=compact,
        receipt=receipt,
        consistency=consistency,
        anchored_note=anchored_note,
        related=_related(store, origin, block, anchored_size),
        rotations=_rotations(store, origin, block, anchored_size),
    )


def _rotations(
    store: BlockStore, origin: str, block: SealedBlock, anchored_size: int | None
) -> tuple[ProvenLeaf, ...]:
    """Every rotation record of the log outside the block: before it, proven in the tree at
    the block's end; after it, as a redaction record after it (:func:`_proven_record`). The
    verifier needs those after the block too: they name the key that signed it when only a
    later key is pinned."""
    header = block.header
    out: list[ProvenLeaf] = []
    for record in store.log_records(origin):
        index = record.position  # a log record's position is its leaf index
        if not is_rotation_value(record.value) or header.start <= index < header.end:
            continue
        try:
            if index < header.start:
                proof = store.inclusion_proof(origin, index, header.end).proof
                out.append(ProvenLeaf(index, record, header.end, tuple(proof)))
            else:
                out.append(_proven_record(store, origin, header.end, record, anchored_size))
        except (NotFoundError, InputError, StoreError):
            continue  # what the store cannot show is left out: the verifier reports it
    return tuple(out)


def _related(
    store: BlockStore, origin: str, block: SealedBlock, anchored_size: int | None
) -> tuple[ProvenLeaf, ...]:
    """The leaves the block's redactions need (see :class:`BlockMaterial`): the record of each
    erased entry, proven to the anchored checkpoint when it is covered, else to the signed
    checkpoint of its own block; the erased entry named by each record in the block. What the
    store cannot show is left out: the verifier reports it."""
    header = block.header
    erased = {
        header.start + i for i, e in enumerate(block.entries) if e.redacted and not e.log_record
    }
    targets = set()
    for e in block.entries:
        if e.log_record and e.value is not None:
            try:
                target = Redaction.from_bytes(e.value).index
            except FormatError:
                continue
            if target < header.start:
                targets.add(target)
    out: list[ProvenLeaf] = []
    if erased:
        for record in store.log_records(origin):
            try:
                named = Redaction.from_bytes(record.value or b"").index
            except FormatError:
                continue
            if named not in erased or record.position < header.end:
                continue
            erased.discard(named)
            try:
                out.append(_proven_record(store, origin, header.end, record, anchored_size))
            except (NotFoundError, InputError, StoreError):
                continue
    for target in sorted(targets):
        try:
            (entry,) = store.entries(origin, target, target + 1)
            proof = store.inclusion_proof(origin, target, header.end).proof
        except (NotFoundError, InputError, StoreError):
            continue
        out.append(ProvenLeaf(target, entry, header.end, tuple(proof)))
    return tuple(out)


def _proven_record(
    store: BlockStore, origin: str, end: int, record: Entry, anchored_size: int | None
) -> ProvenLeaf:
    index = record.position  # a log record's position is its leaf index
    if anchored_size is not None and index < anchored_size:
        proof = store.inclusion_proof(origin, index, anchored_size).proof
        return ProvenLeaf(index, record, anchored_size, tuple(proof))
    holder = store.block_at(origin, index)
    size = holder.header.end
    return ProvenLeaf(
        index,
        record,
        size,
        tuple(store.inclusion_proof(origin, index, size).proof),
        holder.checkpoint,
        tuple(store.consistency_proof(origin, end, size).proof),
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
            raise NotFoundError(f"{store.location}: no log {origin!r}")
        if kind == "position":
            return origin, store.index_of_position(origin, number)
        if number >= store.size(origin):
            raise NotFoundError(f"{origin}: no leaf {number} (the log holds {store.size(origin)})")
        return origin, number
    if origin is not None and not store.has_log(origin):
        raise NotFoundError(f"{store.location}: no log {origin!r}")
    candidates = [
        EventCandidate(o, i, _event_source(store, o, i))
        for o, i in store.find_event(requested, origin)
    ]
    if source is not None:
        candidates = [c for c in candidates if c.source == source]
    if not candidates:
        where = f" in {origin}" if origin else ""
        of = f" of source {source!r}" if source is not None else ""
        raise NotFoundError(f"{store.location}: no event with id {requested!r}{of}{where}")
    if len({c.source for c in candidates}) > 1:
        raise AmbiguousEventError(requested, candidates)
    return candidates[0].origin, candidates[0].index


def store_bundle(
    store: BlockStore,
    origin: str | None,
    number: int | None = None,
    event: str | None = None,
    source: str | None = None,
    *,
    chain: ChainState | None = None,
) -> Bundle:
    """The bundle of block ``number`` of ``origin``, or of the block holding ``event`` (of
    CloudEvents ``source``, if given: the bundle records it and its event check demands it).

    ``origin`` None: the log of the event, or the store's only log. ``chain``: prove the block
    against the chain's latest anchor of the log (see :func:`block_material`).
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
    return Bundle(block_material(store, origin, number, chain=chain), proof)
