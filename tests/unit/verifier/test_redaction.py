"""Redaction records (verifier.redaction): a redacted entry verifies only with the signed record
that explains it, in the same log; every way of faking one fails. Real store, fake chain."""

# ruff: noqa: F811  (the fixtures of test_verify are imported and taken as arguments)

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from auditseal.sealer.blocks import build_redaction_block, redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import ConflictError
from auditseal.store.evidence import block_material, store_bundle
from auditseal.store.fsck import check_log
from auditseal.verifier.audit import AuditBlock, LogAuditor
from auditseal.verifier.bundle import bundle_from_json
from auditseal.verifier.errors import FormatError
from auditseal.verifier.redaction import Redaction, RedactionError, record_entry
from auditseal.verifier.verify import EventProof
from tests.unit.verifier.test_verify import (  # noqa: F401
    SIGNER,
    A,
    anchor,
    anchored,
    append,
    failing,
    reader,
    store,
    verifier,
)

HASH = bytes(range(32))


def redact(store: BlockStore, index: int = 4) -> None:
    store.redact(
        A,
        index,
        "dpo@example.com",
        "GDPR-2026-17",
        redaction_sealer(SIGNER),
        now_ms=1_767_225_600_000,
    )


def raw(store: BlockStore, *sql: str) -> None:
    """What someone with write access to the store file can do."""
    db = sqlite3.connect(store.path)
    db.execute("DROP TRIGGER IF EXISTS entries_only_redact")
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


def audit(store: BlockStore) -> list[tuple[int | None, str, str]]:
    auditor = LogAuditor(A, [SIGNER.verifier])
    for stored in store.blocks(A):
        h = stored.header
        rows = [
            (
                i,
                e.position,
                e.timestamp_ms,
                e.key,
                e.value,
                e.salt,
                e.value_commitment,
                int(e.value_null),
                int(e.log_record),
            )
            for i, e in enumerate(store.entries(A, h.start, h.end), h.start)
        ]
        auditor.feed(AuditBlock(h.number, h.to_text(), stored.checkpoint, rows))
    return [(p.block, p.check, p.detail) for p in auditor.finish().problems]


# --- the record format ------------------------------------------------------------------------


def test_a_record_is_canonical_json_and_parses_strictly():
    red = Redaction(4, HASH, "dpo", "GDPR", 1_000)
    text = red.to_bytes()
    assert text == (
        b'{"actor":"dpo","index":4,"leaf_hash":"' + HASH.hex().encode() + b'","reason":"GDPR",'
        b'"time":1000,"type":"auditseal.redaction/v1"}'
    )
    assert Redaction.from_bytes(text) == red
    for bad in [
        text.replace(b",", b", ", 1),  # not canonical
        text[:-1] + b',"type":"auditseal.redaction/v1"}',  # duplicate key
        text.replace(b'"index":4', b'"index":"4"'),
        text.replace(b"redaction/v1", b"redaction/v2"),
        text.replace(b'"actor":"dpo"', b'"actor":""'),
        b"[]",
        b"\xff",
    ]:
        with pytest.raises(FormatError):
            Redaction.from_bytes(bad)


# --- genuine redactions -----------------------------------------------------------------------


def test_a_redaction_is_listed_with_who_why_and_when(anchored, reader):
    redact(anchored)
    anchor(anchored, reader, 3)
    report = verifier(reader).verify_block(block_material(anchored, A, 1))
    assert report.exit_code == 0, report.render()
    entries = report.check("entries")
    assert "leaf 4 by 'dpo@example.com' at 2026-01-01T00:00:00.000Z" in entries.detail
    assert entries.data["redactions"] == [
        {
            "index": 4,
            "record_index": 12,
            "actor": "dpo@example.com",
            "reason": "GDPR-2026-17",
            "time_ms": 1_767_225_600_000,
            "time": "2026-01-01T00:00:00.000Z",
        }
    ]
    # The record's own block verifies too: it shows the erased entry it names.
    record_block = anchored.block_at(A, 12).header.number
    assert verifier(reader).verify_block(block_material(anchored, A, record_block)).exit_code == 0
    assert audit(anchored) == []
    assert check_log(anchored, A, [SIGNER.verifier]).redacted == 1


def test_a_redaction_after_the_last_anchor_is_not_proven_yet(anchored, reader):
    redact(anchored)
    report = verifier(reader).verify_block(block_material(anchored, A, 1))
    assert report.exit_code == 3 and failing(report) is None
    assert "redaction record of leaf 4 (leaf 12)" in (report.pending or "")


def test_a_bundle_carries_the_record_and_checks_like_the_store(anchored, reader):
    redact(anchored)
    anchor(anchored, reader, 3)
    data = json.loads(store_bundle(anchored, A, 1).encode())
    assert [r["entry"]["index"] for r in data["related"]] == [12]
    assert data["related"][0]["entry"]["log_record"] is True
    parsed = bundle_from_json(data)
    assert verifier(reader).verify_block(parsed.material).exit_code == 0
    del data["related"]  # an attacker strips the record: the erased entry is unexplained
    report = verifier(reader).verify_block(bundle_from_json(data).material)
    assert failing(report) == "entries" and "no redaction record" in report.check("entries").detail


