"""What the chain says was anchored, and whether the evidence can show it (``anchored-state``).

A store, or a read API in front of one, is the operator's evidence; the chain is the authority on
what was anchored (docs/VERIFYING.md, "The chain decides what was anchored"). A verifier that only
follows the anchor receipts the evidence offers cannot see the evidence's tail go missing: a store
restored from an older copy, or one whose last blocks and their anchor records were deleted,
still holds a consistent prefix, every block of which verifies. Digest-chain validators are known
for exactly this ("consecutive deletions at the end are not detected").

:func:`read_chain_state` closes that hole. Given every ``Anchored`` event of the pinned contract
(:meth:`~auditseal.verifier.anchoring.AnchorReader.anchors`) and, for each anchor, the checkpoints
the evidence says it aggregated (their bodies), it decides:

1. every anchor on chain at the pinned confirmation depth has a record in the evidence whose
   checkpoint bodies rebuild the root the chain holds
   (:func:`auditseal.verifier.anchor.build_aggregate`); otherwise the evidence cannot show what that
   anchor committed to;
2. every anchor the evidence records as confirmed exists on chain (at any depth);
3. per log, the latest anchored size: the size of the log's checkpoint in the latest anchor whose
   aggregate the evidence rebuilds (:class:`AnchoredSize`).

:meth:`ChainState.problems_for` then holds a log's tip against it: a log anchored at size ``S``
whose evidence ends before ``S``, or that the evidence lacks, fails. Pure: the chain and the
evidence are read by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditseal.verifier.anchor import Aggregate, build_aggregate
from auditseal.verifier.anchoring import AnchorReader, ChainAnchor
from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import VerifierError

__all__ = [
    "CHECK",
    "SETTLE_S",
    "AnchoredSize",
    "ChainState",
    "NotRecordedYetError",
    "mined_within",
    "read_chain_state",
]

CHECK = "anchored-state"
"""The name of the check, in reports and ``--json`` output."""
SETTLE_S = 60
"""How long after its block an anchor may be missing from the evidence without failing it: the
anchor service records an anchor as soon as its transaction is mined (seconds)."""


def mined_within(reader: AnchorReader, now: int, seconds: int) -> Callable[[ChainAnchor], bool]:
    """``settling`` for :func:`read_chain_state`: the anchor's block is less than ``seconds``
    old at ``now`` (Unix seconds; the block's timestamp is read from the chain)."""

    def young(anchor: ChainAnchor) -> bool:
        fact = reader.anchored_at(anchor.seq)
        return fact is not None and now - fact.timestamp < seconds

    return young


class NotRecordedYetError(VerifierError):
    """The chain holds an anchor so recent that the evidence may not have recorded it yet:
    nothing is proven about it either way (exit 3, try again)."""

    exit_code = 3


def _where(anchor: ChainAnchor) -> str:
    return f"anchor {anchor.seq} (block {anchor.block_number}, tx {anchor.tx_hash})"


@dataclass(frozen=True)
class AnchoredSize:
    """The chain's word on one log: ``origin`` was anchored at ``size`` by ``anchor``."""

    origin: str
    size: int
    anchor: ChainAnchor
    checkpoint: str
    """The checkpoint body the evidence recorded for this log in that anchor."""

    def describe(self) -> str:
        return f"the chain anchors log {self.origin} at size {self.size} in {_where(self.anchor)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "seq": self.anchor.seq,
            "block_number": self.anchor.block_number,
            "tx_hash": self.anchor.tx_hash,
            "confirmations": self.anchor.confirmations,
        }


@dataclass(frozen=True)
class ChainState:
    """What the chain anchored, as far as the evidence can show it.

    ``problems`` are about the evidence as a whole (anchors it cannot rebuild, anchors it
    invents); :meth:`problems_for` adds a log's own.
    """

    min_confirmations: int
    anchors: tuple[ChainAnchor, ...]
    """The anchors on chain with at least ``min_confirmations``, by seq."""
    logs: Mapping[str, AnchoredSize]
    problems: tuple[str, ...] = ()
    unconfirmed: tuple[int, ...] = field(default=())
    """Seqs on chain that have not reached the confirmation depth yet (not counted)."""
    evidence: str = "store"
    """What the records came from, for messages: ``store``, ``read API``."""
    settling: tuple[int, ...] = ()
    """Seqs on chain after the last one the evidence records, still inside the settling time:
    the anchor service records an anchor moments after it is mined, so these are "not recorded
    yet" (nothing proven, exit 3), not a problem; once older they are a problem."""

    def settling_note(self) -> str | None:
        """Why the verdict must wait, when anchors on chain are still being recorded."""
        if not self.settling:
            return None
        seqs = ", ".join(map(str, self.settling))
        return (
            f"not recorded yet: the chain holds anchor {seqs}, mined moments ago, which the "
            f"{self.evidence} does not record yet; verify again shortly"
        )

    @property
    def latest(self) -> ChainAnchor | None:
        return self.anchors[-1] if self.anchors else None

    def problems_for(self, origin: str, tip: int | None) -> list[str]:
        """A log's problems: anchored beyond where its evidence ends (``tip``: the end of its
        last block, None when the evidence has no such log)."""
        anchored = self.logs.get(origin)
        if anchored is None:
            return []
        if tip is None:
            return [f"{anchored.describe()}; the {self.evidence} holds no log {origin}"]
        if tip < anchored.size:
            return [
                f"{anchored.describe()}; the {self.evidence} ends at size {tip}: leaves "
                f"[{tip}, {anchored.size}) that the chain committed to are missing"
            ]
        return []

    def to_json(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "check": CHECK,
            "min_confirmations": self.min_confirmations,
            "anchors_on_chain": len(self.anchors),
            "latest_seq": latest.seq if latest is not None else None,
            "unconfirmed": list(self.unconfirmed),
            "settling": list(self.settling),
            "logs": {o: a.to_json() for o, a in sorted(self.logs.items())},
            "problems": list(self.problems),
        }


