"""Verifying one block against the signed log and the chain: ``auditseal verify --block N``.

:class:`Verifier` is pure: it checks a :class:`BlockMaterial` (everything the verifier is shown,
none of it trusted) with the pinned log keys, and asks the chain only through an
:class:`~auditseal.verifier.anchoring.AnchorReader`. The checks, in order, each recorded in the
:class:`Report` as ``ok``, ``failed`` or ``skipped`` with a detail:

1. ``entries``: the block holds ``end - start`` entries of this log, Kafka positions strictly
   increasing, each re-hashing to its leaf; a redacted entry (value and salt erased) only with
   the redaction record that explains it, proven in the log (:mod:`auditseal.verifier.redaction`),
   and listed with who, why and when; a redaction record only with the erased entry it names;
2. ``previous-state``: the compact range at ``start`` folds to the root of the previous block's
   checkpoint, which opens with a pinned key (for block 0: the empty range);
3. ``root``: the leaves appended to that range give the header's root;
4. ``checkpoint``: the block's checkpoint opens with a pinned key and states this origin, size
   ``end`` and that root;
5. ``header-chain``: the header follows the previous header (number, range, prev hash), and
   the previous header states the size and root of the previous signed checkpoint;
6. ``consistency``: the block's checkpoint is a prefix of the anchored checkpoint of the log,
   which MUST come as a signed note opening with a pinned key (the chain alone does not say
   which log key stands behind an anchored body);
7. ``anchor-inclusion``: the anchored checkpoint is a leaf of the anchor's aggregate root;
8. ``on-chain``: the pinned contract on the pinned chain holds that root for the anchor's seq,
   written by an address the contract authorises; the receipt's block number, block hash,
   transaction and aggregate size are those of the ``Anchored`` event of that seq; records
   block, timestamp and confirmations.

With an :class:`EventProof` (``auditseal verify --event ID``), a ninth check, ``event``: the
named entry is in the block, is what was asked for (its CloudEvents ``id``, Kafka position or
leaf index, and the CloudEvents ``source`` when one was named), and its RFC 9162 inclusion proof
leads to the root of the block's checkpoint. The detail names the event's source and log.

With a :class:`~auditseal.verifier.anchored_state.ChainState` (the chain's anchors held against the
store's or read API's records of them), a tenth check, ``anchored-state``: every anchor on chain
is one the evidence rebuilds, and the log is not anchored beyond where the evidence ends. The
receipt in the material is then the one of the chain's latest anchor (the caller picks it).

Once the log has rotated its key (rotation records in the block or in
:attr:`BlockMaterial.rotations`) or the pinned keys have ranges, checks 2, 4 and 6 open notes with
every key the verifier trusts (pinned, or learnt by following the rotation records,
:mod:`auditseal.verifier.rotation`), and two more checks run:

11. ``key-rotation``: every rotation record shown is well-formed, signed by its old and new
    keys, chained (its old key is the log's key before it) and authenticated by a pinned key,
    and is a leaf of the log (inclusion in the block's tree, or after the block in the anchored
    or a signed checkpoint consistent with the block);
12. ``log-key``: the block's, the previous and the anchored checkpoint are each signed by a key
    the log declares at its size and the verifier accepts there (after the overlap, the old
    key alone fails here).

Exit codes (:attr:`Report.exit_code`): 0 valid, 1 a check failed (the first one is named),
3 not anchored yet or the chain unreachable (everything else ok).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditseal.verifier.anchor import AnchorReceipt, checkpoint_body, verify_anchor_inclusion
from auditseal.verifier.anchored_state import CHECK as ANCHORED_STATE_CHECK
from auditseal.verifier.anchored_state import ChainState, NotRecordedYetError
from auditseal.verifier.anchoring import AnchorFact, AnchorReader, ChainUnavailableError
from auditseal.verifier.block import BlockHeader, SealedBlock
from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.leaf import Entry
from auditseal.verifier.merkle import verify_consistency, verify_inclusion
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.redaction import ProvenLeaf, Redaction, check_block_redactions
from auditseal.verifier.rotation import KeyHistory, KeySet, history_of, is_rotation_value

__all__ = [
    "CHECKS",
    "EVENT_CHECK",
    "FAILED",
    "AmbiguousEventError",
    "BlockMaterial",
    "Check",
    "EventCandidate",
    "EventProof",
    "Report",
    "Verifier",
    "event_fields",
    "numbered_reference",
]

CHECKS = (
    "entries",
    "previous-state",
    "root",
    "checkpoint",
    "header-chain",
    "consistency",
    "anchor-inclusion",
    "on-chain",
)
EVENT_CHECK = "event"
"""The ninth check, run only when an event is named."""
KEY_ROTATION_CHECK, LOG_KEY_CHECK = "key-rotation", "log-key"
_EXTRA_CHECKS = (EVENT_CHECK, ANCHORED_STATE_CHECK, KEY_ROTATION_CHECK, LOG_KEY_CHECK)
"""Checks 9 to 12, after :data:`CHECKS`."""
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class BlockMaterial:
    """Everything shown to the verifier for one block; nothing here is trusted.

    ``compact_at_start`` are the hashes of the complete subtrees covering ``[0, start)``
    (``merkle.range_nodes(0, start)``), ``prev_checkpoint`` the signed checkpoint of the previous
    block (None for block 0). ``consistency`` carries the tree from the block's ``end`` to the
    size of ``receipt``'s checkpoint (None: not anchored yet).
    """

    origin: str
    block: SealedBlock
    prev: BlockHeader | None
    prev_checkpoint: str | None
    compact_at_start: tuple[bytes, ...]
    receipt: AnchorReceipt | None
    consistency: tuple[bytes, ...] = ()
    anchored_note: str | None = None
    """The signed checkpoint whose body the receipt anchors, if available: then it must open
    with a pinned key too (else the anchored body is authenticated by the chain alone)."""
    related: tuple[ProvenLeaf, ...] = ()
    """Leaves outside the block that its redactions need: the redaction record of each erased
    entry, the erased entry each redaction record names (:mod:`auditseal.verifier.redaction`)."""
    rotations: tuple[ProvenLeaf, ...] = ()
    """The log's rotation records outside the block (:mod:`auditseal.verifier.rotation`): before
    it, proven in the tree at the block's end; after it, like a redaction record after it."""


