"""Proof bundles (``auditseal.bundle/v1``): one JSON document that proves one block offline.

A bundle holds everything :class:`~auditseal.verifier.verify.Verifier` checks for a block (its
:class:`~auditseal.verifier.verify.BlockMaterial`) and, optionally, one event of that block with its
inclusion proof. With the pinned log keys and a chain endpoint, anyone can check it without the
store. Nothing in a bundle is trusted: it is only the input of the checks, so a bundle that was
edited fails them like a store that was. The layout is in docs/FORMAT.md §8.

:func:`bundle_from_bytes` parses strictly: a key given twice, unknown or missing keys, wrong
types and bad hex are :class:`~auditseal.verifier.errors.FormatError`\\ s naming the field
(``bundle.block.entries[3].salt``). Every field is either an input of a check or derived from
one (the table in docs/FORMAT.md §8): an entry's ``event_id`` is the id its value states, its
``flag`` (the sealer's triage, which no check can re-derive) is always null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.block import BlockHeader, SealedBlock
from auditseal.verifier.errors import FormatError
from auditseal.verifier.fields import hex_list, integer, list_at, loads_strict, object_at, string
from auditseal.verifier.leaf import commitment
from auditseal.verifier.merkle import HASH_SIZE
from auditseal.verifier.redaction import ProvenLeaf
from auditseal.verifier.sealed import entry_item, parse_entry_item
from auditseal.verifier.verify import BlockMaterial, EventProof, event_fields

__all__ = ["BUNDLE_FORMAT", "Bundle", "bundle_from_bytes", "bundle_from_json"]

BUNDLE_FORMAT = "auditseal.bundle/v1"
_ENTRY_KEYS = (
    "index",
    "position",
    "timestamp_ms",
    "key_b64",
    "value_b64",
    "value_null",
    "value_omitted",
    "salt",
    "value_commitment",
    "event_id",
    "flag",
)
"""The keys of a bundle's entry: §7's, without ``value_size`` (a bundle omits no value, so a
size could only be displayed, never checked)."""


@dataclass(frozen=True)
class Bundle:
    material: BlockMaterial
    event: EventProof | None = None

    @property
    def event_ids(self) -> tuple[str | None, ...]:
        """Per entry, the CloudEvents id its value states (None: redacted, or no string id)."""
        return tuple(event_fields(e.value)[0] for e in self.material.block.entries)

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
                    entry_item(header.start + i, entry, event_id)
                    for i, (entry, event_id) in enumerate(
                        zip(m.block.entries, self.event_ids, strict=True)
                    )
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
                "source_uri": self.event.source,
            },
        }
        if m.related:  # only a block with redactions carries it (FORMAT.md §8)
            out["related"] = [_proven_json(p) for p in m.related]
        if m.rotations:  # only a log that rotated its key carries it (FORMAT.md §8)
            out["rotations"] = [_proven_json(p) for p in m.rotations]
        return out


def _proven_json(p: ProvenLeaf) -> dict[str, Any]:
    return {
        "entry": entry_item(p.index, p.entry),
        "size": p.size,
        "proof": [h.hex() for h in p.proof],
        "checkpoint": p.checkpoint,
        "consistency": [h.hex() for h in p.consistency],
    }


def _related(value: object, origin: str, name: str = "related") -> tuple[ProvenLeaf, ...]:
    out = []
    for i, raw in enumerate(list_at(value, f"bundle.{name}")):
        where = f"bundle.{name}[{i}]"
        item = object_at(raw, where)
        _keys(item, ("entry", "size", "proof", "checkpoint", "consistency"), where)
        entry = parse_entry_item(item["entry"], origin, f"{where}.entry")
        if entry.value_omitted:
            raise FormatError(f"{where}.entry.value_omitted: a bundle omits no value")
        out.append(
            ProvenLeaf(
                entry.index,
                entry.entry,
                integer(item, "size", where),
                hex_list(item["proof"], f"{where}.proof", HASH_SIZE),
                string(item, "checkpoint", where, nullable=True),
                hex_list(item["consistency"], f"{where}.consistency", HASH_SIZE),
            )
        )
    return tuple(out)


# --- parsing ----------------------------------------------------------------------------------


def _keys(data: Mapping[str, Any], want: Sequence[str], where: str) -> None:
    extra, missing = sorted(set(data) - set(want)), [k for k in want if k not in data]
    if missing:
        raise FormatError(f"{where}.{missing[0]}: missing")
    if extra:
        raise FormatError(f"{where}.{extra[0]}: unknown key")


def _header(text: str, where: str) -> BlockHeader:
    try:
        return BlockHeader.from_text(text)
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from exc


def bundle_from_bytes(raw: bytes | str) -> Bundle:
    """Parse a bundle file's bytes: strict JSON (a key given twice anywhere is refused, named by
    its dotted path), then :func:`bundle_from_json`."""
    return bundle_from_json(loads_strict(raw, "bundle"))


def bundle_from_json(value: object) -> Bundle:
    """Parse a decoded bundle document; FormatError names the field at fault.

    The document must have been decoded without losing duplicate keys (:func:`bundle_from_bytes`).
    """
    data = object_at(value, "bundle")
    if data.get("format") != BUNDLE_FORMAT:
        raise FormatError(
            f"bundle.format: {data.get('format')!r}, want {BUNDLE_FORMAT!r} "
            "(a newer bundle needs a newer auditseal)"
        )
    _keys(
        data,
        ("format", "origin", "block", "previous", "compact_at_start", "anchor", "event")
        + (("related",) if "related" in data else ())
        + (("rotations",) if "rotations" in data else ()),
        "bundle",
    )
    origin = string(data, "origin", "bundle")

    block = object_at(data["block"], "bundle.block")
    _keys(block, ("number", "header", "checkpoint", "entries"), "bundle.block")
    header = _header(string(block, "header", "bundle.block"), "bundle.block.header")
    if integer(block, "number", "bundle.block") != header.number:
        raise FormatError("bundle.block.number: disagrees with the header")
    raw_items = list_at(block["entries"], "bundle.block.entries")
    for i, raw_item in enumerate(raw_items):
        _keys(
            object_at(raw_item, f"bundle.block.entries[{i}]"),
            _ENTRY_KEYS,
            f"bundle.block.entries[{i}]",
        )
    items = [
        parse_entry_item(item, origin, f"bundle.block.entries[{i}]")
        for i, item in enumerate(raw_items)
    ]
    for i, item in enumerate(items):
        if item.index != header.start + i:
            raise FormatError(
                f"bundle.block.entries[{i}].index: {item.index}, want {header.start + i} "
                "(entries are listed in leaf order from the header's start)"
            )
        if item.value_omitted:
            raise FormatError(f"bundle.block.entries[{i}].value_omitted: a bundle omits no value")
        entry = item.entry
        derived, _ = event_fields(entry.value)
        # A value that does not open its commitment fails the entries check (exit 1); only a
        # genuine value's id can be compared.
        opens = entry.salt is not None and commitment(entry.salt, entry.value) == (
            entry.value_commitment
        )
        if item.event_id != derived and (opens or entry.salt is None):
            raise FormatError(
                f"bundle.block.entries[{i}].event_id: {item.event_id!r}, but the value states "
                f"{derived!r}"
            )
        if item.flag is not None:
            raise FormatError(f"bundle.block.entries[{i}].flag: always null in a bundle")

    prev = prev_checkpoint = None
    if data["previous"] is not None:
        previous = object_at(data["previous"], "bundle.previous")
        _keys(previous, ("header", "checkpoint"), "bundle.previous")
        prev = _header(string(previous, "header", "bundle.previous"), "bundle.previous.header")
        prev_checkpoint = string(previous, "checkpoint", "bundle.previous")

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
            anchored_note = string(anchor, "checkpoint_note", "bundle.anchor")
        consistency = hex_list(anchor["consistency"], "bundle.anchor.consistency", HASH_SIZE)

    event = None
    if data["event"] is not None:
        ev = object_at(data["event"], "bundle.event")
        _keys(ev, ("requested", "index", "proof", "source_uri"), "bundle.event")
        event = EventProof(
            index=integer(ev, "index", "bundle.event"),
            proof=hex_list(ev["proof"], "bundle.event.proof", HASH_SIZE),
            requested=string(ev, "requested", "bundle.event"),
            source=string(ev, "source_uri", "bundle.event", nullable=True),
        )

    material = BlockMaterial(
        origin=origin,
        block=SealedBlock(
            header, string(block, "checkpoint", "bundle.block"), tuple(item.entry for item in items)
        ),
        prev=prev,
        prev_checkpoint=prev_checkpoint,
        compact_at_start=hex_list(data["compact_at_start"], "bundle.compact_at_start", HASH_SIZE),
        receipt=receipt,
        consistency=consistency,
        anchored_note=anchored_note,
        related=_related(data["related"], origin) if "related" in data else (),
        rotations=_related(data["rotations"], origin, "rotations") if "rotations" in data else (),
    )
    return Bundle(material, event)
