"""A worked example of docs/FORMAT.md §8: a proof bundle, regenerated with

    python -m tests.vectors.bundle_vector > tests/vectors/bundle.json

Deterministic like tests/vectors/format_vectors.py (fixed seed, salts and times): log
``example.com/log`` with block 0 (three events) and block 1 (two events), block 1 anchored as
leaf 0 of a two-log aggregate (anchor 7, a made-up transaction on chain 31337), with the
inclusion proof of its first event (``evt-3``).
"""

from __future__ import annotations

import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import build_block
from auditseal.sealer.signer import Signer
from auditseal.store.model import LogTip, Record
from auditseal.verifier import merkle
from auditseal.verifier.anchor import AnchorReceipt, build_aggregate, checkpoint_body
from auditseal.verifier.bundle import Bundle
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.verify import BlockMaterial, EventProof

SEED = bytes(range(32))
SALT = bytes(range(16))
ORIGIN, OTHER = "example.com/log", "example.com/other"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _event(n: int) -> Record:
    value = json.dumps({"specversion": "1.0", "id": f"evt-{n}", "sequence": n}).encode()
    return Record(n, 1767225600000 + n, b"proxy-1", value, f"evt-{n}")


def bundle() -> Bundle:
    signer = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))
    first = build_block(
        LogTip(ORIGIN, CompactRange(), None, -1),
        [_event(n) for n in range(3)],
        signer,
        1767225601000,
        new_salt=lambda: SALT,
    )
    second = build_block(
        first.tip, [_event(n) for n in (3, 4)], signer, 1767225602000, new_salt=lambda: SALT
    )
    other = signer_of(OTHER)
    other_block = build_block(
        LogTip(OTHER, CompactRange(), None, -1), [_event(9)], other, 1767225602000, lambda: SALT
    )
    body = checkpoint_body(second.block.checkpoint)
    aggregate = build_aggregate([body, checkpoint_body(other_block.block.checkpoint)])
    index = aggregate.index_of(ORIGIN)
    receipt = AnchorReceipt(
        seq=7,
        origin=ORIGIN,
        checkpoint=body,
        index=index,
        size=aggregate.size,
        proof=tuple(aggregate.proof(index)),
        root=aggregate.root,
        tx_hash="0x" + "ab" * 32,
        block_number=12,
        block_hash="0x" + "cd" * 32,
        chain_id=31337,
        contract=CONTRACT,
    )
    leaves = [e.leaf_hash() for e in (*first.block.entries, *second.block.entries)]
    material = BlockMaterial(
        origin=ORIGIN,
        block=second.block,
        prev=first.block.header,
        prev_checkpoint=first.block.checkpoint,
        compact_at_start=tuple(first.tip.compact.hashes),
        receipt=receipt,
        consistency=(),
        anchored_note=second.block.checkpoint,
    )
    proof = EventProof(3, tuple(merkle.inclusion_proof(leaves, 3)), "evt-3")
    return Bundle(material, proof)


def signer_of(origin: str) -> Signer:
    return Signer(origin, Ed25519PrivateKey.from_private_bytes(SEED))


def verifier_key() -> str:
    return signer_of(ORIGIN).verifier.to_string()


if __name__ == "__main__":
    sys.stdout.buffer.write(bundle().encode())
