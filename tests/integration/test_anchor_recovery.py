"""The anchor service after a crash: it recovers its anchors from the chain (Anvil), records
them with their receipts, publishes them (Tansu), never sends a transaction that reverts, and
reports an on-chain anchor the store cannot explain without touching it.

The crash loop kills the real `auditseal anchor run` process with SIGKILL. To land kills
between sending and recording deterministically it sets the test-only hook
$AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST (a sleep right after each broadcast) and kills as soon
as the process logs the broadcast; the other kills land at random moments of a round.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment, deploy, write_record
from auditseal.anchor.errors import ChainUnavailable
from auditseal.anchor.service import AnchorService
from auditseal.store.blockstore import BlockStore
from auditseal.verifier.anchor import AnchorReceipt, verify_anchor_inclusion
from auditseal.verifier.chain import ANCHORED_TOPIC0
from tests.integration import test_anchor_service as anchor_tests
from tests.integration.test_anchor_service import (
    DEV_KEY,
    OTHER_KEY,
    ROOT,
    check_receipts,
    deployed,
    nonce,
    origin,
    root_of,
    rpc_call,
    service,
)

pytestmark = pytest.mark.chain

# The store, artifact and private chain of the anchor service's own tests.
artifact, logs, private_rpc = anchor_tests.artifact, anchor_tests.logs, anchor_tests.private_rpc

DEV_ADDRESS = ChainKey.from_hex(DEV_KEY, "key").address
OTHER_ADDRESS = ChainKey.from_hex(OTHER_KEY, "key").address


@dataclass(frozen=True)
class Seen:
    """An Anchored event as this test reads it from the chain (independently of the service)."""

    seq: int
    root: bytes
    logs: int
    tx_hash: str
    block_number: int
    block_hash: str
    sender: str


def on_chain_anchors(rpc: str, record: Deployment) -> dict[int, Seen]:
    client = ChainClient.connect(rpc)
    found: dict[int, Seen] = {}
    for entry in client.w3.eth.get_logs(
        {
            "address": record.address,  # type: ignore[typeddict-item]
            "fromBlock": record.block_number,
            "toBlock": "latest",
            "topics": [ANCHORED_TOPIC0],  # type: ignore[list-item]
        }
    ):
        seq = int.from_bytes(bytes(entry["topics"][1]), "big")
        data = bytes(entry["data"])
        tx_hash = "0x" + bytes(entry["transactionHash"]).hex()
        sender = client.w3.eth.get_transaction(tx_hash)["from"]  # type: ignore[arg-type]
        found[seq] = Seen(
            seq,
            data[:32],
            int.from_bytes(data[32:], "big"),
            tx_hash,
            int(entry["blockNumber"]),
            "0x" + bytes(entry["blockHash"]).hex(),
            str(sender),
        )
    return found


def statuses_of(rpc: str, record: Deployment, sender: str = DEV_ADDRESS) -> dict[int, int]:
    """nonce → receipt status of every mined transaction of ``sender`` after the deployment."""
    client = ChainClient.connect(rpc)
    found: dict[int, int] = {}
    for number in range(record.block_number + 1, int(client.w3.eth.block_number) + 1):
        block = client.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == sender:  # type: ignore[index]
                receipt = client.w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
                found[int(tx["nonce"])] = int(receipt["status"])  # type: ignore[index]
    return found


def mined_nonce(rpc: str, key: str = DEV_KEY) -> int:
    client = ChainClient.connect(rpc)
    address = ChainKey.from_hex(key, "key").address
    return int(client.w3.eth.get_transaction_count(address, "latest"))  # type: ignore[arg-type]


def anchor_directly(rpc: str, record: Deployment, artifact: Artifact, key: str, seq: int) -> str:
    """Another anchorer (or our key, with no intent in the store) writes a root at ``seq``."""
    client = ChainClient.connect(rpc)
    contract = client.contract(record.address, artifact.abi)
    data = contract.encode_abi("anchor", args=[seq, b"\x5a" * 32, 7])
    receipt = client.transact(
        ChainKey.from_hex(key, "key"), {"to": record.address, "data": data}, what="foreign"
    )  # type: ignore[typeddict-item]
    return receipt.tx_hash


def crash_on_record(svc: AnchorService) -> None:
    """Make ``svc`` die (SystemExit, like a kill) after sending, before the store's record."""

    def die(*_a: Any, **_k: Any) -> None:
        raise SystemExit("killed between sending and recording")

    svc.store = _Patched(svc.store, record_anchor=die)  # type: ignore[assignment]