def test_the_sealer_keeps_appending_after_a_redaction(anchored):
    writer = LogWriter(anchored, SIGNER, lambda: 50)
    last = writer.tip(A).last_position  # the sealer's cached tip, now stale
    redact(anchored)
    with pytest.raises(ConflictError):  # the tip compare-and-swap: no fork
        append(writer, A, 2)
    append(writer, A, 2)  # reloaded: continues after the record, Kafka offsets unchanged
    tail = anchored.entries(A, anchored.size(A) - 3, anchored.size(A))
    assert tail[0].log_record and [e.position for e in tail[1:]] == [last + 1, last + 2]
    assert check_log(anchored, A, [SIGNER.verifier]).redacted == 1


# --- forgeries --------------------------------------------------------------------------------


def test_a_forged_redaction_is_invalid_everywhere(anchored, reader):
    raw(anchored, "UPDATE entries SET value = NULL, salt = NULL WHERE log_id = 1 AND idx = 4")
    report = verifier(reader).verify_block(block_material(anchored, A, 1))
    assert failing(report) == "entries" and report.exit_code == 1
    assert "leaf 4 has its value and salt erased, but no redaction record" in report.render()
    bundle = bundle_from_json(json.loads(store_bundle(anchored, A, 1).encode()))
    assert failing(verifier(reader).verify_block(bundle.material)) == "entries"
    assert [(b, c) for b, c, _ in audit(anchored)] == [(1, "redaction")]
    with pytest.raises(RedactionError, match="leaf 4"):
        check_log(anchored, A, [SIGNER.verifier])


def test_a_redacted_entry_never_proves_an_event_id(anchored, reader):
    redact(anchored)
    anchor(anchored, reader, 3)
    material = block_material(anchored, A, 1)
    proof = tuple(anchored.inclusion_proof(A, 4, 8).proof)
    for claim in ["never-sealed", "evt-4"]:
        report = verifier(reader).verify_block(material, EventProof(4, proof, claim))
        assert report.exit_code == 1 and failing(report) == "event"
        detail = report.check("event").detail
        assert "cannot be re-read" in detail and f"does not prove that event {claim!r}" in detail
        assert "by 'dpo@example.com'" in detail
    by_index = verifier(reader).verify_block(material, EventProof(4, proof, "index:4"))
    assert by_index.exit_code == 0


def test_an_altered_redaction_record_fails(anchored, reader):
    redact(anchored)
    anchor(anchored, reader, 3)
    raw(
        anchored,
        "UPDATE entries SET value = CAST(replace(CAST(value AS TEXT), 'dpo@', 'eve@') AS BLOB)"
        " WHERE log_id = 1 AND idx = 12",
    )
    assert failing(verifier(reader).verify_block(block_material(anchored, A, 1))) == "entries"
    assert failing(verifier(reader).verify_block(block_material(anchored, A, 3))) == "entries"
    assert any("entry 12" in d for _, _, d in audit(anchored))


def forge_record(store: BlockStore, index: int, leaf_hash: bytes) -> None:
    """A record sealed with the log key (an insider) that states something false."""
    tip = store.tip(A)
    red = Redaction(index, leaf_hash, "insider", "cover-up", 5)
    store.append_block(build_redaction_block(tip, red, SIGNER, 5, lambda: bytes(16)))


def test_a_record_naming_an_entry_that_is_not_erased_fails(anchored, reader):
    forge_record(anchored, 3, anchored.entries(A, 3, 4)[0].leaf_hash())
    number = anchored.block_at(A, 12).header.number
    report = verifier(reader).verify_block(block_material(anchored, A, number))
    assert failing(report) == "entries" and "whose value is not erased" in report.render()
    assert [c for _, c, _ in audit(anchored)] == ["redaction"]


def test_a_record_naming_another_leaf_hash_fails(anchored, reader):
    forge_record(anchored, 4, HASH)
    raw(anchored, "UPDATE entries SET value = NULL, salt = NULL WHERE log_id = 1 AND idx = 4")
    anchor(anchored, reader, 3)
    for number in (1, anchored.block_at(A, 12).header.number):
        report = verifier(reader).verify_block(block_material(anchored, A, number))
        assert failing(report) == "entries" and "names leaf hash" in report.render()
    assert sorted(c for _, c, _ in audit(anchored)) == ["redaction", "redaction"]


def test_a_record_that_is_not_in_the_log_fails(anchored, reader):
    redact(anchored)
    anchor(anchored, reader, 3)
    bundle = store_bundle(anchored, A, 1)
    (shown,) = bundle.material.related
    red = Redaction.from_bytes(shown.entry.value or b"")
    fake = record_entry(A, 12, dataclasses.replace(red, actor="someone else"), bytes(16))
    forged = dataclasses.replace(bundle.material, related=(dataclasses.replace(shown, entry=fake),))
    report = verifier(reader).verify_block(forged)
    assert failing(report) == "entries" and "inclusion" in report.check("entries").detail
