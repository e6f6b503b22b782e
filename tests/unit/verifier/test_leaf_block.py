"""Leaf encoding, entries and redaction; block headers and their chain; log replay."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import build_block
from auditseal.sealer.signer import Signer
from auditseal.store.model import LogTip, Record
from auditseal.verifier.block import GENESIS_HASH, BlockHeader, ChainError, SealedBlock
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import (
    FormatError,
    RootMismatchError,
    SignatureError,
    VerificationError,
)
from auditseal.verifier.leaf import Entry, Leaf, LeafMismatchError, commitment
from auditseal.verifier.merkle import leaf_hash
from auditseal.verifier.replay import LogReplay

SALT = bytes(range(16))
ORIGIN = "auditseal.local/audit.events/0"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))


def test_leaf_bytes_are_exactly_the_documented_layout():
    e = Entry.seal(ORIGIN, 7, 1_700_000_000_000, b"proxy-1", b'{"id":"1"}', SALT)
    raw = e.leaf().to_bytes()
    origin = ORIGIN.encode()
    expected = (
        bytes([1, 0])
        + struct.pack(">H", len(origin))
        + origin
        + struct.pack(">Qq", 7, 1_700_000_000_000)
        + hashlib.sha256(b"proxy-1").digest()
        + hashlib.sha256(SALT + b'{"id":"1"}').digest()
    )
    assert raw == expected
    assert Leaf.from_bytes(raw) == e.leaf()
    assert e.leaf_hash() == leaf_hash(expected)


def test_null_key_and_value_are_flagged_not_conflated_with_empty():
    null = Entry.seal(ORIGIN, 0, 0, None, None, SALT)
    empty = Entry.seal(ORIGIN, 0, 0, b"", b"", SALT)
    assert null.leaf().to_bytes()[1] == 0b11
    assert empty.leaf().to_bytes()[1] == 0
    assert null.leaf_hash() != empty.leaf_hash()


def test_redaction_keeps_the_leaf():
    e = Entry.seal(ORIGIN, 3, 5, b"k", b"secret", SALT)
    r = e.redact()
    assert r.redacted and r.value is None and r.salt is None
    assert r.leaf_hash() == e.leaf_hash()


def test_altered_value_does_not_open_the_commitment():
    e = Entry.seal(ORIGIN, 3, 5, b"k", b"secret", SALT)
    with pytest.raises(LeafMismatchError, match="entry 3"):
        dataclasses.replace(e, value=b"Secret").leaf()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02\x00\x00\x01a" + bytes(80),  # unknown version
        b"\x01\x08\x00\x01a" + bytes(80),  # unknown flag (bit 3; bit 2 is a log record)
        b"\x01\x00\x00\x01a" + bytes(79),  # short
        b"\x01\x00\x00\x01a" + bytes(81),  # trailing byte
        b"\x01\x00\x00\x01\xff" + bytes(80),  # origin not UTF-8
    ],
)
def test_malformed_leaves_are_rejected(raw):
    with pytest.raises(FormatError):
        Leaf.from_bytes(raw)


def test_entry_rejects_inconsistent_openings():
    c = commitment(SALT, b"v")
    with pytest.raises(FormatError):
        Entry(ORIGIN, 0, 0, None, b"v", None, c)
    with pytest.raises(FormatError):
        Entry(ORIGIN, 0, 0, None, b"v", b"short", c)


def _blocks(sizes: list[int]) -> list[SealedBlock]:
    tip = LogTip(ORIGIN, CompactRange(), None, -1)
    out = []
    pos = 10
    for n in sizes:
        records = [
            Record(pos + 2 * i, 1000 + i, b"src", f"event {pos + i}".encode()) for i in range(n)
        ]
        built = build_block(tip, records, SIGNER, sealed_at_ms=42, new_salt=lambda: SALT)
        tip = built.tip
        pos = records[-1].position + 1
        out.append(built.block)
    return out


def test_header_text_round_trips_and_hash_is_sha256_of_text():
    h = _blocks([3])[0].header
    assert h.to_text().startswith("auditseal-block v1\norigin auditseal.local/audit.events/0\n")
    assert BlockHeader.from_text(h.to_text()) == h
    assert h.hash() == hashlib.sha256(h.to_text().encode()).digest()
    assert h.prev_hash == GENESIS_HASH


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("number 0", "number 00"),
        ("range 0 3", "range 0  3"),
        ("auditseal-block v1", "auditseal-block v2"),
        ("sealed 42", "sealed -42"),
        ("range 0 3", "range 3 3"),
    ],
)
def test_malformed_headers_are_rejected(old, new):
    text = _blocks([3])[0].header.to_text()
    with pytest.raises(FormatError):
        BlockHeader.from_text(text.replace(old, new))


def test_replay_accepts_a_clean_log():
    replay = LogReplay(ORIGIN, [SIGNER.verifier])
    for block in _blocks([1, 4, 7, 2]):
        result = replay.apply(block)
        assert result.checkpoint.size == block.header.end
    assert replay.compact.size == 14


def _replay_all(blocks: list[SealedBlock]) -> None:
    replay = LogReplay(ORIGIN, [SIGNER.verifier])
    for b in blocks:
        replay.apply(b)


def _with_entries(block: SealedBlock, entries: list[Entry]) -> SealedBlock:
    return dataclasses.replace(block, entries=tuple(entries))


def test_replay_catches_tampering():
    blocks = _blocks([3, 4])
    b1 = blocks[1]
    entries = list(b1.entries)

    changed = [dataclasses.replace(entries[0], value=b"forged"), *entries[1:]]
    with pytest.raises(LeafMismatchError):
        _replay_all([blocks[0], _with_entries(b1, changed)])

    retimed = [dataclasses.replace(entries[0], timestamp_ms=1), *entries[1:]]
    with pytest.raises(RootMismatchError):
        _replay_all([blocks[0], _with_entries(b1, retimed)])

    with pytest.raises(VerificationError, match="holds 3 entries"):
        _replay_all([blocks[0], _with_entries(b1, entries[1:])])

    swapped = [entries[1], entries[0], *entries[2:]]
    with pytest.raises(VerificationError, match="does not follow"):
        _replay_all([blocks[0], _with_entries(b1, swapped)])

    with pytest.raises(ChainError):
        _replay_all([b1])  # the first block removed

    other = _blocks([2, 5])[1]
    with pytest.raises(ChainError):
        _replay_all([blocks[0], other])  # a header from another history

    stranger = Signer.generate("sealer")
    resigned = dataclasses.replace(
        b1, checkpoint=stranger.sign_note(b1.checkpoint.split("\n\n")[0] + "\n")
    )
    with pytest.raises(SignatureError):
        _replay_all([blocks[0], resigned])


def test_build_block_hashes_each_leaf_as_its_entry_does():
    # build_block hashes leaves straight from their fields; every flag combination must give
    # the bytes Entry.leaf_hash() gives, or the block's root would not verify.
    tip = LogTip(ORIGIN, CompactRange(), None, -1)
    records = [
        Record(0, 1, b"k", b"v"),
        Record(1, 2, None, b"v"),
        Record(2, 3, b"k", None),
        Record(3, -(2**63), None, None),
    ]
    built = build_block(tip, records, SIGNER, sealed_at_ms=42, new_salt=lambda: SALT)
    expected = CompactRange()
    expected.extend([e.leaf_hash() for e in built.block.entries])
    assert built.block.header.root == expected.root()
    assert [e.value_commitment for e in built.block.entries] == [
        commitment(SALT, r.value) for r in records
    ]


def test_build_block_refuses_a_timestamp_out_of_range_naming_it():
    tip = LogTip(ORIGIN, CompactRange(), None, -1)
    with pytest.raises(FormatError, match="timestamp"):
        build_block(tip, [Record(0, 2**63, b"k", b"v")], SIGNER, 42, new_salt=lambda: SALT)