class _Patched:
    """A store handle with some methods replaced (the crash point), the rest passed through."""

    def __init__(self, store: BlockStore, **methods: Any) -> None:
        self._store = store
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        return self._methods.get(name) or getattr(self._store, name)


# --- in-process crashes ------------------------------------------------------------------------


def test_crash_between_send_and_record_then_store_grows_is_recovered(logs, anvil_rpc, artifact):
    """The store grew before the restart, so its current state no longer gives the root on
    chain; the intent row written before sending does, and the anchor is recorded, not called
    "occupied by another root"."""
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    logs.append(1)
    crashed = service(logs, anvil_rpc, record, artifact)
    crash_on_record(crashed)
    with pytest.raises(SystemExit):
        crashed.run_once()
    assert logs.store.anchors() == [] and root_of(anvil_rpc, record, artifact, 1) != bytes(32)
    logs.append(0, 4)
    logs.append(2)
    before = nonce(anvil_rpc)
    result = service(logs, anvil_rpc, record, artifact).run_once()
    assert [(a.seq, a.status) for a in logs.store.anchors()] == [(1, "confirmed"), (2, "confirmed")]
    assert logs.store.anchor(1).tx_hash == crashed.broadcasts[0].tx_hash
    assert nonce(anvil_rpc) == before + 1  # one new anchor, nothing re-sent
    assert result.recovered == (1,) and result.action == "anchored" and result.seq == 2
    assert result.unexplained == () and result.skipped == ()
    assert [r.origin for r in logs.store.anchor_receipts(1)] == [origin(0), origin(1)]
    check_receipts(logs, anvil_rpc, record, artifact, 1)
    check_receipts(logs, anvil_rpc, record, artifact, 2)
    assert set(statuses_of(anvil_rpc, record).values()) == {1}


def test_anchor_sent_without_an_intent_is_explained_by_replaying_the_store(
    logs, anvil_rpc, artifact
):
    """A crash of a service from before intent rows (or a lost intent): the anchor's root is
    one of the store's past states, found by replaying its blocks in commit order."""
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    logs.append(1)
    crashed = service(logs, anvil_rpc, record, artifact)
    crash_on_record(crashed)
    crashed.store._methods["record_anchor_intent"] = lambda *a, **k: None  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        crashed.run_once()
    logs.append(1, 2)
    logs.append(3)
    result = service(logs, anvil_rpc, record, artifact).run_once()
    assert logs.store.anchor(1).tx_hash == crashed.broadcasts[0].tx_hash
    check_receipts(logs, anvil_rpc, record, artifact, 1)
    assert result.recovered == (1,) and result.seq == 2 and result.unexplained == ()
    assert logs.store.anchor_intents(1) == {}  # explained by the replay, not by an intent


def test_receipts_recorded_but_not_published_are_published_after_a_restart(
    logs, anvil_rpc, artifact
):
    record = deployed(anvil_rpc, artifact)
    logs.append(0)
    published: list[AnchorReceipt] = []

    class Dies:
        def publish(self, receipts: Any) -> None:
            raise SystemExit("killed between recording and publishing")

    class Keeps:
        def publish(self, receipts: Any) -> None:
            published.extend(receipts)

    crashed = service(logs, anvil_rpc, record, artifact)
    crashed.publisher = Dies()
    with pytest.raises(SystemExit):
        crashed.run_once()
    assert [a.seq for a in logs.store.anchors()] == [1] and logs.store.unpublished_anchors() == [1]
    again = service(logs, anvil_rpc, record, artifact)
    again.publisher = Keeps()
    assert again.run_once().action == "unchanged"
    assert published == logs.store.anchor_receipts(1) and logs.store.unpublished_anchors() == []


