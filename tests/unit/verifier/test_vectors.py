"""External and generated Merkle proof vectors (tests/vectors/merkle) against verifier.merkle.

Every JSON file under ``tests/vectors/merkle`` is one case with an ``expected`` result: ``"ok"``,
``"ProofError"`` (any ProofError, RootMismatchError included) or ``"RootMismatchError"``.
See tests/vectors/README.md for where each set comes from.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auditseal.verifier import errors, merkle
from tests import reference

VECTORS_DIR = Path(__file__).resolve().parents[2] / "vectors"
MERKLE_DIR = VECTORS_DIR / "merkle"
GENERATED_DIR = MERKLE_DIR / "generated"
ALL_FILES = sorted(MERKLE_DIR.rglob("*.json"))

EXPECTED = {
    "ok": None,
    "ProofError": errors.ProofError,
    "RootMismatchError": errors.RootMismatchError,
}

Vector = dict[str, Any]


@cache
def load(path: Path) -> Vector:
    return json.loads(path.read_text(encoding="utf-8"))


def vector_id(path: Path) -> str:
    return path.relative_to(MERKLE_DIR).as_posix()


def files_where(pred: Callable[[Vector], bool]) -> list[Path]:
    return [p for p in ALL_FILES if pred(load(p))]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def leaves_of(v: Vector) -> list[bytes]:
    return [merkle.leaf_hash(h(d)) for d in v["leaf_data"]]


# --- Per-kind checks: return normally on success, raise ProofError (or fail) otherwise -------


def check_inclusion(v: Vector) -> None:
    merkle.verify_inclusion(
        h(v["leaf_hash"]), v["leaf_index"], v["tree_size"], [h(p) for p in v["proof"]], h(v["root"])
    )


def check_consistency(v: Vector) -> None:
    merkle.verify_consistency(
        v["old_size"], v["new_size"], [h(p) for p in v["proof"]], h(v["old_root"]), h(v["new_root"])
    )


def check_tree_root(v: Vector) -> None:
    assert merkle.root(leaves_of(v)).hex() == v["root"]


def check_tree_nodes(v: Vector) -> None:
    leaves = leaves_of(v)
    for level, hashes in enumerate(v["node_hashes"]):
        assert len(hashes) == len(leaves) >> level
        for index, want in enumerate(hashes):
            got = merkle.root(leaves[index << level : (index + 1) << level])
            assert got.hex() == want, f"node ({level}, {index})"


def rfc_tree(v: Vector) -> tuple[list[bytes], dict[str, bytes]]:
    """The RFC 9162 example tree over arbitrary leaf data, and the hashes of its named nodes."""
    leaves = [merkle.leaf_hash(f"d{i}".encode()) for i in range(v["tree_size"])]
    nodes = {name: merkle.root(leaves[b:e]) for name, (b, e) in v["nodes"].items()}
    return leaves, nodes


def check_rfc9162_inclusion(v: Vector) -> None:
    leaves, nodes = rfc_tree(v)
    index = v["leaf_index"]
    proof = merkle.inclusion_proof(leaves, index)
    assert proof == [nodes[name] for name in v["proof_nodes"]]
    merkle.verify_inclusion(leaves[index], index, len(leaves), proof, merkle.root(leaves))


def check_rfc9162_consistency(v: Vector) -> None:
    leaves, nodes = rfc_tree(v)
    old_size, new_size = v["old_size"], v["new_size"]
    proof = merkle.consistency_proof(leaves[:new_size], old_size)
    assert proof == [nodes[name] for name in v["proof_nodes"]]
    merkle.verify_consistency(
        old_size, new_size, proof, merkle.root(leaves[:old_size]), merkle.root(leaves[:new_size])
    )


CHECKS: dict[str, Callable[[Vector], None]] = {
    "inclusion": check_inclusion,
    "consistency": check_consistency,
    "tree-root": check_tree_root,
    "tree-nodes": check_tree_nodes,
    "rfc9162-inclusion": check_rfc9162_inclusion,
    "rfc9162-consistency": check_rfc9162_consistency,
}


# --- Every vector -------------------------------------------------------------------------


def test_vectors_are_present():
    kinds = {load(p)["kind"] for p in ALL_FILES}
    assert kinds == set(CHECKS)
    for subdir in ("transparency-dev", "rfc9162", "generated"):
        assert any((MERKLE_DIR / subdir).rglob("*.json")), subdir


@pytest.mark.parametrize("path", ALL_FILES, ids=vector_id)
def test_vector(path: Path) -> None:
    v = load(path)
    assert v["description"]
    assert v["source"]
    want = EXPECTED[v["expected"]]
    check = CHECKS[v["kind"]]
    if want is None:
        check(v)
    else:
        with pytest.raises(want):
            check(v)


# --- Our generators reproduce every happy path exactly -------------------------------------

HAPPY_PATHS = files_where(lambda v: v["kind"] in ("inclusion", "consistency") and "leaf_data" in v)


@pytest.mark.parametrize("path", HAPPY_PATHS, ids=vector_id)
def test_generators_reproduce_happy_path(path: Path) -> None:
    v = load(path)
    assert v["expected"] == "ok"
    leaves = leaves_of(v)
    proof = [h(p) for p in v["proof"]]
    if v["kind"] == "inclusion":
        index, size = v["leaf_index"], v["tree_size"]
        assert len(leaves) == size
        assert leaves[index].hex() == v["leaf_hash"]
        assert merkle.root(leaves).hex() == v["root"]
        assert merkle.inclusion_proof(leaves, index) == proof
        assert reference.path(index, leaves) == proof
    else:
        old_size, new_size = v["old_size"], v["new_size"]
        assert len(leaves) == new_size
        assert merkle.root(leaves[:old_size]).hex() == v["old_root"]
        assert merkle.root(leaves).hex() == v["new_root"]
        assert merkle.consistency_proof(leaves, old_size) == proof
        assert reference.proof(old_size, leaves) == proof


def test_every_imported_happy_path_is_reproduced():
    imported = files_where(lambda v: "upstream" in v and not v["upstream"]["wantErr"])
    missing = [
        vector_id(p) for p in imported if p not in HAPPY_PATHS and "deviation" not in load(p)
    ]
    assert not missing


# --- Imported vectors stay faithful to the upstream data they carry ------------------------

UPSTREAM = files_where(lambda v: "upstream" in v)
_B64_FIELDS = {
    "inclusion": {"leafHash": "leaf_hash", "root": "root"},
    "consistency": {"root1": "old_root", "root2": "new_root"},
}
_INT_FIELDS = {
    "inclusion": {"leafIdx": "leaf_index", "treeSize": "tree_size"},
    "consistency": {"size1": "old_size", "size2": "new_size"},
}


@pytest.mark.parametrize("path", UPSTREAM, ids=vector_id)
def test_imported_vector_matches_upstream_data(path: Path) -> None:
    v = load(path)
    up = v["upstream"]
    kind = v["kind"]
    for theirs, ours in _B64_FIELDS[kind].items():
        assert base64.b64decode(up[theirs], validate=True).hex() == v[ours], theirs
    for theirs, ours in _INT_FIELDS[kind].items():
        assert up[theirs] == v[ours], theirs
    assert [base64.b64decode(p, validate=True).hex() for p in up["proof"] or []] == v["proof"]
    assert v["source"]["path"].endswith(".json")
    # Our expectation agrees with upstream's wantErr, or the file says why it does not.
    agrees = (v["expected"] == "ok") == (not up["wantErr"])
    assert agrees != ("deviation" in v)


# --- The RFC 9162 section 2.1.5 example, read off the figure ----------------------------------


def test_rfc9162_example_roots():
    v = load(MERKLE_DIR / "rfc9162" / "inclusion-d0.json")
    leaves, n = rfc_tree(v)
    # "hash" = H(k, l); the incremental trees: hash0 = H(g, c), hash1 = k, hash2 = H(k, i).
    assert merkle.root(leaves) == merkle.node_hash(n["k"], n["l"])
    assert n["l"] == merkle.node_hash(n["i"], n["j"])
    assert merkle.root(leaves[:3]) == merkle.node_hash(n["g"], n["c"])
    assert merkle.root(leaves[:4]) == n["k"]
    assert merkle.root(leaves[:6]) == merkle.node_hash(n["k"], n["i"])


# --- generated/ is exactly what generate.py writes, and generate.py is deterministic -------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generator_shapes_follow_the_rfc_definitions():
    """generate.py's expectations rest on its proof shapes; they must match PATH and PROOF."""
    gen = _generator()
    leaves = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(33)]
    for size in range(1, 33):
        for index in range(size):
            shape = gen.inclusion_shape(index, size)
            assert len(shape) == len(reference.path(index, leaves[:size]))
        for old_size in range(1, size + 1):
            shape = gen.consistency_shape(old_size, size)
            assert len(shape) == len(reference.proof(old_size, leaves[:size]))
    assert gen.inclusion_shape(3, 7) == gen.inclusion_shape(3, 8) == ("left", "left", "right")
    assert gen.consistency_shape(3, 7) == ("seed", "right", "left", "right")  # [c, d, g, l]
    assert gen.inclusion_shape(7, 7) is None
    assert gen.consistency_shape(0, 7) is None


def test_generated_vectors_are_up_to_date(tmp_path: Path) -> None:
    gen = _generator()
    gen.generate(tmp_path / "a")
    gen.generate(tmp_path / "b")
    fresh = _tree(tmp_path / "a")
    assert fresh == _tree(tmp_path / "b"), "generate.py is not deterministic"
    checked_in = _tree(GENERATED_DIR)
    assert sorted(fresh) == sorted(checked_in), "run tests/vectors/generate.py"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"run tests/vectors/generate.py; stale: {stale[:5]}"
