"""The store's anchors section: records, receipts, orphaning, append-only triggers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore, StoredAnchor
from auditseal.store.errors import ConflictError, InputError, NotFoundError
from auditseal.store.model import Record
from auditseal.verifier.anchor import AnchorReceipt, build_aggregate, checkpoint_body

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
ORIGINS = ["auditseal.local/audit.events/1", "auditseal.local/audit.events/0"]
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def store(store_location):
    with BlockStore.open(store_location, create=True) as s:
        writer = LogWriter(s, SIGNER, lambda: 42)
        for o in ORIGINS:
            writer.append(o, [Record(i, 1_000 + i, b"k", b"v") for i in range(3)])
        yield s


def anchor_of(store: BlockStore, seq: int, block: str = "11") -> tuple[StoredAnchor, list]:
    agg = build_aggregate([checkpoint_body(store.latest_checkpoint(o)) for o in store.logs()])
    a = StoredAnchor(seq, agg.root, "0x" + "aa" * 32, 5, "0x" + block * 32, 31337, CONTRACT, 42)
    receipts = [
        AnchorReceipt(
            seq,
            o,
            b,
            i,
            agg.size,
            tuple(agg.proof(i)),
            agg.root,
            a.tx_hash,
            5,
            a.block_hash,
            31337,
            CONTRACT,
        )
        for i, (o, b) in enumerate(zip(agg.origins, agg.bodies, strict=True))
    ]
    return a, receipts


def test_record_and_read_back(store):
    assert store.next_anchor_seq() == 1 and store.last_anchor() is None
    a, receipts = anchor_of(store, 1)
    store.record_anchor(a, receipts)
    assert store.anchors() == [a] and store.anchor(1) == a and store.last_anchor() == a
    assert store.next_anchor_seq() == 2
    assert store.anchor_receipts(1) == receipts
    for r in store.anchor_receipts(1):
        r.verify(a.root)
    assert store.latest_anchored_checkpoint(ORIGINS[0]) == receipts[1]
    with pytest.raises(ConflictError):
        store.record_anchor(a, receipts)


def test_orphan_once_and_replace(store):
    a, receipts = anchor_of(store, 1)
    store.record_anchor(a, receipts)
    b, receipts_b = anchor_of(store, 2, "22")
    store.record_anchor(b, receipts_b, replaces=[1])
    old = store.anchor(1)
    assert (old.status, old.replaced_by) == ("orphaned", 2)
    assert [r.status for r in store.log_anchor_receipts(ORIGINS[1])] == ["orphaned", "confirmed"]
    assert store.latest_anchored_checkpoint(ORIGINS[1]).seq == 2
    assert [x.seq for x in store.anchors("confirmed")] == [2]
    with pytest.raises(ConflictError):
        store.mark_anchor_orphaned(1)
    store.mark_anchor_orphaned(2)
    assert store.last_anchor() is None and store.next_anchor_seq() == 3
    with pytest.raises(NotFoundError):
        store.mark_anchor_orphaned(9)


def test_triggers_refuse_other_changes(store, raw):
    a, receipts = anchor_of(store, 1)
    store.record_anchor(a, receipts)
    for sql in (
        f"UPDATE anchors SET root = {raw.blob('00')} WHERE seq = 1",
        "UPDATE anchors SET status = 'confirmed' WHERE seq = 1",
        "DELETE FROM anchors",
        "UPDATE anchor_receipts SET checkpoint = 'x'",
        "DELETE FROM anchor_receipts",
    ):
        with pytest.raises(raw.integrity_error, match="append-only"):
            raw.execute(sql)


def test_receipt_of_another_anchor_is_refused(store):
    a, receipts = anchor_of(store, 1)
    with pytest.raises(InputError):
        store.record_anchor(a, [AnchorReceipt.from_json({**receipts[0].to_json(), "seq": 2})])
    assert store.anchors() == []


def test_a_store_without_the_anchor_tables_gets_them(store, store_location):
    if store.path is None:
        pytest.skip("a PostgreSQL store is created with every table; no older layout exists")
    db = store._db
    for t in ("anchor_receipts", "anchors"):
        db.execute(f"DROP TABLE {t}")
    again = BlockStore.open(store_location)
    assert again.anchors() == [] and again.next_anchor_seq() == 1
    a, receipts = anchor_of(again, 1)
    again.record_anchor(a, receipts)
    assert again.anchor(1) == a
    again.close()


@pytest.mark.timeout(60)
def test_a_fresh_handle_records_an_anchor(store, store_location):
    """What a service recovering an anchor after a takeover does: record it on a handle that
    has not looked up any log yet (on PostgreSQL, a log-id query inside the receipts' pipelined
    insert used to hang)."""
    a, receipts = anchor_of(store, 1)
    with BlockStore.open(store_location) as fresh:
        fresh.record_anchor(a, receipts)
        assert fresh.anchor_receipts(1) == receipts