_NUMBERED = re.compile(r"(position|index):(0|[1-9][0-9]*)")


def numbered_reference(requested: str) -> tuple[str, int] | None:
    """``("position", N)`` or ``("index", N)`` for ``position:N`` / ``index:N``; None when
    ``requested`` is a CloudEvents id."""
    found = _NUMBERED.fullmatch(requested)
    return None if found is None else (found.group(1), int(found.group(2)))


def event_fields(value: bytes | None) -> tuple[str | None, str | None]:
    """``(id, source)`` of a sealed value: the CloudEvents ``id`` and ``source`` when the value
    is a JSON object holding them as strings, else None each.

    Read as the sealer's triage reads them (orjson; a key given twice counts last), so the id a
    bundle states and the id the event check proves are derived from the value the same way.
    """
    if not value:
        return None, None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    found_id, source = obj.get("id"), obj.get("source")
    return (
        found_id if isinstance(found_id, str) else None,
        source if isinstance(source, str) else None,
    )


@dataclass(frozen=True)
class EventProof:
    """One entry of a block, named by the caller, with its RFC 9162 inclusion proof in the tree
    at the block's end (the size of the block's checkpoint)."""

    index: int
    proof: tuple[bytes, ...]
    requested: str
    """What was asked for: a CloudEvents id, ``position:N`` (Kafka offset) or ``index:N``."""
    source: str | None = None
    """The CloudEvents ``source`` the caller named (``--source-uri``); the entry's value must
    state it. None: any source (the report names the one found)."""


@dataclass(frozen=True)
class EventCandidate:
    """One copy of an event id found in a store: where, and which source's value holds it."""

    origin: str
    index: int
    source: str | None
    """The value's CloudEvents ``source``; None when the value states none (or was erased)."""

    def to_json(self) -> dict[str, Any]:
        return {"log": self.origin, "index": self.index, "source": self.source}


