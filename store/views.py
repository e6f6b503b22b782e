"""The JSON shape of stored blocks and entries, as the read API and the dashboard serve them
(docs/SERVE.md)."""

from __future__ import annotations

from typing import Any

from auditseal.store.blockstore import StoredBlock
from auditseal.verifier.leaf import Entry

__all__ = ["block_json", "entry_json"]


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _utf8(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def block_json(origin: str, stored: StoredBlock, gaps: list[tuple[int, int]]) -> dict[str, Any]:
    h = stored.header
    return {
        "log": origin,
        "number": h.number,
        "start": h.start,
        "end": h.end,
        "root": h.root.hex(),
        "sealed_at_ms": h.sealed_at_ms,
        "prev_hash": h.prev_hash.hex(),
        "hash": stored.hash.hex(),
        "header": h.to_text(),
        "checkpoint": stored.checkpoint,
        "gaps": [[a, b] for a, b in gaps],
    }


def entry_json(
    index: int, entry: Entry, event_id: str | None, flag: str | None, block: int
) -> dict[str, Any]:
    return {
        "log": entry.origin,
        "index": index,
        "position": entry.position,
        "timestamp_ms": entry.timestamp_ms,
        "key": _hex(entry.key),
        "value": _hex(entry.value),
        "value_text": _utf8(entry.value),
        "salt": _hex(entry.salt),
        "value_commitment": entry.value_commitment.hex(),
        "value_null": entry.value_null,
        "redacted": entry.redacted,
        # The leaf as committed: built from the commitment, so a value that no longer opens
        # it does not hide the leaf hash (a verifier recomputes the commitment itself).
        "leaf_hash": entry.redact().leaf_hash().hex(),
        "event_id": event_id,
        "flag": flag,
        "block": block,
    }
