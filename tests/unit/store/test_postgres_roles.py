"""The PostgreSQL store's roles: what a sealer's login may do, and what it may not even with
SQL of its own (the privileges, behind the triggers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import StoreError
from auditseal.store.fsck import check_log
from auditseal.store.model import Record

pytestmark = pytest.mark.postgres

ORIGIN = "auditseal.local/audit.events/0"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))


def _as(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def logins(pg_url: str) -> Iterator[dict[str, str]]:
    """The store created by its owner, and URLs of three logins: a sealer (auditseal_writer),
    a data protection officer (writer and auditseal_redactor), an auditor (auditseal_reader)."""
    BlockStore.open(pg_url, create=True).close()
    tag = uuid.uuid4().hex[:8]
    roles = {
        "sealer": ["auditseal_writer"],
        "dpo": ["auditseal_writer", "auditseal_redactor"],
        "auditor": ["auditseal_reader"],
    }
    urls = {}
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for who, grants in roles.items():
            name, password = f"{who}_{tag}", uuid.uuid4().hex
            admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            for role in grants:
                admin.execute(f"GRANT {role} TO {name}")
            urls[who] = _as(pg_url, name, password)
    yield urls
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for who in roles:
            admin.execute(f"DROP OWNED BY {who}_{tag}")
            admin.execute(f"DROP ROLE {who}_{tag}")


def test_a_sealer_login_appends_but_cannot_change_or_erase(logins):
    with BlockStore.open(logins["sealer"]) as store:
        LogWriter(store, SIGNER, lambda: 1).append(
            ORIGIN, [Record(i, 1000, b"k", b"v%d" % i) for i in range(5)]
        )
        with pytest.raises(StoreError, match="cannot write: permission denied"):
            store.redact(ORIGIN, 1, "dpo", "GDPR-1", redaction_sealer(SIGNER))
    with psycopg.connect(logins["sealer"], autocommit=True) as conn:
        for sql in (
            "UPDATE entries SET value = NULL, salt = NULL WHERE idx = 1",
            "DELETE FROM blocks",
            "TRUNCATE nodes",
            "ALTER TABLE entries DISABLE TRIGGER USER",
            "DROP TRIGGER entries_only_redact ON entries",
            "SELECT auditseal_erase_entry(1, 1)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)


def test_a_redactor_login_erases_through_the_function_and_the_record_explains_it(logins):
    with BlockStore.open(logins["sealer"]) as store:
        LogWriter(store, SIGNER, lambda: 1).append(
            ORIGIN, [Record(i, 1000, b"k", b"v%d" % i) for i in range(5)]
        )
    with BlockStore.open(logins["dpo"]) as store:
        store.redact(ORIGIN, 2, "dpo@example.com", "GDPR-2", redaction_sealer(SIGNER))
        assert check_log(store, ORIGIN, [SIGNER.verifier]).redacted == 1
    # Only value and salt, through the function: a direct UPDATE is still not granted.
    with (
        psycopg.connect(logins["dpo"], autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("UPDATE entries SET value = NULL, salt = NULL WHERE idx = 3")


def test_an_auditor_login_reads_and_verifies_but_writes_nothing(logins):
    with BlockStore.open(logins["sealer"]) as store:
        LogWriter(store, SIGNER, lambda: 1).append(ORIGIN, [Record(0, 1000, b"k", b"v")])
    with BlockStore.open(logins["auditor"], readonly=True) as store:
        assert check_log(store, ORIGIN, [SIGNER.verifier]).size == 1
    with (
        BlockStore.open(logins["auditor"]) as store,
        pytest.raises(StoreError, match="cannot write: permission denied"),
    ):
        LogWriter(store, SIGNER, lambda: 1).append(ORIGIN, [Record(1, 1000, b"k", b"v")])


def test_store_init_creates_the_schema_and_names_the_roles(pg_url, tmp_path):
    import json
    import os
    import subprocess
    import sys

    parts = urlsplit(pg_url)
    bare = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    env = {**os.environ, "PGPASSWORD": parts.password or ""}
    cli = [sys.executable, "-c", "from auditseal.cli.main import main; main()"]
    for location, roles in (
        (bare, ["auditseal_reader", "auditseal_redactor", "auditseal_writer"]),
        (str(tmp_path / "s.db"), []),
    ):
        out = subprocess.run(
            [*cli, "store", "init", "--store", location, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["roles"] == roles and summary["missing_roles"] == []
        assert (parts.password or "") not in out.stdout + out.stderr
    with BlockStore.open(pg_url) as store:
        assert store.logs() == []
        assert store.roles() == ["auditseal_reader", "auditseal_redactor", "auditseal_writer"]
    again = subprocess.run(
        [*cli, "store", "init", "--store", bare],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "block store ready (0 logs); roles" in again.stdout
