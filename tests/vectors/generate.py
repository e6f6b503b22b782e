"""(Re)generate auditseal's own Merkle proof vectors under ``tests/vectors/merkle/generated/``.

Usage, from the repository root::

    .venv/bin/python tests/vectors/generate.py          # rewrite generated/
    .venv/bin/python tests/vectors/generate.py --check  # exit 1 if generated/ is stale

For a few tree sizes the script writes one JSON file per case: the happy path (proof, roots and
the leaf data they come from, as produced by ``verifier.merkle``) and mutations of it, each with
the result our verifier must give. The expected result is derived from the mutation and the
RFC 9162 proof definitions, never by running the verifier: a changed hash fails on the
recomputed root (``RootMismatchError``); a proof of the wrong length for the claimed sizes is
malformed (``ProofError``, the base class). A proof presented for another index or size is
compared by shape (see ``inclusion_shape`` and ``consistency_shape``): a different shape of the
same length fails on the root, the same shape still verifies (``"ok"``) -- a proof alone does
not pin the tree size, the roots it is checked against do.

Bits are numbered within a hash from the least significant bit of byte 0: bit ``b`` is the bit
``1 << (b % 8)`` of byte ``b // 8``.

The output is deterministic: fixed leaf data, fixed cases, fixed bit choices, sorted JSON
writing. The directory is owned by this script; it is deleted and rewritten on every run.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from auditseal.verifier import merkle  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "merkle" / "generated"

SOURCE = {
    "generator": "tests/vectors/generate.py",
    "from": "verifier.merkle (auditseal)",
}

# (tree_size, leaf_index): single leaf, left/right edges, ephemeral right edge, perfect trees.
INCLUSION_CASES = [(1, 0), (2, 1), (5, 4), (7, 3), (8, 5), (13, 12)]
# (old_size, new_size): equal sizes, power-of-two and other old sizes, RFC example sizes.
CONSISTENCY_CASES = [(1, 1), (7, 7), (1, 2), (3, 7), (4, 7), (6, 7), (5, 13), (8, 13)]

MAX_SIZE = max(n for n, _ in INCLUSION_CASES + CONSISTENCY_CASES) + 1
LEAF_DATA = [f"auditseal/vectors/leaf/{i}".encode() for i in range(MAX_SIZE)]
LEAVES = [merkle.leaf_hash(d) for d in LEAF_DATA]

OK = "ok"
PROOF_ERROR = "ProofError"
ROOT_MISMATCH = "RootMismatchError"

Vector = dict[str, Any]


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with bit ``bit`` flipped (see the module docstring for the numbering)."""
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bit_for(i: int) -> int:
    """A fixed, spread-out bit to flip in the ``i``-th hash of a case."""
    return (67 * i + 3) % (8 * merkle.HASH_SIZE)


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_shape(index: int, size: int) -> tuple[str, ...] | None:
    """PATH(index, D[size]) of RFC 9162 section 2.1.3.1, as the side each element sits on.

    None when there is no such path. Verification folds the proof by these sides only, so a
    proof checks out for every (index, size) with the same shape.
    """
    if not 0 <= index < size:
        return None
    if size == 1:
        return ()
    k = _largest_power_of_two_below(size)
    if index < k:
        return (*(inclusion_shape(index, k) or ()), "right")
    return (*(inclusion_shape(index - k, size - k) or ()), "left")


def consistency_shape(old_size: int, new_size: int) -> tuple[str, ...] | None:
    """PROOF(old_size, D[new_size]) of RFC 9162 section 2.1.4.1, as the role of each element.

    None when there is no such proof (we require 0 < old_size <= new_size). "seed" is the old
    tree's last complete subtree, "right" an element that only the new root covers, "left" one
    that both roots cover.
    """
    if not 0 < old_size <= new_size:
        return None

    def sub(m: int, n: int, b: bool) -> tuple[str, ...]:
        if m == n:
            return () if b else ("seed",)
        k = _largest_power_of_two_below(n)
        if m <= k:
            return (*sub(m, k, b), "right")
        return (*sub(m - k, n - k, False), "left")

    return sub(old_size, new_size, True)


SAME_SHAPE = (
    "; the proof has the same shape for both sizes, so it still verifies against the same "
    "root(s): a proof does not bind the tree size, the checkpoint pairing root and size does"
)


