"""The sealing pipeline with a real store and a fake clock: no Kafka (STYLE: plain sinks)."""

from __future__ import annotations

import base64

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.ingest.envelope import triage
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.pipeline import KafkaRecord, Sealer, SealerConfig
from auditseal.sealer.sealed_stream import MAX_MESSAGE_BYTES, encode_block
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.fsck import check_log
from auditseal.verifier.errors import FormatError
from auditseal.verifier.sealed import BlockAssembler, parse_message

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    with BlockStore.open(tmp_path / "s.db", create=True) as s:
        yield s


def make(store, clock, max_events=3, max_interval=1.0):
    writer = LogWriter(store, SIGNER, lambda: 5)
    return Sealer(writer, SealerConfig("test", max_events, max_interval), triage, clock)


def rec(offset: int, partition: int = 0, value: bytes | None = b"x") -> KafkaRecord:
    return KafkaRecord("audit.events", partition, offset, 1000 + offset, b"k", value)


def test_blocks_close_at_max_events_or_max_interval(store):
    clock = Clock()
    sealer = make(store, clock)
    assert sealer.add(rec(0)) is None and sealer.add(rec(1)) is None
    sealed = sealer.add(rec(2))
    assert sealed is not None and sealed.last_offset == 2 and sealed.block.header.size == 3
    assert sealer.add(rec(3)) is None
    assert sealer.add(rec(0, partition=1)) is None
    clock.now = 0.5
    assert sealer.due() == []
    clock.now = 1.0
    due = sorted(sealer.due(), key=lambda s: s.tp)
    assert [(s.tp, s.last_offset) for s in due] == [
        (("audit.events", 0), 3),
        (("audit.events", 1), 0),
    ]
    assert store.logs() == ["test/audit.events/0", "test/audit.events/1"]
    check_log(store, "test/audit.events/0", [SIGNER.verifier])


def test_redelivered_records_are_skipped_by_position(store):
    clock = Clock()
    sealer = make(store, clock)
    for i in range(3):
        sealer.add(rec(i))
    again = make(store, clock)  # a restarted worker, whose Kafka offsets were not committed
    for i in range(5):
        again.add(rec(i))
    assert again.skipped == 3
    assert [s.last_offset for s in again.flush()] == [4]
    assert store.size("test/audit.events/0") == 5


def test_a_worker_that_lost_the_race_continues_on_top(store):
    clock = Clock()
    a, b = make(store, clock, max_events=10), make(store, clock, max_events=10)
    for i in range(4):
        a.add(rec(i))
        b.add(rec(i))
    b.add(rec(4))
    assert a.flush()[0].last_offset == 3
    sealed = b.flush()  # b's tip is stale: conflict, reload, seal only offset 4
    assert sealed[0].block.header.start == 4 and sealed[0].block.header.size == 1
    assert b.conflicts == 1
    check_log(store, "test/audit.events/0", [SIGNER.verifier])


def test_a_worker_whose_claim_was_replaced_seals_no_more_of_the_partition(store):
    # a was paused past its session: b was assigned the partition and claimed it meanwhile.
    clock = Clock()
    a, b = make(store, clock, max_events=10), make(store, clock, max_events=10)
    tp = ("audit.events", 0)
    assert a.claim(tp, "host-a/1") == 1
    a.add(rec(0))
    assert a.flush()[0].last_offset == 0
    a.add(rec(1))
    assert b.claim(tp, "host-b/2") == 2
    assert a.flush() == [] and a.claims_lost == 1 and a.buffered() == 0
    assert a.add(rec(2)) is None and a.buffered() == 0  # dropped unacknowledged
    for i in (1, 2):
        b.add(rec(i))
    assert b.flush()[0].block.header.start == 1
    assert store.size("test/audit.events/0") == 3
    assert [c[:2] for c in store.claims("test/audit.events/0")] == [
        (1, "host-a/1"),
        (2, "host-b/2"),
    ]
    a.forget([tp])  # revoked, then assigned again: a claims anew and seals on top
    a.claim(tp, "host-a/1")
    a.add(rec(3))
    assert a.flush()[0].block.header.start == 3
    check_log(store, "test/audit.events/0", [SIGNER.verifier])


