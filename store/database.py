"""The SQL databases a block store runs on, behind one small interface.

:class:`~auditseal.store.blockstore.BlockStore` writes portable SQL with ``?`` placeholders; a
:class:`Database` runs it on SQLite (:mod:`auditseal.store.sqlite`, one file, the embedded
default) or PostgreSQL (:mod:`auditseal.store.postgres`, several hosts) and supplies what the
two do differently: the schema and its append-only triggers, transactions and locks, erasing a
value, purging erased bytes. A store location is a path or a ``postgresql://`` URL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from auditseal.store.errors import StoreError
from auditseal.verifier.urls import public_url

__all__ = [
    "EVENT_CHUNK",
    "ROLES",
    "Cursor",
    "Database",
    "Location",
    "is_url",
    "may_exist",
    "open_database",
    "public_location",
]

URL_SCHEMES = ("postgresql://", "postgres://")

ROLES = ("auditseal_reader", "auditseal_redactor", "auditseal_writer")
"""PostgreSQL roles of a store: read it; erase values; append (sealers, the anchor service)."""

EVENT_CHUNK = 16384
"""Leaves per chunk of the event-id index ``entries_by_event_chunk (log_id, idx / 16384,
event_id)``: an append inserts into the subtree of its log's last chunk only, so its cost does
not grow with the log (docs/STORE.md, "Event look-ups"). Both schemas write the number out:
the planners use an index on an expression only for that very expression."""

Location = str | Path
"""Where a store is: a SQLite file's path, or a ``postgresql://`` URL."""


def is_url(location: Location) -> bool:
    """True if ``location`` names a PostgreSQL store rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def public_location(location: Location) -> str:
    """``location`` for messages: a URL without its password (user, host, port, database)."""
    return public_url(str(location), names=True) if is_url(location) else str(location)


def may_exist(location: Location) -> bool:
    """False only when ``location`` is a file path with no file: a server's database is
    known to exist only once connected to."""
    return is_url(location) or Path(location).is_file()


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(ABC):
    """One connection to a store's database. Not thread-safe: one per thread or process."""

    location: str
    """Where the store is, for messages: a file path, or a URL without its password."""
    path: Path | None = None
    """The SQLite file; None for a server database."""
    integrity_error: type[Exception]
    """What the driver raises when a statement breaks a key or a trigger refuses it."""
    error: type[Exception]
    """The root of the driver's errors: after one, the connection may be unusable."""
    ordered_join: str
    """A join that keeps the written loop order: SQLite's ``CROSS JOIN`` (its planner would
    otherwise pick a scan), PostgreSQL's plain ``JOIN``."""
    event_index: str
    """The hint after ``entries e`` that makes SQLite seek the event-id index of a schema
    version 1 store (docs/STORE.md, "Event look-ups")."""
    event_chunk_join: str
    """What joins ``chunks c`` (``log_id``, chunk number ``n``) to ``e``, the entries of that
    chunk with the event id of the one ``?``, seeking ``entries_by_event_chunk`` once per
    chunk (:meth:`BlockStore.find_event`)."""
    insertion_order: str
    """An expression of ``blocks b`` giving the order in which blocks were committed."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def scan(self, sql: str, params: Sequence[Any], batch: int) -> Cursor:
        """A query whose rows are read ``batch`` at a time with ``fetchmany()``, without
        holding all of them in memory; inside :meth:`snapshot`."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction, rolled back on any exception; the driver's operational errors
        (read-only, disk full, lock timeout, connection lost) surface as StoreError."""

    @abstractmethod
    def lock(self, name: str) -> None:
        """Inside a transaction: wait for, then hold until it ends, the lock ``name``. Appends
        to the logs of one partition take the same lock, so they are serialised."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[Database]:
        """A database handle whose reads all see one committed state until the block ends."""

    @abstractmethod
    def fetch_nodes(
        self, log_id: int, ids: Sequence[tuple[int, int]]
    ) -> Iterable[tuple[int, int, bytes]]:
        """``(level, index, hash)`` of the tree nodes ``ids`` of a log that exist, in one
        query of point reads (a proof is about 2 log2(n) of them)."""

    @abstractmethod
    def has_table(self, name: str) -> bool: ...

    @abstractmethod
    def is_empty(self) -> bool:
        """True if the database holds no table at all (a store may be created in it)."""

    @abstractmethod
    def create_schema(self, version: int) -> None:
        """Create every table, index and trigger of an empty store, and its ``meta`` row."""

    @abstractmethod
    def ensure_tables(self, group: str) -> None:
        """Create the tables of ``group`` (``anchors`` or ``generations``) if missing: stores
        made before they existed get them on first use."""

    @abstractmethod
    def erase_entry(self, log_id: int, idx: int) -> None:
        """Null an entry's value and salt: the one change the append-only rules allow."""

    @abstractmethod
    def purge_erased(self) -> None:
        """Make erased bytes leave the store's files; StoreError if they cannot yet."""

    @abstractmethod
    def odd_entry(self, log_id: int, start: int, end: int) -> tuple[int, str, str] | None:
        """The first entry in ``[start, end)`` with a column of the wrong storage type, as
        ``(idx, column, "TYPE, want TYPES")``; None if all are right (a database that checks
        types on write never has one)."""

    def roles(self) -> list[str]:
        """The database roles that grant access to the store (none for a file)."""
        return []

    @abstractmethod
    def try_lead(self, name: str) -> bool:
        """Take, without waiting, the process-lifetime lock ``name`` (one holder per store,
        e.g. the active anchor service); True if this handle now holds it or already did.
        It lasts until :meth:`release_lead`, :meth:`close` or the process's death, which
        frees it without any clean-up; a held lock whose connection was lost is reported
        as not held. StoreError if the lock's file or connection cannot be opened."""

    @abstractmethod
    def release_lead(self, name: str) -> None:
        """Give up the lock ``name`` if this handle holds it."""

    @abstractmethod
    def close(self) -> None: ...


def open_database(location: Location, *, create: bool, readonly: bool) -> Database:
    """The database at ``location``: a ``postgresql://`` URL, else a SQLite file path."""
    if is_url(location):
        try:
            from auditseal.store.postgres import PostgresDatabase  # psycopg only when asked
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"a PostgreSQL store needs psycopg ({exc.name} is not installed): "
                "pip install 'auditseal[postgres]'"
            ) from None

        return PostgresDatabase.connect(str(location), create=create, readonly=readonly)
    from auditseal.store.sqlite import SqliteDatabase

    return SqliteDatabase.connect(Path(location), create=create, readonly=readonly)