def expectation(actual: tuple[str, ...] | None, claimed: tuple[str, ...] | None) -> tuple[str, str]:
    """Expected result, and a note for the description, of presenting a proof of shape
    ``actual`` for parameters whose proofs have shape ``claimed``."""
    if actual is None or claimed is None or len(claimed) != len(actual):
        return PROOF_ERROR, ""
    if claimed == actual:
        return OK, SAME_SHAPE
    return ROOT_MISMATCH, ""


def inclusion_vectors(size: int, index: int) -> Iterator[tuple[str, Vector]]:
    leaves = LEAVES[:size]
    leaf, root = leaves[index], merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    case = f"leaf {index} of a tree of size {size}"

    def vec(mutation: str, what: str, expected: str, **over: Any) -> tuple[str, Vector]:
        fields: Vector = {
            "leaf_index": index,
            "tree_size": size,
            "leaf_hash": leaf,
            "root": root,
            "proof": proof,
            **over,
        }
        v: Vector = {
            "description": f"Inclusion of {case}: {what}.",
            "source": SOURCE,
            "kind": "inclusion",
            "mutation": mutation,
            "leaf_index": fields["leaf_index"],
            "tree_size": fields["tree_size"],
            "leaf_hash": fields["leaf_hash"].hex(),
            "root": fields["root"].hex(),
            "proof": [p.hex() for p in fields["proof"]],
            "expected": expected,
        }
        if mutation == "happy-path":
            v["leaf_data"] = [d.hex() for d in LEAF_DATA[:size]]
        return mutation, v

    yield vec("happy-path", "the proof built by verifier.merkle.inclusion_proof", OK)
    for i, h in enumerate(proof):
        b = bit_for(i)
        bad = [*proof[:i], flip(h, b), *proof[i + 1 :]]
        yield vec(
            f"modified-proof[{i}]-bit-{b}",
            f"bit {b} of proof[{i}] flipped",
            ROOT_MISMATCH,
            proof=bad,
        )
    b = bit_for(len(proof))
    yield vec(
        f"modified-leaf-hash-bit-{b}",
        f"bit {b} of the leaf hash flipped",
        ROOT_MISMATCH,
        leaf_hash=flip(leaf, b),
    )
    b = bit_for(len(proof) + 1)
    yield vec(
        f"modified-root-bit-{b}", f"bit {b} of the root flipped", ROOT_MISMATCH, root=flip(root, b)
    )
    if proof:
        yield vec(
            "truncated-proof", "the last proof element dropped", PROOF_ERROR, proof=proof[:-1]
        )
        yield vec("empty-proof", "the proof replaced by an empty one", PROOF_ERROR, proof=[])
    yield vec("extended-proof", "the root appended to the proof", PROOF_ERROR, proof=[*proof, root])
    shape = inclusion_shape(index, size)
    for name, new_index in (("plus", index + 1), ("minus", index - 1)):
        expected, note = expectation(shape, inclusion_shape(new_index, size))
        yield vec(
            f"wrong-index-{name}-1",
            f"the proof presented for leaf index {new_index}{note}",
            expected,
            leaf_index=new_index,
        )
    for name, new_size in (("plus", size + 1), ("minus", size - 1)):
        expected, note = expectation(shape, inclusion_shape(index, new_size))
        yield vec(
            f"wrong-size-{name}-1",
            f"the proof presented for tree size {new_size}{note}",
            expected,
            tree_size=new_size,
        )


