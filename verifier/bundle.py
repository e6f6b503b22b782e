"""Proof bundles (``auditseal.bundle/v1``): one JSON document that proves one block offline.

A bundle holds everything :class:`~verifier.verify.Verifier` checks for a block (its
:class:`~verifier.verify.BlockMaterial`) and, optionally, one event of that block with its
inclusion proof. With the pinned log keys and a chain endpoint, anyone can check it without the
store. Nothing in a bundle is trusted: it is only the input of the checks, so a bundle that was
edited fails them like a store that was. The layout is in docs/FORMAT.md §8.

:func:`bundle_from_json` parses strictly: unknown or missing keys, wrong types and bad hex are
:class:`~verifier.errors.FormatError`\\ s naming the field (``bundle.block.entries[3].salt``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.anchor import AnchorReceipt
from verifier.block import BlockHeader, SealedBlock
from verifier.errors import FormatError
from verifier.merkle import HASH_SIZE
from verifier.sealed import entry_item, list_at, object_at, parse_entry_item
from verifier.verify import BlockMaterial, EventProof

__all__ = ["BUNDLE_FORMAT", "Bundle", "bundle_from_json"]

BUNDLE_FORMAT = "auditseal.bundle/v1"


@dataclass(frozen=True)
class Bundle:
    material: BlockMaterial
    event_ids: tuple[str | None, ...]
    """Per entry, the CloudEvents id the sealer read from the record (informational)."""
    flags: tuple[str | None, ...]
    """Per entry, why the sealer found the record not a valid event, if it did."""
    event: EventProof | None = None

    def __post_init__(self) -> None:
        n = len(self.material.block.entries)
        if len(self.event_ids) != n or len(self.flags) != n:
            raise ValueError("bundle: one event id and one flag per entry")

    def encode(self) -> bytes:
        """The bundle file's bytes, as ``auditseal bundle`` writes them (UTF-8 JSON, ASCII)."""
        return (json.dumps(self.to_json(), indent=1) + "\n").encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        m = self.material
        header = m.block.header
        out: dict[str, Any] = {
            "format": BUNDLE_FORMAT,
            "origin": m.origin,
            "block": {
                "number": header.number,
                "header": header.to_text(),
                "checkpoint": m.block.checkpoint,
                "entries": [
                    entry_item(header.start + i, entry, self.event_ids[i], self.flags[i])
                    for i, entry in enumerate(m.block.entries)
                ],
            },
            "previous": None
            if m.prev is None
            else {"header": m.prev.to_text(), "checkpoint": m.prev_checkpoint},
            "compact_at_start": [h.hex() for h in m.compact_at_start],
            "anchor": None
            if m.receipt is None
            else {
                "receipt": m.receipt.to_json(),
                "checkpoint_note": m.anchored_note,
                "consistency": [h.hex() for h in m.consistency],
            },
            "event": None
            if self.event is None
            else {
                "requested": self.event.requested,
                "index": self.event.index,
                "proof": [h.hex() for h in self.event.proof],
                "copies": list(self.event.copies),
            },
        }
        return out


# --- parsing ----------------------------------------------------------------------------------


def _keys(data: Mapping[str, Any], want: Sequence[str], where: str) -> None:
    extra, missing = sorted(set(data) - set(want)), [k for k in want if k not in data]
    if missing:
        raise FormatError(f"{where}.{missing[0]}: missing")
    if extra:
        raise FormatError(f"{where}.{extra[0]}: unknown key")


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise FormatError(f"{where}.{key}: want a string, got {type(value).__name__}")
    return value


