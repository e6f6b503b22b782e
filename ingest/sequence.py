"""Per-source ``sequence`` counters that survive restarts without ever reusing a number.

Numbers are reserved in blocks: the state file always holds, per source, a number above every
sequence handed out so far, so even after a crash the next process starts above them. A clean
close writes back the exact next number, so a clean restart leaves no gap. After a crash the
sequence jumps to the reservation boundary: a visible gap, which is right, because events that
were only in memory at the crash may be lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["SequenceCounter"]


class SequenceCounter:
    def __init__(self, path: str | Path, reserve: int = 10_000) -> None:
        """``reserve``: numbers taken per fsync'd save. Larger means fewer saves on the hot
        path (a save per 1,000 events cost 2.7 µs per event in bench/ingest.py) and a larger
        jump after a crash."""
        self.path = Path(path)
        self.reserve = reserve
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                self._next = {str(k): int(v) for k, v in saved.items()}
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"{self.path}: not a sequence state file: {exc}") from exc
        self._reserved = dict(self._next)

    def next(self, source: str) -> int:
        n = self._next.get(source, 1)
        if n >= self._reserved.get(source, 1):
            self._reserved[source] = n + self.reserve
            self._save(self._reserved)
        self._next[source] = n + 1
        return n

    def peek(self, source: str) -> int:
        return self._next.get(source, 1)

    def close(self) -> None:
        """Write back the exact next numbers: a clean restart continues without a gap."""
        self._save(self._next)

    def _save(self, values: dict[str, int]) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(values, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
