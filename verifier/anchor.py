"""The anchor aggregate: one RFC 9162 tree over the latest checkpoint body of every log.

Leaf ``i`` of the aggregate is ``leaf_hash(body_i)``, the UTF-8 bytes of the C2SP checkpoint
body (``origin\\nsize\\nbase64(root)\\n[extensions]``, without the signatures) of the ``i``-th
log in origin order (Python string order, i.e. by code point). The aggregate root is what the
anchor service writes to the ``AuditAnchor`` contract as ``rootOf(seq)``.

A per-log :class:`AnchorReceipt` carries that log's checkpoint body, its index in the
aggregate, the aggregate's size and the inclusion proof, plus where the root went on chain.
:func:`verify_anchor_inclusion` checks the proof against a root read back from the chain
(the chain look-up itself is not here: this module stays pure).

Receipt JSON (``format`` ``auditseal-anchor-receipt-1``): hashes are lowercase hex without
``0x`` (as in block headers), chain values are ``0x`` hex as Ethereum's JSON-RPC writes them:
the tx hash and block hash in lowercase, the contract address in any case (EIP-55 checksum
case is allowed). Parsing is strict: unknown or missing keys, wrong types and malformed
hashes are FormatError. Every field is checked by :class:`~auditseal.verifier.verify.Verifier` (the
table in docs/FORMAT.md §8): the chain fields against the ``Anchored`` event of ``seq``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import FormatError
from auditseal.verifier.merkle import (
    HASH_SIZE,
    inclusion_proof,
    leaf_hash,
    root,
    verify_inclusion,
)
from auditseal.verifier.note import SignedNote

__all__ = [
    "RECEIPT_FORMAT",
    "STATUSES",
    "Aggregate",
    "AnchorReceipt",
    "build_aggregate",
    "checkpoint_body",
    "verify_anchor_inclusion",
]

RECEIPT_FORMAT = "auditseal-anchor-receipt-1"
STATUSES = ("confirmed", "orphaned")
MAX_SEQ = 2**64 - 1  # the contract's uint64

_HEX32 = re.compile(r"[0-9a-f]{64}")
_TX_HASH = re.compile(r"0x[0-9a-f]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def checkpoint_body(signed_checkpoint: str) -> str:
    """The body (the signed text) of a signed checkpoint note, parsed strictly.

    Raises FormatError if the note or the body is malformed. Signatures are NOT verified here.
    """
    text = SignedNote.from_text(signed_checkpoint).text
    Checkpoint.from_text(text)
    return text


@dataclass(frozen=True)
class Aggregate:
    """The aggregate tree: ``bodies`` sorted by origin, their ``leaves`` and the ``root``."""

    origins: tuple[str, ...]
    bodies: tuple[str, ...]
    leaves: tuple[bytes, ...]
    root: bytes

    @property
    def size(self) -> int:
        return len(self.leaves)

    def index_of(self, origin: str) -> int:
        try:
            return self.origins.index(origin)
        except ValueError:
            raise KeyError(origin) from None

    def proof(self, index: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf ``index``."""
        return inclusion_proof(self.leaves, index)

    def bodies_by_origin(self) -> dict[str, str]:
        return dict(zip(self.origins, self.bodies, strict=True))


def build_aggregate(bodies: Sequence[str]) -> Aggregate:
    """The aggregate over checkpoint ``bodies`` (one per log, any order).

    Raises FormatError for a malformed body, two bodies of one origin, or no body at all (the
    root of an empty tree is not anchored).
    """
    by_origin: dict[str, str] = {}
    for body in bodies:
        if not isinstance(body, str):
            raise FormatError(f"checkpoint body: want a string, got {type(body).__name__}")
        origin = Checkpoint.from_text(body).origin
        if origin in by_origin:
            raise FormatError(f"aggregate: two checkpoints of log {origin!r}")
        by_origin[origin] = body
    if not by_origin:
        raise FormatError("aggregate: no checkpoint to anchor")
    origins = tuple(sorted(by_origin))
    ordered = tuple(by_origin[o] for o in origins)
    leaves = tuple(leaf_hash(b.encode("utf-8")) for b in ordered)
    return Aggregate(origins, ordered, leaves, root(leaves))


