from __future__ import annotations

import pytest

from auditseal.verifier import merkle
from auditseal.verifier.compact import CompactRange
from tests import reference

LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(70)]


def test_root_after_every_append_matches_reference():
    cr = CompactRange()
    assert cr.root() == merkle.EMPTY_ROOT
    for n, h in enumerate(LEAVES, start=1):
        cr.extend([h])
        assert cr.size == n
        assert cr.root() == reference.mth(LEAVES[:n])


def test_created_nodes_are_exactly_the_complete_subtrees():
    for split in (0, 1, 5, 8, 13, 32):
        cr = CompactRange.from_leaves(LEAVES[:split])
        created = cr.extend(LEAVES[split:])
        n = len(LEAVES)
        expected = {
            (level, index)
            for level in range(n.bit_length())
            for index in range(n >> level)
            if (index + 1) << level > split
        }
        assert {(lvl, idx) for lvl, idx, _ in created} == expected
        for level, index, h in created:
            assert h == reference.mth(LEAVES[index << level : (index + 1) << level])


def test_compact_hashes_are_the_range_nodes():
    for n in range(len(LEAVES)):
        cr = CompactRange.from_leaves(LEAVES[:n])
        ids = CompactRange.node_ids(n)
        assert [reference.mth(LEAVES[i << lv : (i + 1) << lv]) for lv, i in ids] == cr.hashes
        assert CompactRange(n, list(cr.hashes)).root() == cr.root()


def test_rejects_inconsistent_state():
    with pytest.raises(ValueError, match="holds 2 hashes"):
        CompactRange(3, [LEAVES[0]])
    with pytest.raises(ValueError, match="33 bytes"):
        CompactRange(1, [b"x" * 33])
    with pytest.raises(ValueError, match="want 32"):
        CompactRange().extend([b"short"])


def test_bad_leaf_leaves_state_unchanged():
    cr = CompactRange.from_leaves(LEAVES[:5])
    before = cr.copy()
    with pytest.raises(ValueError):
        cr.extend([LEAVES[5], b"short"])
    assert cr == before
