"""The anchor key in an encrypted keystore and the anchorer's rotation, as real CLI processes
against real Anvil chains (the session's, and one with another chain id for the plain-file
warning).

Rotation: anchors by the old key, the owner authorises a new anchorer and revokes the old one,
anchors by the new key; `verify --all` is VALID across all of them, the revoked key's next
anchor is refused by the contract (through the service: exit 2, one line; sent directly: the
contract's NotAnchorer), and nothing it tried is recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.anchor.artifact import load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.errors import TransactionReverted
from auditseal.anchor.keystore import Passphrase
from auditseal.infra import chain
from auditseal.infra.processes import free_port, wait_until
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record

pytestmark = pytest.mark.chain

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # Anvil's #0
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PASSPHRASE = "rotate me, not the history"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
LOG_KEY = SIGNER.verifier.to_string()
AUDITSEAL = [sys.executable, "-c", "from auditseal.cli.main import main; main()"]
ROOT = Path(__file__).resolve().parents[2]


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


class Cli:
    """`auditseal ...` in ``cwd``, with no AUDITSEAL_* from the caller's environment; every run
    is checked for the secrets it must never print."""

    def __init__(self, cwd: Path, rpc: str) -> None:
        self.cwd = cwd
        self.rpc = rpc
        self.secrets = [PASSPHRASE, DEV_KEY[2:]]

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
        proc = subprocess.run(
            [*AUDITSEAL, *args],
            cwd=self.cwd,
            env={**base, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        for secret in self.secrets:
            assert secret.lower() not in (proc.stdout + proc.stderr).lower(), "a secret was printed"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: str, **env: str) -> Any:
        proc = self(*args, "--json", **env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def keystore(self, name: str, passphrase_file: Path) -> tuple[Path, str]:
        out = self.cwd / name
        made = self.ok(
            *("anchor", "keygen", "--out", str(out)),
            *("--key-passphrase-file", str(passphrase_file), "--light-kdf"),
        )
        assert out.stat().st_mode & 0o777 == 0o600
        key = ChainKey.from_file(out, Passphrase(passphrase_file))
        self.secrets.append(bytes(key._account.key).hex())  # never printed either
        assert key.address == made["address"]
        return out, made["address"]


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("auditseal: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def fund(rpc: str, address: str) -> None:
    client = ChainClient.connect(rpc)
    owner = ChainKey.from_hex(DEV_KEY, "dev key")
    client.transact(owner, {"to": address, "value": 10**18}, what="funding", gas=21_000)


class Logs:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = BlockStore.open(path, create=True)
        self.writer = LogWriter(self.store, SIGNER, lambda: 42)

    def append(self, i: int, n: int = 3) -> None:
        origin = f"auditseal.local/audit.events/{i}"
        start = self.writer.tip(origin).next_position
        records = [Record(start + k, 1_000 + k, b"src", f"v{start + k}".encode()) for k in range(n)]
        self.writer.append(origin, records)


@pytest.fixture
def world(tmp_path: Path, anvil_rpc: str) -> Iterator[tuple[Cli, Logs, Path]]:
    cli = Cli(tmp_path, anvil_rpc)
    owner = private(tmp_path / "owner.key", DEV_KEY + "\n")
    deployed = cli(
        *("anchor", "deploy", "--rpc", anvil_rpc, "--key", str(owner), "--out", "record.json")
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "warning" not in deployed.stderr  # a plain key on the dev chain: no warning
    logs = Logs(tmp_path / "store.db")
    yield cli, logs, owner
    logs.store.close()


def anchor_run(cli: Cli, keystore: Path, pw: Path) -> subprocess.CompletedProcess[str]:
    return cli(
        *("anchor", "run", "--once", "--store", "store.db", "--deployment", "record.json"),
        *("--rpc", cli.rpc, "--key", str(keystore), "--key-passphrase-file", str(pw), "--json"),
    )


def owner_sets(cli: Cli, owner: Path, verb: str, address: str) -> dict[str, Any]:
    return dict(
        cli.ok(
            *("anchor", verb, "--anchorer", address, "--deployment", "record.json"),
            *("--rpc", cli.rpc, "--key", str(owner)),
        )
    )


def test_anchors_across_an_anchorer_rotation_stay_valid(world: tuple[Cli, Logs, Path]) -> None:
    cli, logs, owner = world
    pw = private(cli.cwd / "pw", PASSPHRASE + "\n")
    old_ks, old = cli.keystore("old.json", pw)
    new_ks, new = cli.keystore("new.json", pw)
    for address in (old, new):
        fund(cli.rpc, address)

    # 1. The owner authorises the old key (the deployer is one too: revoke it, as operators
    #    who deploy with a cold owner key would).
    assert owner_sets(cli, owner, "authorise", old)["changed"] is True
    assert owner_sets(cli, owner, "revoke", DEV_ADDRESS)["changed"] is True
    assert owner_sets(cli, owner, "authorise", old)["changed"] is False  # nothing sent twice

    # 2. Two anchors by the old key, from its keystore.
    logs.append(0)
    logs.append(1)
    first = anchor_run(cli, old_ks, pw)
    assert first.returncode == 0, first.stderr
    logs.append(0)
    second = anchor_run(cli, old_ks, pw)
    assert second.returncode == 0, second.stderr
    assert [json.loads(p.stdout)["seq"] for p in (first, second)] == [1, 2]
    bundles = []
    for i in (0, 1):  # proofs handed out before the rotation, anchored by the old key
        bundles.append(f"bundle-{i}.json")
        cli.ok(
            *("bundle", "--block", "0", "--log", f"auditseal.local/audit.events/{i}"),
            *("--store", "store.db", "--out", bundles[-1]),
        )

    # 3. Rotation: authorise the new key, revoke the old one.
    added = owner_sets(cli, owner, "authorise", new)
    assert added["changed"] is True and added["tx_hash"]
    removed = owner_sets(cli, owner, "revoke", old)
    assert removed["changed"] is True and removed["authorised"] is False

    # 4. The revoked key tries again: refused before anything is sent, nothing recorded.
    logs.append(1)
    anchors_before = [(a.seq, a.status) for a in logs.store.anchors()]
    refused = anchor_run(cli, old_ks, pw)
    one_line_error(refused, 2, old, "is not an anchorer", "must authorise it first")
    assert [(a.seq, a.status) for a in logs.store.anchors()] == anchors_before
    assert logs.store.next_anchor_seq() == 3

    # ... and the contract itself refuses it (the service's check is a courtesy, not the guard).
    artifact = load_artifact()
    record = json.loads((cli.cwd / "record.json").read_text())
    client = ChainClient.connect(cli.rpc)
    contract = client.contract(record["address"], artifact.abi)
    data = contract.encode_abi("anchor", args=[3, b"\x01" * 32, 1])
    revoked = ChainKey.from_file(old_ks, Passphrase(pw))
    with pytest.raises(TransactionReverted) as caught:
        client.transact(
            revoked, {"to": record["address"], "data": data}, what="anchor 3", abi=artifact.abi
        )
    assert caught.value.error_name == "NotAnchorer" and caught.value.tx_hash is None
    assert bytes(client.call(contract, "rootOf", 3, abi=artifact.abi)) == bytes(32)

    # 5. The new key anchors the state the revoked one could not.
    third = anchor_run(cli, new_ks, pw)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["seq"] == 3

    # 6. verify --all: every block of every log VALID, anchors by both keys.
    audit = cli(
        *("verify", "--all", "--store", "store.db", "--deployment", "record.json"),
        *("--rpc", cli.rpc, "--log-key", LOG_KEY, "--json"),
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["verdict"].startswith("VALID"), report
    assert {log["verdict"].split(":")[0] for log in report["logs"]} == {"VALID"}
    assert {log["blocks"] for log in report["logs"]} == {2}
    # verify --all checks the latest anchor (the new key's); the bundles made before the
    # rotation carry the old key's anchor 2: still VALID, the revocation noted.
    for name in bundles:
        proc = cli(
            *("verify", "--bundle", name, "--deployment", "record.json", "--rpc", cli.rpc),
            *("--log-key", LOG_KEY, "--json"),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        verdict = json.loads(proc.stdout)
        assert verdict["verdict"] == "VALID", verdict
        assert old in proc.stdout and "that anchorer has since been revoked" in proc.stdout
        assert '"anchorer_authorised_now": false' in proc.stdout


def test_only_the_owner_can_rotate_and_a_bad_address_is_refused(
    world: tuple[Cli, Logs, Path],
) -> None:
    cli, _, _ = world
    pw = private(cli.cwd / "pw", PASSPHRASE)
    stranger, address = cli.keystore("stranger.json", pw)
    fund(cli.rpc, address)
    base = ("--deployment", "record.json", "--rpc", cli.rpc)
    refused = cli(
        *("anchor", "authorise", "--anchorer", address, *base),
        *("--key", str(stranger), "--key-passphrase-file", str(pw)),
    )
    one_line_error(refused, 2, f"account {address} is not the owner", DEV_ADDRESS)
    bad = cli("anchor", "revoke", "--anchorer", "0x1234", *base, "--key", str(stranger))
    one_line_error(bad, 2, "'0x1234' is not an Ethereum address")


# --- the keystore's failure paths, each a real process: exit 2, one line, no secret ----------


@pytest.fixture
def keys(tmp_path: Path, anvil_rpc: str) -> tuple[Cli, Path, Path]:
    cli = Cli(tmp_path, anvil_rpc)
    plain = private(tmp_path / "plain.key", DEV_KEY + "\n")
    pw = private(tmp_path / "pw", PASSPHRASE + "\n")
    made = cli.ok(
        *("anchor", "import-key", "--key", str(plain), "--out", "anchor.json"),
        *("--key-passphrase-file", str(pw), "--light-kdf"),
    )
    assert made["address"] == DEV_ADDRESS
    return cli, tmp_path / "anchor.json", pw


def deploy_with(cli: Cli, key: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(
        *("anchor", "deploy", "--rpc", cli.rpc, "--key", str(key), "--out", "record.json"),
        *extra,
        **env,
    )


def test_a_keystore_deploys_with_its_passphrase_from_a_file_or_the_environment(keys) -> None:
    cli, keystore, pw = keys
    by_file = deploy_with(cli, keystore, "--key-passphrase-file", str(pw))
    assert by_file.returncode == 0 and DEV_ADDRESS in by_file.stdout, by_file.stderr
    by_env = deploy_with(cli, keystore, "--force", AUDITSEAL_KEY_PASSPHRASE=PASSPHRASE)
    assert by_env.returncode == 0, by_env.stderr
    assert "warning" not in by_file.stderr + by_env.stderr


def test_every_keystore_failure_is_one_line_exit_2_without_secrets(keys) -> None:
    cli, keystore, pw = keys
    wrong = private(cli.cwd / "wrong", "not it\n")
    one_line_error(deploy_with(cli, keystore), 2, str(keystore), "no passphrase is given")
    one_line_error(
        deploy_with(cli, keystore, "--key-passphrase-file", str(wrong)),
        2,
        str(keystore),
        f"wrong passphrase (from {wrong})",
    )
    one_line_error(
        deploy_with(cli, keystore, AUDITSEAL_KEY_PASSPHRASE="not it"),
        2,
        "wrong passphrase (from $AUDITSEAL_KEY_PASSPHRASE)",
    )
    missing = cli.cwd / "nope"
    one_line_error(
        deploy_with(cli, keystore, "--key-passphrase-file", str(missing)),
        2,
        f"{missing}: cannot read passphrase file",
    )
    pw.chmod(0o640)
    one_line_error(deploy_with(cli, keystore, "--key-passphrase-file", str(pw)), 2, "chmod 600")
    pw.chmod(0o600)
    data = json.loads(keystore.read_text())
    data["crypto"]["kdf"] = "argon2"
    broken = private(cli.cwd / "broken.json", json.dumps(data))
    one_line_error(
        deploy_with(cli, broken, "--key-passphrase-file", str(pw)),
        2,
        f"{broken}: not a usable Web3 Secret Storage keystore: kdf 'argon2'",
    )
    truncated = private(cli.cwd / "truncated.json", keystore.read_text()[:80])
    one_line_error(deploy_with(cli, truncated, "--key-passphrase-file", str(pw)), 2, "not JSON")
    # The service loads the key the same way (and before the store or the chain).
    run = cli(
        *("anchor", "run", "--once", "--store", "s.db", "--key", str(keystore)),
        AUDITSEAL_KEY_PASSPHRASE="not it",
    )
    one_line_error(run, 2, "wrong passphrase")
    assert not (cli.cwd / "record.json").exists()  # nothing was deployed by any of them


def test_keygen_and_import_key_refuse_without_harm(keys) -> None:
    cli, keystore, pw = keys
    before = keystore.read_bytes()
    exists = cli("anchor", "keygen", "--out", str(keystore), "--key-passphrase-file", str(pw))
    one_line_error(exists, 2, f"{keystore}: exists")
    assert keystore.read_bytes() == before
    no_pass = cli("anchor", "keygen", "--out", "new.json")  # stdin is not a terminal
    one_line_error(no_pass, 2, "no passphrase for the new keystore")
    again = cli(
        *("anchor", "import-key", "--key", str(keystore), "--out", "x.json"),
        *("--key-passphrase-file", str(pw)),
    )
    one_line_error(again, 2, "is a keystore already")
    loose = private(cli.cwd / "loose.key", DEV_KEY)
    loose.chmod(0o644)
    opened = cli(
        *("anchor", "import-key", "--key", str(loose), "--out", "y.json"),
        *("--key-passphrase-file", str(pw)),
    )
    one_line_error(opened, 2, "accessible by group or others")
    assert not (cli.cwd / "new.json").exists() and not (cli.cwd / "x.json").exists()
    assert not (cli.cwd / "y.json").exists()


def test_a_plain_key_file_is_warned_about_outside_the_dev_chain(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "anvil.log").open("w")
    argv = [chain.find_anvil(), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "4242"]
    anvil = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        rpc = f"http://127.0.0.1:{port}"
        wait_until(lambda: chain.probe(rpc), 30, "anvil")
        cli = Cli(tmp_path, rpc)
        plain = private(tmp_path / "plain.key", DEV_KEY + "\n")
        warned = cli("anchor", "deploy", "--rpc", rpc, "--key", str(plain), "--out", "r.json")
        assert warned.returncode == 0, warned.stderr
        assert f"auditseal: warning: the chain key in {plain} is a plain, unencrypted file on " \
            "chain 4242" in warned.stderr  # fmt: skip
        pw = private(tmp_path / "pw", PASSPHRASE)
        cli.ok(
            *("anchor", "import-key", "--key", str(plain), "--out", "k.json"),
            *("--key-passphrase-file", str(pw), "--light-kdf"),
        )
        quiet = cli(
            *("anchor", "deploy", "--rpc", rpc, "--key", "k.json", "--out", "r.json", "--force"),
            *("--key-passphrase-file", str(pw)),
        )
        assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
    finally:
        anvil.terminate()
        anvil.wait(10)
        log.close()


def test_a_key_revoked_while_the_service_runs_is_refused_and_nothing_recorded(
    world: tuple[Cli, Logs, Path],
) -> None:
    from auditseal.anchor.deploy import read_record
    from auditseal.anchor.service import AnchorService, NotAuthorised, ServiceOptions

    cli, logs, owner = world
    pw = private(cli.cwd / "pw", PASSPHRASE)
    keystore, address = cli.keystore("anchorer.json", pw)
    fund(cli.rpc, address)
    owner_sets(cli, owner, "authorise", address)
    record = read_record(cli.cwd / "record.json")
    key = ChainKey.from_file(keystore, Passphrase(pw))
    options = ServiceOptions(poll=0.05, backoff=0.05, retries=2, timeout=60.0)
    service = AnchorService(logs.store, key, record, load_artifact(), cli.rpc, options)
    assert service.take_lead()
    logs.append(0)
    assert service.run_once().seq == 1  # checked isAnchorer at its start, and anchored
    owner_sets(cli, owner, "revoke", address)
    logs.append(0)
    with pytest.raises(NotAuthorised, match=f"{address} is no longer an anchorer") as caught:
        service.run_once()
    assert caught.value.exit_code == 2 and "nothing was sent" in str(caught.value)
    assert [(a.seq, a.status) for a in logs.store.anchors()] == [(1, "confirmed")]
