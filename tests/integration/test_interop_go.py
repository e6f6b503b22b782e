"""Interoperability with an independent implementation: Go's golang.org/x/mod/sumdb.

A log is built with the real ``auditseal`` CLI and every artefact it prints (signed checkpoints,
inclusion and consistency proofs) is checked by ``tests/interop/c2sp_check.go``, which calls Go's
``note.Open``, ``tlog.CheckRecord`` and ``tlog.CheckTree``; the other way round, notes and keys
made by Go's ``note.GenerateKey`` / ``note.Sign`` must work with ``verifier`` and ``sealer``.

The Go side needs the Debian packages golang-go and golang-golang-x-mod-dev (see
tests/interop/README.md). Without them the module is skipped, unless AUDITSEAL_REQUIRE_INTEROP=1
(as in CI), in which case it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.errors import SignatureError
from auditseal.verifier.note import NoteVerifier, SignedNote, key_id

pytestmark = pytest.mark.interop

GO_SOURCE = Path(__file__).resolve().parents[1] / "interop" / "c2sp_check.go"
DEBIAN_GOPATH = "/usr/share/gocode"
XMOD_PACKAGES = ("golang.org/x/mod/sumdb/note", "golang.org/x/mod/sumdb/tlog")
INSTALL_HINT = "apt-get install -y golang-go golang-golang-x-mod-dev"

ORIGIN = "interop.auditseal.test/audit.events/0"
KEY_NAME = "interop.auditseal.test"
BLOCK_SIZES = (1, 2, 5, 13, 1)
# Sizes that are not block boundaries, so their roots are in no checkpoint: Go computes them.
EXTRA_INCLUSION_SIZES = (2, 13, 16, 17)
EM_DASH = "\u2014"

GoCheck = Callable[..., list[dict[str, Any]]]


# --- the Go side ---------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("AUDITSEAL_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{reason} (AUDITSEAL_REQUIRE_INTEROP=1)", pytrace=False)
    pytest.skip(f"{reason}; install with `{INSTALL_HINT}`")


def _find_gopath_root() -> str | None:
    """The GOPATH entry holding golang.org/x/mod's sumdb packages."""
    candidates = [p for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    candidates.append(DEBIAN_GOPATH)
    for root in candidates:
        if all((Path(root) / "src" / pkg).is_dir() for pkg in XMOD_PACKAGES):
            return root
    return None


@pytest.fixture(scope="module")
def go_check(tmp_path_factory: pytest.TempPathFactory) -> GoCheck:
    """Build c2sp_check.go once; the fixture runs it on a batch of requests."""
    go = shutil.which("go")
    if go is None:
        _unavailable("Go toolchain `go` not found on PATH")
    gopath_root = _find_gopath_root()
    if gopath_root is None:
        _unavailable(f"golang.org/x/mod sources not found under {DEBIAN_GOPATH}/src or $GOPATH")
    assert go is not None and gopath_root is not None

    work = tmp_path_factory.mktemp("go")
    binary = work / "c2sp_check"
    env = {
        **os.environ,
        "GO111MODULE": "off",  # GOPATH mode: the Debian package is a GOPATH tree, not a module
        "GOPATH": os.pathsep.join([str(work / "gopath"), gopath_root]),
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "",
        "GOENV": "off",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    build = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if build.returncode != 0:
        pytest.fail(f"building {GO_SOURCE.name} failed:\n{build.stderr}", pytrace=False)

    def run(*requests: dict[str, Any]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [str(binary)],
            input=json.dumps(list(requests)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        assert len(answers) == len(requests)
        return answers

    return run


# --- the auditseal side --------------------------------------------------------------------


def _cli_command() -> list[str]:
    """The installed ``auditseal`` script of this interpreter's environment."""
    scripts = Path(sys.executable).parent
    for name in ("auditseal", "auditseal.exe"):
        if (scripts / name).is_file():
            return [str(scripts / name)]
    found = shutil.which("auditseal")
    if found:
        return [found]
    return [sys.executable, "-c", "from auditseal.cli.main import main; main()"]


CLI = _cli_command()


def auditseal(*args: str | int | Path) -> str:
    done = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"auditseal {' '.join(map(str, args))}: {done.stderr}"
    return done.stdout


@dataclass
class Log:
    store: Path
    verifier_key: str
    key_file: Path
    checkpoints: dict[int, str]  # block boundary (tree size) -> signed checkpoint from append
    latest: str  # `auditseal log checkpoint`
    leaves: list[bytes]  # leaf bytes, from the store
    inclusion: dict[tuple[int, int], dict[str, Any]]  # (index, size) -> proof JSON
    consistency: dict[tuple[int, int], dict[str, Any]]  # (old, new) -> proof JSON

    @property
    def boundaries(self) -> list[int]:
        return sorted(self.checkpoints)

    @property
    def size(self) -> int:
        return self.boundaries[-1]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    """A log of several blocks written by the CLI, with every proof the tests check."""
    tmp = tmp_path_factory.mktemp("log")
    store = tmp / "store.db"
    key = json.loads(auditseal("keygen", "--name", KEY_NAME, "--out", tmp / "keys", "--json"))
    key_file = Path(key["key_file"])

    at = ("--store", store, "--log", ORIGIN)
    checkpoints: dict[int, str] = {}
    n = 0
    for block, count in enumerate(BLOCK_SIZES):
        lines = [
            f"event {n + i} of block {block}: {'x' * (n + i)} \u00e9\u2713" for i in range(count)
        ]
        if count > 2:
            lines[1] = ""  # a blank line is an entry too
        batch = tmp / f"block{block}.txt"
        batch.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        sealed = json.loads(auditseal("log", "append", *at, "--key", key_file, batch, "--json"))
        n += count
        assert (sealed["start"], sealed["end"]) == (n - count, n)
        checkpoints[n] = sealed["checkpoint"]

    latest = auditseal("log", "checkpoint", *at)
    with BlockStore.open(store, readonly=True) as db:
        leaves = [entry.leaf().to_bytes() for entry in db.entries(ORIGIN, 0, n)]

    inclusion = {
        (index, size): json.loads(
            auditseal("log", "proof", "inclusion", *at, "--index", index, "--size", size, "--json")
        )
        for size in sorted({*checkpoints, *EXTRA_INCLUSION_SIZES})
        for index in range(size)
    }
    consistency = {
        (old, new): json.loads(
            auditseal("log", "proof", "consistency", *at, "--old", old, "--new", new, "--json")
        )
        for new in checkpoints
        for old in checkpoints
        if old <= new
    }
    return Log(
        store, key["verifier_key"], key_file, checkpoints, latest, leaves, inclusion, consistency
    )


def flip(hex_hash: str, byte: int = 0) -> str:
    raw = bytearray.fromhex(hex_hash)
    raw[byte] ^= 0x01
    return raw.hex()


def alter_one_char(note: str, at: int = 0) -> str:
    """``note`` with the character at ``at`` of its text replaced by a different ASCII letter."""
    new = "B" if note[at] == "A" else "A"
    return note[:at] + new + note[at + 1 :]


def body(note: str) -> str:
    return note[: note.rindex("\n\n") + 1]


# --- our log, checked by Go ----------------------------------------------------------------


@pytest.fixture(scope="module")
def go_roots(go_check: GoCheck, log: Log) -> dict[int, str]:
    """Tree size -> root (hex), from checkpoints that Go opened and parsed."""
    vkey = log.verifier_key
    expected_signer = "+".join(vkey.split("+")[:2])
    roots: dict[int, str] = {}
    for size, note in log.checkpoints.items():
        opened, parsed = go_check(
            {"op": "open", "note": note, "keys": [vkey]}, {"op": "checkpoint", "text": body(note)}
        )
        assert opened["ok"], opened
        assert opened["signers"] == [expected_signer]
        assert opened["unverified"] == []
        assert opened["text"] == body(note)
        assert parsed["ok"], parsed
        assert (parsed["origin"], parsed["size"], parsed["extensions"]) == (ORIGIN, size, [])
        roots[size] = parsed["root"]
    return roots


def test_latest_checkpoint_opens_in_go(go_check: GoCheck, log: Log, go_roots: dict[int, str]):
    assert log.latest == log.checkpoints[log.size]
    opened, parsed = go_check(
        {"op": "open", "note": log.latest, "keys": [log.verifier_key]},
        {"op": "checkpoint", "text": body(log.latest)},
    )
    assert opened["ok"], opened
    assert opened["signers"] == ["+".join(log.verifier_key.split("+")[:2])]
    assert parsed["ok"], parsed
    ours = open_checkpoint(log.latest, [NoteVerifier.from_string(log.verifier_key)])
    assert ours == Checkpoint(ORIGIN, log.size, bytes.fromhex(parsed["root"]))
    assert (parsed["origin"], parsed["size"]) == (ORIGIN, log.size)
    assert parsed["root"] == go_roots[log.size]


def test_go_rejects_altered_or_foreign_checkpoints(go_check: GoCheck, log: Log):
    note = log.latest
    origin_len = len(ORIGIN)
    size_at = origin_len + 1  # first digit of the size line
    wrong_size = note[:size_at] + ("9" if note[size_at] != "9" else "8") + note[size_at + 1 :]
    # A key Go generated for the same name: its ID differs, so the signature is not "ours".
    (foreign,) = go_check({"op": "sign", "name": KEY_NAME, "text": body(note)})
    foreign_key = foreign["verifier_key"]
    cases = {
        "text altered": alter_one_char(note, 0),
        "size altered": wrong_size,
        "signature altered": note[:-10] + ("A" if note[-10] != "A" else "B") + note[-9:],
    }
    answers = go_check(
        *({"op": "open", "note": n, "keys": [log.verifier_key]} for n in cases.values())
    )
    for (what, altered), answer in zip(cases.items(), answers, strict=True):
        assert altered != note
        assert not answer["ok"], what
        with pytest.raises(SignatureError):
            open_checkpoint(altered, [NoteVerifier.from_string(log.verifier_key)])
    (opened,) = go_check({"op": "open", "note": note, "keys": [foreign_key]})
    assert not opened["ok"]
    assert opened["error_type"] == "*note.UnverifiedNoteError"
    with pytest.raises(SignatureError):
        open_checkpoint(note, [NoteVerifier.from_string(foreign_key)])


def test_inclusion_proofs_pass_go(go_check: GoCheck, log: Log, go_roots: dict[int, str]):
    (tree,) = go_check({"op": "tree", "leaves": [leaf.hex() for leaf in log.leaves]})
    assert tree["ok"], tree
    requests = []
    for (index, size), p in log.inclusion.items():
        assert (p["log"], p["index"], p["size"]) == (ORIGIN, index, size)
        # Roots of block boundaries come from signed checkpoints; the others from Go's tree.
        assert p["root"] == go_roots.get(size, tree["roots"][size - 1])
        assert p["leaf_hash"] == tree["leaf_hashes"][index]
        requests.append({"op": "inclusion", **p})
    answers = go_check(*requests)
    failed = [
        (r["index"], r["size"], a) for r, a in zip(requests, answers, strict=True) if not a["ok"]
    ]
    assert failed == []
    assert {size for _, size in log.inclusion} >= {*log.boundaries, *EXTRA_INCLUSION_SIZES}


def test_consistency_proofs_pass_go(go_check: GoCheck, log: Log, go_roots: dict[int, str]):
    requests = []
    for (old, new), p in log.consistency.items():
        assert (p["log"], p["old_size"], p["new_size"]) == (ORIGIN, old, new)
        assert (p["old_root"], p["new_root"]) == (go_roots[old], go_roots[new])
        requests.append({"op": "consistency", **p})
    answers = go_check(*requests)
    failed = [
        (r["old_size"], r["new_size"], a)
        for r, a in zip(requests, answers, strict=True)
        if not a["ok"]
    ]
    assert failed == []
    n = len(log.boundaries)
    assert len(log.consistency) == n * (n + 1) // 2


def test_go_tree_agrees_with_our_roots_and_proofs(go_check: GoCheck, log: Log):
    """Go builds the tree from the raw leaves: same leaf hashes, roots and proofs, byte for byte."""
    inclusion_pairs = sorted(log.inclusion)
    consistency_pairs = sorted(log.consistency)
    (tree,) = go_check(
        {
            "op": "tree",
            "leaves": [leaf.hex() for leaf in log.leaves],
            "inclusion": inclusion_pairs,
            "consistency": consistency_pairs,
        }
    )
    assert tree["ok"], tree
    with BlockStore.open(log.store, readonly=True) as db:
        ours = [db.root(ORIGIN, size).hex() for size in range(1, log.size + 1)]
    assert tree["roots"] == ours
    for pair, proof in zip(inclusion_pairs, tree["inclusion_proofs"], strict=True):
        assert log.inclusion[pair]["proof"] == proof, pair
    for pair, proof in zip(consistency_pairs, tree["consistency_proofs"], strict=True):
        assert log.consistency[pair]["proof"] == proof, pair


def test_go_rejects_tampered_proofs(go_check: GoCheck, log: Log):
    """The checks can fail: one flipped byte anywhere, or a wrong index or size, is rejected."""
    inclusion = log.inclusion[5, log.size]
    consistency = log.consistency[3, log.size]
    assert inclusion["proof"] and consistency["proof"]
    good_inclusion = {"op": "inclusion", **inclusion}
    good_consistency = {"op": "consistency", **consistency}
    bad: list[dict[str, Any]] = []
    for i in range(len(inclusion["proof"])):
        for byte in (0, 31):
            proof = list(inclusion["proof"])
            proof[i] = flip(proof[i], byte)
            bad.append({**good_inclusion, "proof": proof})
    bad += [
        {**good_inclusion, "leaf_hash": flip(inclusion["leaf_hash"], 7)},
        {**good_inclusion, "root": flip(inclusion["root"], 31)},
        {**good_inclusion, "index": inclusion["index"] + 1},
        # (Only the shape of the tree enters a proof: leaf 5 has the same path in trees of
        # 17..32 leaves, so a wrong size must change the shape to be detectable.)
        {**good_inclusion, "size": 8},
        {**good_inclusion, "proof": inclusion["proof"][:-1]},
        {**good_inclusion, "proof": [*inclusion["proof"], inclusion["proof"][0]]},
    ]
    for i in range(len(consistency["proof"])):
        for byte in (0, 16):
            proof = list(consistency["proof"])
            proof[i] = flip(proof[i], byte)
            bad.append({**good_consistency, "proof": proof})
    bad += [
        {**good_consistency, "old_root": flip(consistency["old_root"], 3)},
        {**good_consistency, "new_root": flip(consistency["new_root"], 3)},
        {**good_consistency, "old_size": consistency["old_size"] + 1},
        {**good_consistency, "proof": consistency["proof"][1:]},
    ]
    good = go_check(good_inclusion, good_consistency)
    assert [a["ok"] for a in good] == [True, True], good
    answers = go_check(*bad)
    accepted = [r for r, a in zip(bad, answers, strict=True) if a["ok"]]
    assert accepted == []


# --- Go's notes and keys, used by us -------------------------------------------------------

GO_KEY_NAMES = ("go.example/signer", "\u00fcn\u00efcode.example/log")


@pytest.fixture(scope="module")
def go_signed(go_check: GoCheck) -> list[dict[str, Any]]:
    """Go-generated keys (note.GenerateKey), each with a checkpoint note signed by note.Sign."""
    requests = []
    for i, name in enumerate(GO_KEY_NAMES):
        text = Checkpoint(f"{name}/tree", 40 + i, bytes(range(i, i + 32)), ("ext 1",)).to_text()
        requests.append({"op": "sign", "name": name, "text": text})
    answers = go_check(*requests)
    for request, answer in zip(requests, answers, strict=True):
        assert answer["ok"], answer
        answer["text"] = request["text"]
        answer["name"] = request["name"]
    return answers


def test_go_signed_note_opens_with_ours(go_signed: list[dict[str, Any]]):
    for signed in go_signed:
        verifier = NoteVerifier.from_string(signed["verifier_key"])
        note = SignedNote.from_text(signed["note"])
        assert note.text == signed["text"]
        assert note.verify([verifier]) == [verifier]
        assert note.to_text() == signed["note"]
        checkpoint = open_checkpoint(signed["note"], [verifier])
        assert checkpoint.to_text() == signed["text"]
        assert checkpoint.extensions == ("ext 1",)


def test_go_private_key_loads_and_signs_identically(
    go_check: GoCheck, go_signed: list[dict[str, Any]]
):
    for signed in go_signed:
        signer = Signer.from_private_string(signed["private_key"])
        assert signer.name == signed["name"]
        assert signer.to_private_string() == signed["private_key"]
        assert signer.verifier.to_string() == signed["verifier_key"]
        ours = signer.sign_note(signed["text"])
        # Ed25519 is deterministic: the same key and text give the same note, byte for byte.
        assert ours == signed["note"]
        (opened,) = go_check({"op": "open", "note": ours, "keys": [signed["verifier_key"]]})
        assert opened["ok"], opened
        assert opened["text"] == signed["text"]


def test_altered_go_note_is_rejected_by_both(go_check: GoCheck, go_signed: list[dict[str, Any]]):
    for signed in go_signed:
        vkey = signed["verifier_key"]
        text = signed["text"]
        altered = [
            alter_one_char(signed["note"], 0),  # origin
            alter_one_char(signed["note"], text.index("\n") + 1),  # size
            alter_one_char(signed["note"], len(text) - 2),  # extension line
        ]
        answers = go_check(*({"op": "open", "note": n, "keys": [vkey]} for n in altered))
        for note, answer in zip(altered, answers, strict=True):
            assert note != signed["note"]
            assert not answer["ok"]
            assert answer["error_type"] == "*note.InvalidSignatureError", answer
            with pytest.raises(SignatureError):
                SignedNote.from_text(note).verify([NoteVerifier.from_string(vkey)])


# --- key IDs -------------------------------------------------------------------------------


def test_key_ids_agree(go_check: GoCheck, log: Log, go_signed: list[dict[str, Any]]):
    # Our keygen key, read by Go: same key hash, same verifier key string.
    ours = Signer.from_file(log.key_file)
    (go_view,) = go_check({"op": "key", "private_key": ours.to_private_string()})
    assert go_view["ok"], go_view
    assert go_view["name"] == KEY_NAME
    assert go_view["verifier_key"] == log.verifier_key == ours.verifier.to_string()
    assert go_view["key_hash"] == log.verifier_key.split("+")[1] == ours.verifier.key_id.hex()
    # Go's keys, read by us.
    for signed in go_signed:
        name, hex_id, _ = signed["verifier_key"].split("+", 2)
        verifier = NoteVerifier.from_string(signed["verifier_key"])
        assert verifier.key_id.hex() == hex_id
        assert key_id(name, verifier.public_key).hex() == hex_id
        assert signed["private_key"].split("+")[3] == hex_id
    # Keys of names with odd characters, generated by us, read by Go.
    names = ["a", "log.example/with/slashes", "\u65e5\u672c.example", "x-" * 40]
    signers = [Signer.generate(name) for name in names]
    answers = go_check(*({"op": "key", "private_key": s.to_private_string()} for s in signers))
    for signer, answer in zip(signers, answers, strict=True):
        assert answer["ok"], answer
        assert answer["key_hash"] == signer.verifier.key_id.hex()
        assert answer["verifier_key"] == signer.verifier.to_string()


def test_go_opens_a_checkpoint_signed_by_both_keys_of_a_rotation(go_check: GoCheck):
    """During a key rotation's overlap a checkpoint carries the old and the new key's
    signatures (docs/FORMAT.md §2b); Go's note.Open accepts it with either key or both, and
    the rotation record itself is a signed note Go opens the same way."""
    vectors = json.loads((Path(__file__).parents[1] / "vectors" / "format.json").read_text())
    old, new = vectors["verifier_key"], vectors["rotation"]["new_verifier_key"]
    requests = [
        {"op": "open", "note": note, "keys": keys}
        for note in (vectors["rotation"]["checkpoint_note"], vectors["rotation"]["record"])
        for keys in ([old], [new], [old, new])
    ]
    answers = go_check(*requests)
    for request, answer in zip(requests, answers, strict=True):
        assert answer["ok"], (request, answer)
        want = {"+".join(k.split("+")[:2]) for k in request["keys"]}
        assert set(answer["signers"]) == want
