"""Redaction records: a redaction is evidence, written into the log it redacts.

Erasing an entry's value and salt (GDPR) keeps its leaf, so every proof stays valid; but a
nulled entry on its own proves nothing about who erased it, and anyone with write access to the
store can null one. So ``auditseal log redact`` appends, in the same store transaction, a *log
record* leaf (leaf flag bit 2, :mod:`auditseal.verifier.leaf`) whose value is this canonical JSON::

    {"actor":A,"index":I,"leaf_hash":H,"reason":R,"time":T,"type":"auditseal.redaction/v1"}

keys sorted, no whitespace, UTF-8, strings escaped as JSON (only ``"``, ``\\`` and U+0000..U+001F,
the latter as ``\\b \\f \\n \\r \\t`` or ``\\u00xx``); ``I`` the leaf index erased, ``H`` its
Merkle leaf hash (64 lowercase hex digits), ``T`` ms since the epoch (also the leaf's
timestamp). The record's leaf has position = its own leaf index, a null key, and is sealed in a
block of its own signed with the log key, so the anchor covers it: nobody can add one after the
fact without the log key, nor after an anchor without forking the log.

The rules every verifier applies (block, event, whole log, bundle, monitor):

- a nulled entry (value and salt erased, not a log record) is accepted only with a redaction
  record, later in the same log, naming its index and its leaf hash; otherwise it is tampering;
- a redaction record names an earlier leaf that is nulled and has that leaf hash;
- a redaction record is itself never nulled, and its leaf is in the log (inclusion proof).

docs/FORMAT.md §4a is the byte-exact spec, with a test vector.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.errors import FormatError, VerificationError
from auditseal.verifier.leaf import Entry, commitment
from auditseal.verifier.merkle import HASH_SIZE, verify_consistency, verify_inclusion
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.rotation import is_rotation_value

__all__ = [
    "REDACTION_TYPE",
    "ProvenLeaf",
    "Redaction",
    "RedactionError",
    "RedactionLedger",
    "check_block_redactions",
    "open_record",
    "record_entry",
]

REDACTION_TYPE = "auditseal.redaction/v1"
MAX_TEXT_BYTES = 4096
_KEYS = ("actor", "index", "leaf_hash", "reason", "time", "type")


class RedactionError(VerificationError):
    """A nulled entry no redaction record explains, or a record that explains nothing."""


def _rfc3339(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"redaction record: duplicate key {key!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Redaction:
    """What one redaction record states: leaf ``index`` (hashing to ``leaf_hash``) was erased
    by ``actor`` at ``time_ms`` because ``reason``."""

    index: int
    leaf_hash: bytes
    actor: str
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < 2**63 or not 0 <= self.time_ms < 2**63:
            raise FormatError("redaction record: index and time must be non-negative i64")
        if len(self.leaf_hash) != HASH_SIZE:
            raise FormatError(f"redaction record leaf_hash: want {HASH_SIZE} bytes")
        for name in ("actor", "reason"):
            text = getattr(self, name)
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise FormatError(f"redaction record {name}: not valid Unicode") from exc
            if not 0 < size <= MAX_TEXT_BYTES:
                raise FormatError(f"redaction record {name}: want 1..{MAX_TEXT_BYTES} bytes")

    def to_bytes(self) -> bytes:
        """The record's canonical JSON, the leaf's value."""
        doc = {
            "actor": self.actor,
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "reason": self.reason,
            "time": self.time_ms,
            "type": REDACTION_TYPE,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Redaction:
        """Parse strictly: canonical JSON with exactly the six keys; FormatError otherwise."""
        try:
            doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"redaction record: not UTF-8 JSON: {exc}") from exc
        if not isinstance(doc, dict) or sorted(doc) != list(_KEYS):
            raise FormatError(f"redaction record: want exactly the keys {', '.join(_KEYS)}")
        if doc["type"] != REDACTION_TYPE:
            raise FormatError(f"redaction record type: {doc['type']!r}, want {REDACTION_TYPE!r}")
        for key in ("index", "time"):
            if not isinstance(doc[key], int) or isinstance(doc[key], bool):
                raise FormatError(f"redaction record {key}: want an integer")
        for key in ("actor", "reason", "leaf_hash"):
            if not isinstance(doc[key], str):
                raise FormatError(f"redaction record {key}: want a string")
        text = doc["leaf_hash"]
        if len(text) != 2 * HASH_SIZE or text != text.lower():
            raise FormatError(f"redaction record leaf_hash: want {2 * HASH_SIZE} lowercase hex")
        try:
            leaf_hash = bytes.fromhex(text)
        except ValueError as exc:
            raise FormatError("redaction record leaf_hash: not hex") from exc
        record = cls(doc["index"], leaf_hash, doc["actor"], doc["reason"], doc["time"])
        if record.to_bytes() != raw:
            raise FormatError("redaction record: not in canonical form")
        return record

    def describe(self) -> str:
        return f"by {self.actor!r} at {_rfc3339(self.time_ms)}, reason {self.reason!r}"

    def to_json(self, record_index: int) -> dict[str, Any]:
        return {
            "index": self.index,
            "record_index": record_index,
            "actor": self.actor,
            "reason": self.reason,
            "time_ms": self.time_ms,
            "time": _rfc3339(self.time_ms),
        }


def record_entry(origin: str, record_index: int, redaction: Redaction, salt: bytes) -> Entry:
    """The log-record entry, at leaf ``record_index``, that states ``redaction``."""
    value = redaction.to_bytes()
    return Entry(
        origin,
        record_index,
        redaction.time_ms,
        None,
        value,
        salt,
        commitment(salt, value),
        log_record=True,
    )


def open_record(entry: Entry, index: int) -> Redaction:
    """The redaction that the log record at leaf ``index`` states.

    Raises RedactionError if the entry is not a well-formed redaction record at that index:
    position other than its index, a key, its own value erased, a record naming itself or a
    later leaf, a leaf timestamp other than the record's time.
    """
    where = f"log record at leaf {index}"
    if not entry.log_record:
        raise RedactionError(f"leaf {index} is not a log record")
    if entry.position != index:
        raise RedactionError(f"{where}: position {entry.position}, a log record's is its index")
    if entry.key is not None:
        raise RedactionError(f"{where}: has a key")
    if entry.value is None or entry.salt is None:
        raise RedactionError(f"{where}: its own value is erased; a redaction record is evidence")
    try:
        redaction = Redaction.from_bytes(entry.value)
    except FormatError as exc:
        raise RedactionError(f"{where}: {exc}") from exc
    if redaction.index >= index:
        raise RedactionError(f"{where}: names leaf {redaction.index}, not an earlier leaf")
    if redaction.time_ms != entry.timestamp_ms:
        raise RedactionError(f"{where}: record time {redaction.time_ms} is not the leaf's")
    return redaction


@dataclass(frozen=True)
class ProvenLeaf:
    """A leaf outside the block being verified, with what proves it is in the log.

    ``proof`` is the inclusion of leaf ``index`` in the tree of ``size``. When ``size`` is the
    block's anchored checkpoint, nothing more is needed; otherwise ``checkpoint`` is a signed
    checkpoint at ``size`` and ``consistency`` the proof from the block's end to ``size``.
    For the target of a record inside the block, ``size`` is the block's end.
    """

    index: int
    entry: Entry
    size: int
    proof: tuple[bytes, ...]
    checkpoint: str | None = None
    consistency: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class BlockRedactions:
    explained: tuple[tuple[int, int, Redaction], ...]
    """(erased leaf, record leaf, what the record states), per nulled entry of the block."""
    pending: tuple[str, ...] = ()
    """Records proven only by a signed checkpoint that is not anchored yet."""


def check_block_redactions(
    origin: str,
    start: int,
    end: int,
    root: bytes,
    entries: Sequence[Entry],
    related: Iterable[ProvenLeaf],
    anchored: Checkpoint | None,
    log_keys: Sequence[NoteVerifier],
) -> BlockRedactions:
    """Check the redactions of the block ``[start, end)`` with root ``root`` (already checked).

    Every nulled entry needs a record (in the block or a ``related`` leaf proven in the log);
    every record in the block needs its nulled target (in the block or a ``related`` leaf
    included in the block's tree). Raises RedactionError, ProofError or SignatureError.
    """
    related = tuple(related)
    shown: dict[int, ProvenLeaf] = {}
    for p in related:
        if p.index in shown or start <= p.index < end:
            raise RedactionError(f"leaf {p.index} is shown twice")
        shown[p.index] = p
    here = {
        start + i: open_record(e, start + i)
        for i, e in enumerate(entries)
        if e.log_record and not is_rotation_value(e.value)  # rotations: verifier/rotation.py
    }
    elsewhere = {
        i: open_record(p.entry, i)
        for i, p in shown.items()
        if p.entry.log_record and not is_rotation_value(p.entry.value)
    }
    explained: list[tuple[int, int, Redaction]] = []
    pending: list[str] = []
    for i, entry in enumerate(entries):
        index = start + i
        if not entry.redacted or entry.log_record:
            continue
        found = [(r, red) for r, red in (*here.items(), *elsewhere.items()) if red.index == index]
        if not found:
            raise RedactionError(
                f"leaf {index} has its value and salt erased, but no redaction record in the "
                "log explains it: a nulled entry without its record is tampering"
            )
        r, red = found[0]
        if red.leaf_hash != entry.leaf_hash():
            raise RedactionError(
                f"the redaction record at leaf {r} names leaf hash {red.leaf_hash.hex()}, "
                f"leaf {index} hashes to {entry.leaf_hash().hex()}"
            )
        if r not in here:
            note = _prove_record(origin, end, root, shown[r], anchored, log_keys)
            if note:
                pending.append(f"the redaction record of leaf {index} (leaf {r}) {note}")
        explained.append((index, r, red))
    for r, red in here.items():
        if start <= red.index < end:
            target = entries[red.index - start]
        else:
            shown_target = shown.get(red.index)
            if shown_target is None:
                raise RedactionError(
                    f"the redaction record at leaf {r} names leaf {red.index}, which is not shown"
                )
            if shown_target.size != end:
                raise RedactionError(
                    f"leaf {red.index} is proven at size {shown_target.size}, want {end}"
                )
            verify_inclusion(
                shown_target.entry.leaf_hash(), red.index, end, list(shown_target.proof), root
            )
            target = shown_target.entry
        if not target.redacted or target.log_record:
            raise RedactionError(
                f"the redaction record at leaf {r} names leaf {red.index}, whose value is not "
                "erased"
            )
        if target.leaf_hash() != red.leaf_hash:
            raise RedactionError(
                f"the redaction record at leaf {r} names leaf hash {red.leaf_hash.hex()}, "
                f"leaf {red.index} hashes to {target.leaf_hash().hex()}"
            )
    return BlockRedactions(tuple(explained), tuple(pending))


def _prove_record(
    origin: str,
    end: int,
    root: bytes,
    p: ProvenLeaf,
    anchored: Checkpoint | None,
    log_keys: Sequence[NoteVerifier],
) -> str | None:
    """Prove the record ``p`` (after the block) is in this log; a pending note if unanchored."""
    if p.index < end:
        raise RedactionError(f"the redaction record at leaf {p.index} is not after the block")
    if anchored is not None and p.size == anchored.size:
        verify_inclusion(p.entry.leaf_hash(), p.index, p.size, list(p.proof), anchored.root)
        return None
    if p.checkpoint is None:
        raise RedactionError(
            f"the redaction record at leaf {p.index} comes without a checkpoint proving it"
        )
    cp = open_checkpoint(p.checkpoint, log_keys)
    if (cp.origin, cp.size) != (origin, p.size):
        raise RedactionError(
            f"the checkpoint proving leaf {p.index} is of ({cp.origin}, size {cp.size}), "
            f"want ({origin}, size {p.size})"
        )
    verify_consistency(end, p.size, list(p.consistency), root, cp.root)
    verify_inclusion(p.entry.leaf_hash(), p.index, p.size, list(p.proof), cp.root)
    return f"is after the anchored checkpoint: signed at size {p.size}, not anchored yet"


@dataclass
class RedactionLedger:
    """Nulled entries and redaction records of a whole log, matched at the end.

    Fed leaf by leaf (any order); :meth:`problems` then lists, per leaf at fault, what is
    wrong. Memory holds only nulled entries and records.
    """

    _nulled: dict[int, bytes] = field(default_factory=dict)
    _records: dict[int, Redaction] = field(default_factory=dict)
    _bad: list[tuple[int, str]] = field(default_factory=list)

    def nulled(self, index: int, leaf_hash: bytes) -> None:
        self._nulled[index] = leaf_hash

    def record(self, index: int, entry: Entry) -> None:
        """A log record at leaf ``index``; a malformed one is a problem."""
        try:
            self._records[index] = open_record(entry, index)
        except RedactionError as exc:
            self._bad.append((index, str(exc)))

    def feed(self, start: int, entries: Iterable[Entry]) -> None:
        """Every entry of a block starting at leaf ``start``."""
        for i, entry in enumerate(entries):
            if entry.log_record and is_rotation_value(entry.value):
                continue  # a rotation record: verifier/rotation.py checks it
            if entry.log_record:
                self.record(start + i, entry)
            elif entry.redacted:
                self.nulled(start + i, entry.leaf_hash())

    def explained(self) -> list[tuple[int, int, Redaction]]:
        """(erased leaf, record leaf, redaction) of every record whose target checks."""
        return sorted(
            (red.index, r, red)
            for r, red in self._records.items()
            if self._nulled.get(red.index) == red.leaf_hash
        )

    def problems(self) -> list[tuple[int, str]]:
        out = list(self._bad)
        by_target: dict[int, int] = {}
        for r, red in sorted(self._records.items()):
            target = self._nulled.get(red.index)
            if target is None:
                out.append(
                    (
                        r,
                        f"the redaction record at leaf {r} names leaf {red.index}, whose value "
                        "is not erased",
                    )
                )
            elif target != red.leaf_hash:
                out.append(
                    (
                        r,
                        f"the redaction record at leaf {r} names leaf hash "
                        f"{red.leaf_hash.hex()}, leaf {red.index} hashes to {target.hex()}",
                    )
                )
            else:
                by_target.setdefault(red.index, r)
        for index in sorted(self._nulled):
            if index not in by_target:
                out.append(
                    (
                        index,
                        f"leaf {index} has its value and salt erased, but no redaction "
                        "record in the log explains it: a nulled entry without its record is "
                        "tampering",
                    )
                )
        return sorted(out)
