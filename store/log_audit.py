"""``auditseal verify --all``: every block of a log re-checked from the store, then its anchor.

:func:`audit_log` streams one log out of the store (one ordered query over its blocks, one over
its entries, both in one read transaction so a sealer appending meanwhile cannot skew them;
memory holds one block at a time) into :class:`auditseal.verifier.audit.LogAuditor`, which reports
every bad or missing block. It then proves the log on chain once: the block that ends at the latest
anchored checkpoint goes through :meth:`auditseal.verifier.verify.Verifier.verify_block`, whose
consistency, anchor-inclusion and on-chain checks carry every block up to it to the chain.
Blocks after that checkpoint are "not anchored yet".

Which anchor is the latest is the chain's word, not the store's (:func:`store_chain_state`,
:mod:`auditseal.verifier.anchored_state`): with a chain at hand, the log's anchored size comes from
the latest anchor on chain whose aggregate the store's records rebuild, and a log anchored beyond
the store's last block fails the ``anchored-state`` check. Without a chain the store's own
receipts are followed, and nothing is proven on chain (exit 3 at best).

Exit codes (:attr:`LogAudit.exit_code`; :func:`auditseal.verifier.audit.combined_exit_code` for
several logs): 0 valid, 1 a bad or missing block or a failed anchor check, 3 nothing invalid but not
all proven on chain (not anchored yet, chain unreachable).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from operator import itemgetter

from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Database
from auditseal.store.errors import NotFoundError, StoreError
from auditseal.store.evidence import block_material
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.anchored_state import CHECK as ANCHORED_STATE
from auditseal.verifier.anchored_state import ChainState, read_chain_state
from auditseal.verifier.anchoring import AnchorReader, ChainAnchor
from auditseal.verifier.audit import AuditBlock, EntryRow, LogAudit, LogAuditor, Problem
from auditseal.verifier.block import BlockHeader
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.merkle import range_nodes
from auditseal.verifier.rotation import is_rotation_value
from auditseal.verifier.verify import CHECKS, Report, Verifier

__all__ = ["audit_log", "store_chain_state"]

_BLOCKS_SQL = (
    "SELECT number, start_idx, end_idx, header, checkpoint FROM blocks"
    " WHERE log_id = ? ORDER BY number"
)
_ENTRIES_SQL = (  # a negative position column marks a log record (store/blockstore.py)
    "SELECT idx, CASE WHEN position < 0 THEN idx ELSE position END, timestamp_ms, key, value,"
    " salt, commitment, value_null, position < 0 FROM entries WHERE log_id = ? ORDER BY idx"
)
_NODE_SQL = "SELECT hash FROM nodes WHERE log_id = ? AND level = ? AND idx = ?"
_ROWS_PER_FETCH = 4096
_CHAIN_CHECKS = frozenset(CHECKS[5:])
_idx = itemgetter(0)


@dataclass
class _Anchored:
    """What streaming learns about the latest anchor: its block and the blocks after it."""

    receipt: AnchorReceipt | None
    size: int | None
    block: int | None = None
    first_after: int | None = None
    last_after: int | None = None
    from_chain: bool = False
    """Whether the chain named this anchor as the latest (else the store's receipts did)."""


def store_chain_state(
    db: BlockStore,
    reader: AnchorReader,
    min_confirmations: int,
    settling: Callable[[ChainAnchor], bool] = lambda _anchor: False,
) -> ChainState:
    """The anchors on chain held against the store's records of them.

    Raises ChainUnavailableError when the chain cannot be asked.
    """
    on_chain = reader.anchors()

    def recorded(seq: int) -> list[str]:
        try:
            return [r.checkpoint for r in db.anchor_receipts(seq)]
        except (StoreError, ValueError) as exc:  # FormatError is a ValueError
            raise VerifierError(f"{db.location}: anchor {seq}: {exc}") from exc

    claimed = [a.seq for a in db.anchors("confirmed")]
    return read_chain_state(
        on_chain, recorded, min_confirmations=min_confirmations, claimed=claimed, settling=settling
    )


def audit_log(
    db: BlockStore,
    origin: str,
    verifier: Verifier,
    progress: Callable[[int], None] | None = None,
    chain: ChainState | None = None,
) -> LogAudit:
    """Audit every block of ``origin`` in ``db`` and prove its latest anchor with ``verifier``.

    ``chain`` (from :func:`store_chain_state`) says which anchor is the log's latest; without it
    the store's latest confirmed receipt is taken. ``progress`` is called with the number of
    entries checked so far after each block. Raises NotFoundError if the store has no such log,
    StoreError if it cannot be read.
    """
    if not db.has_log(origin):
        raise NotFoundError(f"{db.location}: no log {origin!r}")
    db.check_entry_types(origin)  # a hand-written TEXT value would reach the hashing as a str
    rotations = [(e.position, e) for e in db.log_records(origin) if is_rotation_value(e.value)]
    auditor = LogAuditor(origin, verifier.key_set, rotations)  # rotations read ahead
    problems: list[Problem] = []
    anchored = (
        _latest_anchor(db, origin, problems)
        if chain is None
        else _chain_anchor(db, origin, chain, problems)
    )
    with db.snapshot() as conn:  # one snapshot for blocks, entries and nodes
        try:
            _stream(conn, origin, auditor, anchored, progress)
        except conn.error as exc:
            raise StoreError(f"{db.location}: reading log {origin!r}: {exc}") from exc
    if chain is not None:
        problems.extend(
            Problem(None, ANCHORED_STATE, p) for p in chain.problems_for(origin, auditor.size)
        )
    report, pending = _prove_anchor(db, origin, verifier, auditor, anchored, problems)
    return auditor.finish(report, anchored.size, pending, problems)


def _chain_anchor(
    db: BlockStore, origin: str, chain: ChainState, problems: list[Problem]
) -> _Anchored:
    """The store's receipt of the log in the latest anchor on chain that the store rebuilds;
    the store's own latest receipt when no such anchor names the log."""
    anchored = chain.logs.get(origin)
    if anchored is None:  # the store's claim, if any, is tested by checks 6-8
        return _latest_anchor(db, origin, problems, chain.unconfirmed)
    receipt = db.anchor_receipt(anchored.anchor.seq, origin)
    if receipt is None:  # cannot happen: the chain state was read from these receipts
        problems.append(Problem(None, "anchor", f"no receipt of anchor {anchored.anchor.seq}"))
        return _Anchored(None, None)
    return _Anchored(receipt, anchored.size, from_chain=True)


def _latest_anchor(
    db: BlockStore, origin: str, problems: list[Problem], not_final: Collection[int] = ()
) -> _Anchored:
    confirmed = [
        r
        for r in db.log_anchor_receipts(origin)
        if r.status == "confirmed" and r.seq not in not_final
    ]
    if not confirmed:
        return _Anchored(None, None)
    receipt = confirmed[-1]
    try:
        size = Checkpoint.from_text(receipt.checkpoint).size
    except VerifierError as exc:
        problems.append(Problem(None, "anchor", f"receipt of anchor {receipt.seq}: {exc}"))
        return _Anchored(None, None)
    return _Anchored(receipt, size)


def _log_id(conn: Database, origin: str) -> int:
    row = conn.execute("SELECT id FROM logs WHERE origin = ?", (origin,)).fetchone()
    if row is None:
        raise NotFoundError(f"no log {origin!r}")
    return int(row[0])


class _Rows:
    """The log's entry rows in leaf order, handed out by leaf range without a step per row."""

    def __init__(self, conn: Database, log_id: int) -> None:
        self._cursor = conn.scan(_ENTRIES_SQL, (log_id,), _ROWS_PER_FETCH)
        self._buf: list[EntryRow] = []
        self._at = 0
        self._done = False

    def take(self, start: int, end: int) -> list[EntryRow]:
        """Rows with ``start <= idx < end``; rows before ``start`` (a missing block's) are
        dropped. Ranges must come in increasing order."""
        out: list[EntryRow] = []
        while True:
            buf, at = self._buf, self._at
            first = bisect_left(buf, start, at, key=_idx)
            stop = bisect_left(buf, end, first, key=_idx)
            out.extend(buf[first:stop])
            self._at = stop
            if stop < len(buf) or self._done:
                return out
            self._buf, self._at = self._cursor.fetchmany(), 0
            self._done = not self._buf


def _range(header: str, start_col: int, end_col: int) -> tuple[int, int]:
    """The leaves a block claims: its header's range, the store's columns if it is unreadable."""
    try:
        parsed = BlockHeader.from_text(header)
    except VerifierError:
        return start_col, end_col
    return parsed.start, parsed.end


def _compact_source(
    conn: Database, log_id: int, start: int
) -> Callable[[], Sequence[bytes] | None]:
    def read() -> Sequence[bytes] | None:
        hashes: list[bytes] = []
        for level, index in range_nodes(0, start):
            row = conn.execute(_NODE_SQL, (log_id, level, index)).fetchone()
            if row is None:
                return None
            hashes.append(bytes(row[0]))
        return hashes

    return read


def _stream(
    conn: Database,
    origin: str,
    auditor: LogAuditor,
    anchored: _Anchored,
    progress: Callable[[int], None] | None,
) -> None:
    log_id = _log_id(conn, origin)
    rows = _Rows(conn, log_id)
    done = 0
    blocks = conn.execute(_BLOCKS_SQL, (log_id,)).fetchall()  # headers only: small
    for number, start_col, end_col, header, checkpoint in blocks:
        start, end = _range(header, start_col, end_col)
        block_rows = rows.take(start, end)
        auditor.feed(
            AuditBlock(number, header, checkpoint, block_rows, _compact_source(conn, log_id, start))
        )
        _note_anchor(anchored, number, end)
        done += len(block_rows)
        if progress is not None:
            progress(done)


def _note_anchor(anchored: _Anchored, number: int, end: int) -> None:
    if anchored.size is not None and end <= anchored.size:
        if end == anchored.size:
            anchored.block = number
        return
    if anchored.first_after is None:
        anchored.first_after = number
    anchored.last_after = number


def _prove_anchor(
    db: BlockStore,
    origin: str,
    verifier: Verifier,
    auditor: LogAuditor,
    anchored: _Anchored,
    problems: list[Problem],
) -> tuple[Report | None, str | None]:
    pending: list[str] = []
    report: Report | None = None
    size = auditor.size
    if anchored.receipt is None:
        if size > 0:
            pending.append(f"not anchored yet: no confirmed anchor of {origin} covers any block")
        return None, "; ".join(pending) or None
    seq = anchored.receipt.seq
    tail_gone = anchored.size is not None and size < anchored.size
    if anchored.block is None and anchored.from_chain and tail_gone:
        pass  # the anchored-state check names it, in the chain's words
    elif anchored.block is None:
        problems.append(
            Problem(
                None,
                "missing",
                f"no stored block ends at the anchored size {anchored.size} (anchor {seq}); "
                f"the stored blocks end at {size}",
            )
        )
    else:
        report = _verify_anchored_block(db, origin, verifier, anchored.block, auditor, problems)
        if report is not None and report.pending is not None:
            pending.append(report.pending)
    if anchored.first_after is not None and anchored.size is not None and size > anchored.size:
        blocks = (
            f"block {anchored.first_after}"
            if anchored.first_after == anchored.last_after
            else f"blocks {anchored.first_after}..{anchored.last_after}"
        )
        pending.append(
            f"not anchored yet: {blocks} (leaves [{anchored.size}, {size})) after anchor {seq}"
        )
    return report, "; ".join(pending) or None


def _verify_anchored_block(
    db: BlockStore,
    origin: str,
    verifier: Verifier,
    number: int,
    auditor: LogAuditor,
    problems: list[Problem],
) -> Report | None:
    try:
        report = verifier.verify_block(block_material(db, origin, number))
    except (StoreError, VerifierError) as exc:
        problems.append(Problem(number, "anchor", f"cannot check the anchored block: {exc}"))
        return None
    already = auditor.reported_blocks()
    for check in report.checks:
        if check.status != "failed":
            continue
        if check.name in _CHAIN_CHECKS or number not in already:
            problems.append(Problem(number, "anchor", f"{check.name}: {check.detail}"))
    return report
