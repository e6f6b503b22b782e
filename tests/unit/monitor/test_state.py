"""The monitor's saved state: a checker restored from its snapshot (through JSON) goes on as
if it had never stopped, and a tampered snapshot is refused with the field named."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from auditseal.monitor.checks import STATE_ACCEPTED, Alert, Checker, StateError
from tests.unit.monitor.test_checks import (
    CONTRACT,
    ORIGIN,
    SIGNER,
    Chain,
    Log,
    event,
    items_of,
    receipts,
)

OTHER_ORIGIN = "test.local/audit.events/1"
Step = Callable[[Checker, Chain], list[Alert]]


def make_checker() -> Checker:
    return Checker(
        [SIGNER.verifier],
        anchor_late_after_ms=10_000,
        contract=CONTRACT,
        chain_id=31337,
        sequence_memory=8,
        sequence_runs=3,
        id_memory=16,
    )


BLOCKS: dict[tuple[str, int], Any] = {}  # (origin, number) -> (block, items), genuine ones


def scenario() -> list[Step]:
    """A stream with every kind of event check, hole, fork, receipt and reorg in it."""
    one, two, rival = Log(), Log(OTHER_ORIGIN), Log()
    ev: dict[str, bytes] = {}

    def e(source: str, seq: int, user: str = "bob", id: str | None = None) -> bytes:
        return ev.setdefault(f"{source}/{seq}/{user}/{id}", event(source, seq, user, id))

    a0 = one.block([e("p://a", 1, id="id-1"), e("p://a", 2)], sealed_ms=1_000)
    f0 = rival.block([e("p://a", 1, id="id-1"), b"evil"], sealed_ms=1_000)
    a1 = one.block([e("p://a", 4), e("p://b", 1)], sealed_ms=2_000)  # 3 missing
    b0 = two.block([e("p://c", 1), e("p://c", 2)], sealed_ms=2_000)
    b1 = two.block([e("p://c", 3)], sealed_ms=3_000)
    b2 = two.block([e("p://c", 5)], sealed_ms=3_000)
    a2 = one.block(
        [e("p://a", 2, user="mallory"), e("p://a", 3), e("p://d", 1, id="id-1")], sealed_ms=4_000
    )
    a3 = one.block([e("p://a", 5), e("p://a", 5), e("p://b", 9)], sealed_ms=5_000)
    a4 = one.block([e("p://a", 6), e("p://b", 2)], sealed_ms=60_000)
    [r1, r2] = receipts({ORIGIN: a1[0], OTHER_ORIGIN: b0[0]}, 1)
    [r3] = receipts({OTHER_ORIGIN: b2[0]}, 2, block_number=8)

    for b in (a0, a1, a2, a3, a4, b0, b1, b2):
        BLOCKS[b[0].header.origin, b[0].header.number] = b

    def on_chain(chain: Chain) -> None:
        chain.hashes.update({7: r1.block_hash, 8: r3.block_hash})
        chain.roots.update({1: r1.root, 2: r3.root})

    steps: list[Step] = [
        lambda c, ch: c.block(*a0, 0),
        lambda c, ch: c.block(*f0, 0),  # fork
        lambda c, ch: c.block(*b0, 0),
        lambda c, ch: c.block(*b2, 0),  # held: chain_break for b1
        lambda c, ch: c.block(*a1, 0),  # sequence_gap
        lambda c, ch: (on_chain(ch), c.receipt(r1, ch, 0) + c.receipt(r2, ch, 0))[1],
        lambda c, ch: c.late(8_000),
        lambda c, ch: c.block(*b1, 0),  # fills the hole, b2 applies
        lambda c, ch: c.block(*a1, 0),  # republished
        lambda c, ch: c.block(*a2, 0),  # duplicate, gap fill, event id reused
        lambda c, ch: c.receipt(r3, ch, 0),
        lambda c, ch: c.block(*a3, 0),  # a replay inside the block, a gap
        lambda c, ch: c.late(20_000),
        lambda c, ch: c.receipt(r1, ch, 0),  # already checked
        lambda c, ch: (ch.hashes.pop(8), c.recheck_anchors(ch, 0))[1],  # reorged
        lambda c, ch: c.block(*a4, 0),
        lambda c, ch: c.late(100_000),
        lambda c, ch: c.block(*a0, 0),  # republished long after
    ]
    return steps


def run(steps: list[Step], cut: int | None = None) -> tuple[list[list[Alert]], Checker]:
    """Alerts per step; with ``cut``, the checker is saved and restored before that step."""
    c, chain = make_checker(), Chain()
    out = []
    for i, step in enumerate(steps):
        if i == cut:
            saved = json.loads(json.dumps(c.snapshot()))
            held = c.held()
            c = make_checker()
            c.restore(saved)
            for key in sorted(held):  # the monitor reads them again from their offsets
                assert c.block(*BLOCKS[key], 0) == []
        out.append(step(c, chain))
    return out, c


def test_a_restored_checker_raises_what_an_uninterrupted_one_raises_at_every_cut():
    steps = scenario()
    whole, uninterrupted = run(steps)
    raised = {a.kind for alerts in whole for a in alerts}
    assert raised >= {
        "fork",
        "chain_break",
        "sequence_gap",
        "sequence_duplicate",
        "event_id_reused",
        "anchor_late",
        "anchor_reorged",
    }, raised
    for cut in range(1, len(steps)):
        resumed, c = run(steps, cut)
        assert resumed == whole, f"cut before step {cut}"
        assert keyless(c.snapshot()) == keyless(uninterrupted.snapshot())


def keyless(state: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without what depends on the per-process digest key."""
    digests = [[row[:3] for row in gen] for gen in state["digests"]]
    return state | {"digest_key": None, "digests": digests}


