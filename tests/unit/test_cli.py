"""The auditseal CLI as users run it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest

from auditseal.cli.options import HostPort, host_port
from auditseal.verifier import merkle
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.note import NoteVerifier

ORIGIN = "example.com/log/0"


def run(*args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, "AUDITSEAL_STORE": str(cwd / "store.db")},
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@pytest.fixture
def workdir(tmp_path) -> Path:
    out = run("keygen", "--name", "ops.example.com", "--out", "keys", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path


def vkey(workdir: Path) -> str:
    return (workdir / "keys" / "ops.example.com.pub").read_text().strip()


def append(workdir: Path, data: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "log",
        "append",
        "--log",
        ORIGIN,
        "--key",
        "keys/ops.example.com.key",
        *extra,
        cwd=workdir,
        stdin=data,
    )


def test_keygen_writes_a_private_key_readable_by_owner_only(workdir):
    key = workdir / "keys" / "ops.example.com.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("PRIVATE+KEY+ops.example.com+")
    NoteVerifier.from_string(vkey(workdir))
    again = run("keygen", "--name", "ops.example.com", "--out", "keys", cwd=workdir)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


@pytest.mark.parametrize(
    ("data", "values"),
    [
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\nb", [b"a", b"b"]),  # a last line without newline is an entry
        (b"a\n\n\nb\n", [b"a", b"", b"", b"b"]),  # blank lines are entries
        (b"\n", [b""]),
        (b" x \r\n\xff\x00\n", [b" x \r", b"\xff\x00"]),  # bytes kept verbatim
    ],
)
def test_append_seals_every_line_verbatim(workdir, data, values):
    out = append(workdir, data, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["start"], result["end"]) == (0, len(values))
    from auditseal.store.blockstore import BlockStore

    with BlockStore.open(workdir / "store.db", readonly=True) as s:
        assert [e.value for e in s.entries(ORIGIN, 0, len(values))] == values
        assert [e.position for e in s.entries(ORIGIN, 0, len(values))] == list(range(len(values)))


def test_appended_events_are_found_by_their_id(workdir):
    event = json.dumps({"specversion": "1.0", "id": "evt-cli-1", "sequence": 1}).encode()
    assert append(workdir, b"not an event\n" + event + b"\n").returncode == 0
    from auditseal.store.blockstore import BlockStore

    with BlockStore.open(workdir / "store.db", readonly=True) as s:
        assert s.find_event("evt-cli-1") == [(ORIGIN, 1)]
        assert [e.value for e in s.entries(ORIGIN, 0, 2)] == [b"not an event", event]


def test_checkpoint_and_proofs_verify(workdir):
    assert append(workdir, b"one\ntwo\nthree\n").returncode == 0
    assert append(workdir, b"four\nfive\n").returncode == 0
    cp = run("log", "checkpoint", "--log", ORIGIN, cwd=workdir)
    assert cp.returncode == 0
    checkpoint = open_checkpoint(cp.stdout, [NoteVerifier.from_string(vkey(workdir))])
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 5)

    inc = run("log", "proof", "inclusion", "--log", ORIGIN, "--index", "3", "--json", cwd=workdir)
    p = json.loads(inc.stdout)
    assert set(p) == {"log", "index", "size", "leaf_hash", "root", "proof"}
    assert bytes.fromhex(p["root"]) == checkpoint.root
    merkle.verify_inclusion(
        bytes.fromhex(p["leaf_hash"]), 3, 5, [bytes.fromhex(h) for h in p["proof"]], checkpoint.root
    )

    con = run("log", "proof", "consistency", "--log", ORIGIN, "--old", "3", "--json", cwd=workdir)
    c = json.loads(con.stdout)
    assert set(c) == {"log", "old_size", "new_size", "old_root", "new_root", "proof"}
    merkle.verify_consistency(
        3, 5, [bytes.fromhex(h) for h in c["proof"]], bytes.fromhex(c["old_root"]), checkpoint.root
    )

    check = run("log", "check", "--log", ORIGIN, "--log-key", vkey(workdir), "--json", cwd=workdir)
    assert json.loads(check.stdout) == {
        "log": ORIGIN,
        "ok": True,
        "blocks": 2,
        "size": 5,
        "redacted": 0,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["log", "checkpoint", "--log", ORIGIN, "--store", "nowhere.db"], "no block store"),
        (["log", "checkpoint", "--log", "unknown/log"], "no log 'unknown/log'"),
        (["log", "proof", "inclusion", "--log", ORIGIN, "--index", "7"], "out of range"),
        (["log", "proof", "inclusion", "--log", ORIGIN, "--index", "0", "--size", "9"], "size 9"),
        (["log", "proof", "consistency", "--log", ORIGIN, "--old", "0"], "0 < old"),
        (["log", "append", "--log", ORIGIN, "--key", "keys/none.key"], "cannot read key file"),
        (["log", "check", "--log", ORIGIN, "--log-key", "garbage"], "verifier key"),
        (["log", "proof", "inclusion", "--log", ORIGIN], "Missing option '--index'"),
    ],
)
def test_errors_are_one_clear_line_and_exit_2(workdir, args, message):
    assert append(workdir, b"x\n").returncode == 0
    out = run(*args, cwd=workdir)
    assert out.returncode == 2, out
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_input_is_refused_and_writes_nothing(workdir):
    out = append(workdir, b"")
    assert out.returncode == 2 and "no lines" in out.stderr
    assert not (workdir / "store.db").exists()


def test_group_readable_key_is_refused(workdir):
    key = workdir / "keys" / "ops.example.com.key"
    key.chmod(0o640)
    out = append(workdir, b"x\n")
    assert out.returncode == 2 and "chmod 600" in out.stderr


def test_check_fails_with_exit_1_on_another_key(workdir, tmp_path):
    assert append(workdir, b"x\n").returncode == 0
    other = run("keygen", "--name", "ops.example.com", "--out", "other", cwd=workdir)
    out = run("log", "check", "--log", ORIGIN, "--log-key", other.stdout.strip(), cwd=workdir)
    assert out.returncode == 1 and "not signed by any pinned key" in out.stderr


def test_a_pipeline_command_without_the_extra_names_it(tmp_path):
    code = (
        "import sys; sys.modules['aiohttp'] = None; sys.modules['confluent_kafka'] = None;"
        "from auditseal.cli.main import main; sys.argv = ['auditseal', 'ingest', 'serve']; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "pip install 'auditseal[pipeline]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_lists_every_command(tmp_path):
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in (
        "keygen",
        "log",
        "dev",
        "ingest",
        "simulate",
        "seal",
        "serve",
        "anchor",
        "verify",
    ):
        assert f"  {command}" in out.stdout


def test_log_redact_seals_a_record_and_erases_the_bytes_from_the_store_files(workdir):
    """The erased value must be gone from the files themselves, WAL included; grep them."""
    secret = b"Jane Q. Example, passport X1234567"
    lines = [b"first", b'{"name": "' + secret + b'", "pad": "' + b"x" * 3000 + b'"}', b"last"]
    assert append(workdir, b"\n".join(lines) + b"\n").returncode == 0
    assert append(workdir, b"later\n").returncode == 0
    files = [workdir / "store.db", workdir / "store.db-wal"]
    assert any(secret in f.read_bytes() for f in files if f.exists())
    out = run(
        "log", "redact", "--log", ORIGIN, "--index", "1", "--actor", "dpo@example.com",
        "--reason", "GDPR-17", "--key", "keys/ops.example.com.key", "--json", cwd=workdir,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) | {"root": None, "checkpoint": None} == {
        "log": ORIGIN, "index": 1, "record_index": 4, "block": 2, "root": None,
        "checkpoint": None,
    }  # fmt: skip
    for f in files:
        if f.exists():
            assert secret not in f.read_bytes(), f"{f.name} still holds the erased value"
    check = run("log", "check", "--log", ORIGIN, "--log-key", vkey(workdir), cwd=workdir)
    assert check.returncode == 0 and "1 redacted" in check.stdout
    again = run(
        "log", "redact", "--log", ORIGIN, "--index", "1", "--actor", "a", "--reason", "b",
        "--key", "keys/ops.example.com.key", cwd=workdir,
    )  # fmt: skip
    assert again.returncode != 0 and "already redacted" in again.stderr


def test_log_check_finds_an_erasure_without_its_record(workdir):
    assert append(workdir, b"a\nb\nc\n").returncode == 0
    db = sqlite3.connect(workdir / "store.db")
    db.execute("DROP TRIGGER entries_only_redact")
    db.execute("UPDATE entries SET value = NULL, salt = NULL WHERE idx = 1")
    db.commit()
    db.close()
    check = run("log", "check", "--log", ORIGIN, "--log-key", vkey(workdir), cwd=workdir)
    assert check.returncode == 1 and "no redaction record" in check.stderr


def test_host_port_parses_what_listen_options_take():
    assert HostPort().convert("127.0.0.1:8090", None, None) == ("127.0.0.1", 8090)
    assert HostPort().convert("[::1]:0", None, None) == ("::1", 0)
    assert HostPort(off=True).convert("off", None, None) is None
    assert host_port(("::1", 8090)) == "[::1]:8090" and host_port(("h", 1)) == "h:1"
    for bad in ("8090", "host:", ":80", "host:65536", "host:8o", "off"):
        with pytest.raises(click.BadParameter, match="want host:port"):
            HostPort().convert(bad, None, None)


def test_every_command_takes_the_shared_spellings(tmp_path):
    # One spelling each: the old ones are hidden aliases, absent from the help.
    old_spellings = {
        ("monitor",): ("--metrics-port",),
        ("dashboard",): ("--host ", "--port "),
        ("anchor", "run"): ("--topic ",),
    }
    for args, olds in old_spellings.items():
        out = run(*args, "--help", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        for old in olds:
            assert old not in out.stdout, (args, old)
        assert "--metrics-listen" in out.stdout or "--listen" in out.stdout, args
