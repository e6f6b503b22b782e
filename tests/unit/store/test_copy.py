"""``store copy``: a store moved block by block between SQLite and PostgreSQL keeps every byte,
checks every block on the way, resumes after an interruption and refuses a destination that
diverged or a source whose block was altered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore, StoredAnchor
from auditseal.store.copy import CopyError, SourceFaultError, copy_store
from auditseal.store.fsck import check_log
from auditseal.store.model import Record
from auditseal.verifier.anchor import AnchorReceipt, build_aggregate, checkpoint_body
from auditseal.verifier.origin import generation_origin, split_generation
from tests.unit.store.conftest import Raw

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
BASE = "auditseal.local/audit.events/0"
OTHER = "auditseal.local/audit.events/1"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PG = pytest.param("postgresql", marks=pytest.mark.postgres)


def location(kind: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Path | str:
    if kind == "sqlite":
        return tmp_path / f"{name}.db"
    url: str = request.getfixturevalue("pg_url")  # one fresh database per test
    return url


@pytest.fixture(
    params=[("sqlite", "sqlite"), ("sqlite", PG), (PG, "sqlite")],
    ids=["sqlite-sqlite", "sqlite-postgresql", "postgresql-sqlite"],
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path | str, Path | str]:
    """Locations of a source and a destination store: SQLite to SQLite, to PostgreSQL, back."""
    src_kind, dst_kind = (p.values[0] if hasattr(p, "values") else p for p in request.param)
    return (
        location(src_kind, request, tmp_path, "source"),
        location(dst_kind, request, tmp_path, "destination"),
    )


def records(start: int, n: int, step: int = 1) -> list[Record]:
    return [
        Record(
            start + i * step,
            1_000 + start + i,
            b"src" if i % 3 else None,
            f"value {start + i}".encode() if i % 4 else None,
            event_id=f"ev-{start + i}" if i % 2 else None,
            flag="not JSON" if i % 5 == 4 else None,
        )
        for i in range(n)
    ]


def anchor(store: BlockStore, seq: int, block: str) -> tuple[StoredAnchor, list[AnchorReceipt]]:
    agg = build_aggregate([checkpoint_body(store.latest_checkpoint(o)) for o in store.logs()])
    a = StoredAnchor(seq, agg.root, "0x" + block * 32, seq, "0x" + block * 32, 31337, CONTRACT, 40)
    pairs = enumerate(zip(agg.origins, agg.bodies, strict=True))
    receipts = [
        AnchorReceipt(seq, o, b, i, agg.size, tuple(agg.proof(i)), agg.root, a.tx_hash, seq,
                      a.block_hash, 31337, CONTRACT)
        for i, (o, b) in pairs
    ]  # fmt: skip
    return a, receipts


def fill(store: BlockStore) -> None:
    """Two partitions, blocks interleaved across logs, offset gaps, flags and event ids, a
    redaction, a second generation, claims, anchors (one orphaned), an intent, outboxes."""
    clock = iter(range(10_000, 20_000, 7))
    writer = LogWriter(store, SIGNER, lambda: next(clock))
    writer.claim(BASE, "host-a/1")
    writer.claim(OTHER, "host-b/1")
    pos = {BASE: 0, OTHER: 0}
    for n, step in [(3, 1), (5, 2), (1, 1), (8, 3), (2, 1)]:
        for origin in (BASE, OTHER):
            writer.append(origin, records(pos[origin] + 1, n, step))
            pos[origin] += 1 + n * step
    store.mark_published(BASE, 0, 77)
    store.mark_published(OTHER, 1, 78)
    store.redact(BASE, 4, "dpo", "GDPR-1", redaction_sealer(SIGNER), 555)
    a, receipts = anchor(store, 1, "11")
    store.record_anchor(a, receipts)
    store.mark_anchor_published(1, 90)
    b, receipts_b = anchor(store, 2, "22")
    bodies = [checkpoint_body(store.latest_checkpoint(o)) for o in store.logs()]
    store.record_anchor_intent(2, b.root, bodies, 95)
    store.record_anchor(b, receipts_b, replaces=[1])
    assert store.start_generation(BASE, 0, "partition reset", 600) == 1
    gen1 = generation_origin(BASE, 1)
    writer.claim(BASE, "host-c/2")
    writer.append(gen1, records(0, 4))
    writer.append(gen1, records(4, 2))
    writer.append(OTHER, records(pos[OTHER] + 1, 3))
    store.claim("auditseal.local/audit.events/7", "host-d/1", 700)  # a claim before any block


def dump(store: BlockStore) -> dict[str, Any]:
    """Everything a store holds, as its API reads it."""
    out: dict[str, Any] = {
        "logs": store.logs(),
        "history": list(store.checkpoint_history()),
        "anchors": store.anchors(),
        "receipts": {a.seq: store.anchor_receipts(a.seq) for a in store.anchors()},
        "intents": store.all_anchor_intents(),
        "anchor_publications": store.anchor_publications(),
        "unpublished_anchors": store.unpublished_anchors(),
    }
    bases = sorted({split_generation(o)[0] for o in store.logs()} | set(store.claimed_bases()))
    for base in bases:
        out[f"{base} generations"] = store.generations(base)
        out[f"{base} claims"] = store.claims(base)
    for origin in store.logs():
        size = store.size(origin)
        out[origin] = {
            "blocks": [(b, store.gaps(origin, b.header.number)) for b in store.blocks(origin)],
            "entries": store.annotated_entries(origin, 0, size),
            "redactions": store.redactions(origin),
            "publications": store.publications(origin),
            "unpublished": store.unpublished(origin),
            "nodes": store.nodes(
                origin,
                [(lv, i) for lv in range(size.bit_length()) for i in range(size >> lv)],
            ),
            "tip": store.tip(origin),
        }
    return out


def checks(store: BlockStore) -> list[Any]:
    return [check_log(store, o, [SIGNER.verifier]) for o in store.logs()]


@pytest.fixture
def source(pair):
    with BlockStore.open(pair[0], create=True) as s:
        fill(s)
        yield s


@pytest.fixture
def destination(pair):
    with BlockStore.open(pair[1], create=True) as d:
        yield d


def test_a_copy_holds_every_byte_and_checks_the_same(source, destination):
    seen: list[tuple[str, int, int]] = []
    result = copy_store(source, destination, lambda *p: seen.append(p))
    assert result.complete
    assert dump(destination) == dump(source)
    assert checks(destination) == checks(source)
    assert checks(source)[0].redacted == 1
    assert {c.origin: (c.blocks, c.copied_blocks) for c in result.logs} == {
        BASE: (6, 6),
        OTHER: (6, 6),
        generation_origin(BASE, 1): (2, 2),
    }
    assert result.added == {
        "publications": 2,
        "redactions": 1,  # the index row; the entry came erased, its record is a leaf
        "generations": 1,
        "claims": 4,
        "anchors": 2,
        "orphaned": 0,
        "anchor_intents": 1,
        "anchor_publications": 1,
    }
    assert seen[0] == (BASE, 1, 3) and len(seen) == 14
    again = copy_store(source, destination)  # nothing left to do
    assert again.complete and all(c.copied_blocks == 0 for c in again.logs)
    assert not any(again.added.values())


def test_an_interrupted_copy_resumes(source, destination, pair):
    """Stopped after 5 blocks, and again by a failure between two blocks (what a kill between
    transactions leaves), then finished: the same store as a copy in one go."""
    partial = copy_store(source, destination, max_blocks=5)
    assert not partial.complete and sum(c.copied_blocks for c in partial.logs) == 5
    assert destination.anchors() == [] and destination.generation(BASE) == 0

    written: list[str] = []

    def stop(origin: str, blocks: int, entries: int) -> None:
        written.append(origin)
        if len(written) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(source, destination, stop)
    with BlockStore.open(pair[1]) as reopened:
        result = copy_store(source, reopened)
        assert result.complete
        assert sum(c.copied_blocks for c in result.logs) == 14 - 5 - 3
        assert dump(reopened) == dump(source)
        assert checks(reopened) == checks(source)


def test_a_resumed_copy_catches_up_with_the_source(source, destination):
    """The source moves on between two runs: new blocks, a redaction of an entry already
    copied, an orphaned anchor, a new generation."""
    copy_store(source, destination)
    writer = LogWriter(source, SIGNER, lambda: 30_000)
    writer.append(OTHER, records(source.tip(OTHER).next_position, 2))
    source.redact(OTHER, 2, "dpo", "GDPR-2", redaction_sealer(SIGNER), 31_000)
    source.mark_anchor_orphaned(2)
    assert source.start_generation(BASE, 1, "reset again", 32_000) == 2
    result = copy_store(source, destination)
    assert result.added["redactions"] == 1 and result.added["orphaned"] == 1
    assert result.added["generations"] == 1
    assert destination.entries(OTHER, 2, 3)[0].redacted
    assert dump(destination) == dump(source)
    assert checks(destination) == checks(source)


def test_a_diverged_destination_is_refused(source, destination):
    LogWriter(destination, SIGNER, lambda: 1).append(BASE, records(0, 3))  # not the source's
    with pytest.raises(CopyError, match=rf"diverged.*log '{BASE}', block 0"):
        copy_store(source, destination)
    assert destination.size(BASE) == 3 and destination.logs() == [BASE]


def test_a_destination_ahead_or_with_other_logs_is_refused(source, destination):
    copy_store(source, destination)
    LogWriter(destination, SIGNER, lambda: 1).append(OTHER, records(10_000, 1))
    with pytest.raises(CopyError, match=rf"ahead of the source: log '{OTHER}' holds block 6"):
        copy_store(source, destination)
    LogWriter(destination, SIGNER, lambda: 1).append("elsewhere/0", records(0, 1))
    with pytest.raises(CopyError, match="holds logs the source does not: elsewhere/0"):
        copy_store(source, destination)


def test_a_destination_with_other_anchors_is_refused(source, destination):
    copy_store(source, destination, max_blocks=13)  # blocks, not yet the anchors
    a, receipts = anchor(destination, 1, "99")
    destination.record_anchor(a, receipts)
    with pytest.raises(CopyError, match=r"diverged.*anchor 1 differs"):
        copy_store(source, destination)


@pytest.mark.parametrize("table", ["entries", "nodes"])
def test_a_source_altered_behind_the_api_is_refused(source, destination, pair, table):
    """An owner of the source database changes a value (or a tree node) of block 3 of OTHER:
    the copy stops there, naming it; the blocks committed before it are in, none after."""
    raw = Raw(pair[0])
    try:
        if table == "entries":
            raw.drop_trigger("entries", "entries_only_redact")
            sql = f"UPDATE entries SET value = {raw.blob(b'forged'.hex())}"
            where = "idx = 10"  # in OTHER's block 3, leaves [9, 17)
        else:
            raw.drop_trigger("nodes", "nodes_no_update")
            sql = f"UPDATE nodes SET hash = {raw.blob('00' * 32)}"
            where = "level = 1 AND idx = 5"  # over leaves 10 and 11: made by block 3
        log_id = f"(SELECT id FROM logs WHERE origin = '{OTHER}')"
        raw.execute(f"{sql} WHERE {where} AND log_id = {log_id}")
    finally:
        raw.close()
    with pytest.raises(SourceFaultError, match=rf"log '{OTHER}', block 3 fails its check") as e:
        copy_store(source, destination)
    assert e.value.exit_code == 1
    assert destination.last_block(OTHER).header.number == 2
    assert destination.last_block(BASE).header.number == 3  # committed before OTHER's block 3
    assert destination.anchors() == []


def test_the_same_store_is_refused(tmp_path):
    BlockStore.open(tmp_path / "a.db", create=True).close()
    a, b = BlockStore.open(tmp_path / "a.db"), BlockStore.open(tmp_path / "." / "a.db")
    with a, b, pytest.raises(CopyError, match="same store"):
        copy_store(a, b)
