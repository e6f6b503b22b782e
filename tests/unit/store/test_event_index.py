"""Look-ups by event id on both databases: schema version 2's chunked index
``entries_by_event_chunk (log_id, idx / EVENT_CHUNK, event_id)`` answers exactly what version
1's ``entries_by_event_id (log_id, event_id)`` answered, across chunks, blocks, logs,
generations and redactions; a version 1 store opens and works as before."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import SCHEMA_VERSION, BlockStore
from auditseal.store.database import EVENT_CHUNK
from auditseal.store.errors import StoreError
from auditseal.store.fsck import check_log
from auditseal.store.model import Record
from auditseal.verifier.origin import generation_origin

from .conftest import Raw

BASE = "auditseal.local/audit.events/0"
OTHER = "auditseal.local/audit.events/1"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
# Three chunks and a bit: the last one is the one appends go to.
SIZE = 2 * EVENT_CHUNK + 700
DUP = "dup-event"  # sealed again by a redelivery: in every chunk and in three logs
DUP_AT = (5, EVENT_CHUNK - 1, EVENT_CHUNK, 2 * EVENT_CHUNK + 1, SIZE - 1)
NO_ID_EVERY = 7  # one entry in seven is not an event (no id)
TO_VERSION_1 = (
    "DROP INDEX entries_by_event_chunk",
    "CREATE INDEX entries_by_event_id ON entries (log_id, event_id) WHERE event_id IS NOT NULL",
    "UPDATE meta SET value = '1' WHERE name = 'schema_version'",
)


OTHER_IDS: dict[int, str | None] = {0: DUP, 1: "ev-1", 2: "other-2"}
GEN1_IDS: dict[int, str | None] = {0: "g1-0", 1: "ev-1", 2: DUP, 3: "ev-3"}
UPGRADE = (  # docs/STORE.md, "Event look-ups": a version 1 store converted by its owner
    "BEGIN",
    "CREATE INDEX entries_by_event_chunk ON entries (log_id, (idx / 16384), event_id)"
    " WHERE event_id IS NOT NULL",
    "DROP INDEX entries_by_event_id",
    "UPDATE meta SET value = '2' WHERE name = 'schema_version'",
    "COMMIT",
)


def event_id(i: int) -> str | None:
    if i in DUP_AT:
        return DUP
    return None if i % NO_ID_EVERY == 3 else f"ev-{i}"


def records(start: int, n: int, ids: dict[int, str | None] | None = None) -> list[Record]:
    """Records ``start`` to ``start + n``; ``ids`` replaces :func:`event_id`'s ids."""
    return [
        Record(i, 1_000 + i, b"src", f"value {i}".encode(), (ids or {}).get(i, event_id(i)))
        for i in range(start, start + n)
    ]


def fill(store: BlockStore) -> dict[str, list[tuple[str, int]]]:
    """Three logs: a long one (blocks of 1000, crossing chunk boundaries inside blocks), a
    short one of another partition, and generation 1 of the first partition; then a redaction
    of an entry with an id. Returns where each event id was sealed, as written: what the old
    index found."""
    writer = LogWriter(store, SIGNER, lambda: 42)
    for start in range(0, SIZE, 1000):
        writer.append(BASE, records(start, min(1000, SIZE - start)))
    writer.append(OTHER, records(0, 3, OTHER_IDS))
    assert store.start_generation(BASE, 0, "partition reset", 600) == 1
    gen1 = generation_origin(BASE, 1)
    writer.append(gen1, records(0, 4, GEN1_IDS))
    store.redact(BASE, EVENT_CHUNK + 9, "dpo", "GDPR-1", redaction_sealer(SIGNER), 700)
    where: dict[str, list[tuple[str, int]]] = {}
    for i in range(SIZE):
        if (entry_id := event_id(i)) is not None:
            where.setdefault(entry_id, []).append((BASE, i))
    for origin, ids in ((OTHER, OTHER_IDS), (gen1, GEN1_IDS)):
        for i, entry_id in ids.items():
            where.setdefault(entry_id, []).append((origin, i))
    return {k: sorted(v) for k, v in where.items()}