def consistency_vectors(old_size: int, new_size: int) -> Iterator[tuple[str, Vector]]:
    leaves = LEAVES[:new_size]
    old_root, new_root = merkle.root(leaves[:old_size]), merkle.root(leaves)
    proof = merkle.consistency_proof(leaves, old_size)
    case = f"sizes {old_size} -> {new_size}"

    def vec(mutation: str, what: str, expected: str, **over: Any) -> tuple[str, Vector]:
        fields: Vector = {
            "old_size": old_size,
            "new_size": new_size,
            "old_root": old_root,
            "new_root": new_root,
            "proof": proof,
            **over,
        }
        v: Vector = {
            "description": f"Consistency, {case}: {what}.",
            "source": SOURCE,
            "kind": "consistency",
            "mutation": mutation,
            "old_size": fields["old_size"],
            "new_size": fields["new_size"],
            "old_root": fields["old_root"].hex(),
            "new_root": fields["new_root"].hex(),
            "proof": [p.hex() for p in fields["proof"]],
            "expected": expected,
        }
        if mutation == "happy-path":
            v["leaf_data"] = [d.hex() for d in LEAF_DATA[:new_size]]
        return mutation, v

    yield vec("happy-path", "the proof built by verifier.merkle.consistency_proof", OK)
    if old_size == new_size:
        yield vec(
            "non-empty-proof",
            "equal sizes need an empty proof; the root is given as one",
            PROOF_ERROR,
            proof=[old_root],
        )
        b = bit_for(0)
        yield vec(
            f"modified-new-root-bit-{b}",
            f"equal sizes, bit {b} of the new root flipped",
            ROOT_MISMATCH,
            new_root=flip(new_root, b),
        )
        yield vec(
            "old-size-zero",
            "old size 0 (a proof from the empty tree proves nothing)",
            PROOF_ERROR,
            old_size=0,
            old_root=merkle.EMPTY_ROOT,
        )
        return
    for i, h in enumerate(proof):
        b = bit_for(i)
        bad = [*proof[:i], flip(h, b), *proof[i + 1 :]]
        yield vec(
            f"modified-proof[{i}]-bit-{b}",
            f"bit {b} of proof[{i}] flipped",
            ROOT_MISMATCH,
            proof=bad,
        )
    b = bit_for(len(proof))
    yield vec(
        f"modified-old-root-bit-{b}",
        f"bit {b} of the old root flipped",
        ROOT_MISMATCH,
        old_root=flip(old_root, b),
    )
    b = bit_for(len(proof) + 1)
    yield vec(
        f"modified-new-root-bit-{b}",
        f"bit {b} of the new root flipped",
        ROOT_MISMATCH,
        new_root=flip(new_root, b),
    )
    yield vec(
        "swapped-roots",
        "old and new roots swapped",
        ROOT_MISMATCH,
        old_root=new_root,
        new_root=old_root,
    )
    yield vec("truncated-proof", "the last proof element dropped", PROOF_ERROR, proof=proof[:-1])
    yield vec(
        "extended-proof",
        "the new root appended to the proof",
        PROOF_ERROR,
        proof=[*proof, new_root],
    )
    yield vec("empty-proof", "the proof replaced by an empty one", PROOF_ERROR, proof=[])
    yield vec(
        "old-size-zero",
        "old size 0 (a proof from the empty tree proves nothing)",
        PROOF_ERROR,
        old_size=0,
        old_root=merkle.EMPTY_ROOT,
    )
    shape = consistency_shape(old_size, new_size)
    for name, wrong in (("plus", old_size + 1), ("minus", old_size - 1)):
        expected, note = expectation(shape, consistency_shape(wrong, new_size))
        yield vec(
            f"wrong-old-size-{name}-1",
            f"the proof presented for old size {wrong}{note}",
            expected,
            old_size=wrong,
        )
    for name, wrong in (("plus", new_size + 1), ("minus", new_size - 1)):
        expected, note = expectation(shape, consistency_shape(old_size, wrong))
        yield vec(
            f"wrong-new-size-{name}-1",
            f"the proof presented for new size {wrong}{note}",
            expected,
            new_size=wrong,
        )


def all_vectors() -> Iterator[tuple[Path, Vector]]:
    for size, index in INCLUSION_CASES:
        for name, v in inclusion_vectors(size, index):
            yield Path("inclusion", f"size-{size}-index-{index}", f"{name}.json"), v
    for old_size, new_size in CONSISTENCY_CASES:
        for name, v in consistency_vectors(old_size, new_size):
            yield Path("consistency", f"{old_size}-to-{new_size}", f"{name}.json"), v


def generate(out_dir: Path) -> list[Path]:
    """Delete ``out_dir`` and write every vector into it; returns the files written."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    written = []
    for rel, vector in all_vectors():
        path = out_dir / rel
        if path.exists():
            raise RuntimeError(f"two vectors map to {rel}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(vector, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if --out is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "generated"
            generate(fresh)
            if not args.out.is_dir() or not _same_tree(fresh, args.out):
                print(f"{args.out} is out of date; run {Path(__file__).name}", file=sys.stderr)
                return 1
        return 0
    written = generate(args.out)
    print(f"wrote {len(written)} vectors under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
