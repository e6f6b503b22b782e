"""docs/FORMAT.md's worked example: reproducible, and quoted in the doc exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from auditseal.verifier import merkle
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.leaf import Leaf
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.redaction import Redaction
from tests.vectors.format_vectors import vectors

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = json.loads((ROOT / "tests/vectors/format.json").read_text())


def test_vectors_are_reproducible():
    assert vectors() == CHECKED_IN


def test_vectors_recompute_by_hand():
    v = CHECKED_IN
    salt = bytes.fromhex(v["salt"])
    first = v["entries"][0]
    assert (
        first["value_commitment"]
        == hashlib.sha256(salt + bytes.fromhex(first["value"])).hexdigest()
    )
    assert first["leaf_hash"] == hashlib.sha256(b"\x00" + bytes.fromhex(first["leaf"])).hexdigest()
    l0, l1, l2 = (bytes.fromhex(e["leaf_hash"]) for e in v["entries"])
    n10 = hashlib.sha256(b"\x01" + l0 + l1).digest()
    assert v["node_1_0"] == n10.hex()
    assert v["root"] == hashlib.sha256(b"\x01" + n10 + l2).hexdigest()
    assert v["inclusion_proof_2"] == [n10.hex()]
    cp = open_checkpoint(v["checkpoint_note"], [NoteVerifier.from_string(v["verifier_key"])])
    assert cp.root.hex() == v["root"]
    merkle.verify_consistency(
        1, 3, [bytes.fromhex(h) for h in v["consistency_proof_1_3"]], l0, cp.root
    )


def test_format_doc_quotes_the_vectors():
    doc = (ROOT / "docs/FORMAT.md").read_text()
    v = CHECKED_IN
    quoted = [
        v["verifier_key"],
        v["root"],
        v["node_1_0"],
        v["block_hash"],
        *v["block_header"].splitlines(),
    ]
    quoted += v["checkpoint_note"].splitlines()
    for e in v["entries"]:
        quoted += [e["leaf_hash"], e["value_commitment"]]
    missing = [q for q in quoted if q and q not in doc]
    assert not missing, f"docs/FORMAT.md does not quote: {missing}"


# --- the proof bundle of FORMAT.md §8 ------------------------------------------------------------

BUNDLE_FILE = ROOT / "tests/vectors/bundle.json"


def test_the_bundle_vector_is_reproduced_byte_for_byte():
    from tests.vectors.bundle_vector import bundle

    assert bundle().encode() == BUNDLE_FILE.read_bytes()


def test_the_bundle_vector_parses_back_and_passes_every_offline_check():
    from auditseal.verifier.bundle import bundle_from_json
    from auditseal.verifier.verify import Verifier
    from tests.vectors.bundle_vector import CONTRACT, verifier_key

    parsed = bundle_from_json(json.loads(BUNDLE_FILE.read_bytes()))
    assert parsed.encode() == BUNDLE_FILE.read_bytes()  # nothing lost or reordered
    keys = [NoteVerifier.from_string(verifier_key())]
    report = Verifier(keys, None, CONTRACT, 31337, 0).verify_block(parsed.material, parsed.event)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses.pop("on-chain") == "skipped"  # offline: no chain endpoint
    assert set(statuses.values()) == {"ok"} and "event" in statuses
    assert report.exit_code == 3 and report.event == "evt-3"


def test_format_doc_shows_the_bundle_vector():
    doc = (ROOT / "docs/FORMAT.md").read_text()
    assert "tests/vectors/bundle.json" in doc
    assert json.loads(BUNDLE_FILE.read_bytes())["block"]["header"].splitlines()[4] in doc


def test_the_redaction_record_vector_checks_and_is_quoted():
    v = CHECKED_IN["redaction"]
    leaf = Leaf.from_bytes(bytes.fromhex(v["leaf"]))
    assert leaf.log_record and leaf.key_null and leaf.position == 3
    red = Redaction.from_bytes(v["record"].encode())
    assert red.index == 0 and red.leaf_hash.hex() == CHECKED_IN["entries"][0]["leaf_hash"]
    salt = bytes.fromhex(CHECKED_IN["salt"])
    assert leaf.value_commitment == hashlib.sha256(salt + v["record"].encode()).digest()
    doc = (ROOT / "docs/FORMAT.md").read_text()
    quoted = [v["record"], v["leaf"], v["leaf_hash"], *v["block_header"].splitlines()]
    assert not [q for q in quoted if q not in doc]


def test_the_rotation_record_vector_checks_and_is_quoted():
    from auditseal.verifier.leaf import Entry
    from auditseal.verifier.rotation import open_rotation_record

    v = CHECKED_IN["rotation"]
    leaf = Leaf.from_bytes(bytes.fromhex(v["leaf"]))
    assert leaf.log_record and leaf.key_null and leaf.position == 3
    salt = bytes.fromhex(CHECKED_IN["salt"])
    record = v["record"].encode()
    assert leaf.value_commitment == hashlib.sha256(salt + record).digest()
    entry = Entry(
        "example.com/log",
        3,
        v["timestamp_ms"],
        None,
        record,
        salt,
        leaf.value_commitment,
        log_record=True,
    )
    assert entry.leaf_hash().hex() == v["leaf_hash"]
    rotation = open_rotation_record(entry, 3, "example.com/log")
    assert rotation.old.to_string() == CHECKED_IN["verifier_key"]
    assert rotation.new.to_string() == v["new_verifier_key"]
    assert (rotation.from_size, rotation.until, rotation.overlap) == (4, 7, 2)
    # the record's checkpoint opens with either key: what old and new pins both need
    for key in (CHECKED_IN["verifier_key"], v["new_verifier_key"]):
        assert open_checkpoint(v["checkpoint_note"], [NoteVerifier.from_string(key)]).size == 4
    doc = (ROOT / "docs/FORMAT.md").read_text()
    quoted = [
        *v["record"].splitlines(),
        v["leaf"],
        v["leaf_hash"],
        v["value_commitment"],
        *v["block_header"].splitlines(),
        *v["checkpoint_note"].splitlines(),
    ]
    assert not [q for q in quoted if q and q not in doc]
