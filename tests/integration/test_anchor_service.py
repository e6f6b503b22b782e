"""The anchor service (`auditseal anchor run`) against real Anvil chains, with its faults.

Tests that pause mining or reorganise the chain start their own Anvil (infra.chain), so the
session's chain stays clean. The store is built with the sealer's LogWriter; no Kafka.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.anchor.artifact import Artifact, load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment, deploy, write_record
from auditseal.anchor.errors import ChainUnavailable
from auditseal.anchor.service import AnchorService, NotAuthorised, ServiceOptions
from auditseal.infra import chain
from auditseal.infra.processes import free_port
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.verifier.anchor import verify_anchor_inclusion

pytestmark = pytest.mark.chain

# Anvil's first two default accounts (public keys, funded on every fresh Anvil).
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
ROOT = Path(__file__).resolve().parents[2]
FAST = ServiceOptions(poll=0.05, backoff=0.05, retries=3, rebroadcast_after=30.0, timeout=60.0)


def origin(i: int) -> str:
    return f"auditseal.local/audit.events/{i}"


class Logs:
    """A store with logs appended by the sealer's LogWriter."""

    def __init__(self, path: Path) -> None:
        self.store = BlockStore.open(path, create=True)
        self.writer = LogWriter(self.store, SIGNER, lambda: 42)

    def append(self, i: int, n: int = 3) -> None:
        start = self.writer.tip(origin(i)).next_position
        self.writer.append(
            origin(i),
            [Record(start + k, 1_000 + k, b"src", f"v{start + k}".encode()) for k in range(n)],
        )


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    made = Logs(tmp_path / "store.db")
    yield made
    made.store.close()


@pytest.fixture(scope="module")
def artifact() -> Artifact:
    return load_artifact()


@pytest.fixture
def private_rpc(tmp_path: Path) -> Iterator[str]:
    """An Anvil of this test only (mining paused, reorgs)."""
    service = chain.start(free_port(), tmp_path / "anvil.log")
    try:
        yield service.address
    finally:
        chain.stop(service)


def deployed(rpc: str, artifact: Artifact) -> Deployment:
    client = ChainClient.connect(rpc, expected_chain_id=31337)
    return deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), artifact)


def service(
    logs: Logs, rpc: str, record: Deployment, artifact: Artifact, key: str = DEV_KEY, **opts: Any
) -> AnchorService:
    options = ServiceOptions(**{**FAST.__dict__, **opts})
    return AnchorService(logs.store, ChainKey.from_hex(key, "key"), record, artifact, rpc, options)


def rpc_call(rpc: str, method: str, *params: Any) -> Any:
    client = ChainClient.connect(rpc)
    return client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def nonce(rpc: str, key: str = DEV_KEY) -> int:
    client = ChainClient.connect(rpc)
    address = ChainKey.from_hex(key, "key").address
    return int(client.w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]


def root_of(rpc: str, record: Deployment, artifact: Artifact, seq: int) -> bytes:
    client = ChainClient.connect(rpc)
    contract = client.contract(record.address, artifact.abi)
    return bytes(client.call(contract, "rootOf", seq, abi=artifact.abi))


def check_receipts(logs: Logs, rpc: str, record: Deployment, artifact: Artifact, seq: int) -> None:
    on_chain = root_of(rpc, record, artifact, seq)
    receipts = logs.store.anchor_receipts(seq)
    assert receipts
    for r in receipts:
        verify_anchor_inclusion(r.checkpoint, r.index, r.size, list(r.proof), on_chain)
        assert r.root == on_chain and r.contract == record.address and r.chain_id == 31337


# --- the ordinary path -----------------------------------------------------------------------


def test_nothing_changed_sends_nothing(logs, anvil_rpc, artifact):
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    svc = service(logs, anvil_rpc, record, artifact)
    first = svc.run_once()
    assert first.action == "anchored" and first.seq == 1 and first.logs == 1
    before = nonce(anvil_rpc)
    again = svc.run_once()
    assert again.action == "unchanged"
    # A new service (a restart) compares with the store, not with memory.
    assert service(logs, anvil_rpc, record, artifact).run_once().action == "unchanged"
    assert nonce(anvil_rpc) == before
    assert [a.seq for a in logs.store.anchors()] == [1]


