"""`auditseal monitor` against the real broker, the real sealer and real Anvil chains.

Each test makes a stream with one kind of trouble (a source skipping a number, forged blocks on
the sealed topic, anchors stopped or reorganised away) and asserts the alerts the monitor, run
as the CLI with --once, prints, posts and publishes. The last one seals 100,000 simulated
events and anchors them, and the monitor must raise nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.anchor.artifact import load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment, deploy, write_record
from auditseal.anchor.service import AnchorService, KafkaPublisher, ServiceOptions
from auditseal.infra import chain
from auditseal.infra.processes import free_port
from auditseal.ingest import events
from auditseal.ingest.envelope import encode_event
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.block import GENESIS_HASH, BlockHeader
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.leaf import Entry
from auditseal.verifier.merkle import root as merkle_root
from auditseal.verifier.sealed import entry_item
from tests.integration.sealer_harness import (
    Stack,
    make_stack,
    sealed_stream,
    stop,
    wait_until_sealed,
)

pytestmark = pytest.mark.kafka

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ROOT = Path(__file__).resolve().parents[2]
FAST = ServiceOptions(poll=0.05, backoff=0.05, retries=3, rebroadcast_after=30.0, timeout=60.0)


@dataclass
class Run:
    code: int
    alerts: list[dict[str, Any]]
    stderr: str
    seconds: float
    metrics: str = ""

    def kinds(self) -> list[str]:
        return sorted(a["kind"] for a in self.alerts)


def run_monitor(
    stack: Stack, anchors_topic: str, *args: str, timeout: float = 900, metrics_port: int = 0
) -> Run:
    """Run ``auditseal monitor --once``; with ``metrics_port``, scrape it while it runs."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "monitor",
            *("--bootstrap", stack.bootstrap),
            *("--sealed-topic", stack.sealed_topic),
            *("--anchors-topic", anchors_topic),
            *("--log-key", stack.signer.verifier.to_string()),
            *("--metrics-listen", f"127.0.0.1:{metrics_port}" if metrics_port else "off"),
            "--once",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=stack.workdir,
        env={**os.environ, "AUDITSEAL_DEV_STATE": str(stack.workdir / "no-dev-state.json")},
    )
    metrics = ""
    while metrics_port and proc.poll() is None and time.monotonic() < started + timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
                metrics = r.read().decode()
        except OSError:
            pass
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=timeout)
    alerts = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    for a in alerts:
        assert set(a) == {"kind", "severity", "log", "block", "detail", "time"}, a
    return Run(proc.returncode, alerts, stderr, time.monotonic() - started, metrics)


def read_topic(bootstrap: str, topic: str, want: int, timeout: float = 30) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "monitor-test", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append((msg.key().decode(), json.loads(msg.value())))
    consumer.close()
    return got


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def event(source: str, seq: int, user: str = "bob", id: str | None = None) -> bytes:
    return encode_event(
        events.api_activity(
            source, seq, {"name": user}, "GET", {"name": "/x"}, "success", "10.0.0.9", id=id
        )
    )


def seal(stack: Stack, records: list[tuple[bytes, bytes]]) -> None:
    """Send ``records`` (key, value) to the events topic and run a sealer until all are in."""
    produce(stack.bootstrap, stack.topic, records)
    worker = stack.start_worker(max_events=50, max_interval=0.2)
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)


def origin_of(stack: Stack, source: str) -> str:
    """The log holding ``source``'s events (Kafka key = source)."""
    with BlockStore.open(stack.store_path, readonly=True) as store:
        for origin in store.logs():
            for e in store.entries(origin, 0, store.size(origin)):
                if e.key == source.encode():
                    return origin
    raise AssertionError(f"no log holds {source}")


