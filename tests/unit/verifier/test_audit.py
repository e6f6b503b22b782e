"""The whole-log auditor (verifier.audit) on logs built in memory: every tamper kind, every
problem reported, resynchronisation after a bad block, and the fast leaf hash."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.signer import Signer
from auditseal.verifier.audit import AuditBlock, EntryRow, LogAuditor, Problem, combined_exit_code
from auditseal.verifier.block import GENESIS_HASH, BlockHeader
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.leaf import Entry, leaf_hasher
from auditseal.verifier.verify import Check, Report

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
OTHER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
ORIGIN = "auditseal.local/audit.events/0"
PER_BLOCK = 4


def entry_row(idx: int, entry: Entry) -> EntryRow:
    return (
        idx,
        entry.position,
        entry.timestamp_ms,
        entry.key,
        entry.value,
        entry.salt,
        entry.value_commitment,
        int(entry.value_null),
        int(entry.log_record),
    )


def make_log(n_blocks: int, signer: Signer = SIGNER) -> list[AuditBlock]:
    """``n_blocks`` blocks of PER_BLOCK entries; each block can resume from its stored range."""
    blocks: list[AuditBlock] = []
    compact = CompactRange()
    prev_hash = GENESIS_HASH
    for number in range(n_blocks):
        start = number * PER_BLOCK
        at_start = tuple(compact.hashes)
        entries = [
            Entry.seal(
                ORIGIN, 10 * i, 1_000 + i, b"k%d" % (i % 2), b"v%d" % i, bytes([i % 256]) * 16
            )
            for i in range(start, start + PER_BLOCK)
        ]
        compact.extend(e.leaf_hash() for e in entries)
        root = compact.root()
        header = BlockHeader(ORIGIN, number, start, start + PER_BLOCK, root, 42, prev_hash)
        prev_hash = header.hash()
        note = signer.sign_note(Checkpoint(ORIGIN, start + PER_BLOCK, root).to_text())
        rows = [entry_row(start + k, e) for k, e in enumerate(entries)]
        blocks.append(AuditBlock(number, header.to_text(), note, rows, lambda s=at_start: s))
    return blocks


def audit(blocks: Sequence[AuditBlock], keys: Sequence[Signer] = (SIGNER,)):
    auditor = LogAuditor(ORIGIN, [k.verifier for k in keys])
    for block in blocks:
        auditor.feed(block)
    return auditor.finish()


def problems(blocks: Sequence[AuditBlock]) -> list[tuple[int | None, str]]:
    return [(p.block, p.check) for p in audit(blocks).problems]


def with_row(block: AuditBlock, k: int, **fields: object) -> AuditBlock:
    names = (
        "idx",
        "position",
        "timestamp",
        "key",
        "value",
        "salt",
        "commitment",
        "value_null",
        "log_record",
    )
    row = dict(zip(names, block.rows[k], strict=True)) | fields
    rows = list(block.rows)
    rows[k] = tuple(row.values())  # type: ignore[assignment]
    return dataclasses.replace(block, rows=rows)


def with_header(block: AuditBlock, **fields: object) -> AuditBlock:
    header = dataclasses.replace(BlockHeader.from_text(block.header), **fields)  # type: ignore[arg-type]
    return dataclasses.replace(block, header=header.to_text())


# --- the fast leaf hash -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "redact"),
    list(itertools.product([b"key", None, b""], [b"value", None, b""], [False, True])),
)
def test_leaf_hasher_equals_entry_leaf_hash(key, value, redact):
    entry = Entry.seal(ORIGIN, 2**64 - 1, -(2**63), key, value, b"s" * 16)
    if redact:
        entry = entry.redact()
    flags = (entry.key is None) | (2 if entry.value_null else 0)
    key_hash = entry.leaf().key_hash
    got = leaf_hasher(ORIGIN)(
        entry.position, entry.timestamp_ms, key_hash, entry.value_commitment, flags
    )
    assert got == entry.leaf_hash()


# --- good logs --------------------------------------------------------------------------------


def test_a_good_log_has_no_problems():
    result = audit(make_log(5))
    assert result.problems == ()
    assert (result.blocks, result.entries, result.redacted, result.size) == (5, 20, 0, 20)
    assert result.exit_code == 0
    assert result.verdict == f"VALID: {ORIGIN}"
    assert result.last_block == 4


def test_a_nulled_entry_without_its_redaction_record_is_tampering():
    blocks = make_log(3)
    blocks[1] = with_row(blocks[1], 2, value=None, salt=None)
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [(1, "redaction")]
    assert "no redaction record" in result.problems[0].detail
    assert result.exit_code == 1 and result.redacted == 1


def test_a_null_value_entry_passes():
    entry = Entry.seal(ORIGIN, 1, 1_000, None, None, b"n" * 16)
    compact = CompactRange.from_leaves([entry.leaf_hash()])
    header = BlockHeader(ORIGIN, 0, 0, 1, compact.root(), 42, GENESIS_HASH)
    note = SIGNER.sign_note(Checkpoint(ORIGIN, 1, compact.root()).to_text())
    blocks = [AuditBlock(0, header.to_text(), note, [entry_row(0, entry)])]
    assert audit(blocks).problems == ()


# --- every tamper kind ------------------------------------------------------------------------


def test_a_changed_value_fails_entries_only():
    blocks = make_log(3)
    blocks[1] = with_row(blocks[1], 0, value=b"forged")
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [(1, "entries")]
    assert "entry 4: value does not match its commitment" in result.problems[0].detail
    assert result.exit_code == 1


def test_a_changed_timestamp_fails_root():
    blocks = make_log(3)
    blocks[2] = with_row(blocks[2], 1, timestamp=7)
    assert problems(blocks) == [(2, "root")]


def test_a_changed_key_fails_root():
    blocks = make_log(2)
    blocks[0] = with_row(blocks[0], 3, key=b"other")
    assert problems(blocks) == [(0, "root")]


def test_a_deleted_entry_fails_entries():
    blocks = make_log(3)
    blocks[1] = dataclasses.replace(blocks[1], rows=[r for r in blocks[1].rows if r[0] != 5])
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [(1, "entries"), (1, "entries")]
    assert "holds 3 entries" in result.problems[0].detail
    assert "entry 5: missing" in result.problems[1].detail


def test_swapped_positions_fail_entries_and_root():
    blocks = make_log(2)
    a, b = blocks[1].rows[0], blocks[1].rows[1]
    blocks[1] = with_row(with_row(blocks[1], 0, position=b[1]), 1, position=a[1])
    found = audit(blocks).problems
    assert [(p.block, p.check) for p in found] == [(1, "entries"), (1, "root")]
    assert "does not follow position" in found[0].detail


def test_a_malformed_salt_fails_entries():
    blocks = make_log(1)
    blocks[0] = with_row(blocks[0], 0, salt=b"short")
    found = audit(blocks).problems
    assert [(p.block, p.check) for p in found] == [(0, "entries")]
    assert "salt of 5 bytes" in found[0].detail


def test_a_value_without_its_salt_fails_entries():
    blocks = make_log(1)
    blocks[0] = with_row(blocks[0], 2, salt=None)
    found = audit(blocks).problems
    assert "entry 2: a value without its salt" in found[0].detail


def test_a_short_commitment_is_not_a_leaf():
    blocks = make_log(1)
    blocks[0] = with_row(blocks[0], 1, commitment=b"x" * 31, salt=None, value=None)
    found = audit(blocks).problems
    assert [(p.block, p.check) for p in found] == [(0, "entries")]
    assert "entry 1: not a leaf" in found[0].detail


def test_a_broken_prev_hash_fails_header_chain():
    blocks = make_log(3)
    blocks[2] = with_header(blocks[2], prev_hash=b"\x01" * 32)
    # The header's prev hash changed: the signed checkpoint still matches its root.
    assert problems(blocks) == [(2, "header-chain")]


def test_a_changed_header_root_fails_root_and_checkpoint():
    blocks = make_log(3)
    blocks[1] = with_header(blocks[1], root=b"\x02" * 32)
    found = problems(blocks)
    # Block 2's prev hash no longer matches the changed header of block 1.
    assert found == [(1, "root"), (1, "checkpoint"), (2, "header-chain")]


def test_a_checkpoint_signed_with_an_unpinned_key_fails():
    blocks = make_log(2)
    other = make_log(2, OTHER)
    blocks[1] = dataclasses.replace(blocks[1], checkpoint=other[1].checkpoint)
    found = audit(blocks).problems
    assert [(p.block, p.check) for p in found] == [(1, "checkpoint")]


def test_an_unreadable_header_fails_and_the_next_block_resyncs():
    blocks = make_log(4)
    blocks[1] = dataclasses.replace(blocks[1], header="garbage\n")
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [(1, "header")]
    assert result.blocks == 4


def test_a_header_of_another_log_fails():
    blocks = make_log(1)
    blocks[0] = with_header(blocks[0], origin="other/log/0")
    assert (0, "header") in problems(blocks)


# --- several problems, missing blocks, resynchronisation -------------------------------------


def test_every_bad_block_is_reported():
    blocks = make_log(8)
    blocks[1] = with_row(blocks[1], 0, timestamp=1)
    blocks[4] = with_row(blocks[4], 3, value=b"forged")
    blocks[6] = with_row(blocks[6], 2, position=10**9)
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [
        (1, "root"),
        (4, "entries"),
        (6, "entries"),
        (6, "root"),
    ]
    rendered = result.render()
    assert rendered.count("\n") == 1 + 4 + 1
    assert rendered.rstrip().endswith(f"INVALID: 4 problems in {ORIGIN}")


def test_after_a_bad_root_the_next_block_resumes_from_its_signed_previous_state():
    blocks = make_log(4)
    blocks[1] = with_row(blocks[1], 0, timestamp=1)
    asked: list[int] = []

    def source(block: AuditBlock):
        def read():
            asked.append(block.number)
            return block.compact_at_start() if block.compact_at_start else None

        return read

    blocks = [dataclasses.replace(b, compact_at_start=source(b)) for b in blocks]
    assert problems(blocks) == [(1, "root")]
    assert asked == [2]  # only the block after the bad one needed the stored state


def test_a_stored_state_that_disagrees_with_the_signed_checkpoint_fails_previous_state():
    blocks = make_log(4)
    blocks[1] = with_row(blocks[1], 0, timestamp=1)
    wrong = (b"\x03" * 32,)
    blocks[2] = dataclasses.replace(blocks[2], compact_at_start=lambda: wrong)
    found = problems(blocks)
    # Block 2 cannot be rooted; block 3 resumes from its own stored state.
    assert found == [(1, "root"), (2, "previous-state")]


def test_without_a_stored_state_the_root_is_not_checked_and_that_is_reported():
    blocks = make_log(3)
    blocks[0] = with_row(blocks[0], 0, timestamp=1)
    blocks[1] = dataclasses.replace(blocks[1], compact_at_start=None)
    found = audit(blocks).problems
    assert [(p.block, p.check) for p in found] == [(0, "root"), (1, "previous-state")]
    assert "root not checked" in found[1].detail


def test_a_missing_block_is_reported_and_the_rest_verifies():
    blocks = make_log(6)
    del blocks[2]
    result = audit(blocks)
    assert [(p.block, p.check) for p in result.problems] == [(3, "missing")]
    assert result.problems[0].detail == "block 2 missing, leaves [8, 12)"
    assert (result.blocks, result.size) == (5, 24)


def test_several_missing_blocks_and_a_missing_first_block():
    blocks = make_log(7)
    kept = [blocks[1], blocks[2], blocks[5], blocks[6]]
    found = audit(kept).problems
    assert [(p.block, p.check, p.detail) for p in found] == [
        (1, "missing", "block 0 missing, leaves [0, 4)"),
        (5, "missing", "blocks 3..4 missing, leaves [12, 20)"),
    ]


def test_a_bad_block_after_a_missing_one_is_still_found():
    blocks = make_log(6)
    blocks[4] = with_row(blocks[4], 1, key=None)
    del blocks[1]
    assert problems(blocks) == [(2, "missing"), (4, "root")]


# --- results ----------------------------------------------------------------------------------


def test_json_and_exit_codes():
    result = audit(make_log(2))
    data = json.loads(json.dumps(result.to_json()))
    assert data["exit_code"] == 0
    assert (data["blocks"], data["entries"], data["size"]) == (2, 8, 8)
    assert data["problems"] == [] and data["on_chain"] is None

    pending = dataclasses.replace(result, pending="not anchored yet: blocks 1..1")
    assert pending.exit_code == 3
    assert pending.verdict.startswith("NOT PROVEN")
    bad = dataclasses.replace(result, problems=(Problem(1, "root", "x"),))
    assert bad.to_json()["problems"] == [{"block": 1, "check": "root", "detail": "x"}]
    assert combined_exit_code([result, pending]) == 3
    assert combined_exit_code([pending, bad, result]) == 1
    assert combined_exit_code([result, result]) == 0


def test_the_anchor_report_goes_into_the_result():
    check = Check(8, "on-chain", "ok", "chain 31337 holds it", {"block_number": 9, "seq": 1})
    report = Report(ORIGIN, 1, (check,), None, 0)
    auditor = LogAuditor(ORIGIN, [SIGNER.verifier])
    for block in make_log(2):
        auditor.feed(block)
    result = auditor.finish(report, anchored_size=8)
    data = result.to_json()
    assert data["on_chain"] == {
        "status": "ok",
        "detail": "chain 31337 holds it",
        "block_number": 9,
        "seq": 1,
    }
    assert data["anchored_block"] == 1
    assert "anchor: block 1 (size 8): ok: chain 31337 holds it" in result.render()


@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 7, 8, 13, 64, 100])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 9, 16, 33])
def test_the_compact_range_append_matches_compact_range(start, n):
    from auditseal.verifier.audit import _extend

    leaves = [bytes([i % 251]) * 32 for i in range(start + n)]
    before = CompactRange.from_leaves(leaves[:start])
    hashes = list(before.hashes)
    assert _extend(hashes, start, leaves[start:]) == start + n
    assert hashes == CompactRange.from_leaves(leaves).hashes


def test_audit_materials_checks_each_block_and_the_anchor_once():
    from auditseal.verifier.audit import Problem, audit_materials
    from auditseal.verifier.note import NoteVerifier
    from auditseal.verifier.verify import Verifier
    from tests.vectors.bundle_vector import CONTRACT, ORIGIN, bundle, verifier_key

    material = bundle().material
    keys = [NoteVerifier.from_string(verifier_key())]
    offline = Verifier(keys, None, CONTRACT, 31337, 0)
    result = audit_materials(ORIGIN, [material], offline, offline)
    assert (result.blocks, result.entries, result.problems) == (1, 2, ())
    assert result.anchored_size == 5 and result.exit_code == 3  # no chain: check 8 pending
    assert "chain unreachable" in (result.pending or "")
    missing = Problem(0, "missing", "HTTP 404")
    result = audit_materials(ORIGIN, [missing, material], offline, offline)
    assert result.exit_code == 1 and result.problems == (missing,)
    other = Verifier(keys, None, "0x" + "11" * 20, 31337, 0)  # a receipt of another contract
    result = audit_materials(ORIGIN, [material], other, other)
    assert [(p.block, p.check) for p in result.problems] == [(1, "on-chain")]
