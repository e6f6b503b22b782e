"""The dashboard's pure state: blocks from real encoded sealed messages, receipts, alerts."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.dashboard.feed import ACTIVITY_MINUTES, ENTRY_PREVIEW, UNKNOWN_SOURCE, Feed
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.sealed_stream import encode_block
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.verifier.anchor import AnchorReceipt, build_aggregate, checkpoint_body

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
A, B = "test.local/audit.events/0", "test.local/audit.events/1"
NOW = 1_800_000_000_000  # a fixed clock, on a minute boundary
MIN = 60_000
FEED, BEEF = "0x" + "fe" * 32, "0x" + "be" * 32


def event(source: str, n: int) -> bytes:
    return json.dumps({"id": f"{source}-{n}", "source": source, "specversion": "1.0"}).encode()


class Chain:
    """A real store and writer; ``seal`` returns the block's encoded sealed messages."""

    def __init__(self, path: Path) -> None:
        self.store = BlockStore.open(path, create=True)
        self.sealed_at = NOW
        self.writer = LogWriter(self.store, SIGNER, lambda: self.sealed_at)

    def seal(
        self, origin: str, values: list[bytes | None], max_bytes: int = 900_000
    ) -> list[bytes]:
        first = self.writer.tip(origin).next_position
        records = [
            Record(first + i, NOW, b"k", v, event_id=None if v is None else f"id-{first + i}")
            for i, v in enumerate(values)
        ]
        block = self.writer.append(origin, records)
        return encode_block(block, records, max_bytes=max_bytes)

    def receipt(
        self, seq: int, origin: str, tx: str = "0x" + "ab" * 32, block_number: int = 7
    ) -> bytes:
        body = checkpoint_body(self.store.latest_checkpoint(origin))
        agg = build_aggregate([body])
        receipt = AnchorReceipt(
            seq, origin, body, 0, 1, (), agg.root, tx, block_number, "0x" + "11" * 32, 31337,
            "0x" + "22" * 20,
        )  # fmt: skip
        return orjson.dumps(receipt.to_json())


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return Chain(tmp_path / "store.db")


def feed_of(*messages: bytes, history: int = 50) -> Feed:
    feed = Feed(history=history, clock_ms=lambda: NOW + 30_000)
    for m in messages:
        feed.on_sealed(m)
    return feed


def test_a_block_becomes_a_row_with_its_entries_and_sources(chain):
    (message,) = chain.seal(A, [event("db-gw", 1), event("db-gw", 2), event("ssh", 1), b"junk"])
    feed = Feed(clock_ms=lambda: NOW)
    updates = feed.on_sealed(message)
    assert [u.kind for u in updates] == ["block", "activity"]
    row = updates[0].data
    assert (row["log"], row["number"], row["start"], row["end"], row["events"]) == (A, 0, 0, 4, 4)
    assert row["sealed_at_ms"] == NOW and row["anchor"] is None
    assert row["sources"] == {"db-gw": 2, "ssh": 1, UNKNOWN_SOURCE: 1}
    assert [e["event_id"] for e in row["entries"]] == ["id-0", "id-1", "id-2", "id-3"]
    assert [e["source"] for e in row["entries"]] == ["db-gw", "db-gw", "ssh", None]
    assert feed.blocks() == [row]


def test_a_block_in_several_parts_is_shown_once_whole(chain):
    messages = chain.seal(A, [event("big", i) + b" " * 600 for i in range(12)], max_bytes=3000)
    assert len(messages) > 1
    feed = Feed(clock_ms=lambda: NOW)
    for m in messages[:-1]:
        assert feed.on_sealed(m) == []
    (block, _activity) = feed.on_sealed(messages[-1])
    assert block.data["events"] == 12 and len(block.data["entries"]) == 12


def test_only_the_last_blocks_are_kept_and_entries_are_previewed(chain):
    messages = [m for n in range(5) for m in chain.seal(A, [event("s", n)])]
    messages += chain.seal(B, [event("s", i) for i in range(ENTRY_PREVIEW + 5)])
    feed = feed_of(*messages, history=3)
    assert [(b["log"], b["number"]) for b in feed.blocks()] == [(A, 3), (A, 4), (B, 0)]
    last = feed.blocks()[-1]
    assert last["events"] == ENTRY_PREVIEW + 5 and len(last["entries"]) == ENTRY_PREVIEW


def test_a_republished_block_replaces_itself_and_is_counted_once(chain):
    (message,) = chain.seal(A, [event("s", 1), event("s", 2)])
    feed = feed_of(message, message)
    assert len(feed.blocks()) == 1
    assert feed.activity(NOW)["sources"][0]["total"] == 2


