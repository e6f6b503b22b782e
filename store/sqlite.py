"""The SQLite side of the block store: one file in WAL mode, the embedded default.

The schema lives here with its append-only triggers; :class:`SqliteDatabase` runs the store's
SQL on one connection. ``BEGIN IMMEDIATE`` takes the file's write lock, so writers are
serialised whole and :meth:`SqliteDatabase.lock` has nothing more to do.
"""

from __future__ import annotations

import fcntl
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from auditseal.store.database import Cursor, Database
from auditseal.store.errors import StoreError
from auditseal.store.files import create_private

__all__ = ["SqliteDatabase"]

_SCHEMA = (
    """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE logs (id INTEGER PRIMARY KEY, origin TEXT NOT NULL UNIQUE);
CREATE TABLE entries (
    log_id INTEGER NOT NULL REFERENCES logs(id),
    idx INTEGER NOT NULL,
    position INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key BLOB,
    value BLOB,
    salt BLOB,
    commitment BLOB NOT NULL,
    value_null INTEGER NOT NULL,
    event_id TEXT,
    flag TEXT,
    PRIMARY KEY (log_id, idx),
    UNIQUE (log_id, position)
);
CREATE INDEX entries_by_event_chunk ON entries (log_id, idx / 16384, event_id)
    WHERE event_id IS NOT NULL;
CREATE TABLE nodes (
    log_id INTEGER NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (log_id, level, idx)
) WITHOUT ROWID;
CREATE TABLE blocks (
    log_id INTEGER NOT NULL REFERENCES logs(id),
    number INTEGER NOT NULL,
    start_idx INTEGER NOT NULL,
    end_idx INTEGER NOT NULL,
    header TEXT NOT NULL,
    hash BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    sealed_at_ms INTEGER NOT NULL,
    gaps TEXT,
    PRIMARY KEY (log_id, number),
    UNIQUE (log_id, end_idx)
);
CREATE TABLE publications (
    log_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (log_id, number)
);
CREATE TABLE redactions (
    log_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    redacted_at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (log_id, idx)
);
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'append-only: entries cannot be deleted'); END;
CREATE TRIGGER entries_only_redact BEFORE UPDATE ON entries
    WHEN NEW.value IS NOT NULL OR NEW.salt IS NOT NULL
      OR NEW.log_id IS NOT OLD.log_id OR NEW.idx IS NOT OLD.idx
      OR NEW.position IS NOT OLD.position OR NEW.timestamp_ms IS NOT OLD.timestamp_ms
      OR NEW.key IS NOT OLD.key OR NEW.commitment IS NOT OLD.commitment
      OR NEW.value_null IS NOT OLD.value_null OR NEW.event_id IS NOT OLD.event_id
      OR NEW.flag IS NOT OLD.flag
    BEGIN SELECT RAISE(ABORT, 'append-only: an entry can only be redacted'); END;
"""
    + """
CREATE TABLE IF NOT EXISTS anchors (
    seq INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash TEXT NOT NULL,
    chain_id INTEGER NOT NULL,
    contract TEXT NOT NULL,
    anchored_at_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'orphaned')),
    replaced_by INTEGER
);
CREATE TABLE IF NOT EXISTS anchor_receipts (
    seq INTEGER NOT NULL REFERENCES anchors(seq),
    log_id INTEGER NOT NULL REFERENCES logs(id),
    checkpoint TEXT NOT NULL,
    aggregate_index INTEGER NOT NULL,
    aggregate_size INTEGER NOT NULL,
    proof TEXT NOT NULL,
    PRIMARY KEY (seq, log_id)
);
CREATE INDEX IF NOT EXISTS anchor_receipts_by_log ON anchor_receipts (log_id, seq);
CREATE TRIGGER IF NOT EXISTS anchors_no_delete BEFORE DELETE ON anchors
    BEGIN SELECT RAISE(ABORT, 'append-only: anchors cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS anchors_only_orphan BEFORE UPDATE ON anchors
    WHEN OLD.status IS NOT 'confirmed' OR NEW.status IS NOT 'orphaned'
      OR NEW.seq IS NOT OLD.seq OR NEW.root IS NOT OLD.root OR NEW.tx_hash IS NOT OLD.tx_hash
      OR NEW.block_number IS NOT OLD.block_number OR NEW.block_hash IS NOT OLD.block_hash
      OR NEW.chain_id IS NOT OLD.chain_id OR NEW.contract IS NOT OLD.contract
      OR NEW.anchored_at_ms IS NOT OLD.anchored_at_ms OR OLD.replaced_by IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'append-only: an anchor can only be marked orphaned'); END;
CREATE TRIGGER IF NOT EXISTS anchor_receipts_no_update BEFORE UPDATE ON anchor_receipts
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_receipts cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS anchor_receipts_no_delete BEFORE DELETE ON anchor_receipts
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_receipts cannot be deleted'); END;
CREATE TABLE IF NOT EXISTS anchor_intents (
    seq INTEGER NOT NULL,
    root BLOB NOT NULL,
    checkpoints TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, root)
);
CREATE TABLE IF NOT EXISTS anchor_publications (
    seq INTEGER PRIMARY KEY REFERENCES anchors(seq),
    published_at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS anchor_intents_no_update BEFORE UPDATE ON anchor_intents
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_intents cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS anchor_intents_no_delete BEFORE DELETE ON anchor_intents
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_intents cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS anchor_publications_no_update BEFORE UPDATE ON anchor_publications
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_publications cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS anchor_publications_no_delete BEFORE DELETE ON anchor_publications
    BEGIN SELECT RAISE(ABORT, 'append-only: anchor_publications cannot be deleted'); END;
"""
)
# Log generations (FORMAT.md §1.1): one row per generation >= 1 a sealer started, append-only.
# Created on the first generation change, so a store that never had one opens unchanged.
_GENERATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_generations (
    base TEXT NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    origin TEXT NOT NULL UNIQUE,
    started_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (base, generation)
);
CREATE TRIGGER IF NOT EXISTS log_generations_no_update BEFORE UPDATE ON log_generations
    BEGIN SELECT RAISE(ABORT, 'append-only: log_generations cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS log_generations_no_delete BEFORE DELETE ON log_generations
    BEGIN SELECT RAISE(ABORT, 'append-only: log_generations cannot be deleted'); END;
"""
_ANCHOR_SCHEMA = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS anchors") :]
_FROZEN_TABLES = ("logs", "nodes", "blocks", "redactions", "publications")
_TRIGGERS = "".join(
    f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
    f"BEGIN SELECT RAISE(ABORT, 'append-only: {t} cannot be {verb}'); END;\n"
    for t in _FROZEN_TABLES
    for op, verb in (("UPDATE", "updated"), ("DELETE", "deleted"))
)


_BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's write lock


def _enter_wal(conn: sqlite3.Connection) -> None:
    """Switch to write-ahead logging, waiting out other processes doing the same.

    Workers starting together on a new file each take a shared lock and then want the
    exclusive one to switch it: SQLite sees a deadlock and answers one of them "locked" at once,
    without waiting in its busy handler. Retrying is safe: the switch is idempotent.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class SqliteDatabase(Database):
    integrity_error = sqlite3.IntegrityError
    error = sqlite3.Error
    ordered_join = "CROSS JOIN"
    # For find_event SQLite 3.40 prefers the primary key for the ORDER BY and would scan every
    # entry of every log; the index leads with log_id.
    event_index = "INDEXED BY entries_by_event_id"
    event_chunk_join = (
        "CROSS JOIN entries e INDEXED BY entries_by_event_chunk"
        " ON e.log_id = c.log_id AND e.idx / 16384 = c.n AND e.event_id = ?"
    )
    insertion_order = "b.rowid"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.location = str(path)
        self._leads: dict[str, int] = {}  # name -> descriptor of its flock'ed sidecar file

    @classmethod
    def connect(cls, path: Path, *, create: bool, readonly: bool) -> SqliteDatabase:
        if not path.exists() and (readonly or not create):
            raise StoreError(
                f"{path}: no block store here (create one with `auditseal log append`)"
            )
        try:
            if create and not readonly:
                # SQLite would create the file through the umask; its -wal, -shm and -journal
                # files take the database file's mode, so an owner-only file keeps them so too.
                create_private(path)
            uri = f"file:{path}?mode=ro" if readonly else f"file:{path}?mode=rwc"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT)
            conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                _enter_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA secure_delete = ON")  # erased values are overwritten
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise StoreError(f"{path}: not a block store: {exc}") from exc
            raise StoreError(
                f"{path}: busy: another process held its write lock for {_BUSY_TIMEOUT:.0f} s"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a block store: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the store: {exc.strerror}") from exc
        return cls(conn, path)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def scan(self, sql: str, params: Sequence[Any], batch: int) -> Cursor:
        cursor = self._conn.execute(sql, params)
        cursor.arraysize = batch
        return cursor

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.location}: cannot write: {exc}") from exc
        try:
            yield
        except BaseException as exc:
            self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"{self.location}: cannot write: {exc}") from exc
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._conn.execute("ROLLBACK")
            raise StoreError(f"{self.location}: cannot commit: {exc}") from exc

    def lock(self, name: str) -> None:
        pass  # BEGIN IMMEDIATE already holds the whole file's write lock

    @contextmanager
    def snapshot(self) -> Iterator[Database]:
        # A connection of its own, so the caller's handle stays usable for other reads.
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.location}: cannot open for reading: {exc}") from exc
        try:
            conn.execute("BEGIN")  # one snapshot for every read until the end
            yield SqliteDatabase(conn, self.path or Path())
        finally:
            conn.close()

    def fetch_nodes(
        self, log_id: int, ids: Sequence[tuple[int, int]]
    ) -> Iterable[tuple[int, int, bytes]]:
        # A join on the full primary key from a VALUES list: one B-tree seek per node. (A
        # row-value `(level, idx) IN (VALUES ...)` makes SQLite 3.40 scan the whole log.)
        sql = (
            "WITH want(level, idx) AS (VALUES " + ",".join(["(?,?)"] * len(ids)) + ") "
            "SELECT n.level, n.idx, n.hash FROM want CROSS JOIN nodes n "
            "ON n.log_id = ? AND n.level = want.level AND n.idx = want.idx"
        )
        return self._conn.execute(sql, [*(x for node in ids for x in node), log_id])

    def has_table(self, name: str) -> bool:
        return (
            self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            ).fetchone()
            is not None
        )

    def is_empty(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None

    def create_schema(self, version: int) -> None:
        for statement in _split_sql(_SCHEMA + _TRIGGERS):
            self._conn.execute(statement)
        self._conn.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', ?)", (str(version),)
        )

    def ensure_tables(self, group: str) -> None:
        for statement in _split_sql(_OPTIONAL[group]):
            self._conn.execute(statement)

    def erase_entry(self, log_id: int, idx: int) -> None:
        self._conn.execute(
            "UPDATE entries SET value = NULL, salt = NULL WHERE log_id = ? AND idx = ?",
            (log_id, idx),
        )

    def purge_erased(self) -> None:
        """Checkpoint the WAL into the database file and truncate it to zero bytes
        (``secure_delete`` already zeroed the erased bytes in the database pages). Waits for
        readers (the busy timeout); StoreError if one still holds a snapshot."""
        try:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            busy, detail = 1, str(exc)
        else:
            detail = "another process holds a read snapshot"
        if busy:
            raise StoreError(
                f"{self.location}: the WAL still holds erased bytes ({detail}); run "
                "`auditseal log purge` once readers are gone"
            )

    def odd_entry(self, log_id: int, start: int, end: int) -> tuple[int, str, str] | None:
        # SQLite stores what it is given: a hand-written TEXT value would reach the hashing as
        # a str. One indexed range scan.
        row = self._conn.execute(_ENTRY_TYPES_SQL, (log_id, start, end)).fetchone()
        if row is None:
            return None
        for (column, want), got in zip(_ENTRY_COLUMN_TYPES, row[1:], strict=True):
            if got not in want:
                return (
                    int(row[0]),
                    column,
                    f"{got.upper()}, want {' or '.join(w.upper() for w in want)}",
                )
        return None

    def try_lead(self, name: str) -> bool:
        # One host: an exclusive flock on a sidecar file. The kernel drops it when the process
        # dies (its descriptors close), so a killed holder needs no clean-up. flock belongs to
        # the open file, so two handles of one process exclude each other too.
        sidecar = f"{self.path}.lead-{name}"
        held = self._leads.get(name)
        if held is not None:
            # Still the file at that path? Once it is deleted or replaced, another process
            # can lock a new one: this handle has lost the lead.
            try:
                if os.stat(sidecar).st_ino == os.fstat(held).st_ino:
                    return True
            except FileNotFoundError:
                pass
            self.release_lead(name)
            return False
        try:
            fd = os.open(sidecar, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{sidecar}: cannot open the lead lock: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"{sidecar}: cannot lock: {exc.strerror}") from None
        self._leads[name] = fd
        return True

    def release_lead(self, name: str) -> None:
        fd = self._leads.pop(name, None)
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the open file drops its flock

    def close(self) -> None:
        for name in list(self._leads):
            self.release_lead(name)
        self._conn.close()


