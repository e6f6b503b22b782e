"""Log keys inside a PKCS#11 token (SoftHSM2, a real PKCS#11 module, in a temporary token dir).

The key is generated in the token by ``auditseal keygen --pkcs11``, logs are sealed with it by
``auditseal log append`` / ``log redact`` and by a real ``seal`` worker against the broker, and
checked with the public key alone, by us and by Go's golang.org/x/mod/sumdb/note. Bad URIs, a
wrong PIN, a missing key or module: one line naming the URI field, exit 2, never the PIN.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from auditseal.infra.softhsm import SoftHsmToken
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.fsck import check_log
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.errors import SignatureError
from auditseal.verifier.note import NoteVerifier
from tests.integration.sealer_harness import (
    Feeder,
    kafka_offsets,
    make_stack,
    sealed_positions,
    stop,
    wait_until_sealed,
)
from tests.integration.test_interop_go import (  # noqa: F401  (go_check is a fixture)
    CLI,
    GoCheck,
    alter_one_char,
    body,
    go_check,
)

pytestmark = pytest.mark.hsm


def run(*args: str | Path, stdin: str = "", env: dict[str, str] | None = None):
    return subprocess.run(
        [*CLI, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def keygen(softhsm: SoftHsmToken, name: str, out: Path) -> tuple[str, str]:
    """A key made in the token by the CLI: (its --key URI, its verifier key)."""
    done = run("keygen", "--pkcs11", softhsm.uri(), "--name", name, "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    return made["pkcs11"], made["verifier_key"]


def test_keygen_makes_a_sensitive_key_inside_the_token(softhsm: SoftHsmToken, tmp_path: Path):
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    uri, vkey = keygen(softhsm, "hsm.test/keygen", tmp_path / "keys")
    # Only the public key is written; the private key has no file.
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["hsm.test_keygen.pub"]
    assert (tmp_path / "keys" / "hsm.test_keygen.pub").read_text() == vkey + "\n"
    assert NoteVerifier.from_string(vkey).name == "hsm.test/keygen"
    assert "object=hsm.test%2Fkeygen" in uri and "pin-source=file:" in uri

    # What an attacker with the PIN tries: read the private key out of the token.
    token = pkcs11.lib(softhsm.module).get_token(token_label=softhsm.label)
    with token.open(user_pin=softhsm.pin_file.read_text().strip()) as session:
        (priv,) = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "hsm.test/keygen"}
        )
        assert priv[Attribute.KEY_TYPE] == KeyType.EC_EDWARDS
        assert priv[Attribute.SENSITIVE] and priv[Attribute.NEVER_EXTRACTABLE]
        assert not priv[Attribute.EXTRACTABLE]
        assert priv[Attribute.LOCAL]  # generated in the token, not imported
        with pytest.raises(pkcs11.AttributeSensitive):
            priv[Attribute.VALUE]

    # A second key of the same name would make two keys answer one URI: refused.
    again = run("keygen", "--pkcs11", softhsm.uri(), "--name", "hsm.test/keygen", "--out", tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "auditseal: error: pkcs11 URI object=hsm.test/keygen: token=auditseal-test already "
        "holds a key of that label; refusing to make a second"
    )


def test_a_log_signed_in_the_token_verifies_with_the_public_key_here_and_in_go(
    softhsm: SoftHsmToken,
    tmp_path: Path,
    go_check: GoCheck,  # noqa: F811  (the fixture imported above)
):
    uri, vkey = keygen(softhsm, "hsm.test/log", tmp_path)
    at = ("--store", tmp_path / "store.db", "--log", "hsm.test/audit.events/0")
    checkpoints = []
    for block in range(3):
        lines = "".join(f"event {block}.{i}\n" for i in range(block + 2))
        done = run("log", "append", *at, "--key", uri, "--json", stdin=lines)
        assert done.returncode == 0, done.stderr
        checkpoints.append(json.loads(done.stdout)["checkpoint"])
    done = run(
        "log", "redact", *at, "--index", "1", "--actor", "dpo", "--reason", "r1", "--key", uri
    )
    assert done.returncode == 0, done.stderr
    checkpoints.append(run("log", "checkpoint", *at).stdout)

    # The public key alone checks the whole log: entries, tree, chain, every checkpoint.
    done = run("log", "check", *at, "--log-key", vkey)
    assert done.returncode == 0, done.stderr
    assert "OK, 4 blocks, 10 entries, 1 redacted" in done.stdout
    verifier = NoteVerifier.from_string(vkey)
    for note in checkpoints:
        open_checkpoint(note, [verifier])

    # Go's note.Open accepts every checkpoint the token signed, under the same key ID...
    answers = go_check(*({"op": "open", "note": n, "keys": [vkey]} for n in checkpoints))
    for note, answer in zip(checkpoints, answers, strict=True):
        assert answer["ok"], answer
        assert answer["signers"] == ["+".join(vkey.split("+")[:2])]
        assert answer["text"] == body(note)
    # ...and refuses one altered note, as we do.
    altered = alter_one_char(checkpoints[-1], 0)
    (answer,) = go_check({"op": "open", "note": altered, "keys": [vkey]})
    assert not answer["ok"]
    with pytest.raises(SignatureError):
        open_checkpoint(altered, [verifier])
    # A file key of the same name is another key: its checkpoints are not the token's.
    impostor = Signer.generate("hsm.test/log")
    forged = impostor.sign_note(body(checkpoints[-1]))
    (answer,) = go_check({"op": "open", "note": forged, "keys": [vkey]})
    assert not answer["ok"]
    with pytest.raises(SignatureError):
        open_checkpoint(forged, [verifier])


@pytest.mark.kafka
def test_a_seal_worker_signs_with_the_token_key(
    softhsm: SoftHsmToken,
    kafka_bootstrap,
    new_topic,
    tmp_path: Path,
    go_check: GoCheck,  # noqa: F811  (the fixture imported above)
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    stack.key_path.unlink()  # the file key make_stack writes: this worker has none
    stack.key, vkey = keygen(softhsm, "hsm.test/sealer", tmp_path / "keys")
    with Feeder(stack, rate=500) as feeder:
        time.sleep(2)
    worker = stack.start_worker(max_events=50)
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    offsets = kafka_offsets(stack.bootstrap, stack.topic)
    assert sealed_positions(stack) == offsets
    assert sum(len(o) for o in offsets.values()) == feeder.sent
    verifier = NoteVerifier.from_string(vkey)
    with BlockStore.open(stack.store_path, readonly=True) as store:
        notes = []
        for origin in store.logs():
            assert check_log(store, origin, [verifier]).blocks >= 1
            notes.append(store.latest_checkpoint(origin))
        # The worker's file-key verifier would not do: the checkpoints are the token key's.
        with pytest.raises(SignatureError, match="not signed by any pinned key"):
            check_log(store, store.logs()[0], [stack.signer.verifier])
    answers = go_check(*({"op": "open", "note": n, "keys": [vkey]} for n in notes))
    assert all(a["ok"] for a in answers), answers


# --- refusals: one line naming the field, exit 2, never the PIN -------------------------------

WRONG_PIN = "wrong-pin-5b2d41"


def _cases(softhsm: SoftHsmToken, tmp: Path) -> dict[str, tuple[str, dict[str, str], str]]:
    """case -> (--key URI, environment, what the error line must name)."""
    pin = softhsm.pin_file.read_text().strip()
    wrong = tmp / "wrong-pin"
    wrong.write_text(WRONG_PIN + "\n")
    wrong.chmod(0o600)
    loose = tmp / "loose-pin"
    loose.write_text(pin + "\n")
    loose.chmod(0o644)
    not_a_module = tmp / "not-a-module.so"
    not_a_module.write_text("not ELF\n")
    good = softhsm.uri("hsm.test/errors")
    tok, mod = f"token={softhsm.label}", f"module-path={softhsm.module}"
    return {
        "pin on the command line": (
            f"pkcs11:{tok};object=hsm.test%2Ferrors?pin-value={pin}&{mod}",
            {},
            "pkcs11 URI pin-value: refused",
        ),
        "wrong PIN": (
            good.replace(str(softhsm.pin_file), str(wrong)),
            {},
            f"pkcs11 URI pin-source=file:{wrong}: token={softhsm.label} refused the PIN",
        ),
        "PIN file readable by others": (
            good.replace(str(softhsm.pin_file), str(loose)),
            {},
            f"pkcs11 URI pin-source=file:{loose}: PIN file is accessible by group or others",
        ),
        "no PIN": (f"pkcs11:{tok};object=k?{mod}", {}, "pkcs11 URI pin-source: no PIN"),
        "wrong PIN from the environment": (
            f"pkcs11:{tok};object=hsm.test%2Ferrors?{mod}",
            {"AUDITSEAL_PKCS11_PIN": WRONG_PIN},
            "pkcs11 URI $AUDITSEAL_PKCS11_PIN: token=auditseal-test refused the PIN",
        ),
        "missing object": (
            softhsm.uri("no-such-key"),
            {},
            "pkcs11 URI object=no-such-key: no Ed25519 private key of that name",
        ),
        "missing token": (
            good.replace(f"token={softhsm.label}", "token=no-such-token"),
            {},
            "pkcs11 URI token=no-such-token: no such token",
        ),
        "missing module": (
            good.replace(softhsm.module, "/nonexistent/libpkcs11.so"),
            {},
            "pkcs11 URI module-path=/nonexistent/libpkcs11.so: no such file",
        ),
        "missing module from the environment": (
            good.split("&module-path=")[0],
            {"AUDITSEAL_PKCS11_MODULE": "/nonexistent/libpkcs11.so"},
            "AUDITSEAL_PKCS11_MODULE=/nonexistent/libpkcs11.so: no such file",
        ),
        "not a PKCS#11 module": (
            good.replace(softhsm.module, str(not_a_module)),
            {},
            f"pkcs11 URI module-path={not_a_module}: cannot load the PKCS#11 module",
        ),
        "no token attribute": (
            good.replace(f"{tok};", ""),
            {},
            "pkcs11 URI token: required",
        ),
        "no key named": (
            softhsm.uri(),
            {},
            "pkcs11 URI object: give object=LABEL or id=BYTES",
        ),
        "unsupported attribute": (
            good.replace(tok, f"{tok};slot-id=0"),
            {},
            "pkcs11 URI slot-id: not a path attribute auditseal supports",
        ),
        "public key instead": (
            good.replace(tok, f"{tok};type=public"),
            {},
            "pkcs11 URI type: must be 'private'",
        ),
    }


@pytest.fixture(scope="module")
def error_key(softhsm: SoftHsmToken, tmp_path_factory: pytest.TempPathFactory) -> str:
    return keygen(softhsm, "hsm.test/errors", tmp_path_factory.mktemp("errors"))[0]


CASE_NAMES = [
    "pin on the command line",
    "wrong PIN",
    "PIN file readable by others",
    "no PIN",
    "wrong PIN from the environment",
    "missing object",
    "missing token",
    "missing module",
    "missing module from the environment",
    "not a PKCS#11 module",
    "no token attribute",
    "no key named",
    "unsupported attribute",
    "public key instead",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_bad_key_uri_is_one_line_naming_the_field(
    softhsm: SoftHsmToken, error_key: str, tmp_path: Path, case: str
):
    uri, env, expected = _cases(softhsm, tmp_path)[case]
    pin = softhsm.pin_file.read_text().strip()
    store = ("--store", tmp_path / "store.db", "--log", "hsm.test/errors/0")
    runs = {
        "log append": run("log", "append", *store, "--key", uri, stdin="x\n", env=env),
        "seal": run("seal", "--key", uri, "--store", tmp_path / "s.db", env=env),
    }
    for command, done in runs.items():
        output = done.stdout + done.stderr
        assert done.returncode == 2, (command, output)
        assert done.stdout == "", command
        assert done.stderr.count("\n") == 1 and "Traceback" not in output, (command, output)
        assert done.stderr.startswith(f"auditseal: error: {expected}"), (command, done.stderr)
        assert pin not in output and WRONG_PIN not in output, command
    assert not (tmp_path / "store.db").exists() or _empty(tmp_path / "store.db")


def _empty(store: Path) -> bool:
    with BlockStore.open(store, readonly=True) as db:
        return db.logs() == []


def test_keygen_with_a_wrong_pin_makes_nothing(softhsm: SoftHsmToken, tmp_path: Path):
    wrong = tmp_path / "wrong-pin"
    wrong.write_text(WRONG_PIN + "\n")
    wrong.chmod(0o600)
    uri = softhsm.uri().replace(str(softhsm.pin_file), str(wrong))
    done = run("keygen", "--pkcs11", uri, "--name", "hsm.test/nokey", "--out", tmp_path / "k")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("refused the PIN (wrong PIN)")
    assert WRONG_PIN not in done.stdout + done.stderr
    assert not (tmp_path / "k" / "hsm.test_nokey.pub").exists()


# --- auditseal demo --hsm -----------------------------------------------------------------------


@pytest.mark.chain
@pytest.mark.timeout(600)
def test_the_demo_seals_with_a_key_inside_a_token(softhsm: SoftHsmToken, tmp_path: Path):
    workdir = tmp_path / "demo"
    done = run("demo", "--hsm", "--dir", workdir, "--events", "1500", "--timeout", "240", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["events_sent"] == summary["events_sealed"] == 1500
    assert summary["verify_all"] == "VALID"
    assert summary["tampered_verdict"] == "INVALID: check 1 (entries) failed"
    assert summary["monitor_alerts"] == 0
    assert summary["log_key"].startswith("pkcs11:token=auditseal-demo;object=auditseal-demo-sealer")
    state_dir = workdir / ".auditseal" / "dev"
    # No log key file anywhere: the checkpoints verify with the token key's public half.
    files = [p for p in workdir.rglob("*") if p.is_file()]
    assert [p for p in files if b"PRIVATE+KEY+" in p.read_bytes()] == []
    vkey = (state_dir / "sealer.pub").read_text().strip()
    assert vkey.startswith("auditseal-demo-sealer+")
    with BlockStore.open(workdir / ".auditseal" / "store.db", readonly=True) as store:
        for origin in store.logs():
            check_log(store, origin, [NoteVerifier.from_string(vkey)])
    # The token's PIN is in its 0600 file and nowhere else the demo wrote.
    pin_file = state_dir / "softhsm" / "pin"
    assert pin_file.stat().st_mode & 0o077 == 0
    pin = pin_file.read_text().strip().encode()
    leaks = [p for p in files if p != pin_file and pin in p.read_bytes()]
    assert leaks == [] and pin.decode() not in done.stdout + done.stderr


def test_the_demo_without_softhsm_says_what_to_install_and_starts_nothing(tmp_path: Path):
    workdir = tmp_path / "demo"
    missing = "/nonexistent/libsofthsm2.so"
    done = run("demo", "--hsm", "--dir", workdir, env={"AUDITSEAL_PKCS11_MODULE": missing})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"auditseal: error: demo --hsm: {missing}: no PKCS#11 module (SoftHSM2): "
        "apt-get install -y softhsm2; nothing was started"
    )
    assert not workdir.exists()