class AmbiguousEventError(VerifierError):
    """An event id sealed by more than one source: which event is meant is not known, so
    nothing is proven (exit 1). ``--source-uri`` or ``--log`` narrows it to one."""

    exit_code = 1

    def __init__(self, requested: str, candidates: Sequence[EventCandidate]) -> None:
        self.requested = requested
        self.candidates = tuple(candidates)
        sources = sorted({repr(c.source) for c in self.candidates})
        where = ", ".join(f"{c.source!r} in {c.origin} leaf {c.index}" for c in self.candidates)
        super().__init__(
            f"event id {requested!r} was sealed by {len(sources)} sources ({where}); "
            "name one with --source-uri or --log"
        )

    @property
    def verdict(self) -> str:
        return f"AMBIGUOUS: event id {self.requested!r} was sealed by more than one source"

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.requested,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "detail": str(self),
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass(frozen=True)
class Check:
    number: int
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            **({"data": self.data} if self.data else {}),
        }


@dataclass(frozen=True)
class Report:
    origin: str
    block: int
    checks: tuple[Check, ...]
    pending: str | None
    """Why the block is not proven on chain yet (not anchored, chain unreachable), if so."""
    checked_at: int
    redacted: tuple[int, ...] = ()
    event: str | None = None
    """The event asked for, when the report is about one (``--event``)."""
    source: str | None = None
    """The CloudEvents ``source`` of the event proven (read from its value), if it states one."""

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAILED), None)

    @property
    def exit_code(self) -> int:
        if self.first_failure is not None:
            return 1
        return 3 if self.pending is not None else 0

    @property
    def verdict(self) -> str:
        failed = self.first_failure
        if failed is not None:
            return f"INVALID: check {failed.number} ({failed.name}) failed"
        if self.pending is not None:
            return f"NOT PROVEN: {self.pending}"
        return "VALID"

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict[str, Any]:
        failed = self.first_failure
        return {
            "origin": self.origin,
            "block": self.block,
            **({"event": self.event, "source": self.source} if self.event is not None else {}),
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "first_failure": failed.name if failed else None,
            "pending": self.pending,
            "checked_at": self.checked_at,
            "redacted": list(self.redacted),
            "checks": [c.to_json() for c in self.checks],
        }

    def render(self) -> str:
        marks = {OK: "ok  ", FAILED: "FAIL", SKIPPED: "skip"}
        subject = f"block {self.block} of {self.origin}"
        if self.event is not None:
            of = "" if self.source is None else f" of source {self.source}"
            subject = f"event {self.event}{of} in {subject}"
        lines = [subject]
        for c in self.checks:
            lines.append(f"  [{marks[c.status]}] {c.number}. {c.name}: {c.detail}")
        lines.append(self.verdict)
        return "\n".join(lines) + "\n"


class _Failed(Exception):
    """A check's failure inside :class:`Verifier`; its message is the check's detail."""


