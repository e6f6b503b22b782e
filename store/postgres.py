"""The PostgreSQL side of the block store: one database that sealers on several hosts share.

The database itself enforces what the SQLite store's triggers enforce, and more:

- append-only: triggers refuse UPDATE, DELETE and TRUNCATE of every table, except that an
  entry's value and salt may be set to NULL (a redaction) and a confirmed anchor may be marked
  orphaned once; and privileges: the role ``auditseal_writer`` (what sealers and the anchor
  service log in as) may SELECT and INSERT only; erasing a value goes through the function
  ``auditseal_erase_entry``, which only ``auditseal_redactor`` may execute;
- one appender per partition: an append takes a transaction-scoped advisory lock named after
  the partition's base origin before it reads the log's tip, so a second writer waits, then
  finds the tip moved and fails with a conflict (``UNIQUE (log_id, position)`` and the tip's
  compare-and-swap then refuse what it built).

The roles are created with the schema when the connecting user may create roles
(``auditseal store init``; docs/DEPLOY.md says how to grant them to login users).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from auditseal.store.database import ROLES, Cursor, Database
from auditseal.store.errors import StoreError
from auditseal.verifier.urls import public_url, scrub

__all__ = ["PostgresDatabase"]

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS entries (
    log_id BIGINT NOT NULL REFERENCES logs(id),
    idx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    key BYTEA,
    value BYTEA,
    salt BYTEA,
    commitment BYTEA NOT NULL,
    value_null SMALLINT NOT NULL,
    event_id TEXT,
    flag TEXT,
    PRIMARY KEY (log_id, idx),
    UNIQUE (log_id, position)
);
CREATE INDEX IF NOT EXISTS entries_by_event_chunk ON entries (log_id, (idx / 16384), event_id)
    WHERE event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS nodes (
    log_id BIGINT NOT NULL,
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);
CREATE TABLE IF NOT EXISTS blocks (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    log_id BIGINT NOT NULL REFERENCES logs(id),
    number BIGINT NOT NULL,
    start_idx BIGINT NOT NULL,
    end_idx BIGINT NOT NULL,
    header TEXT NOT NULL,
    hash BYTEA NOT NULL,
    checkpoint TEXT NOT NULL,
    sealed_at_ms BIGINT NOT NULL,
    gaps TEXT,
    PRIMARY KEY (log_id, number),
    UNIQUE (log_id, end_idx)
);
CREATE TABLE IF NOT EXISTS publications (
    log_id BIGINT NOT NULL,
    number BIGINT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    PRIMARY KEY (log_id, number)
);
CREATE TABLE IF NOT EXISTS redactions (
    log_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    redacted_at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (log_id, idx)
);
CREATE TABLE IF NOT EXISTS anchors (
    seq BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    chain_id BIGINT NOT NULL,
    contract TEXT NOT NULL,
    anchored_at_ms BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('confirmed', 'orphaned')),
    replaced_by BIGINT
);
CREATE TABLE IF NOT EXISTS anchor_receipts (
    seq BIGINT NOT NULL REFERENCES anchors(seq),
    log_id BIGINT NOT NULL REFERENCES logs(id),
    checkpoint TEXT NOT NULL,
    aggregate_index BIGINT NOT NULL,
    aggregate_size BIGINT NOT NULL,
    proof TEXT NOT NULL,
    PRIMARY KEY (seq, log_id)
);
CREATE INDEX IF NOT EXISTS anchor_receipts_by_log ON anchor_receipts (log_id, seq);
CREATE TABLE IF NOT EXISTS anchor_intents (
    seq BIGINT NOT NULL,
    root BYTEA NOT NULL,
    checkpoints TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (seq, root)
);
CREATE TABLE IF NOT EXISTS anchor_publications (
    seq BIGINT PRIMARY KEY REFERENCES anchors(seq),
    published_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_generations (
    base TEXT NOT NULL,
    generation BIGINT NOT NULL CHECK (generation >= 1),
    origin TEXT NOT NULL UNIQUE,
    started_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (base, generation)
);
CREATE TABLE IF NOT EXISTS log_claims (
    base TEXT NOT NULL,
    epoch BIGINT NOT NULL CHECK (epoch >= 1),
    writer TEXT NOT NULL,
    claimed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (base, epoch)
)
"""

