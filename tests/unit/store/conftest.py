"""One store suite, two databases: every test that takes ``store`` runs on SQLite and on
PostgreSQL (a fresh database of the session's server, see tests/conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditseal.store.blockstore import BlockStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "sqlite":
        return tmp_path / "store.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(store_location: Path | str) -> Iterator[BlockStore]:
    with BlockStore.open(store_location, create=True) as s:
        yield s


class Raw:
    """The store's database as someone with access to it sees it: SQL that no API call runs,
    committed statement by statement (the owner's rights, triggers still on)."""

    def __init__(self, location: Path | str) -> None:
        self.postgres = isinstance(location, str)
        if self.postgres:
            import psycopg

            self.integrity_error: type[Exception] = psycopg.IntegrityError
            self._conn: Any = psycopg.connect(str(location), autocommit=True)
        else:
            self.integrity_error = sqlite3.IntegrityError
            self._conn = sqlite3.connect(location, isolation_level=None)

    def execute(self, sql: str) -> None:
        self._conn.execute(sql)

    def blob(self, hex_digits: str) -> str:
        """A byte string literal in this database's SQL."""
        return f"'\\x{hex_digits}'::bytea" if self.postgres else f"x'{hex_digits}'"

    def drop_trigger(self, table: str, name: str) -> None:
        """What the database's owner can do: no trigger stops DDL."""
        self.execute(f"DROP TRIGGER {name} ON {table}" if self.postgres else f"DROP TRIGGER {name}")

    def close(self) -> None:
        self._conn.close()


@pytest.fixture
def raw(store: BlockStore, store_location: Path | str) -> Iterator[Raw]:
    conn = Raw(store_location)
    yield conn
    conn.close()