def test_own_transaction_pending_at_restart_is_awaited_not_sent_twice(logs, private_rpc, artifact):
    """The previous process broadcast anchor 1 and died before it was mined. A restart that
    sent anchor 1 again (with the grown store's root) at the next nonce would revert once both
    are mined; the service waits for its pending transaction, records it, then anchors 2."""
    record = deployed(private_rpc, artifact)
    logs.append(0)
    rpc_call(private_rpc, "evm_setAutomine", False)
    gone = service(logs, private_rpc, record, artifact, timeout=1.0, retries=1)
    with pytest.raises(ChainUnavailable, match="not mined"):
        gone.run_once()  # it gives up: its transaction stays pending, as after a kill
    logs.append(0, 2)
    done: dict[str, Any] = {}

    def restart() -> None:
        try:
            with BlockStore.open(logs.store.path) as own:
                svc = service(logs, private_rpc, record, artifact)
                svc.store = own
                done["result"] = svc.run_once()
        except BaseException as exc:  # reported by the assertion below
            done["error"] = exc

    thread = threading.Thread(target=restart)
    thread.start()
    time.sleep(1.5)  # the restarted service is waiting for the pending transaction
    assert "error" not in done, done
    rpc_call(private_rpc, "evm_mine")
    rpc_call(private_rpc, "evm_setAutomine", True)
    thread.join(30)
    assert not thread.is_alive() and "error" not in done, done
    statuses = statuses_of(private_rpc, record)
    assert list(statuses.values()) == [1, 1], statuses
    assert logs.store.anchor(1).tx_hash == gone.broadcasts[0].tx_hash
    result = done["result"]
    assert result.recovered == (1,) and result.action == "anchored" and result.seq == 2


def test_rebroadcast_is_cancelled_when_the_seq_is_taken_meanwhile(logs, private_rpc, artifact):
    """While our anchor 1 is pending, rootOf(1) becomes set (here through Anvil's storage
    cheat, so no Anchored event exists either). Rebroadcasting would revert: the service
    cancels its transaction at that nonce, reports the seq it cannot explain, anchors 2."""
    from eth_utils.crypto import keccak

    record = deployed(private_rpc, artifact)
    logs.append(0)
    rpc_call(private_rpc, "evm_setAutomine", False)
    svc = service(logs, private_rpc, record, artifact, rebroadcast_after=0.5, retries=3)
    done: dict[str, Any] = {}

    def run() -> None:
        try:
            with BlockStore.open(logs.store.path) as own:
                svc.store = own
                done["result"] = svc.run_once()
        except BaseException as exc:  # reported by the assertion below
            done["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while not svc.broadcasts and time.monotonic() < deadline:
        time.sleep(0.05)
    slot = keccak((1).to_bytes(32, "big") + (2).to_bytes(32, "big"))  # _roots[1]
    rpc_call(private_rpc, "anvil_setStorageAt", record.address, "0x" + slot.hex(), "0x" + "77" * 32)
    deadline = time.monotonic() + 20
    while len(svc.broadcasts) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    rpc_call(private_rpc, "evm_mine")  # mines the cancel, not the anchor it replaced
    rpc_call(private_rpc, "evm_setAutomine", True)
    thread.join(30)
    assert not thread.is_alive() and "error" not in done, done
    result = done["result"]
    assert result.action == "anchored" and result.seq == 2
    assert [u.anchor.seq for u in result.unexplained] == [1]
    assert "no Anchored event" in result.unexplained[0].reason
    assert root_of(private_rpc, record, artifact, 1) == b"\x77" * 32
    assert set(statuses_of(private_rpc, record).values()) == {1}
    assert [a.seq for a in logs.store.anchors()] == [2]


# --- an anchor the store cannot explain ---------------------------------------------------------


@pytest.mark.parametrize("who", ["another anchorer", "our key without an intent"])
def test_unexplained_anchor_is_reported_with_evidence_and_left_in_place(
    logs, anvil_rpc, artifact, who
):
    client = ChainClient.connect(anvil_rpc, expected_chain_id=31337)
    record = deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), artifact, [OTHER_ADDRESS])
    key, sender = (
        (OTHER_KEY, OTHER_ADDRESS) if who == "another anchorer" else (DEV_KEY, DEV_ADDRESS)
    )
    tx_hash = anchor_directly(anvil_rpc, record, artifact, key, 1)
    logs.append(0)
    svc = service(logs, anvil_rpc, record, artifact)
    result = svc.run_once()
    assert result.action == "anchored" and result.seq == 2
    (error,) = result.unexplained
    evidence = error.to_json()
    assert evidence["seq"] == 1 and evidence["root"] == "5a" * 32
    assert evidence["tx_hash"] == tx_hash and evidence["sender"] == sender
    assert evidence["block_number"] > record.block_number and evidence["block_hash"]
    assert "not explained by the store" in str(error) and tx_hash in str(error)
    assert root_of(anvil_rpc, record, artifact, 1) == b"\x5a" * 32  # never overwritten
    assert [a.seq for a in logs.store.anchors()] == [2]
    assert json.loads(json.dumps(result.to_json()))["unexplained"][0]["seq"] == 1
    # A restart starts after what the store holds: nothing re-reported, nothing sent.
    before = nonce(anvil_rpc)
    again = service(logs, anvil_rpc, record, artifact).run_once()
    assert again.action == "unchanged" and again.unexplained == ()
    assert nonce(anvil_rpc) == before
    assert set(statuses_of(anvil_rpc, record).values()) == {1}


