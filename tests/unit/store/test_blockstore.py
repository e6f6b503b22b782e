"""The block store on SQLite and PostgreSQL: appends, reads, proofs against the in-memory tree,
append-only rules."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer import errors as sealer_errors
from auditseal.sealer.blocks import build_block, redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import (
    ClaimLostError,
    ConflictError,
    InputError,
    NotFoundError,
    StoreError,
)
from auditseal.store.fsck import check_log
from auditseal.store.model import Record
from auditseal.verifier import merkle
from auditseal.verifier.errors import VerificationError
from auditseal.verifier.leaf import LeafMismatchError

ORIGIN = "auditseal.local/audit.events/0"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
SIZES = [1, 2, 5, 13, 1, 8, 3]


def records(start: int, n: int) -> list[Record]:
    return [Record(start + i, 1_000 + i, b"src", f"value {start + i}".encode()) for i in range(n)]


@pytest.fixture
def filled(store):
    writer = LogWriter(store, SIGNER, lambda: 42)
    pos = 0
    for n in SIZES:
        writer.append(ORIGIN, records(pos, n))
        pos += n
    return store


def leaf_hashes(store: BlockStore) -> list[bytes]:
    return [e.leaf_hash() for e in store.entries(ORIGIN, 0, store.size(ORIGIN))]


def test_blocks_chain_and_check(filled):
    assert filled.logs() == [ORIGIN]
    assert filled.size(ORIGIN) == sum(SIZES)
    blocks = list(filled.blocks(ORIGIN))
    assert [b.header.number for b in blocks] == list(range(len(SIZES)))
    result = check_log(filled, ORIGIN, [SIGNER.verifier])
    assert (result.blocks, result.size, result.redacted) == (len(SIZES), sum(SIZES), 0)


def test_every_proof_matches_the_in_memory_tree(filled):
    leaves = leaf_hashes(filled)
    n = len(leaves)
    for size in range(1, n + 1):
        assert filled.root(ORIGIN, size) == merkle.root(leaves[:size])
        for index in range(size):
            p = filled.inclusion_proof(ORIGIN, index, size)
            assert p.proof == merkle.inclusion_proof(leaves[:size], index)
            merkle.verify_inclusion(p.leaf_hash, index, size, p.proof, p.root)
        for old in range(1, size + 1):
            c = filled.consistency_proof(ORIGIN, old, size)
            assert c.proof == merkle.consistency_proof(leaves[:size], old)
            merkle.verify_consistency(old, size, c.proof, c.old_root, c.new_root)


def test_tip_reloads_from_the_store(filled, store_location):
    tip = filled.tip(ORIGIN)
    assert tip.size == sum(SIZES) and tip.last_position == sum(SIZES) - 1
    assert tip.compact.root() == filled.root(ORIGIN)
    with BlockStore.open(store_location) as again:
        LogWriter(again, SIGNER, lambda: 43).append(ORIGIN, records(tip.next_position, 2))
        check_log(again, ORIGIN, [SIGNER.verifier])


def test_a_stale_tip_is_a_conflict_and_writes_nothing(filled):
    stale = filled.tip(ORIGIN)
    LogWriter(filled, SIGNER, lambda: 1).append(ORIGIN, records(stale.next_position, 1))
    size = filled.size(ORIGIN)
    with pytest.raises(ConflictError, match="tip"):
        filled.append_block(build_block(stale, records(stale.next_position + 5, 2), SIGNER, 1))
    assert filled.size(ORIGIN) == size
    check_log(filled, ORIGIN, [SIGNER.verifier])


def test_a_redelivered_position_is_a_conflict(filled):
    tip = filled.tip(ORIGIN)
    forged_tip = type(tip)(tip.origin, tip.compact, tip.last_header, tip.last_position - 3)
    with pytest.raises(ConflictError, match="repeats a position"):
        filled.append_block(build_block(forged_tip, records(tip.last_position - 2, 1), SIGNER, 1))
    assert filled.size(ORIGIN) == tip.size


def test_positions_must_increase_within_a_block(store):
    tip = store.tip(ORIGIN)
    with pytest.raises(sealer_errors.InputError, match="does not follow"):
        build_block(tip, [records(5, 1)[0], records(5, 1)[0]], SIGNER, 1)
    with pytest.raises(sealer_errors.InputError, match="at least one"):
        build_block(tip, [], SIGNER, 1)


def test_a_replaced_claim_can_append_no_more(filled, raw):
    a = LogWriter(filled, SIGNER, lambda: 1)
    b = LogWriter(filled, SIGNER, lambda: 2)
    size = filled.size(ORIGIN)
    assert a.claim(ORIGIN, "host-a/1") == 1
    a.append(ORIGIN, records(size, 1))
    assert b.claim(ORIGIN, "host-b/2") == 2
    with pytest.raises(ClaimLostError, match=r"epoch 1.*epoch 2 by host-b/2"):
        a.append(ORIGIN, records(size + 1, 1))
    assert filled.size(ORIGIN) == size + 1  # nothing written
    b.append(ORIGIN, records(size + 1, 1))
    assert filled.claims(ORIGIN) == [(1, "host-a/1", 1), (2, "host-b/2", 2)]
    for sql in ("UPDATE log_claims SET epoch = 9", "DELETE FROM log_claims"):
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute(sql)
    check_log(filled, ORIGIN, [SIGNER.verifier])


def test_appends_race_on_one_log_without_forking(store_location, store):
    # Two workers' connections build on the same tip and append at the same moment, round
    # after round: each round exactly one commits, the other gets a conflict, nothing forks.
    writer = LogWriter(store, SIGNER, lambda: 1)
    writer.append(ORIGIN, records(0, 1))
    barrier = threading.Barrier(2)
    for round_ in range(10):
        tip = store.tip(ORIGIN)
        start = tip.last_position + 1
        built = [build_block(tip, records(start, 1 + k), SIGNER, round_) for k in (0, 1)]
        outcomes: list[str] = ["", ""]

        def append(k: int, built=built, outcomes=outcomes) -> None:
            with BlockStore.open(store_location) as handle:  # a connection per thread
                barrier.wait()
                try:
                    handle.append_block(built[k])
                    outcomes[k] = "ok"
                except ConflictError:
                    outcomes[k] = "conflict"

        threads = [threading.Thread(target=append, args=(k,)) for k in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert sorted(outcomes) == ["conflict", "ok"], outcomes
    check_log(store, ORIGIN, [SIGNER.verifier])
    assert len(list(store.blocks(ORIGIN))) == 11


def test_workers_starting_together_create_one_store(store_location):
    # Several sealers start at once on an empty database: one creates the schema, the others
    # wait for it and open what it made.
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_it() -> None:
        barrier.wait()
        try:
            BlockStore.open(store_location, create=True).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert failures == []
    with BlockStore.open(store_location) as store:
        assert store.logs() == []


def test_a_new_file_being_written_by_another_process_is_opened_once_it_is_free(tmp_path):
    # Another worker holds the new file's write lock while this one switches it to write-ahead
    # logging: SQLite refuses that switch at once, without its busy wait ("database is locked").
    # Workers starting together on a new file meet exactly this.
    location = tmp_path / "store.db"
    other = sqlite3.connect(location, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with BlockStore.open(location, create=True) as store:
            assert store.logs() == []
    finally:
        release.join()
        other.close()


def test_a_store_created_just_after_a_worker_looked_is_opened(store_location, monkeypatch):
    # The other worker commits the schema between this one's first look ("no meta table") and
    # its next query: the database is no longer empty, and it is a store, not a stranger's.
    import auditseal.store.database as database

    real_open = database.open_database

    def open_database(*args, **kwargs):
        db = real_open(*args, **kwargs)
        real_has_table = db.has_table

        def has_table(name):
            found = real_has_table(name)
            if name == "meta" and not found and not raced:
                raced.append(True)
                BlockStore.open(store_location, create=True).close()  # the other worker
            return found

        db.has_table = has_table
        return db

    raced: list[bool] = []
    monkeypatch.setattr("auditseal.store.blockstore.open_database", open_database)
    BlockStore.open(store_location, create=True).close()
    assert raced == [True]
    with BlockStore.open(store_location) as store:
        assert store.logs() == []


def test_sql_updates_and_deletes_are_refused(filled, raw):
    for sql in [
        "DELETE FROM entries WHERE idx = 0",
        f"UPDATE entries SET value = {raw.blob('00')} WHERE idx = 0",
        "UPDATE entries SET timestamp_ms = 1 WHERE idx = 0",
        f"UPDATE nodes SET hash = {raw.blob('00')} WHERE idx = 0",
        "DELETE FROM nodes",
        "UPDATE blocks SET checkpoint = '' WHERE number = 0",
        "DELETE FROM blocks",
        "UPDATE logs SET origin = 'x'",
    ]:
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute(sql)
    if raw.postgres:  # TRUNCATE skips row triggers; statement triggers refuse it
        for table in ("entries", "nodes", "blocks", "logs", "anchors"):
            with pytest.raises(raw.integrity_error, match="append-only"):
                raw.execute(f"TRUNCATE {table} CASCADE")
    assert check_log(filled, ORIGIN, [SIGNER.verifier]).size == sum(SIZES)


def test_redaction_keeps_proofs_and_is_recorded(filled):
    size, tip = filled.size(ORIGIN), filled.tip(ORIGIN)
    before = filled.inclusion_proof(ORIGIN, 4)
    built = filled.redact(
        ORIGIN, 4, "dpo@example.com", "GDPR-2026-17", redaction_sealer(SIGNER), now_ms=99
    )
    entry = filled.entries(ORIGIN, 4, 5)[0]
    assert entry.redacted and entry.value is None
    assert filled.inclusion_proof(ORIGIN, 4, size) == before
    # The record is the next leaf, a log record in a block of its own; the sealer's resume
    # position (the last Kafka offset) does not move.
    (record,) = filled.entries(ORIGIN, size, size + 1)
    assert record.log_record and record.position == size and built.block.header.start == size
    assert filled.tip(ORIGIN).last_position == tip.last_position
    assert check_log(filled, ORIGIN, [SIGNER.verifier]).redacted == 1
    with pytest.raises(ConflictError, match="already redacted"):
        filled.redact(ORIGIN, 4, "x", "y", redaction_sealer(SIGNER))
    with pytest.raises(NotFoundError):
        filled.redact(ORIGIN, 10_000, "x", "y", redaction_sealer(SIGNER))
    with pytest.raises(InputError):
        filled.redact(ORIGIN, 5, "", "y", redaction_sealer(SIGNER))


def test_fsck_finds_a_value_altered_behind_the_api(filled, raw):
    raw.drop_trigger("entries", "entries_only_redact")  # what the database's owner can do
    raw.execute(f"UPDATE entries SET value = {raw.blob(b'forged'.hex())} WHERE idx = 3")
    with pytest.raises(LeafMismatchError, match="entry 3"):
        check_log(filled, ORIGIN, [SIGNER.verifier])


def test_fsck_finds_a_rewritten_node(filled, raw):
    raw.drop_trigger("nodes", "nodes_no_update")
    raw.execute(f"UPDATE nodes SET hash = {raw.blob('00' * 32)} WHERE level = 1 AND idx = 0")
    with pytest.raises(VerificationError, match=r"node \(1, 0\)"):
        check_log(filled, ORIGIN, [SIGNER.verifier])


def test_reads_name_what_is_missing(filled):
    with pytest.raises(NotFoundError, match="no log"):
        filled.size("nope")
    with pytest.raises(NotFoundError, match="no block 99"):
        filled.block(ORIGIN, 99)
    with pytest.raises(InputError, match="out of range"):
        filled.inclusion_proof(ORIGIN, filled.size(ORIGIN))
    with pytest.raises(InputError, match="size 1000"):
        filled.root(ORIGIN, 1000)
    with pytest.raises(InputError, match="0 < old"):
        filled.consistency_proof(ORIGIN, 0)


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    with pytest.raises(StoreError, match="no block store"):
        BlockStore.open(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a block store"):
        BlockStore.open(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not an auditseal block store"):
        BlockStore.open(other)


@pytest.mark.postgres
def test_a_database_that_is_not_a_store_is_named(pg_url):
    with pytest.raises(StoreError, match="no block store here"):
        BlockStore.open(pg_url)
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(StoreError, match="not an auditseal block store"):
        BlockStore.open(pg_url, create=True)
    wrong = pg_url.replace("@", "x@", 1)  # the password, changed
    with pytest.raises(StoreError, match="cannot connect") as failed:
        BlockStore.open(wrong)
    password = wrong.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in str(failed.value)


def test_readonly_store_refuses_writes(filled, store_location):
    with BlockStore.open(store_location, readonly=True) as ro:
        assert ro.size(ORIGIN) == sum(SIZES)
        with pytest.raises(StoreError, match="cannot write"):
            ro.redact(ORIGIN, 0, "a", "b", redaction_sealer(SIGNER))
        assert ro.entries(ORIGIN, 0, 1)[0].value is not None


def test_a_missing_node_is_named(filled, raw):
    raw.drop_trigger("nodes", "nodes_no_delete")
    raw.execute("DELETE FROM nodes WHERE level = 0 AND idx = 2")
    with pytest.raises(StoreError, match=r"tree node \(0, 2\) is missing"):
        filled.inclusion_proof(ORIGIN, 2)


def test_offset_gaps_are_recorded_with_the_block(store):
    writer = LogWriter(store, SIGNER, lambda: 1)
    writer.append(
        ORIGIN, [Record(2, 0, None, b"a"), Record(3, 0, None, b"b"), Record(7, 0, None, b"c")]
    )
    writer.append(ORIGIN, [Record(8, 0, None, b"d")])
    writer.append(ORIGIN, [Record(10, 0, None, b"e")])
    assert store.gaps(ORIGIN, 0) == [(0, 2), (4, 7)]
    assert store.gaps(ORIGIN, 1) == []
    assert store.gaps(ORIGIN, 2) == [(9, 10)]
    check_log(store, ORIGIN, [SIGNER.verifier])


def test_outbox_lists_unpublished_blocks_until_marked(filled):
    assert filled.unpublished(ORIGIN) == list(range(len(SIZES)))
    filled.mark_published(ORIGIN, 0)
    filled.mark_published(ORIGIN, 2)
    filled.mark_published(ORIGIN, 2)  # idempotent
    assert filled.unpublished(ORIGIN) == [1, *range(3, len(SIZES))]
