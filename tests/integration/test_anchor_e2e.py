"""Issue 5 "Done when", end to end with the real commands in a temporary working directory.

`auditseal dev up` (Tansu and Anvil on free ports, AuditAnchor deployed by `up`), `auditseal
keygen`, events through the Emitter into audit.events, `auditseal seal` until every offset is
sealed, then `auditseal anchor run --once` with no flags but --store: the RPC URL, the key and
the deployment record all come from the dev stack. Every log's latest anchored checkpoint must
verify against the root read back from the contract (`rootOf(seq)` by eth_call), and that root
must be the aggregate over all logs' checkpoint bodies. `auditseal dev down` always runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditseal.anchor.artifact import Artifact, load_artifact
from auditseal.anchor.chain_client import ChainClient
from auditseal.infra import processes, state
from auditseal.ingest import events
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.verifier.anchor import build_aggregate, checkpoint_body, verify_anchor_inclusion
from auditseal.verifier.checkpoint import open_checkpoint
from tests.integration.sealer_harness import Stack, check_exactly_once, wait_until_sealed

pytestmark = [pytest.mark.kafka, pytest.mark.chain]

AUDITSEAL = Path(sys.executable).with_name("auditseal")
STATE = Path(".auditseal") / "dev" / "state.json"
RECORD = Path(".auditseal") / "anchor" / "deployment.json"
DEV_KEY_HEX = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ORIGIN_PREFIX = "auditseal.local/audit.events/"
SOURCES = [f"proxy://e2e-{i}" for i in range(8)]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    env["AUDITSEAL_BROKER"] = "tansu"
    return env


def auditseal(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(AUDITSEAL), *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert DEV_KEY_HEX not in (proc.stdout + proc.stderr).lower(), "the chain key was printed"
    return proc


def two_free_ports() -> tuple[int, int]:
    first = processes.free_port()
    second = processes.free_port()
    while second == first:
        second = processes.free_port()
    return first, second


def feed(bootstrap: str, state_dir: Path, count: int) -> None:
    """``count`` events from the 8 sources, round robin, through the Emitter (acks=all)."""
    from auditseal.ingest.emitter import Emitter

    emitter = Emitter(bootstrap, state_dir, topic="audit.events")
    for n in range(count):
        source = SOURCES[n % len(SOURCES)]

        def build(seq: int, source: str = source) -> dict[str, Any]:
            return events.api_activity(
                source,
                seq,
                {"name": "alice"},
                "GET",
                {"name": f"/doc/{seq}"},
                "success",
                "10.0.0.7",
            )

        emitter.emit_with(source, build)
    assert emitter.close(60) == 0


def start_sealer(cwd: Path, key: Path) -> subprocess.Popen[bytes]:
    log = open(cwd / "sealer.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [
            str(AUDITSEAL),
            *("seal", "--key", str(key), "--store", "store.db"),
            *("--metrics-listen", "off", "--session-timeout", "3"),
            *("--max-events", "100", "--max-interval", "0.3", "--log-level", "warn"),
        ],
        cwd=cwd,
        env=environment(),  # the bootstrap comes from the dev stack's state file
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def anchor_once(cwd: Path) -> dict[str, Any]:
    proc = auditseal(cwd, "anchor", "run", "--store", "store.db", "--once", "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


class Chain:
    def __init__(self, rpc: str, address: str, artifact: Artifact) -> None:
        self.client = ChainClient.connect(rpc, expected_chain_id=31337)
        self.artifact = artifact
        self.contract = self.client.contract(address, artifact.abi)

    def root_of(self, seq: int) -> bytes:
        """``rootOf(seq)`` by eth_call: the root a verifier trusts, not the receipt's copy."""
        return bytes(self.client.call(self.contract, "rootOf", seq, abi=self.artifact.abi))

    def nonce(self) -> int:
        return int(self.client.w3.eth.get_transaction_count(DEV_ADDRESS, "pending"))  # type: ignore[arg-type]

    def block_number(self) -> int:
        return int(self.client.w3.eth.block_number)

    def block_hash(self, number: int) -> str:
        return "0x" + bytes(self.client.w3.eth.get_block(number)["hash"]).hex()


