"""verifier.anchored_state: the chain's anchors held against the evidence's records (pure)."""

from __future__ import annotations

import base64

import pytest

from auditseal.verifier.anchor import build_aggregate
from auditseal.verifier.anchored_state import read_chain_state
from auditseal.verifier.anchoring import ChainAnchor
from auditseal.verifier.errors import FormatError

A, B = "auditseal.local/audit.events/0", "auditseal.local/audit.events/1"


def body(origin: str, size: int) -> str:
    root = base64.b64encode(bytes([size % 256]) * 32).decode()
    return f"{origin}\n{size}\n{root}\n"


def on_chain(seq: int, bodies: list[str], confirmations: int = 5) -> ChainAnchor:
    root = build_aggregate(bodies).root
    block_hash, tx_hash = "0x" + "aa" * 32, "0x" + "bb" * 32
    return ChainAnchor(seq, root, 100 + seq, block_hash, tx_hash, confirmations, len(bodies))


ANCHOR_1 = [body(A, 8), body(B, 2)]
ANCHOR_2 = [body(A, 14), body(B, 5)]


def records(**by_seq: list[str]):
    return lambda seq: by_seq.get(f"s{seq}")


def test_the_latest_rebuilt_anchor_gives_each_log_s_size():
    state = read_chain_state(
        [on_chain(1, ANCHOR_1), on_chain(2, ANCHOR_2)], records(s1=ANCHOR_1, s2=ANCHOR_2)
    )
    assert state.problems == ()
    assert {o: (a.size, a.anchor.seq) for o, a in state.logs.items()} == {A: (14, 2), B: (5, 2)}
    assert state.problems_for(A, 14) == [] and state.problems_for(A, 20) == []
    (short,) = state.problems_for(A, 13)
    assert short.startswith(f"the chain anchors log {A} at size 14 in anchor 2 (block 102")
    assert short.endswith(
        "the store ends at size 13: leaves [13, 14) that the chain committed to are missing"
    )
    assert state.problems_for(B, None) == [
        f"the chain anchors log {B} at size 5 in anchor 2 (block 102, tx 0x{'bb' * 32}); "
        f"the store holds no log {B}"
    ]
    assert state.problems_for("unanchored", 3) == []


def test_an_anchor_without_a_record_is_a_problem_and_the_earlier_one_still_counts():
    state = read_chain_state([on_chain(1, ANCHOR_1), on_chain(2, ANCHOR_2)], records(s1=ANCHOR_1))
    (problem,) = state.problems
    assert "the chain holds anchor 2 " in problem and "the store has no record of it" in problem
    assert state.logs[A].size == 8


def test_a_record_that_rebuilds_another_root_is_a_problem():
    forged = [body(A, 13), body(B, 5)]
    state = read_chain_state([on_chain(2, ANCHOR_2)], records(s2=forged), evidence="read API")
    (problem,) = state.problems
    assert problem.startswith("the read API's record of anchor 2 ")
    assert "aggregates to root" in problem
    assert state.logs == {}


def test_a_malformed_or_unreadable_record_is_a_problem_not_an_exception():
    state = read_chain_state([on_chain(1, ANCHOR_1)], records(s1=["not a checkpoint"]))
    assert "is malformed" in state.problems[0]

    def unreadable(seq: int) -> list[str]:
        raise FormatError("anchor_receipts.proof: not JSON")

    state = read_chain_state([on_chain(1, ANCHOR_1)], unreadable)
    assert "is unreadable: anchor_receipts.proof: not JSON" in state.problems[0]


def test_an_anchor_claimed_by_the_evidence_but_absent_from_chain_is_a_problem():
    state = read_chain_state([on_chain(1, ANCHOR_1)], records(s1=ANCHOR_1), claimed=[1, 2])
    assert state.problems == (
        "the store records anchor 2 as confirmed, but the chain has no such anchor",
    )


def test_anchors_short_of_the_depth_are_left_out_but_not_called_invented():
    state = read_chain_state(
        [on_chain(1, ANCHOR_1), on_chain(2, ANCHOR_2, confirmations=1)],
        records(s1=ANCHOR_1),  # anchor 2 not recorded yet: not final either, so no problem
        min_confirmations=3,
        claimed=[1, 2],
    )
    assert state.problems == () and state.unconfirmed == (2,)
    assert state.latest is not None and state.latest.seq == 1
    assert state.logs[A].size == 8


def test_the_depth_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        read_chain_state([], records(), min_confirmations=0)


def test_only_young_unrecorded_anchors_at_the_end_may_be_settling():
    anchors = [on_chain(1, ANCHOR_1), on_chain(2, ANCHOR_2), on_chain(3, [body(A, 20)])]
    state = read_chain_state(anchors, records(s1=ANCHOR_1), settling=lambda a: a.seq == 3)
    assert state.settling == (3,)
    (problem,) = state.problems  # anchor 2 is old: no excuse for its missing record
    assert "the chain holds anchor 2 " in problem
    assert state.settling_note() is not None and "anchor 3" in (state.settling_note() or "")
    # A gap before a recorded anchor is never excused, however young.
    state = read_chain_state(
        [*anchors[:2], on_chain(3, ANCHOR_2)],
        records(s1=ANCHOR_1, s3=ANCHOR_2),
        settling=lambda a: True,
    )
    assert state.settling == () and "anchor 2 " in state.problems[0]


def test_a_missing_record_before_a_bad_one_is_not_excused_either():
    """A record that exists but does not rebuild still shows the anchors before it were not
    merely still being recorded."""
    anchors = [on_chain(1, ANCHOR_1), on_chain(2, ANCHOR_2)]
    state = read_chain_state(
        anchors, records(s2=[body(A, 13), body(B, 5)]), settling=lambda a: True
    )
    assert state.settling == ()
    assert len(state.problems) == 2 and "the chain holds anchor 1 " in state.problems[0]
    assert "anchor 2 " in state.problems[1] and "aggregates to root" in state.problems[1]