def to_version_1(location: Path | str) -> None:
    """What a store made before schema version 2 looks like: the old event-id index."""
    raw = Raw(location)
    try:
        for sql in TO_VERSION_1:
            raw.execute(sql)
    finally:
        raw.close()


def probes(where: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Ids at and around every chunk boundary, in the last chunk, redacted, in several logs."""
    near = [EVENT_CHUNK * c + d for c in (1, 2) for d in (-2, -1, 0, 1, 2)]
    ids = [event_id(i) for i in [*near, 0, 1, 10, SIZE - 2, SIZE - 3, EVENT_CHUNK + 9]]
    return sorted({i for i in ids if i is not None} | {"ev-1", "ev-3", "other-2", DUP})


def test_lookups_find_every_copy_in_every_chunk_log_and_generation(store_location, store):
    where = fill(store)
    gen1 = generation_origin(BASE, 1)
    assert where[DUP] == sorted([(BASE, i) for i in DUP_AT] + [(OTHER, 0), (gen1, 2)])
    for probe in probes(where):
        assert store.find_event(probe) == where[probe], probe
    # A spread of ids over the whole log, whatever chunk they are in (one in 50: every id
    # would take minutes on PostgreSQL).
    for event, places in list(where.items())[::50]:
        assert store.find_event(event, limit=len(places) + 1) == places, event
    # The limit cuts the ordered list; an origin narrows it to one log.
    assert store.find_event(DUP, limit=3) == where[DUP][:3]
    assert store.find_event(DUP, BASE) == [(BASE, i) for i in DUP_AT]
    assert store.find_event(DUP, gen1) == [(gen1, 2)]
    assert store.find_event("ev-1", OTHER) == [(OTHER, 1)]
    # A redacted entry keeps its id (only its value and salt are erased): still found.
    redacted = event_id(EVENT_CHUNK + 9)
    assert (
        redacted is not None and store.entries(BASE, EVENT_CHUNK + 9, EVENT_CHUNK + 10)[0].redacted
    )
    assert store.find_event(redacted) == [(BASE, EVENT_CHUNK + 9)]
    # An id never sealed, near sealed ones and in every chunk's range, is not found.
    for never in (f"ev-{SIZE}", f"ev-{EVENT_CHUNK}x", "ev-", "", f"{DUP} ", DUP.upper()):
        assert store.find_event(never) == [], never
    assert store.find_event("ev-3", BASE) == []  # 3 % 7 == 3: sealed without an id in BASE
    assert store.find_event("ev-3") == [(gen1, 3)]


def test_a_version_1_store_answers_the_same_and_keeps_working(store_location, store):
    where = fill(store)
    expected = {probe: store.find_event(probe) for probe in probes(where)}
    store.close()
    to_version_1(store_location)
    with BlockStore.open(store_location) as old:
        assert old.schema_version == 1
        for probe, places in expected.items():
            assert old.find_event(probe) == places, probe
        # Appends and redactions go on; the old index takes them; fsck replays the logs.
        gen1 = generation_origin(BASE, 1)
        writer = LogWriter(old, SIGNER, lambda: 43)
        writer.append(gen1, records(4, 2, {4: "late", 5: DUP}))
        assert old.find_event("late") == [(gen1, 4)]
        assert old.find_event(DUP, gen1) == [(gen1, 2), (gen1, 5)]
        old.redact(gen1, 4, "dpo", "GDPR-2", redaction_sealer(SIGNER), 800)
        assert old.find_event("late") == [(gen1, 4)]
        assert check_log(old, gen1, [SIGNER.verifier]).redacted == 1
        assert check_log(old, BASE, [SIGNER.verifier]).redacted == 1
        expected = {probe: old.find_event(probe) for probe in [*expected, "late"]}
    raw = Raw(store_location)
    try:
        for sql in UPGRADE:
            raw.execute(sql)
    finally:
        raw.close()
    with BlockStore.open(store_location) as new:
        assert new.schema_version == 2
        for probe, places in expected.items():
            assert new.find_event(probe) == places, probe


@pytest.mark.postgres
def test_postgresql_seeks_the_chunk_index(pg_url, monkeypatch):
    with BlockStore.open(pg_url, create=True) as store:
        fill(store)
        store._db.execute("ANALYZE entries")
        seen: list[str] = []
        execute = store._db.execute

        def traced(sql: str, params=()):  # type: ignore[no-untyped-def]
            seen.append(sql)
            return execute(sql, params)

        monkeypatch.setattr(store._db, "execute", traced)
        gen1 = generation_origin(BASE, 1)
        assert store.find_event("ev-1") == [(BASE, 1), (gen1, 1), (OTHER, 1)]
        monkeypatch.undo()
        (sql,) = [q for q in seen if "chunks" in q]
        plan = "\n".join(
            row[0] for row in store._db.execute(f"EXPLAIN {sql}", ["ev-1", 100]).fetchall()
        )
    assert "Index Scan using entries_by_event_chunk on entries" in plan, plan
    assert "Seq Scan on entries" not in plan and "Hash Join" not in plan, plan


def test_appends_into_the_last_chunk_are_found_at_once(store):
    writer = LogWriter(store, SIGNER, lambda: 42)
    writer.append(BASE, records(0, 3, {0: "a", 1: "b", 2: "a"}))
    assert store.find_event("a") == [(BASE, 0), (BASE, 2)]
    assert store.find_event("c") == []
    writer.append(BASE, records(3, 1, {3: "c"}))
    assert store.find_event("c") == [(BASE, 3)]
    assert check_log(store, BASE, [SIGNER.verifier]).size == 4


def test_a_store_with_no_log_finds_nothing(store):
    assert store.schema_version == SCHEMA_VERSION == 2
    assert store.find_event("anything") == []


def test_an_unknown_schema_version_is_refused_by_name(store_location, store):
    raw = Raw(store_location)
    try:
        raw.execute("UPDATE meta SET value = '3' WHERE name = 'schema_version'")
    finally:
        raw.close()
    with pytest.raises(StoreError, match="schema version 3, this auditseal reads versions 1 and 2"):
        BlockStore.open(store_location)


def test_sqlite_seeks_the_chunk_index_once_per_chunk(tmp_path):
    path = tmp_path / "store.db"
    with BlockStore.open(path, create=True) as store:
        LogWriter(store, SIGNER, lambda: 42).append(BASE, records(0, 10))
        traced: list[str] = []
        conn = store._db._conn  # type: ignore[attr-defined]
        conn.set_trace_callback(traced.append)
        assert store.find_event("ev-1") == [(BASE, 1)]
        conn.set_trace_callback(None)
    (sql,) = [t for t in traced if "entries_by_event_chunk" in t]
    plan = [row[3] for row in sqlite3.connect(path).execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert any(
        "SEARCH e USING INDEX entries_by_event_chunk (log_id=? AND <expr>=? AND event_id=?)" in p
        for p in plan
    ), plan
    assert not any(p.startswith("SCAN e") for p in plan), plan


def test_every_statement_writes_the_chunk_size_of_the_code():
    from auditseal.store import postgres, sqlite

    expression = f"idx / {EVENT_CHUNK}"
    assert expression in sqlite._SCHEMA and f"({expression})" in postgres._TABLES
    assert expression in sqlite.SqliteDatabase.event_chunk_join
    assert expression in postgres.PostgresDatabase.event_chunk_join
    assert all(expression in sql for sql in UPGRADE if "CREATE INDEX" in sql)
