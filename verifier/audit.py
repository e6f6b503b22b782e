"""Auditing a whole log: every block replayed from leaf 0, every problem reported.

:class:`LogAuditor` is fed the blocks of one log in number order (:class:`AuditBlock`: the
header and checkpoint as stored, the entry rows) and checks each, like
:class:`~auditseal.verifier.replay.LogReplay` but without stopping at the first failure:

``missing``
    a jump in block numbers or leaf ranges (blocks or leaves absent from the store);
``header``
    the header does not parse;
``header-chain``
    the header does not follow the previous one (number, range, prev hash);
``entries``
    the block holds ``end - start`` rows with the leaf indices of its range, strictly increasing
    Kafka positions, each a well-formed entry whose value matches its commitment;
``redaction``
    every erased entry (value and salt null) has a redaction record later in the log naming
    its index and leaf hash, and every redaction record names an erased entry (checked once the
    whole log is read, :class:`auditseal.verifier.redaction.RedactionLedger`); the redactions are
    listed;
``previous-state``
    after a bad or missing block the replayed state is lost; the stored compact range at the
    block's start (``AuditBlock.compact_at_start``) is taken instead, checked against the
    previous block's signed checkpoint when there is one (else only this block's root vouches
    for it);
``root``
    the leaves appended to the state give the header's root;
``checkpoint``
    the checkpoint opens with a pinned key (or one learnt by following rotation records) and
    states this origin, size ``end`` and the root;
``key-rotation``
    every rotation record (:mod:`auditseal.verifier.rotation`) is well-formed, signed by its
    old and new keys, names as old key the log's key before it, and is authenticated by a
    pinned key; the records are read ahead of the blocks (``rotations``), so a verifier that
    pins only the new key checks the blocks signed before the rotation too;
``log-key``
    once the log has rotated its key (or the pins have ranges), each checkpoint is signed by a
    key the log declares at its size and the verifier accepts there: after the overlap, a
    checkpoint signed only by the old key fails here.

The chain is not asked here: the caller proves one anchored block with
:class:`~auditseal.verifier.verify.Verifier` and attaches that report (:meth:`LogAuditor.finish`).

The per-entry loop is the hot path (a million entries per run): it works on raw row tuples,
hashes each distinct key once, and keeps the tree as a bare list of compact-range hashes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditseal.verifier.block import BlockHeader
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.leaf import SALT_SIZE, Entry, leaf_flags, leaf_hasher
from auditseal.verifier.merkle import EMPTY_ROOT, HASH_SIZE
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.redaction import RedactionLedger
from auditseal.verifier.rotation import (
    KeySet,
    RotationError,
    history_of,
    is_rotation_value,
    open_rotation_record,
)
from auditseal.verifier.verify import FAILED, BlockMaterial, Report, Verifier

__all__ = [
    "AUDIT_CHECKS",
    "AuditBlock",
    "EntryRow",
    "LogAudit",
    "LogAuditor",
    "Problem",
    "audit_materials",
    "combined_exit_code",
]

AUDIT_CHECKS = (
    "missing",
    "header",
    "header-chain",
    "entries",
    "redaction",
    "previous-state",
    "root",
    "checkpoint",
    "key-rotation",
    "log-key",
    "anchor",
)

EntryRow = tuple[int, int, int, bytes | None, bytes | None, bytes | None, bytes, int, int]
"""``(idx, position, timestamp_ms, key, value, salt, commitment, value_null, log_record)``:
a log record's position is its leaf index (:mod:`auditseal.verifier.leaf`)."""

_MAX_NAMED = 5  # entries named per block in a problem's detail; the rest are counted
_KEY_CACHE_LIMIT = 4096
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class AuditBlock:
    """One stored block, untrusted: ``number`` is the store's, ``header`` its text."""

    number: int
    header: str
    checkpoint: str
    rows: Sequence[EntryRow]
    compact_at_start: Callable[[], Sequence[bytes] | None] | None = None
    """The stored compact range at the header's start, asked for only to resynchronise."""