def read_chain_state(
    on_chain: Iterable[ChainAnchor],
    recorded: Callable[[int], Sequence[str] | None],
    *,
    min_confirmations: int = 1,
    claimed: Iterable[int] = (),
    evidence: str = "store",
    settling: Callable[[ChainAnchor], bool] = lambda _anchor: False,
) -> ChainState:
    """Hold the evidence's anchor records against the anchors on chain.

    ``on_chain`` is every ``Anchored`` event of the pinned contract; ``recorded(seq)`` the
    checkpoint bodies the evidence holds for anchor ``seq`` (its receipts), None when it has no
    record (it may raise VerifierError for a record it cannot read); ``claimed`` the seqs the
    evidence records as confirmed; ``evidence`` names it in messages. Anchors with fewer than
    ``min_confirmations`` confirmations are left out (not yet final) and listed as unconfirmed.
    ``settling(anchor)`` says whether an anchor is young enough that its record may still be on
    its way; it is asked only about unrecorded anchors after the last recorded one (a gap in
    the middle is never excused). Raises ValueError for a depth below 1; never raises for bad
    evidence (that is a problem).
    """
    if min_confirmations < 1:
        raise ValueError("min_confirmations must be at least 1")
    every = sorted(on_chain, key=lambda a: a.seq)
    confirmed = tuple(a for a in every if a.confirmations >= min_confirmations)
    problems: list[str] = []
    logs: dict[str, AnchoredSize] = {}
    waiting: list[ChainAnchor] = []  # unrecorded since the last recorded anchor
    for anchor in confirmed:
        try:
            bodies = recorded(anchor.seq)
        except VerifierError as exc:
            outcome: Aggregate | str = (
                f"the {evidence}'s record of {_where(anchor)} is unreadable: {exc}"
            )
        else:
            if not bodies:
                waiting.append(anchor)
                continue
            outcome = _rebuild(anchor, bodies, evidence)
        # A record exists: the unrecorded anchors before it are never excused as settling.
        problems.extend(_unrecorded(waiting, evidence))
        waiting = []
        if isinstance(outcome, str):
            problems.append(outcome)
            continue
        for body in outcome.bodies:
            cp = Checkpoint.from_text(body)
            logs[cp.origin] = AnchoredSize(cp.origin, cp.size, anchor, body)
    # Unrecorded anchors after the last recorded one may only be settling.
    young = [anchor for anchor in waiting if settling(anchor)]
    problems.extend(_unrecorded([a for a in waiting if a not in young], evidence))
    seqs = {a.seq for a in every}
    problems.extend(
        f"the {evidence} records anchor {seq} as confirmed, but the chain has no such anchor"
        for seq in sorted(set(claimed) - seqs)
    )
    return ChainState(
        min_confirmations,
        confirmed,
        logs,
        tuple(problems),
        tuple(a.seq for a in every if a.confirmations < min_confirmations),
        evidence,
        tuple(a.seq for a in young),
    )


def _rebuild(anchor: ChainAnchor, bodies: Sequence[str], evidence: str) -> Aggregate | str:
    """The aggregate of the evidence's record of ``anchor``, or why it is not the chain's."""
    try:
        aggregate = build_aggregate(bodies)
    except VerifierError as exc:
        return f"the {evidence}'s record of {_where(anchor)} is malformed: {exc}"
    if aggregate.root != anchor.root:
        return (
            f"the {evidence}'s record of {_where(anchor)} aggregates to root "
            f"{aggregate.root.hex()}, the chain holds {anchor.root.hex()}"
        )
    return aggregate


def _unrecorded(anchors: Sequence[ChainAnchor], evidence: str) -> list[str]:
    return [
        f"the chain holds {_where(a)} with root {a.root.hex()}, but the {evidence} has no "
        "record of it, so it cannot show what that anchor committed to (restored from an "
        "older copy, or its anchor records deleted)"
        for a in anchors
    ]
