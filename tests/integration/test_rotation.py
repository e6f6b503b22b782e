"""Log-key rotation as an operator runs it, on a real store: ``log append`` with the old key,
``log rotate-key``, ``log append --key NEW --previous-key OLD`` through the overlap, then
``--key NEW`` alone; ``verify --all``, ``verify --block`` and bundles across the rotation with
either key pinned or a pins file; and the attacker's edits of the genuine rotated store."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from auditseal.sealer.blocks import cosign
from auditseal.sealer.signer import Signer
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.note import SignedNote
from tests.unit.test_cli import run

ORIGIN = "example.com/log/0"
TRIGGERS = ("entries_no_delete", "entries_only_redact", "blocks_no_update", "blocks_no_delete")


def append(cwd: Path, data: bytes, key: str, *previous: str) -> None:
    extra = ("--previous-key", f"keys/{previous[0]}.key") if previous else ()
    out = run(
        "log", "append", "--log", ORIGIN, "--key", f"keys/{key}.key", *extra, cwd=cwd, stdin=data
    )
    assert out.returncode == 0, out.stderr


def run_elsewhere(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI without the store of :func:`run`'s environment (a bundle is read alone)."""
    env = {k: v for k, v in os.environ.items() if k != "AUDITSEAL_STORE"}
    command = [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def pub(cwd: Path, name: str) -> str:
    return (cwd / "keys" / f"{name}.pub").read_text().strip()


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Blocks: 0 [0,3) old; 1 the record, leaf 3 (from 4, until 7), old+new; 2 [4,6) old+new
    (the overlap); 3 [6,7) new (size 7: the old key no more); 4 [7,9) new; 5 [9,10) new."""
    cwd = tmp_path_factory.mktemp("rotated")
    for name in ("old", "new"):
        assert run("keygen", "--name", name, "--out", "keys", cwd=cwd).returncode == 0
    append(cwd, b"a\nb\nc\n", "old")
    out = run(
        "log", "rotate-key", "--log", ORIGIN, "--key", "keys/old.key",
        "--new-key", "keys/new.key", "--overlap", "2", "--json", cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert (record["record_index"], record["from_size"], record["until"]) == (3, 4, 7)
    append(cwd, b"d\ne\n", "new", "old")
    append(cwd, b"f\n", "new", "old")
    append(cwd, b"g\nh\n", "new", "old")  # past the overlap: NEW alone, --previous-key or not
    append(cwd, b"i\n", "new")
    return cwd


def store_copy(rotated: Path, tmp_path: Path) -> Path:
    shutil.copytree(rotated, tmp_path / "w")
    return tmp_path / "w"


def tamper(cwd: Path, *sql: str, params: tuple[object, ...] = ()) -> None:
    db = sqlite3.connect(cwd / "store.db")
    for trigger in TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in sql:
        db.execute(statement, params)
    db.commit()
    db.close()


def verify_all(cwd: Path, *pins: str) -> tuple[int, dict]:
    out = run("verify", "--all", "--log", ORIGIN, "--json", *pins, cwd=cwd)
    assert out.returncode in (1, 3), out.stderr
    return out.returncode, json.loads(out.stdout)


def problems(data: dict) -> list[tuple[int | None, str]]:
    return [(p["block"], p["check"]) for p in data["logs"][0]["problems"]]


def test_the_sealer_signed_both_keys_through_the_overlap_only(rotated: Path):
    db = sqlite3.connect(rotated / "store.db")
    notes = [row[0] for row in db.execute("SELECT checkpoint FROM blocks ORDER BY number")]
    signers = [[s.name for s in SignedNote.from_text(n).signatures] for n in notes]
    assert signers == [["old"], ["old", "new"], ["new", "old"], ["new"], ["new"], ["new"]]


def test_the_old_key_alone_cannot_seal_after_the_overlap(rotated: Path, tmp_path: Path):
    cwd = store_copy(rotated, tmp_path)
    out = run("log", "append", "--log", ORIGIN, "--key", "keys/old.key", cwd=cwd, stdin=b"x\n")
    assert out.returncode == 2 and "must be signed by new+" in out.stderr


@pytest.mark.parametrize("pinned", ["old", "new"])
def test_verify_all_across_the_rotation_is_valid_with_either_key(rotated: Path, pinned: str):
    code, data = verify_all(rotated, "--log-key", pub(rotated, pinned))
    assert code == 3 and problems(data) == []  # not anchored: nothing else to say
    out = run("log", "check", "--log", ORIGIN, "--log-key", pub(rotated, pinned), cwd=rotated)
    assert out.returncode == 0, out.stderr


def test_a_pins_file_with_ranges(rotated: Path, tmp_path: Path):
    pins = tmp_path / "keys.json"
    keys = [
        {"key": pub(rotated, "old"), "from_size": 0, "to_size": 7},
        {"key": pub(rotated, "new"), "from_size": 4},
    ]
    pins.write_text(json.dumps({"format": "auditseal.log-keys/v1", "keys": keys}))
    code, data = verify_all(rotated, "--log-keys", str(pins), "--no-follow-rotations")
    assert code == 3 and problems(data) == []
    # the auditor's pins leave size 6 to no key: the overlap's checkpoint there is refused
    keys[0]["to_size"], keys[1]["from_size"] = 6, 7
    pins.write_text(json.dumps({"format": "auditseal.log-keys/v1", "keys": keys}))
    code, data = verify_all(rotated, "--log-keys", str(pins), "--no-follow-rotations")
    assert code == 1 and problems(data) == [(2, "log-key")]
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "auditseal.log-keys/v1", "keys": [{"key": "x"}]}')
    out = run("verify", "--all", "--log-keys", str(bad), cwd=rotated)
    assert out.returncode == 2 and "keys.keys[0].key" in out.stderr


@pytest.mark.parametrize("number", [0, 2, 5])
@pytest.mark.parametrize("pinned", ["old", "new"])
def test_verify_block_and_its_bundle_across_the_rotation(
    rotated: Path, tmp_path: Path, number: int, pinned: str
):
    key = pub(rotated, pinned)
    out = run("verify", "--block", str(number), "--log-key", key, "--json", cwd=rotated)
    report = json.loads(out.stdout)
    assert out.returncode == 3 and report["first_failure"] is None, out.stdout
    assert {c["name"] for c in report["checks"]} >= {"key-rotation", "log-key"}
    bundle = tmp_path / f"b{number}.json"
    out = run("bundle", "--block", str(number), "--out", str(bundle), cwd=rotated)
    assert out.returncode == 0, out.stderr
    assert "rotations" in json.loads(bundle.read_text())
    out = run_elsewhere("verify", "--bundle", str(bundle), "--log-key", key, "--json")
    assert out.returncode == 3 and json.loads(out.stdout)["first_failure"] is None


# --- the attacker's edits of a genuine rotated store -------------------------------------------


def _old_signer(cwd: Path) -> Signer:
    return Signer.from_file(cwd / "keys" / "old.key")


def test_attack_a_a_post_rotation_checkpoint_re_signed_by_the_old_key(
    rotated: Path, tmp_path: Path
):
    cwd = store_copy(rotated, tmp_path)
    note = (
        sqlite3.connect(cwd / "store.db")
        .execute("SELECT checkpoint FROM blocks WHERE number = 4")
        .fetchone()[0]
    )
    body = Checkpoint.from_text(SignedNote.from_text(note).text).to_text()
    forged = cosign(body, _old_signer(cwd))
    tamper(cwd, "UPDATE blocks SET checkpoint = ? WHERE number = 4", params=(forged,))
    for pins in (("old",), ("old", "new")):
        args = [a for name in pins for a in ("--log-key", pub(cwd, name))]
        code, data = verify_all(cwd, *args)
        assert code == 1 and problems(data) == [(4, "log-key")]
    out = run("verify", "--block", "5", "--log-key", pub(cwd, "old"), cwd=cwd)
    assert out.returncode == 1 and "log-key" in out.stdout  # its previous checkpoint


def test_attack_b_a_rotation_record_signed_by_another_key(rotated: Path, tmp_path: Path):
    """Someone without the old key writes their own rotation record (old = their key) and
    re-signs every later checkpoint: the tree and chain are rebuilt, only the keys give it
    away."""
    cwd = tmp_path / "forged"
    cwd.mkdir()
    shutil.copytree(rotated / "keys", cwd / "keys")
    assert run("keygen", "--name", "mallory", "--out", "keys", cwd=cwd).returncode == 0
    append(cwd, b"a\nb\nc\n", "mallory")
    out = run(
        "log", "rotate-key", "--log", ORIGIN, "--key", "keys/mallory.key",
        "--new-key", "keys/new.key", cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    append(cwd, b"d\n", "new")
    code, data = verify_all(cwd, "--log-key", pub(cwd, "old"))
    assert code == 1 and (1, "key-rotation") in problems(data)
    # and rotate-key itself refuses a key that does not sign the log
    out = run(
        "log", "rotate-key", "--log", ORIGIN, "--key", "keys/old.key",
        "--new-key", "keys/mallory.key", cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 2 and "not signed by the previous key" in out.stderr


def test_attack_c_the_rotation_record_nulled(rotated: Path, tmp_path: Path):
    cwd = store_copy(rotated, tmp_path)
    tamper(cwd, "UPDATE entries SET value = NULL, salt = NULL WHERE idx = 3")
    code, data = verify_all(cwd, "--log-key", pub(cwd, "old"))
    assert code == 1
    found = problems(data)
    assert (1, "redaction") in found  # a nulled log record: evidence destroyed
    assert (4, "checkpoint") in found  # and the new key is no longer learnt


def test_attack_c_the_rotation_record_deleted(rotated: Path, tmp_path: Path):
    cwd = store_copy(rotated, tmp_path)
    tamper(cwd, "DELETE FROM entries WHERE idx = 3")
    code, data = verify_all(cwd, "--log-key", pub(cwd, "old"))
    assert code == 1 and (1, "entries") in problems(data)


def test_attack_d_the_rotation_moved(rotated: Path, tmp_path: Path):
    """The record's value re-signed by both genuine keys with another size: it no longer
    sits where it says it applies."""
    cwd = store_copy(rotated, tmp_path)
    db = sqlite3.connect(cwd / "store.db")
    value = db.execute("SELECT value FROM entries WHERE idx = 3").fetchone()[0]
    db.close()
    text = SignedNote.from_text(value).text.replace("from 4\nuntil 7", "from 6\nuntil 9")
    new = Signer.from_file(cwd / "keys" / "new.key")
    moved = cosign(text, [_old_signer(cwd), new]).encode()
    tamper(cwd, "UPDATE entries SET value = ? WHERE idx = 3", params=(moved,))
    code, data = verify_all(cwd, "--log-key", pub(cwd, "old"))
    assert code == 1 and (1, "key-rotation") in problems(data)