# SQLSTATE 23000 (integrity_constraint_violation): the driver raises IntegrityError, as
# SQLite does for its triggers' RAISE(ABORT).
_FUNCTIONS = """
CREATE OR REPLACE FUNCTION auditseal_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'append-only: % cannot be %', TG_TABLE_NAME,
        CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'DELETE' THEN 'deleted'
            ELSE 'truncated' END
        USING ERRCODE = '23000';
END $$;
CREATE OR REPLACE FUNCTION auditseal_entries_only_redact() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.value IS NOT NULL OR NEW.salt IS NOT NULL
        OR NEW.log_id IS DISTINCT FROM OLD.log_id OR NEW.idx IS DISTINCT FROM OLD.idx
        OR NEW.position IS DISTINCT FROM OLD.position
        OR NEW.timestamp_ms IS DISTINCT FROM OLD.timestamp_ms
        OR NEW.key IS DISTINCT FROM OLD.key OR NEW.commitment IS DISTINCT FROM OLD.commitment
        OR NEW.value_null IS DISTINCT FROM OLD.value_null
        OR NEW.event_id IS DISTINCT FROM OLD.event_id OR NEW.flag IS DISTINCT FROM OLD.flag
    THEN
        RAISE EXCEPTION 'append-only: an entry can only be redacted' USING ERRCODE = '23000';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION auditseal_anchors_only_orphan() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IS DISTINCT FROM 'confirmed' OR NEW.status IS DISTINCT FROM 'orphaned'
        OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.root IS DISTINCT FROM OLD.root
        OR NEW.tx_hash IS DISTINCT FROM OLD.tx_hash
        OR NEW.block_number IS DISTINCT FROM OLD.block_number
        OR NEW.block_hash IS DISTINCT FROM OLD.block_hash
        OR NEW.chain_id IS DISTINCT FROM OLD.chain_id
        OR NEW.contract IS DISTINCT FROM OLD.contract
        OR NEW.anchored_at_ms IS DISTINCT FROM OLD.anchored_at_ms
        OR OLD.replaced_by IS NOT NULL
    THEN
        RAISE EXCEPTION 'append-only: an anchor can only be marked orphaned'
            USING ERRCODE = '23000';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION auditseal_erase_entry(p_log BIGINT, p_idx BIGINT) RETURNS void
LANGUAGE sql SECURITY DEFINER AS $$
    UPDATE entries SET value = NULL, salt = NULL WHERE log_id = p_log AND idx = p_idx
$$
"""
_ALL_TABLES = (
    "meta",
    "logs",
    "entries",
    "nodes",
    "blocks",
    "publications",
    "redactions",
    "anchors",
    "anchor_receipts",
    "anchor_intents",
    "anchor_publications",
    "log_generations",
    "log_claims",
)
_NO_UPDATE = tuple(t for t in _ALL_TABLES if t not in ("meta", "entries", "anchors"))
_NO_DELETE = tuple(t for t in _ALL_TABLES if t != "meta")


def _triggers() -> list[str]:
    statements = [
        f"CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION auditseal_refuse()"
        for t in _NO_UPDATE
    ]
    statements += [
        f"CREATE TRIGGER {t}_no_delete BEFORE DELETE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION auditseal_refuse()"
        for t in _NO_DELETE
    ]
    # TRUNCATE skips row triggers: refuse it per statement.
    statements += [
        f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION auditseal_refuse()"
        for t in _NO_DELETE
    ]
    statements += [
        "CREATE TRIGGER entries_only_redact BEFORE UPDATE ON entries "
        "FOR EACH ROW EXECUTE FUNCTION auditseal_entries_only_redact()",
        "CREATE TRIGGER anchors_only_orphan BEFORE UPDATE ON anchors "
        "FOR EACH ROW EXECUTE FUNCTION auditseal_anchors_only_orphan()",
    ]
    return statements


def _grants() -> list[str]:
    tables = ", ".join(_ALL_TABLES)
    return [
        f"GRANT SELECT ON {tables} TO auditseal_reader",
        f"GRANT SELECT, INSERT ON {tables} TO auditseal_writer",
        "GRANT UPDATE (status, replaced_by) ON anchors TO auditseal_writer",
        "REVOKE ALL ON FUNCTION auditseal_erase_entry(BIGINT, BIGINT) FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION auditseal_erase_entry(BIGINT, BIGINT) TO auditseal_redactor",
    ]


