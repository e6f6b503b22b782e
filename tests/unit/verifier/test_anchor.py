"""The anchor aggregate and per-log receipts (verifier.anchor)."""

from __future__ import annotations

import base64
import json

import pytest

from auditseal.verifier import merkle
from auditseal.verifier.anchor import (
    AnchorReceipt,
    build_aggregate,
    checkpoint_body,
    verify_anchor_inclusion,
)
from auditseal.verifier.errors import FormatError, ProofError


def body(origin: str, size: int, fill: int = 1) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(bytes([fill]) * 32).decode()}\n"


BODIES = [body(f"example.org/log/{i}", 10 + i, i) for i in (3, 0, 2, 1, 4)]


def receipt(**changes: object) -> AnchorReceipt:
    agg = build_aggregate(BODIES)
    fields: dict[str, object] = dict(
        seq=7,
        origin=agg.origins[2],
        checkpoint=agg.bodies[2],
        index=2,
        size=agg.size,
        proof=tuple(agg.proof(2)),
        root=agg.root,
        tx_hash="0x" + "ab" * 32,
        block_number=12,
        block_hash="0x" + "cd" * 32,
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )
    fields.update(changes)
    return AnchorReceipt(**fields)  # type: ignore[arg-type]


def test_aggregate_is_the_rfc9162_tree_over_bodies_sorted_by_origin():
    agg = build_aggregate(BODIES)
    assert list(agg.origins) == sorted(f"example.org/log/{i}" for i in range(5))
    want = [merkle.leaf_hash(b.encode()) for b in sorted(BODIES)]
    assert list(agg.leaves) == want and agg.root == merkle.root(want)
    assert build_aggregate(list(reversed(BODIES))).root == agg.root
    for i, b in enumerate(agg.bodies):
        verify_anchor_inclusion(b, i, agg.size, agg.proof(i), agg.root)
        verify_anchor_inclusion(b.encode(), i, agg.size, agg.proof(i), agg.root)


def test_single_log_aggregate_root_is_its_leaf_hash():
    agg = build_aggregate([BODIES[0]])
    assert agg.root == merkle.leaf_hash(BODIES[0].encode()) and agg.proof(0) == []


def test_aggregate_refuses_duplicates_empty_and_malformed():
    with pytest.raises(FormatError, match="two checkpoints"):
        build_aggregate([BODIES[0], body("example.org/log/3", 99)])
    with pytest.raises(FormatError, match="no checkpoint"):
        build_aggregate([])
    with pytest.raises(FormatError):
        build_aggregate(["not a checkpoint"])


def test_wrong_body_index_or_root_fails():
    agg = build_aggregate(BODIES)
    with pytest.raises(ProofError):
        verify_anchor_inclusion(agg.bodies[1], 2, agg.size, agg.proof(2), agg.root)
    with pytest.raises(ProofError):
        verify_anchor_inclusion(agg.bodies[2], 3, agg.size, agg.proof(2), agg.root)
    with pytest.raises(ProofError):
        verify_anchor_inclusion(agg.bodies[2], 2, agg.size, agg.proof(2), bytes(32))


def test_checkpoint_body_strips_the_signatures():
    note = BODIES[0] + "\n\u2014 sealer " + base64.b64encode(bytes(68)).decode() + "\n"
    assert checkpoint_body(note) == BODIES[0]
    with pytest.raises(FormatError):
        checkpoint_body(BODIES[0])


def test_receipt_json_round_trip_and_verify():
    r = receipt()
    r.verify()
    r.verify(r.root)
    text = json.dumps(r.to_json())
    assert AnchorReceipt.from_json(json.loads(text)) == r
    with pytest.raises(ProofError):
        r.verify(bytes(32))


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"format": "other"},
        {"seq": True},
        {"seq": "7"},
        {"proof": "00"},
        {"proof": ["AB" * 32]},
        {"root": "00"},
        {"index": 99},
        {"origin": "example.org/log/0"},
        {"tx_hash": "0x12"},
        {"contract": "0x12"},
        {"status": "pending"},
        {"chain_id": 0},
    ],
)
def test_receipt_from_json_is_strict(change):
    data = {**receipt().to_json(), **change}
    with pytest.raises(FormatError):
        AnchorReceipt.from_json(data)


def test_receipt_from_json_refuses_missing_keys_and_non_objects():
    data = receipt().to_json()
    del data["block_hash"]
    with pytest.raises(FormatError, match="missing"):
        AnchorReceipt.from_json(data)
    with pytest.raises(FormatError):
        AnchorReceipt.from_json([])
