"""`auditseal anchor deploy` as users run it (a subprocess) against the session's Anvil.

The command runs through the root `auditseal` entry point. Every test also
checks that the private key never appears in what the command prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditseal.anchor.artifact import load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.infra.processes import free_port

pytestmark = pytest.mark.chain

# Anvil's first default account (funded with 10,000 ETH on every fresh Anvil).
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
OTHER_ANCHORER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ROOT = Path(__file__).resolve().parents[2]

ENTRY = ["-c", "from auditseal.cli.main import main; main()", "anchor"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    proc = subprocess.run(
        [sys.executable, *ENTRY, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    return proc


def assert_no_key(proc: subprocess.CompletedProcess, key: str) -> None:
    printed = (proc.stdout + proc.stderr).lower()
    assert key.lower().removeprefix("0x") not in printed


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auditseal: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def key_file(path: Path, key: str = DEV_KEY, mode: int = 0o600) -> Path:
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def test_deploy_writes_the_record_and_the_contract_is_the_artifact(anvil_rpc, tmp_path):
    key = key_file(tmp_path / "chain.key")
    out = tmp_path / "records" / "deployment.json"
    proc = run(
        "deploy",
        *("--rpc", anvil_rpc, "--key", str(key), "--out", str(out)),
        *("--anchorer", OTHER_ANCHORER.lower(), "--chain-id", "31337", "--json"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_key(proc, DEV_KEY)
    printed = json.loads(proc.stdout)
    record = json.loads(out.read_text())
    assert printed == {**record, "record_file": str(out)}
    artifact = load_artifact()
    assert record["format"] == "auditseal-anchor-deployment-1"
    assert record["chain_id"] == 31337
    assert record["owner"] == DEV_ADDRESS
    assert record["anchorers"] == [DEV_ADDRESS, OTHER_ANCHORER]
    assert record["compiler_version"] == artifact.compiler_version
    artifact_file = ROOT / "anchor" / "contracts" / "AuditAnchor.json"
    assert record["artifact_sha256"] == hashlib.sha256(artifact_file.read_bytes()).hexdigest()

    # The chain agrees with the record.
    client = ChainClient.connect(anvil_rpc)
    assert client.code(record["address"]) == artifact.deployed_bytecode
    receipt = client.w3.eth.get_transaction_receipt(record["tx_hash"])
    assert receipt["contractAddress"] == record["address"]
    assert receipt["blockNumber"] == record["block_number"]
    assert receipt["gasUsed"] == record["gas_used"]
    assert receipt["type"] == 2  # EIP-1559
    contract = client.contract(record["address"], artifact.abi)
    assert contract.functions.owner().call() == DEV_ADDRESS
    assert contract.functions.isAnchorer(OTHER_ANCHORER).call() is True
    assert contract.functions.rootOf(0).call() == bytes(32)


def test_the_default_record_is_never_overwritten_without_force(anvil_rpc, tmp_path):
    key = key_file(tmp_path / "chain.key")
    first = run("deploy", "--rpc", anvil_rpc, "--key", str(key), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    record_file = tmp_path / ".auditseal" / "anchor" / "deployment.json"
    address = json.loads(record_file.read_text())["address"]
    assert address in first.stdout
    assert "record written to .auditseal/anchor/deployment.json" in first.stdout
    assert_no_key(first, DEV_KEY)

    again = run("deploy", "--rpc", anvil_rpc, "--key", str(key), cwd=tmp_path)
    assert_one_line_error(again, 2, "--force", address)
    assert json.loads(record_file.read_text())["address"] == address

    forced = run("deploy", "--rpc", anvil_rpc, "--key", str(key), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(record_file.read_text())["address"] != address


def test_the_key_may_come_from_the_environment(anvil_rpc, tmp_path):
    proc = run(
        "deploy",
        *("--rpc", anvil_rpc, "--out", "d.json"),
        cwd=tmp_path,
        env={"AUDITSEAL_CHAIN_KEY": DEV_KEY},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "d.json").read_text())["owner"] == DEV_ADDRESS
    assert_no_key(proc, DEV_KEY)


def test_an_unreachable_rpc_is_exit_3_in_one_line_without_the_url_path(tmp_path):
    key = key_file(tmp_path / "chain.key")
    url = f"http://127.0.0.1:{free_port()}/v3/secret-api-key"
    proc = run("deploy", "--rpc", url, "--key", str(key), cwd=tmp_path)
    line = assert_one_line_error(proc, 3, "unreachable", "connection refused")
    assert "secret-api-key" not in line
    assert_no_key(proc, DEV_KEY)
    assert not (tmp_path / ".auditseal").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_readable_by_others_is_refused(anvil_rpc, tmp_path, mode):
    key = key_file(tmp_path / "chain.key", mode=mode)
    proc = run("deploy", "--rpc", anvil_rpc, "--key", str(key), cwd=tmp_path)
    assert_one_line_error(proc, 2, "accessible by group or others", "chmod 600")
    assert_no_key(proc, DEV_KEY)
    assert not (tmp_path / ".auditseal").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "cannot read key file"),
        (DEV_KEY[:-1], "not a hex private key"),  # one digit short: still never echoed
        (DEV_KEY[:-1] + "g", "not a hex private key"),
        ("0x" + "00" * 32, "not a valid secp256k1 private key"),
        ("", "not a hex private key"),
    ],
)
def test_a_missing_or_malformed_key_is_exit_2(anvil_rpc, tmp_path, content, needle):
    path = tmp_path / "chain.key"
    if content is not None:
        key_file(path, content)
    proc = run("deploy", "--rpc", anvil_rpc, "--key", str(path), cwd=tmp_path)
    assert_one_line_error(proc, 2, needle)
    if content:
        assert_no_key(proc, content)


def test_no_key_at_all_says_how_to_give_one(anvil_rpc, tmp_path):
    proc = run("deploy", "--rpc", anvil_rpc, cwd=tmp_path)
    assert_one_line_error(proc, 2, "--key", "AUDITSEAL_CHAIN_KEY")


def test_a_key_without_funds_is_refused_before_sending(anvil_rpc, tmp_path):
    fresh = "0x" + os.urandom(32).hex()
    address = ChainKey.from_hex(fresh, "test").address
    key = key_file(tmp_path / "chain.key", fresh)
    proc = run("deploy", "--rpc", anvil_rpc, "--key", str(key), cwd=tmp_path)
    assert_one_line_error(proc, 2, address, "holds 0 ETH", "fund the account")
    assert_no_key(proc, fresh)
    client = ChainClient.connect(anvil_rpc)
    assert client.w3.eth.get_transaction_count(address) == 0  # nothing was sent
    assert not (tmp_path / ".auditseal").exists()


def test_a_wrong_chain_id_is_refused_before_sending(anvil_rpc, tmp_path):
    key = key_file(tmp_path / "chain.key")
    proc = run(
        "deploy", "--rpc", anvil_rpc, "--key", str(key), "--chain-id", "11155111", cwd=tmp_path
    )
    assert_one_line_error(proc, 2, "31337", "expected 11155111")
    assert not (tmp_path / ".auditseal").exists()


def test_a_base_fee_above_the_cap_is_exit_3(anvil_rpc, tmp_path):
    key = key_file(tmp_path / "chain.key")
    proc = run(
        "deploy", "--rpc", anvil_rpc, "--key", str(key), "--max-fee-gwei", "1e-9", cwd=tmp_path
    )
    assert_one_line_error(proc, 3, "--max-fee-gwei")


def test_a_bad_anchorer_address_is_exit_2(anvil_rpc, tmp_path):
    key = key_file(tmp_path / "chain.key")
    proc = run(
        "deploy", "--rpc", anvil_rpc, "--key", str(key), "--anchorer", "0x1234", cwd=tmp_path
    )
    assert_one_line_error(proc, 2, "'0x1234' is not an Ethereum address")


# --- pure parts, no chain needed --------------------------------------------------------------


def test_the_cli_defaults_match_the_modules_it_avoids_importing():
    from auditseal.anchor import chain_client, cli, deploy

    assert cli.DEFAULT_RPC == chain_client.DEFAULT_RPC
    assert cli.DEFAULT_RECORD == deploy.DEFAULT_RECORD


def test_a_chain_key_shows_only_its_address():
    key = ChainKey.from_hex(DEV_KEY, "test")
    assert repr(key) == str(key) == f"ChainKey({DEV_ADDRESS})"
    assert not hasattr(key, "__dict__")