@dataclass
class Hook:
    """A real HTTP endpoint that refuses the first POST (HTTP 500) and accepts the rest."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.refused == 0:
                    hook.refused += 1
                    self.send_response(500)
                else:
                    hook.posts.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[Hook]:
    made = Hook()
    yield made
    made.server.shutdown()


# --- sequences, webhook, alerts topic ----------------------------------------------------------


def test_sequence_gap_and_duplicate_alert_everywhere_and_a_replay_does_not(
    kafka_bootstrap, new_topic, tmp_path, hook
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    replayed = event("proxy://c", 1)
    seal(
        stack,
        [
            (b"proxy://a", event("proxy://a", 1)),
            (b"proxy://a", event("proxy://a", 2)),
            (b"proxy://a", event("proxy://a", 4)),  # 3 lost before Kafka
            (b"proxy://b", event("proxy://b", 1)),
            (b"proxy://b", event("proxy://b", 2, user="bob")),
            (b"proxy://b", event("proxy://b", 2, user="mallory")),  # same number, other content
            (b"proxy://c", replayed),
            (b"proxy://c", replayed),  # an at-least-once redelivery: not an alert
            (b"proxy://c", event("proxy://c", 2)),
        ],
    )
    anchors, alerts_topic = new_topic(1), new_topic(1)
    run = run_monitor(
        stack,
        anchors,
        "--no-chain",
        "--check-interval",
        "0.5",
        *("--idle-exit", "4"),
        *("--alerts-topic", alerts_topic),
        *("--webhook", hook.url),
        *("--anchor-late-after", "3600"),
        metrics_port=free_port(),
    )
    assert run.code == 1, run.stderr
    assert run.kinds() == ["sequence_duplicate", "sequence_gap"], run.alerts
    by_kind = {a["kind"]: a for a in run.alerts}
    gap, dup = by_kind["sequence_gap"], by_kind["sequence_duplicate"]
    assert (gap["severity"], gap["log"]) == ("warning", origin_of(stack, "proxy://a"))
    assert "source proxy://a: sequence 3 missing (1 events), next seen is 4" in gap["detail"]
    assert isinstance(gap["block"], int)
    assert (dup["severity"], dup["log"]) == ("critical", origin_of(stack, "proxy://b"))
    assert "source proxy://b: sequence 2 sealed twice with different content" in dup["detail"]
    assert "1 replayed event(s)" in run.stderr
    # The webhook refused the first POST; the retry delivered it, and the second alert too.
    deadline = time.monotonic() + 10
    while len(hook.posts) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hook.refused == 1
    assert sorted(hook.posts, key=lambda a: a["kind"]) == sorted(
        run.alerts, key=lambda a: a["kind"]
    )
    # Metrics, scraped while it ran.
    assert 'auditseal_monitor_alerts_total{kind="sequence_gap"} 1.0' in run.metrics
    assert 'auditseal_monitor_alerts_total{kind="sequence_duplicate"} 1.0' in run.metrics
    assert 'auditseal_monitor_alerts_total{kind="fork"} 0.0' in run.metrics
    assert "auditseal_monitor_events_checked_total 9.0" in run.metrics
    assert "auditseal_monitor_replayed_events_total 1.0" in run.metrics
    assert re.search(r"auditseal_monitor_blocks_checked_total [1-9]", run.metrics)
    assert re.search(r"auditseal_monitor_last_block_time_seconds 1\.\d+e\+09", run.metrics)
    published = read_topic(kafka_bootstrap, alerts_topic, 2)
    assert sorted(published, key=lambda kv: kv[1]["kind"]) == [
        (dup["log"], dup),
        (gap["log"], gap),
    ]


def test_one_event_id_published_from_two_sources_is_event_id_reused(
    kafka_bootstrap, new_topic, tmp_path
):
    # The holder of one source's gateway token publishes an event carrying another source's
    # event id; each event is valid and its source is its token's, so the gateway takes both.
    from tests.integration.test_gateway import SOURCE, start_gateway

    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    gw = start_gateway(kafka_bootstrap, stack.topic, tmp_path)
    victim, attacker = SOURCE, "proxy://other"
    genuine = event(victim, 1, id="evt-7f3a")
    try:
        for token_of, value in (
            (victim, genuine),
            (victim, genuine),  # a client retry: the same event again, not an alert
            (victim, event(victim, 2)),
            (attacker, event(attacker, 1, user="mallory", id="evt-7f3a")),
            (attacker, event(attacker, 2)),
        ):
            status, body, _ = gw.request("POST", "/v1/events", value, gw.tokens[token_of])
            assert status == 202, body
    finally:
        gw.proc.terminate()
        gw.proc.wait(10)
    worker = stack.start_worker(max_events=50, max_interval=0.2)
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    run = run_monitor(stack, new_topic(1), "--no-chain", "--anchor-late-after", "3600")
    assert run.code == 1, run.stderr
    [alert] = run.alerts
    assert (alert["kind"], alert["severity"]) == ("event_id_reused", "critical")
    # Whichever log the monitor read first, the alert names the id and both sources.
    assert "event id evt-7f3a sealed from source" in alert["detail"]
    assert victim in alert["detail"] and attacker in alert["detail"]
    assert alert["log"] in {origin_of(stack, victim), origin_of(stack, attacker)}
    assert "1 replayed event(s)" in run.stderr


# --- forged blocks -----------------------------------------------------------------------------


def message_for(template: dict[str, Any], header: BlockHeader, checkpoint: str, items: list[Any]):
    return {
        **template,
        "block": header.number,
        "start": header.start,
        "end": header.end,
        "root": header.root.hex(),
        "sealed_at_ms": header.sealed_at_ms,
        "prev_hash": header.prev_hash.hex(),
        "hash": header.hash().hex(),
        "header": header.to_text(),
        "checkpoint": checkpoint,
        "part": 0,
        "parts": 1,
        "entries": items,
    }


def test_forged_blocks_on_the_sealed_topic_and_a_republish(kafka_bootstrap, new_topic, tmp_path):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=1)
    seal(stack, [(b"proxy://a", event("proxy://a", i)) for i in range(1, 121)])
    messages = sealed_stream(stack)
    first = next(m for m in messages if m["block"] == 0 and m["part"] == 0)
    assert first["parts"] == 1
    origin = first["log"]
    header0 = BlockHeader.from_text(first["header"])
    body0 = Checkpoint(origin, header0.end, header0.root).to_text()

    # 1. block 0 re-signed with another key (same name, so only the signature is wrong)
    impostor = Signer(stack.signer.name, Ed25519PrivateKey.generate())
    resigned = {**first, "checkpoint": impostor.sign_note(body0)}
    # 2. block 0 with one entry's value changed (its commitment no longer opens)
    changed_entries = [dict(e) for e in first["entries"]]
    changed_entries[0]["value_b64"] = base64.b64encode(event("proxy://a", 1, "eve")).decode()
    changed = {**first, "entries": changed_entries}
    # 3. a validly signed rival block 0: the log key signed two histories
    rival_entries = [
        Entry.seal(origin, i, 1_000, b"proxy://a", event("proxy://a", i + 1, "eve"), os.urandom(16))
        for i in range(header0.size)
    ]
    rival_root = merkle_root([e.leaf_hash() for e in rival_entries])
    rival_header = BlockHeader(origin, 0, 0, header0.size, rival_root, 1_000, GENESIS_HASH)
    rival = message_for(
        first,
        rival_header,
        stack.signer.sign_note(Checkpoint(origin, header0.size, rival_root).to_text()),
        [entry_item(i, e) for i, e in enumerate(rival_entries)],
    )
    # 4. a validly signed next block whose prev hash is not its predecessor's
    with BlockStore.open(stack.store_path, readonly=True) as store:
        size = store.size(origin)
        last = list(store.blocks(origin))[-1].header
        compact = CompactRange.from_leaves([e.leaf_hash() for e in store.entries(origin, 0, size)])
    extra = Entry.seal(origin, size + 1000, 1_000, b"proxy://a", b"{}", os.urandom(16))
    compact.extend([extra.leaf_hash()])
    broken_header = BlockHeader(
        origin, last.number + 1, size, size + 1, compact.root(), 2_000, b"\x01" * 32
    )
    broken = message_for(
        first,
        broken_header,
        stack.signer.sign_note(Checkpoint(origin, size + 1, compact.root()).to_text()),
        [entry_item(size, extra)],
    )
    produce(
        kafka_bootstrap,
        stack.sealed_topic,
        [(origin.encode(), orjson.dumps(m)) for m in (first, resigned, changed, rival, broken)],
    )

    run = run_monitor(stack, new_topic(1), "--no-chain", "--alerts-topic", "")
    assert run.code == 1, run.stderr
    assert run.kinds() == ["bad_signature", "chain_break", "fork", "root_mismatch"], run.alerts
    by_kind = {a["kind"]: a for a in run.alerts}
    for kind in ("bad_signature", "fork", "root_mismatch"):
        assert (by_kind[kind]["log"], by_kind[kind]["block"]) == (origin, 0)
        assert by_kind[kind]["severity"] == "critical"
    assert "not signed by any pinned key" in by_kind["bad_signature"]["detail"]
    assert "commitment" in by_kind["root_mismatch"]["detail"]
    assert rival_root.hex() in by_kind["fork"]["detail"]
    assert header0.root.hex() in by_kind["fork"]["detail"]
    assert (by_kind["chain_break"]["log"], by_kind["chain_break"]["block"]) == (
        origin,
        last.number + 1,
    )
    assert "prev hash" in by_kind["chain_break"]["detail"]
    # --from-now reads the same history to rebuild its state but reports none of it.
    quiet = run_monitor(stack, new_topic(1), "--no-chain", "--alerts-topic", "", "--from-now")
    assert (quiet.code, quiet.alerts) == (0, []), quiet.stderr
    assert "0 alert(s)" in quiet.stderr


# --- anchors: late, reorged, not on chain ------------------------------------------------------


@pytest.fixture
def private_rpc(tmp_path: Path) -> Iterator[str]:
    """An Anvil of this test only (reorgs)."""
    service = chain.start(free_port(), tmp_path / "anvil.log")
    try:
        yield service.address
    finally:
        chain.stop(service)


def rpc_call(rpc: str, method: str, *params: Any) -> Any:
    client = ChainClient.connect(rpc)
    return client.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def deployed(rpc: str, path: Path) -> Deployment:
    client = ChainClient.connect(rpc, expected_chain_id=31337)
    record = deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), load_artifact())
    write_record(record, path)
    return record


def anchor_once(stack: Stack, rpc: str, record: Deployment, topic: str) -> int:
    with BlockStore.open(stack.store_path) as store:
        svc = AnchorService(
            store, ChainKey.from_hex(DEV_KEY, "key"), record, load_artifact(), rpc, FAST
        )
        svc.publisher = KafkaPublisher(stack.bootstrap, topic)
        result = svc.run_once()
    assert result.seq is not None
    return result.seq


@pytest.mark.chain
def test_anchor_late_reorged_and_not_on_chain(kafka_bootstrap, new_topic, tmp_path, private_rpc):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    record = deployed(private_rpc, tmp_path / "deployment.json")
    anchors = new_topic(1)
    sources = [f"proxy://s{i}" for i in range(4)]
    seq = dict.fromkeys(sources, 0)

    def batch(n: int) -> list[tuple[bytes, bytes]]:
        out = []
        for _ in range(n):
            for s in sources:
                seq[s] += 1
                out.append((s.encode(), event(s, seq[s])))
        return out

    seal(stack, batch(10))
    assert anchor_once(stack, private_rpc, record, anchors) == 1
    with BlockStore.open(stack.store_path, readonly=True) as store:
        logs = store.logs()
        [receipt] = store.anchor_receipts(1)[:1]
    # A receipt for an anchor the contract does not hold: seq 99 was never written.
    fake = AnchorReceipt(**{**receipt.__dict__, "seq": 99})
    produce(kafka_bootstrap, anchors, [(fake.origin.encode(), orjson.dumps(fake.to_json()))])

    seal(stack, batch(10))
    assert anchor_once(stack, private_rpc, record, anchors) == 2
    rpc_call(private_rpc, "anvil_rollback", 1)  # anchor 2's block leaves the chain
    rpc_call(private_rpc, "evm_mine")
    time.sleep(1.5)  # the blocks of the second batch are now past --anchor-late-after

    run = run_monitor(
        stack,
        anchors,
        *("--deployment", str(tmp_path / "deployment.json")),
        *("--rpc", private_rpc),
        *("--anchor-late-after", "1"),
        "--alerts-topic",
        "",
    )
    assert run.code == 1, run.stderr
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for a in run.alerts:
        by_kind.setdefault(a["kind"], []).append(a)
    assert sorted(by_kind) == ["anchor_late", "anchor_not_on_chain", "anchor_reorged"], run.alerts
    [missing] = by_kind["anchor_not_on_chain"]
    assert (missing["log"], missing["block"], missing["severity"]) == (
        fake.origin,
        None,
        "critical",
    )
    assert "anchor seq 99: rootOf(99) is empty" in missing["detail"]
    assert sorted(a["log"] for a in by_kind["anchor_reorged"]) == logs
    for a in by_kind["anchor_reorged"]:
        assert a["severity"] == "warning" and "anchor seq 2" in a["detail"]
    assert sorted(a["log"] for a in by_kind["anchor_late"]) == logs
    with BlockStore.open(stack.store_path, readonly=True) as store:
        for a in by_kind["anchor_late"]:
            covered = Checkpoint.from_text(
                next(r for r in store.anchor_receipts(1) if r.origin == a["log"]).checkpoint
            ).size
            first_late = next(b for b in store.blocks(a["log"]) if b.header.end > covered)
            assert a["block"] == first_late.header.number
            assert a["severity"] == "warning" and "is not anchored (limit 1 s)" in a["detail"]


# --- a clean run -------------------------------------------------------------------------------


@pytest.mark.chain
def test_clean_run_of_100k_events_raises_nothing(
    kafka_bootstrap, new_topic, tmp_path, anvil_rpc, capsys
):
    from auditseal.ingest.simulator import run_kafka

    total = int(os.environ.get("AUDITSEAL_MONITOR_EVENTS", "100000"))
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=6)
    record = deployed(anvil_rpc, tmp_path / "deployment.json")
    anchors = new_topic(1)
    t0 = time.monotonic()
    counts = run_kafka(
        stack.bootstrap, stack.topic, tmp_path / "sim", 1e9, total, 24, 7, progress=False
    )
    assert counts["acknowledged"] == total
    t1 = time.monotonic()
    worker = stack.start_worker(max_events=1000, max_interval=0.5)
    try:
        wait_until_sealed(stack, timeout=1200)
    finally:
        stop(worker)
    t2 = time.monotonic()
    anchor_once(stack, anvil_rpc, record, anchors)
    run = run_monitor(
        stack,
        anchors,
        *("--deployment", str(tmp_path / "deployment.json")),
        *("--rpc", anvil_rpc),
        *("--anchor-late-after", "3600"),
        "--alerts-topic",
        "",
    )
    assert run.alerts == [] and run.code == 0, (run.alerts[:5], run.stderr)
    assert f"{total} events" in run.stderr, run.stderr
    with capsys.disabled():
        print(
            f"\n100k clean run: {total} events emitted in {t1 - t0:.1f} s, sealed in "
            f"{t2 - t1:.1f} s, monitor --once {run.seconds:.1f} s: {run.stderr.strip()}"
        )


# --- usage and unreachable services ------------------------------------------------------------


def monitor_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")},
            "AUDITSEAL_DEV_STATE": str(cwd / "none.json"),
        },
    )


def test_exit_codes_for_usage_errors_and_unreachable_services(tmp_path):
    key = Signer.generate("sealer").verifier.to_string()
    no_key = monitor_cli("--no-chain", "--once", cwd=tmp_path)
    assert no_key.returncode == 2
    assert no_key.stderr.strip() == (
        "auditseal: error: no pinned log key: give --log-key or set AUDITSEAL_LOG_KEY"
    )
    bad_key = monitor_cli("--log-key", "nope", "--no-chain", cwd=tmp_path)
    assert bad_key.returncode == 2 and bad_key.stderr.startswith("auditseal: error: --log-key:")
    no_contract = monitor_cli("--log-key", key, "--once", cwd=tmp_path)
    assert no_contract.returncode == 2 and "no pinned contract" in no_contract.stderr
    dead = f"127.0.0.1:{free_port()}"
    no_chain = monitor_cli(
        "--log-key", key, "--contract", "0x" + "11" * 20, "--rpc", f"http://{dead}", cwd=tmp_path
    )
    assert no_chain.returncode == 3, no_chain.stderr
    assert no_chain.stderr.startswith("auditseal: error: chain at ")
    no_broker = monitor_cli(
        "--log-key", key, "--no-chain", "--bootstrap", dead, "--once", cwd=tmp_path
    )
    assert no_broker.returncode == 3, no_broker.stderr
    assert f"auditseal: error: broker at {dead} unreachable" in no_broker.stderr


@pytest.mark.chain
def test_reorg_after_the_receipt_was_accepted_is_found_by_the_recheck(
    kafka_bootstrap, new_topic, tmp_path, private_rpc
):
    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    record = deployed(private_rpc, tmp_path / "deployment.json")
    anchors = new_topic(1)
    seal(stack, [(f"proxy://s{i}".encode(), event(f"proxy://s{i}", 1)) for i in range(4)])
    assert anchor_once(stack, private_rpc, record, anchors) == 1
    with BlockStore.open(stack.store_path, readonly=True) as store:
        logs = store.logs()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "monitor",
            *("--bootstrap", stack.bootstrap),
            *("--sealed-topic", stack.sealed_topic),
            *("--anchors-topic", anchors),
            *("--log-key", stack.signer.verifier.to_string()),
            *("--deployment", str(tmp_path / "deployment.json")),
            *("--rpc", private_rpc),
            *("--metrics-port", str(port)),
            *("--check-interval", "0.3"),
            *("--anchor-late-after", "1"),
            *("--idle-exit", "8"),
            *("--alerts-topic", ""),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    # Wait until the monitor has accepted every receipt (they cover every block: no alert).
    want = f"auditseal_monitor_receipts_checked_total {float(len(logs))}"
    deadline = time.monotonic() + 60
    metrics = ""
    while want not in metrics:
        assert time.monotonic() < deadline and proc.poll() is None, metrics
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                metrics = r.read().decode()
        except OSError:
            pass
        time.sleep(0.2)
    rpc_call(private_rpc, "anvil_rollback", 1)  # the anchor's block leaves the chain
    rpc_call(private_rpc, "evm_mine")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "--metrics-port PORT is deprecated" in stderr  # the old spelling still works
    alerts = [json.loads(line) for line in stdout.splitlines()]
    reorged = [a for a in alerts if a["kind"] == "anchor_reorged"]
    assert sorted(a["log"] for a in reorged) == logs, alerts
    for a in reorged:
        assert a["severity"] == "warning" and a["block"] is None
        assert "anchor seq 1: block" in a["detail"] and "left the canonical chain" in a["detail"]
        assert "rootOf(1) is empty" in a["detail"]  # Anvil drops the rolled-back transaction
    # The coverage the anchor gave is withdrawn: the blocks are late again.
    late = [a for a in alerts if a["kind"] == "anchor_late"]
    assert sorted(a["log"] for a in late) == logs, alerts
    assert {a["block"] for a in late} == {0}
    assert len(alerts) == len(reorged) + len(late)
