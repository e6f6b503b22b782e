"""The chain, not the store, says what was anchored (check ``anchored-state``).

An attacker with file access to the store rolls it back to an earlier copy, or deletes its last
blocks and the records of the anchors that covered them. Every block left is genuine, so a
verifier that follows the store's own anchor records says VALID; these tests check that the
verdict turns INVALID once the chain is asked which anchors exist.

The store: log A blocks 0-1 and log B block 0 anchored by anchor 1 (A at size 8, B at 2), copied
aside (the rolled-back copy), then A blocks 2-3 and B block 1 anchored by anchor 2 (A at 14, B
at 5). Log ids: A is 1, B is 2.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.deploy import Deployment, write_record
from auditseal.cli.verify import verify
from auditseal.sealer.log_writer import LogWriter
from auditseal.store.blockstore import BlockStore
from tests.integration import test_verify as built
from tests.integration.test_verify import LOG_KEY, SIGNER, A, B, anchor_once, append, deployed
from tests.integration.test_verify_sources import serving

pytestmark = pytest.mark.chain

artifact = built.artifact


@dataclass
class Stores:
    path: Path
    rolled_back: Path
    record: Deployment
    record_path: Path
    rpc: str

    def verify(
        self, *args: str, store: Path | None = None, settle: int = 0
    ) -> tuple[int, dict[str, Any], str]:
        """``auditseal verify``; anchors are judged at once (``--settle 0``) unless ``settle``."""
        where = ("--store", str(store or self.path)) if "--source" not in args else ()
        result = CliRunner().invoke(
            verify,
            [
                *where,
                *("--rpc", self.rpc, "--deployment", str(self.record_path)),
                *("--log-key", LOG_KEY, "--settle", str(settle), "--json", *args),
            ],
        )
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = {}
        return result.exit_code, data, result.output

    def tamper(self, *sql: str) -> None:
        db = sqlite3.connect(self.path)
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (trigger,) in triggers:  # an attacker with the file drops what stands in the way
            db.execute(f"DROP TRIGGER {trigger}")
        for statement in sql:
            db.execute(statement)
        db.commit()
        db.close()


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy, as a backup tool would take it (WAL included)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


@pytest.fixture
def stores(tmp_path: Path, anvil_rpc: str, artifact: Artifact) -> Iterator[Stores]:
    record = deployed(anvil_rpc, artifact)
    record_path = tmp_path / "deployment.json"
    write_record(record, record_path)
    path, rolled_back = tmp_path / "store.db", tmp_path / "rolled-back.db"
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 42)
        append(writer, A, 3)
        append(writer, A, 5)
        append(writer, B, 2)
        anchor_once(store, anvil_rpc, record, artifact)
        copy_store(path, rolled_back)
        append(writer, A, 4)
        append(writer, A, 2)
        append(writer, B, 3)
        anchor_once(store, anvil_rpc, record, artifact)
    yield Stores(path, rolled_back, record, record_path, anvil_rpc)


def problems(data: dict[str, Any]) -> list[str]:
    """Every anchored-state problem of a --all report, store-wide and per log."""
    found = list(data["anchored_state"]["problems"])
    for log in data["logs"]:
        found += [p["detail"] for p in log["problems"] if p["check"] == "anchored-state"]
    return found


def test_the_genuine_store_is_valid_and_names_the_chain_s_latest_anchor(stores):
    code, data, output = stores.verify("--all")
    assert code == 0, output
    state = data["anchored_state"]
    assert state["latest_seq"] == 2 and state["anchors_on_chain"] == 2
    assert {o: s["size"] for o, s in state["logs"].items()} == {A: 14, B: 5}
    assert problems(data) == []
    code, data, output = stores.verify("--block", "3", "--log", A)
    assert code == 0, output
    check = data["checks"][-1]
    assert check["name"] == "anchored-state" and check["status"] == "ok"
    assert "the chain anchors log " + A + " at size 14" in check["detail"]


def test_a_store_rolled_back_to_an_earlier_copy_fails(stores):
    code, data, output = stores.verify("--all", store=stores.rolled_back)
    assert code == 1, output
    assert data["verdict"] == "INVALID"
    (problem,) = problems(data)
    assert "the chain holds anchor 2 " in problem and "the store has no record of it" in problem
    # Each block of the copy is genuine and anchor 1 covers it: only the chain's word fails it.
    assert all(log["problems"] == [] for log in data["logs"])


def test_an_anchor_mined_moments_ago_may_still_be_unrecorded_but_not_for_long(stores):
    """The anchor service records an anchor as soon as it is mined: within the settling time
    a missing record is "not proven yet" (exit 3), never VALID; after it, INVALID."""
    code, data, output = stores.verify("--all", store=stores.rolled_back, settle=3600)
    assert code == 3, output
    assert data["anchored_state"]["settling"] == [2] and data["anchored_state"]["problems"] == []
    assert "not recorded yet: the chain holds anchor 2" in data["anchored_state"]["pending"]
    code, data, output = stores.verify(
        "--block", "0", "--log", A, store=stores.rolled_back, settle=3600
    )
    assert code == 3 and "not recorded yet" in data["pending"], output
    assert stores.verify("--all", store=stores.rolled_back, settle=0)[0] == 1


def test_a_rolled_back_copy_fails_a_single_block_too(stores):
    code, data, output = stores.verify("--block", "0", "--log", A, store=stores.rolled_back)
    assert code == 1, output
    assert data["first_failure"] == "anchored-state"
    assert "anchor 2" in data["checks"][-1]["detail"]


def test_the_human_report_says_what_the_chain_anchors_and_where_the_store_ends(stores):
    stores.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number >= 2",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 8",
    )
    result = CliRunner().invoke(
        verify,
        [
            *("--store", str(stores.path), "--rpc", stores.rpc),
            *("--deployment", str(stores.record_path), "--log-key", LOG_KEY, "--all"),
            *("--settle", "0"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"the chain anchors log {A} at size 14 in anchor 2" in result.output
    assert "the store ends at size 8" in result.output
    assert result.output.rstrip().endswith("INVALID")


def test_two_tail_blocks_and_their_anchor_records_deleted_fail(stores):
    stores.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number >= 2",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 8",
        "DELETE FROM anchor_receipts WHERE seq = 2",
        "DELETE FROM anchors WHERE seq = 2",
    )
    code, data, output = stores.verify("--all")
    assert code == 1, output
    assert any("the chain holds anchor 2 " in p for p in problems(data))


def test_deleted_anchor_records_are_not_mistaken_for_not_anchored_yet(stores):
    stores.tamper("DELETE FROM anchor_receipts WHERE seq = 2", "DELETE FROM anchors WHERE seq = 2")
    code, data, output = stores.verify("--all")
    assert code == 1, output  # it used to be 3, "not anchored yet"
    assert any("the chain holds anchor 2 " in p for p in problems(data))


def test_an_anchor_record_that_does_not_rebuild_the_chain_s_root_fails(stores):
    stores.tamper("DELETE FROM anchor_receipts WHERE seq = 2 AND log_id = 2")  # B left out
    code, data, output = stores.verify("--all")
    assert code == 1, output
    assert any("anchor 2 " in p and "aggregates to root" in p for p in problems(data))


def test_an_anchor_the_store_invents_fails(stores):
    stores.tamper(
        "INSERT INTO anchors SELECT 3, root, tx_hash, block_number, block_hash, chain_id,"
        " contract, anchored_at_ms, status, replaced_by FROM anchors WHERE seq = 2"
    )
    code, data, output = stores.verify("--all")
    assert code == 1, output
    assert any(
        "anchor 3 as confirmed, but the chain has no such anchor" in p for p in problems(data)
    )


def test_a_log_the_chain_anchors_but_the_store_lacks_fails(stores):
    stores.tamper(
        "DELETE FROM blocks WHERE log_id = 2",
        "DELETE FROM entries WHERE log_id = 2",
        "DELETE FROM nodes WHERE log_id = 2",
    )
    code, data, output = stores.verify("--all")
    assert code == 1, output
    assert any(
        "at size 5 in anchor 2" in p and "the store ends at size 0" in p for p in problems(data)
    ), problems(data)


def test_anchors_short_of_the_pinned_depth_are_not_taken_as_proof(stores):
    code, data, output = stores.verify("--all", "--confirmations", "100000")
    assert code == 3, output
    assert data["anchored_state"]["unconfirmed"] == [1, 2]
    assert all("not anchored yet" in log["pending"] for log in data["logs"])


@pytest.fixture
def served_rolled_back(stores: Stores) -> Iterator[str]:
    with serving(stores.rolled_back) as url:
        yield url


def test_a_read_api_over_a_rolled_back_store_fails(stores, served_rolled_back):
    code, data, output = stores.verify("--source", served_rolled_back, "--all")
    assert code == 1, output
    (problem,) = data["anchored_state"]["problems"]
    assert "the chain holds anchor 2 " in problem and "the read API has no record" in problem
    code, data, output = stores.verify("--source", served_rolled_back, "--block", "1", "--log", A)
    assert code == 1, output
    assert data["first_failure"] == "anchored-state"
