"""The pure block verifier (verifier.verify) with a fake chain: every check, pass and fail."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore, StoredAnchor
from auditseal.store.evidence import block_material, covering_receipt
from auditseal.store.model import Record
from auditseal.verifier.anchor import AnchorReceipt, build_aggregate, checkpoint_body
from auditseal.verifier.anchoring import AnchorFact, ChainUnavailableError
from auditseal.verifier.verify import CHECKS, BlockMaterial, Report, Verifier

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
OTHER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
A, B = "auditseal.local/audit.events/0", "auditseal.local/audit.events/1"
CONTRACT = "0x" + "ab" * 20
ANCHORER = "0x" + "cd" * 20
TX = "0x" + "11" * 32
BLOCK_HASH = "0x" + "22" * 32
NOW = 1_800_000_000


class FakeReader:
    """An AnchorReader over dicts; ``down`` makes every call fail as an unreachable RPC."""

    def __init__(self, chain_id: int = 31337) -> None:
        self.id = chain_id
        self.roots: dict[int, bytes] = {}
        self.writers: dict[int, str] = {}
        self.logs: dict[int, int] = {}
        self.anchorers = {ANCHORER}
        self.revoked: set[str] = set()
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise ChainUnavailableError("chain at http://127.0.0.1:1: connection refused")

    def chain_id(self) -> int:
        self._up()
        return self.id

    def root_of(self, seq: int) -> bytes | None:
        self._up()
        return self.roots.get(seq)

    def anchored_at(self, seq: int) -> AnchorFact | None:
        self._up()
        if seq not in self.roots:
            return None
        writer = self.writers.get(seq, ANCHORER)
        return AnchorFact(
            seq, self.roots[seq], 7, BLOCK_HASH, 1_700_000_000, writer, TX, 3, self.logs.get(seq)
        )

    def is_anchorer(self, address: str, block: int | None = None) -> bool:
        self._up()
        if block is not None:
            return address in self.anchorers or address in self.revoked
        return address in self.anchorers


def append(writer: LogWriter, origin: str, n: int = 3) -> None:
    start = writer.tip(origin).next_position
    writer.append(
        origin, [Record(start + k, 1_000 + k, b"k", f"v{start + k}".encode()) for k in range(n)]
    )


def anchor(store: BlockStore, reader: FakeReader, seq: int) -> None:
    """What the anchor service does, with the fake chain: aggregate, receipts, root on chain."""
    notes = {o: checkpoint_body(store.latest_checkpoint(o)) for o in store.logs()}
    agg = build_aggregate(list(notes.values()))
    receipts = [
        AnchorReceipt(
            seq,
            o,
            notes[o],
            i,
            agg.size,
            tuple(agg.proof(i)),
            agg.root,
            TX,
            7,
            BLOCK_HASH,
            31337,
            CONTRACT,
        )
        for i, o in enumerate(agg.origins)
    ]
    store.record_anchor(
        StoredAnchor(seq, agg.root, TX, 7, BLOCK_HASH, 31337, CONTRACT, 0), receipts
    )
    reader.roots[seq] = agg.root
    reader.logs[seq] = agg.size


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlockStore]:
    with BlockStore.open(tmp_path / "store.db", create=True) as db:
        yield db


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


@pytest.fixture
def anchored(store: BlockStore, reader: FakeReader) -> BlockStore:
    """Logs A (3 blocks) and B (2 blocks), anchored once after block 1 of A and at the end."""
    writer = LogWriter(store, SIGNER, lambda: 42)
    append(writer, A)
    append(writer, A, 5)
    append(writer, B, 2)
    anchor(store, reader, 1)
    append(writer, A, 4)
    append(writer, B)
    anchor(store, reader, 2)
    return store


def verifier(reader: FakeReader | None, **kw: object) -> Verifier:
    args: dict[str, object] = {
        "log_keys": [SIGNER.verifier],
        "reader": reader,
        "contract": CONTRACT,
        "chain_id": 31337,
        "now": NOW,
    }
    args.update(kw)
    return Verifier(**args)  # type: ignore[arg-type]


def failing(report: Report) -> str | None:
    first = report.first_failure
    return first.name if first else None


def statuses(report: Report) -> list[str]:
    return [c.status for c in report.checks]


# --- passing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("origin", "number"), [(A, 0), (A, 1), (A, 2), (B, 0), (B, 1)])
def test_anchored_blocks_verify(anchored, reader, origin, number):
    report = verifier(reader).verify_block(block_material(anchored, origin, number))
    assert statuses(report) == ["ok"] * 8, report.render()
    assert report.exit_code == 0 and report.verdict == "VALID"
    assert [c.name for c in report.checks] == list(CHECKS)
    on_chain = report.check("on-chain").data
    assert on_chain["anchorer"] == ANCHORER and on_chain["confirmations"] == 3
    assert on_chain["block_number"] == 7 and on_chain["timestamp"] == 1_700_000_000


def test_the_earliest_anchor_is_not_required(anchored):
    # Block 0 of A is covered by anchors 1 and 2; the material uses the latest.
    assert covering_receipt(anchored, A, 3).seq == 2  # type: ignore[union-attr]


def test_report_as_json_and_text(anchored, reader):
    report = verifier(reader).verify_block(block_material(anchored, A, 1))
    data = json.loads(json.dumps(report.to_json()))
    assert data["verdict"] == "VALID" and data["exit_code"] == 0 and data["first_failure"] is None
    assert [c["name"] for c in data["checks"]] == list(CHECKS)
    assert all(c["status"] == "ok" for c in data["checks"])
    assert data["checked_at"] == NOW
    text = report.render()
    assert "8. on-chain" in text and text.endswith("VALID\n")


def test_a_redacted_entry_passes_and_is_reported(anchored, reader):
    anchored.redact(A, 4, "dpo", "erasure request", redaction_sealer(SIGNER))
    anchor(anchored, reader, 3)  # the redaction record is anchored too
    report = verifier(reader).verify_block(block_material(anchored, A, 1))
    assert report.exit_code == 0, report.render()
    assert report.redacted == (4,)
    assert "1 redacted" in report.check("entries").detail
    assert report.to_json()["redacted"] == [4]


# --- not proven yet (exit 3) -----------------------------------------------------------------


def test_a_block_sealed_after_the_last_anchor_is_not_anchored_yet(anchored, reader):
    append(LogWriter(anchored, SIGNER, lambda: 43), A)
    report = verifier(reader).verify_block(block_material(anchored, A, 3))
    assert report.exit_code == 3 and failing(report) is None
    assert statuses(report) == ["ok"] * 5 + ["skipped"] * 3
    assert "not anchored yet" in (report.pending or "")


def test_chain_unreachable_is_exit_3(anchored, reader):
    reader.down = True
    report = verifier(reader).verify_block(block_material(anchored, A, 0))
    assert report.exit_code == 3 and failing(report) is None
    assert report.check("on-chain").status == "skipped"
    assert "chain unreachable" in (report.pending or "")


def test_no_chain_endpoint_is_exit_3(anchored):
    report = verifier(None).verify_block(block_material(anchored, A, 0))
    assert report.exit_code == 3 and report.check("on-chain").status == "skipped"


# --- tampering: each names its check -------------------------------------------------------


def tampered(material: BlockMaterial, **changes: object) -> BlockMaterial:
    return dataclasses.replace(material, **changes)  # type: ignore[arg-type]


def with_entries(material: BlockMaterial, entries: list) -> BlockMaterial:
    return tampered(material, block=dataclasses.replace(material.block, entries=tuple(entries)))


def test_a_changed_value_fails_entries(anchored, reader):
    m = block_material(anchored, A, 1)
    entries = list(m.block.entries)
    entries[2] = dataclasses.replace(entries[2], value=b"forged")
    report = verifier(reader).verify_block(with_entries(m, entries))
    assert failing(report) == "entries" and report.exit_code == 1
    assert "does not match its commitment" in report.check("entries").detail
    assert report.verdict == "INVALID: check 1 (entries) failed"


def test_a_changed_timestamp_fails_root(anchored, reader):
    m = block_material(anchored, A, 1)
    entries = list(m.block.entries)
    entries[0] = dataclasses.replace(entries[0], timestamp_ms=1)
    assert failing(verifier(reader).verify_block(with_entries(m, entries))) == "root"


def test_a_deleted_entry_fails_entries(anchored, reader):
    m = block_material(anchored, A, 1)
    report = verifier(reader).verify_block(with_entries(m, list(m.block.entries)[1:]))
    assert failing(report) == "entries" and "holds 4 entries" in report.check("entries").detail


def test_swapped_entries_fail_entries(anchored, reader):
    m = block_material(anchored, A, 1)
    e = list(m.block.entries)
    e[1], e[2] = e[2], e[1]
    report = verifier(reader).verify_block(with_entries(m, e))
    assert failing(report) == "entries" and "does not follow" in report.check("entries").detail


def test_a_wrong_previous_state_fails(anchored, reader):
    m = block_material(anchored, A, 1)
    bad = tampered(m, compact_at_start=(bytes(32), *m.compact_at_start[1:]))
    assert failing(verifier(reader).verify_block(bad)) == "previous-state"
    assert failing(verifier(reader).verify_block(tampered(m, prev_checkpoint=None))) == (
        "previous-state"
    )


def test_an_unpinned_key_fails_the_checkpoint(anchored, reader):
    report = verifier(reader, log_keys=[OTHER.verifier]).verify_block(
        block_material(anchored, A, 0)
    )
    assert failing(report) == "checkpoint"


def test_another_logs_checkpoint_fails(anchored, reader):
    m = block_material(anchored, A, 0)
    other = anchored.block(B, 0).checkpoint
    bad = tampered(m, block=dataclasses.replace(m.block, checkpoint=other))
    assert failing(verifier(reader).verify_block(bad)) == "checkpoint"


def test_a_broken_header_chain_fails(anchored, reader):
    m = block_material(anchored, A, 2)
    prev = dataclasses.replace(m.prev, sealed_at_ms=1)  # type: ignore[type-var]
    assert failing(verifier(reader).verify_block(tampered(m, prev=prev))) == "header-chain"


def test_a_receipt_of_another_log_fails_consistency(anchored, reader):
    m = block_material(anchored, A, 0)
    other = covering_receipt(anchored, B, 1)
    assert failing(verifier(reader).verify_block(tampered(m, receipt=other))) == "consistency"


def test_a_bad_consistency_proof_fails(anchored, reader):
    m = block_material(anchored, A, 0)
    bad = tampered(m, consistency=(bytes(32), *m.consistency[1:]))
    assert failing(verifier(reader).verify_block(bad)) == "consistency"


def test_a_bad_aggregate_proof_fails_inclusion(anchored, reader):
    m = block_material(anchored, A, 0)
    receipt = dataclasses.replace(m.receipt, proof=(bytes(32),))  # type: ignore[type-var]
    assert failing(verifier(reader).verify_block(tampered(m, receipt=receipt))) == (
        "anchor-inclusion"
    )


def test_a_root_the_chain_does_not_hold_fails(anchored, reader):
    reader.roots[2] = bytes([9]) * 32
    assert failing(verifier(reader).verify_block(block_material(anchored, A, 0))) == "on-chain"
    del reader.roots[2]
    report = verifier(reader).verify_block(block_material(anchored, A, 0))
    assert failing(report) == "on-chain" and "holds no root" in report.check("on-chain").detail


def test_a_root_from_an_unauthorised_address_fails(anchored, reader):
    reader.writers[2] = "0x" + "ee" * 20
    report = verifier(reader).verify_block(block_material(anchored, A, 0))
    assert failing(report) == "on-chain" and "not an anchorer" in report.check("on-chain").detail


def test_an_anchorer_revoked_since_is_reported_not_failed(anchored, reader):
    reader.anchorers.clear()
    reader.revoked.add(ANCHORER)
    report = verifier(reader).verify_block(block_material(anchored, A, 0))
    assert report.exit_code == 0
    assert report.check("on-chain").data["anchorer_authorised_now"] is False
    assert "since been revoked" in report.check("on-chain").detail


@pytest.mark.parametrize(
    "pins",
    [{"chain_id": 1}, {"contract": "0x" + "99" * 20}],
    ids=["wrong chain id", "wrong contract"],
)
def test_wrong_pins_fail_on_chain(anchored, reader, pins):
    report = verifier(reader, **pins).verify_block(block_material(anchored, A, 0))
    assert failing(report) == "on-chain" and report.exit_code == 1


def test_an_endpoint_on_another_chain_fails(anchored):
    report = verifier(FakeReader(chain_id=5)).verify_block(block_material(anchored, A, 0))
    assert failing(report) == "on-chain" and "serves chain 5" in report.check("on-chain").detail