def test_activity_counts_per_source_per_minute_within_the_window(chain):
    chain.sealed_at = NOW - 3 * MIN
    old = chain.seal(A, [event("a", 1)])
    chain.sealed_at = NOW
    new = chain.seal(A, [event("a", 2), event("b", 1), event("b", 2)])
    feed = feed_of(*old, *new)
    activity = feed.activity(NOW + 1000)
    assert activity["minutes"] == ACTIVITY_MINUTES
    by_source = {s["source"]: s for s in activity["sources"]}
    assert [s["source"] for s in activity["sources"]] == ["a", "b"]  # equal totals: by name
    assert by_source["b"]["total"] == 2 and by_source["b"]["per_minute"][-1] == 2
    assert by_source["a"]["per_minute"][-1] == 1 and by_source["a"]["per_minute"][-4] == 1
    later = feed.activity(NOW + (ACTIVITY_MINUTES - 1) * MIN)  # the old minute slid out
    assert {s["source"]: s["total"] for s in later["sources"]} == {"a": 1, "b": 2}
    assert feed.activity(NOW + ACTIVITY_MINUTES * MIN)["sources"] == []


def test_a_receipt_anchors_the_blocks_it_covers_with_confirmations(chain):
    m0 = chain.seal(A, [event("s", 1)])
    m1 = chain.seal(A, [event("s", 2)])
    anchored = chain.receipt(0, A, tx=FEED, block_number=10)  # covers blocks 0 and 1
    m2 = chain.seal(A, [event("s", 3)])
    feed = feed_of(*m0, *m1, *m2)
    updates = feed.on_anchor(anchored)
    assert [(u.kind, u.data["number"]) for u in updates] == [("block", 0), ("block", 1)]
    anchor = updates[0].data["anchor"]
    assert anchor["tx_hash"] == FEED and anchor["seq"] == 0 and anchor["size"] == 2
    assert anchor["confirmations"] is None  # no chain followed
    assert feed.blocks()[2]["anchor"] is None
    assert [u.kind for u in feed.set_chain_head(14)] == ["status"]
    assert feed.set_chain_head(14) == []
    assert feed.blocks()[0]["anchor"]["confirmations"] == 5
    # A later anchor covers block 2 as well; blocks 0 and 1 still show where they were first.
    feed.on_anchor(chain.receipt(1, A, tx=BEEF, block_number=12))
    assert [b["anchor"]["tx_hash"] for b in feed.blocks()] == [FEED, FEED, BEEF]


def test_an_orphaned_receipt_no_longer_anchors(chain):
    feed = feed_of(*chain.seal(A, [event("s", 1)]))
    receipt = chain.receipt(0, A)
    feed.on_anchor(receipt)
    orphaned = json.loads(receipt)
    orphaned["status"] = "orphaned"
    feed.on_anchor(json.dumps(orphaned).encode())
    assert feed.blocks()[0]["anchor"] is None


def test_alerts_are_kept_as_text_with_their_fields(chain):
    feed = Feed(max_alerts=2, clock_ms=lambda: NOW)
    (u,) = feed.on_alert(
        b'{"kind": "fork", "log": "x/0", "block": 3, "detail": "<img src=x>", "seen": 1}'
    )
    assert u.kind == "alert"
    assert u.data == {
        "kind": "fork",
        "severity": "",
        "log": "x/0",
        "block": 3,
        "detail": "<img src=x>",  # kept verbatim: the page inserts it as text
        "at_ms": NOW,
        "extra": '{"seen":1}',
    }
    feed.on_alert(b'{"kind": "gap", "block": "3", "detail": "' + b"x" * 2000 + b'"}')
    feed.on_alert(b'{"kind": "third"}')
    kept = feed.alerts()
    assert [a["kind"] for a in kept] == ["gap", "third"]
    assert kept[0]["block"] is None and len(kept[0]["detail"]) == 500


def test_an_alert_of_the_monitor_keeps_its_severity_and_time(chain):
    from auditseal.monitor.checks import Alert

    alert = Alert("sequence_gap", "x/0", 4, "source s skipped 7", 1_795_000_000_123)
    (u,) = Feed(clock_ms=lambda: NOW).on_alert(orjson.dumps(alert.to_json()))
    assert u.data["severity"] == "warning" and u.data["at_ms"] == 1_795_000_000_123
    assert (u.data["kind"], u.data["block"], u.data["extra"]) == ("sequence_gap", 4, "{}")


@pytest.mark.parametrize(
    ("method", "value", "topic"),
    [
        ("on_sealed", b"not json", "sealed"),
        ("on_sealed", b'{"schema": "other/v9"}', "sealed"),
        ("on_anchor", b'{"seq": 1}', "anchors"),
        ("on_alert", b"[1, 2]", "alerts"),
        ("on_alert", b"{", "alerts"),
    ],
)
def test_unreadable_records_are_counted_not_raised(method, value, topic):
    feed = Feed(clock_ms=lambda: NOW)
    (update,) = getattr(feed, method)(value)
    assert update.kind == "status"
    errors = feed.status()["errors"]
    assert errors[topic] == 1 and f"audit.{topic}" in errors["last"]


def test_the_snapshot_holds_everything_a_new_page_needs(chain):
    feed = feed_of(*chain.seal(A, [event("s", 1)]))
    feed.on_alert(b'{"kind": "k"}')
    snap = feed.snapshot()
    assert set(snap) == {"blocks", "alerts", "activity", "status"}
    assert len(snap["blocks"]) == 1 and len(snap["alerts"]) == 1
    assert snap["status"]["blocks"] == 1
    orjson.dumps(snap)  # JSON-ready
