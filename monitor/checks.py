"""The monitor's checks as a state machine: feed it blocks, entry items and receipts; it
returns alerts. No Kafka, no HTTP, no clock: the caller passes the time and a chain view, so
every rule here is unit-tested without services (monitor/watch.py does the I/O).

Trusted: the pinned log keys and the chain (through :class:`ChainView`). Everything on the
topics is evidence to check, never an authority. The alert kinds are :data:`KINDS`; each
alert names the log and block it is about (docs/MONITOR.md says what to do about each).

Rules decided here:

- A block is replayed with :class:`auditseal.verifier.replay.LogReplay` against the log's state: the
  first failing check names the alert kind. A block that fails leaves the state untouched, so
  the genuine block, if it comes later, still applies.
- A block whose number was already accepted is compared with the accepted one: byte-identical
  (a republish after a crash, FORMAT.md §7) is not an alert; anything else is replayed from the
  state before that number. If it verifies, the log's key signed two histories: ``fork``. If
  not, the check it fails names the alert (a forgery without the key).
- A block ahead of the next expected number is held (bounded) until the missing ones arrive;
  ``chain_break`` is raised once for the hole.
- ``sequence``: per source, the set of numbers seen is kept as runs of consecutive numbers
  (the monitor reads the topics from the beginning, so a source starts at 1). A number above
  the highest seen opens a gap (``sequence_gap``); an unseen number below it fills a gap
  already reported, silently, however far back and in whatever order. A number seen before
  is a *replay* when the record's value is byte-identical to the first copy (at-least-once
  delivery before Kafka: the emitter resends a spooled event with the same id and sequence);
  that is counted (``replays``), not alerted. The same number with other bytes is
  ``sequence_duplicate``. Memory is bounded (``sequence_memory`` first copies in all,
  ``sequence_runs`` runs per source): a repeat whose first copy is no longer remembered, or a
  number below the lowest run kept, cannot be compared: it is counted (``unchecked``) and
  raises the warning ``sequence_unchecked``, never a critical alert.
- ``event id``: an id sealed from a second source is ``event_id_reused`` (the holder of one
  source's token published another source's id; ``verify --event`` must not prove either
  silently). A redelivery from the same source is not. Ids are remembered up to ``id_memory``.
- Flagged records (not valid events) and entries whose value is omitted or redacted carry no
  trustworthy source, sequence or id and are skipped by both.
- A receipt is checked against the chain: its block must still be canonical
  (``anchor_reorged``), ``rootOf(seq)`` must be its root and its proof must lead there
  (``anchor_not_on_chain``), and its checkpoint must be one the log signed (``anchor_mismatch``).
  Receipts are re-checked for reorgs until ``reorg_depth`` blocks bury them.
- A block is late when no accepted receipt covers its size ``anchor_late_after_ms`` after its
  ``sealed`` time: one ``anchor_late`` per log until an anchor covers it, then re-armed.
- A key rotation record (verifier/rotation.py) in a block is followed by the log's replay: the
  blocks after it are signed by the rotated-in key (during the overlap, by both), which is no
  alert; a block signed only by a key the log does not declare at its size (the old key after
  the overlap, an unknown key) is ``bad_signature``. The rotations are kept in the state file.
- An entry whose value and salt are erased (not merely omitted from the message) is accepted
  only with its redaction record (verifier/redaction.py), which comes in a later block of the
  same log: the outbox publishes both in one pass. One still unexplained ``redaction_grace_ms``
  after it was seen is ``unexplained_redaction`` (a nulled entry without its record is
  tampering); a record naming another leaf hash is ``unexplained_redaction`` at once.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, pairwise
from typing import Any, Protocol

from auditseal.ingest.envelope import parse_event
from auditseal.ingest.errors import EnvelopeError
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.anchoring import ChainUnavailableError
from auditseal.verifier.block import BlockHeader, ChainError, SealedBlock
from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.errors import FormatError, ProofError, SignatureError, VerifierError
from auditseal.verifier.leaf import LeafMismatchError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.origin import generation_origin, split_generation
from auditseal.verifier.redaction import open_record
from auditseal.verifier.replay import LogReplay
from auditseal.verifier.rotation import KeyRotation, RotationError, is_rotation_value
from auditseal.verifier.sealed import EntryItem

__all__ = [
    "DEFAULT_ID_MEMORY",
    "DEFAULT_SEQUENCE_MEMORY",
    "DEFAULT_SEQUENCE_RUNS",
    "KINDS",
    "STATE_FORMAT",
    "Alert",
    "ChainView",
    "Checker",
    "StateError",
    "severity_of",
]

CRITICAL, WARNING = "critical", "warning"

# Memory bounds of the event checks (docs/MONITOR.md, "Memory"): sequence numbers whose first
# copy is kept to compare a repeat with, runs of seen numbers per source, event ids kept to
# find one sealed from two sources. Each map keeps at least half its size of the newest.
DEFAULT_SEQUENCE_MEMORY = 500_000
DEFAULT_SEQUENCE_RUNS = 1_000
DEFAULT_ID_MEMORY = 500_000

# The saved state (docs/MONITOR.md, "State file"): its format name, and what it keeps per log
# beyond the replay state itself, newest first. The event maps keep their own bounds.
STATE_FORMAT = "auditseal.monitor-state/v1"
STATE_ACCEPTED = 128  # accepted blocks with the state before them (republish and fork checks)
STATE_ROOTS = 10_000  # signed roots by size (receipts and old republished blocks)
STATE_BLOCKS = 10_000  # blocks not yet covered by an anchor (lateness)
STATE_CLAIMS = 1_000  # receipts naming a size whose block has not arrived
STATE_RECEIPTS = 1_000  # receipts already checked, newest seq

# kind -> (severity, one line for --help and the docs)
KINDS: dict[str, tuple[str, str]] = {
    "bad_signature": (
        CRITICAL,
        "a block's checkpoint does not open with any pinned log key, or (after a key rotation) "
        "not with a key of the log at its size",
    ),
    "root_mismatch": (
        CRITICAL,
        "an entry does not hash to its leaf, or the leaves do not give the header's root",
    ),
    "chain_break": (
        CRITICAL,
        "a block does not follow its predecessor (number, range or prev hash), or blocks are "
        "missing before it",
    ),
    "invalid_block": (
        CRITICAL,
        "any other failed block check: entry count or positions, a checkpoint stating another "
        "size or root than the header, an unparsable checkpoint",
    ),
    "fork": (
        CRITICAL,
        "two different validly signed blocks or checkpoints for the same log and number/size",
    ),
    "sequence_gap": (WARNING, "a source skipped sequence numbers: events lost before Kafka"),
    "sequence_duplicate": (
        CRITICAL,
        "a source's sequence number sealed twice with different content",
    ),
    "sequence_unchecked": (
        WARNING,
        "a source's sequence number seen again too long ago for the monitor to compare it "
        "with the first copy",
    ),
    "event_id_reused": (
        CRITICAL,
        "one event id sealed from more than one source",
    ),
    "anchor_late": (
        WARNING,
        "a sealed block not covered by an anchor receipt within --anchor-late-after",
    ),
    "anchor_reorged": (
        WARNING,
        "an anchor receipt whose transaction's block is no longer canonical (reorg)",
    ),
    "anchor_not_on_chain": (
        CRITICAL,
        "a receipt whose root the contract does not hold (rootOf) or whose proof does not lead "
        "to it",
    ),
    "anchor_mismatch": (
        CRITICAL,
        "a receipt for a checkpoint the log never signed, or naming another contract or chain",
    ),
    "malformed": (WARNING, "a message on audit.sealed or audit.anchors that does not parse"),
    "unexplained_redaction": (
        CRITICAL,
        "an entry with its value and salt erased that no redaction record in the log explains",
    ),
    "block_unchecked": (
        WARNING,
        "a block number the monitor passed before its restart, too old for its saved state to "
        "compare it with the accepted one (validly signed, root at its size not remembered)",
    ),
    "history_lost": (
        CRITICAL,
        "messages the monitor had not read yet were deleted (retention) before it resumed "
        "from its state: the blocks or receipts in them were never checked",
    ),
    "log_generation": (
        CRITICAL,
        "a new generation of a log started: its topic partition was reset (broker restarted "
        "with in-memory topics, topic recreated) and the previous log is closed",
    ),
}


def severity_of(kind: str) -> str:
    return KINDS[kind][0]


def _rfc3339(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    kind: str
    log: str | None
    block: int | None
    detail: str
    time_ms: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}")

    @property
    def severity(self) -> str:
        return severity_of(self.kind)

    def to_json(self) -> dict[str, Any]:
        """The alert as printed, posted and published (one JSON object)."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "log": self.log,
            "block": self.block,
            "detail": self.detail,
            "time": _rfc3339(self.time_ms),
        }


