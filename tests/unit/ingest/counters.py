"""The gateway's per-source sequence counters, faked for the adapters' unit tests."""

from __future__ import annotations

from collections import defaultdict


class Counters:
    """A fake of the gateway's per-source counters that records every call."""

    def __init__(self, start: int = 1) -> None:
        self.next: dict[str, int] = defaultdict(lambda: start)
        self.calls: list[str] = []

    def __call__(self, source: str) -> int:
        self.calls.append(source)
        number = self.next[source]
        self.next[source] = number + 1
        return number
