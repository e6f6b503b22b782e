"""RFC 9162 §2.1 Merkle trees with SHA-256: hashing, proofs and their verification.

Nodes are named ``(level, index)``: the node at level ``l`` and index ``i`` is the root of the
complete subtree over leaves ``[i << l, (i + 1) << l)``. Proofs are planned as lists of such
complete nodes (at most one "ephemeral" node, the root of an incomplete right edge, is rebuilt
from the complete nodes under it), so that any storage holding complete subtrees can serve a
proof with O(log n) reads. The plan follows transparency-dev/merkle's ``proof`` package.

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step: ``*_from_*`` functions compute,
``verify_*`` functions compare and raise :class:`~auditseal.verifier.errors.ProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auditseal.verifier.errors import ProofError, RootMismatchError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeID",
    "ProofPlan",
    "consistency_plan",
    "consistency_proof",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeID = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 ‖ d)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return _sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the tree whose leaves hash to ``leaf_hashes``; SHA-256("") when empty."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # Fold level by level; an odd node at the right edge is promoted unchanged, which is exactly
    # RFC 9162's split at the largest power of two below n.
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --- Proof plans: which complete nodes a proof needs ----------------------------------------


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The complete subtrees that exactly cover leaves ``[begin, end)``, left to right.

    For ``begin == 0`` this is the compact range of a tree of size ``end``: one node per set bit.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    left, right = _decompose(begin, end)
    ids: list[NodeID] = []
    pos = begin
    while left:  # left border, lower levels first
        level = (left & -left).bit_length() - 1
        ids.append((level, pos >> level))
        pos += 1 << level
        left ^= 1 << level
    while right:  # right border, upper levels first
        level = right.bit_length() - 1
        ids.append((level, pos >> level))
        pos += 1 << level
        right ^= 1 << level
    return ids


def _decompose(begin: int, end: int) -> tuple[int, int]:
    """Bit masks of the left and right borders of the compact range [begin, end)."""
    if begin == 0:
        return 0, end
    xbegin = begin - 1
    # Paths to leaves begin-1 and end diverge at bit d; only nodes strictly below belong.
    mask = (1 << ((xbegin ^ end).bit_length() - 1)) - 1
    return ~xbegin & mask, end & mask


@dataclass(frozen=True)
class ProofPlan:
    """The complete nodes that make up a proof, and how to fold them into it.

    ``ids[begin:end]`` (when non-empty) are the nodes under the ephemeral node, lowest level
    first; they are folded right-to-left into one hash. Every other id is one proof element.
    """

    ids: tuple[NodeID, ...]
    begin: int
    end: int

    def rehash(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Turn the hashes of ``ids`` (same order) into the proof."""
        if len(hashes) != len(self.ids):
            raise ValueError(f"got {len(hashes)} hashes for {len(self.ids)} nodes")
        proof = list(hashes[: self.begin])
        if self.begin < self.end:
            acc = hashes[self.begin]
            for h in hashes[self.begin + 1 : self.end]:
                acc = node_hash(h, acc)
            proof.append(acc)
        proof.extend(hashes[self.end :])
        return proof

    def resolve(self, get_node: Callable[[NodeID], bytes]) -> list[bytes]:
        """Fetch every node with ``get_node`` and build the proof."""
        return self.rehash([get_node(node) for node in self.ids])