# Claims (docs/STORE.md): which writer owns a partition's logs since when, one row per claim.
_CLAIM_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_claims (
    base TEXT NOT NULL,
    epoch INTEGER NOT NULL CHECK (epoch >= 1),
    writer TEXT NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (base, epoch)
);
CREATE TRIGGER IF NOT EXISTS log_claims_no_update BEFORE UPDATE ON log_claims
    BEGIN SELECT RAISE(ABORT, 'append-only: log_claims cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS log_claims_no_delete BEFORE DELETE ON log_claims
    BEGIN SELECT RAISE(ABORT, 'append-only: log_claims cannot be deleted'); END;
"""
_OPTIONAL = {
    "anchors": _ANCHOR_SCHEMA,
    "generations": _GENERATION_SCHEMA,
    "claims": _CLAIM_SCHEMA,
}

_ENTRY_COLUMN_TYPES = (
    ("position", ("integer",)),
    ("timestamp_ms", ("integer",)),
    ("key", ("blob", "null")),
    ("value", ("blob", "null")),
    ("salt", ("blob", "null")),
    ("commitment", ("blob",)),
    ("value_null", ("integer",)),
)
_ENTRY_TYPES_SQL = (
    "SELECT idx, "
    + ", ".join(f"typeof({c})" for c, _ in _ENTRY_COLUMN_TYPES)
    + " FROM entries WHERE log_id = ? AND idx >= ? AND idx < ? AND NOT ("
    + " AND ".join(
        f"typeof({c}) IN ({', '.join(repr(t) for t in want)})" for c, want in _ENTRY_COLUMN_TYPES
    )
    + ") ORDER BY idx LIMIT 1"
)


def _split_sql(script: str) -> list[str]:
    """Split a schema script into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.splitlines():
        if not line.strip():
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    return statements
