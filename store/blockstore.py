"""The block store: append-only, the source of truth, on SQLite (one file in WAL mode, the
embedded default) or PostgreSQL (several hosts); see :mod:`auditseal.store.database`.

Tables: ``logs``; ``entries`` (one row per leaf: the record's fields, its salt and commitment);
``nodes`` (every complete subtree ``(level, index)`` of every log, leaves at level 0, so any
inclusion or consistency proof takes O(log n) point reads); ``blocks`` (header, its hash, the
signed checkpoint at its end); ``redactions`` (who erased which value, when, why: an index
for look-ups; the evidence is the redaction record in the log itself, see :meth:`redact`).

Append-only is enforced twice: the API has no update or delete, and triggers in the schema make
the database refuse them (an entry's value and salt may only be set to NULL, by :meth:`redact`).

A *log record* (a leaf the log writes about itself, today a redaction record) is an ``entries``
row whose ``position`` column is ``-1 - idx``: negative, so it never collides with a Kafka
offset under ``UNIQUE (log_id, position)`` and no look-up by offset finds it. Read back, its
position is its leaf index (:mod:`auditseal.verifier.leaf`). Writable SQLite handles run with
``secure_delete``, so an erased value is overwritten, not only unlinked.

``append_block`` is one transaction: entries, nodes and the block header with its checkpoint
commit together or not at all, so a process killed at any moment leaves no partial block.
With SQLite's ``synchronous=FULL`` (PostgreSQL's ``fsync``) a returned append survives power
loss too.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from auditseal.store.database import EVENT_CHUNK, Database, open_database
from auditseal.store.errors import (
    ClaimLostError,
    ConflictError,
    InputError,
    NotFoundError,
    StoreError,
)
from auditseal.store.model import BuiltBlock, LogTip, Record, RedactionSealer
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.block import GENESIS_HASH, BlockHeader, SealedBlock
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.leaf import Entry
from auditseal.verifier.merkle import EMPTY_ROOT, NodeID, consistency_plan, inclusion_plan
from auditseal.verifier.origin import generation_origin, split_generation
from auditseal.verifier.redaction import Redaction

__all__ = ["BlockStore", "ConsistencyProof", "InclusionProof", "StoredAnchor", "StoredBlock"]

SCHEMA_VERSION = 2
"""The layout a new store gets. Version 1 differs only in its event-id index,
``entries_by_event_id (log_id, event_id)``; such stores open and work as before (docs/STORE.md,
"Event look-ups")."""
_READABLE_VERSIONS = ("1", "2")
DEFAULT_STORE = Path(".auditseal") / "store.db"
"""Where every command looks for the store unless told (relative to the working directory)."""
_LEAD_NAME = re.compile(r"[a-z0-9_-]{1,64}")


@dataclass(frozen=True)
class StoredBlock:
    header: BlockHeader
    hash: bytes
    checkpoint: str


@dataclass(frozen=True)
class InclusionProof:
    origin: str
    index: int
    size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    origin: str
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class StoredAnchor:
    """One anchor transaction as the store records it (see the ``anchors`` table)."""

    seq: int
    root: bytes
    tx_hash: str
    block_number: int
    block_hash: str
    chain_id: int
    contract: str
    anchored_at_ms: int
    status: str = "confirmed"
    replaced_by: int | None = None


class BlockStore:
    """A handle on one store: a SQLite file or a PostgreSQL database. Not thread-safe: open
    one per thread or process."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.location = db.location
        """Where the store is, for messages: a path, or a URL without its password."""
        self.path = db.path
        """The SQLite file; None for PostgreSQL."""
        self._log_ids: dict[str, int] = {}
        self._tables: set[str] = set()  # optional tables seen to exist (never dropped)

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls, location: str | Path, *, create: bool = False, readonly: bool = False
    ) -> BlockStore:
        """Open the store at ``location`` (a path, or a ``postgresql://`` URL); with
        ``create``, make it if missing.

        Raises StoreError if it is missing (without ``create``) or is not a block store.
        """
        db = open_database(location, create=create, readonly=readonly)
        store = cls(db)
        try:
            store._check_or_init_schema(create and not readonly)
        except db.error as exc:
            db.close()
            raise StoreError(f"{db.location}: not a block store: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return store

    def _check_or_init_schema(self, create: bool) -> None:
        if not self._db.has_table("meta"):
            if not create:
                raise StoreError(f"{self.location}: not an auditseal block store")
            with self._transaction():
                self._db.lock("schema")
                # Look again under the lock: another worker starting at the same moment may have
                # created the store since (and a database it left not empty is its store).
                if not self._db.has_table("meta"):
                    if not self._db.is_empty():
                        raise StoreError(f"{self.location}: not an auditseal block store")
                    self._db.create_schema(SCHEMA_VERSION)
        row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        if row is None or row[0] not in _READABLE_VERSIONS:
            raise StoreError(
                f"{self.location}: schema version {row[0] if row else 'unknown'}, "
                f"this auditseal reads versions {' and '.join(_READABLE_VERSIONS)}"
            )
        self.schema_version = int(row[0])
        """The store's layout: 1 with the old event-id index, else :data:`SCHEMA_VERSION`."""

    def close(self) -> None:
        self._db.close()

    # --- leadership -------------------------------------------------------------------------
    # One process at a time may lead a named job on a store (the active anchor service of a
    # standby pair): a lock held for the process's lifetime, never a row, so a dead holder
    # frees it without anyone clearing a lease (SQLite: flock on a sidecar file; PostgreSQL:
    # a session-level advisory lock on a connection of its own).

    def try_lead(self, name: str) -> bool:
        """Take the lead ``name`` without waiting; True if this handle now holds it or
        already did (and still does: a PostgreSQL session that was lost no longer holds it)."""
        if not _LEAD_NAME.fullmatch(name):
            raise InputError(f"lead name {name!r}: want lowercase letters, digits, '-' or '_'")
        return self._db.try_lead(name)

    def release_lead(self, name: str) -> None:
        """Give up the lead ``name`` if held (closing the store does too)."""
        self._db.release_lead(name)

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _has_table(self, name: str) -> bool:
        """Whether an optional table (claims, generations, anchors) exists, asked of the
        database until it does: appends check two of them per block."""
        if name not in self._tables and self._db.has_table(name):
            self._tables.add(name)
        return name in self._tables

    def _transaction(self) -> AbstractContextManager[None]:
        return self._db.transaction()

    def roles(self) -> list[str]:
        """The database roles that grant access to the store (PostgreSQL; docs/DEPLOY.md)."""
        return self._db.roles()

    @property
    def database_error(self) -> type[Exception]:
        """The root of the database driver's errors: after one, reopen the store."""
        return self._db.error

    def snapshot(self) -> AbstractContextManager[Database]:
        """A database handle whose reads all see one committed state (for long scans that a
        sealer appending meanwhile must not skew)."""
        return self._db.snapshot()

    # --- logs and tips ----------------------------------------------------------------------

    def logs(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT origin FROM logs ORDER BY origin")]

    def _log_id(self, origin: str) -> int:
        log_id = self._log_ids.get(origin)
        if log_id is None:
            row = self._db.execute("SELECT id FROM logs WHERE origin = ?", (origin,)).fetchone()
            if row is None:
                raise NotFoundError(f"{self.location}: no log {origin!r}")
            log_id = self._log_ids[origin] = row[0]
        return log_id

    def has_log(self, origin: str) -> bool:
        try:
            self._log_id(origin)
        except NotFoundError:
            return False
        return True

    def size(self, origin: str) -> int:
        row = self._db.execute(
            "SELECT max(end_idx) FROM blocks WHERE log_id = ?", (self._log_id(origin),)
        ).fetchone()
        return row[0] or 0

    def tip(self, origin: str) -> LogTip:
        """The state to append to; an unknown log has an empty tip. O(log n) reads."""
        if not self.has_log(origin):
            return LogTip(origin, CompactRange(), None, -1)
        log_id = self._log_id(origin)
        last = self.last_block(origin)
        if last is None:
            return LogTip(origin, CompactRange(), None, -1)
        size = last.header.end
        hashes = self._nodes(log_id, CompactRange.node_ids(size))
        # The last Kafka offset sealed (log records have negative position columns): one seek
        # of the (log_id, position) index.
        (last_position,) = self._db.execute(
            "SELECT max(position) FROM entries WHERE log_id = ?", (log_id,)
        ).fetchone()
        if last_position is None or last_position < 0:
            last_position = -1
        return LogTip(origin, CompactRange(size, hashes), last.header, last_position)

    # --- appending --------------------------------------------------------------------------

    def append_block(self, built: BuiltBlock, epoch: int | None = None) -> None:
        """Commit a block atomically; it MUST extend the log's current tip.

        With ``epoch`` (from :meth:`claim`), the append is also refused if another writer
        claimed the partition's logs since. Raises ConflictError if the log moved on since the
        tip the block was built from, or if a record's position is already sealed in this log
        (redelivery); ClaimLostError if the claim was replaced. Nothing is written then.
        """
        with self._transaction():
            self._insert_block(built, epoch)

    def _insert_block(self, built: BuiltBlock, epoch: int | None = None) -> None:
        """:meth:`append_block` inside the caller's transaction (the tip compare-and-swap)."""
        block = built.block
        header = block.header
        origin = header.origin
        base, generation = split_generation(origin)
        self._db.lock(base)  # one appender per partition's logs at a time
        if epoch is not None:
            claim = self._claim(base)
            if claim is None or claim[0] != epoch:
                holder = f"epoch {claim[0]} by {claim[1]}" if claim else "no claim"
                raise ClaimLostError(
                    f"{origin}: this writer's claim (epoch {epoch}) was replaced: {holder}"
                )
        self._db.execute("INSERT INTO logs (origin) VALUES (?) ON CONFLICT DO NOTHING", (origin,))
        log_id = self._log_id(origin)
        row = self._db.execute(
            "SELECT end_idx, hash FROM blocks WHERE log_id = ? ORDER BY number DESC LIMIT 1",
            (log_id,),
        ).fetchone()
        end, tip_hash = (row[0], row[1]) if row else (0, GENESIS_HASH)
        current = self._generation(base)
        if generation < current and not all(e.log_record for e in block.entries):
            # A worker that missed the reset must not extend the closed log with records of the
            # new topic; it reloads the generation and seals them there. A closed log still
            # takes its own log records (a redaction of one of its entries).
            raise ConflictError(
                f"{origin}: closed; generation {current} ({generation_origin(base, current)})"
                " continues it"
            )
        if header.start != end or header.prev_hash != tip_hash:
            raise ConflictError(
                f"{origin}: block {header.number} starts at {header.start} after "
                f"{header.prev_hash.hex()[:16]}, but the log's tip is {end} after "
                f"{tip_hash.hex()[:16]}"
            )
        try:
            self._db.executemany(
                "INSERT INTO entries (log_id, idx, position, timestamp_ms, key, value, salt,"
                " commitment, value_null, event_id, flag) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        log_id,
                        header.start + i,
                        -1 - (header.start + i) if e.log_record else e.position,
                        e.timestamp_ms,
                        e.key,
                        e.value,
                        e.salt,
                        e.value_commitment,
                        int(e.value_null),
                        r.event_id,
                        r.flag,
                    )
                    for i, (e, r) in enumerate(zip(block.entries, built.records, strict=True))
                ),
            )
        except self._db.integrity_error as exc:
            raise ConflictError(
                f"{origin}: block {header.number} repeats a position already sealed ({exc})"
            ) from exc
        self._db.executemany(
            "INSERT INTO nodes (log_id, level, idx, hash) VALUES (?,?,?,?)",
            ((log_id, lv, idx, h) for lv, idx, h in built.nodes),
        )
        self._db.execute(
            "INSERT INTO blocks (log_id, number, start_idx, end_idx, header, hash, checkpoint,"
            " sealed_at_ms, gaps) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                log_id,
                header.number,
                header.start,
                header.end,
                header.to_text(),
                header.hash(),
                block.checkpoint,
                header.sealed_at_ms,
                json.dumps(built.gaps) if built.gaps else None,
            ),
        )

    def redact(
        self,
        origin: str,
        index: int,
        actor: str,
        reason: str,
        seal: RedactionSealer,
        now_ms: int | None = None,
    ) -> BuiltBlock:
        """Erase entry ``index``'s value and salt and seal the redaction record that explains it.

        One transaction, in this order: (1) read the log's tip under the write lock; (2) null
        the entry's value and salt (its leaf, and every proof, stay valid); (3) append the block
        ``seal`` builds and signs, holding the redaction record (who, why, when, which leaf) as
        the next leaf, with the tip compare-and-swap of :meth:`append_block`; (4) index it in
        ``redactions``. A crash anywhere before the commit leaves neither. After the commit,
        (5) the WAL is checkpointed and truncated so the erased bytes leave the store files
        (``secure_delete`` zeroed them in the database pages).

        Returns the block holding the record. Raises InputError (no actor or reason, or the leaf
        is a log record), NotFoundError (no such entry), ConflictError (already redacted),
        StoreError if the WAL could not be purged (the redaction is committed then; run
        :meth:`purge_wal` again once readers are gone).
        """
        when = now_ms if now_ms is not None else _now_ms()
        log_id = self._log_id(origin)
        with self._transaction():
            self._db.lock(split_generation(origin)[0])
            tip = self.tip(origin)  # 1: under the log's lock, nobody appends meanwhile
            if not 0 <= index < tip.size:
                raise NotFoundError(f"{origin}: no entry {index} (the log holds {tip.size})")
            (entry,) = self.entries(origin, index, index + 1)
            if entry.log_record:
                raise InputError(f"{origin}: leaf {index} is a log record; it cannot be redacted")
            if entry.redacted:
                raise ConflictError(f"{origin}: entry {index} is already redacted")
            try:
                redaction = Redaction(index, entry.leaf_hash(), actor, reason, when)
            except ValueError as exc:
                raise InputError(f"redaction: {exc}") from exc
            self._db.erase_entry(log_id, index)  # 2
            built = seal(tip, redaction, when)
            self._insert_block(built)  # 3
            try:
                self._db.execute(  # 4
                    "INSERT INTO redactions VALUES (?,?,?,?,?)",
                    (log_id, index, when, actor, reason),
                )
            except self._db.integrity_error as exc:
                raise ConflictError(f"{origin}: entry {index} is already redacted") from exc
        self.purge_wal()  # 5
        return built

    def append_log_record(self, origin: str, seal: Callable[[LogTip], BuiltBlock]) -> BuiltBlock:
        """Append the block ``seal`` builds on the log's tip, read under the log's write lock,
        in one transaction (a key rotation record, :mod:`auditseal.verifier.rotation`): nobody
        appends between the read and the write. ``seal`` may raise to refuse. NotFoundError if
        there is no such log."""
        self._log_id(origin)
        with self._transaction():
            self._db.lock(split_generation(origin)[0])
            built = seal(self.tip(origin))
            self._insert_block(built)
        return built

    def purge_wal(self) -> None:
        """Make erased bytes leave the store's files (for SQLite: checkpoint the WAL into the
        database file and truncate it). Raises StoreError if a reader still holds them."""
        self._db.purge_erased()

    def redactions(self, origin: str) -> list[tuple[int, int, str, str]]:
        """``(index, redacted_at_ms, actor, reason)`` of every redaction of ``origin``."""
        rows = self._db.execute(
            "SELECT idx, redacted_at_ms, actor, reason FROM redactions WHERE log_id = ?"
            " ORDER BY idx",
            (self._log_id(origin),),
        ).fetchall()
        return [(i, t, a, r) for i, t, a, r in rows]

    def import_redaction(
        self, origin: str, index: int, redacted_at_ms: int, actor: str, reason: str
    ) -> bool:
        """Copy a redaction from another store (``auditseal store copy``): erase entry
        ``index`` if it still holds its value and index the redaction as recorded there.

        Its redaction record is a leaf, copied with its block; this only repeats the erasure
        for an entry copied before it was redacted. Idempotent. Returns whether bytes were
        erased (then call :meth:`purge_wal`). Raises NotFoundError (no such entry), InputError
        (a log record).
        """
        log_id = self._log_id(origin)
        with self._transaction():
            self._db.lock(split_generation(origin)[0])
            row = self._db.execute(
                "SELECT position, salt FROM entries WHERE log_id = ? AND idx = ?", (log_id, index)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"{origin}: no entry {index} to redact")
            if row[0] < 0:
                raise InputError(f"{origin}: leaf {index} is a log record; it cannot be redacted")
            erase = row[1] is not None
            if erase:
                self._db.erase_entry(log_id, index)
            self._db.execute(
                "INSERT INTO redactions VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                (log_id, index, redacted_at_ms, actor, reason),
            )
        return erase

    # --- claims -----------------------------------------------------------------------------
    # A worker assigned a partition claims its logs: the claim's epoch is one more than the
    # last. Its appends carry the epoch and are refused once a later claim exists, so a worker
    # paused past its session (its partitions given to another) can never append after it
    # wakes up. Claims are rows, never updated: who owned which partition when is kept.

    def claim(self, base: str, writer: str, now_ms: int | None = None) -> int:
        """Claim the logs of partition ``base`` for ``writer``; returns the new epoch."""
        if not writer:
            raise InputError("a claim needs the writer's name")
        self._db.ensure_tables("claims")
        with self._transaction():
            self._db.lock(base)
            current = self._claim(base)
            epoch = (current[0] if current else 0) + 1
            self._db.execute(
                "INSERT INTO log_claims VALUES (?,?,?,?)",
                (base, epoch, writer, now_ms if now_ms is not None else _now_ms()),
            )
        return epoch

    def claims(self, base: str) -> list[tuple[int, str, int]]:
        """``(epoch, writer, claimed_at_ms)`` of every claim of ``base``, oldest first."""
        if not self._has_table("log_claims"):
            return []
        rows = self._db.execute(
            "SELECT epoch, writer, claimed_at_ms FROM log_claims WHERE base = ? ORDER BY epoch",
            (base,),
        ).fetchall()
        return [(e, w, t) for e, w, t in rows]

    def claimed_bases(self) -> list[str]:
        """Every partition base with at least one claim (a claim may precede any block)."""
        if not self._has_table("log_claims"):
            return []
        return [
            r[0] for r in self._db.execute("SELECT DISTINCT base FROM log_claims ORDER BY base")
        ]

    def _claim(self, base: str) -> tuple[int, str] | None:
        if not self._has_table("log_claims"):
            return None
        row = self._db.execute(
            "SELECT epoch, writer FROM log_claims WHERE base = ? ORDER BY epoch DESC LIMIT 1",
            (base,),
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    # --- log generations --------------------------------------------------------------------
    # A reset Kafka partition is sealed as a new log (FORMAT.md §1.1). The store, not Kafka,
    # says which generation of a base origin is current, so a restarted worker continues it.

    def _generation(self, base: str) -> int:
        if not self._has_table("log_generations"):
            return 0
        (top,) = self._db.execute(
            "SELECT max(generation) FROM log_generations WHERE base = ?", (base,)
        ).fetchone()
        return int(top or 0)

    def generation(self, base: str) -> int:
        """The current generation of the logs named ``base`` (0 until a reset)."""
        return self._generation(base)

    def generations(self, base: str) -> list[tuple[int, str, int, str]]:
        """``(generation, origin, started_at_ms, reason)`` of every generation >= 1 of ``base``."""
        if self._generation(base) == 0:
            return []
        rows = self._db.execute(
            "SELECT generation, origin, started_at_ms, reason FROM log_generations"
            " WHERE base = ? ORDER BY generation",
            (base,),
        ).fetchall()
        return [(g, o, t, r) for g, o, t, r in rows]

    def start_generation(
        self, base: str, after: int, reason: str, now_ms: int | None = None
    ) -> int:
        """Close generation ``after`` of ``base`` and start the next; returns the current one.

        Compare-and-swap: if another worker already moved past ``after``, nothing is written
        and the generation it started is returned, so two workers seeing one reset make one
        new generation, not two.
        """
        if not reason:
            raise InputError("a new log generation needs a reason")
        with self._transaction():
            self._db.ensure_tables("generations")
            self._db.lock(base)
            current = self._generation(base)
            if current != after:
                return current
            self._db.execute(
                "INSERT INTO log_generations VALUES (?,?,?,?,?)",
                (
                    base,
                    after + 1,
                    generation_origin(base, after + 1),
                    now_ms if now_ms is not None else _now_ms(),
                    reason,
                ),
            )
            return after + 1

    def entry_at(self, origin: str, position: int) -> Entry | None:
        """The entry sealed from Kafka offset ``position``, None if the log holds none there."""
        if not self.has_log(origin):
            return None
        row = self._db.execute(
            "SELECT position, timestamp_ms, key, value, salt, commitment, value_null FROM entries"
            " WHERE log_id = ? AND position = ?",
            (self._log_id(origin), position),
        ).fetchone()
        if row is None:
            return None
        p, t, k, v, salt, c, vn = row
        return Entry(origin, p, t, k, v, salt, c, bool(vn))

    # --- the outbox: blocks stored but not yet published to the sealed stream ---------------

    def unpublished(self, origin: str) -> list[int]:
        """Numbers of the log's blocks not yet marked published, in order."""
        return [
            r[0]
            for r in self._db.execute(
                "SELECT b.number FROM blocks b LEFT JOIN publications p"
                " ON p.log_id = b.log_id AND p.number = b.number"
                " WHERE b.log_id = ? AND p.number IS NULL ORDER BY b.number",
                (self._log_id(origin),),
            )
        ]

    def mark_published(self, origin: str, number: int, now_ms: int | None = None) -> None:
        """Record that block ``number`` reached the sealed stream (idempotent)."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO publications VALUES (?,?,?) ON CONFLICT DO NOTHING",
                (self._log_id(origin), number, now_ms if now_ms is not None else _now_ms()),
            )

    def publications(self, origin: str) -> list[tuple[int, int]]:
        """``(block number, published_at_ms)`` of the log's blocks marked published."""
        rows = self._db.execute(
            "SELECT number, published_at_ms FROM publications WHERE log_id = ? ORDER BY number",
            (self._log_id(origin),),
        ).fetchall()
        return [(n, t) for n, t in rows]

    def import_publications(self, origin: str, rows: Sequence[tuple[int, int]]) -> None:
        """Mark blocks published as another store records them, ``(number, published_at_ms)``,
        in one transaction (``auditseal store copy``); idempotent."""
        log_id = self._log_id(origin)
        with self._transaction():
            self._db.executemany(
                "INSERT INTO publications VALUES (?,?,?) ON CONFLICT DO NOTHING",
                ((log_id, n, t) for n, t in rows),
            )

    def records(self, origin: str, start: int, end: int) -> list[Record]:
        """The input records of leaves ``[start, end)``, with their triage (to republish)."""
        rows = self._db.execute(
            "SELECT CASE WHEN position < 0 THEN idx ELSE position END, timestamp_ms, key, value,"
            " event_id, flag FROM entries WHERE log_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (self._log_id(origin), start, end),
        ).fetchall()
        return [Record(*row) for row in rows]

    def event_ids(
        self, origin: str, start: int, end: int
    ) -> dict[int, tuple[str | None, str | None]]:
        """``{position: (event_id, flag)}`` of the leaves ``[start, end)`` held: what the sealer
        read from each record, without the values."""
        rows = self._db.execute(
            "SELECT position, event_id, flag FROM entries"
            " WHERE log_id = ? AND idx >= ? AND idx < ?",
            (self._log_id(origin), start, end),
        )
        return {position: (event_id, flag) for position, event_id, flag in rows}

    def gaps(self, origin: str, number: int) -> list[tuple[int, int]]:
        """Kafka offset ranges ``[from, to)`` skipped before or inside block ``number``."""
        row = self._db.execute(
            "SELECT gaps FROM blocks WHERE log_id = ? AND number = ?",
            (self._log_id(origin), number),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"{origin}: no block {number}")
        return [(a, b) for a, b in json.loads(row[0])] if row[0] else []

    # --- reading blocks and entries ---------------------------------------------------------

    def _block_rows(self, sql: str, args: Sequence[object]) -> Iterator[StoredBlock]:
        for header, h, checkpoint in self._db.execute(sql, args):
            yield StoredBlock(BlockHeader.from_text(header), h, checkpoint)

    def last_block(self, origin: str) -> StoredBlock | None:
        rows = self._block_rows(
            "SELECT header, hash, checkpoint FROM blocks WHERE log_id = ?"
            " ORDER BY number DESC LIMIT 1",
            (self._log_id(origin),),
        )
        return next(rows, None)

    def block(self, origin: str, number: int) -> StoredBlock:
        rows = self._block_rows(
            "SELECT header, hash, checkpoint FROM blocks WHERE log_id = ? AND number = ?",
            (self._log_id(origin), number),
        )
        found = next(rows, None)
        if found is None:
            raise NotFoundError(f"{origin}: no block {number}")
        return found

    def blocks(self, origin: str, first: int = 0) -> Iterator[StoredBlock]:
        return self._block_rows(
            "SELECT header, hash, checkpoint FROM blocks WHERE log_id = ? AND number >= ?"
            " ORDER BY number",
            (self._log_id(origin), first),
        )

    def block_at(self, origin: str, index: int) -> StoredBlock:
        """The block holding leaf ``index`` (the first whose end is past it)."""
        rows = self._block_rows(
            "SELECT header, hash, checkpoint FROM blocks WHERE log_id = ? AND end_idx > ?"
            " ORDER BY end_idx LIMIT 1",
            (self._log_id(origin), index),
        )
        found = next(rows, None)
        if found is None or found.header.start > index:
            raise NotFoundError(f"{origin}: no block holds leaf {index}")
        return found

    def block_ending_at(self, origin: str, size: int) -> StoredBlock | None:
        """The block whose checkpoint is at tree size ``size``, if one is stored."""
        rows = self._block_rows(
            "SELECT header, hash, checkpoint FROM blocks WHERE log_id = ? AND end_idx = ?",
            (self._log_id(origin), size),
        )
        return next(rows, None)

    def blocks_by_commit(self) -> Iterator[tuple[str, StoredBlock, list[tuple[int, int]]]]:
        """``(origin, block, offset gaps)`` of every block in the order the store committed
        them, across logs, read a few hundred rows at a time (on PostgreSQL a server-side
        cursor: call it on the store of a :meth:`snapshot`, ``BlockStore(db)``)."""
        cursor = self._db.scan(
            "SELECT l.origin, b.header, b.hash, b.checkpoint, b.gaps FROM blocks b"
            f" JOIN logs l ON l.id = b.log_id ORDER BY {self._db.insertion_order}",
            (),
            256,
        )
        while rows := cursor.fetchmany(256):
            for origin, header, h, checkpoint, gaps in rows:
                yield (
                    origin,
                    StoredBlock(BlockHeader.from_text(header), h, checkpoint),
                    [(a, b) for a, b in json.loads(gaps)] if gaps else [],
                )

    def latest_checkpoint(self, origin: str) -> str:
        last = self.last_block(origin)
        if last is None:
            raise NotFoundError(f"{origin}: no checkpoint yet")
        return last.checkpoint

    def check_entry_types(self, origin: str, start: int = 0, end: int = 2**63 - 1) -> None:
        """Raise StoreError naming the log, entry and column of the first entry in
        ``[start, end)`` whose column holds another SQLite type than the sealer writes (SQLite
        keeps whatever is written: a TEXT or INTEGER value put in by hand would otherwise
        reach the hashing as a str or int). One indexed range scan, in SQL."""
        odd = self._db.odd_entry(self._log_id(origin), start, end)
        if odd is not None:
            idx, column, what = odd
            raise StoreError(
                f"{self.location}: log {origin!r}, entry {idx}: column {column} holds {what}"
            )

    def entries(self, origin: str, start: int, end: int) -> list[Entry]:
        """Entries with leaf indices in ``[start, end)``, in order."""
        self.check_entry_types(origin, start, end)
        rows = self._db.execute(
            "SELECT idx, position, timestamp_ms, key, value, salt, commitment, value_null"
            " FROM entries WHERE log_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (self._log_id(origin), start, end),
        ).fetchall()
        if len(rows) != max(0, end - start):
            raise NotFoundError(f"{origin}: entries [{start}, {end}) are not all in the store")
        return [_entry(origin, *row) for row in rows]

    def log_records(self, origin: str) -> list[Entry]:
        """Every log record of ``origin`` (redaction records), in leaf order; one index range
        scan (their position column is negative)."""
        rows = self._db.execute(
            "SELECT idx, position, timestamp_ms, key, value, salt, commitment, value_null"
            " FROM entries WHERE log_id = ? AND position < 0 ORDER BY idx",
            (self._log_id(origin),),
        ).fetchall()
        return [_entry(origin, *row) for row in rows]

    def sealed_block(self, origin: str, number: int) -> SealedBlock:
        stored = self.block(origin, number)
        h = stored.header
        return SealedBlock(h, stored.checkpoint, tuple(self.entries(origin, h.start, h.end)))

    # --- tree nodes and proofs --------------------------------------------------------------

    def _fetch(self, log_id: int, ids: Sequence[NodeID]) -> dict[NodeID, bytes]:
        """The hashes of ``ids`` in one query; raises StoreError if one is missing."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        got = {(level, idx): h for level, idx, h in self._db.fetch_nodes(log_id, wanted)}
        if len(got) != len(wanted):
            missing = next(node for node in wanted if node not in got)
            raise StoreError(f"{self.location}: tree node {missing} is missing")
        return got

    def _nodes(self, log_id: int, ids: Sequence[NodeID]) -> list[bytes]:
        got = self._fetch(log_id, ids)
        return [got[node] for node in ids]

    def node(self, origin: str, level: int, index: int) -> bytes:
        """The stored hash of complete subtree ``(level, index)``."""
        return self._nodes(self._log_id(origin), [(level, index)])[0]

    def nodes(self, origin: str, ids: Sequence[NodeID]) -> list[bytes]:
        """The stored hashes of ``ids``, in order, in one query; StoreError if one is missing."""
        return self._nodes(self._log_id(origin), ids)

    def _check_size(self, origin: str, size: int | None) -> int:
        current = self.size(origin)
        if size is None:
            return current
        if not 0 <= size <= current:
            raise InputError(f"{origin}: size {size} is out of range (log size {current})")
        return size

    @staticmethod
    def _root(got: dict[NodeID, bytes], size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        return CompactRange(size, [got[node] for node in CompactRange.node_ids(size)]).root()

    def root(self, origin: str, size: int | None = None) -> bytes:
        """The tree root at any ``size`` up to the log's size, from O(log n) nodes."""
        size = self._check_size(origin, size)
        got = self._fetch(self._log_id(origin), CompactRange.node_ids(size))
        return self._root(got, size)

    def inclusion_proof(self, origin: str, index: int, size: int | None = None) -> InclusionProof:
        """Inclusion of leaf ``index`` in the tree of ``size``: one query, O(log n) nodes."""
        size = self._check_size(origin, size)
        if not 0 <= index < size:
            raise InputError(f"{origin}: index {index} is out of range for size {size}")
        plan = inclusion_plan(index, size)
        got = self._fetch(
            self._log_id(origin), [(0, index), *plan.ids, *CompactRange.node_ids(size)]
        )
        proof = plan.rehash([got[node] for node in plan.ids])
        return InclusionProof(origin, index, size, got[(0, index)], self._root(got, size), proof)

    def consistency_proof(
        self, origin: str, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        """Consistency of ``old_size`` with ``new_size``: one query, O(log n) nodes."""
        new_size = self._check_size(origin, new_size)
        if not 0 < old_size <= new_size:
            raise InputError(
                f"{origin}: consistency needs 0 < old <= new, got old {old_size}, new {new_size}"
            )
        plan = consistency_plan(old_size, new_size)
        got = self._fetch(
            self._log_id(origin),
            [*plan.ids, *CompactRange.node_ids(old_size), *CompactRange.node_ids(new_size)],
        )
        proof = plan.rehash([got[node] for node in plan.ids])
        return ConsistencyProof(
            origin, old_size, new_size, self._root(got, old_size), self._root(got, new_size), proof
        )

    # --- queries of the read API ------------------------------------------------------------
    # Read-only look-ups for `auditseal.readapi.app`, including the entries' event id and flag,
    # which the Entry model does not carry.

    def block_page(
        self, origin: str, first: int, limit: int
    ) -> list[tuple[StoredBlock, list[tuple[int, int]]]]:
        """Up to ``limit`` blocks numbered ``first`` on, in order, each with its offset gaps."""
        rows = self._db.execute(
            "SELECT header, hash, checkpoint, gaps FROM blocks WHERE log_id = ? AND number >= ?"
            " ORDER BY number LIMIT ?",
            (self._log_id(origin), first, limit),
        ).fetchall()
        return [
            (
                StoredBlock(BlockHeader.from_text(header), h, checkpoint),
                [(a, b) for a, b in json.loads(gaps)] if gaps else [],
            )
            for header, h, checkpoint, gaps in rows
        ]

    def annotated_entries(
        self, origin: str, start: int, end: int
    ) -> list[tuple[int, Entry, str | None, str | None, int]]:
        """The entries held with indices in ``[start, end)``, in order, annotated.

        Each is ``(index, entry, event_id, flag, number of the block holding it)``. Unlike
        :meth:`entries`, a range reaching past the log's end is not an error: it is cut short.
        """
        self.check_entry_types(origin, start, end)
        rows = self._db.execute(
            "SELECT e.idx, e.position, e.timestamp_ms, e.key, e.value, e.salt, e.commitment,"
            " e.value_null, e.event_id, e.flag,"
            " (SELECT b.number FROM blocks b WHERE b.log_id = e.log_id AND b.end_idx > e.idx"
            "  ORDER BY b.end_idx LIMIT 1)"
            " FROM entries e WHERE e.log_id = ? AND e.idx >= ? AND e.idx < ? ORDER BY e.idx",
            (self._log_id(origin), start, end),
        ).fetchall()
        return [
            (i, _entry(origin, i, p, t, k, v, s, c, vn), event_id, flag, number)
            for i, p, t, k, v, s, c, vn, event_id, flag, number in rows
        ]

    def index_of_position(self, origin: str, position: int) -> int:
        """The leaf index of the entry sealed from Kafka offset ``position``."""
        row = self._db.execute(
            "SELECT idx FROM entries WHERE log_id = ? AND position = ?",
            (self._log_id(origin), position),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"{origin}: no entry at position {position}")
        index: int = row[0]
        return index

    def find_event(
        self, event_id: str, origin: str | None = None, limit: int = 100
    ) -> list[tuple[str, int]]:
        """``(origin, index)`` of up to ``limit`` entries sealed with ``event_id``.

        Ordered by origin, then index. Delivery is at-least-once, so a replayed event is sealed
        more than once: every copy is returned. One seek of ``entries_by_event_chunk`` per
        chunk of :data:`EVENT_CHUNK` leaves of each log (a version 1 store: one seek of
        ``entries_by_event_id`` per log). The index leads with ``log_id``; without ``INDEXED
        BY`` SQLite 3.40 prefers the primary key for the ORDER BY and scans every entry.
        """
        if origin is not None:
            sql_filter, args = "WHERE l.id = ?", [self._log_id(origin)]
        else:
            sql_filter, args = "", []
        if self.schema_version == 1:
            rows = self._db.execute(
                f"SELECT l.origin, e.idx FROM logs l {self._db.ordered_join} entries e"
                f" {self._db.event_index}"
                f" ON e.log_id = l.id AND e.event_id = ? {sql_filter}"
                " ORDER BY l.origin, e.idx LIMIT ?",
                [event_id, *args, limit],
            ).fetchall()
            return [(o, i) for o, i in rows]
        # Every chunk number of every log (the last from the primary key's last entry), then
        # one seek per chunk (the join writes the index's expression to the letter).
        rows = self._db.execute(
            "WITH RECURSIVE chunks(log_id, n, last) AS ("
            f" SELECT l.id, 0, (SELECT max(idx) FROM entries WHERE log_id = l.id) / {EVENT_CHUNK}"
            f" FROM logs l {sql_filter}"
            " UNION ALL SELECT log_id, n + 1, last FROM chunks WHERE n < last)"
            f" SELECT l.origin, e.idx FROM chunks c {self._db.event_chunk_join}"
            f" {self._db.ordered_join} logs l ON l.id = c.log_id"
            " ORDER BY l.origin, e.idx LIMIT ?",
            [*args, event_id, limit],
        ).fetchall()
        return [(o, i) for o, i in rows]

    # --- anchors ----------------------------------------------------------------------------
    # What the anchor service put on chain: one ``anchors`` row per transaction and one
    # ``anchor_receipts`` row per log it covers. Append-only, except that a confirmed anchor
    # whose block left the canonical chain is marked ``orphaned`` (once; triggers enforce it).
    # ``anchor_intents`` holds what the service is about to send (seq, root, the checkpoint
    # bodies), written before the broadcast, so that an anchor found on chain after a crash can
    # be explained and recorded; ``anchor_publications`` is the outbox of ``audit.anchors``.
    # Stores created before these tables existed get them on the first write here.

    _ANCHOR_TABLES = frozenset(
        {"anchors", "anchor_receipts", "anchor_intents", "anchor_publications"}
    )

    def _anchor_tables(self) -> set[str]:
        return {t for t in self._ANCHOR_TABLES if self._has_table(t)}

    def _ensure_anchor_schema(self) -> None:
        if getattr(self, "_anchor_schema_ok", False):
            return
        present = self._anchor_tables()
        if present != self._ANCHOR_TABLES:
            with self._transaction():
                self._db.ensure_tables("anchors")
                if "anchor_publications" not in present:
                    # Anchors recorded before the outbox existed were published (or not) by
                    # the round that recorded them; only later ones go through the outbox.
                    self._db.execute(
                        "INSERT INTO anchor_publications (seq, published_at_ms)"
                        " SELECT seq, ? FROM anchors",
                        (_now_ms(),),
                    )
        self._anchor_schema_ok = True

    def _has_anchor_tables(self, *tables: str) -> bool:
        if getattr(self, "_anchor_schema_ok", False):
            return True
        return set(tables or ("anchors",)) <= self._anchor_tables()

    def record_anchor(
        self,
        anchor: StoredAnchor,
        receipts: Sequence[AnchorReceipt],
        replaces: Sequence[int] = (),
    ) -> None:
        """Record ``anchor`` and its per-log ``receipts`` in one transaction, marking the
        anchors ``replaces`` (orphaned by a reorg) as orphaned and replaced by this one.

        Raises ConflictError if ``anchor.seq`` is already recorded, InputError if a receipt
        is not of this anchor or names a log the store does not hold.
        """
        self._ensure_anchor_schema()
        for r in receipts:
            if (r.seq, r.tx_hash, r.block_hash) != (anchor.seq, anchor.tx_hash, anchor.block_hash):
                raise InputError(f"receipt of {r.origin} is not of anchor {anchor.seq}")
        with self._transaction():
            try:
                self._db.execute(
                    "INSERT INTO anchors (seq, root, tx_hash, block_number, block_hash, chain_id,"
                    " contract, anchored_at_ms, status, replaced_by) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        anchor.seq,
                        anchor.root,
                        anchor.tx_hash,
                        anchor.block_number,
                        anchor.block_hash,
                        anchor.chain_id,
                        anchor.contract,
                        anchor.anchored_at_ms,
                        anchor.status,
                        anchor.replaced_by,
                    ),
                )
            except self._db.integrity_error as exc:
                raise ConflictError(f"anchor {anchor.seq} is already recorded ({exc})") from exc
            # A list, not a generator: _log_id may query, and a query on the connection in
            # the middle of psycopg's pipelined executemany never returns.
            rows = [
                (
                    anchor.seq,
                    self._log_id(r.origin),
                    r.checkpoint,
                    r.index,
                    r.size,
                    json.dumps([h.hex() for h in r.proof]),
                )
                for r in receipts
            ]
            self._db.executemany(
                "INSERT INTO anchor_receipts (seq, log_id, checkpoint, aggregate_index,"
                " aggregate_size, proof) VALUES (?,?,?,?,?,?)",
                rows,
            )
            for old in replaces:
                self._orphan(old, anchor.seq)

    def mark_anchor_orphaned(self, seq: int, replaced_by: int | None = None) -> None:
        """Mark confirmed anchor ``seq`` orphaned (its block left the canonical chain)."""
        self._ensure_anchor_schema()
        with self._transaction():
            self._orphan(seq, replaced_by)

    def _orphan(self, seq: int, replaced_by: int | None) -> None:
        try:
            cur = self._db.execute(
                "UPDATE anchors SET status = 'orphaned', replaced_by = ? WHERE seq = ?",
                (replaced_by, seq),
            )
        except self._db.integrity_error as exc:
            raise ConflictError(f"anchor {seq}: {exc}") from exc
        if cur.rowcount != 1:
            raise NotFoundError(f"{self.location}: no anchor {seq}")

    def _anchor_rows(self, where: str, args: Sequence[object]) -> list[StoredAnchor]:
        if not self._has_anchor_tables():
            return []
        rows = self._db.execute(
            "SELECT seq, root, tx_hash, block_number, block_hash, chain_id, contract,"
            f" anchored_at_ms, status, replaced_by FROM anchors {where}",
            args,
        ).fetchall()
        return [StoredAnchor(*row) for row in rows]

    def anchors(self, status: str | None = None) -> list[StoredAnchor]:
        """Every recorded anchor (or those of ``status``), by seq."""
        if status is None:
            return self._anchor_rows("ORDER BY seq", ())
        return self._anchor_rows("WHERE status = ? ORDER BY seq", (status,))

    def anchor(self, seq: int) -> StoredAnchor:
        found = self._anchor_rows("WHERE seq = ?", (seq,))
        if not found:
            raise NotFoundError(f"{self.location}: no anchor {seq}")
        return found[0]

    def last_anchor(self, *, confirmed: bool = True) -> StoredAnchor | None:
        """The anchor with the highest seq (only confirmed ones, unless ``confirmed`` False)."""
        where = "WHERE status = 'confirmed' " if confirmed else ""
        found = self._anchor_rows(where + "ORDER BY seq DESC LIMIT 1", ())
        return found[0] if found else None

    def next_anchor_seq(self) -> int:
        """One more than the highest seq recorded, orphaned ones included; 1 for none."""
        if not self._has_anchor_tables():
            return 1
        (top,) = self._db.execute("SELECT max(seq) FROM anchors").fetchone()
        return 1 if top is None else int(top) + 1

    def record_anchor_intent(
        self, seq: int, root: bytes, bodies: Sequence[str], now_ms: int | None = None
    ) -> None:
        """Record, before it is sent, that anchor ``seq`` will carry ``root``, the aggregate
        over checkpoint ``bodies``. Idempotent; several roots per seq may be intended (a
        crash before sending, then a round over a newer state). The caller MUST check that
        ``bodies`` aggregate to ``root``; the reader checks it again."""
        self._ensure_anchor_schema()
        with self._transaction():
            self._db.execute(
                "INSERT INTO anchor_intents (seq, root, checkpoints, created_at_ms)"
                " VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                (seq, root, json.dumps(list(bodies)), now_ms if now_ms is not None else _now_ms()),
            )

    def anchor_intents(self, seq: int) -> dict[bytes, list[str]]:
        """The intended anchors of ``seq``: root → checkpoint bodies."""
        if not self._has_anchor_tables("anchor_intents"):
            return {}
        rows = self._db.execute(
            "SELECT root, checkpoints FROM anchor_intents WHERE seq = ? ORDER BY created_at_ms",
            (seq,),
        ).fetchall()
        found: dict[bytes, list[str]] = {}
        for root, checkpoints in rows:
            try:
                bodies = json.loads(checkpoints)
            except ValueError as exc:
                raise StoreError(
                    f"{self.location}: anchor intent {seq}: not JSON ({exc})"
                ) from None
            if not isinstance(bodies, list) or not all(isinstance(b, str) for b in bodies):
                raise StoreError(f"{self.location}: anchor intent {seq}: want a list of bodies")
            found[bytes(root)] = bodies
        return found

    def all_anchor_intents(self) -> list[tuple[int, bytes, list[str], int]]:
        """``(seq, root, checkpoint bodies, created_at_ms)`` of every intent, in order."""
        if not self._has_anchor_tables("anchor_intents"):
            return []
        rows = self._db.execute(
            "SELECT seq, root, created_at_ms FROM anchor_intents ORDER BY seq, created_at_ms"
        ).fetchall()
        bodies: dict[int, dict[bytes, list[str]]] = {}
        for seq, _, _ in rows:
            if seq not in bodies:
                bodies[seq] = self.anchor_intents(seq)  # parsed and checked there
        return [(seq, bytes(root), bodies[seq][bytes(root)], t) for seq, root, t in rows]

    def anchor_publications(self) -> list[tuple[int, int]]:
        """``(seq, published_at_ms)`` of every anchor marked published, by seq."""
        if not self._has_anchor_tables("anchor_publications"):
            return []
        rows = self._db.execute(
            "SELECT seq, published_at_ms FROM anchor_publications ORDER BY seq"
        ).fetchall()
        return [(seq, t) for seq, t in rows]

    def checkpoint_history(self) -> Iterator[tuple[str, str]]:
        """(origin, signed checkpoint) of every block in the order the store committed them
        (across logs), so that any past state of the store can be replayed."""
        yield from self._db.execute(
            "SELECT l.origin, b.checkpoint FROM blocks b JOIN logs l ON l.id = b.log_id"
            f" ORDER BY {self._db.insertion_order}"
        )

    def unpublished_anchors(self) -> list[int]:
        """Seqs of recorded anchors not yet marked published to ``audit.anchors``, in order."""
        if not self._has_anchor_tables("anchors", "anchor_publications"):
            return []  # a store from before the outbox: created on the first write
        return [
            r[0]
            for r in self._db.execute(
                "SELECT a.seq FROM anchors a LEFT JOIN anchor_publications p ON p.seq = a.seq"
                " WHERE p.seq IS NULL ORDER BY a.seq"
            )
        ]

    def mark_anchor_published(self, seq: int, now_ms: int | None = None) -> None:
        """Record that anchor ``seq``'s receipts reached ``audit.anchors`` (idempotent)."""
        self._ensure_anchor_schema()
        with self._transaction():
            self._db.execute(
                "INSERT INTO anchor_publications (seq, published_at_ms) VALUES (?,?)"
                " ON CONFLICT DO NOTHING",
                (seq, now_ms if now_ms is not None else _now_ms()),
            )

    def anchor_receipts(self, seq: int) -> list[AnchorReceipt]:
        """The receipts of anchor ``seq``, in aggregate order."""
        return self._receipts("WHERE r.seq = ? ORDER BY r.aggregate_index", (seq,))

    def anchor_receipt(self, seq: int, origin: str) -> AnchorReceipt | None:
        """The receipt of log ``origin`` in anchor ``seq``, if the store records one."""
        try:
            log_id = self._log_id(origin)
        except NotFoundError:
            return None
        found = self._receipts("WHERE r.seq = ? AND r.log_id = ?", (seq, log_id))
        return found[0] if found else None

    def log_anchor_receipts(self, origin: str) -> list[AnchorReceipt]:
        """Every receipt of log ``origin``, orphaned ones included, by seq."""
        return self._receipts("WHERE r.log_id = ? ORDER BY r.seq", (self._log_id(origin),))

    def latest_anchored_checkpoint(self, origin: str) -> AnchorReceipt | None:
        """The receipt of the latest confirmed anchor that covers log ``origin``, if any."""
        found = self._receipts(
            "WHERE r.log_id = ? AND a.status = 'confirmed' ORDER BY r.seq DESC LIMIT 1",
            (self._log_id(origin),),
        )
        return found[0] if found else None

    def _receipts(self, where: str, args: Sequence[object]) -> list[AnchorReceipt]:
        if not self._has_anchor_tables():
            return []
        rows = self._db.execute(
            "SELECT r.seq, l.origin, r.checkpoint, r.aggregate_index, r.aggregate_size, r.proof,"
            " a.root, a.tx_hash, a.block_number, a.block_hash, a.chain_id, a.contract, a.status"
            " FROM anchor_receipts r JOIN anchors a ON a.seq = r.seq"
            f" JOIN logs l ON l.id = r.log_id {where}",
            args,
        ).fetchall()
        return [
            AnchorReceipt(
                seq=seq,
                origin=origin,
                checkpoint=checkpoint,
                index=index,
                size=size,
                proof=tuple(bytes.fromhex(h) for h in json.loads(proof)),
                root=root,
                tx_hash=tx_hash,
                block_number=block_number,
                block_hash=block_hash,
                chain_id=chain_id,
                contract=contract,
                status=status,
            )
            for (
                seq,
                origin,
                checkpoint,
                index,
                size,
                proof,
                root,
                tx_hash,
                block_number,
                block_hash,
                chain_id,
                contract,
                status,
            ) in rows
        ]


def _entry(
    origin: str,
    idx: int,
    position: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    salt: bytes | None,
    commitment: bytes,
    value_null: int,
) -> Entry:
    """An entry row as the model: a negative position column marks a log record."""
    log_record = position < 0
    return Entry(
        origin,
        idx if log_record else position,
        timestamp_ms,
        key,
        value,
        salt,
        commitment,
        bool(value_null),
        log_record=log_record,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
