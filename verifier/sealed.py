"""The JSON form of sealed entries and blocks: the sealed stream and proof bundles share it.

An entry item (docs/FORMAT.md §7) carries an :class:`~auditseal.verifier.leaf.Entry` with its leaf
index and two informational fields the sealer derived from the record (``event_id``, ``flag``); none
of it is trusted: the verifier re-hashes the entry to its leaf. A value too large for a message
is *omitted* (``value_omitted``); the entry is then checked through its commitment alone, like a
redacted one.

:func:`parse_message` reads one message of ``audit.sealed``; :class:`BlockAssembler` joins the
parts of a block back into a :class:`~auditseal.verifier.block.SealedBlock`. Every error is a
:class:`~auditseal.verifier.errors.FormatError` naming the field at fault.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from auditseal.verifier.block import BlockHeader, SealedBlock
from auditseal.verifier.errors import FormatError
from auditseal.verifier.fields import (
    base64_field,
    boolean,
    field,
    hex_field,
    integer,
    list_at,
    object_at,
    string,
)
from auditseal.verifier.leaf import SALT_SIZE, Entry
from auditseal.verifier.merkle import HASH_SIZE

__all__ = [
    "SEALED_SCHEMA",
    "BlockAssembler",
    "EntryItem",
    "SealedMessage",
    "entry_item",
    "parse_entry_item",
    "parse_message",
]

SEALED_SCHEMA = "auditseal.sealed/v1"


@dataclass(frozen=True)
class EntryItem:
    index: int
    entry: Entry
    event_id: str | None = None
    flag: str | None = None
    value_omitted: bool = False


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def entry_item(
    index: int,
    entry: Entry,
    event_id: str | None = None,
    flag: str | None = None,
    *,
    omit_value: bool = False,
) -> dict[str, Any]:
    """The JSON object of one entry at leaf ``index`` (FORMAT.md §7)."""
    item: dict[str, Any] = {
        "index": index,
        "position": entry.position,
        "timestamp_ms": entry.timestamp_ms,
        "key_b64": _b64(entry.key),
        "value_b64": None if omit_value else _b64(entry.value),
        "value_null": entry.value_null,
        "value_omitted": omit_value,
        "salt": None if entry.salt is None else entry.salt.hex(),
        "value_commitment": entry.value_commitment.hex(),
        "event_id": event_id,
        "flag": flag,
    }
    if omit_value:
        item["value_size"] = len(entry.value or b"")
    if entry.log_record:  # present only on log records (redaction records), so older readers
        item["log_record"] = True  # of Kafka entries see the same items as before
    return item


def parse_entry_item(value: object, origin: str, where: str) -> EntryItem:
    """One entry item of log ``origin``; ``where`` names it in errors (``entries[3]``)."""
    data = object_at(value, where)
    omitted = boolean(data, "value_omitted", where)
    salt = hex_field(data, "salt", where, SALT_SIZE, nullable=True)
    raw_value = base64_field(data, "value_b64", where)
    value_null = boolean(data, "value_null", where)
    if omitted:
        if raw_value is not None:
            raise FormatError(f"{where}.value_b64: set on an entry whose value is omitted")
        integer(data, "value_size", where)
        salt = None  # checked through its commitment alone, as a redacted entry
    try:
        entry = Entry(
            origin=origin,
            position=integer(data, "position", where),
            timestamp_ms=integer(data, "timestamp_ms", where, signed=True),
            key=base64_field(data, "key_b64", where),
            value=raw_value,
            salt=salt,
            value_commitment=hex_field(data, "value_commitment", where, HASH_SIZE),
            value_null=value_null,
            log_record="log_record" in data and boolean(data, "log_record", where),
        )
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc
    return EntryItem(
        index=integer(data, "index", where),
        entry=entry,
        event_id=string(data, "event_id", where, nullable=True),
        flag=string(data, "flag", where, nullable=True),
        value_omitted=omitted,
    )


@dataclass(frozen=True)
class SealedMessage:
    """One message of ``audit.sealed``: a part of a block."""

    origin: str
    header: BlockHeader
    checkpoint: str
    gaps: tuple[tuple[int, int], ...]
    part: int
    parts: int
    items: tuple[EntryItem, ...]


def parse_message(value: object) -> SealedMessage:
    """A decoded JSON message of ``audit.sealed``; FormatError names what is wrong.

    The header is parsed from its verbatim text; the summary fields beside it (``block``,
    ``root``, ...) must agree with it, so a consumer reading either sees the same block.
    """
    data = object_at(value, "message")
    schema = string(data, "schema", "message")
    if schema != SEALED_SCHEMA:
        raise FormatError(f"message.schema: {schema!r}, want {SEALED_SCHEMA!r}")
    origin = string(data, "log", "message")
    header = BlockHeader.from_text(string(data, "header", "message"))
    summary = {
        "log": header.origin,
        "block": header.number,
        "start": header.start,
        "end": header.end,
        "root": header.root.hex(),
        "sealed_at_ms": header.sealed_at_ms,
        "prev_hash": header.prev_hash.hex(),
        "hash": header.hash().hex(),
    }
    for key, want in summary.items():
        if field(data, key, "message") != want:
            raise FormatError(f"message.{key}: {data[key]!r} disagrees with the header ({want!r})")
    gaps = []
    for i, gap in enumerate(list_at(field(data, "gaps", "message"), "message.gaps")):
        pair = list_at(gap, f"message.gaps[{i}]")
        if len(pair) != 2 or not all(isinstance(g, int) and g >= 0 for g in pair):
            raise FormatError(f"message.gaps[{i}]: want [from, to] offsets")
        gaps.append((pair[0], pair[1]))
    part, parts = integer(data, "part", "message"), integer(data, "parts", "message")
    if not part < parts:
        raise FormatError(f"message.part: {part} is not below parts {parts}")
    entries = list_at(field(data, "entries", "message"), "message.entries")
    items = tuple(
        parse_entry_item(item, origin, f"message.entries[{i}]") for i, item in enumerate(entries)
    )
    return SealedMessage(
        origin, header, string(data, "checkpoint", "message"), tuple(gaps), part, parts, items
    )


class BlockAssembler:
    """Joins the parts of each block, in any interleaving of logs, into whole blocks.

    Parts of one block arrive in order (one Kafka partition keyed by origin); a republished
    block restarts at part 0 and replaces what was gathered. :meth:`add` returns the block and
    its entry items once its last part is in, else None.
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[SealedMessage]] = {}

    def add(self, message: SealedMessage) -> tuple[SealedBlock, tuple[EntryItem, ...]] | None:
        parts = self._pending.setdefault(message.origin, [])
        if message.part == 0:
            parts.clear()
        elif not parts or parts[-1].header != message.header or parts[-1].part + 1 != message.part:
            parts.clear()  # a part without its predecessors: wait for the block's part 0
            return None
        parts.append(message)
        if message.part + 1 < message.parts:
            return None
        del self._pending[message.origin]
        items = tuple(item for m in parts for item in m.items)
        block = SealedBlock(message.header, message.checkpoint, tuple(i.entry for i in items))
        return block, items
