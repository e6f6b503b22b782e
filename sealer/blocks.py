"""Building a block: pure code from a log's tip and new records to a signed block.

No I/O here: the store supplies the tip (:class:`LogTip`) and writes the result; the caller
supplies the time and the randomness for salts, so tests can pin both.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable, Sequence

from auditseal.sealer.errors import InputError
from auditseal.sealer.signer import NoteSigner
from auditseal.store.model import BuiltBlock, LogTip, Record, RedactionSealer
from auditseal.verifier.block import GENESIS_HASH, BlockHeader, SealedBlock
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.leaf import SALT_SIZE, Entry, commitment, leaf_flags, leaf_hasher
from auditseal.verifier.note import SignedNote
from auditseal.verifier.redaction import Redaction, record_entry
from auditseal.verifier.rotation import KeyHistory, KeyRotation, KeySet, rotation_entry

__all__ = [
    "build_block",
    "build_redaction_block",
    "build_rotation_block",
    "checkpoint_signers",
    "cosign",
    "redaction_sealer",
]

Signers = NoteSigner | Sequence[NoteSigner]
"""One key, or the keys that co-sign each checkpoint (during a rotation's overlap)."""


def cosign(text: str, signers: Signers) -> str:
    """The signed note of ``text`` with one signature line per signer, in order."""
    keys = [signers] if isinstance(signers, NoteSigner) else list(signers)
    if not keys:
        raise ValueError("a note needs at least one signer")
    notes = [SignedNote.from_text(k.sign_note(text)) for k in keys]
    return SignedNote(text, tuple(sig for n in notes for sig in n.signatures)).to_text()


def checkpoint_signers(
    origin: str,
    rotations: Sequence[tuple[int, KeyRotation]],
    size: int,
    key: NoteSigner,
    previous: NoteSigner | None = None,
) -> list[NoteSigner]:
    """The held keys that sign ``origin``'s checkpoint of ``size``: those the log's rotation
    records declare there (both during an overlap). A log without a rotation record is signed
    with ``previous`` when given (it was not rotated yet), else with ``key``.

    Raises InputError when no held key is declared at ``size`` (the overlap ended and this
    sealer holds only the old key): nothing is signed that a verifier would refuse.
    """
    if not rotations:
        return [previous or key]
    history = KeyHistory(KeySet(()), origin, list(rotations))
    declared = history.declared(size) or []
    held = [s for s in (key, previous) if s is not None]
    chosen = [s for s in held if s.verifier in declared]
    if not chosen:
        want = ", ".join(k.to_string() for k in declared)
        have = ", ".join(s.verifier.to_string() for s in held)
        raise InputError(
            f"{origin}: the checkpoint of size {size} must be signed by {want} (rotation record "
            f"at leaf {rotations[-1][0]}); this sealer holds {have}: restart it with --key "
            "set to the new key"
        )
    return chosen


def build_block(
    tip: LogTip,
    records: Sequence[Record],
    signer: Signers,
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
    # The hot path: each commitment is computed once and each leaf hashed straight from its
    # fields (leaf_hasher), not through Entry.leaf(), which recomputes the commitment and
    # builds a Leaf; the hashes are the same bytes (the format vectors and tests prove it).
    origin = tip.origin
    hash_leaf = leaf_hasher(origin)
    sha256 = hashlib.sha256
    entries: list[Entry] = []
    hashes: list[bytes] = []
    for r in records:
        salt, key, value = new_salt(), r.key, r.value
        value_commitment = commitment(salt, value)
        entries.append(
            Entry(
                origin,
                r.position,
                r.timestamp_ms,
                key,
                value,
                salt,
                value_commitment,
                value_null=value is None,
            )
        )
        try:
            hashes.append(
                hash_leaf(
                    r.position,
                    r.timestamp_ms,
                    sha256(key or b"").digest(),
                    value_commitment,
                    leaf_flags(key is None, value is None),
                )
            )
        except struct.error:
            entries[-1].leaf()  # raises the FormatError naming the field out of range
            raise
    return _seal(
        tip, tuple(entries), tuple(records), signer, sealed_at_ms, last, tuple(gaps), hashes
    )


def build_redaction_block(
    tip: LogTip,
    redaction: Redaction,
    signer: Signers,
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


def build_rotation_block(
    tip: LogTip,
    old: NoteSigner,
    new: NoteSigner,
    overlap: int,
    sealed_at_ms: int,
    new_salt: Callable[[], bytes] = lambda: secrets.token_bytes(SALT_SIZE),
) -> BuiltBlock:
    """The block holding one rotation record as the next leaf: ``old`` hands the log over to
    ``new`` from the size that includes the record, ``old`` co-signing ``overlap`` more leaves.
    The record is signed by both keys (old first), and so is the block's checkpoint.
    """
    if overlap < 0:
        raise InputError(f"--overlap {overlap}: want 0 or more leaves")
    index = tip.size
    rotation = KeyRotation(
        tip.origin, old.verifier, new.verifier, index + 1, index + 2 + overlap, sealed_at_ms
    )
    value = cosign(rotation.statement(), (old, new)).encode("utf-8")
    entry = rotation_entry(index, value, sealed_at_ms, new_salt(), tip.origin)
    record = Record(entry.position, entry.timestamp_ms, None, entry.value)
    return _seal(tip, (entry,), (record,), (old, new), sealed_at_ms, tip.last_position, ())


def redaction_sealer(
    signer: NoteSigner,
    previous: NoteSigner | None = None,
    rotations: Sequence[tuple[int, KeyRotation]] = (),
) -> RedactionSealer:
    """What :meth:`auditseal.store.blockstore.BlockStore.redact` calls to seal a redaction record
    with ``signer``'s key (and ``previous``, as :func:`checkpoint_signers` picks them given the
    log's ``rotations``)."""

    def seal(tip: LogTip, redaction: Redaction, sealed_at_ms: int) -> BuiltBlock:
        keys = checkpoint_signers(tip.origin, rotations, tip.size + 1, signer, previous)
        return build_redaction_block(tip, redaction, keys, sealed_at_ms)

    return seal


def _seal(
    tip: LogTip,
    entries: tuple[Entry, ...],
    records: tuple[Record, ...],
    signer: Signers,
    sealed_at_ms: int,
    last: int,
    gaps: tuple[tuple[int, int], ...],
    leaf_hashes: list[bytes] | None = None,
) -> BuiltBlock:
    compact = tip.compact.copy()
    if leaf_hashes is None:
        leaf_hashes = [e.leaf_hash() for e in entries]
    nodes = compact.extend(leaf_hashes)
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
    checkpoint = cosign(Checkpoint(tip.origin, compact.size, header.root).to_text(), signer)
    return BuiltBlock(
        SealedBlock(header, checkpoint, entries),
        records,
        tuple(nodes),
        LogTip(tip.origin, compact, header, last),
        gaps,
    )
