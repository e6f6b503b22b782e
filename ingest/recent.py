"""The gateway's memory of the Kubernetes audit events it published recently.

The API server's audit webhook resends a whole batch whenever it sees no 2xx answer (any error,
up to five attempts with a back-off from 10 s). A resent batch holds the same audit events,
with the same ``id`` (``auditID/stage``): this memory lets the gateway recognise them, so a
retry never seals an event twice, and an event whose publication was not acknowledged is
published again byte for byte (same ``sequence``), which the monitor counts as a replay.

Bounded: the oldest entries are forgotten past ``capacity``. A gateway restart forgets all; a
batch resent across a restart is then published again under the same ids (see docs/INGEST.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_CAPACITY", "RecentEvents"]

DEFAULT_CAPACITY: Final = 100_000
"""Events remembered: 250 full webhook batches of 400, about 20 MB."""


@dataclass
class _Entry:
    digest: str
    record: bytes  # the encoded Kafka value, to publish again while not acknowledged
    acknowledged: bool


class RecentEvents:
    """``(source, id)`` → the content digest of the event published under it, and its record
    until Kafka acknowledged it. Not thread-safe: the gateway uses it from its event loop."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def digest(self, source: str, event_id: str) -> str | None:
        entry = self._entries.get((source, event_id))
        return None if entry is None else entry.digest

    def unacknowledged(self, source: str, event_id: str) -> bytes | None:
        """The record of an event published but not acknowledged, to publish it again."""
        entry = self._entries.get((source, event_id))
        return None if entry is None or entry.acknowledged else entry.record

    def reserve(self, source: str, event_id: str, digest: str, record: bytes) -> None:
        """Remember an event before it is published (so a concurrent copy is a duplicate)."""
        self._entries[(source, event_id)] = _Entry(digest, record, acknowledged=False)
        self._entries.move_to_end((source, event_id))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def acknowledge(self, source: str, event_id: str) -> None:
        entry = self._entries.get((source, event_id))
        if entry is not None:
            entry.acknowledged = True
            entry.record = b""

    def __len__(self) -> int:
        return len(self._entries)