def verify_anchor_inclusion(
    checkpoint_body: str | bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    aggregate_root: bytes,
) -> None:
    """Check that ``checkpoint_body`` is leaf ``index`` of the aggregate of ``size`` whose root
    is ``aggregate_root`` (as read from ``rootOf(seq)``).

    Raises ProofError (a VerificationError) if it is not, FormatError if the body does not
    parse as a checkpoint.
    """
    raw = checkpoint_body.encode("utf-8") if isinstance(checkpoint_body, str) else checkpoint_body
    try:
        Checkpoint.from_text(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FormatError("checkpoint body: not UTF-8") from exc
    verify_inclusion(leaf_hash(raw), index, size, proof, aggregate_root)


# --- receipts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorReceipt:
    """Proof that one log's checkpoint is in anchor ``seq``, and where that anchor is on chain.

    ``status`` is ``confirmed`` or ``orphaned`` (its block left the canonical chain; a later
    anchor carries the state again).
    """

    seq: int
    origin: str
    checkpoint: str
    index: int
    size: int
    proof: tuple[bytes, ...]
    root: bytes
    tx_hash: str
    block_number: int
    block_hash: str
    chain_id: int
    contract: str
    status: str = "confirmed"

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_SEQ:
            raise FormatError(f"anchor receipt: seq {self.seq} out of range")
        if Checkpoint.from_text(self.checkpoint).origin != self.origin:
            raise FormatError(f"anchor receipt: checkpoint is not of log {self.origin!r}")
        if not 0 <= self.index < self.size:
            raise FormatError(f"anchor receipt: index {self.index} not in [0, {self.size})")
        for i, h in enumerate((*self.proof, self.root)):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise FormatError(f"anchor receipt: hash {i} is not {HASH_SIZE} bytes")
        for name in ("tx_hash", "block_hash"):
            if not _TX_HASH.fullmatch(getattr(self, name)):
                raise FormatError(f"anchor receipt: {name} wants 0x + 64 lowercase hex digits")
        if not _ADDRESS.fullmatch(self.contract):
            raise FormatError("anchor receipt: contract wants 0x + 40 hex digits")
        if self.block_number < 0 or self.chain_id < 1:
            raise FormatError("anchor receipt: block number or chain id out of range")
        if self.status not in STATUSES:
            raise FormatError(f"anchor receipt: status {self.status!r} not in {STATUSES}")

    def verify(self, aggregate_root: bytes | None = None) -> None:
        """Check the proof against ``aggregate_root`` (read from the chain), or, without it,
        against the receipt's own ``root`` (which only shows the receipt is coherent)."""
        verify_anchor_inclusion(
            self.checkpoint,
            self.index,
            self.size,
            self.proof,
            self.root if aggregate_root is None else aggregate_root,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RECEIPT_FORMAT,
            "seq": self.seq,
            "origin": self.origin,
            "checkpoint": self.checkpoint,
            "index": self.index,
            "size": self.size,
            "proof": [h.hex() for h in self.proof],
            "root": self.root.hex(),
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: object) -> AnchorReceipt:
        """Parse :meth:`to_json`'s output strictly; FormatError on anything else."""
        if not isinstance(data, Mapping):
            raise FormatError("anchor receipt: want a JSON object")
        want = set(_RECEIPT_KEYS)
        got = set(data)
        if got != want:
            extra, missing = sorted(map(str, got - want)), sorted(want - got)
            raise FormatError(f"anchor receipt: unknown keys {extra}, missing keys {missing}")
        if data["format"] != RECEIPT_FORMAT:
            raise FormatError(f"anchor receipt: format is not {RECEIPT_FORMAT!r}")
        proof = data["proof"]
        if not isinstance(proof, list):
            raise FormatError("anchor receipt: proof wants a list of hex hashes")
        return cls(
            seq=_int(data, "seq"),
            origin=_str(data, "origin"),
            checkpoint=_str(data, "checkpoint"),
            index=_int(data, "index"),
            size=_int(data, "size"),
            proof=tuple(_hash(h, f"proof[{i}]") for i, h in enumerate(proof)),
            root=_hash(data["root"], "root"),
            tx_hash=_str(data, "tx_hash"),
            block_number=_int(data, "block_number"),
            block_hash=_str(data, "block_hash"),
            chain_id=_int(data, "chain_id"),
            contract=_str(data, "contract"),
            status=_str(data, "status"),
        )


_RECEIPT_KEYS = (
    "format",
    "seq",
    "origin",
    "checkpoint",
    "index",
    "size",
    "proof",
    "root",
    "tx_hash",
    "block_number",
    "block_hash",
    "chain_id",
    "contract",
    "status",
)


def _int(data: Mapping[str, object], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"anchor receipt: {key} wants an integer")
    return value


def _str(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise FormatError(f"anchor receipt: {key} wants a string")
    return value


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise FormatError(f"anchor receipt: {what} wants 64 lowercase hex digits")
    return bytes.fromhex(value)