@dataclass(frozen=True)
class Problem:
    block: int | None
    check: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "check": self.check, "detail": self.detail}

    def render(self) -> str:
        where = f"block {self.block}" if self.block is not None else "log"
        return f"{where}: {self.check}: {self.detail}"


@dataclass(frozen=True)
class LogAudit:
    """The outcome for one log. Exit codes: 0 valid, 1 a problem, 3 not (all) proven on chain."""

    origin: str
    blocks: int
    entries: int
    redacted: int
    size: int
    """Leaves covered by the last block checked."""
    problems: tuple[Problem, ...]
    anchor: Report | None = None
    """The full check of the anchored block, chain included, if the log has an anchor."""
    anchored_size: int | None = None
    pending: str | None = None
    """Why (part of) the log is not proven on chain: not anchored yet, chain unreachable."""
    last_block: int | None = None
    redactions: tuple[dict[str, Any], ...] = ()
    """Each redaction the log proves: erased leaf, record leaf, actor, reason, time."""
    rotations: tuple[dict[str, Any], ...] = ()
    """Each key rotation the log holds: record leaf, old and new key, from and until sizes."""

    @property
    def exit_code(self) -> int:
        if self.problems or (self.anchor is not None and self.anchor.exit_code == 1):
            return 1
        return 3 if self.pending is not None else 0

    @property
    def verdict(self) -> str:
        if self.exit_code == 1:
            n = len(self.problems)
            return f"INVALID: {n} problem{'s' if n != 1 else ''} in {self.origin}"
        if self.pending is not None:
            return f"NOT PROVEN: {self.pending}"
        return f"VALID: {self.origin}"

    def to_json(self) -> dict[str, Any]:
        on_chain: dict[str, Any] | None = None
        if self.anchor is not None:
            check = self.anchor.check("on-chain")
            on_chain = {"status": check.status, "detail": check.detail, **check.data}
        return {
            "origin": self.origin,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "blocks": self.blocks,
            "last_block": self.last_block,
            "entries": self.entries,
            "redacted": self.redacted,
            "redactions": list(self.redactions),
            "key_rotations": list(self.rotations),
            "size": self.size,
            "anchored_size": self.anchored_size,
            "pending": self.pending,
            "problems": [p.to_json() for p in self.problems],
            "anchored_block": self.anchor.block if self.anchor is not None else None,
            "on_chain": on_chain,
            "anchor_report": self.anchor.to_json() if self.anchor is not None else None,
        }

    def render(self) -> str:
        lines = [
            f"{self.origin}: {self.blocks} blocks, {self.entries} entries "
            f"({self.redacted} redacted), size {self.size}"
        ]
        lines.extend(
            f"  redacted: leaf {r['index']} by {r['actor']!r} at {r['time']}, reason "
            f"{r['reason']!r} (record at leaf {r['record_index']})"
            for r in self.redactions
        )
        lines.extend(
            f"  key rotation: leaf {r['index']}: {r['old']} -> {r['new']} from size "
            f"{r['from_size']}, the old key until size {r['until']}"
            for r in self.rotations
        )
        lines.extend(f"  {p.render()}" for p in self.problems)
        if self.anchor is not None:
            check = self.anchor.check("on-chain")
            lines.append(
                f"  anchor: block {self.anchor.block} (size {self.anchored_size}): "
                f"{check.status}: {check.detail}"
            )
        lines.append(self.verdict)
        return "\n".join(lines) + "\n"


def combined_exit_code(audits: Iterable[LogAudit]) -> int:
    """One exit code for several logs: 1 if any is invalid, else 3 if any is pending, else 0."""
    codes = {a.exit_code for a in audits}
    return 1 if 1 in codes else 3 if 3 in codes else 0