class ChainView(Protocol):
    """What the checks ask the chain; the monitor's web3 reader implements it."""

    def root_of(self, seq: int) -> bytes | None:
        """The root the contract holds for ``seq``, None if it holds none."""
        ...

    def block_hash(self, number: int) -> str | None:
        """The canonical block hash at height ``number`` (0x-hex), None if there is none."""
        ...

    def latest_block(self) -> int: ...


# --- per-log state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accepted:
    """An accepted block and the replay state before it (to check a rival of the same number)."""

    digest: bytes
    compact: CompactRange
    prev: BlockHeader | None
    last_position: int
    sealed_at_ms: int
    end: int


@dataclass
class _Log:
    replay: LogReplay
    accepted: dict[int, _Accepted] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)  # signed size -> root
    pending: dict[int, tuple[SealedBlock, tuple[EntryItem, ...], bytes]] = field(
        default_factory=dict
    )
    hole_reported: int | None = None  # the missing block number already alerted
    blocks: list[tuple[int, int, int]] = field(default_factory=list)  # number, end, sealed_ms
    credits: dict[int, int] = field(default_factory=dict)  # receipt seq -> size it covers
    late_reported: int | None = None  # block number of the last anchor_late
    claims: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)  # size->(root, seq)
    nulled: dict[int, tuple[bytes, int, int]] = field(default_factory=dict)  # leaf->hash,block,ms
    redactions: dict[int, bytes] = field(default_factory=dict)  # leaf -> hash a record names

    @property
    def next_number(self) -> int:
        prev = self.replay.prev
        return 0 if prev is None else prev.number + 1

    @property
    def anchored_size(self) -> int:
        return max(self.credits.values(), default=0)