def test_new_blocks_in_two_logs_one_transaction_and_receipts_verify(logs, anvil_rpc, artifact):
    record = deployed(anvil_rpc, artifact)
    for i in range(3):
        logs.append(i)
    svc = service(logs, anvil_rpc, record, artifact)
    assert svc.run_once().seq == 1
    check_receipts(logs, anvil_rpc, record, artifact, 1)
    before = nonce(anvil_rpc)
    logs.append(0, 2)
    logs.append(2, 5)
    result = svc.run_once()
    assert result.action == "anchored" and result.seq == 2 and result.logs == 3
    assert nonce(anvil_rpc) == before + 1 and result.broadcasts == 1
    check_receipts(logs, anvil_rpc, record, artifact, 2)
    assert result.gas_used is not None and result.gas_used <= 50_000
    # The unchanged log's receipt carries the same checkpoint as before, under the new root.
    latest = logs.store.latest_anchored_checkpoint(origin(1))
    assert latest is not None and latest.seq == 2
    assert latest.checkpoint == logs.store.anchor_receipts(1)[1].checkpoint
    assert [r.seq for r in logs.store.log_anchor_receipts(origin(0))] == [1, 2]


def test_gas_is_the_same_for_1_16_and_256_logs(tmp_path, anvil_rpc, artifact):
    record = deployed(anvil_rpc, artifact)
    gas: dict[int, int] = {}
    for n in (1, 16, 256):
        made = Logs(tmp_path / f"store-{n}.db")
        for i in range(n):
            made.append(i, 1)
        result = service(made, anvil_rpc, record, artifact).run_once()
        made.store.close()
        assert result.logs == n and result.gas_used is not None
        gas[n] = result.gas_used
    print(f"gas per anchor by number of logs: {gas}")
    assert max(gas.values()) <= 50_000
    assert max(gas.values()) - min(gas.values()) <= 12 * 4  # calldata bytes of `logs` only


def test_restart_after_sending_records_instead_of_sending_again(logs, anvil_rpc, artifact):
    """A crash between the transaction and the store's record: the next round finds the
    root under the next seq (rootOf) and records it from the Anchored event."""
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    svc = service(logs, anvil_rpc, record, artifact)
    recorded = logs.store.record_anchor
    logs.store.record_anchor = lambda *a, **k: (_ for _ in ()).throw(SystemExit("crash"))  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        svc.run_once()
    logs.store.record_anchor = recorded  # type: ignore[method-assign]
    assert logs.store.anchors() == []
    before = nonce(anvil_rpc)
    result = service(logs, anvil_rpc, record, artifact).run_once()
    assert (
        result.action == "recovered"
        and result.seq == 1
        and result.tx_hash == svc.broadcasts[0].tx_hash
    )
    assert nonce(anvil_rpc) == before
    check_receipts(logs, anvil_rpc, record, artifact, 1)


# --- faults ----------------------------------------------------------------------------------


def test_rpc_unreachable_retries_with_backoff_then_fails(logs, anvil_rpc, artifact):
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    pauses: list[float] = []
    svc = service(logs, f"http://127.0.0.1:{free_port()}", record, artifact, retries=4)
    svc._sleep = pauses.append
    with pytest.raises(ChainUnavailable, match="unreachable"):
        svc.run_once()
    assert pauses == [0.05, 0.1, 0.2]
    assert logs.store.anchors() == []
    # It catches up once the endpoint answers.
    svc.rpc_url = anvil_rpc
    assert svc.run_once().action == "anchored"


def test_not_mined_rebroadcasts_with_bumped_fees_at_the_same_nonce(logs, private_rpc, artifact):
    record = deployed(private_rpc, artifact)
    logs.append(0)
    logs.append(1)
    rpc_call(private_rpc, "evm_setAutomine", False)
    svc = service(logs, private_rpc, record, artifact, rebroadcast_after=1.0)
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            with BlockStore.open(logs.store.path) as own:  # SQLite handles stay in a thread
                svc.store = own
                done["result"] = svc.run_once()
        except BaseException as exc:  # reported by the assertion below
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while len(svc.broadcasts) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(svc.broadcasts) >= 2, done
    rpc_call(private_rpc, "evm_mine")
    thread.join(30)
    assert not thread.is_alive() and "error" not in done, done
    result = done["result"]
    assert result.action == "anchored" and result.broadcasts >= 2
    client = ChainClient.connect(private_rpc)
    first = svc.broadcasts[0]
    mined = client.w3.eth.get_transaction(result.tx_hash)
    assert mined["nonce"] == first.nonce and {b.nonce for b in svc.broadcasts} == {first.nonce}
    assert mined["maxPriorityFeePerGas"] * 10 >= first.max_priority_fee_per_gas * 11
    assert mined["maxFeePerGas"] * 10 >= first.max_fee_per_gas * 11
    assert result.tx_hash == svc.broadcasts[-1].tx_hash
    assert [a.seq for a in logs.store.anchors()] == [1]
    check_receipts(logs, private_rpc, record, artifact, 1)
    rpc_call(private_rpc, "evm_setAutomine", True)
    svc.store = logs.store
    assert svc.run_once().action == "unchanged"


