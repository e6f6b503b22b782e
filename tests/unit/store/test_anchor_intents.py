"""The store's anchor intents, replayable history and receipts outbox (anchor recovery)."""

from __future__ import annotations

import pytest

from auditseal.sealer.log_writer import LogWriter
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import StoreError
from auditseal.store.model import Record
from auditseal.verifier.anchor import build_aggregate, checkpoint_body
from tests.unit.store.test_anchors import ORIGINS, SIGNER, anchor_of, store  # noqa: F401


def test_intents_are_idempotent_and_several_roots_per_seq_are_kept(store):  # noqa: F811
    bodies = [checkpoint_body(store.latest_checkpoint(o)) for o in store.logs()]
    agg = build_aggregate(bodies)
    store.record_anchor_intent(1, agg.root, agg.bodies)
    store.record_anchor_intent(1, agg.root, agg.bodies)  # a retried round: no second row
    store.record_anchor_intent(1, b"\x01" * 32, agg.bodies[:1])
    assert store.anchor_intents(1) == {agg.root: list(agg.bodies), b"\x01" * 32: [agg.bodies[0]]}
    assert store.anchor_intents(2) == {}


@pytest.mark.parametrize(
    "sql", ["UPDATE anchor_intents SET checkpoints = '[]'", "DELETE FROM anchor_intents"]
)
def test_intents_are_append_only(store, raw, sql):  # noqa: F811
    store.record_anchor_intent(1, b"\x02" * 32, ["x"])
    with pytest.raises(raw.integrity_error, match="append-only"):
        raw.execute(sql)


def test_a_damaged_intent_is_a_store_error(store, raw):  # noqa: F811
    store.record_anchor_intent(1, b"\x02" * 32, ["x"])
    raw.drop_trigger("anchor_intents", "anchor_intents_no_update")
    raw.execute("UPDATE anchor_intents SET checkpoints = '{not json'")
    with pytest.raises(StoreError, match="anchor intent 1: not JSON"):
        store.anchor_intents(1)


def test_checkpoint_history_is_in_commit_order_across_logs(store):  # noqa: F811
    writer = LogWriter(store, SIGNER, lambda: 42)
    writer.append(ORIGINS[1], [Record(3, 2_000, b"k", b"v")])
    writer.append(ORIGINS[0], [Record(3, 2_000, b"k", b"v")])
    history = list(store.checkpoint_history())
    assert [o for o, _ in history] == [ORIGINS[0], ORIGINS[1], ORIGINS[1], ORIGINS[0]]
    assert history[-1][1] == store.latest_checkpoint(ORIGINS[0])


def test_outbox_lists_recorded_anchors_until_marked(store):  # noqa: F811
    a, receipts = anchor_of(store, 1)
    store.record_anchor(a, receipts)
    assert store.unpublished_anchors() == [1]
    store.mark_anchor_published(1)
    store.mark_anchor_published(1)  # idempotent
    assert store.unpublished_anchors() == []


def test_a_store_from_before_intents_opens_and_gets_the_new_tables(store, store_location):  # noqa: F811
    if store.path is None:
        pytest.skip("a PostgreSQL store is created with every table; no older layout exists")
    a, receipts = anchor_of(store, 1)
    store.record_anchor(a, receipts)
    for t in ("anchor_publications", "anchor_intents"):
        store._db.execute(f"DROP TABLE {t}")
    again = BlockStore.open(store_location)
    assert again.anchor_intents(1) == {} and again.unpublished_anchors() == []
    again.record_anchor_intent(2, b"\x03" * 32, ["x"])
    # Anchors recorded before the outbox existed count as published (their round did it).
    assert again.unpublished_anchors() == [] and again.anchor_intents(2) == {b"\x03" * 32: ["x"]}
    b, receipts_b = anchor_of(again, 2, block="22")
    again.record_anchor(b, receipts_b)
    assert again.unpublished_anchors() == [2]
    again.close()