class PostgresDatabase(Database):
    integrity_error = psycopg.IntegrityError
    error = psycopg.Error
    ordered_join = "JOIN"
    event_index = ""
    # A lateral subquery fenced by OFFSET 0: one index seek per chunk. As a plain join the
    # planner, misjudging the recursive list's length, may hash-join it to a scan of entries.
    event_chunk_join = (
        "CROSS JOIN LATERAL (SELECT idx FROM entries WHERE log_id = c.log_id"
        " AND idx / 16384 = c.n AND event_id = ? OFFSET 0) e"
    )
    insertion_order = "b.id"

    def __init__(self, conn: psycopg.Connection[Any], url: str) -> None:
        self._conn = conn
        self._url = url
        self.location = public_url(url, names=True)  # without its password
        self._sql: dict[str, str] = {}
        self._scans = itertools.count()
        self._leads: dict[str, psycopg.Connection[Any]] = {}  # name -> its lock's session

    @classmethod
    def connect(cls, url: str, *, create: bool, readonly: bool) -> PostgresDatabase:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=30)
            if readonly:
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise StoreError(
                f"{public_url(url, names=True)}: cannot connect: {_one_line(exc, url)}"
            ) from None
        db = cls(conn, url)
        if not create and db.is_empty():
            db.close()
            raise StoreError(
                f"{db.location}: no block store here (create one with `auditseal log append`)"
            )
        return db

    def _q(self, sql: str) -> str:
        """``?`` placeholders as psycopg's ``%s`` (the store's SQL holds no other ? or %)."""
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("?", "%s")
        return out

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(self._q(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        # A plain multi-row insert goes through COPY: one statement for a block's thousands
        # of entry and node rows, where executemany runs one per row.
        insert = _PLAIN_INSERT.fullmatch(sql)
        with self._conn.cursor() as cursor:
            if insert is None:
                cursor.executemany(self._q(sql), rows)
                return
            with cursor.copy(f"COPY {insert[1]} ({insert[2]}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def scan(self, sql: str, params: Sequence[Any], batch: int) -> Cursor:
        # A server-side cursor: rows stay in the server until fetched (needs a transaction).
        cursor = self._conn.cursor(name=f"auditseal_scan_{next(self._scans)}")
        cursor.itersize = batch
        cursor.execute(self._q(sql), params)
        return cursor

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._conn.transaction():
                yield
        except (
            pg_errors.OperationalError,
            pg_errors.InsufficientPrivilege,
            pg_errors.ReadOnlySqlTransaction,
        ) as exc:
            raise StoreError(f"{self.location}: cannot write: {_one_line(exc, self._url)}") from exc

    def lock(self, name: str) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))

    @contextmanager
    def snapshot(self) -> Iterator[Database]:
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=30)
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.location}: cannot connect: {_one_line(exc, self._url)}"
            ) from None
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield PostgresDatabase(conn, self._url)
        finally:
            conn.close()

    def fetch_nodes(
        self, log_id: int, ids: Sequence[tuple[int, int]]
    ) -> Iterable[tuple[int, int, bytes]]:
        # Arrays rather than a VALUES list: the text is the same for every proof, so psycopg
        # prepares it after a few uses and the server stops planning it (most of a proof's time).
        levels, indices = [level for level, _ in ids], [index for _, index in ids]
        return self._conn.execute(
            "SELECT n.level, n.idx, n.hash FROM unnest(%s::bigint[], %s::bigint[])"
            " AS want(level, idx) JOIN nodes n"
            " ON n.log_id = %s AND n.level = want.level AND n.idx = want.idx",
            (levels, indices, log_id),
        )

    def has_table(self, name: str) -> bool:
        # A query of the catalog, not to_regclass: that one answers from the session's cache,
        # which keeps "no such table" across an advisory-lock wait during which another
        # session created it.
        row = self._conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s",
            (name,),
        ).fetchone()
        return row is not None

    def is_empty(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() LIMIT 1"
        ).fetchone()
        return row is None

    def create_schema(self, version: int) -> None:
        for statement in _split(_TABLES) + _split(_FUNCTIONS) + _triggers():
            self._conn.execute(statement)
        self._conn.execute(
            "INSERT INTO meta (name, value) VALUES ('schema_version', %s)", (str(version),)
        )
        self._grant_roles()

    def _grant_roles(self) -> None:
        """Create the three roles if missing and grant them; skipped (the schema is complete
        without them) when the connecting user may not create roles: an administrator then
        runs the grants of docs/STORE.md."""
        try:
            with self._conn.transaction():  # a savepoint: its failure leaves the schema
                for role in ROLES:
                    try:
                        with self._conn.transaction():
                            self._conn.execute(f"CREATE ROLE {role} NOLOGIN")
                    except pg_errors.DuplicateObject:
                        pass  # another store of this cluster made it
                for statement in _grants():
                    self._conn.execute(statement)
        except pg_errors.InsufficientPrivilege:
            pass

    def roles(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname", (list(ROLES),)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def ensure_tables(self, group: str) -> None:
        pass  # every table is created with the schema

    def erase_entry(self, log_id: int, idx: int) -> None:
        self._conn.execute("SELECT auditseal_erase_entry(%s, %s)", (log_id, idx))

    def purge_erased(self) -> None:
        """VACUUM the entries: erased values leave the table's live pages. Old WAL segments
        and base backups keep them until they are recycled (docs/STORE.md)."""
        try:
            self._conn.execute("VACUUM entries")
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.location}: cannot VACUUM entries ({_one_line(exc, self._url)}); the erased "
                "values stay in dead row versions until the next autovacuum"
            ) from exc

    def odd_entry(self, log_id: int, start: int, end: int) -> tuple[int, str, str] | None:
        return None  # PostgreSQL checks every column's type on write

    def try_lead(self, name: str) -> bool:
        # A session-level advisory lock on a connection of its own, which does nothing else:
        # the server drops it when that session ends (the process died and the kernel closed
        # its socket; for a host that vanished, the keepalives below). A paused process keeps
        # its session, hence the lock: nobody takes over while it could still wake up.
        held = self._leads.get(name)
        if held is not None:
            try:
                held.execute("SELECT 1")  # alive, so the session and its lock still are
                return True
            except psycopg.Error:
                # Lost, and someone may have led meanwhile: report it; the next call may
                # take the lead again, as a new leader.
                self._leads.pop(name, None)
                held.close()
                return False
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=10,
                application_name=_lead_key(name),  # who leads, in pg_stat_activity
                **_LEAD_TCP,
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.location}: cannot connect: {_one_line(exc, self._url)}"
            ) from None
        try:
            for setting, value in _LEAD_SERVER_TCP.items():  # the server's side of a lost host
                conn.execute(f"SET {setting} = {value}")
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (_lead_key(name),)
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(
                f"{self.location}: cannot take a lock: {_one_line(exc, self._url)}"
            ) from None
        if not row or row[0] is not True:
            conn.close()
            return False
        self._leads[name] = conn
        return True

    def release_lead(self, name: str) -> None:
        conn = self._leads.pop(name, None)
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lead_key(name),))
        except psycopg.Error:
            pass  # the session is gone, and its lock with it
        finally:
            conn.close()

    def close(self) -> None:
        for name in list(self._leads):
            self.release_lead(name)
        self._conn.close()


# A lead's session, on both ends: a peer that stops answering (host down, network cut) ends it
# after about 10 + 5 x 3 = 25 s, so a standby takes over and the lost leader's next check
# fails instead of hanging (docs/ANCHORING.md, "Standby"). Ignored on Unix sockets.
_LEAD_TCP: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # ms: unacknowledged data fails the query, no endless wait
}
_LEAD_SERVER_TCP = {
    "tcp_keepalives_idle": 10,
    "tcp_keepalives_interval": 5,
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 25_000,
}


def _lead_key(name: str) -> str:
    """The text an advisory lock key is hashed from: apart from the partition locks' names."""
    return f"auditseal lead {name}"


_PLAIN_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \(\?(?:,\?)*\)")


def _split(script: str) -> list[str]:
    """Statements of a script whose function bodies are $$-quoted and hold no ``$$;``."""
    parts, current, quoted = [], [], False
    for line in script.strip().splitlines():
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            parts.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        parts.append("\n".join(current))
    return [p for p in parts if p.strip()]


def _one_line(exc: BaseException, url: str) -> str:
    """psycopg's message on one line, without the password of ``url`` should it quote it."""
    return scrub(" ".join(str(exc).split()), url, names=True)
