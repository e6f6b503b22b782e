"""``auditseal store copy`` as an operator runs it: SQLite to a real PostgreSQL and back, the
password in $PGPASSWORD (never in argv, never in the output), ``log check`` the same on all three;
a copy killed with SIGKILL mid-way finishes when run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record

pytestmark = pytest.mark.postgres

SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
AUDITSEAL = str(Path(sys.executable).with_name("auditseal"))
ORIGINS = ["auditseal.local/audit.events/0", "auditseal.local/audit.events/1"]


def auditseal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AUDITSEAL, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def make_source(path: Path, blocks: int) -> None:
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 1_000)
        for n in range(blocks):
            for origin in ORIGINS:
                writer.append(origin, [Record(n * 4 + i, n, b"k", b"v%d" % i) for i in range(4)])
        store.redact(ORIGINS[0], 1, "dpo", "GDPR-7", redaction_sealer(SIGNER), 2_000)


def log_checks(store: str | Path) -> list[str]:
    out = []
    for origin in ORIGINS:
        run = auditseal(
            "log", "check", "--store", str(store), "--log", origin, "--log-key",
            SIGNER.verifier.to_string(), "--json",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        out.append(run.stdout)
    return out


@pytest.fixture
def pg(postgres, pg_url):
    """The fresh database's URL without its password, and the environment that carries it."""
    parts = urlsplit(pg_url)
    url = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}{parts.path}"
    return url, {"PGPASSWORD": postgres.password}, postgres.password


def test_copy_to_postgresql_and_back(tmp_path, pg):
    url, env, password = pg
    source, back = tmp_path / "source.db", tmp_path / "back.db"
    make_source(source, 5)
    run = auditseal("store", "copy", "--from", str(source), "--to", url, "--json", env=env)
    assert run.returncode == 0, run.stderr
    assert password not in run.stdout + run.stderr and password not in url
    summary = json.loads(run.stdout)
    assert summary["complete"] and summary["to"] == url
    assert {log["log"]: log["copied_blocks"] for log in summary["logs"]} == {
        ORIGINS[0]: 6,  # 5 blocks and the redaction record's
        ORIGINS[1]: 5,
    }
    assert summary["added"]["redactions"] == 1
    assert "blocks" in run.stderr and "entries copied" in run.stderr

    run = auditseal("store", "copy", "--from", url, "--to", str(back), env=env)
    assert run.returncode == 0, run.stderr
    assert password not in run.stdout + run.stderr
    assert "every block checked" in run.stdout
    assert log_checks(source) == log_checks(back)
    pg_checks = [
        auditseal("log", "check", "--store", url, "--log", o, "--log-key",
                  SIGNER.verifier.to_string(), "--json", env=env).stdout
        for o in ORIGINS
    ]  # fmt: skip
    assert pg_checks == log_checks(source)

    again = auditseal("store", "copy", "--from", str(source), "--to", str(source))
    assert again.returncode == 2 and "same store" in again.stderr


def test_a_copy_killed_midway_resumes(tmp_path, pg):
    url, env, password = pg
    source = tmp_path / "source.db"
    make_source(source, 300)
    proc = subprocess.Popen(
        [AUDITSEAL, "store", "copy", "--from", str(source),
         "--to", url, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # progress: a line per log at most every second
        if "entries copied" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with BlockStore.open(url.replace("@", f":{password}@", 1)) as partial:
        held = sum(partial.size(o) for o in partial.logs())
    assert 0 < held < 2 * 300 * 4 + 1, "the kill came after the copy finished"

    run = auditseal("store", "copy", "--from", str(source), "--to", url, "--json", env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["complete"]
    assert sum(log["copied_entries"] for log in summary["logs"]) == 2 * 300 * 4 + 1 - held
    assert log_checks(source) == [
        auditseal("log", "check", "--store", url, "--log", o, "--log-key",
                  SIGNER.verifier.to_string(), "--json", env=env).stdout
        for o in ORIGINS
    ]  # fmt: skip