@dataclass
class _Tally:
    entries: int = 0
    redacted: int = 0
    blocks: int = 0
    problems: list[Problem] = field(default_factory=list)


class LogAuditor:
    """Replays one log fed block by block; :meth:`finish` gives the :class:`LogAudit`."""

    def __init__(
        self,
        origin: str,
        log_keys: Iterable[NoteVerifier] | KeySet,
        rotations: Sequence[tuple[int, Entry]] = (),
    ) -> None:
        """``log_keys`` are pinned for every size (or a :class:`KeySet` with ranges);
        ``rotations`` are the log's rotation records ``(leaf, entry)`` read ahead of the
        blocks (each is checked again, as a leaf, when its block is fed)."""
        self.origin = origin
        key_set = log_keys if isinstance(log_keys, KeySet) else KeySet.of(log_keys)
        self.log_keys = key_set.keys(origin)
        self._history, early = history_of(key_set, origin, rotations)
        self._rotation_faults = dict(early)  # leaf -> detail, reported once its block is known
        self._hash_leaf = leaf_hasher(origin)
        self._key_hashes: dict[bytes | None, bytes] = {}
        self._tally = _Tally()
        # The replayed tree: compact-range hashes of [0, size), None when lost (resync needed).
        self._compact: list[bytes] | None = []
        self._size = 0
        self._prev: BlockHeader | None = None
        self._prev_checkpoint: tuple[int, bytes] | None = None  # (size, root), signed
        self._next_number = 0
        self._next_start: int | None = 0
        self._last_position = -1
        self._last_number: int | None = None
        self._redactions = RedactionLedger()
        self._block_of: dict[int, int] = {}  # leaf -> block, for erased entries and records

    def _problem(self, block: int | None, check: str, detail: str) -> None:
        self._tally.problems.append(Problem(block, check, detail))

    # --- one block ----------------------------------------------------------------------------

    def feed(self, block: AuditBlock) -> None:
        self._tally.blocks += 1
        self._last_number = block.number
        try:
            header = BlockHeader.from_text(block.header)
        except VerifierError as exc:
            self._problem(block.number, "header", str(exc))
            self._tally.entries += len(block.rows)
            self._lose_state(block.number + 1)
            return
        if header.origin != self.origin:
            self._problem(header.number, "header", f"names log {header.origin!r}")
        contiguous = self._check_sequence(block.number, header)
        leaves, entries_ok = self._entries(header, block.rows, contiguous)
        if entries_ok:
            self._root(header, leaves, block.compact_at_start)
        else:
            self._compact = None
        self._checkpoint(header, block.checkpoint)
        self._prev = header
        self._next_number, self._next_start = header.number + 1, header.end

    def _lose_state(self, next_number: int) -> None:
        self._compact, self._prev, self._prev_checkpoint = None, None, None
        self._next_number, self._next_start = next_number, None
        self._last_position = -1

    def _check_sequence(self, number: int, header: BlockHeader) -> bool:
        """Missing blocks and the header chain; True if this block directly follows the last."""
        expected_start = self._next_start
        if number != header.number:
            self._problem(
                number, "header-chain", f"stored as block {number}, header says {header.number}"
            )
        gap_numbers = header.number > self._next_number
        gap_leaves = expected_start is not None and header.start > expected_start
        if gap_numbers or gap_leaves:
            numbers = (
                f"blocks {self._next_number}..{header.number - 1}"
                if header.number - self._next_number > 1
                else f"block {self._next_number}"
                if gap_numbers
                else "no block number"
            )
            leaves = f", leaves [{expected_start}, {header.start})" if gap_leaves else ""
            self._problem(header.number, "missing", f"{numbers} missing{leaves}")
            self._prev, self._prev_checkpoint = None, None
            self._last_position = -1
            return False
        if self._prev is None and (header.number != 0 or expected_start is None):
            return False  # the previous header was unreadable: already reported
        try:
            header.verify_follows(self._prev)
        except VerifierError as exc:
            self._problem(header.number, "header-chain", str(exc))
            return header.start == expected_start
        return True

    def _entries(
        self, header: BlockHeader, rows: Sequence[EntryRow], contiguous: bool
    ) -> tuple[list[bytes], bool]:
        """The leaf hashes of the rows, and whether they are exactly the block's leaves."""
        tally = self._tally
        tally.entries += len(rows)
        bad: list[str] = []
        n_bad = 0
        ok = True
        if len(rows) != header.size:
            ok = False
            self._problem(
                header.number,
                "entries",
                f"holds {len(rows)} entries, the header's range [{header.start}, {header.end}) "
                f"says {header.size}",
            )
        hash_leaf = self._hash_leaf
        key_hashes = self._key_hashes
        sha256 = _sha256
        leaves: list[bytes] = []
        append = leaves.append
        expected_idx = header.start
        last = self._last_position if contiguous else -1
        redacted = 0
        for idx, position, timestamp, key, value, salt, commitment, value_null, record in rows:
            fault = None
            if idx != expected_idx:
                fault = f"entry {expected_idx}: missing (next stored is {idx})"
                ok = False
                expected_idx = idx
            elif record:
                pass  # a log record: its position is its index; checked with the ledger below
            elif position <= last:
                fault = f"entry {idx} at position {position} does not follow position {last}"
            elif salt is None:
                redacted += 1
                if value is not None:
                    fault = f"entry {idx}: a value without its salt"
            elif len(salt) != SALT_SIZE:
                fault = f"entry {idx}: salt of {len(salt)} bytes, want {SALT_SIZE}"
            elif (value is None) != bool(value_null):
                fault = f"entry {idx}: value presence disagrees with its null flag"
            elif sha256(salt + value if value is not None else salt).digest() != commitment:
                fault = f"entry {idx}: value does not match its commitment"
            if record and fault is None:
                fault = self._record(
                    header.number,
                    idx,
                    position,
                    timestamp,
                    key,
                    value,
                    salt,
                    commitment,
                    value_null,
                )
            elif not record:
                last = position
            expected_idx += 1
            key_hash = key_hashes.get(key)
            if key_hash is None:
                if len(key_hashes) >= _KEY_CACHE_LIMIT:
                    key_hashes.clear()
                key_hash = key_hashes[key] = sha256(key or b"").digest()
            try:
                leaf = hash_leaf(
                    position,
                    timestamp,
                    key_hash,
                    commitment,
                    leaf_flags(key is None, value_null, record),
                )
            except (VerifierError, struct.error, TypeError) as exc:
                fault = f"entry {idx}: not a leaf: {exc}"
                ok = False
            else:
                append(leaf)
                if salt is None and not record:
                    self._redactions.nulled(idx, leaf)
                    self._block_of[idx] = header.number
            if fault is not None:
                n_bad += 1
                if len(bad) < _MAX_NAMED:
                    bad.append(fault)
        tally.redacted += redacted
        self._last_position = last
        if n_bad:
            more = f" (and {n_bad - len(bad)} more)" if n_bad > len(bad) else ""
            self._problem(header.number, "entries", f"{n_bad} bad: " + "; ".join(bad) + more)
        return leaves, ok

    def _record(
        self,
        number: int,
        idx: int,
        position: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        salt: bytes | None,
        commitment: bytes,
        value_null: int,
    ) -> str | None:
        """Register the log record at leaf ``idx``; a fault if it is not a well-formed entry."""
        if is_rotation_value(value):
            self._block_of[idx] = number
            if idx not in self._rotation_faults:
                try:
                    entry = Entry(
                        self.origin,
                        position,
                        timestamp,
                        key,
                        value,
                        salt,
                        commitment,
                        bool(value_null),
                        log_record=True,
                    )
                    self._history.observe(idx, open_rotation_record(entry, idx, self.origin))
                except (RotationError, VerifierError) as exc:
                    self._rotation_faults[idx] = str(exc)
            return None
        try:
            entry = Entry(
                self.origin,
                position,
                timestamp,
                key,
                value,
                salt,
                commitment,
                bool(value_null),
                log_record=True,
            )
            entry.leaf()  # LeafMismatchError: a record whose value was altered
        except VerifierError as exc:
            return f"entry {idx}: {exc}"
        self._redactions.record(idx, entry)
        self._block_of[idx] = number
        return None

    def _resync(
        self, header: BlockHeader, source: Callable[[], Sequence[bytes] | None] | None
    ) -> bool:
        """Take the stored compact range at ``header.start``; False if none can be trusted."""
        stored = source() if source is not None else None
        if stored is None:
            self._problem(
                header.number,
                "previous-state",
                f"no replayed state at leaf {header.start} and no stored compact range to "
                "resume from; root not checked",
            )
            return False
        hashes = list(stored)
        if len(hashes) != header.start.bit_count() or any(len(h) != HASH_SIZE for h in hashes):
            self._problem(
                header.number,
                "previous-state",
                f"stored compact range at {header.start} is malformed ({len(hashes)} hashes)",
            )
            return False
        signed = self._prev_checkpoint
        if signed is not None and signed[0] == header.start:
            folded = _fold(hashes)
            if folded != signed[1]:
                self._problem(
                    header.number,
                    "previous-state",
                    f"stored compact range at {header.start} folds to {folded.hex()}, the "
                    f"previous signed checkpoint states {signed[1].hex()}",
                )
                return False
        self._compact, self._size = hashes, header.start
        return True

    def _root(
        self,
        header: BlockHeader,
        leaves: list[bytes],
        source: Callable[[], Sequence[bytes] | None] | None,
    ) -> None:
        if (self._compact is None or self._size != header.start) and not self._resync(
            header, source
        ):
            self._compact = None
            return
        compact = self._compact
        assert compact is not None
        size = _extend(compact, self._size, leaves)
        calculated = _fold(compact)
        if calculated != header.root:
            self._problem(
                header.number,
                "root",
                f"leaves [{header.start}, {header.end}) give root {calculated.hex()}, the header "
                f"states {header.root.hex()}",
            )
            self._compact = None
            return
        self._size = size

    def _checkpoint(self, header: BlockHeader, note: str) -> None:
        self._prev_checkpoint = None
        history = self._history
        try:
            cp = open_checkpoint(note, history.trusted_keys())
        except VerifierError as exc:
            self._problem(header.number, "checkpoint", str(exc))
            return
        if not history.trivial:
            try:
                history.check_signers(note, cp)
            except VerifierError as exc:
                self._problem(header.number, "log-key", str(exc))
                return
        if (cp.origin, cp.size, cp.root) != (self.origin, header.end, header.root):
            self._problem(
                header.number,
                "checkpoint",
                f"checkpoint states ({cp.origin}, {cp.size}, {cp.root.hex()}), want "
                f"({self.origin}, {header.end}, {header.root.hex()})",
            )
            return
        self._prev_checkpoint = (cp.size, cp.root)

    def reported_blocks(self) -> set[int | None]:
        """The blocks that have a problem so far."""
        return {p.block for p in self._tally.problems}

    # --- the end ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The end of the last block fed (0 before any)."""
        return self._prev.end if self._prev is not None else self._next_start or 0

    def finish(
        self,
        anchor: Report | None = None,
        anchored_size: int | None = None,
        pending: str | None = None,
        problems: Iterable[Problem] = (),
    ) -> LogAudit:
        """The audit, with the caller's anchor check and any problems it found itself."""
        tally = self._tally
        ledger = self._redactions
        redaction_problems = [
            Problem(self._block_of.get(index), "redaction", detail)
            for index, detail in ledger.problems()
        ]
        redaction_problems += [
            Problem(self._block_of.get(index), "key-rotation", detail)
            for index, detail in sorted(self._rotation_faults.items())
        ]
        return LogAudit(
            origin=self.origin,
            blocks=tally.blocks,
            entries=tally.entries,
            redacted=tally.redacted,
            size=self.size,
            problems=(*tally.problems, *redaction_problems, *problems),
            anchor=anchor,
            anchored_size=anchored_size,
            pending=pending,
            last_block=self._last_number,
            redactions=tuple(red.to_json(r) for _, r, red in ledger.explained()),
            rotations=tuple(
                {
                    "index": index,
                    "old": rot.old.to_string(),
                    "new": rot.new.to_string(),
                    "from_size": rot.from_size,
                    "until": rot.until,
                    "time_ms": rot.time_ms,
                }
                for index, rot in self._history.rotations
            ),
        )