def test_malformed_records_are_sealed_and_flagged(store):
    clock = Clock()
    sealer = make(store, clock, max_events=100)
    values = [b"not json", b"{}", b"x" * 2_000_000, b"", b"\x00\xff\xfe", None]
    for i, v in enumerate(values):
        sealer.add(rec(i, value=v))
    (sealed,) = sealer.flush()
    flags = [r.flag for r in sealed.records]
    assert all(flags), flags
    assert flags[2].startswith("too large") and flags[3] == "empty value"
    assert [e.value for e in sealed.block.entries] == values


def test_forgetting_a_partition_drops_its_buffer(store):
    clock = Clock()
    sealer = make(store, clock, max_events=10)
    sealer.add(rec(0))
    sealer.forget([("audit.events", 0)])
    assert sealer.buffered() == 0 and sealer.flush() == []


def test_sealed_stream_messages_stay_under_the_limit_and_carry_everything(store):
    clock = Clock()
    sealer = make(store, clock, max_events=100)
    values = [b"a" * 300_000, b"b" * 300_000, b"c" * 2_000_000, b"d" * 10, b"e" * 400_000]
    for i, v in enumerate(values):
        sealer.add(rec(i, value=v))
    (sealed,) = sealer.flush()
    messages = encode_block(sealed.block, sealed.records, sealed.gaps)
    # Value, key (the origin) and a record batch's overhead must stay under the producer's
    # max request size: a full 1,000,000-byte value did not.
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    assert MAX_MESSAGE_BYTES + 65_536 <= 1_000_000
    decoded = [orjson.loads(m) for m in messages]
    assert [d["part"] for d in decoded] == list(range(len(messages)))
    assert {d["parts"] for d in decoded} == {len(messages)}
    entries = [e for d in decoded for e in d["entries"]]
    assert [e["index"] for e in entries] == list(range(5))
    assert entries[2]["value_omitted"] and entries[2]["value_size"] == 2_000_000
    assert base64.b64decode(entries[4]["value_b64"]) == values[4]
    assert decoded[0]["checkpoint"] == sealed.block.checkpoint


def test_the_sealed_stream_decodes_back_to_the_block_it_encodes(store):
    sealer = make(store, Clock(), max_events=100)
    values = [b"a" * 300_000, b"b" * 300_000, b"c" * 2_000_000, b"d" * 10, b"e" * 400_000]
    for i, v in enumerate(values):
        sealer.add(rec(i, value=v))
    (sealed,) = sealer.flush()
    assembler = BlockAssembler()
    results = [
        assembler.add(parse_message(orjson.loads(m)))
        for m in encode_block(sealed.block, sealed.records, sealed.gaps)
    ]
    assert all(r is None for r in results[:-1]) and results[-1] is not None
    block, items = results[-1]
    assert block.header == sealed.block.header and block.checkpoint == sealed.block.checkpoint
    assert [e.leaf_hash() for e in block.entries] == [e.leaf_hash() for e in sealed.block.entries]
    assert [i.value_omitted for i in items] == [False, False, True, False, False]
    assert block.entries[2].redacted and block.entries[4].value == values[4]


def test_a_sealed_message_whose_summary_disagrees_with_its_header_is_refused(store):
    sealer = make(store, Clock(), max_events=100)
    sealer.add(rec(0))
    (sealed,) = sealer.flush()
    (message,) = encode_block(sealed.block, sealed.records, sealed.gaps)
    data = orjson.loads(message)
    data["block"] = 7
    with pytest.raises(FormatError, match=r"message\.block: 7 disagrees with the header"):
        parse_message(data)
    data = orjson.loads(message)
    data["entries"][0]["salt"] = "zz"
    with pytest.raises(FormatError, match=r"message\.entries\[0\]\.salt"):
        parse_message(data)
