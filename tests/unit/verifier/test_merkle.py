"""RFC 9162 tree: fast code against the RFC-literal reference, round-trips and mutations."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditseal.verifier import merkle
from auditseal.verifier.errors import ProofError, RootMismatchError
from tests import reference

MAX = 64
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX)]


def flips(proof: list[bytes]):
    """Every proof with exactly one bit flipped."""
    for i, h in enumerate(proof):
        for bit in range(len(h) * 8):
            mutated = bytearray(h)
            mutated[bit // 8] ^= 1 << (bit % 8)
            yield i, bit, [*proof[:i], bytes(mutated), *proof[i + 1 :]]


def test_empty_tree_root_is_sha256_of_nothing():
    assert merkle.root([]) == hashlib.sha256(b"").digest()


def test_leaf_and_node_prefixes():
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(MAX + 1))
def test_root_matches_reference(size):
    assert merkle.root(LEAVES[:size]) == reference.mth(LEAVES[:size])


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_round_trips(size):
    leaves = LEAVES[:size]
    r = merkle.root(leaves)
    for index in range(size):
        proof = merkle.inclusion_proof(leaves, index)
        assert proof == reference.path(index, leaves)
        merkle.verify_inclusion(leaves[index], index, size, proof, r)


@pytest.mark.parametrize("new_size", range(1, MAX + 1))
def test_every_consistency_round_trips(new_size):
    leaves = LEAVES[:new_size]
    new_root = merkle.root(leaves)
    for old_size in range(1, new_size + 1):
        proof = merkle.consistency_proof(leaves, old_size)
        assert proof == reference.proof(old_size, leaves)
        merkle.verify_consistency(
            old_size, new_size, proof, merkle.root(leaves[:old_size]), new_root
        )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 16, 33, 64])
def test_inclusion_rejects_every_single_bit_flip(size):
    leaves = LEAVES[:size]
    r = merkle.root(leaves)
    for index in range(size):
        proof = merkle.inclusion_proof(leaves, index)
        for _i, _bit, bad in flips(proof):
            with pytest.raises(RootMismatchError):
                merkle.verify_inclusion(leaves[index], index, size, bad, r)
        for _i, _bit, (bad_leaf,) in flips([leaves[index]]):
            with pytest.raises(RootMismatchError):
                merkle.verify_inclusion(bad_leaf, index, size, proof, r)
        for _i, _bit, (bad_root,) in flips([r]):
            with pytest.raises(RootMismatchError):
                merkle.verify_inclusion(leaves[index], index, size, proof, bad_root)


@pytest.mark.parametrize("new_size", [2, 3, 5, 7, 8, 13, 16, 33, 64])
def test_consistency_rejects_every_single_bit_flip(new_size):
    leaves = LEAVES[:new_size]
    new_root = merkle.root(leaves)
    for old_size in range(1, new_size):
        old_root = merkle.root(leaves[:old_size])
        proof = merkle.consistency_proof(leaves, old_size)
        for _i, _bit, bad in flips(proof):
            with pytest.raises(ProofError):
                merkle.verify_consistency(old_size, new_size, bad, old_root, new_root)
        for _i, _bit, (bad_old,) in flips([old_root]):
            with pytest.raises(ProofError):
                merkle.verify_consistency(old_size, new_size, proof, bad_old, new_root)
        for _i, _bit, (bad_new,) in flips([new_root]):
            with pytest.raises(ProofError):
                merkle.verify_consistency(old_size, new_size, proof, old_root, bad_new)


@pytest.mark.parametrize(
    ("index", "size", "why"),
    [(0, 0, "out of range"), (5, 5, "out of range"), (-1, 4, "out of range")],
)
def test_inclusion_rejects_bad_positions(index, size, why):
    with pytest.raises(ProofError, match=why):
        merkle.verify_inclusion(LEAVES[0], index, size, [], merkle.root(LEAVES[:1]))


def test_inclusion_rejects_wrong_lengths_and_garbage():
    leaves = LEAVES[:7]
    r = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, 3)
    with pytest.raises(ProofError, match="want 3"):
        merkle.verify_inclusion(leaves[3], 3, 7, proof[:-1], r)
    with pytest.raises(ProofError, match="want 3"):
        merkle.verify_inclusion(leaves[3], 3, 7, [*proof, proof[0]], r)
    with pytest.raises(ProofError, match="proof\\[1\\]"):
        merkle.verify_inclusion(leaves[3], 3, 7, [proof[0], proof[1][:31], proof[2]], r)
    with pytest.raises(ProofError, match="leaf hash"):
        merkle.verify_inclusion(leaves[3] + b"\x00", 3, 7, proof, r)
    with pytest.raises(ProofError, match="root"):
        merkle.verify_inclusion(leaves[3], 3, 7, proof, r[:16])
    with pytest.raises(ProofError):
        merkle.verify_inclusion("not bytes", 3, 7, proof, r)  # type: ignore[arg-type]


def test_consistency_preconditions():
    leaves = LEAVES[:8]
    r4, r8 = merkle.root(leaves[:4]), merkle.root(leaves)
    with pytest.raises(ProofError, match="0 < old_size"):
        merkle.verify_consistency(0, 8, [], merkle.EMPTY_ROOT, r8)
    with pytest.raises(ProofError, match="0 < old_size"):
        merkle.verify_consistency(8, 4, [], r8, r4)
    merkle.verify_consistency(8, 8, [], r8, r8)
    with pytest.raises(ProofError, match="must be empty"):
        merkle.verify_consistency(8, 8, [r4], r8, r8)
    with pytest.raises(RootMismatchError):
        merkle.verify_consistency(8, 8, [], r8, r4)
    with pytest.raises(ProofError, match="want 1"):
        merkle.verify_consistency(4, 8, [], r4, r8)  # RFC 9162 step 1: empty path fails
    with pytest.raises(ValueError):
        merkle.consistency_proof(leaves, 0)
    with pytest.raises(ValueError):
        merkle.inclusion_proof(leaves, 8)


def test_proof_error_is_a_value_error():
    assert issubclass(ProofError, ValueError)


@given(st.integers(1, 2**40), st.data())
def test_plans_have_logarithmic_size_at_any_scale(size, data):
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert len(merkle.inclusion_plan(index, size).ids) <= 2 * size.bit_length()
    assert len(merkle.consistency_plan(old, size).ids) <= 2 * size.bit_length() + 1


@given(st.integers(0, 2**20), st.integers(0, 2**20))
def test_range_nodes_tile_the_range(a, b):
    begin, end = min(a, b), max(a, b)
    pos = begin
    for level, index in merkle.range_nodes(begin, end):
        assert index << level == pos
        pos += 1 << level
    assert pos == end
    assert len(merkle.range_nodes(begin, end)) <= 2 * max(end, 1).bit_length()