# --- the crash loop: the real process, SIGKILLed twelve times ------------------------------------


KILLS = 12


@pytest.mark.kafka
def test_crash_loop_every_anchor_on_chain_is_recorded_and_published_none_reverted(
    logs, private_rpc, artifact, tmp_path, kafka_bootstrap, new_topic
):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    rng = random.Random(11)
    topic = new_topic(1)
    record = deployed(private_rpc, artifact)
    write_record(record, tmp_path / "deployment.json")
    # Blocks are mined by this test (every 0.2 s while `mining` is set) instead of one per
    # transaction, so that a kill can leave a transaction pending for the next process.
    rpc_call(private_rpc, "evm_setAutomine", False)
    mining, stop = threading.Event(), threading.Event()
    mining.set()

    def miner() -> None:
        while not stop.wait(0.2):
            if mining.is_set():
                rpc_call(private_rpc, "evm_mine")

    def settled() -> None:  # nothing of the anchorer pending
        deadline = time.monotonic() + 20
        while nonce(private_rpc) != mined_nonce(private_rpc) and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_for(text: str, err: Path, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 20
        while text not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.02)
        assert text in err.read_text(), err.read_text()

    mining_thread = threading.Thread(target=miner, daemon=True)
    mining_thread.start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    env = {**base, "PYTHONPATH": str(ROOT), "AUDITSEAL_CHAIN_KEY": DEV_KEY}
    argv = [
        *(sys.executable, "-c", "from auditseal.cli.main import main; main()", "anchor", "run"),
        *("--store", str(logs.store.path), "--deployment", str(tmp_path / "deployment.json")),
        *("--rpc", private_rpc, "--bootstrap", kafka_bootstrap, "--anchors-topic", topic),
        *("--interval", "0.2", "--rebroadcast-after", "5", "--backoff", "0.2"),
    ]
    started = time.monotonic()
    after_send = 0
    left_pending = False
    for kill in range(KILLS):
        logs.append(rng.randrange(3), rng.randint(1, 4))
        err = tmp_path / f"run-{kill}.log"
        hold = kill % 4 == 0  # this process's transaction will still be pending after its kill
        if hold:
            settled()
            mining.clear()
        with err.open("w") as sink:
            proc = subprocess.Popen(
                [*argv, "--metrics-listen", "off"],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env={**env, "AUDITSEAL_TEST_PAUSE_AFTER_BROADCAST": "0.5"},
            )
        try:
            if left_pending:  # found by this start, which must wait for it
                wait_for("pending transaction(s)", err, proc)
                mining.set()
            if kill % 2 == 0:  # right after a broadcast, before the record
                wait_for(": sent 0x", err, proc)
                after_send += 1
            else:  # anywhere in a round, with the store growing meanwhile
                time.sleep(rng.uniform(0.4, 1.5))
                logs.append(rng.randrange(4), 1)
                time.sleep(rng.uniform(0.0, 0.5))
            assert proc.poll() is None, err.read_text()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        left_pending = hold
    loop_seconds = time.monotonic() - started
    mining.set()
    # One clean round to catch up.
    final = subprocess.run(
        [*argv, "--once", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr

    # Every anchor on chain is in the store, confirmed, with a receipt for every log.
    chain = on_chain_anchors(private_rpc, record)
    assert sorted(chain) == list(range(1, len(chain) + 1)) and len(chain) >= KILLS // 2
    stored = logs.store.anchors()
    assert [a.seq for a in stored] == sorted(chain)
    recovered_lines = waited = 0
    for a in stored:
        on_chain = chain[a.seq]
        assert (a.status, a.root, a.tx_hash, a.block_hash) == (
            "confirmed",
            on_chain.root,
            on_chain.tx_hash,
            on_chain.block_hash,
        )
        receipts = logs.store.anchor_receipts(a.seq)
        assert len(receipts) == on_chain.logs
        for r in receipts:
            verify_anchor_inclusion(r.checkpoint, r.index, r.size, list(r.proof), on_chain.root)
    for kill in range(KILLS):
        text = (tmp_path / f"run-{kill}.log").read_text()
        recovered_lines += text.count("not in the store")
        waited += "pending transaction(s)" in text
    recovered_lines += final.stderr.count("not in the store")
    assert recovered_lines >= 1  # some kills did land between sending and recording

    # No transaction of the anchorer reverted, and every nonce it used is accounted for.
    statuses = statuses_of(private_rpc, record)
    assert set(statuses.values()) == {1}, statuses
    first = min(statuses)
    assert sorted(statuses) == list(range(first, nonce(private_rpc)))

    # Every anchor's receipts are on audit.anchors (at least once).
    want = {(r.seq, r.origin): r for a in stored for r in logs.store.anchor_receipts(a.seq)}
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: dict[tuple[int, str], AnchorReceipt] = {}
    deadline = time.monotonic() + 30
    while set(got) != set(want) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            receipt = AnchorReceipt.from_json(json.loads(msg.value()))
            got[(receipt.seq, receipt.origin)] = receipt
    consumer.close()
    assert got == want
    assert json.loads(final.stdout)["unexplained"] == []
    assert waited >= KILLS // 4  # restarts that found their predecessor's transaction pending
    stop.set()
    mining_thread.join(5)
    print(
        f"crash loop: {KILLS} kills ({after_send} right after a broadcast) in {loop_seconds:.1f} s,"
        f" {len(chain)} anchors, {recovered_lines} recovered from the chain, {waited} start(s)"
        " waited for a transaction of the previous process"
    )


def test_seq_taken_between_the_check_and_the_estimate_sends_nothing(logs, anvil_rpc, artifact):
    """The race the gas estimate closes: rootOf(1) read as empty, then written by another
    anchorer before our estimate. The estimate's AlreadyAnchored sends nothing; the round
    recovers (reports) the seq and anchors the next one."""
    client = ChainClient.connect(anvil_rpc, expected_chain_id=31337)
    record = deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), artifact, [OTHER_ADDRESS])
    logs.append(0)
    svc = service(logs, anvil_rpc, record, artifact)
    svc.recover()  # nothing on chain yet
    real_root_of = svc._root_of
    raced: list[int] = []

    def root_of_then_race(c: ChainClient, seq: int) -> bytes:
        found = real_root_of(c, seq)
        if not raced:  # the other anchorer lands right after our look
            raced.append(seq)
            anchor_directly(anvil_rpc, record, artifact, OTHER_KEY, seq)
        return found

    svc._root_of = root_of_then_race  # type: ignore[method-assign]
    before = nonce(anvil_rpc)
    result = svc.run_once()
    assert raced == [1] and result.action == "anchored" and result.seq == 2
    assert [u.anchor.seq for u in result.unexplained] == [1]
    assert nonce(anvil_rpc) == before + 1
    assert set(statuses_of(anvil_rpc, record).values()) == {1}
