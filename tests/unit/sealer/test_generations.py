"""Topic resets: a record at a sealed offset that is not byte-identical starts a new log
generation; nothing is skipped. Real store, fake clock, no Kafka."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.ingest.envelope import triage
from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.pipeline import KafkaRecord, Sealer, SealerConfig
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import ConflictError
from auditseal.store.fsck import check_log
from auditseal.store.model import Record
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.origin import generation_origin, split_generation

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
BASE = "test/audit.events/0"
TP = ("audit.events", 0)


@pytest.fixture
def store(tmp_path):
    with BlockStore.open(tmp_path / "s.db", create=True) as s:
        yield s


def make(store, max_events=3):
    writer = LogWriter(store, SIGNER, lambda: 5)
    return Sealer(writer, SealerConfig("test", max_events, 1.0), triage, lambda: 0.0)


def rec(offset: int, value: bytes | None = b"x", ts: int | None = None, key=b"k") -> KafkaRecord:
    return KafkaRecord("audit.events", 0, offset, 1000 + offset if ts is None else ts, key, value)


def positions(store, origin):
    return [e.position for e in store.entries(origin, 0, store.size(origin))]


def test_generation_origins_round_trip_and_stay_c2sp_origins():
    assert generation_origin(BASE, 0) == BASE
    assert generation_origin(BASE, 3) == BASE + "/g3"
    for g in (0, 1, 12):
        assert split_generation(generation_origin(BASE, g)) == (BASE, g)
    assert split_generation("x/g0") == ("x/g0", 0)  # no leading zeros: not a generation
    # A C2SP origin: non-empty, one line, no spaces, no '+'.
    origin = generation_origin(BASE, 2)
    assert Checkpoint(origin, 1, bytes(32)).origin == origin
    assert not any(c.isspace() or c == "+" for c in origin)


def test_a_byte_identical_redelivery_is_skipped_without_a_new_generation(store):
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    for i in range(3):
        assert sealer.add(rec(i)) is None
    assert sealer.skipped == 3 and sealer.take_resets() == []
    assert store.generation(BASE) == 0 and positions(store, BASE) == [0, 1, 2]


@pytest.mark.parametrize(
    "changed",
    [rec(1, value=b"y"), rec(1, ts=1), rec(1, key=b"other"), rec(1, value=None)],
    ids=["value", "timestamp", "key", "null value"],
)
def test_a_different_record_at_a_sealed_offset_starts_a_new_generation(store, changed):
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    assert sealer.add(changed) is None
    (reset,) = sealer.take_resets()
    assert (reset.closed, reset.origin, reset.generation) == (BASE, BASE + "/g1", 1)
    assert "offset 1" in reset.reason and sealer.skipped == 0
    # Until the caller has sought the partition back, its records are dropped, not skipped.
    assert sealer.add(rec(2, value=b"new")) is None and sealer.dropped == 2
    sealer.rewound(TP, 0)
    assert sealer.add(rec(1, value=b"stale")) is None  # still before the seek took effect
    for i in range(4):
        sealer.add(rec(i, value=b"new"))
    sealer.flush()
    assert positions(store, BASE) == [0, 1, 2]  # closed
    assert positions(store, BASE + "/g1") == [0, 1, 2, 3]  # nothing skipped
    for origin in (BASE, BASE + "/g1"):
        check_log(store, origin, [SIGNER.verifier])
    assert store.generations(BASE)[0][:2] == (1, BASE + "/g1")


def test_a_record_at_a_gap_offset_is_a_reset(store):
    sealer = make(store)
    sealer.add(rec(0))
    sealer.add(rec(2))
    sealer.add(rec(3))  # block [0, 2, 3]: offset 1 is a gap
    sealer.add(rec(1))
    assert [r.generation for r in sealer.take_resets()] == [1]


def test_buffered_records_are_sealed_into_the_closed_log_first(store):
    sealer = make(store, max_events=10)
    for i in range(3):
        sealer.add(rec(i))
    sealed = sealer.add(rec(0, value=b"other"))
    assert sealed is not None and sealed.origin == BASE and sealed.last_offset == 2
    assert positions(store, BASE) == [0, 1, 2]


def test_a_redacted_entry_is_compared_by_key_timestamp_and_nullness(store):
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    store.redact(BASE, 1, "dpo", "erasure request", redaction_sealer(SIGNER))
    sealer.forget([TP])
    assert sealer.add(rec(1, value=b"anything")) is None  # the value cannot be compared
    assert sealer.take_resets() == []
    sealer.add(rec(1, ts=7))  # the timestamp still can
    assert len(sealer.take_resets()) == 1


def test_the_generation_survives_a_restart_and_a_second_worker_does_not_add_one(store):
    first = make(store)
    for i in range(3):
        first.add(rec(i))
    first.add(rec(0, value=b"new"))
    first.rewound(TP, 0)
    for i in range(3):
        first.add(rec(i, value=b"new"))
    # A restarted worker continues generation 1: a redelivery there is skipped.
    restarted = make(store)
    assert restarted.origin(TP) == BASE + "/g1"
    assert restarted.add(rec(0, value=b"new")) is None and restarted.take_resets() == []
    # Two workers seeing one reset start one generation (compare-and-swap on the store).
    assert store.start_generation(BASE, 0, "late worker") == 1
    assert store.generation(BASE) == 1


def test_a_worker_that_missed_the_reset_cannot_extend_the_closed_log(store):
    stale = make(store, max_events=10)
    for i in range(3):
        stale.add(rec(i))
    stale.flush()
    stale.add(rec(3))  # buffered for the old log
    other = make(store)
    other.add(rec(0, value=b"new"))  # the other worker found the reset
    assert store.generation(BASE) == 1
    assert stale.flush() == []
    (reset,) = stale.take_resets()
    assert reset.origin == BASE + "/g1" and stale.rewinding(TP)
    assert positions(store, BASE) == [0, 1, 2]
    with pytest.raises(ConflictError, match="closed"):
        LogWriter(store, SIGNER, lambda: 5).append(BASE, [Record(9, 1, b"k", b"v")])


def test_a_partition_that_ends_before_the_last_sealed_offset_is_a_reset(store):
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    assert sealer.check_partition(TP, rec(2)) is None  # same record: same partition
    assert sealer.check_partition(TP, rec(5)) is None  # offset 2 compacted away: same
    assert sealer.take_resets() == []
    sealer.check_partition(TP, None)  # the partition now ends before offset 2
    (reset,) = sealer.take_resets()
    assert "ends before offset 2" in reset.reason
    sealer2 = make(store)
    sealer2.rewound(TP, 0)
    sealer2.add(rec(0, value=b"n"))
    sealer2.flush()
    sealer2.check_partition(TP, rec(0, value=b"other"))
    assert [r.generation for r in sealer2.take_resets()] == [2]


def test_a_probe_overtaken_by_sealing_is_judged_at_the_offset_it_read(store):
    """Kafka is read in another thread while sealing goes on: by the time the answer comes the
    log's last offset has moved, and the record probed must be compared with the one sealed at
    the offset probed, not with the new last (that made false resets in a kill -9 loop)."""
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    probed, log = sealer.last_sealed_offset(TP), sealer.origin(TP)
    for i in range(3, 6):  # sealed while the probe was out
        sealer.add(rec(i))
    assert sealer.last_sealed_offset(TP) == 5
    assert sealer.check_partition(TP, rec(2), probed, log) is None
    assert sealer.check_partition(TP, None, probed, log) is None  # records past it exist
    assert sealer.take_resets() == []
    sealer.check_partition(TP, rec(2, value=b"other"), probed, log)  # still a reset
    (reset,) = sealer.take_resets()
    assert "offset 2, sealed by the log, holds a different record" in reset.reason
    # An answer about the closed generation (the partition is being sealed again) is not judged.
    assert sealer.check_partition(TP, rec(2, value=b"x2"), probed, log) is None
    assert sealer.take_resets() == []


def test_a_closed_log_still_takes_the_redaction_of_one_of_its_entries(store):
    sealer = make(store)
    for i in range(3):
        sealer.add(rec(i))
    sealer.add(rec(0, value=b"new topic"))  # a reset: BASE is closed
    assert [r.origin for r in sealer.take_resets()] == [BASE + "/g1"]
    store.redact(BASE, 1, "dpo", "erasure request", redaction_sealer(SIGNER))
    assert store.size(BASE) == 4  # the record is the closed log's own leaf
    check_log(store, BASE, [SIGNER.verifier])