def _plan(index: int, level: int, size: int, skip_first: bool) -> ProofPlan:
    """Nodes proving that node ``(level, index)`` is in the tree of ``size`` leaves."""
    # The fork is where the paths to (level, index) and to leaf `size` diverge; its sibling is
    # the ephemeral node, the root of the incomplete right edge.
    inner = (index ^ (size >> level)).bit_length() - 1
    fork_level, fork_index = level + inner, index >> inner
    fork_begin, fork_end = fork_index << fork_level, (fork_index + 1) << fork_level

    ids: list[NodeID] = [(level, index)]
    lvl, idx = level, index
    while lvl < fork_level:  # siblings on the path up to the fork
        ids.append((lvl, idx ^ 1))
        lvl, idx = lvl + 1, idx >> 1
    len1 = len(ids)
    ids.extend(reversed(range_nodes(fork_end, size)))  # the ephemeral node's parts
    len2 = len(ids)
    ids.extend(reversed(range_nodes(0, fork_begin)))  # the left of the tree, upward
    if len1 >= len2:
        len1 = len2 = 0
    if skip_first:
        ids = ids[1:]
        if len1 < len2:
            len1, len2 = len1 - 1, len2 - 1
    return ProofPlan(tuple(ids), len1, len2)


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """Plan of the inclusion proof of leaf ``index`` in the tree of ``size``; needs index < size."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range for tree size {size}")
    return _plan(index, 0, size, skip_first=True)


def consistency_plan(old_size: int, new_size: int) -> ProofPlan:
    """Plan of the consistency proof from ``old_size`` to ``new_size``; needs 0 < old ≤ new."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"consistency needs 0 < old_size <= new_size, got {old_size}, {new_size}")
    if old_size == new_size:
        return ProofPlan((), 0, 0)
    # The largest complete subtree ending at old_size; when old_size is a power of two that node
    # is the old root itself, which the verifier already holds.
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    return _plan(index, level, new_size, skip_first=index == 0)


class _MemoryTree:
    """Complete-subtree hashes of an in-memory list of leaf hashes, computed on demand."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = leaf_hashes

    def node(self, node: NodeID) -> bytes:
        level, index = node
        return root(self._leaves[index << level : (index + 1) << level])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1 for the tree of all ``leaf_hashes``."""
    return inclusion_plan(index, len(leaf_hashes)).resolve(_MemoryTree(leaf_hashes).node)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1 for the tree of all ``leaf_hashes``."""
    return consistency_plan(old_size, len(leaf_hashes)).resolve(_MemoryTree(leaf_hashes).node)


# --- Verification: RFC 9162 §2.1.3.2 and §2.1.4.2 -------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what}: want a {HASH_SIZE}-byte hash, got {_describe(value)}")


def _check_proof(proof: Sequence[bytes], want_len: int) -> None:
    if len(proof) != want_len:
        raise ProofError(f"proof has {len(proof)} hashes, want {want_len}")
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return type(value).__name__


def _inclusion_len(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` yields for ``leaf_hash`` at ``index`` in a tree of ``size``.

    Preconditions (else ProofError): 0 ≤ index < size, proof of the exact length for (index,
    size), 32-byte hashes.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} out of range for tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_proof(proof, _inclusion_len(index, size))
    fn, sn, r = index, size - 1, leaf_hash  # steps 2 and 3
    for p in proof:  # step 4
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5
        raise ProofError("proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises ProofError on any failure, malformed input included; returns nothing on success.
    """
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatchError(
            f"inclusion of leaf {index} in tree of size {size}", root, calculated
        )


def _consistency_len(old_size: int, new_size: int) -> int:
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    n = _inclusion_len(index, (new_size - 1 >> level) + 1)
    return n if index == 0 else n + 1


def roots_from_consistency_proof(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes]:
    """The (old, new) roots that ``proof`` yields, per RFC 9162 §2.1.4.2; needs 0 < old < new."""
    if not 0 < old_size < new_size:
        raise ProofError(f"consistency needs 0 < old_size < new_size, got {old_size}, {new_size}")
    _check_hash("old root", old_root)
    _check_proof(proof, _consistency_len(old_size, new_size))  # implies step 1: not empty
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise ProofError("proof is shorter than the path to the root")
    return fr, sr


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    Preconditions (else ProofError): 0 < old_size ≤ new_size; when equal, the proof is empty and
    the roots are equal. Raises ProofError on any failure; returns nothing on success.
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    if old_size == new_size and old_size > 0:
        if proof:
            raise ProofError(f"proof between equal sizes must be empty, got {len(proof)} hashes")
        if old_root != new_root:
            raise RootMismatchError(f"tree of size {old_size}", old_root, new_root)
        return
    calc_old, calc_new = roots_from_consistency_proof(old_size, new_size, proof, old_root)
    if calc_old != old_root:
        raise RootMismatchError(f"consistency {old_size}->{new_size}: old", old_root, calc_old)
    if calc_new != new_root:
        raise RootMismatchError(f"consistency {old_size}->{new_size}: new", new_root, calc_new)
