"""The dashboard's state, kept apart from Kafka and HTTP so it can be tested on its own.

:class:`Feed` is fed the raw values of three topics: ``audit.sealed`` (decoded with
:mod:`auditseal.verifier.sealed`, parts joined by its
:class:`~auditseal.verifier.sealed.BlockAssembler`), ``audit.anchors``
(:class:`~auditseal.verifier.anchor.AnchorReceipt` JSON) and ``audit.alerts`` (the monitor's JSON
alerts). It keeps the last blocks, the anchor receipts that cover them, the alerts and per-source
event counts per minute, and answers each message with the updates to push to browsers. Nothing here
is trusted: it is what the streams say, shown as such; the verification report
(``auditseal.dashboard.server``) is what checks a block.

Every value is JSON-ready; the page renders it as text, never as markup.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import FormatError
from auditseal.verifier.sealed import BlockAssembler, EntryItem, parse_message

__all__ = [
    "ACTIVITY_MINUTES",
    "ENTRY_PREVIEW",
    "Feed",
    "Update",
    "event_source",
]

ACTIVITY_MINUTES = 10
"""How many whole minutes (the current one included) the per-source activity covers."""
ENTRY_PREVIEW = 100
"""Entries kept per block for the page; the rest are counted (the report lists them all)."""
MAX_SOURCE_PARSE = 65_536
"""Values above this size are not parsed for their ``source`` (counted as unknown)."""
MAX_TEXT = 500
"""Longest alert field or error shown; monitor output is not trusted to be short."""
UNKNOWN_SOURCE = "(no source)"


@dataclass(frozen=True)
class Update:
    """One server-sent event: its ``kind`` (the SSE event name) and JSON ``data``."""

    kind: str
    data: dict[str, Any]


def event_source(value: bytes | None) -> str | None:
    """The CloudEvents ``source`` of a record value, or None if it has none we can read."""
    if value is None or len(value) > MAX_SOURCE_PARSE:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    source = event.get("source") if isinstance(event, dict) else None
    return source if isinstance(source, str) and source else None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass
class _Block:
    origin: str
    number: int
    start: int
    end: int
    sealed_at_ms: int
    hash: str
    root: str
    entries: list[dict[str, Any]]
    sources: dict[str, int]


@dataclass
class _Errors:
    sealed: int = 0
    anchors: int = 0
    alerts: int = 0
    last: str | None = None


@dataclass
class Feed:
    """Recent blocks, anchor receipts, alerts and per-source activity; see the module doc.

    ``history`` bounds the blocks kept (over all logs), ``max_alerts`` the alerts. ``clock_ms``
    gives the minute a block's events are counted in when it arrives late (a replayed history
    counts in the minute it was sealed, from its header).
    """

    history: int = 50
    max_alerts: int = 200
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    chain_head: int | None = None
    _blocks: OrderedDict[tuple[str, int], _Block] = field(default_factory=OrderedDict)
    _receipts: dict[str, dict[int, AnchorReceipt]] = field(default_factory=dict)
    _alerts: deque[dict[str, Any]] = field(default_factory=deque)
    _activity: dict[int, dict[str, int]] = field(default_factory=dict)  # minute -> source -> n
    _assembler: BlockAssembler = field(default_factory=BlockAssembler)
    _errors: _Errors = field(default_factory=_Errors)

    # --- input -------------------------------------------------------------------------------

    def on_sealed(self, value: bytes | None) -> list[Update]:
        """One ``audit.sealed`` message; a block's updates once its last part is in."""
        try:
            message = parse_message(orjson.loads(value or b"null"))
        except (orjson.JSONDecodeError, FormatError) as exc:
            return self._error("sealed", f"audit.sealed: {exc}")
        done = self._assembler.add(message)
        if done is None:
            return []
        block, items = done
        return [self.add_block(block, items), self.activity_update()]

    def add_block(self, block: SealedBlock, items: Iterable[EntryItem]) -> Update:
        """Keep a whole block (a republished one replaces its earlier copy)."""
        h = block.header
        sources: dict[str, int] = {}
        entries: list[dict[str, Any]] = []
        for item in items:
            source = event_source(item.entry.value)
            name = source or UNKNOWN_SOURCE
            sources[name] = sources.get(name, 0) + 1
            if len(entries) < ENTRY_PREVIEW:
                entries.append(
                    {
                        "index": item.index,
                        "event_id": item.event_id,
                        "source": source,
                        "flag": item.flag,
                        "redacted": item.entry.redacted and not item.value_omitted,
                    }
                )
        key = (h.origin, h.number)
        old = self._blocks.pop(key, None)
        if old is not None:
            self._count(old.sealed_at_ms, old.sources, -1)
        self._blocks[key] = _Block(
            h.origin, h.number, h.start, h.end, h.sealed_at_ms, h.hash().hex(), h.root.hex(),
            entries, sources,
        )  # fmt: skip
        self._count(h.sealed_at_ms, sources, +1)
        while len(self._blocks) > self.history:
            self._blocks.popitem(last=False)
        return Update("block", self.block_view(h.origin, h.number))

    def on_anchor(self, value: bytes | None) -> list[Update]:
        """One ``audit.anchors`` receipt; updates for the kept blocks it now covers."""
        try:
            receipt = AnchorReceipt.from_json(orjson.loads(value or b"null"))
        except (orjson.JSONDecodeError, FormatError) as exc:
            return self._error("anchors", f"audit.anchors: {exc}")
        return self.add_receipt(receipt)

    def add_receipt(self, receipt: AnchorReceipt) -> list[Update]:
        """Keep a receipt (a later copy of the same anchor, e.g. orphaned, replaces it)."""
        self._receipts.setdefault(receipt.origin, {})[receipt.seq] = receipt
        return [
            Update("block", self.block_view(o, n))
            for (o, n), b in self._blocks.items()
            if o == receipt.origin and b.end <= _size(receipt)
        ]

    def on_alert(self, value: bytes | None) -> list[Update]:
        """One ``audit.alerts`` message: a JSON object with ``kind``, ``log``, ``block``,
        ``detail`` (other fields are kept as ``extra``)."""
        try:
            data = orjson.loads(value or b"null")
        except orjson.JSONDecodeError as exc:
            return self._error("alerts", f"audit.alerts: not JSON ({exc})")
        if not isinstance(data, dict):
            return self._error("alerts", f"audit.alerts: want a JSON object, got {data!r:.80}")
        return [self.add_alert(data)]

    def add_alert(self, data: dict[str, Any]) -> Update:
        """An alert as ``auditseal monitor`` publishes it (``Alert.to_json``: kind, severity,
        log, block, detail, time as RFC 3339); other fields are kept as ``extra``."""
        known = {"kind", "severity", "log", "block", "detail", "time", "at_ms"}
        block = data.get("block")
        alert = {
            "kind": _clip(str(data.get("kind") or "alert")),
            "severity": _clip(str(data.get("severity") or "")),
            "log": None if data.get("log") is None else _clip(str(data["log"])),
            "block": block if isinstance(block, int) and not isinstance(block, bool) else None,
            "detail": _clip(str(data.get("detail") or "")),
            "at_ms": _alert_time_ms(data) or self.clock_ms(),
            "extra": _clip(orjson.dumps({k: v for k, v in data.items() if k not in known},
                                        default=str).decode()),
        }  # fmt: skip
        self._alerts.append(alert)
        while len(self._alerts) > self.max_alerts:
            self._alerts.popleft()
        return Update("alert", alert)

    def set_chain_head(self, head: int | None) -> list[Update]:
        """The chain's latest block number (None: unknown); a status update if it changed."""
        if head == self.chain_head:
            return []
        self.chain_head = head
        return [self.status_update()]

    def _error(self, topic: str, message: str) -> list[Update]:
        setattr(self._errors, topic, getattr(self._errors, topic) + 1)
        self._errors.last = _clip(message)
        return [self.status_update()]

    # --- views -------------------------------------------------------------------------------

    def covering(self, origin: str, end: int) -> AnchorReceipt | None:
        """The first confirmed anchor of ``origin`` at a size ≥ ``end``: where the block was
        anchored (later anchors cover it too, through consistency)."""
        found = [
            r
            for r in self._receipts.get(origin, {}).values()
            if r.status == "confirmed" and _size(r) >= end
        ]
        return min(found, key=lambda r: r.seq) if found else None

    def confirmations(self, block_number: int) -> int | None:
        """Chain head - receipt block + 1, as ``auditseal verify`` counts; None if unknown."""
        if self.chain_head is None:
            return None
        return max(0, self.chain_head - block_number + 1)

    def block_view(self, origin: str, number: int) -> dict[str, Any]:
        b = self._blocks[(origin, number)]
        receipt = self.covering(origin, b.end)
        anchor = None
        if receipt is not None:
            anchor = {
                "seq": receipt.seq,
                "tx_hash": receipt.tx_hash,
                "block_number": receipt.block_number,
                "chain_id": receipt.chain_id,
                "contract": receipt.contract,
                "size": _size(receipt),
                "confirmations": self.confirmations(receipt.block_number),
            }
        return {
            "log": b.origin,
            "number": b.number,
            "start": b.start,
            "end": b.end,
            "events": b.end - b.start,
            "sealed_at_ms": b.sealed_at_ms,
            "hash": b.hash,
            "root": b.root,
            "sources": dict(sorted(b.sources.items(), key=lambda kv: (-kv[1], kv[0]))),
            "entries": b.entries,
            "anchor": anchor,
        }

    def blocks(self) -> list[dict[str, Any]]:
        """The kept blocks, oldest arrival first."""
        return [self.block_view(o, n) for o, n in self._blocks]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._alerts)

    def activity(self, now_ms: int | None = None) -> dict[str, Any]:
        """Events per source in each of the last :data:`ACTIVITY_MINUTES` minutes, oldest
        first, busiest source first."""
        now_minute = (self.clock_ms() if now_ms is None else now_ms) // 60_000
        first = now_minute - ACTIVITY_MINUTES + 1
        for minute in [m for m in self._activity if m < first]:
            del self._activity[minute]
        per_source: dict[str, list[int]] = {}
        for minute, counts in self._activity.items():
            if minute > now_minute:
                continue  # a clock ahead of ours: not shown until its minute comes
            for source, n in counts.items():
                per_source.setdefault(source, [0] * ACTIVITY_MINUTES)[minute - first] += n
        rows: list[dict[str, Any]] = [
            {"source": s, "total": sum(c), "per_minute": c} for s, c in per_source.items()
        ]
        rows.sort(key=lambda r: (-sum(per_source[r["source"]]), r["source"]))
        return {"minutes": ACTIVITY_MINUTES, "first_minute_ms": first * 60_000, "sources": rows}

    def status(self) -> dict[str, Any]:
        return {
            "chain_head": self.chain_head,
            "blocks": len(self._blocks),
            "alerts": len(self._alerts),
            "errors": {
                "sealed": self._errors.sealed,
                "anchors": self._errors.anchors,
                "alerts": self._errors.alerts,
                "last": self._errors.last,
            },
        }

    def activity_update(self) -> Update:
        return Update("activity", self.activity())

    def status_update(self) -> Update:
        return Update("status", self.status())

    def snapshot(self) -> dict[str, Any]:
        """Everything a newly connected page needs before the live updates."""
        return {
            "blocks": self.blocks(),
            "alerts": self.alerts(),
            "activity": self.activity(),
            "status": self.status(),
        }

    # --- activity ----------------------------------------------------------------------------

    def _count(self, sealed_at_ms: int, sources: dict[str, int], sign: int) -> None:
        minute = sealed_at_ms // 60_000
        if minute < self.clock_ms() // 60_000 - ACTIVITY_MINUTES:
            return  # too old to show: not kept
        counts = self._activity.setdefault(minute, {})
        for source, n in sources.items():
            counts[source] = counts.get(source, 0) + sign * n
            if counts[source] <= 0:
                del counts[source]


def _size(receipt: AnchorReceipt) -> int:
    """The size of the log's checkpoint that the receipt anchors (not the aggregate's size)."""
    return Checkpoint.from_text(receipt.checkpoint).size


def _alert_time_ms(data: dict[str, Any]) -> int | None:
    """The alert's own time: ``time`` (RFC 3339, the monitor's) or ``at_ms``; None if absent."""
    at_ms = data.get("at_ms")
    if isinstance(at_ms, int) and not isinstance(at_ms, bool):
        return at_ms
    stamp = data.get("time")
    if not isinstance(stamp, str):
        return None
    try:
        return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return None
