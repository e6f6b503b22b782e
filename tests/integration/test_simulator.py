"""`auditseal simulate` against the real broker and the real gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

from auditseal.ingest.envelope import validate
from tests.integration.test_emitter import consume
from tests.integration.test_gateway import start_gateway

pytestmark = pytest.mark.kafka


def simulate(*args: str, cwd) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "simulate",
            "--json",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_stream(records, total: int, sources: int) -> None:
    assert len(records) == total
    seqs = defaultdict(list)
    for key, event in records:
        assert validate(event) == []
        assert key == event["source"].encode()
        seqs[event["source"]].append(event["sequence"])
    assert len(seqs) == sources
    for got in seqs.values():
        assert got == list(range(1, len(got) + 1))


def test_simulate_via_kafka(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=6)
    counts = simulate(
        "--rate",
        "1000",
        "--duration",
        "1.5",
        "--sources",
        "8",
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        cwd=tmp_path,
    )
    assert counts["sent"] == counts["acknowledged"] == 1500
    assert counts["failed"] == counts["pending"] == 0
    check_stream(consume(kafka_bootstrap, topic, 1500), 1500, 8)


def test_simulate_via_http(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=2)
    gw = start_gateway(kafka_bootstrap, topic, tmp_path)
    try:
        counts = simulate(
            "--via",
            "http",
            "--url",
            f"http://127.0.0.1:{gw.port}",
            "--tokens",
            "tokens",
            "--rate",
            "800",
            "--duration",
            "1",
            "--sources",
            "4",
            cwd=tmp_path,
        )
    finally:
        gw.proc.terminate()
        gw.proc.wait(10)
    assert counts["sent"] == counts["acknowledged"] == 800
    check_stream(consume(kafka_bootstrap, topic, 800), 800, 4)


def test_simulate_an_exact_number_of_events(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic(partitions=6)
    args = ("--events", "777", "--rate", "5000", "--sources", "3")
    counts = simulate(*args, "--bootstrap", kafka_bootstrap, "--topic", topic, cwd=tmp_path)
    assert counts["sent"] == counts["acknowledged"] == 777
    check_stream(consume(kafka_bootstrap, topic, 777), 777, 3)


def test_simulate_via_kafka_then_via_http_continues_every_sequence(
    kafka_bootstrap, new_topic, tmp_path
):
    # Both paths, one state dir: the HTTP run must continue each proxy's sequence where the
    # Kafka run left it, so the sealed stream has no number twice and the monitor is silent.
    from tests.integration.sealer_harness import make_stack, wait_until_sealed
    from tests.integration.test_monitor import run_monitor, stop

    stack = make_stack(kafka_bootstrap, new_topic, tmp_path, partitions=2)
    common = ("--sources", "4", "--rate", "5000", "--state-dir", "sim")
    kafka = simulate(
        "--events",
        "300",
        *common,
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        stack.topic,
        cwd=tmp_path,
    )
    assert kafka["acknowledged"] == 300
    gw = start_gateway(kafka_bootstrap, stack.topic, tmp_path)
    try:
        http = simulate(
            "--via",
            "http",
            "--url",
            f"http://127.0.0.1:{gw.port}",
            "--tokens",
            "tokens",
            "--events",
            "200",
            *common,
            cwd=tmp_path,
        )
    finally:
        gw.proc.terminate()
        gw.proc.wait(10)
    assert http["acknowledged"] == 200
    worker = stack.start_worker(max_events=100, max_interval=0.2)
    try:
        wait_until_sealed(stack)
    finally:
        stop(worker)
    run = run_monitor(
        stack, new_topic(1), "--no-chain", "--anchor-late-after", "3600", "--alerts-topic", ""
    )
    assert (run.code, run.alerts) == (0, []), run.stderr
    assert "500 events" in run.stderr and "0 replayed event(s)" in run.stderr
    check_stream(consume(kafka_bootstrap, stack.topic, 500), 500, 4)
