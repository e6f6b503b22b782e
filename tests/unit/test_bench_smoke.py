"""The benchmarks must keep running: a tiny run of bench.merkle, and the docs-section helper."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = ROOT / "docs" / "BENCHMARKS.md"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.timeout(60)
def test_merkle_bench_quick_run_prints_the_table_and_leaves_the_docs_alone():
    pytest.importorskip("pymerkle", reason="the bench extra (pymerkle) is not installed")
    before = _digest(BENCHMARKS_MD)
    run = subprocess.run(
        [sys.executable, "-m", "bench.merkle", "--quick", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 0, run.stderr
    from bench.merkle import TABLE_HEADER

    assert "| " + " | ".join(TABLE_HEADER) + " |" in run.stdout
    assert "Inclusion proof" in run.stdout and "Consistency proof" in run.stdout
    assert _digest(BENCHMARKS_MD) == before


def test_replace_section_creates_then_replaces_only_its_section(tmp_path):
    from bench._report import markdown_table, replace_section

    doc = tmp_path / "docs" / "BENCHMARKS.md"
    replace_section("a", "first", doc)
    assert doc.read_text() == "# Benchmarks\n\n<!-- bench:a -->\nfirst\n<!-- /bench:a -->\n"
    doc.write_text(doc.read_text() + "\nkept text\n")
    replace_section("b", markdown_table(["x", "y"], [["1", "2|3"]], align="lr"), doc)
    replace_section("a", "second", doc)
    text = doc.read_text()
    assert "first" not in text and "<!-- bench:a -->\nsecond\n<!-- /bench:a -->" in text
    assert "\nkept text\n" in text
    assert "| x | y |\n| :--- | ---: |\n| 1 | 2\\|3 |\n<!-- /bench:b -->" in text
    with pytest.raises(ValueError):
        replace_section("bad name", "x", doc)