def check_anchored(store_path: Path, chain: Chain, signer: Signer, seq: int) -> dict[str, str]:
    """Every log's latest anchored checkpoint is its latest checkpoint, is in anchor ``seq``
    and verifies against ``rootOf(seq)``; that root is the aggregate over all logs' bodies.
    Returns the anchored bodies by origin."""
    on_chain = chain.root_of(seq)
    assert on_chain != bytes(32)
    bodies: dict[str, str] = {}
    with BlockStore.open(store_path, readonly=True) as store:
        logs = store.logs()
        assert logs and all(o.startswith(ORIGIN_PREFIX) for o in logs)
        stored = store.anchor(seq)
        assert stored.status == "confirmed" and bytes(stored.root) == on_chain
        assert chain.block_hash(stored.block_number) == stored.block_hash
        for origin in logs:
            signed = store.latest_checkpoint(origin)
            open_checkpoint(signed, [signer.verifier])  # signed by the sealer's key
            receipt = store.latest_anchored_checkpoint(origin)
            assert receipt is not None, f"{origin} has no anchor"
            assert receipt.seq == seq and receipt.status == "confirmed"
            assert receipt.checkpoint == checkpoint_body(signed), f"{origin}: not its latest"
            assert receipt.contract == chain.contract.address and receipt.chain_id == 31337
            verify_anchor_inclusion(
                receipt.checkpoint, receipt.index, receipt.size, list(receipt.proof), on_chain
            )
            bodies[origin] = receipt.checkpoint
        assert len(store.anchor_receipts(seq)) == len(logs)
    assert build_aggregate(list(bodies.values())).root == on_chain
    return bodies


def sizes(bodies: dict[str, str]) -> dict[str, int]:
    return {origin: int(body.split("\n")[1]) for origin, body in bodies.items()}


def test_seal_and_anchor_every_log_through_the_dev_stack(tmp_path: Path) -> None:
    cwd = tmp_path
    broker_port, chain_port = two_free_ports()
    try:
        up = auditseal(
            cwd, "dev", "up", "--broker-port", str(broker_port), "--chain-port", str(chain_port)
        )
        assert up.returncode == 0, up.stderr
        assert "contract: AuditAnchor deployed at" in up.stdout, up.stdout
        bootstrap, rpc = state.endpoints(cwd / STATE)
        record = json.loads((cwd / RECORD).read_text())
        chain = Chain(rpc, record["address"], load_artifact())

        keygen = auditseal(cwd, "keygen", "--name", "sealer.e2e", "--out", "keys", "--json")
        assert keygen.returncode == 0, keygen.stderr
        key = cwd / json.loads(keygen.stdout)["key_file"]
        signer = Signer.from_file(key)
        stack = Stack(bootstrap, "audit.events", "audit.sealed", cwd, signer)
        assert stack.store_path == cwd / "store.db"

        feed(bootstrap, cwd / "emitter", 600)
        sealer = start_sealer(cwd, key)
        try:
            first_offsets = wait_until_sealed(stack, timeout=120)
            assert check_exactly_once(stack) == 600

            first = anchor_once(cwd)
            assert first["action"] == "anchored" and first["seq"] == 1, first
            anchored_1 = check_anchored(stack.store_path, chain, signer, 1)
            assert first["logs"] == len(anchored_1)
            assert sum(sizes(anchored_1).values()) == 600

            feed(bootstrap, cwd / "emitter", 300)  # same state dir: sequences continue
            offsets = wait_until_sealed(stack, timeout=120)
            assert check_exactly_once(stack) == 900
        finally:
            stop(sealer)
        assert "Traceback" not in (cwd / "sealer.log").read_text()

        second = anchor_once(cwd)
        assert second["action"] == "anchored" and second["seq"] == 2, second
        anchored_2 = check_anchored(stack.store_path, chain, signer, 2)
        assert sum(sizes(anchored_2).values()) == 900
        # Seq 2 covers the new checkpoints: exactly the logs that got events since seq 1 grew.
        grew = {o for o, n in sizes(anchored_2).items() if n > sizes(anchored_1).get(o, 0)}
        fed = {
            f"{ORIGIN_PREFIX}{p}"
            for p, o in offsets.items()
            if len(o) > len(first_offsets.get(p, []))
        }
        assert grew == fed and grew
        assert chain.root_of(1) != chain.root_of(2)
        with BlockStore.open(stack.store_path, readonly=True) as store:
            assert [a.seq for a in store.anchors()] == [1, 2]

        nonce, block = chain.nonce(), chain.block_number()
        third = anchor_once(cwd)
        assert third["action"] == "unchanged", third
        assert (chain.nonce(), chain.block_number()) == (nonce, block), "a transaction was sent"
        assert chain.root_of(3) == bytes(32)
    finally:
        down = auditseal(cwd, "dev", "down")
        assert down.returncode == 0, down.stderr
    assert not (cwd / RECORD).exists()
    assert processes.port_is_free(broker_port) and processes.port_is_free(chain_port)