def _index(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(f"{where}.{key}: want a non-negative integer, got {value!r}")
    return value


def _hashes(value: object, where: str) -> tuple[bytes, ...]:
    out = []
    for i, h in enumerate(list_at(value, where)):
        if not isinstance(h, str) or len(h) != 2 * HASH_SIZE or h != h.lower():
            raise FormatError(f"{where}[{i}]: want {2 * HASH_SIZE} lowercase hex digits")
        try:
            out.append(bytes.fromhex(h))
        except ValueError as exc:
            raise FormatError(f"{where}[{i}]: not hex") from exc
    return tuple(out)


def _header(text: str, where: str) -> BlockHeader:
    try:
        return BlockHeader.from_text(text)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc


def bundle_from_json(value: object) -> Bundle:
    """Parse a decoded bundle document; FormatError names the field at fault."""
    data = object_at(value, "bundle")
    if data.get("format") != BUNDLE_FORMAT:
        raise FormatError(
            f"bundle.format: {data.get('format')!r}, want {BUNDLE_FORMAT!r} "
            "(a newer bundle needs a newer auditseal)"
        )
    _keys(
        data,
        ("format", "origin", "block", "previous", "compact_at_start", "anchor", "event"),
        "bundle",
    )
    origin = _text(data, "origin", "bundle")

    block = object_at(data["block"], "bundle.block")
    _keys(block, ("number", "header", "checkpoint", "entries"), "bundle.block")
    header = _header(_text(block, "header", "bundle.block"), "bundle.block.header")
    if _index(block, "number", "bundle.block") != header.number:
        raise FormatError("bundle.block.number: disagrees with the header")
    items = [
        parse_entry_item(item, origin, f"bundle.block.entries[{i}]")
        for i, item in enumerate(list_at(block["entries"], "bundle.block.entries"))
    ]
    for i, item in enumerate(items):
        if item.index != header.start + i:
            raise FormatError(
                f"bundle.block.entries[{i}].index: {item.index}, want {header.start + i} "
                "(entries are listed in leaf order from the header's start)"
            )
        if item.value_omitted:
            raise FormatError(f"bundle.block.entries[{i}].value_omitted: a bundle omits no value")

    prev = prev_checkpoint = None
    if data["previous"] is not None:
        previous = object_at(data["previous"], "bundle.previous")
        _keys(previous, ("header", "checkpoint"), "bundle.previous")
        prev = _header(_text(previous, "header", "bundle.previous"), "bundle.previous.header")
        prev_checkpoint = _text(previous, "checkpoint", "bundle.previous")

    receipt = anchored_note = None
    consistency: tuple[bytes, ...] = ()
    if data["anchor"] is not None:
        anchor = object_at(data["anchor"], "bundle.anchor")
        _keys(anchor, ("receipt", "checkpoint_note", "consistency"), "bundle.anchor")
        try:
            receipt = AnchorReceipt.from_json(anchor["receipt"])
        except FormatError as exc:
            raise FormatError(f"bundle.anchor.receipt: {exc}") from exc
        if anchor["checkpoint_note"] is not None:
            anchored_note = _text(anchor, "checkpoint_note", "bundle.anchor")
        consistency = _hashes(anchor["consistency"], "bundle.anchor.consistency")

    event = None
    if data["event"] is not None:
        ev = object_at(data["event"], "bundle.event")
        _keys(ev, ("requested", "index", "proof", "copies"), "bundle.event")
        copies = list_at(ev["copies"], "bundle.event.copies")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in copies):
            raise FormatError("bundle.event.copies: want leaf indices")
        event = EventProof(
            index=_index(ev, "index", "bundle.event"),
            proof=_hashes(ev["proof"], "bundle.event.proof"),
            requested=_text(ev, "requested", "bundle.event"),
            copies=tuple(copies),
        )

    material = BlockMaterial(
        origin=origin,
        block=SealedBlock(
            header, _text(block, "checkpoint", "bundle.block"), tuple(item.entry for item in items)
        ),
        prev=prev,
        prev_checkpoint=prev_checkpoint,
        compact_at_start=_hashes(data["compact_at_start"], "bundle.compact_at_start"),
        receipt=receipt,
        consistency=consistency,
        anchored_note=anchored_note,
    )
    return Bundle(
        material,
        tuple(item.event_id for item in items),
        tuple(item.flag for item in items),
        event,
    )
