"""Compact ranges: the state of an append-only RFC 9162 tree in at most log₂(n) hashes.

The compact range of a tree of ``size`` leaves holds the roots of the complete subtrees that
cover ``[0, size)``, one per set bit of ``size`` (``merkle.range_nodes(0, size)``). Appending a
leaf merges equal-sized subtrees, so appending a block costs O(block + log n) hashes and never
reads history. Every merge yields a complete node; callers that store nodes (the sealer's block
store) receive them through :meth:`CompactRange.extend`, and callers that only check a root (the
verifier replaying a log) ignore them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from auditseal.verifier.merkle import EMPTY_ROOT, HASH_SIZE, NodeID, node_hash, range_nodes

__all__ = ["CompactRange", "Node"]

Node = tuple[int, int, bytes]
"""``(level, index, hash)`` of a complete subtree."""


@dataclass
class CompactRange:
    """Mutable compact range of ``[0, size)``; ``hashes`` are ordered left to right."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"negative tree size {self.size}")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a compact range of size {self.size} holds {self.size.bit_count()} hashes, "
                f"got {len(self.hashes)}"
            )
        for h in self.hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"compact range hash of {len(h)} bytes, want {HASH_SIZE}")

    @staticmethod
    def node_ids(size: int) -> list[NodeID]:
        """The nodes whose hashes form the compact range of a tree of ``size``."""
        return range_nodes(0, size)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, list(self.hashes))

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        """Append leaves; return every complete node they create, leaves included.

        Nodes come in creation order: each leaf ``(0, i, h)``, then the parents it completes.
        """
        leaf_hashes = list(leaf_hashes)
        for i, h in enumerate(leaf_hashes):  # all checks first: a bad leaf changes nothing
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash {self.size + i} has {len(h)} bytes, want {HASH_SIZE}")
        created: list[Node] = []
        hashes = self.hashes
        size = self.size
        append = created.append
        for h in leaf_hashes:
            append((0, size, h))
            # Each trailing one bit of `size` is a complete subtree that the new leaf completes.
            level, index, s = 0, size, size
            while s & 1:
                h = node_hash(hashes.pop(), h)
                level, index, s = level + 1, index >> 1, s >> 1
                append((level, index, h))
            hashes.append(h)
            size += 1
        self.size = size
        return created

    def root(self) -> bytes:
        """MTH of the tree: the compact range folded right to left."""
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    @classmethod
    def from_leaves(cls, leaf_hashes: Sequence[bytes]) -> CompactRange:
        cr = cls()
        cr.extend(leaf_hashes)
        return cr
