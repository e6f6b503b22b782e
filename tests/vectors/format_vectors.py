"""Worked examples of docs/FORMAT.md, regenerated with

    python -m tests.vectors.format_vectors > tests/vectors/format.json

Everything is deterministic: a fixed signing seed, a fixed salt, fixed times. Ed25519 signatures
are deterministic too, so the signed note is reproducible byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import build_block, build_redaction_block, build_rotation_block
from auditseal.sealer.signer import Signer
from auditseal.store.model import LogTip, Record
from auditseal.verifier import merkle
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.redaction import Redaction

SEED = bytes(range(32))
SALT = bytes(range(16))
ORIGIN = "example.com/log"
RECORDS = [
    Record(0, 1767225600000, b"proxy-1", b'{"hello":"world"}'),
    Record(1, 1767225600001, b"proxy-1", b""),
    Record(3, 1767225600002, None, None),  # offset 2 skipped: a gap; null key and value
]
SEALED_AT = 1767225601000
REDACTED_AT = 1767225602000
NEW_SEED = bytes(range(32, 64))
NEW_NAME = "example.com/log2"
ROTATED_AT = 1767225603000


def vectors() -> dict[str, Any]:
    signer = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))
    tip = LogTip(ORIGIN, CompactRange(), None, -1)
    built = build_block(tip, RECORDS, signer, SEALED_AT, new_salt=lambda: SALT)
    block = built.block
    leaves = [e.leaf_hash() for e in block.entries]
    return {
        "description": "docs/FORMAT.md worked example: one block of three entries",
        "signer_seed": SEED.hex(),
        "verifier_key": signer.verifier.to_string(),
        "private_key": signer.to_private_string(),
        "salt": SALT.hex(),
        "entries": [
            {
                "position": e.position,
                "timestamp_ms": e.timestamp_ms,
                "key": None if e.key is None else e.key.hex(),
                "value": None if e.value is None else e.value.hex(),
                "value_commitment": e.value_commitment.hex(),
                "leaf": e.leaf().to_bytes().hex(),
                "leaf_hash": e.leaf_hash().hex(),
            }
            for e in block.entries
        ],
        "node_1_0": merkle.node_hash(leaves[0], leaves[1]).hex(),
        "root": block.header.root.hex(),
        "inclusion_proof_2": [h.hex() for h in merkle.inclusion_proof(leaves, 2)],
        "consistency_proof_1_3": [h.hex() for h in merkle.consistency_proof(leaves, 1)],
        "checkpoint_note": block.checkpoint,
        "block_header": block.header.to_text(),
        "block_hash": block.header.hash().hex(),
        "redaction": _redaction(built.tip, leaves[0], signer),
        "rotation": _rotation(built.tip, signer),
    }


def _rotation(tip: LogTip, old: Signer) -> dict[str, Any]:
    """The key of §6 rotated to a new key after block 0: the record is leaf 3 in block 1,
    with an overlap of 2 leaves (FORMAT.md §2b)."""
    new = Signer(NEW_NAME, Ed25519PrivateKey.from_private_bytes(NEW_SEED))
    block = build_rotation_block(tip, old, new, 2, ROTATED_AT, new_salt=lambda: SALT).block
    (e,) = block.entries
    return {
        "description": "the log key of §6 rotated to example.com/log2 after block 0, overlap 2",
        "new_signer_seed": NEW_SEED.hex(),
        "new_verifier_key": new.verifier.to_string(),
        "record": (e.value or b"").decode("utf-8"),
        "position": e.position,
        "timestamp_ms": e.timestamp_ms,
        "value_commitment": e.value_commitment.hex(),
        "leaf": e.leaf().to_bytes().hex(),
        "leaf_hash": e.leaf_hash().hex(),
        "root": block.header.root.hex(),
        "block_header": block.header.to_text(),
        "checkpoint_note": block.checkpoint,
    }


def _redaction(tip: LogTip, leaf_hash: bytes, signer: Signer) -> dict[str, Any]:
    """Entry 0 redacted: its record sealed as leaf 3 in block 1 (FORMAT.md §2a)."""
    red = Redaction(0, leaf_hash, "dpo@example.com", "GDPR-2026-17", REDACTED_AT)
    block = build_redaction_block(tip, red, signer, REDACTED_AT, new_salt=lambda: SALT).block
    (e,) = block.entries
    return {
        "description": "entry 0 redacted by dpo@example.com; the record is leaf 3, block 1",
        "record": (e.value or b"").decode("utf-8"),
        "position": e.position,
        "timestamp_ms": e.timestamp_ms,
        "value_commitment": e.value_commitment.hex(),
        "leaf": e.leaf().to_bytes().hex(),
        "leaf_hash": e.leaf_hash().hex(),
        "root": block.header.root.hex(),
        "block_header": block.header.to_text(),
        "checkpoint_note": block.checkpoint,
    }


if __name__ == "__main__":
    print(json.dumps(vectors(), indent=2, ensure_ascii=False))