def _extend(hashes: list[bytes], size: int, leaves: list[bytes]) -> int:
    """Append leaves to the compact range ``hashes`` of ``[0, size)`` in place; the new size.

    Level by level rather than leaf by leaf (the same hashes, fewer interpreter steps): at each
    level the run of new nodes starts at index ``index``; an odd start takes its left sibling
    from the compact range, an odd length leaves its last node as a new compact-range node.
    """
    sha256 = _sha256
    nodes, index = leaves, size
    kept: list[bytes] = []  # new compact-range nodes, lowest level first
    while nodes:
        if index & 1:
            nodes = [hashes.pop(), *nodes]
            index -= 1
        if len(nodes) & 1:
            kept.append(nodes[-1])
            nodes = nodes[:-1]
        nodes = [
            sha256(b"\x01" + a + b).digest() for a, b in zip(nodes[::2], nodes[1::2], strict=True)
        ]
        index >>= 1
    hashes.extend(reversed(kept))
    return size + len(leaves)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root of a compact range: its hashes folded right to left."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def audit_materials(
    origin: str,
    items: Iterable[BlockMaterial | Problem],
    offline: Verifier,
    online: Verifier,
) -> LogAudit:
    """A whole log checked block by block from its proof material, where no store is at hand
    (``verify --all --source URL``): each block runs checks 1-7 on its own (its previous state
    against the previous signed checkpoint, its consistency with the anchor), ``offline``
    without a chain; check 8 runs once, with ``online``, on the latest anchored block. ``items``
    are the blocks in order, or a :class:`Problem` for one the source could not give.
    """
    problems: list[Problem] = []
    blocks = entries = redacted = size = 0
    listed: list[dict[str, Any]] = []
    last: int | None = None
    anchored: BlockMaterial | None = None
    unanchored = 0
    for item in items:
        if isinstance(item, Problem):
            problems.append(item)
            continue
        header = item.block.header
        report = offline.verify_block(item)
        blocks, entries, size, last = (
            blocks + 1,
            entries + len(item.block.entries),
            header.end,
            header.number,
        )
        redacted += len(report.redacted)
        listed.extend(report.check("entries").data.get("redactions", ()))
        problems.extend(
            Problem(header.number, c.name, c.detail) for c in report.checks if c.status == FAILED
        )
        if item.receipt is None:
            unanchored += 1
        else:
            anchored = item
    anchor = online.verify_block(anchored) if anchored is not None else None
    pending = None
    if anchor is not None and anchor.pending is not None:
        pending = anchor.pending
    elif unanchored:
        pending = f"not anchored yet: {unanchored} block{'s' if unanchored != 1 else ''}"
    return LogAudit(
        origin=origin,
        blocks=blocks,
        entries=entries,
        redacted=redacted,
        size=size,
        problems=tuple(problems),
        anchor=anchor,
        anchored_size=anchored.block.header.end if anchored is not None else None,
        pending=pending,
        last_block=last,
        redactions=tuple(listed),
    )