class Verifier:
    """Checks blocks with pinned ``log_keys``; ``reader`` None means no chain is asked.

    ``contract`` and ``chain_id`` are the pinned AuditAnchor address and chain; ``now`` (Unix
    seconds) is recorded in the report.
    """

    def __init__(
        self,
        log_keys: Iterable[NoteVerifier] | KeySet,
        reader: AnchorReader | None,
        contract: str | None,
        chain_id: int | None,
        now: int,
    ) -> None:
        """``log_keys``: keys pinned for every size, or a :class:`KeySet` (ranges, and
        whether rotation records are followed)."""
        self.key_set = log_keys if isinstance(log_keys, KeySet) else KeySet.of(log_keys)
        self.log_keys = self.key_set.keys()
        self.reader = reader
        self.contract = contract
        self.chain_id = chain_id
        self.now = now

    def verify_block(
        self,
        material: BlockMaterial,
        event: EventProof | None = None,
        *,
        chain: ChainState | None = None,
        tip: int | None = None,
    ) -> Report:
        """Run the checks on ``material``; with ``event``, also the ``event`` check; with
        ``chain``, also ``anchored-state`` against ``tip`` (where the evidence's log ends, None
        if it has no such log)."""
        checks: list[Check] = []
        pending: list[str] = []
        state: dict[str, Any] = {}

        def run(name: str, step: Callable[[], tuple[str, dict[str, Any]]]) -> bool:
            number = (
                CHECKS.index(name) + 1
                if name in CHECKS
                else len(CHECKS) + 1 + _EXTRA_CHECKS.index(name)
            )
            try:
                outcome = step()
            except (_Failed, VerifierError) as exc:
                if isinstance(exc, ChainUnavailableError):
                    pending.append(f"chain unreachable: {exc}")
                    checks.append(Check(number, name, SKIPPED, str(exc)))
                    return False
                if isinstance(exc, NotRecordedYetError):
                    pending.append(str(exc))
                    checks.append(Check(number, name, SKIPPED, str(exc)))
                    return False
                checks.append(Check(number, name, FAILED, str(exc)))
                return False
            detail, data = outcome
            checks.append(Check(number, name, OK, detail, data))
            return True

        def skip(name: str, why: str) -> None:
            checks.append(Check(CHECKS.index(name) + 1, name, SKIPPED, why))

        m = material
        header = m.block.header
        history, rotation_faults = self._history(m)
        state["keys"] = history.trusted_keys()

        run("entries", lambda: self._entries(m, state))
        run("previous-state", lambda: self._previous_state(m, state))
        if "leaves" in state and "compact" in state:
            run("root", lambda: self._root(m, state))
        else:
            skip("root", "needs the entries' leaves and the previous state")
        run("checkpoint", lambda: self._checkpoint(m, state))
        run("header-chain", lambda: self._header_chain(m))

        receipt = m.receipt
        if receipt is None:
            pending.append(f"not anchored yet: no anchor covers size {header.end}")
            for name in CHECKS[5:]:
                skip(name, "not anchored yet")
        else:
            run("consistency", lambda: self._consistency(m, receipt, state))
            run("anchor-inclusion", lambda: self._inclusion(receipt))
            run("on-chain", lambda: self._on_chain(receipt))
        if event is not None:
            run(EVENT_CHECK, lambda: self._event(m, event, state))
        if chain is not None:
            run(ANCHORED_STATE_CHECK, lambda: _anchored_state(m.origin, chain, tip))
        if not history.trivial or m.rotations or rotation_faults:
            run(KEY_ROTATION_CHECK, lambda: self._key_rotation(m, history, rotation_faults, state))
            run(LOG_KEY_CHECK, lambda: self._log_key(m, history))
        pending.extend(state.get("redaction_pending", ()))

        return Report(
            m.origin,
            header.number,
            tuple(sorted(checks, key=lambda c: c.number)),
            "; ".join(pending) if pending else None,
            self.now,
            tuple(state.get("redacted", ())),
            event.requested if event is not None else None,
            next((c.data.get("source") for c in checks if c.name == EVENT_CHECK), None),
        )

    # --- the checks: each returns (detail, data), or raises _Failed / VerificationError ------

    def _entries(self, m: BlockMaterial, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        header = m.block.header
        entries = m.block.entries
        if len(entries) != header.size:
            raise _Failed(
                f"holds {len(entries)} entries, the header's range [{header.start}, "
                f"{header.end}) says {header.size}"
            )
        last = -1
        leaves: list[bytes] = []
        for i, entry in enumerate(entries):
            index = header.start + i
            if entry.origin != m.origin:
                raise _Failed(f"entry {index} belongs to log {entry.origin!r}")
            if not entry.log_record:  # a log record's position is its index (checked below)
                if entry.position <= last:
                    raise _Failed(
                        f"entry {index} at position {entry.position} does not follow position "
                        f"{last}"
                    )
                last = entry.position
            leaves.append(entry.leaf_hash())  # LeafMismatchError: a value that was altered
        anchored = None
        if m.receipt is not None:
            try:
                anchored = Checkpoint.from_text(m.receipt.checkpoint)
            except VerifierError:
                anchored = None  # the consistency check reports it
        found = check_block_redactions(
            m.origin,
            header.start,
            header.end,
            header.root,
            entries,
            m.related,
            anchored,
            state["keys"],
        )
        redacted = [index for index, _, _ in found.explained]
        state["leaves"], state["redacted"] = leaves, redacted
        state["redaction_pending"] = found.pending
        state["redactions"] = {index: red for index, _, red in found.explained}
        listed = [red.to_json(r) for _, r, red in found.explained]
        note = ""
        if found.explained:
            note = f", {len(redacted)} redacted: " + "; ".join(
                f"leaf {index} {red.describe()} (record at leaf {r})"
                for index, r, red in found.explained
            )
        rehash = "y re-hashes to its leaf" if len(entries) == 1 else "ies re-hash to their leaves"
        return f"{len(entries)} entr{rehash}{note}", {"redacted": redacted, "redactions": listed}

    def _previous_state(
        self, m: BlockMaterial, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        start = m.block.header.start
        try:
            compact = CompactRange(start, list(m.compact_at_start))
        except ValueError as exc:
            raise _Failed(f"compact range at {start}: {exc}") from exc
        if start == 0:
            state["compact"] = compact
            return "block starts the log: empty previous state", {}
        if m.prev_checkpoint is None:
            raise _Failed(f"no checkpoint of the previous state (size {start}) was given")
        prev = open_checkpoint(m.prev_checkpoint, state["keys"])
        if (prev.origin, prev.size) != (m.origin, start):
            raise _Failed(
                f"previous checkpoint is of ({prev.origin}, size {prev.size}), "
                f"want ({m.origin}, size {start})"
            )
        calculated = compact.root()
        if calculated != prev.root:
            raise _Failed(
                f"compact range at {start} folds to {calculated.hex()}, the previous signed "
                f"checkpoint states {prev.root.hex()}"
            )
        state["compact"] = compact
        return f"compact range at {start} matches the previous signed checkpoint", {}

    def _root(self, m: BlockMaterial, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        compact: CompactRange = state["compact"].copy()
        compact.extend(state["leaves"])
        calculated = compact.root()
        header = m.block.header
        if calculated != header.root:
            raise _Failed(
                f"leaves [{header.start}, {header.end}) give root {calculated.hex()}, "
                f"the header states {header.root.hex()}"
            )
        state["root"] = calculated
        return f"leaves give the root {calculated.hex()}", {"root": calculated.hex()}

    def _checkpoint(self, m: BlockMaterial, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        header = m.block.header
        cp = open_checkpoint(m.block.checkpoint, state["keys"])
        want_root = state.get("root", header.root)
        if (cp.origin, cp.size, cp.root) != (m.origin, header.end, want_root):
            raise _Failed(
                f"checkpoint states ({cp.origin}, {cp.size}, {cp.root.hex()}), want "
                f"({m.origin}, {header.end}, {want_root.hex()})"
            )
        state["checkpoint"] = cp
        return f"signed by a pinned key: {cp.origin} size {cp.size}", {}

    def _header_chain(self, m: BlockMaterial) -> tuple[str, dict[str, Any]]:
        header = m.block.header
        if header.origin != m.origin:
            raise _Failed(f"header names log {header.origin!r}, want {m.origin!r}")
        if m.prev is not None and m.prev.origin != m.origin:
            raise _Failed(f"previous header names log {m.prev.origin!r}")
        header.verify_follows(m.prev)
        if m.prev is not None and m.prev_checkpoint is not None:
            # The previous header's root is otherwise only displayed: bind it to the previous
            # signed checkpoint (whose signature check 2 opens).
            prev_cp = Checkpoint.from_text(checkpoint_body(m.prev_checkpoint))
            if (prev_cp.size, prev_cp.root) != (m.prev.end, m.prev.root):
                raise _Failed(
                    f"previous header states size {m.prev.end} root {m.prev.root.hex()}, its "
                    f"checkpoint size {prev_cp.size} root {prev_cp.root.hex()}"
                )
        return f"block hash {header.hash().hex()} follows its previous block", {
            "hash": header.hash().hex()
        }

    def _anchored_checkpoint(
        self, m: BlockMaterial, receipt: AnchorReceipt, state: dict[str, Any]
    ) -> Checkpoint:
        if receipt.origin != m.origin:
            raise _Failed(f"anchor receipt is of log {receipt.origin!r}, want {m.origin!r}")
        if m.anchored_note is None:
            # The chain proves that some body was anchored, not which key signed it: an
            # unsigned body would let anyone with the anchorer's key vouch for a log.
            raise _Failed(
                "the anchored checkpoint comes without its signed note: it must open with a "
                "pinned key"
            )
        if checkpoint_body(m.anchored_note) != receipt.checkpoint:
            raise _Failed("the signed anchored checkpoint is not the one the receipt anchors")
        open_checkpoint(m.anchored_note, state["keys"])
        anchored = Checkpoint.from_text(receipt.checkpoint)
        state["anchored"] = anchored
        return anchored

    def _consistency(
        self, m: BlockMaterial, receipt: AnchorReceipt, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        anchored = self._anchored_checkpoint(m, receipt, state)
        header = m.block.header
        if anchored.origin != m.origin:
            raise _Failed(f"anchored checkpoint is of log {anchored.origin!r}")
        if anchored.size < header.end:
            raise _Failed(
                f"anchored checkpoint (size {anchored.size}) does not cover the block "
                f"(end {header.end})"
            )
        verify_consistency(
            header.end, anchored.size, list(m.consistency), header.root, anchored.root
        )
        return f"size {header.end} is a prefix of the anchored (signed, size {anchored.size})", {
            "anchored_size": anchored.size
        }

    def _inclusion(self, receipt: AnchorReceipt) -> tuple[str, dict[str, Any]]:
        verify_anchor_inclusion(
            receipt.checkpoint, receipt.index, receipt.size, list(receipt.proof), receipt.root
        )
        return (
            f"anchored checkpoint is leaf {receipt.index} of {receipt.size} in the aggregate "
            f"{receipt.root.hex()} of anchor {receipt.seq}",
            {"seq": receipt.seq, "aggregate_root": receipt.root.hex()},
        )

    def _on_chain(self, receipt: AnchorReceipt) -> tuple[str, dict[str, Any]]:
        if receipt.status != "confirmed":
            raise _Failed(f"receipt of anchor {receipt.seq} has status {receipt.status}")
        if self.chain_id is not None and receipt.chain_id != self.chain_id:
            raise _Failed(
                f"receipt names chain {receipt.chain_id}, pinned chain is {self.chain_id}"
            )
        if self.contract is not None and receipt.contract.lower() != self.contract.lower():
            raise _Failed(
                f"receipt names contract {receipt.contract}, pinned contract is {self.contract}"
            )
        if self.reader is None:
            raise ChainUnavailableError("no chain endpoint given (--rpc)")
        chain_id = self.reader.chain_id()
        if self.chain_id is not None and chain_id != self.chain_id:
            raise _Failed(f"the endpoint serves chain {chain_id}, pinned chain is {self.chain_id}")
        if receipt.chain_id != chain_id:
            raise _Failed(f"receipt names chain {receipt.chain_id}, the endpoint serves {chain_id}")
        on_chain = self.reader.root_of(receipt.seq)
        if on_chain is None:
            raise _Failed(f"the contract holds no root for anchor {receipt.seq}")
        if on_chain != receipt.root:
            raise _Failed(
                f"the contract holds {on_chain.hex()} for anchor {receipt.seq}, the aggregate "
                f"root is {receipt.root.hex()}"
            )
        fact = self.reader.anchored_at(receipt.seq)
        if fact is None:
            raise _Failed(f"no Anchored event for anchor {receipt.seq}")
        if fact.root != on_chain:
            raise _Failed(f"the Anchored event of {receipt.seq} states another root")
        _receipt_matches_event(receipt, fact)
        if not self.reader.is_anchorer(fact.anchorer, fact.block_number):
            raise _Failed(
                f"anchor {receipt.seq} was written by {fact.anchorer}, not an anchorer of the "
                f"contract in block {fact.block_number}"
            )
        authorised_now = self.reader.is_anchorer(fact.anchorer)
        data = {
            "chain_id": chain_id,
            "seq": receipt.seq,
            "root": on_chain.hex(),
            "block_number": fact.block_number,
            "block_hash": fact.block_hash,
            "timestamp": fact.timestamp,
            "anchorer": fact.anchorer,
            "tx_hash": fact.tx_hash,
            "confirmations": fact.confirmations,
            "anchorer_authorised_now": authorised_now,
        }
        return (
            f"chain {chain_id} holds the root of anchor {receipt.seq}, written by anchorer "
            f"{fact.anchorer} in block {fact.block_number} (timestamp {fact.timestamp}, "
            f"{fact.confirmations} confirmation{'' if fact.confirmations == 1 else 's'})"
            + ("" if authorised_now else "; that anchorer has since been revoked"),
            data,
        )

    def _history(self, m: BlockMaterial) -> tuple[KeyHistory, list[tuple[int, str]]]:
        """The log's keys by size from the rotation records shown (outside and inside the
        block), and the records at fault."""
        header = m.block.header
        inside = [
            (header.start + i, e)
            for i, e in enumerate(m.block.entries)
            if e.log_record and is_rotation_value(e.value)
        ]
        faults = [
            (p.index, f"rotation record at leaf {p.index} is shown twice")
            for p in m.rotations
            if header.start <= p.index < header.end
        ]
        outside = [
            (p.index, p.entry) for p in m.rotations if not header.start <= p.index < header.end
        ]
        records = sorted([*inside, *outside], key=lambda r: r[0])
        if len({i for i, _ in records}) != len(records):
            faults.append((records[0][0], "a rotation record is shown twice"))
        history, found = history_of(self.key_set, m.origin, records)
        return history, [*faults, *found]

    def _key_rotation(
        self,
        m: BlockMaterial,
        history: KeyHistory,
        faults: list[tuple[int, str]],
        state: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        if faults:
            more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
            raise _Failed(faults[0][1] + more)
        header = m.block.header
        for p in m.rotations:
            where = f"rotation record at leaf {p.index}"
            if p.index < header.start:
                if "checkpoint" not in state:
                    raise _Failed(f"{where}: needs the block's signed checkpoint to be proven")
                if p.size != header.end:
                    raise _Failed(f"{where}: proven at size {p.size}, want {header.end}")
                verify_inclusion(
                    p.entry.leaf_hash(), p.index, p.size, list(p.proof), state["checkpoint"].root
                )
                continue
            anchored: Checkpoint | None = state.get("anchored")
            if anchored is not None and p.size == anchored.size:
                verify_inclusion(p.entry.leaf_hash(), p.index, p.size, list(p.proof), anchored.root)
                continue
            if p.checkpoint is None:
                raise _Failed(f"{where}: comes without a checkpoint proving it")
            cp = open_checkpoint(p.checkpoint, state["keys"])
            if (cp.origin, cp.size) != (m.origin, p.size) or p.size <= p.index:
                raise _Failed(
                    f"{where}: the checkpoint proving it is of ({cp.origin}, size {cp.size}), "
                    f"want ({m.origin}, size {p.size} > {p.index})"
                )
            history.check_signers(p.checkpoint, cp)
            verify_consistency(header.end, p.size, list(p.consistency), header.root, cp.root)
            verify_inclusion(p.entry.leaf_hash(), p.index, p.size, list(p.proof), cp.root)
        return history.describe(), {
            "rotations": [
                {
                    "index": index,
                    "old": r.old.to_string(),
                    "new": r.new.to_string(),
                    "from_size": r.from_size,
                    "until": r.until,
                    "time_ms": r.time_ms,
                }
                for index, r in history.rotations
            ]
        }

    def _log_key(self, m: BlockMaterial, history: KeyHistory) -> tuple[str, dict[str, Any]]:
        sizes = []
        for what, note in (
            ("the block's", m.block.checkpoint),
            ("the previous", m.prev_checkpoint),
            ("the anchored", m.anchored_note),
        ):
            if note is None:
                continue
            cp = Checkpoint.from_text(checkpoint_body(note))
            try:
                history.check_signers(note, cp)
            except VerifierError as exc:
                raise _Failed(f"{what} checkpoint: {exc}") from exc
            sizes.append(str(cp.size))
        return f"signed by a key of the log at size {', '.join(sizes)}", {}

    def _event(
        self, m: BlockMaterial, event: EventProof, state: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        header = m.block.header
        if not header.start <= event.index < header.end:
            raise _Failed(
                f"leaf {event.index} is not in the block's range [{header.start}, {header.end})"
            )
        if len(m.block.entries) != header.size:
            raise _Failed(f"the block's entries are incomplete: leaf {event.index} is unproven")
        entry = m.block.entries[event.index - header.start]
        claim = _describe_claim(
            event.requested, event.index, entry, state.get("redactions", {}).get(event.index)
        )
        _, source = event_fields(entry.value)
        if event.source is not None and source != event.source:
            raise _Failed(
                f"leaf {event.index} holds an event of source {source!r}, not {event.source!r}"
            )
        root = state["checkpoint"].root if "checkpoint" in state else header.root
        verify_inclusion(entry.leaf_hash(), event.index, header.end, list(event.proof), root)
        data: dict[str, Any] = {
            "log": m.origin,
            "source": source,
            "index": event.index,
            "position": entry.position,
            "timestamp_ms": entry.timestamp_ms,
            "redacted": entry.redacted,
            "proof": [h.hex() for h in event.proof],
        }
        of = "" if source is None else f" of source {source!r}"
        return (
            f"leaf {event.index} (position {entry.position}) of log {m.origin} {claim}{of}, "
            f"included in the checkpoint of size {header.end} by a {len(event.proof)}-hash "
            "proof",
            data,
        )


def _anchored_state(origin: str, chain: ChainState, tip: int | None) -> tuple[str, dict[str, Any]]:
    problems = [*chain.problems, *chain.problems_for(origin, tip)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise _Failed(problems[0] + more)
    waiting = chain.settling_note()
    if waiting is not None:
        raise NotRecordedYetError(waiting)
    anchored = chain.logs.get(origin)
    latest = chain.latest
    if latest is None:
        detail = f"the chain holds no anchor with {chain.min_confirmations}+ confirmations yet"
    elif anchored is None:
        detail = f"the {chain.evidence} rebuilds all {len(chain.anchors)} anchors on chain; none "
        detail += f"includes {origin} yet"
    else:
        detail = f"{anchored.describe()}; the {chain.evidence} ends at size {tip}"
    return detail, {**chain.to_json(), "problems": problems}


def _receipt_matches_event(receipt: AnchorReceipt, fact: AnchorFact) -> None:
    """The receipt's chain fields are the ``Anchored`` event's: otherwise they would only be
    displayed. Its ``size`` (the aggregate's leaf count) MUST be the event's ``logs``: the root
    alone does not bind it (leaf 0 of 3 and of 4 share an audit path)."""
    if fact.logs is None or receipt.size != fact.logs:
        raise _Failed(
            f"receipt states an aggregate of {receipt.size} logs, the Anchored event of "
            f"{receipt.seq} states {fact.logs}"
        )
    for name, got, want in (
        ("tx_hash", receipt.tx_hash, fact.tx_hash.lower()),
        ("block_number", receipt.block_number, fact.block_number),
        ("block_hash", receipt.block_hash, fact.block_hash.lower()),
    ):
        if got != want:
            raise _Failed(
                f"receipt states {name} {got}, the Anchored event of {receipt.seq} is at {want}"
            )


def _describe_claim(
    requested: str, index: int, entry: Entry, redaction: Redaction | None = None
) -> str:
    """How the entry matches what was asked for; _Failed if it does not.

    A redacted entry proves its leaf (position, time, key), never an event id: the id was in
    the erased value, so any id could be claimed for it.
    """
    numbered = numbered_reference(requested)
    if numbered is not None:
        kind, number = numbered
        actual = entry.position if kind == "position" else index
        if actual != number:
            raise _Failed(f"leaf {index} is at {kind} {actual}, not {number}")
        return f"is at {kind} {number}" + (" (redacted)" if entry.redacted else "")
    if entry.redacted:
        how = f" {redaction.describe()}" if redaction is not None else ""
        raise _Failed(
            f"leaf {index} (position {entry.position}) was redacted{how}: its value is erased, "
            f"so the event id cannot be re-read and this does not prove that event "
            f"{requested!r} was sealed; only its leaf is proven (verify --event index:{index})"
        )
    found, _ = event_fields(entry.value)
    if found != requested:
        raise _Failed(f"leaf {index} holds event id {found!r}, not {requested!r}")
    return f"holds event id {requested!r}"