def test_timed_out_transaction_is_replaced_not_doubled(logs, private_rpc, artifact):
    """Not mined within --timeout: the retried round replaces the pending transaction at the
    same nonce; once mined, the next round records it from the chain instead of sending."""
    record = deployed(private_rpc, artifact)
    logs.append(0)
    start_nonce = nonce(private_rpc)
    rpc_call(private_rpc, "evm_setAutomine", False)
    svc = service(logs, private_rpc, record, artifact, timeout=1.0, retries=2)
    with pytest.raises(ChainUnavailable, match="not mined"):
        svc.run_once()
    assert len(svc.broadcasts) == 2 and {b.nonce for b in svc.broadcasts} == {start_nonce}
    assert svc.broadcasts[1].max_fee_per_gas * 10 >= svc.broadcasts[0].max_fee_per_gas * 11
    assert logs.store.anchors() == []
    rpc_call(private_rpc, "evm_mine")
    rpc_call(private_rpc, "evm_setAutomine", True)
    result = svc.run_once()
    assert result.action == "recovered" and result.seq == 1
    assert result.tx_hash == svc.broadcasts[1].tx_hash and len(svc.broadcasts) == 2
    assert nonce(private_rpc) == start_nonce + 1
    check_receipts(logs, private_rpc, record, artifact, 1)


def test_reorg_orphans_the_anchor_and_anchors_again(logs, private_rpc, artifact):
    record = deployed(private_rpc, artifact)
    logs.append(0)
    svc = service(logs, private_rpc, record, artifact)
    first = svc.run_once()
    assert first.seq == 1
    rpc_call(private_rpc, "anvil_rollback", 1)  # the anchor's block leaves the chain
    rpc_call(private_rpc, "evm_mine")  # another block at its height
    again = svc.run_once()
    assert again.action == "anchored" and again.orphaned == (1,) and again.seq == 2
    old = logs.store.anchor(1)
    assert (old.status, old.replaced_by) == ("orphaned", 2)
    assert logs.store.anchor(2).status == "confirmed"
    statuses = [(r.seq, r.status) for r in logs.store.log_anchor_receipts(origin(0))]
    assert statuses == [(1, "orphaned"), (2, "confirmed")]
    check_receipts(logs, private_rpc, record, artifact, 2)
    assert svc.run_once().action == "unchanged"


def test_unauthorised_key_is_one_error_without_retries(logs, anvil_rpc, artifact):
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    pauses: list[float] = []
    svc = service(logs, anvil_rpc, record, artifact, key=OTHER_KEY)
    svc._sleep = pauses.append
    with pytest.raises(NotAuthorised, match="not an anchorer") as caught:
        svc.run_once()
    assert caught.value.exit_code == 2 and pauses == []
    assert logs.store.anchors() == []


UNFUNDED_KEY = "0x" + "11" * 32


@pytest.mark.parametrize("fault", ["wrong chain", "no code", "no funds"])
def test_configuration_faults_are_one_error_without_retries(logs, anvil_rpc, artifact, fault):
    from dataclasses import replace

    from auditseal.anchor.errors import AnchorError

    key = DEV_KEY
    if fault == "no funds":
        key = UNFUNDED_KEY
        extra = ChainKey.from_hex(key, "key").address
        client = ChainClient.connect(anvil_rpc)
        record = deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), artifact, [extra])
    else:
        record = deployed(anvil_rpc, artifact)
    if fault == "wrong chain":
        record = replace(record, chain_id=11155111)
    if fault == "no code":
        record = replace(record, address=record.owner)
    logs.append(0)
    pauses: list[float] = []
    svc = service(logs, anvil_rpc, record, artifact, key=key)
    svc._sleep = pauses.append
    want = {"wrong chain": "chain id", "no code": "no contract code", "no funds": "holds 0"}
    with pytest.raises(AnchorError, match=want[fault]) as caught:
        svc.run_once()
    assert caught.value.exit_code == 2 and pauses == []
    assert logs.store.anchors() == []


