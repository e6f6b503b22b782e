"""Whole-log verification (auditseal.store.log_audit) on a real store anchored on the session Anvil.

The store is the one of tests/integration/test_verify.py: log A has blocks 0-2 anchored
(leaves [0, 3), [3, 8), [8, 12)) and block 3 ([12, 14)) sealed after the last anchor; log B has
blocks 0-1, both anchored. Log ids: A is 1, B is 2. Tampering drops the append-only triggers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from auditseal.infra.processes import free_port
from auditseal.sealer.blocks import redaction_sealer
from auditseal.store.blockstore import BlockStore
from auditseal.store.log_audit import audit_log
from auditseal.verifier.audit import LogAudit, combined_exit_code
from auditseal.verifier.chain import Web3AnchorReader
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.verify import Verifier
from tests.integration import test_verify as built
from tests.integration.test_verify import LOG_KEY, SIGNER, A, B, World

pytestmark = pytest.mark.chain

artifact, world = built.artifact, built.world  # the fixtures that build and anchor the store


def verifier_for(world: World, rpc: str | None = None) -> Verifier:
    reader = Web3AnchorReader(rpc or world.rpc, world.record.address)
    keys = [NoteVerifier.from_string(LOG_KEY)]
    return Verifier(keys, reader, world.record.address, 31337, int(time.time()))


@pytest.fixture
def store(world: World) -> Iterator[BlockStore]:
    with BlockStore.open(world.path) as s:
        yield s


def run(world: World, origin: str, rpc: str | None = None) -> LogAudit:
    with BlockStore.open(world.path) as s:
        return audit_log(s, origin, verifier_for(world, rpc))


def checks(result: LogAudit) -> list[tuple[int | None, str]]:
    return [(p.block, p.check) for p in result.problems]


def test_a_clean_fully_anchored_log_is_valid_with_the_anchor_facts(world, store):
    seen: list[int] = []
    result = audit_log(store, B, verifier_for(world), progress=seen.append)
    assert result.exit_code == 0, result.render()
    assert (result.blocks, result.entries, result.size, result.anchored_size) == (2, 5, 5, 5)
    assert seen == [2, 5]
    data = json.loads(json.dumps(result.to_json()))
    assert data["verdict"] == f"VALID: {B}" and data["anchored_block"] == 1
    on_chain = data["on_chain"]
    assert on_chain["status"] == "ok" and on_chain["chain_id"] == 31337
    assert on_chain["seq"] == 2 and on_chain["confirmations"] >= 1
    assert on_chain["block_number"] > world.record.block_number
    assert all(c["status"] == "ok" for c in data["anchor_report"]["checks"])


def test_blocks_past_the_last_anchor_are_not_anchored_yet(world):
    result = run(world, A)
    assert result.problems == ()
    assert result.exit_code == 3
    assert result.anchored_size == 12 and result.size == 14
    assert result.pending == "not anchored yet: block 3 (leaves [12, 14)) after anchor 2"
    assert result.anchor is not None and result.anchor.block == 2
    assert result.anchor.exit_code == 0
    assert combined_exit_code([result, run(world, B)]) == 3


def test_two_tampered_blocks_are_both_reported(world):
    world.tamper(
        "UPDATE entries SET value = CAST('forged' AS BLOB) WHERE log_id = 1 AND idx = 1",
        "UPDATE entries SET timestamp_ms = 1 WHERE log_id = 1 AND idx = 9",
    )
    result = run(world, A)
    assert checks(result) == [(0, "entries"), (2, "root")]
    assert "entry 1: value does not match its commitment" in result.problems[0].detail
    assert result.exit_code == 1
    # Block 2 is the anchored block: its root failure shows in the anchor report as well,
    # and is not reported twice.
    assert result.anchor is not None and result.anchor.first_failure is not None
    assert result.anchor.first_failure.name == "root"
    text = result.render()
    assert "block 0: entries:" in text and "block 2: root:" in text
    assert text.endswith(f"INVALID: 2 problems in {A}\n")


def test_a_deleted_block_is_reported_missing_and_the_rest_verifies(world):
    world.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number = 1",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 3 AND idx < 8",
    )
    result = run(world, A)
    assert checks(result) == [(2, "missing")]
    assert result.problems[0].detail == "block 1 missing, leaves [3, 8)"
    assert (result.blocks, result.entries) == (3, 9)
    # The anchored block 2 has no previous block: the single-block check says so too.
    assert result.anchor is not None and result.anchor.check("previous-state").status == "failed"
    assert result.exit_code == 1


def test_a_truncated_tail_below_the_anchor_is_missing(world):
    world.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number >= 2",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 8",
    )
    result = run(world, A)
    assert checks(result) == [(None, "missing")]
    assert "no stored block ends at the anchored size 12" in result.problems[0].detail
    assert result.exit_code == 1


def test_an_unreachable_chain_is_exit_3(world):
    result = run(world, B, rpc=f"http://127.0.0.1:{free_port()}")
    assert result.problems == ()
    assert result.exit_code == 3
    assert result.pending is not None and "chain unreachable" in result.pending
    assert result.to_json()["on_chain"]["status"] == "skipped"


def test_a_redacted_entry_passes_and_is_counted(world):
    with BlockStore.open(world.path) as s:
        s.redact(A, 4, "dpo", "erasure request", redaction_sealer(SIGNER))
    result = run(world, A)
    assert result.problems == () and result.redacted == 1
    assert [(r["index"], r["actor"], r["reason"]) for r in result.redactions] == [
        (4, "dpo", "erasure request")
    ]
    assert "redacted: leaf 4 by 'dpo'" in result.render()


# --- the command: auditseal verify --all -------------------------------------------------------


def test_the_command_audits_every_log_and_names_each_problem(world):
    code, data = world.verify("--all")  # both logs: A's block 3 is not anchored yet
    assert code == 3 and data["verdict"] == "NOT PROVEN"
    assert [log["origin"] for log in data["logs"]] == [A, B]
    assert [log["exit_code"] for log in data["logs"]] == [3, 0]
    code, data = world.verify("--all", "--log", B)
    assert code == 0 and data["verdict"] == "VALID" and len(data["logs"]) == 1
    world.tamper(
        "UPDATE entries SET timestamp_ms = 7 WHERE log_id = 2 AND idx = 0",
        "UPDATE entries SET timestamp_ms = 7 WHERE log_id = 2 AND idx = 3",
    )
    code, data = world.verify("--all", "--log", B)
    assert code == 1 and data["verdict"] == "INVALID"
    assert [(p["block"], p["check"]) for p in data["logs"][0]["problems"]][:2] == [
        (0, "root"),
        (1, "root"),
    ]


def test_the_command_prints_a_report_per_log_and_refuses_mixed_modes(world):
    code, data = world.verify("--all", "--log", A, "--block", "1")
    assert code == 2 and "without --block or --event" in data["output"]
    code, data = world.verify("--all", "--bundle", "block.json")
    assert code == 2 and "a bundle proves one block" in data["output"]
    code, data = world.verify("--all", "--log", "nope")
    assert code == 2 and "no log 'nope'" in data["output"]


@pytest.mark.postgres
def test_the_same_store_on_postgresql_verifies_the_same(world, pg_url):
    from auditseal.store.copy import copy_store

    with (
        BlockStore.open(world.path, readonly=True) as src,
        BlockStore.open(pg_url, create=True) as dst,
    ):
        copy_store(src, dst)
    verifier = verifier_for(world)  # one clock for both: a report says when it was checked
    for origin in (A, B):
        with BlockStore.open(pg_url, readonly=True) as pg, BlockStore.open(world.path) as lite:
            assert (
                audit_log(pg, origin, verifier).to_json()
                == audit_log(lite, origin, verifier).to_json()
            )
    code, data = world.verify("--all", store=pg_url)
    assert code == 3 and [log["exit_code"] for log in data["logs"]] == [3, 0], data
    code, data = world.verify("--block", "1", "--log", B, store=pg_url)
    assert code == 0 and data["verdict"] == "VALID", data
    # The chain, not the store, says what was anchored: a PostgreSQL store missing its tail
    # fails as a SQLite one does (the copy below the anchor, with B's last block dropped).
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE blocks DISABLE TRIGGER USER")
        conn.execute(
            "DELETE FROM blocks WHERE log_id = (SELECT id FROM logs WHERE origin = %s)"
            " AND number = 1",
            (B,),
        )
    code, data = world.verify("--all", "--log", B, store=pg_url)
    assert code == 1 and data["verdict"] == "INVALID", data