def test_the_digest_key_survives_so_a_replay_after_the_restart_is_still_a_replay():
    c, log = make_checker(), Log()
    value = event("p://a", 1)
    c.block(*log.block([value]), 0)
    restored = make_checker()
    restored.restore(json.loads(json.dumps(c.snapshot())))
    assert restored.block(*log.block([value]), 0) == []
    assert restored.replays == 1


def test_the_snapshot_is_bounded_by_the_memory_options_not_the_number_of_events():
    c, log = make_checker(), Log()
    seq = 0
    for _ in range(STATE_ACCEPTED + 50):
        values = []
        for _ in range(4):
            seq += 1
            values.append(event("p://a", seq))
        c.block(*log.block(values), 0)
    state = c.snapshot()
    assert len(state["digests"][0]) + len(state["digests"][1]) <= 8
    assert len(state["ids"][0]) + len(state["ids"][1]) <= 16
    assert len(state["logs"][ORIGIN]["accepted"]) == STATE_ACCEPTED
    assert len(state["sources"]["p://a"]["runs"]) == 1


def test_an_old_block_beyond_the_saved_window_is_judged_by_signature_and_root():
    c, log, rival = make_checker(), Log(), Log()
    blocks = [log.block([bytes([i])]) for i in range(STATE_ACCEPTED + 2)]
    forged = rival.block([b"evil"])
    for b in blocks:
        c.block(*b, 0)
    restored = make_checker()
    restored.restore(json.loads(json.dumps(c.snapshot())))
    assert restored.block(*blocks[0], 0) == []  # a republish: signed, the root it had
    assert restored.republished == 1
    [fork] = restored.block(*forged, 0)
    assert (fork.kind, fork.block) == ("fork", 0)
    block, items = blocks[1]
    other = replace(block, checkpoint=rival.signer.sign_note("not a checkpoint\n"))
    [bad] = restored.block(other, items, 0)
    assert bad.kind in {"bad_signature", "invalid_block"}


def test_a_receipt_whose_chain_check_failed_is_checked_again():
    from auditseal.verifier.anchoring import ChainUnavailableError

    c, log = make_checker(), Log()
    block, items = log.block([b"a"])
    c.block(block, items, 0)
    [r] = receipts({ORIGIN: block}, 1)

    class Down(Chain):
        def block_hash(self, number: int) -> str | None:
            raise ChainUnavailableError("down")

    with pytest.raises(ChainUnavailableError):
        c.receipt(r, Down(), 0)
    chain = Chain({7: "0x" + "99" * 32}, {1: r.root})
    [alert] = c.receipt(r, chain, 0)  # not swallowed as "already seen"
    assert alert.kind == "anchor_reorged"


def good_state() -> dict[str, Any]:
    c, log = make_checker(), Log()
    c.block(*log.block([event("p://a", 1, id="x")]), 0)
    return json.loads(json.dumps(c.snapshot()))


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda s: s.pop("digest_key"), "checker.digest_key: missing"),
        (lambda s: s.update(digest_key="zz"), "checker.digest_key: not hex"),
        (lambda s: s["logs"][ORIGIN].update(last_position="0"), "last_position: want an integer"),
        (
            lambda s: s["logs"][ORIGIN]["compact"].update(size=5),
            "compact: a compact range of size 5 holds 2 hashes",
        ),
        (lambda s: s["logs"][ORIGIN].update(prev="garbage"), f"checker.logs['{ORIGIN}'].prev"),
        (lambda s: s["sources"]["p://a"].update(runs=[[3, 2]]), "runs[0]: run 3..2 out of order"),
        (lambda s: s["digests"][1].append(["p://a", 2, "y"]), "digests[1][1]: want 4 items"),
        (lambda s: s.update(logs=[]), "checker.logs: want an object, got list"),
        (lambda s: s["logs"][ORIGIN]["roots"].append([1, 7]), "roots[1]: want a string"),
    ],
)
def test_a_tampered_snapshot_is_refused_naming_the_field(tamper, named):
    state = good_state()
    tamper(state)
    c = make_checker()
    before = c.snapshot()
    with pytest.raises(StateError, match=None) as info:
        c.restore(copy.deepcopy(state))
    assert named in str(info.value)
    assert c.snapshot() == before  # untouched
    assert items_of  # the helpers are shared with test_checks
