"""Building a block: pure code from a log's tip and new records to a signed block.

No I/O here: the store supplies the tip (:class:`LogTip`) and writes the result; the caller
supplies the time and the randomness for salts, so tests can pin both.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from auditseal.sealer.errors import InputError
from auditseal.sealer.signer import NoteSigner
from auditseal.store.model import BuiltBlock, LogTip, Record, RedactionSealer
from auditseal.verifier.block import GENESIS_HASH, BlockHeader, SealedBlock
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.leaf import SALT_SIZE, Entry
from auditseal.verifier.redaction import Redaction, record_entry

__all__ = ["build_block", "build_redaction_block", "redaction_sealer"]


def build_block(
    tip: LogTip,
    records: Sequence[Record],
    signer: NoteSigner,
    sealed_at_ms: int,
    new_salt: Callable[[], bytes] = lambda: secrets.token_bytes(SALT_SIZE),
) -> BuiltBlock:
    """Seal ``records`` as the next block of ``tip``'s log.

    Positions MUST be strictly increasing and above the tip's last position (gaps are allowed:
    Kafka offsets skip over compacted records and transaction markers).
    """
    if not records:
        raise InputError(f"{tip.origin}: a block needs at least one record")
    last = tip.last_position
    gaps: list[tuple[int, int]] = []
    for r in records:
        if r.position <= last:
            raise InputError(
                f"{tip.origin}: record at position {r.position} does not follow position {last}"
            )
        if r.position > last + 1:
            gaps.append((last + 1, r.position))
        last = r.position
    entries = tuple(
        Entry.seal(tip.origin, r.position, r.timestamp_ms, r.key, r.value, new_salt())
        for r in records
    )
    return _seal(tip, entries, tuple(records), signer, sealed_at_ms, last, tuple(gaps))


def build_redaction_block(
    tip: LogTip,
    redaction: Redaction,
    signer: NoteSigner,
    sealed_at_ms: int,
    new_salt: Callable[[], bytes] = lambda: secrets.token_bytes(SALT_SIZE),
) -> BuiltBlock:
    """The block holding one redaction record (a log record, leaf flag bit 2) as the next leaf.

    The record's position is its leaf index, never a Kafka offset: the tip's last Kafka
    position, where the sealer resumes, is unchanged.
    """
    entry = record_entry(tip.origin, tip.size, redaction, new_salt())
    record = Record(entry.position, entry.timestamp_ms, None, entry.value)
    return _seal(tip, (entry,), (record,), signer, sealed_at_ms, tip.last_position, ())


def redaction_sealer(signer: NoteSigner) -> RedactionSealer:
    """What :meth:`auditseal.store.blockstore.BlockStore.redact` calls to seal a redaction record
    with ``signer``'s key."""

    def seal(tip: LogTip, redaction: Redaction, sealed_at_ms: int) -> BuiltBlock:
        return build_redaction_block(tip, redaction, signer, sealed_at_ms)

    return seal


def _seal(
    tip: LogTip,
    entries: tuple[Entry, ...],
    records: tuple[Record, ...],
    signer: NoteSigner,
    sealed_at_ms: int,
    last: int,
    gaps: tuple[tuple[int, int], ...],
) -> BuiltBlock:
    compact = tip.compact.copy()
    nodes = compact.extend([e.leaf_hash() for e in entries])
    prev = tip.last_header
    header = BlockHeader(
        origin=tip.origin,
        number=prev.number + 1 if prev else 0,
        start=tip.size,
        end=compact.size,
        root=compact.root(),
        sealed_at_ms=sealed_at_ms,
        prev_hash=prev.hash() if prev else GENESIS_HASH,
    )
    checkpoint = signer.sign_note(Checkpoint(tip.origin, compact.size, header.root).to_text())
    return BuiltBlock(
        SealedBlock(header, checkpoint, entries),
        records,
        tuple(nodes),
        LogTip(tip.origin, compact, header, last),
        gaps,
    )