# --- the command -----------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path, key: str = DEV_KEY) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "anchor",
            "run",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(ROOT), "AUDITSEAL_CHAIN_KEY": key},
    )


def test_cli_once_anchors_then_exit_codes(logs, anvil_rpc, artifact, tmp_path):
    record = deployed(anvil_rpc, artifact)
    write_record(record, tmp_path / "deployment.json")
    logs.append(0)
    common = ("--store", str(logs.store.path), "--deployment", str(tmp_path / "deployment.json"))
    ok = run_cli(*common, "--rpc", anvil_rpc, "--once", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert '"action": "anchored"' in ok.stdout
    for proc in [ok]:
        assert DEV_KEY[2:] not in (proc.stdout + proc.stderr).lower()

    logs.append(0)
    started = time.monotonic()
    down = run_cli(
        *common,
        *("--rpc", f"http://127.0.0.1:{free_port()}", "--once", "--retries", "3"),
        *("--backoff", "0.1"),
        cwd=tmp_path,
    )
    assert down.returncode == 3, down.stderr
    last = down.stderr.strip().splitlines()[-1]
    assert last.startswith("auditseal: error: ") and "unreachable" in last
    assert down.stderr.count("retrying in") == 2
    assert time.monotonic() - started < 60

    denied = run_cli(*common, "--rpc", anvil_rpc, "--once", cwd=tmp_path, key=OTHER_KEY)
    assert denied.returncode == 2, denied.stderr
    lines = denied.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an anchorer" in lines[0], denied.stderr
    assert [a.seq for a in logs.store.anchors()] == [1]


@pytest.mark.kafka
def test_receipts_are_published_to_the_anchors_topic(
    logs, anvil_rpc, artifact, kafka_bootstrap, new_topic
):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from auditseal.anchor.service import KafkaPublisher
    from auditseal.verifier.anchor import AnchorReceipt

    topic = new_topic(1)
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    logs.append(1)
    svc = service(logs, anvil_rpc, record, artifact)
    svc.publisher = KafkaPublisher(kafka_bootstrap, topic)
    result = svc.run_once()
    assert result.seq is not None
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": "anchor-test",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[AnchorReceipt] = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(AnchorReceipt.from_json(json.loads(msg.value())))
            assert msg.key().decode() == got[-1].origin
    consumer.close()
    assert got == logs.store.anchor_receipts(result.seq)


def test_cli_service_loop_anchors_changes_only_and_stops_on_sigterm(
    logs, anvil_rpc, artifact, tmp_path
):
    import signal

    from auditseal.infra.processes import free_port

    record = deployed(anvil_rpc, artifact)
    write_record(record, tmp_path / "deployment.json")
    logs.append(0)
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    metrics_port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", "from auditseal.cli.main import main; main()", "anchor", "run"),
            *("--store", str(logs.store.path), "--deployment", str(tmp_path / "deployment.json")),
            *("--rpc", anvil_rpc, "--interval", "0.2"),
            *("--metrics-listen", f"127.0.0.1:{metrics_port}"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, "PYTHONPATH": str(ROOT), "AUDITSEAL_CHAIN_KEY": DEV_KEY},
    )
    try:

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 30
            while len(logs.store.anchors()) < n and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            assert len(logs.store.anchors()) == n

        wait_for(1)
        logs.append(1)
        wait_for(2)
        before = nonce(anvil_rpc)
        time.sleep(1.0)  # five intervals with nothing new
        assert nonce(anvil_rpc) == before and len(logs.store.anchors()) == 2
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert 'auditseal_anchor_rounds_total{action="anchored"} 2.0' in metrics
        assert "auditseal_anchor_last_seq 2.0" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert DEV_KEY[2:] not in (out + err).lower()
    assert [r.origin for r in logs.store.anchor_receipts(2)] == [origin(0), origin(1)]
