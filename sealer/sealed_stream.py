"""The sealed stream (topic ``audit.sealed``): blocks as JSON messages for dashboards and the
monitor. Schema ``auditseal.sealed/v1``, documented in docs/FORMAT.md §7.

A block becomes one or more messages, keyed by origin, none over ``max_bytes`` (900,000 by
default): entries are packed in order into parts. The margin under Kafka's 1 MiB limit is for
the key and the record batch around the value, which the producer counts against its
``max.request.size``; values filled to 1,000,000 bytes made Faust's producer refuse a block and
the worker crash on it again after every restart. Every part carries
the header and checkpoint, so each message can be checked on its own. A value too large to fit
in a message even alone is left out (``value_b64`` null, ``value_omitted`` true): its
commitment still binds it, and the read API serves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from auditseal.store.model import Record
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.sealed import SEALED_SCHEMA, entry_item

__all__ = ["MAX_MESSAGE_BYTES", "SCHEMA", "encode_block"]

SCHEMA = SEALED_SCHEMA
MAX_MESSAGE_BYTES = 900_000


def encode_block(
    block: SealedBlock,
    records: Sequence[Record],
    gaps: Sequence[tuple[int, int]] = (),
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """The messages of one block, in order; each at most ``max_bytes``."""
    h = block.header
    head: dict[str, Any] = {
        "schema": SCHEMA,
        "log": h.origin,
        "block": h.number,
        "start": h.start,
        "end": h.end,
        "root": h.root.hex(),
        "sealed_at_ms": h.sealed_at_ms,
        "prev_hash": h.prev_hash.hex(),
        "hash": h.hash().hex(),
        "header": h.to_text(),
        "checkpoint": block.checkpoint,
        "gaps": [list(g) for g in gaps],
    }
    # Room left for entries once the envelope (with its part numbers, up to 6 digits) is there.
    overhead = len(orjson.dumps({**head, "part": 999999, "parts": 999999, "entries": []}))
    budget = max_bytes - overhead
    if budget < 1024:
        raise ValueError(f"max_bytes {max_bytes} leaves no room for entries")
    parts: list[list[bytes]] = [[]]
    used = 0
    for i, (entry, record) in enumerate(zip(block.entries, records, strict=True)):
        item = entry_item(h.start + i, entry, record.event_id, record.flag)
        encoded = orjson.dumps(item)
        if len(encoded) + 1 > budget:
            item = entry_item(h.start + i, entry, record.event_id, record.flag, omit_value=True)
            encoded = orjson.dumps(item)
        if used + len(encoded) + 1 > budget and parts[-1]:
            parts.append([])
            used = 0
        parts[-1].append(encoded)
        used += len(encoded) + 1  # the comma
    messages = []
    for n, items in enumerate(parts):
        prefix = orjson.dumps({**head, "part": n, "parts": len(parts)})[:-1]
        messages.append(prefix + b',"entries":[' + b",".join(items) + b"]}")
    return messages
