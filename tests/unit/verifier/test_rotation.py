"""Log-key rotation (verifier.rotation): the record, key sets, the whole-log audit and the
block verifier across a rotation, and the attacks on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import (
    build_block,
    build_rotation_block,
    checkpoint_signers,
    cosign,
)
from auditseal.sealer.errors import InputError
from auditseal.sealer.signer import Signer
from auditseal.store.model import BuiltBlock, LogTip, Record
from auditseal.verifier import merkle
from auditseal.verifier.audit import LogAuditor
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.bundle import Bundle, bundle_from_bytes
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import FormatError
from auditseal.verifier.leaf import Entry
from auditseal.verifier.redaction import ProvenLeaf
from auditseal.verifier.rotation import (
    KeyHistory,
    KeyRotation,
    KeySet,
    PinnedKey,
    RotationError,
    history_of,
    open_rotation,
    open_rotation_record,
    read_key_set,
    rotation_entry,
)
from auditseal.verifier.verify import BlockMaterial, Verifier
from tests.unit.verifier.test_audit import entry_row

ORIGIN = "example.com/log"
OLD = Signer("log", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
NEW = Signer("log", Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32))
OTHER = Signer("log", Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32))
SALT = bytes(16)
OVERLAP = 2  # the record is leaf 3 (from 4), the old key co-signs sizes 4..6, until 7


@dataclasses.dataclass
class RotatedLog:
    """Blocks 0..4 of a log: 3 entries by OLD; the rotation record (leaf 3, by both); 1 entry
    (size 5, by both: the overlap); 2 entries (size 7, NEW alone); 1 entry (size 8, NEW)."""

    built: list[BuiltBlock]
    leaves: list[bytes]

    @property
    def blocks(self) -> list[SealedBlock]:
        return [b.block for b in self.built]

    def rotation(self) -> tuple[int, Entry]:
        return 3, self.blocks[1].entries[0]


def _records(start: int, n: int) -> list[Record]:
    return [Record(start + i, 1_000 + start + i, b"k", b"v%d" % (start + i)) for i in range(n)]


def rotated_log(
    sizes: tuple[int, ...] = (1, 2, 1),
    old: Signer = OLD,
    new: Signer = NEW,
    sign_after: list[Signer] | None = None,
) -> RotatedLog:
    tip = LogTip(ORIGIN, CompactRange(), None, -1)
    built = [build_block(tip, _records(0, 3), old, 10, new_salt=lambda: SALT)]
    built.append(build_rotation_block(built[-1].tip, old, new, OVERLAP, 20, lambda: SALT))
    rotations = [(3, open_rotation_record(built[-1].block.entries[0], 3, ORIGIN))]
    position = 3
    for n in sizes:
        tip = built[-1].tip
        signers = sign_after or checkpoint_signers(ORIGIN, rotations, tip.size + n, new, old)
        built.append(build_block(tip, _records(position, n), signers, 30, lambda: SALT))
        position += n
    leaves = [e.leaf_hash() for b in built for e in b.block.entries]
    return RotatedLog(built, leaves)


def audit(log_blocks: list[SealedBlock], keys: KeySet, read_ahead: bool = True):
    rotations = [
        (b.header.start + i, e) for b in log_blocks for i, e in enumerate(b.entries) if e.log_record
    ]
    auditor = LogAuditor(ORIGIN, keys, rotations if read_ahead else ())
    from auditseal.verifier.audit import AuditBlock

    for b in log_blocks:
        rows = [entry_row(b.header.start + i, e) for i, e in enumerate(b.entries)]
        auditor.feed(AuditBlock(b.header.number, b.header.to_text(), b.checkpoint, rows))
    return auditor.finish()


def checks(result) -> list[tuple[int | None, str]]:
    return [(p.block, p.check) for p in result.problems]


def resign(block: SealedBlock, *signers: Signer) -> SealedBlock:
    body = Checkpoint(ORIGIN, block.header.end, block.header.root).to_text()
    return dataclasses.replace(block, checkpoint=cosign(body, list(signers)))


# --- the record ------------------------------------------------------------------------------


def test_the_record_opens_and_names_both_keys_and_sizes():
    log = rotated_log()
    index, entry = log.rotation()
    rotation = open_rotation_record(entry, index, ORIGIN)
    assert (rotation.old, rotation.new) == (OLD.verifier, NEW.verifier)
    assert (rotation.from_size, rotation.until, rotation.overlap) == (4, 7, OVERLAP)
    assert rotation.time_ms == entry.timestamp_ms == 20
    # the rotation block's checkpoint and the overlap's carry both signatures, then NEW alone
    assert [b.checkpoint.count("\u2014 ") for b in log.blocks] == [1, 2, 2, 1, 1]


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda v: v.replace(b"from 4", b"from 5"), "does not verify"),
        (lambda v: v.replace(b"until 7", b"until 07"), "leading zeros"),
        (lambda v: v[: v.rindex(b"\xe2\x80\x94")], "exactly two signatures"),  # new's dropped
        (lambda v: v + v[v.index(b"\xe2\x80\x94") :], "exactly two signatures"),  # one more
        (lambda v: v.replace(b"auditseal.key-rotation/v1", b"auditseal.key-rotation/v2"), "want"),
    ],
)
def test_a_malformed_or_altered_record_does_not_open(mutate, error):
    _, entry = rotated_log().rotation()
    with pytest.raises(RotationError, match=error):
        open_rotation(mutate(entry.value))


def test_signatures_in_the_other_order_are_refused():
    rotation = KeyRotation(ORIGIN, OLD.verifier, NEW.verifier, 4, 7, 20)
    swapped = cosign(rotation.statement(), [NEW, OLD]).encode()
    with pytest.raises(RotationError, match="old key then its new key"):
        open_rotation(swapped)


def test_the_record_must_sit_where_it_says_it_applies():
    _, entry = rotated_log().rotation()
    moved = dataclasses.replace(entry, position=5)
    with pytest.raises(RotationError, match="from size 4, its own position makes it 6"):
        open_rotation_record(moved, 5, ORIGIN)
    with pytest.raises(RotationError, match="rotates the key of log"):
        open_rotation_record(entry, 3, "example.com/other")


def test_a_rotation_to_the_same_key_or_without_overlap_for_its_own_block_is_malformed():
    with pytest.raises(FormatError, match="new key is the old key"):
        KeyRotation(ORIGIN, OLD.verifier, OLD.verifier, 4, 7, 1)
    with pytest.raises(FormatError, match="from"):
        KeyRotation(ORIGIN, OLD.verifier, NEW.verifier, 4, 4, 1)


# --- which key signs which size ---------------------------------------------------------------


def test_keys_by_size_follow_the_record_both_ways():
    _, entry = rotated_log().rotation()
    rotation = open_rotation_record(entry, 3, ORIGIN)
    for pinned in (OLD, NEW):
        history = KeyHistory(KeySet.of([pinned.verifier]), ORIGIN)
        history.add(3, rotation)
        assert history.chain_problems() == []
        assert history.valid_at(3) == (OLD.verifier,)
        assert set(history.valid_at(4)) == set(history.valid_at(6)) == {OLD.verifier, NEW.verifier}
        assert history.valid_at(7) == history.valid_at(100) == (NEW.verifier,)
    not_following = KeyHistory(KeySet.of([OLD.verifier], follow=False), ORIGIN, [(3, rotation)])
    assert not_following.valid_at(7) == ()


def test_pins_with_ranges_restrict_what_following_would_accept():
    _, entry = rotated_log().rotation()
    rotation = open_rotation_record(entry, 3, ORIGIN)
    keys = KeySet((PinnedKey(OLD.verifier, 0, 5), PinnedKey(NEW.verifier, 4)))
    history = KeyHistory(keys, ORIGIN, [(3, rotation)])
    assert set(history.valid_at(4)) == {OLD.verifier, NEW.verifier}
    assert history.valid_at(5) == (NEW.verifier,)  # the pin ends OLD before the overlap does


def test_a_sealer_holding_only_the_old_key_refuses_to_sign_after_the_overlap():
    _, entry = rotated_log().rotation()
    rotations = [(3, open_rotation_record(entry, 3, ORIGIN))]
    assert checkpoint_signers(ORIGIN, rotations, 6, OLD) == [OLD]
    with pytest.raises(InputError, match="must be signed by"):
        checkpoint_signers(ORIGIN, rotations, 7, OLD)
    assert checkpoint_signers(ORIGIN, rotations, 6, NEW, OLD) == [NEW, OLD]
    assert checkpoint_signers(ORIGIN, [], 6, NEW, OLD) == [OLD]  # a log not rotated yet


# --- the whole log ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        KeySet.of([OLD.verifier]),
        KeySet.of([NEW.verifier]),  # follows the record back to the old key
        KeySet.of([OLD.verifier, NEW.verifier], follow=False),
        KeySet((PinnedKey(OLD.verifier, 0, 7), PinnedKey(NEW.verifier, 4)), follow=False),
    ],
    ids=["old-pinned", "new-pinned", "both-pinned", "pins-file"],
)
def test_a_whole_log_across_a_rotation_is_valid(keys):
    result = audit(rotated_log().blocks, keys)
    assert result.problems == () and result.size == 8


def test_without_following_the_old_pin_alone_fails_after_the_overlap():
    result = audit(rotated_log().blocks, KeySet.of([OLD.verifier], follow=False))
    assert checks(result) == [(3, "checkpoint"), (4, "checkpoint")]  # NEW is not pinned


def test_attack_a_post_rotation_checkpoint_signed_by_the_old_key_only():
    blocks = rotated_log().blocks
    blocks[4] = resign(blocks[4], OLD)
    for keys in (KeySet.of([OLD.verifier]), KeySet.of([OLD.verifier, NEW.verifier])):
        result = audit(blocks, keys)
        assert checks(result) == [(4, "log-key")]
        assert "retired" in result.problems[0].detail
    # in the overlap the old key alone is still a key of the log
    blocks = rotated_log().blocks
    blocks[2] = resign(blocks[2], OLD)
    assert audit(blocks, KeySet.of([NEW.verifier])).problems == ()


def test_attack_b_a_record_signed_by_a_key_that_is_not_the_previous_one():
    # the attacker holds OTHER and NEW but not OLD: the record's old key is OTHER
    genuine = rotated_log()
    forged = rotated_log(old=OTHER)
    blocks = genuine.blocks[:1] + forged.blocks[1:]
    result = audit(blocks, KeySet.of([OLD.verifier]))
    assert result.exit_code == 1
    assert (1, "key-rotation") in checks(result)  # nothing pinned authenticates it
    assert "nothing authenticates it" in str(result.problems)


def test_attack_b_a_second_rotation_whose_old_key_is_not_the_current_key():
    log = rotated_log()
    tip = log.built[-1].tip
    second = build_rotation_block(tip, OTHER, Signer("x", Ed25519PrivateKey.generate()), 0, 40)
    result = audit([*log.blocks, second.block], KeySet.of([OLD.verifier]))
    assert ("key-rotation" in [c for _, c in checks(result)]) and result.exit_code == 1
    assert "not signed by the previous key" in str(result.problems)


def test_a_record_naming_one_key_while_checkpoints_are_signed_by_another():
    blocks = rotated_log(sizes=(1, 2, 1)).blocks
    blocks[3], blocks[4] = resign(blocks[3], OTHER), resign(blocks[4], OTHER)
    result = audit(blocks, KeySet.of([OLD.verifier, OTHER.verifier]))
    assert checks(result) == [(3, "log-key"), (4, "log-key")]


def test_attack_c_the_rotation_record_erased():
    blocks = rotated_log().blocks
    entry = blocks[1].entries[0]
    blocks[1] = dataclasses.replace(blocks[1], entries=(entry.redact(),))
    result = audit(blocks, KeySet.of([OLD.verifier]))
    assert result.exit_code == 1
    found = checks(result)
    assert (1, "redaction") in found  # an erased log record is evidence destroyed
    assert (3, "checkpoint") in found and (4, "checkpoint") in found  # NEW is never learnt


def test_attack_d_the_rotation_moved_to_another_size():
    """The holder of both keys re-signs the record with another ``from``: it no longer sits
    where it says it applies (and its leaf, so the root, changed too)."""
    blocks = rotated_log().blocks
    rotation = KeyRotation(ORIGIN, OLD.verifier, NEW.verifier, 6, 9, 20)
    value = cosign(rotation.statement(), [OLD, NEW]).encode()
    moved = rotation_entry(3, value, 20, SALT, ORIGIN)
    blocks[1] = dataclasses.replace(blocks[1], entries=(moved,))
    result = audit(blocks, KeySet.of([OLD.verifier]))
    assert result.exit_code == 1
    assert (1, "key-rotation") in checks(result) and (1, "root") in checks(result)
    assert "states from size 6, its own position makes it 4" in str(result.problems)


def test_the_audit_without_read_ahead_follows_forward():
    assert audit(rotated_log().blocks, KeySet.of([OLD.verifier]), read_ahead=False).problems == ()


# --- one block: verify --block and bundles -----------------------------------------------------


def material(log: RotatedLog, number: int, with_rotations: bool = True) -> BlockMaterial:
    block = log.blocks[number]
    h = block.header
    prev = log.blocks[number - 1] if number else None
    rotations: tuple[ProvenLeaf, ...] = ()
    index, entry = log.rotation()
    if with_rotations and not h.start <= index < h.end:
        if index < h.start:
            proof = merkle.inclusion_proof(log.leaves[: h.end], index)
            rotations = (ProvenLeaf(index, entry, h.end, tuple(proof)),)
        else:
            holder = log.blocks[1]
            size = holder.header.end
            rotations = (
                ProvenLeaf(
                    index,
                    entry,
                    size,
                    tuple(merkle.inclusion_proof(log.leaves[:size], index)),
                    holder.checkpoint,
                    tuple(merkle.consistency_proof(log.leaves[:size], h.end)),
                ),
            )
    compact = CompactRange()
    compact.extend(log.leaves[: h.start])
    return BlockMaterial(
        ORIGIN,
        block,
        prev.header if prev else None,
        prev.checkpoint if prev else None,
        tuple(compact.hashes),
        None,
        rotations=rotations,
    )


def verify(m: BlockMaterial, *keys: Signer, follow: bool = True):
    return Verifier(
        KeySet.of([k.verifier for k in keys], follow), None, None, None, 0
    ).verify_block(m)


@pytest.mark.parametrize("number", range(5))
@pytest.mark.parametrize("pinned", [OLD, NEW], ids=["old", "new"])
def test_every_block_verifies_with_either_key_pinned(number, pinned):
    report = verify(material(rotated_log(), number), pinned)
    assert report.first_failure is None, report.render()
    assert report.exit_code == 3  # not anchored: everything else holds
    assert report.check("key-rotation").status == "ok"
    assert report.check("log-key").status == "ok"


def test_a_block_after_the_rotation_without_its_record_fails_with_the_old_pin():
    report = verify(material(rotated_log(), 4, with_rotations=False), OLD)
    assert report.exit_code == 1
    assert report.check("previous-state").status == report.check("checkpoint").status == "failed"


def test_a_block_re_signed_by_the_old_key_after_the_overlap_fails_log_key():
    log = rotated_log()
    log.built[4] = dataclasses.replace(log.built[4], block=resign(log.blocks[4], OLD))
    report = verify(material(log, 4), OLD)
    assert report.verdict == "INVALID: check 12 (log-key) failed"
    assert "retired" in report.check("log-key").detail


def test_a_rotation_record_with_a_bad_inclusion_proof_fails_key_rotation():
    m = material(rotated_log(), 4)
    (p,) = m.rotations
    bad = dataclasses.replace(p, proof=(bytes(32), *p.proof[1:]))
    report = verify(dataclasses.replace(m, rotations=(bad,)), OLD)
    assert report.first_failure is not None and report.first_failure.name == "key-rotation"


def test_a_bundle_carries_the_rotation_records_and_parses_back():
    m = material(rotated_log(), 4)
    raw = Bundle(m).encode()
    assert b'"rotations"' in raw
    parsed = bundle_from_bytes(raw)
    assert parsed.material.rotations == m.rotations
    assert verify(parsed.material, OLD).first_failure is None
    # and a block of a log that never rotated has no such key
    assert b'"rotations"' not in Bundle(dataclasses.replace(m, rotations=())).encode()


# --- the pins file -----------------------------------------------------------------------------


def test_the_pins_file_reads_ranges_and_names_the_bad_field(tmp_path: Path):
    good = tmp_path / "keys.json"
    good.write_text(
        json.dumps(
            {
                "format": "auditseal.log-keys/v1",
                "follow_rotations": False,
                "keys": [
                    {"key": OLD.verifier.to_string(), "from_size": 0, "to_size": 7},
                    {"key": NEW.verifier.to_string(), "from_size": 4, "log": ORIGIN},
                ],
            }
        )
    )
    keys = read_key_set(good)
    assert not keys.follow and keys.pins[0].to_size == 7 and keys.pins[1].log == ORIGIN
    assert audit(rotated_log().blocks, keys).problems == ()
    for doc, error in (
        ({"format": "x", "keys": []}, "keys.format"),
        ({"format": "auditseal.log-keys/v1", "keys": [{"key": "nope"}]}, r"keys.keys\[0\].key"),
        (
            {
                "format": "auditseal.log-keys/v1",
                "keys": [{"key": OLD.verifier.to_string(), "from_size": 5, "to_size": 5}],
            },
            r"keys.keys\[0\].to_size",
        ),
        ({"format": "auditseal.log-keys/v1", "keys": [], "extra": 1}, "keys.extra"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc))
        with pytest.raises(FormatError, match=error):
            read_key_set(bad)


def test_history_of_leaves_out_and_reports_a_bad_record():
    _, entry = rotated_log().rotation()
    broken = dataclasses.replace(entry, value=entry.value.replace(b"from 4", b"from 5"))
    history, problems = history_of(KeySet.of([OLD.verifier]), ORIGIN, [(3, broken)])
    assert history.rotations == [] and problems and problems[0][0] == 3