class _Recent:
    """A map that remembers at least the last ``capacity // 2`` keys put, and at most
    ``capacity``: two generations of plain dicts, the older dropped whole when the newer
    fills (O(1) per operation, no per-entry eviction bookkeeping)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.half = capacity // 2
        self._new: dict[Any, Any] = {}
        self._old: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        found = self._new.get(key)
        return self._old.get(key) if found is None else found

    def put(self, key: Any, value: Any) -> None:
        if len(self._new) >= self.half:
            self._old, self._new = self._new, {}
        self._new[key] = value

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


@dataclass
class _Source:
    """The sequence numbers seen from one source, as sorted runs ``[starts[i], ends[i])`` of
    consecutive numbers (never touching: a number that joins two runs merges them). Numbers
    below ``floor`` were forgotten when there were more than the allowed runs."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    floor: int = 1

    @property
    def highest(self) -> int:
        return self.ends[-1] - 1 if self.ends else self.floor - 1

    def seen(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq < self.ends[i]

    def add(self, seq: int, max_runs: int) -> None:
        """Add an unseen ``seq`` (at or above ``floor``); drop the lowest runs past
        ``max_runs``, raising ``floor`` to the lowest number still remembered."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(starts, seq) - 1  # the run starting at or below seq, or -1
        joins_left = i >= 0 and ends[i] == seq
        joins_right = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = seq + 1
        elif joins_right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq + 1)
        if len(starts) > max_runs:
            drop = len(starts) - max_runs
            del starts[:drop], ends[:drop]
            self.floor = starts[0]


@dataclass(frozen=True)
class _Tracked:
    """A credited anchor, re-checked for reorgs until buried."""

    block_number: int
    block_hash: str
    origins: tuple[str, ...]


def block_digest(block: SealedBlock) -> bytes:
    """A digest of everything a block states: a republish has the same one, a rival not."""
    h = hashlib.sha256()
    h.update(block.header.to_text().encode("utf-8"))
    h.update(block.checkpoint.encode("utf-8"))
    for e in block.entries:
        h.update(repr(e).encode("utf-8"))
    return h.digest()


def _kind_of(exc: VerifierError) -> str:
    if isinstance(exc, (SignatureError, RotationError)):  # a key the pins do not vouch for
        return "bad_signature"
    if isinstance(exc, ChainError):
        return "chain_break"
    if isinstance(exc, (LeafMismatchError, ProofError)):
        return "root_mismatch"
    return "invalid_block"


class Checker:
    """The monitor's state: one :class:`LogReplay` per log, per-source sequences, receipts.

    ``anchor_late_after_ms`` None disables lateness; ``contract``/``chain_id`` pin what
    receipts must name; ``sequence_memory``, ``sequence_runs`` and ``id_memory`` bound the
    memory of the event checks (the module docstring says what happens beyond them).
    """

    MAX_PENDING = 1000

    def __init__(
        self,
        verifiers: Iterable[NoteVerifier],
        *,
        anchor_late_after_ms: int | None = None,
        contract: str | None = None,
        chain_id: int | None = None,
        reorg_depth: int = 64,
        sequence_memory: int = DEFAULT_SEQUENCE_MEMORY,
        sequence_runs: int = DEFAULT_SEQUENCE_RUNS,
        id_memory: int = DEFAULT_ID_MEMORY,
        redaction_grace_ms: int = 60_000,
    ) -> None:
        self.verifiers = tuple(verifiers)
        self.anchor_late_after_ms = anchor_late_after_ms
        self.contract = contract.lower() if contract else None
        self.chain_id = chain_id
        self.reorg_depth = reorg_depth
        if sequence_runs < 1:
            raise ValueError("sequence_runs must be at least 1")
        self.sequence_runs = sequence_runs
        self.redaction_grace_ms = redaction_grace_ms
        self._logs: dict[str, _Log] = {}
        self._sources: dict[str, _Source] = {}
        self._source_names: dict[str, str] = {}
        # (source, sequence) -> (id, keyed digest of the first copy). The key is secret to
        # this process, so nobody can make two different events that compare equal.
        self._digests = _Recent(sequence_memory)
        self._digest_key = os.urandom(16)
        self._ids = _Recent(id_memory)  # event id -> the source it was first sealed from
        self._tracked: dict[int, _Tracked] = {}
        self._receipts_seen: set[tuple[int, str, str]] = set()
        self.blocks_checked = 0
        self.events_checked = 0
        self.replays = 0
        self.unchecked = 0
        self.republished = 0
        self.receipts_checked = 0
        self.last_block_ms: int | None = None

    def _log(self, origin: str) -> _Log:
        state = self._logs.get(origin)
        if state is None:
            state = self._logs[origin] = _Log(LogReplay(origin, self.verifiers))
        return state

    # --- blocks ------------------------------------------------------------------------------

    def block(self, block: SealedBlock, items: Sequence[EntryItem], now_ms: int) -> list[Alert]:
        """Check one assembled block of ``audit.sealed`` (and its entries' sequences)."""
        h = block.header
        state = self._log(h.origin)
        digest = block_digest(block)
        accepted = state.accepted.get(h.number)
        if accepted is not None:
            return self._rival(state, block, digest, accepted, now_ms)
        if h.number < state.next_number:  # accepted before a restart, no longer kept
            return self._forgotten(state, block, now_ms)
        if h.number > state.next_number:
            held = state.pending.get(h.number)
            if held is not None and held[2] == digest:
                self.republished += 1
                return []
            state.pending[h.number] = (block, tuple(items), digest)
            while len(state.pending) > self.MAX_PENDING:
                del state.pending[min(state.pending)]
            if state.hole_reported == state.next_number:
                return []
            state.hole_reported = state.next_number
            return [
                Alert(
                    "chain_break",
                    h.origin,
                    h.number,
                    f"block {h.number} arrived but block {state.next_number} is missing; "
                    "later blocks are held until it arrives",
                    now_ms,
                )
            ]
        alerts = self._apply(state, block, tuple(items), digest, now_ms)
        while state.next_number in state.pending:
            held_block, held_items, held_digest = state.pending.pop(state.next_number)
            alerts += self._apply(state, held_block, held_items, held_digest, now_ms)
        return alerts

    def _apply(
        self,
        state: _Log,
        block: SealedBlock,
        items: tuple[EntryItem, ...],
        digest: bytes,
        now_ms: int,
    ) -> list[Alert]:
        h = block.header
        replay = state.replay
        before = _Accepted(
            digest, replay.compact.copy(), replay.prev, replay.last_position, h.sealed_at_ms, h.end
        )
        try:
            replay.apply(block)
        except VerifierError as exc:
            return [Alert(_kind_of(exc), h.origin, h.number, str(exc), now_ms)]
        state.accepted[h.number] = before
        if state.hole_reported is not None and state.hole_reported <= h.number:
            state.hole_reported = None
        self.blocks_checked += 1
        self.last_block_ms = h.sealed_at_ms
        alerts: list[Alert] = []
        known = state.roots.get(h.end)
        if known is not None and known != h.root:  # cannot happen through one replay
            alerts.append(Alert("fork", h.origin, h.number, f"size {h.end}: two roots", now_ms))
        state.roots[h.end] = h.root
        for root, seq in state.claims.pop(h.end, []):
            if root != h.root:
                alerts.append(self._claim_mismatch(h.origin, h.number, h.end, root, seq, now_ms))
        state.blocks.append((h.number, h.end, h.sealed_at_ms))
        alerts += self._redactions(state, h.origin, h.number, items, now_ms)
        base, generation = split_generation(h.origin)
        if h.number == 0 and generation > 0:
            alerts.append(
                Alert(
                    "log_generation",
                    h.origin,
                    0,
                    f"generation {generation} of {base} started: the topic partition was reset "
                    f"and the previous log ({generation_origin(base, generation - 1)}) is closed",
                    now_ms,
                )
            )
        alerts += self._sequences(h.origin, h.number, items, now_ms)
        return alerts

    def _redactions(
        self, state: _Log, origin: str, number: int, items: Sequence[EntryItem], now_ms: int
    ) -> list[Alert]:
        """Match erased entries with redaction records (both already checked by the replay)."""
        alerts: list[Alert] = []
        for item in items:
            entry = item.entry
            if entry.log_record and is_rotation_value(entry.value):
                continue  # a key rotation: the replay followed it (verifier/rotation.py)
            if entry.log_record:
                red = open_record(entry, item.index)
                state.redactions[red.index] = red.leaf_hash
                seen = state.nulled.pop(red.index, None)
                if seen is not None and seen[0] != red.leaf_hash:
                    alerts.append(
                        Alert(
                            "unexplained_redaction",
                            origin,
                            number,
                            f"the redaction record at leaf {item.index} names leaf hash "
                            f"{red.leaf_hash.hex()}, leaf {red.index} hashes to {seen[0].hex()}",
                            now_ms,
                        )
                    )
            elif entry.redacted and not item.value_omitted:
                leaf = entry.leaf_hash()
                if state.redactions.get(item.index) != leaf:
                    state.nulled[item.index] = (leaf, number, now_ms)
        return alerts

    def _rival(
        self, state: _Log, block: SealedBlock, digest: bytes, accepted: _Accepted, now_ms: int
    ) -> list[Alert]:
        h = block.header
        if digest == accepted.digest:
            self.republished += 1
            return []
        trial = LogReplay(
            h.origin,
            self.verifiers,
            accepted.compact,
            accepted.prev,
            accepted.last_position,
            state.replay.history.copy(),
        )
        try:
            trial.apply(block)
        except VerifierError as exc:
            return [
                Alert(
                    _kind_of(exc),
                    h.origin,
                    h.number,
                    f"a second block {h.number} that differs from the accepted one: {exc}",
                    now_ms,
                )
            ]
        return [
            Alert(
                "fork",
                h.origin,
                h.number,
                f"two different validly signed blocks {h.number} (size {h.end}); the accepted "
                f"one has root {state.roots.get(accepted.end, b'').hex()}, this one "
                f"{h.root.hex()} and header hash {h.hash().hex()}",
                now_ms,
            )
        ]

    def _forgotten(self, state: _Log, block: SealedBlock, now_ms: int) -> list[Alert]:
        """A block numbered below the next one whose accepted copy the restored state no
        longer keeps: judged by its signature and the root remembered at its size."""
        h = block.header
        try:
            checkpoint = open_checkpoint(block.checkpoint, self.verifiers)
        except VerifierError as exc:
            return [
                Alert(
                    _kind_of(exc),
                    h.origin,
                    h.number,
                    f"a second block {h.number}, older than the monitor's state keeps: {exc}",
                    now_ms,
                )
            ]
        known = state.roots.get(checkpoint.size)
        if known is not None and known == checkpoint.root == h.root and h.end == checkpoint.size:
            self.republished += 1  # signed and committing to the accepted root: a republish
            return []
        if known is not None and known != checkpoint.root:
            return [
                Alert(
                    "fork",
                    h.origin,
                    h.number,
                    f"a validly signed checkpoint of size {checkpoint.size} with root "
                    f"{checkpoint.root.hex()}; the accepted one has root {known.hex()}",
                    now_ms,
                )
            ]
        return [
            Alert(
                "block_unchecked",
                h.origin,
                h.number,
                f"block {h.number} (size {h.end}) arrived again after the monitor resumed from "
                "its state, which no longer keeps the accepted block or the root at its size: "
                "not compared (auditseal verify --block on the store decides)",
                now_ms,
            )
        ]

    # --- events: sequences and ids --------------------------------------------------------

    def _sequences(
        self, origin: str, number: int, items: Sequence[EntryItem], now_ms: int
    ) -> list[Alert]:
        alerts: list[Alert] = []
        unchecked: dict[str, list[int]] = {}  # source -> numbers beyond memory, in this block
        for item in items:
            value = item.entry.value
            if item.flag is not None or value is None:
                continue
            try:
                event = parse_event(value)
            except (EnvelopeError, ValueError):
                continue  # not a valid event: the sealer flags it, it carries no sequence
            self.events_checked += 1
            source, seq, event_id = str(event["source"]), int(event["sequence"]), str(event["id"])
            source = self._source_names.setdefault(source, source)  # one str per source
            outcome, detail = self._sequence(source, seq, event_id, value)
            if outcome == "unchecked":
                unchecked.setdefault(source, []).append(seq)
                continue
            if outcome == "replay":
                continue  # the same event again: its id was checked the first time
            if outcome in KINDS:
                alerts.append(
                    Alert(outcome, origin, number, f"{detail} (leaf {item.index})", now_ms)
                )
            reused = self._event_id(source, event_id)
            if reused is not None:
                alerts.append(
                    Alert(
                        "event_id_reused",
                        origin,
                        number,
                        f"event id {event_id} sealed from source {reused} and now from source "
                        f"{source} (sequence {seq}, leaf {item.index})",
                        now_ms,
                    )
                )
        for source, seqs in unchecked.items():
            shown = ", ".join(str(s) for s in seqs[:5]) + (", ..." if len(seqs) > 5 else "")
            alerts.append(
                Alert(
                    "sequence_unchecked",
                    origin,
                    number,
                    f"source {source}: {len(seqs)} event(s) with sequence numbers the monitor no "
                    f"longer remembers ({shown}); their content was not compared with the first "
                    "copy",
                    now_ms,
                )
            )
        return alerts

    def _sequence(self, source: str, seq: int, event_id: str, value: bytes) -> tuple[str, str]:
        """Follow one event's sequence: (outcome, detail), the outcome an alert kind
        (``sequence_gap``, ``sequence_duplicate``), "replay", "unchecked" or "new".

        Exact within memory: ``sequence_duplicate`` only for a number seen before whose first
        copy is remembered and differs; a number seen before whose copy was forgotten, or below
        the lowest remembered run, is "unchecked" (counted and warned, never critical).
        """
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source()
        digest = hashlib.blake2b(value, digest_size=16, key=self._digest_key).digest()
        if seq < state.floor:
            self.unchecked += 1
            return "unchecked", ""
        if state.seen(seq):
            first = self._digests.get((source, seq))
            if first is None:
                self.unchecked += 1
                return "unchecked", ""
            if first[1] == digest:
                self.replays += 1
                return "replay", ""
            return (
                "sequence_duplicate",
                f"source {source}: sequence {seq} sealed twice with different content "
                f"(ids {first[0]} and {event_id})",
            )
        result = ("new", "")
        highest = state.highest
        if seq > highest + 1:
            first_missing, last = highest + 1, seq - 1
            span = f"{first_missing}" if first_missing == last else f"{first_missing}..{last}"
            result = (
                "sequence_gap",
                f"source {source}: sequence {span} missing ({last - first_missing + 1} events), "
                f"next seen is {seq} (id {event_id})",
            )
        # Below the highest and unseen: a late number filling a gap already reported, silent.
        state.add(seq, self.sequence_runs)
        self._digests.put((source, seq), (event_id, digest))
        return result

    def _event_id(self, source: str, event_id: str) -> str | None:
        """The other source ``event_id`` was first sealed from, None if none (remembered)."""
        first = self._ids.get(event_id)
        if first is None:
            self._ids.put(event_id, source)
            return None
        return None if first == source else str(first)

    # --- receipts ----------------------------------------------------------------------------

    def receipt(self, r: AnchorReceipt, chain: ChainView | None, now_ms: int) -> list[Alert]:
        """Check one receipt of ``audit.anchors``; ``chain`` None skips the chain checks."""
        key = (r.seq, r.origin, r.block_hash.lower())
        if key in self._receipts_seen:
            return []
        self._receipts_seen.add(key)
        self.receipts_checked += 1
        state = self._log(r.origin)
        checkpoint = Checkpoint.from_text(r.checkpoint)

        def alert(kind: str, detail: str) -> list[Alert]:
            return [Alert(kind, r.origin, None, f"anchor seq {r.seq}: {detail}", now_ms)]

        if self.contract is not None and r.contract.lower() != self.contract:
            return alert("anchor_mismatch", f"names contract {r.contract}, pinned {self.contract}")
        if self.chain_id is not None and r.chain_id != self.chain_id:
            return alert("anchor_mismatch", f"names chain {r.chain_id}, pinned {self.chain_id}")
        if r.status != "confirmed":
            return []  # the anchor service's own record of an orphan: nothing is claimed
        if chain is not None:
            try:
                return self._on_chain(r, chain, state, checkpoint, alert, now_ms)
            except ChainUnavailableError:
                self._receipts_seen.discard(key)  # not checked: the retry must check it
                self.receipts_checked -= 1
                raise
        try:
            r.verify()
        except (ProofError, FormatError) as exc:
            return alert("anchor_not_on_chain", f"proof does not lead to its root ({exc})")
        return self._credit(r, state, checkpoint, now_ms)

    def _on_chain(
        self,
        r: AnchorReceipt,
        chain: ChainView,
        state: _Log,
        checkpoint: Checkpoint,
        alert: Callable[[str, str], list[Alert]],
        now_ms: int,
    ) -> list[Alert]:
        canonical = chain.block_hash(r.block_number)
        if canonical is None or canonical.lower() != r.block_hash.lower():
            return alert(
                "anchor_reorged",
                f"transaction {r.tx_hash} in block {r.block_number} ({r.block_hash}), "
                f"which is no longer canonical (now {canonical})",
            )
        on_chain = chain.root_of(r.seq)
        if on_chain is None:
            return alert("anchor_not_on_chain", f"rootOf({r.seq}) is empty on chain")
        try:
            r.verify(on_chain)
        except (ProofError, FormatError) as exc:
            return alert(
                "anchor_not_on_chain",
                f"rootOf({r.seq}) is {on_chain.hex()}, the receipt's proof does not lead "
                f"there ({exc})",
            )
        tracked = self._tracked.get(r.seq)
        origins = (*tracked.origins, r.origin) if tracked else (r.origin,)
        self._tracked[r.seq] = _Tracked(r.block_number, r.block_hash, origins)
        return self._credit(r, state, checkpoint, now_ms)

    def _credit(
        self, r: AnchorReceipt, state: _Log, checkpoint: Checkpoint, now_ms: int
    ) -> list[Alert]:
        """The receipt's checkpoint against the log's signed ones; credit its size."""
        known = state.roots.get(checkpoint.size)
        if known is None:
            state.claims.setdefault(checkpoint.size, []).append((checkpoint.root, r.seq))
        elif known != checkpoint.root:
            number = self._number_at(state, checkpoint.size)
            return [
                self._claim_mismatch(
                    r.origin, number, checkpoint.size, checkpoint.root, r.seq, now_ms
                )
            ]
        state.credits[r.seq] = checkpoint.size
        return []

    @staticmethod
    def _number_at(state: _Log, size: int) -> int | None:
        for number, acc in state.accepted.items():
            if acc.end == size:
                return number
        return None

    @staticmethod
    def _claim_mismatch(
        origin: str, number: int | None, size: int, root: bytes, seq: int, now_ms: int
    ) -> Alert:
        return Alert(
            "anchor_mismatch",
            origin,
            number,
            f"anchor seq {seq} claims root {root.hex()} at size {size}, which the log never signed",
            now_ms,
        )

    def recheck_anchors(self, chain: ChainView, now_ms: int) -> list[Alert]:
        """Re-check credited anchors not yet ``reorg_depth`` deep: still canonical?"""
        if not self._tracked:
            return []
        latest = chain.latest_block()
        alerts: list[Alert] = []
        for seq, t in list(self._tracked.items()):
            if latest - t.block_number + 1 > self.reorg_depth:
                del self._tracked[seq]
                continue
            canonical = chain.block_hash(t.block_number)
            if canonical is not None and canonical.lower() == t.block_hash.lower():
                continue
            del self._tracked[seq]
            still = chain.root_of(seq)
            for origin in dict.fromkeys(t.origins):
                state = self._log(origin)
                state.credits.pop(seq, None)
                alerts.append(
                    Alert(
                        "anchor_reorged",
                        origin,
                        None,
                        f"anchor seq {seq}: block {t.block_number} ({t.block_hash}) left the "
                        f"canonical chain (now {canonical}); rootOf({seq}) is "
                        f"{still.hex() if still else 'empty'}",
                        now_ms,
                    )
                )
        return alerts

    # --- lateness ----------------------------------------------------------------------------

    def late(self, now_ms: int) -> list[Alert]:
        """``anchor_late`` for each log whose oldest unanchored block is past the threshold.

        Call only when the anchors topic is caught up, or old blocks look late while their
        receipts are still unread. Also ``unexplained_redaction`` for each erased entry whose
        record has not arrived within ``redaction_grace_ms``.
        """
        alerts: list[Alert] = []
        for origin, state in sorted(self._logs.items()):
            for index, (_, number, seen_ms) in sorted(state.nulled.items()):
                if now_ms - seen_ms > self.redaction_grace_ms:
                    del state.nulled[index]
                    alerts.append(
                        Alert(
                            "unexplained_redaction",
                            origin,
                            number,
                            f"leaf {index} has its value and salt erased, but no redaction "
                            f"record in the log explained it within "
                            f"{self.redaction_grace_ms / 1000:g} s: a nulled entry without its "
                            "record is tampering",
                            now_ms,
                        )
                    )
        if self.anchor_late_after_ms is None:
            return alerts
        for origin, state in sorted(self._logs.items()):
            # Blocks are in order of their ends: the first one past the anchored size.
            first = bisect.bisect_right(state.blocks, state.anchored_size, key=lambda b: b[1])
            if first == len(state.blocks):
                state.late_reported = None
                continue
            number, end, sealed_ms = state.blocks[first]
            age = now_ms - sealed_ms
            if age <= self.anchor_late_after_ms or state.late_reported == number:
                continue
            state.late_reported = number
            alerts.append(
                Alert(
                    "anchor_late",
                    origin,
                    number,
                    f"block {number} (size {end}) sealed {age / 1000:.1f} s ago is not anchored "
                    f"(limit {self.anchor_late_after_ms / 1000:g} s); anchored size "
                    f"{state.anchored_size}, {len(state.blocks) - first} block(s) waiting",
                    now_ms,
                )
            )
        return alerts

    def malformed(self, where: str, detail: str, now_ms: int, log: str | None = None) -> Alert:
        return Alert("malformed", log, None, f"{where}: {detail}", now_ms)

    # --- the saved state ---------------------------------------------------------------------

    def held(self) -> set[tuple[str, int]]:
        """(origin, number) of the blocks held until a missing one arrives. They are not in the
        snapshot: whoever saves it must feed them again after a restore (the monitor resumes
        its topics at the first message of the oldest one)."""
        return {(origin, n) for origin, st in self._logs.items() for n in st.pending}

    def snapshot(self) -> dict[str, Any]:
        """The state to go on from after a restart, as JSON data (docs/MONITOR.md)."""
        return snapshot(self)

    def restore(self, data: Any) -> None:
        """Go on from a :meth:`snapshot`; StateError names the field at fault."""
        restore(self, data)

    def history_lost(self, where: str, detail: str, now_ms: int) -> Alert:
        return Alert("history_lost", None, None, f"{where}: {detail}", now_ms)


# --- the saved state -------------------------------------------------------------------------


class StateError(ValueError):
    """A saved state that does not decode; the message names the field at fault."""


def _field(d: dict[str, Any], name: str, where: str) -> Any:
    if name not in d:
        raise StateError(f"{where}.{name}: missing")
    return d[name]


def _int(v: Any, where: str) -> int:
    if type(v) is not int:
        raise StateError(f"{where}: want an integer, got {type(v).__name__}")
    return v


def _opt_int(v: Any, where: str) -> int | None:
    return None if v is None else _int(v, where)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise StateError(f"{where}: want a string, got {type(v).__name__}")
    return v


def _list(v: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(v, list):
        raise StateError(f"{where}: want a list, got {type(v).__name__}")
    if length is not None and len(v) != length:
        raise StateError(f"{where}: want {length} items, got {len(v)}")
    return v


def _dict(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise StateError(f"{where}: want an object, got {type(v).__name__}")
    return v


def _bytes(v: Any, where: str, size: int = 32) -> bytes:
    text = _str(v, where)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise StateError(f"{where}: not hex") from None
    if len(raw) != size:
        raise StateError(f"{where}: want {size} bytes, got {len(raw)}")
    return raw


def _header(v: Any, where: str) -> BlockHeader | None:
    if v is None:
        return None
    try:
        return BlockHeader.from_text(_str(v, where))
    except (VerifierError, ValueError) as exc:
        raise StateError(f"{where}: {exc}") from None


def _compact_json(c: CompactRange) -> dict[str, Any]:
    return {"size": c.size, "hashes": [h.hex() for h in c.hashes]}


def _compact(v: Any, where: str) -> CompactRange:
    d = _dict(v, where)
    hashes = _list(_field(d, "hashes", where), f"{where}.hashes")
    try:
        return CompactRange(
            _int(_field(d, "size", where), f"{where}.size"),
            [_bytes(h, f"{where}.hashes[{i}]") for i, h in enumerate(hashes)],
        )
    except StateError:
        raise
    except ValueError as exc:
        raise StateError(f"{where}: {exc}") from None


def _newest(items: Any, n: int) -> list[Any]:
    """The last ``n`` of a dict's items (insertion order), oldest first, without a full copy."""
    return list(islice(reversed(items), n))[::-1]


def snapshot(checker: Checker) -> dict[str, Any]:
    """What ``checker`` needs to go on where it stopped, as JSON data (bounded: the module's
    STATE_* limits per log, the event maps within their own capacity)."""
    tracked = checker._tracked
    logs: dict[str, Any] = {}
    for origin, st in sorted(checker._logs.items()):
        r = st.replay
        # Credits of buried receipts can no longer be withdrawn: only their maximum matters.
        buried = {seq: size for seq, size in st.credits.items() if seq not in tracked}
        credits = {seq: size for seq, size in st.credits.items() if seq in tracked}
        if buried:
            top = max(buried, key=lambda seq: buried[seq])
            credits[top] = buried[top]
        floor = max(buried.values(), default=0)
        waiting: list[list[int]] = []
        for number, end, sealed_ms in reversed(st.blocks):
            if end <= floor or len(waiting) == STATE_BLOCKS:
                break
            waiting.append([number, end, sealed_ms])
        logs[origin] = {
            "compact": _compact_json(r.compact),
            "prev": r.prev.to_text() if r.prev else None,
            "last_position": r.last_position,
            "accepted": [
                [
                    number,
                    a.digest.hex(),
                    _compact_json(a.compact),
                    a.prev.to_text() if a.prev else None,
                    a.last_position,
                    a.sealed_at_ms,
                    a.end,
                ]
                for number, a in _newest(st.accepted.items(), STATE_ACCEPTED)
            ],
            "roots": [[size, root.hex()] for size, root in _newest(st.roots.items(), STATE_ROOTS)],
            "blocks": waiting[::-1],
            "credits": [[seq, size] for seq, size in sorted(credits.items())],
            "claims": [
                [size, root.hex(), seq]
                for size, claims in sorted(st.claims.items())
                for root, seq in claims
            ][-STATE_CLAIMS:],
            "nulled": [
                [leaf, h.hex(), number, ms] for leaf, (h, number, ms) in sorted(st.nulled.items())
            ],
            "redactions": [[leaf, h.hex()] for leaf, h in sorted(st.redactions.items())],
            "rotations": [
                [
                    leaf,
                    rot.old.to_string(),
                    rot.new.to_string(),
                    rot.from_size,
                    rot.until,
                    rot.time_ms,
                ]
                for leaf, rot in r.history.rotations
            ],
            "hole_reported": st.hole_reported,
            "late_reported": st.late_reported,
        }
    return {
        "digest_key": checker._digest_key.hex(),
        "logs": logs,
        "sources": {
            name: {
                "floor": src.floor,
                "runs": [[a, b] for a, b in zip(src.starts, src.ends, strict=True)],
            }
            for name, src in sorted(checker._sources.items())
        },
        "digests": [
            [[source, seq, event_id, d.hex()] for (source, seq), (event_id, d) in gen.items()]
            for gen in (checker._digests._old, checker._digests._new)
        ],
        "ids": [
            [[event_id, source] for event_id, source in gen.items()]
            for gen in (checker._ids._old, checker._ids._new)
        ],
        "tracked": [
            [seq, t.block_number, t.block_hash, list(t.origins)]
            for seq, t in sorted(tracked.items())
        ],
        "receipts_seen": [list(k) for k in sorted(checker._receipts_seen)[-STATE_RECEIPTS:]],
    }


def restore(checker: Checker, data: Any) -> None:
    """Load a :func:`snapshot` into a new ``checker``; StateError names the field at fault
    (and leaves ``checker`` untouched)."""
    w = "checker"
    d = _dict(data, w)
    key = _bytes(_field(d, "digest_key", w), f"{w}.digest_key", 16)
    logs = {
        _str(origin, f"{w}.logs"): _restore_log(checker, origin, raw, f"{w}.logs[{origin!r}]")
        for origin, raw in _dict(_field(d, "logs", w), f"{w}.logs").items()
    }
    sources: dict[str, _Source] = {}
    for name, raw in _dict(_field(d, "sources", w), f"{w}.sources").items():
        where = f"{w}.sources[{name!r}]"
        sd = _dict(raw, where)
        src = _Source(floor=_int(_field(sd, "floor", where), f"{where}.floor"))
        last = src.floor - 1
        for i, run in enumerate(_list(_field(sd, "runs", where), f"{where}.runs")):
            at = f"{where}.runs[{i}]"
            a, b = (_int(x, at) for x in _list(run, at, 2))
            if not last < a < b:  # sorted, non-empty, never touching
                raise StateError(f"{at}: run {a}..{b} out of order")
            src.starts.append(a)
            src.ends.append(b)
            last = b
        if len(src.starts) > checker.sequence_runs:  # a smaller --sequence-runs than before
            drop = len(src.starts) - checker.sequence_runs
            del src.starts[:drop], src.ends[:drop]
            src.floor = src.starts[0]
        sources[name] = src
    digests = _Recent(checker._digests.capacity)
    for g, gen in enumerate(_list(_field(d, "digests", w), f"{w}.digests", 2)):
        for i, item in enumerate(_list(gen, f"{w}.digests[{g}]")):
            at = f"{w}.digests[{g}][{i}]"
            source, seq, event_id, digest = _list(item, at, 4)
            digests.put(
                (_str(source, at), _int(seq, at)), (_str(event_id, at), _bytes(digest, at, 16))
            )
    ids = _Recent(checker._ids.capacity)
    for g, gen in enumerate(_list(_field(d, "ids", w), f"{w}.ids", 2)):
        for i, item in enumerate(_list(gen, f"{w}.ids[{g}]")):
            at = f"{w}.ids[{g}][{i}]"
            event_id, source = _list(item, at, 2)
            ids.put(_str(event_id, at), _str(source, at))
    tracked: dict[int, _Tracked] = {}
    for i, item in enumerate(_list(_field(d, "tracked", w), f"{w}.tracked")):
        at = f"{w}.tracked[{i}]"
        seq, number, block_hash, origins = _list(item, at, 4)
        tracked[_int(seq, at)] = _Tracked(
            _int(number, at),
            _str(block_hash, at),
            tuple(_str(o, at) for o in _list(origins, at)),
        )
    seen: set[tuple[int, str, str]] = set()
    for i, item in enumerate(_list(_field(d, "receipts_seen", w), f"{w}.receipts_seen")):
        at = f"{w}.receipts_seen[{i}]"
        seq, origin, block_hash = _list(item, at, 3)
        seen.add((_int(seq, at), _str(origin, at), _str(block_hash, at)))
    checker._digest_key = key
    checker._logs = logs
    checker._sources = sources
    checker._source_names = {name: name for name in sources}
    checker._digests = digests
    checker._ids = ids
    checker._tracked = tracked
    checker._receipts_seen = seen


def _restore_log(checker: Checker, origin: str, raw: Any, w: str) -> _Log:
    d = _dict(raw, w)

    def rows(name: str, width: int) -> Iterable[tuple[str, list[Any]]]:
        for i, row in enumerate(_list(_field(d, name, w), f"{w}.{name}")):
            at = f"{w}.{name}[{i}]"
            yield at, _list(row, at, width)

    try:
        replay = LogReplay(
            origin,
            checker.verifiers,
            _compact(_field(d, "compact", w), f"{w}.compact"),
            _header(_field(d, "prev", w), f"{w}.prev"),
            _int(_field(d, "last_position", w), f"{w}.last_position"),
        )
    except ValueError as exc:
        if isinstance(exc, StateError):
            raise
        raise StateError(f"{w}: {exc}") from None
    st = _Log(replay)
    if "rotations" in d:  # absent in a state saved before key rotations existed
        for at, (leaf, old, new, start, until, ms) in rows("rotations", 6):
            try:
                replay.history.add(
                    _int(leaf, at),
                    KeyRotation(
                        origin,
                        NoteVerifier.from_string(_str(old, at)),
                        NoteVerifier.from_string(_str(new, at)),
                        _int(start, at),
                        _int(until, at),
                        _int(ms, at),
                    ),
                )
            except VerifierError as exc:
                raise StateError(f"{at}: {exc}") from None
    for at, (number, digest, compact, prev, last, sealed_ms, end) in rows("accepted", 7):
        st.accepted[_int(number, at)] = _Accepted(
            _bytes(digest, at),
            _compact(compact, at),
            _header(prev, at),
            _int(last, at),
            _int(sealed_ms, at),
            _int(end, at),
        )
    for at, (size, root) in rows("roots", 2):
        st.roots[_int(size, at)] = _bytes(root, at)
    for at, (number, end, sealed_ms) in rows("blocks", 3):
        st.blocks.append((_int(number, at), _int(end, at), _int(sealed_ms, at)))
    if any(a[1] > b[1] for a, b in pairwise(st.blocks)):
        raise StateError(f"{w}.blocks: not in order of their ends")
    for at, (seq, size) in rows("credits", 2):
        st.credits[_int(seq, at)] = _int(size, at)
    for at, (size, root, seq) in rows("claims", 3):
        st.claims.setdefault(_int(size, at), []).append((_bytes(root, at), _int(seq, at)))
    for at, (leaf, h, number, ms) in rows("nulled", 4):
        st.nulled[_int(leaf, at)] = (_bytes(h, at), _int(number, at), _int(ms, at))
    for at, (leaf, h) in rows("redactions", 2):
        st.redactions[_int(leaf, at)] = _bytes(h, at)
    st.hole_reported = _opt_int(_field(d, "hole_reported", w), f"{w}.hole_reported")
    st.late_reported = _opt_int(_field(d, "late_reported", w), f"{w}.late_reported")
    return st
