"""The anchor benchmark must keep running: a tiny run of bench.anchor against its own Anvil."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(60)
def test_anchor_bench_quick_run_prints_the_table_and_leaves_the_docs_alone() -> None:
    from auditseal.infra.processes import port_answers
    from bench.anchor import LATENCY_HEADER, TABLE_HEADER

    before = _digest(BENCHMARKS_MD)
    run = subprocess.run(
        [sys.executable, "-m", "bench.anchor", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stderr
    assert "| " + " | ".join(TABLE_HEADER) + " |" in run.stdout
    assert "| " + " | ".join(LATENCY_HEADER) + " |" in run.stdout
    gas = re.search(r"^\| Gas used per anchor transaction .*$", run.stdout, re.MULTILINE)
    assert gas, run.stdout
    assert all(int(g.replace(",", "")) <= 50_000 for g in re.findall(r"\d{2},\d{3}", gas[0]))
    assert _digest(BENCHMARKS_MD) == before
    # The Anvil the benchmark started is gone.
    started = re.search(r"Anvil at http://127\.0\.0\.1:(\d+)", run.stderr)
    assert started, run.stderr
    assert not port_answers(int(started.group(1)))
