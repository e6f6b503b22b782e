"""The monitor accepts an erased entry only with its redaction record (auditseal.monitor.checks)."""

from __future__ import annotations

import dataclasses

from auditseal.sealer.blocks import build_redaction_block
from auditseal.store.model import LogTip
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.redaction import Redaction
from tests.unit.monitor.test_checks import SIGNER, Log, checker, items_of, kinds

GRACE = 60_000


def erase(block: SealedBlock, k: int) -> SealedBlock:
    entries = list(block.entries)
    entries[k] = entries[k].redact()  # the same leaf: every replay check still passes
    return dataclasses.replace(block, entries=tuple(entries))


def record_block(log: Log, index: int, leaf_hash: bytes) -> SealedBlock:
    tip = LogTip(log.origin, log.compact, log.prev, log.position - 1)
    built = build_redaction_block(tip, Redaction(index, leaf_hash, "dpo", "GDPR", 7), SIGNER, 7)
    log.compact, log.prev = built.tip.compact, built.block.header
    return built.block


def test_an_erased_entry_without_its_record_is_an_alert():
    log, check = Log(), checker()
    block, _ = log.block([b"a", b"b", b"c"])
    forged = erase(block, 1)
    assert check.block(forged, items_of(forged), 1_000) == []
    assert check.late(1_000 + GRACE) == []  # the record may still come
    alerts = check.late(1_001 + GRACE)
    assert kinds(alerts) == ["unexplained_redaction"] and "leaf 1" in alerts[0].detail
    assert alerts[0].severity == "critical"
    assert check.late(2_000 + GRACE) == []  # once


def test_an_erased_entry_with_its_record_is_not():
    log, check = Log(), checker()
    block, _ = log.block([b"a", b"b", b"c"])
    erased = erase(block, 1)
    record = record_block(log, 1, erased.entries[1].leaf_hash())
    assert check.block(erased, items_of(erased), 1_000) == []
    assert check.block(record, items_of(record), 1_000) == []
    assert check.late(10 * GRACE) == []
    # The sealer goes on after the record; its Kafka positions continue from before it.
    later, items = log.block([b"d"])
    assert check.block(later, items, 1_000) == []


def test_a_record_naming_another_leaf_hash_is_an_alert():
    log, check = Log(), checker()
    block, _ = log.block([b"a", b"b"])
    erased = erase(block, 0)
    record = record_block(log, 0, bytes(32))
    check.block(erased, items_of(erased), 1_000)
    assert kinds(check.block(record, items_of(record), 1_000)) == ["unexplained_redaction"]
