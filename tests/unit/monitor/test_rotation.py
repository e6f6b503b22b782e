"""The monitor follows a log-key rotation (auditseal.monitor.checks): blocks signed by the
rotated-in key after the rotation record are no alert; the old key after the overlap, or an
unknown key, is ``bad_signature``; the rotation survives a restart from the saved state."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.monitor.checks import Checker, restore, snapshot
from auditseal.sealer.blocks import build_block, build_rotation_block, checkpoint_signers
from auditseal.sealer.signer import Signer
from auditseal.store.model import LogTip, Record
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.rotation import open_rotation_record
from tests.unit.monitor.test_checks import ORIGIN, SIGNER, Log, items_of, kinds

NEW = Signer("monitor-new", Ed25519PrivateKey.from_private_bytes(bytes([9]) * 32))
STRANGER = Signer("stranger", Ed25519PrivateKey.from_private_bytes(bytes([8]) * 32))


class Rotating:
    """A log sealed with SIGNER, then rotated to NEW with an overlap of 1 leaf."""

    def __init__(self) -> None:
        log = Log()
        log.block([b"a", b"b"])
        self.blocks = list(log.blocks)
        self.tip = LogTip(ORIGIN, log.compact, log.prev, log.position - 1)
        built = build_rotation_block(self.tip, SIGNER, NEW, 1, 7)
        self.rotations = [(2, open_rotation_record(built.block.entries[0], 2, ORIGIN))]
        self.tip = built.tip
        self.blocks.append(built.block)

    def block(self, value: bytes, *signers: Signer) -> SealedBlock:
        size = self.tip.size + 1
        keys = list(signers) or checkpoint_signers(ORIGIN, self.rotations, size, NEW, SIGNER)
        record = Record(self.tip.next_position, 9, b"k", value)
        built = build_block(self.tip, [record], keys, 9)
        self.tip = built.tip
        self.blocks.append(built.block)
        return built.block


def feed(check: Checker, *blocks: SealedBlock) -> list[str]:
    return [k for b in blocks for k in kinds(check.block(b, items_of(b), 1_000))]


def test_blocks_by_the_rotated_in_key_are_no_alert():
    log, check = Rotating(), Checker([SIGNER.verifier])
    overlap = log.block(b"c")  # size 4: both keys
    after = log.block(b"d")  # size 5: NEW alone
    assert overlap.checkpoint.count("\u2014 ") == 2 and after.checkpoint.count("\u2014 ") == 1
    assert feed(check, *log.blocks) == []


def test_the_old_key_after_the_overlap_or_an_unknown_key_is_bad_signature():
    log, check = Rotating(), Checker([SIGNER.verifier])
    assert feed(check, *log.blocks) == []
    log.block(b"c")
    assert feed(check, log.blocks[-1]) == []
    tip = log.tip
    old_only = log.block(b"d", SIGNER)
    alerts = check.block(old_only, items_of(old_only), 1_000)
    assert kinds(alerts) == ["bad_signature"] and "retired" in alerts[0].detail
    log.tip = tip
    stranger = log.block(b"d", STRANGER)
    assert feed(check, stranger) == ["bad_signature"]
    log.tip = tip
    assert feed(check, log.block(b"d")) == []  # the genuine block still applies


def test_a_forged_rotation_is_bad_signature_and_not_followed():
    log, check = Log(), Checker([SIGNER.verifier])
    log.block([b"a"])
    tip = LogTip(ORIGIN, log.compact, log.prev, log.position - 1)
    forged = build_rotation_block(tip, STRANGER, NEW, 0, 7).block  # not signed by SIGNER
    assert feed(check, *log.blocks, forged) == ["bad_signature"]


def test_the_rotation_survives_a_restart():
    log, check = Rotating(), Checker([SIGNER.verifier])
    assert feed(check, *log.blocks) == []
    saved = json.loads(json.dumps(snapshot(check)))
    assert saved["logs"][ORIGIN]["rotations"][0][0] == 2
    again = Checker([SIGNER.verifier])
    restore(again, saved)
    assert feed(again, log.block(b"c"), log.block(b"d")) == []  # NEW alone at size 5
    assert feed(again, log.block(b"e", SIGNER)) == ["bad_signature"]
