"""The verification benchmark must keep running: a small run of bench.verify, with its Anvil,
writing its section into a copy of docs/BENCHMARKS.md (the real one is left alone)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(120)
def test_verify_bench_small_run_writes_its_section_to_a_copy(tmp_path: Path) -> None:
    from auditseal.infra.processes import port_answers
    from bench.verify import ROW_HEADER, SECTION, TITLE

    before = _digest(BENCHMARKS_MD)
    docs = tmp_path / "BENCHMARKS.md"
    if BENCHMARKS_MD.exists():
        shutil.copy(BENCHMARKS_MD, docs)
    args = ["--events", "3000", "--reps", "1", "--block-reps", "2", "--docs", str(docs)]
    run = subprocess.run(
        [sys.executable, "-m", "bench.verify", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr
    header = "| " + " | ".join(ROW_HEADER) + " |"
    assert header in run.stdout
    for row in ("(a) raw hashing", "(b) `audit_log` over the store", "(c) b / a"):
        assert f"| {row}" in run.stdout, run.stdout
    assert re.search(
        r"\| \(d\) `verify --block` of a 1,000-event block, Anvil \(exit 0\) \|", run.stdout
    )
    rate = re.search(r"over the store, no chain \| ([\d,]+) events/s", run.stdout)
    assert rate and int(rate.group(1).replace(",", "")) > 0

    written = docs.read_text(encoding="utf-8")
    section = written[written.index(f"<!-- bench:{SECTION} -->") :]
    assert f"{TITLE}\n" in written and header in section
    assert "- Command: `python -m bench.verify --events 3000" in section
    assert _digest(BENCHMARKS_MD) == before
    started = re.search(r"Anvil at http://127\.0\.0\.1:(\d+)", run.stderr)
    assert started, run.stderr
    assert not port_answers(int(started.group(1)))
