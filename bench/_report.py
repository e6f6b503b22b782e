"""Shared helpers for the benchmarks: timing statistics, machine info, markdown, docs sections.

Every benchmark renders one section of docs/BENCHMARKS.md, delimited by
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; :func:`replace_section` rewrites only that
section, so benchmarks can be rerun one at a time without clobbering each other's tables.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BENCHMARKS_MD",
    "Stats",
    "cpu_model",
    "machine_info",
    "markdown_table",
    "replace_section",
    "replace_titled_section",
    "section_header",
    "significant",
    "today",
]

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


@dataclass(frozen=True)
class Stats:
    """Summary of a list of durations in seconds."""

    n: int
    median: float
    p99: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        # Nearest-rank percentile: the smallest sample with at least 99% of samples <= it.
        rank = max(1, -(-99 * len(ordered) // 100))
        return cls(
            len(ordered), statistics.median(ordered), ordered[rank - 1], ordered[0], ordered[-1]
        )


def significant(x: float) -> str:
    """Three significant digits, thousands separated: the tables' number format."""
    if x >= 100:
        return f"{round(x, -len(str(int(x))) + 3):,.0f}"
    return f"{x:.3g}"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> str:
    """One line: CPU model, cores, Python, OS."""
    impl = platform.python_implementation()
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {impl} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


def section_header(command: str, method: str) -> str:
    """The lines every section starts with: machine, date, command, method."""
    return (
        f"- Machine: {machine_info()}\n"
        f"- Date: {today()}\n"
        f"- Command: `{command}`\n"
        f"- Method: {method}\n"
    )


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """A GitHub markdown table; ``align`` has one of ``l``/``r``/``c`` per column."""
    align = align or "l" * len(headers)
    if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
        raise ValueError("every row and the alignment need one cell per header")
    marks = {"l": ":---", "r": "---:", "c": ":---:"}

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "| " + " | ".join(marks[a] for a in align) + " |"]
    out.extend(line(r) for r in rows)
    return "\n".join(out) + "\n"


def replace_section(
    name: str, body: str, path: Path = BENCHMARKS_MD, new_file_text: str = "# Benchmarks\n"
) -> None:
    """Put ``body`` between the markers of section ``name`` in ``path``.

    Creates the file (starting with ``new_file_text``) and appends the section when missing;
    everything outside the markers is kept byte for byte. The file is replaced atomically.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad section name {name!r}")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else new_file_text
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end) :]
    elif i < 0 and j < 0:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        raise ValueError(f"{path}: unbalanced markers for section {name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def replace_titled_section(name: str, title: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """:func:`replace_section`, with ``title`` put above the markers when the section is new.

    ``replace_section`` appends a missing section as bare markers at the end of the file, so the
    title is appended first (atomically, like the section itself).
    """
    start = f"<!-- bench:{name} -->"
    if path.exists():
        current = path.read_text(encoding="utf-8")
        titled = re.search(rf"^{re.escape(title)}$", current, re.MULTILINE)
        if start not in current and not titled:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(current.rstrip("\n") + f"\n\n{title}\n", encoding="utf-8")
            os.replace(tmp, path)
        replace_section(name, body, path)
    else:
        replace_section(name, body, path, new_file_text=f"# Benchmarks\n\n{title}\n")
