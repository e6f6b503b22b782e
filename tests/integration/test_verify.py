"""``auditseal verify --block N`` on a real store anchored on a real chain (the session Anvil):
the passing cases and the tamper matrix, each expecting its specific failing check.

Stores are built with the sealer's LogWriter and anchored with the anchor service; tampering
edits the SQLite file with the append-only triggers dropped, as an attacker with file access can.
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.anchor.artifact import Artifact, load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment, deploy, write_record
from auditseal.anchor.service import AnchorService, ServiceOptions
from auditseal.cli.verify import bundle, verify
from auditseal.infra.processes import free_port
from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.verifier.chain import Web3AnchorReader

pytestmark = pytest.mark.chain

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # Anvil's #0
OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # Anvil's #1
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
LOG_KEY = SIGNER.verifier.to_string()
A, B = "auditseal.local/audit.events/0", "auditseal.local/audit.events/1"
FAST = ServiceOptions(poll=0.05, backoff=0.05, retries=3, rebroadcast_after=30.0, timeout=60.0)


@pytest.fixture(scope="module")
def artifact() -> Artifact:
    return load_artifact()


@dataclass
class World:
    """A store of logs A (blocks 0-2 anchored, block 3 not) and B (blocks 0-1 anchored)."""

    path: Path
    record: Deployment
    record_path: Path
    rpc: str

    def verify(self, *args: str, store: Path | None = None) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            verify,
            [
                "--store",
                str(store or self.path),
                "--rpc",
                self.rpc,
                "--deployment",
                str(self.record_path),
                "--log-key",
                LOG_KEY,
                "--json",
                *args,
            ],
        )
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = {"output": result.output}
        return result.exit_code, data

    def tamper(self, *sql: str, store: Path | None = None) -> None:
        db = sqlite3.connect(store or self.path)
        for trigger in (
            "entries_no_delete",
            "entries_only_redact",
            "blocks_no_update",
            "blocks_no_delete",
        ):
            db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in sql:
            db.execute(statement)
        db.commit()
        db.close()


def append(writer: LogWriter, origin: str, n: int, base: bytes = b"v") -> None:
    """``n`` records with positions 10 apart (room for an inserted one)."""
    start = writer.tip(origin).next_position + 9
    writer.append(
        origin,
        [
            Record(start + 10 * k, 1_000 + k, b"key", base + str(start + 10 * k).encode())
            for k in range(n)
        ],
    )


def deployed(rpc: str, artifact: Artifact, key: str = DEV_KEY) -> Deployment:
    client = ChainClient.connect(rpc, expected_chain_id=31337)
    return deploy(client, ChainKey.from_hex(key, "key"), artifact)


def anchor_once(store: BlockStore, rpc: str, record: Deployment, artifact: Artifact) -> None:
    svc = AnchorService(store, ChainKey.from_hex(DEV_KEY, "key"), record, artifact, rpc, FAST)
    assert svc.run_once().action == "anchored"


def build(path: Path, rpc: str, record: Deployment, artifact: Artifact, base: bytes) -> None:
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 42)
        append(writer, A, 3, base)
        append(writer, A, 5, base)
        append(writer, B, 2, base)
        anchor_once(store, rpc, record, artifact)
        append(writer, A, 4, base)
        append(writer, B, 3, base)
        anchor_once(store, rpc, record, artifact)
        append(writer, A, 2, base)  # block 3 of A: sealed after the last anchor


@pytest.fixture
def world(tmp_path: Path, anvil_rpc: str, artifact: Artifact) -> Iterator[World]:
    record = deployed(anvil_rpc, artifact)
    record_path = tmp_path / "deployment.json"
    write_record(record, record_path)
    build(tmp_path / "store.db", anvil_rpc, record, artifact, b"v")
    yield World(tmp_path / "store.db", record, record_path, anvil_rpc)


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def assert_fails(world: World, check: str, *args: str, store: Path | None = None) -> dict:
    code, data = world.verify(*args, store=store)
    assert code == 1, data
    assert data["first_failure"] == check, json.dumps(data, indent=1)
    return data


# --- passing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("origin", "number"), [(A, 0), (A, 1), (A, 2), (B, 0), (B, 1)])
def test_anchored_blocks_verify(world, origin, number):
    code, data = world.verify("--log", origin, "--block", str(number))
    assert code == 0, data
    assert data["verdict"] == "VALID"
    assert list(statuses(data).values()) == ["ok"] * 9  # 1-8 and 10, anchored-state
    on_chain = next(c for c in data["checks"] if c["name"] == "on-chain")["data"]
    assert on_chain["chain_id"] == 31337 and on_chain["confirmations"] >= 1
    assert on_chain["anchorer"] == ChainKey.from_hex(DEV_KEY, "k").address
    assert on_chain["timestamp"] > 0 and on_chain["block_number"] > world.record.block_number


def test_human_report_names_every_check(world):
    result = CliRunner().invoke(
        verify,
        [
            *("--store", str(world.path), "--log", A, "--block", "1", "--rpc", world.rpc),
            *("--deployment", str(world.record_path), "--log-key", LOG_KEY),
        ],
    )
    assert result.exit_code == 0, result.output
    for n, name in enumerate(["entries", "previous-state", "root", "checkpoint"], 1):
        assert f"{n}. {name}" in result.output
    assert result.output.endswith("VALID\n")


def test_a_redacted_entry_passes_and_is_reported(world, artifact):
    with BlockStore.open(world.path) as store:
        store.redact(A, 4, "dpo", "erasure request", redaction_sealer(SIGNER))
        code, data = world.verify("--log", A, "--block", "1")
        assert code == 3 and "redaction record of leaf 4" in data["pending"]  # not anchored
        anchor_once(store, world.rpc, world.record, artifact)
    code, data = world.verify("--log", A, "--block", "1")
    assert code == 0 and data["redacted"] == [4]
    assert "leaf 4 by 'dpo'" in data["checks"][0]["detail"]


def test_a_forged_redaction_is_invalid(world):
    world.tamper(
        "UPDATE entries SET value = NULL, salt = NULL WHERE idx = 4"
        " AND log_id = (SELECT id FROM logs WHERE origin = 'auditseal.local/audit.events/0')"
    )
    code, data = world.verify("--log", A, "--block", "1")
    assert code == 1 and data["first_failure"] == "entries"
    assert "no redaction record" in data["checks"][0]["detail"]
    code, data = world.verify("--all")
    assert code == 1
    (log,) = [log for log in data["logs"] if log["origin"] == A]
    assert [p["check"] for p in log["problems"]] == ["redaction"]


def test_a_block_sealed_after_the_last_anchor_is_not_anchored_yet(world):
    code, data = world.verify("--log", A, "--block", "3")
    assert code == 3 and data["first_failure"] is None
    assert "not anchored yet" in data["pending"]
    assert statuses(data)["root"] == "ok" and statuses(data)["on-chain"] == "skipped"


def test_an_unreachable_chain_is_exit_3(world):
    code, data = world.verify(
        "--log", A, "--block", "0", "--rpc", f"http://127.0.0.1:{free_port()}"
    )
    assert code == 3 and data["first_failure"] is None
    assert "chain unreachable" in data["pending"]


def test_usage_errors_are_exit_2(world):
    assert world.verify("--block", "0")[0] == 2  # two logs: --log is needed
    assert world.verify("--log", A, "--block", "9")[0] == 2  # no such block
    assert world.verify("--log", "nope", "--block", "0")[0] == 2


def test_the_reader_reads_the_contract(world):
    reader = Web3AnchorReader(world.rpc, world.record.address)
    assert reader.chain_id() == 31337
    fact = reader.anchored_at(1)
    assert fact is not None and reader.root_of(1) == fact.root
    assert reader.is_anchorer(fact.anchorer) and reader.is_anchorer(
        fact.anchorer, fact.block_number
    )
    assert reader.root_of(99) is None and reader.anchored_at(99) is None
    assert not reader.is_anchorer("0x" + "00" * 19 + "01")
    nowhere = Web3AnchorReader(world.rpc, "0x" + "00" * 19 + "01")  # no code there
    assert nowhere.root_of(1) is None and nowhere.anchored_at(1) is None
    assert reader.has_code() and not nowhere.has_code()
    assert reader.block_hash(fact.block_number) == fact.block_hash
    assert reader.latest_block() >= fact.block_number and reader.block_hash(10**9) is None


# --- the tamper matrix -----------------------------------------------------------------------
# Log A's block 1 holds leaves [3, 8); log ids: A is 1, B is 2 (creation order).


def test_a_changed_value_fails_entries(world):
    world.tamper("UPDATE entries SET value = CAST('forged' AS BLOB) WHERE log_id = 1 AND idx = 4")
    data = assert_fails(world, "entries", "--log", A, "--block", "1")
    assert data["verdict"] == "INVALID: check 1 (entries) failed"


def test_a_changed_timestamp_fails_root(world):
    world.tamper("UPDATE entries SET timestamp_ms = 1 WHERE log_id = 1 AND idx = 4")
    assert_fails(world, "root", "--log", A, "--block", "1")


def test_a_deleted_entry_fails_entries(world):
    world.tamper("DELETE FROM entries WHERE log_id = 1 AND idx = 4")
    data = assert_fails(world, "entries", "--log", A, "--block", "1")
    assert "holds 4 entries" in data["checks"][0]["detail"]


def test_an_inserted_entry_fails_root(world):
    # Shift leaves 5.. up by one and insert a well-formed entry (a valid commitment, a position
    # between its neighbours) at 5: only the tree root can tell.
    world.tamper(
        "UPDATE entries SET idx = -idx - 1 WHERE log_id = 1 AND idx >= 5",
        "UPDATE entries SET idx = -idx WHERE log_id = 1 AND idx < 0",
        "INSERT INTO entries SELECT log_id, 5, position + 5, timestamp_ms, key, value, salt,"
        " commitment, value_null, event_id, flag FROM entries WHERE log_id = 1 AND idx = 4",
    )
    assert_fails(world, "root", "--log", A, "--block", "1")


def test_swapped_entries_fail_entries(world):
    world.tamper(
        "UPDATE entries SET idx = -1 WHERE log_id = 1 AND idx = 4",
        "UPDATE entries SET idx = 4 WHERE log_id = 1 AND idx = 5",
        "UPDATE entries SET idx = 5 WHERE log_id = 1 AND idx = -1",
    )
    data = assert_fails(world, "entries", "--log", A, "--block", "1")
    assert "does not follow" in data["checks"][0]["detail"]


def test_another_logs_checkpoint_fails_checkpoint(world):
    world.tamper(
        "UPDATE blocks SET checkpoint = (SELECT checkpoint FROM blocks WHERE log_id = 2"
        " AND number = 0) WHERE log_id = 1 AND number = 0"
    )
    assert_fails(world, "checkpoint", "--log", A, "--block", "0")
    # ... and block 1, whose previous state is that checkpoint, no longer starts from it.
    assert_fails(world, "previous-state", "--log", A, "--block", "1")


def fork(world: World, tmp_path: Path, artifact: Artifact) -> Path:
    """Log A re-written with other values, signed with the real key, anchored (seq 1) on a
    contract the attacker deployed."""
    path = tmp_path / "fork.db"
    attacker = deployed(world.rpc, artifact, OTHER_KEY)
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 42)
        append(writer, A, 3, b"forged")
        append(writer, A, 5, b"forged")
        append(writer, A, 4, b"forged")
        anchor_once_as(store, world.rpc, attacker, artifact)
    return path


def test_a_forked_history_resigned_with_the_real_key_fails_on_chain(world, tmp_path, artifact):
    forked = fork(world, tmp_path, artifact)
    data = assert_fails(world, "on-chain", "--log", A, "--block", "1", store=forked)
    assert all(statuses(data)[c] == "ok" for c in ("entries", "root", "checkpoint"))
    assert "pinned contract" in data["checks"][7]["detail"]


def test_a_fork_showing_the_real_anchor_fails_consistency(world, tmp_path, artifact):
    # The attacker copies the real anchor 2 (which covers A at size 12) into the fork.
    forked = fork(world, tmp_path, artifact)
    world.tamper(
        f"ATTACH DATABASE '{world.path}' AS real",
        "INSERT INTO anchors SELECT * FROM real.anchors WHERE seq = 2",
        "INSERT INTO anchor_receipts SELECT * FROM real.anchor_receipts WHERE seq = 2"
        " AND log_id = 1",
        store=forked,
    )
    assert_fails(world, "consistency", "--log", A, "--block", "1", store=forked)


def anchor_once_as(store: BlockStore, rpc: str, record: Deployment, artifact: Artifact) -> None:
    svc = AnchorService(store, ChainKey.from_hex(OTHER_KEY, "key"), record, artifact, rpc, FAST)
    assert svc.run_once().action == "anchored"


def test_the_wrong_contract_fails_on_chain(world, artifact):
    other = deployed(world.rpc, artifact)
    data = assert_fails(world, "on-chain", "--log", A, "--block", "0", "--contract", other.address)
    assert "pinned contract" in data["checks"][7]["detail"]


def test_the_wrong_chain_id_fails_on_chain(world):
    assert_fails(world, "on-chain", "--log", A, "--block", "0", "--chain-id", "1")


def test_pins_and_keys_from_the_environment(world, tmp_path, artifact):
    forked = fork(world, tmp_path, artifact)  # a store of one log: --log may be omitted
    env = {"AUDITSEAL_LOG_KEY": LOG_KEY, "AUDITSEAL_RPC": world.rpc}
    args = ["--store", str(forked), "--block", "0", "--deployment", str(world.record_path)]
    result = CliRunner().invoke(verify, [*args, "--json"], env=env)
    assert result.exit_code == 1 and json.loads(result.stdout)["first_failure"] == "on-chain"
    no_key = CliRunner().invoke(verify, args, env={"AUDITSEAL_LOG_KEY": ""})
    assert no_key.exit_code == 2 and "no pinned log key" in no_key.output


def test_without_a_chain_endpoint_nothing_is_proven_on_chain(world):
    result = CliRunner().invoke(
        verify,
        [
            *("--store", str(world.path), "--log", A, "--block", "0", "--json"),
            *("--deployment", str(world.record_path), "--log-key", LOG_KEY),
        ],
        env={"AUDITSEAL_RPC": ""},
    )
    data = json.loads(result.stdout)
    assert result.exit_code == 3 and statuses(data)["on-chain"] == "skipped"
    assert statuses(data)["anchor-inclusion"] == "ok"


def test_a_removed_block_fails_the_next_one(world):
    world.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number = 1",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 3 AND idx < 8",
    )
    data = assert_fails(world, "previous-state", "--log", A, "--block", "2")
    assert statuses(data)["header-chain"] == "failed"


def test_a_truncated_tail_fails_consistency(world):
    # The anchor covers A up to size 12; the store now ends at 8.
    world.tamper(
        "DELETE FROM blocks WHERE log_id = 1 AND number >= 2",
        "DELETE FROM entries WHERE log_id = 1 AND idx >= 8",
    )
    data = assert_fails(world, "consistency", "--log", A, "--block", "1")
    assert statuses(data)["root"] == "ok"


# --- a store whose columns hold the wrong SQLite type --------------------------------------------


@pytest.mark.parametrize(
    ("column", "sql", "held"),
    [
        ("value", "CAST(value AS TEXT)", "TEXT"),
        ("value", "7", "INTEGER"),
        ("salt", "'salty'", "TEXT"),
    ],
)
def test_a_wrong_typed_entry_column_is_a_one_line_error(world, tmp_path, column, sql, held):
    """SQLite keeps whatever an attacker writes into a BLOB column; every reader names the log,
    entry and column in one line (exit 2) instead of failing inside the hashing."""
    log_id = f"(SELECT id FROM logs WHERE origin = '{A}')"
    world.tamper(f"UPDATE entries SET {column} = {sql} WHERE log_id = {log_id} AND idx = 1")
    want = f"log {A!r}, entry 1: column {column} holds {held}, want BLOB"
    for args in (
        ("--log", A, "--block", "0"),
        ("--all",),
        ("--log", A, "--all"),
        ("--log", A, "--event", "index:1"),
    ):
        code, data = world.verify(*args)
        assert code == 2, (args, data)
        lines = data["output"].strip().splitlines()
        assert lines[-1].startswith("auditseal: error: ") and want in lines[-1], (args, lines)
    out = tmp_path / "b.json"
    result = CliRunner().invoke(
        bundle, ["--store", str(world.path), "--log", A, "--block", "0", "--out", str(out)]
    )
    assert result.exit_code == 2 and want in result.output and not out.exists()
