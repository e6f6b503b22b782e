"""``verify --event``, proof bundles (``auditseal bundle``, ``verify --bundle``) and
``verify --source`` against a running ``auditseal serve``, on a real store anchored on the
session Anvil. Each tamper case expects its specific failing check.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from web3 import Web3

from auditseal.anchor.artifact import Artifact
from auditseal.anchor.chain_client import ChainKey
from auditseal.anchor.deploy import Deployment, write_record
from auditseal.cli.verify import bundle, verify
from auditseal.infra.processes import free_port, port_answers
from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.transport.tokens import add_token
from tests.integration.test_verify import (
    DEV_KEY,
    LOG_KEY,
    OTHER_KEY,
    SIGNER,
    anchor_once,
    anchor_once_as,
    artifact,  # noqa: F401  (module fixture)
    deployed,
)
from tests.tls_files import make_pki

pytestmark = pytest.mark.chain

LOG = "auditseal.local/audit.events/0"
OTHER_LOG = "auditseal.local/audit.events/1"
SOURCE_A, SOURCE_B = "urn:proxy:a", "urn:proxy:b"
AUDITSEAL = str(Path(sys.executable).parent / "auditseal")


def event(n: int, source: str = SOURCE_A, event_id: str | None = None) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id or f"evt-{n}", "source": source, "sequence": n}
    ).encode()


def records(first: int, count: int, *, replay_of: int | None = None) -> list[Record]:
    out = [Record(p, 1_000 + p, b"k", event(p), f"evt-{p}") for p in range(first, first + count)]
    if replay_of is not None:  # at-least-once: the same event sealed again
        p = first + count
        out.append(Record(p, 1_000 + p, b"k", event(replay_of), f"evt-{replay_of}"))
    return out


@dataclass
class Events:
    """Log LOG: block 0 = evt-0..4, block 1 = evt-5..9 plus a replay of evt-2 (leaf 10), both
    anchored; block 2 = evt-20..22, sealed after the anchor."""

    path: Path
    record: Deployment
    record_path: Path
    rpc: str
    tmp: Path

    def run(self, command: Any, *args: str, pins: bool = True) -> tuple[int, Any, str]:
        base = ["--rpc", self.rpc, "--deployment", str(self.record_path), "--log-key", LOG_KEY]
        result = CliRunner().invoke(command, [*(base if pins else []), "--json", *args])
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = None
        return result.exit_code, data, result.output

    def make_bundle(self, *args: str) -> Path:
        out = self.tmp / f"bundle-{time.monotonic_ns()}.json"
        result = CliRunner().invoke(bundle, ["--store", str(self.path), "--out", str(out), *args])
        assert result.exit_code == 0, result.output
        return out


@pytest.fixture
def events(tmp_path: Path, anvil_rpc: str, artifact: Artifact) -> Iterator[Events]:  # noqa: F811
    record = deployed(anvil_rpc, artifact)
    record_path = tmp_path / "deployment.json"
    write_record(record, record_path)
    path = tmp_path / "store.db"
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 42)
        writer.append(LOG, records(0, 5))
        writer.append(LOG, records(5, 5, replay_of=2))
        anchor_once(store, anvil_rpc, record, artifact)
        writer.append(LOG, records(20, 3))
    yield Events(path, record, record_path, anvil_rpc, tmp_path)


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def edit(path: Path, change: Any) -> Path:
    data = json.loads(path.read_text())
    change(data)
    out = path.with_name(path.stem + "-edited.json")
    out.write_text(json.dumps(data))
    return out


# --- --event ----------------------------------------------------------------------------------


def test_an_event_by_id_is_proven_with_its_block_and_anchor(events):
    code, data, _ = events.run(verify, "--store", str(events.path), "--event", "evt-7")
    assert code == 0, data
    assert data["event"] == "evt-7" and data["block"] == 1
    assert list(statuses(data).values()) == ["ok"] * 10  # 1-9 and 10, anchored-state
    check = data["checks"][8]
    assert check["name"] == "event" and check["data"]["index"] == 7
    assert check["data"]["position"] == 7 and len(check["data"]["proof"]) >= 1
    assert data["checks"][7]["data"]["tx_hash"].startswith("0x")


def test_an_event_redelivered_by_its_source_is_proven_not_ambiguous(events):
    """evt-2 is sealed twice (leaves 2 and 10) by one source: a redelivery, proven at its
    first leaf; the report names the source and the log."""
    code, data, output = events.run(verify, "--store", str(events.path), "--event", "evt-2")
    assert code == 0, output
    assert data["source"] == SOURCE_A and data["checks"][8]["data"]["index"] == 2
    assert data["checks"][8]["data"]["log"] == LOG
    assert (
        f"of log {LOG}" in data["checks"][8]["detail"] and SOURCE_A in data["checks"][8]["detail"]
    )
    result = CliRunner().invoke(
        verify,
        [
            "--store",
            str(events.path),
            "--event",
            "evt-2",
            "--log-key",
            LOG_KEY,
            "--rpc",
            events.rpc,
            "--deployment",
            str(events.record_path),
        ],
    )
    assert f"event evt-2 of source {SOURCE_A} in block 0 of {LOG}" in result.output


@pytest.mark.parametrize(("requested", "index"), [("position:8", 8), ("index:3", 3)])
def test_an_event_by_position_or_leaf_index(events, requested, index):
    code, data, _ = events.run(
        verify, "--store", str(events.path), "--log", LOG, "--event", requested
    )
    assert code == 0, data
    assert data["checks"][8]["data"]["index"] == index


def test_an_event_after_the_last_anchor_is_not_proven_yet(events):
    code, data, _ = events.run(verify, "--store", str(events.path), "--event", "evt-21")
    assert code == 3 and data["first_failure"] is None
    assert statuses(data)["event"] == "ok" and "not anchored yet" in data["pending"]


def test_a_redacted_event_is_proven_by_its_leaf_never_by_an_id(events, artifact):  # noqa: F811
    with BlockStore.open(events.path) as store:
        store.redact(LOG, 6, "dpo", "erasure request", redaction_sealer(SIGNER))
        anchor_once(store, events.rpc, events.record, artifact)
    code, data, _ = events.run(verify, "--store", str(events.path), "--event", "index:6")
    assert code == 0, data
    assert "redacted" in data["checks"][8]["detail"] and data["redacted"] == [6]
    # The store still indexes the id, but the value that held it is erased: not a proof of it.
    code, data, _ = events.run(verify, "--store", str(events.path), "--event", "evt-6")
    assert code == 1 and data["first_failure"] == "event"
    assert "cannot be re-read" in data["checks"][8]["detail"]
    # An attacker points the redacted entry at an id that was never sealed.
    db = sqlite3.connect(events.path)
    db.execute("DROP TRIGGER entries_only_redact")
    db.execute("UPDATE entries SET event_id = 'never-sealed' WHERE idx = 6")
    db.commit()
    db.close()
    code, data, _ = events.run(verify, "--store", str(events.path), "--event", "never-sealed")
    assert code == 1 and data["verdict"] != "VALID"
    bundle_path = events.make_bundle("--event", "never-sealed")
    code, data, _ = events.run(verify, "--bundle", str(bundle_path))
    assert code == 1 and data["first_failure"] == "event"


def test_a_forged_redaction_fails_from_a_bundle(events):
    db = sqlite3.connect(events.path)
    db.execute("DROP TRIGGER entries_only_redact")
    db.execute("UPDATE entries SET value = NULL, salt = NULL WHERE idx = 6")
    db.commit()
    db.close()
    code, data, _ = events.run(verify, "--bundle", str(events.make_bundle("--block", "1")))
    assert code == 1 and data["first_failure"] == "entries"
    assert "no redaction record" in data["checks"][0]["detail"]


def test_unknown_events_are_usage_errors(events):
    code, _, output = events.run(verify, "--store", str(events.path), "--event", "evt-404")
    assert code == 2 and "no event with id 'evt-404'" in output
    code, _, output = events.run(
        verify, "--store", str(events.path), "--event", "evt-7", "--block", "0"
    )
    assert code == 2 and "is in block 1, not 0" in output
    code, _, output = events.run(verify, "--store", str(events.path), "--event", "index:99")
    assert code == 2 and "no leaf 99" in output


# --- bundles ----------------------------------------------------------------------------------


def test_a_bundle_verifies_offline_like_the_store(events):
    path = events.make_bundle("--block", "1")
    document = json.loads(path.read_text())
    assert document["format"] == "auditseal.bundle/v1" and document["origin"] == LOG
    assert [e["event_id"] for e in document["block"]["entries"]][-1] == "evt-2"
    code, from_bundle, output = events.run(verify, "--bundle", str(path))
    code_store, from_store, _ = events.run(verify, "--store", str(events.path), "--block", "1")
    assert code == code_store == 0, output
    strip = [{k: v for k, v in c.items() if k != "data"} for c in from_bundle["checks"]]
    # A bundle proves its block; only the store (or read API) can show the chain's latest
    # anchored state, so the store's report has check 10 besides.
    assert [c["name"] for c in from_store["checks"]][-1] == "anchored-state"
    assert strip == [{k: v for k, v in c.items() if k != "data"} for c in from_store["checks"][:-1]]


def test_a_bundle_with_an_event_proves_the_event(events):
    path = events.make_bundle("--event", "evt-8")
    code, data, _ = events.run(verify, "--bundle", str(path), "--event", "evt-8")
    assert code == 0 and statuses(data)["event"] == "ok"
    code, data, _ = events.run(verify, "--bundle", str(path))  # the event is checked anyway
    assert code == 0 and data["event"] == "evt-8"
    code, _, output = events.run(verify, "--bundle", str(path), "--event", "evt-9")
    assert code == 2 and "auditseal bundle --event evt-9" in output


def test_a_bundle_of_an_unanchored_block_is_not_proven_yet(events):
    code, data, _ = events.run(verify, "--bundle", str(events.make_bundle("--block", "2")))
    assert code == 3 and "not anchored yet" in data["pending"]


def test_bundle_to_stdout_and_summary(events):
    result = CliRunner().invoke(bundle, ["--store", str(events.path), "--block", "0", "--out", "-"])
    assert result.exit_code == 0 and json.loads(result.stdout)["block"]["number"] == 0
    out = events.tmp / "b.json"
    result = CliRunner().invoke(
        bundle, ["--store", str(events.path), "--block", "0", "--out", str(out), "--json"]
    )
    summary = json.loads(result.stdout)
    assert (
        summary["entries"] == 5
        and summary["anchored"]
        and summary["bytes"] == len(out.read_bytes())
    )


def test_bundle_errors_write_nothing(events):
    out = events.tmp / "none.json"
    for args in (["--block", "7"], ["--event", "evt-404"], []):
        result = CliRunner().invoke(bundle, ["--store", str(events.path), "--out", str(out), *args])
        assert result.exit_code == 2 and "auditseal: error:" in result.output
        assert not out.exists()
    result = CliRunner().invoke(
        bundle, ["--store", str(events.tmp / "missing.db"), "--block", "0", "--out", str(out)]
    )
    assert result.exit_code == 2 and "missing.db: no block store" in result.output


# The tamper matrix, bundle edition: an edited bundle fails the check that covers the edit.


def test_a_bundle_with_a_changed_value_fails_entries(events):
    def change(d: dict) -> None:
        d["block"]["entries"][1]["value_b64"] = "Zm9yZ2Vk"

    path = edit(events.make_bundle("--block", "1"), change)
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == "entries"
    assert "does not match its commitment" in data["checks"][0]["detail"]


def test_a_bundle_with_a_forged_previous_state_fails_previous_state(events):
    def change(d: dict) -> None:
        d["compact_at_start"][0] = "00" * 32

    path = edit(events.make_bundle("--block", "1"), change)
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == "previous-state"


def test_a_bundle_with_a_forged_event_proof_fails_event(events):
    def change(d: dict) -> None:
        d["event"]["proof"][0] = "11" * 32

    path = edit(events.make_bundle("--event", "evt-6"), change)
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == "event"

    def other_leaf(d: dict) -> None:
        d["event"]["index"] = 7  # evt-7's leaf presented as evt-6

    path = edit(events.make_bundle("--event", "evt-6"), other_leaf)
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and "holds event id 'evt-7', not 'evt-6'" in data["checks"][8]["detail"]


def test_a_bundle_pointed_at_another_contract_fails_on_chain(events, artifact):  # noqa: F811
    attacker = deployed(events.rpc, artifact, OTHER_KEY)
    # The attacker anchors a copy of the store on their own contract and hands out its bundle.
    copy = events.tmp / "copy.db"
    with sqlite3.connect(events.path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with BlockStore.open(copy) as store:
        anchor_once_as(store, events.rpc, attacker, artifact)
    forged = events.tmp / "forged.json"
    result = CliRunner().invoke(
        bundle, ["--store", str(copy), "--block", "2", "--out", str(forged)]
    )
    assert result.exit_code == 0, result.output
    code, data, _ = events.run(verify, "--bundle", str(forged))
    assert code == 1 and data["first_failure"] == "on-chain"
    assert "pinned contract is" in data["checks"][7]["detail"]
    # Without a pin there is no proof on chain at all: the contract is not taken from the bundle.
    code, _, output = events.run(
        verify, "--bundle", str(forged), "--rpc", events.rpc, "--log-key", LOG_KEY, pins=False
    )
    assert code == 2 and "no pinned contract" in output


def test_a_bundle_pointed_at_another_chain_fails_on_chain(events):
    def change(d: dict) -> None:
        d["anchor"]["receipt"]["chain_id"] = 11155111

    path = edit(events.make_bundle("--block", "0"), change)
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == "on-chain"
    assert "receipt names chain 11155111, pinned chain is 31337" in data["checks"][7]["detail"]
    record = events.tmp / "no-chain-id.json"
    record.write_text(json.dumps({"address": events.record.address}))
    code, data, _ = events.run(
        verify,
        *("--bundle", str(path), "--rpc", events.rpc, "--log-key", LOG_KEY),
        *("--deployment", str(record)),
        pins=False,
    )
    assert code == 1 and "the endpoint serves 31337" in data["checks"][7]["detail"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("previous"), "bundle.previous: missing"),
        (lambda d: d.update(format="auditseal.bundle/v9"), "bundle.format: 'auditseal.bundle/v9'"),
        (lambda d: d["block"]["entries"][2].update(salt="xy"), "bundle.block.entries[2].salt"),
        (lambda d: d["block"]["entries"][0].update(index=4), "bundle.block.entries[0].index"),
        (lambda d: d["anchor"]["receipt"].update(root=7), "bundle.anchor.receipt: anchor receipt"),
        (lambda d: d.update(extra=1), "bundle.extra: unknown key"),
        (lambda d: d["block"].update(header="junk"), "bundle.block.header"),
    ],
)
def test_a_malformed_bundle_names_the_field(events, change, message):
    path = edit(events.make_bundle("--block", "1"), change)
    code, _, output = events.run(verify, "--bundle", str(path))
    assert code == 2 and message in output and str(path) in output, output


def test_a_bundle_asked_for_something_else_is_a_usage_error(events):
    path = events.make_bundle("--block", "1")
    code, _, output = events.run(verify, "--bundle", str(path), "--block", "0")
    assert code == 2 and "is a bundle of block 1, not 0" in output
    garbage = events.tmp / "garbage.json"
    garbage.write_text("{not json")
    code, _, output = events.run(verify, "--bundle", str(garbage))
    assert code == 2 and "garbage.json" in output
    code, _, output = events.run(verify, "--bundle", str(path), "--store", str(events.path))
    assert code == 2 and "read from one place" in output


# --- a root on chain from an unauthorised address ----------------------------------------------


def test_a_root_written_by_an_address_revoked_in_the_same_block_fails_on_chain(
    events,
    artifact,  # noqa: F811
):
    """The anchorer's transaction and, right after it in the same block (next nonce), the
    revocation of that anchorer: the root is on chain, written by an address the contract does
    not authorise in that block's state."""
    w3 = Web3(Web3.HTTPProvider(events.rpc))
    contract = w3.eth.contract(address=events.record.address, abi=artifact.abi)
    anchorer = ChainKey.from_hex(DEV_KEY, "k").address
    with BlockStore.open(events.path) as store:  # a block past the anchor, to anchor again
        LogWriter(store, SIGNER, lambda: 42).append(LOG, records(30, 2))
    done = threading.Event()

    def anchor() -> None:
        with BlockStore.open(events.path) as store:
            anchor_once(store, events.rpc, events.record, artifact)
        done.set()

    w3.provider.make_request("evm_setAutomine", [False])
    try:
        worker = threading.Thread(target=anchor, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while not w3.eth.get_block("pending")["transactions"]:
            assert time.monotonic() < deadline, "the anchor transaction never arrived"
            time.sleep(0.05)
        nonce = w3.eth.get_transaction_count(anchorer, "pending")
        contract.functions.revoke(anchorer).transact({"from": anchorer, "nonce": nonce})
        w3.provider.make_request("evm_mine", [])
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    worker.join(60)
    assert done.is_set()
    code, data, _ = events.run(verify, "--store", str(events.path), "--block", "3")
    assert code == 1 and data["first_failure"] == "on-chain", data
    assert "not an anchorer of the contract in block" in data["checks"][7]["detail"]


# --- --source: the read API of `auditseal serve` ----------------------------------------------


@contextmanager
def serving(store: Path) -> Iterator[str]:
    """``auditseal serve`` over ``store`` on a free loopback port, over TLS with a read token:
    its base URL. While it runs, ``verify --source`` finds the token and the CA through
    $AUDITSEAL_API_TOKEN_FILE and $AUDITSEAL_API_CA, as a remote verifier would set them."""
    work = Path(tempfile.mkdtemp(prefix="serving-"))
    pki = make_pki(work / "pki")
    token_file = work / "read-token"
    token_file.write_text(add_token(work / "tokens", "verifier") + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(AUDITSEAL, "serve", "--store", str(store), "--listen", f"127.0.0.1:{port}"),
            *("--tokens", str(work / "tokens")),
            *("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    client = {"AUDITSEAL_API_TOKEN_FILE": str(token_file), "AUDITSEAL_API_CA": str(pki.ca_cert)}
    before = {name: os.environ.get(name) for name in client}
    try:
        deadline = time.monotonic() + 30
        while not port_answers(port):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "auditseal serve did not start"
            time.sleep(0.1)
        os.environ.update(client)
        yield f"https://127.0.0.1:{port}"
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def served(events: Events) -> Iterator[str]:
    with serving(events.path) as url:
        yield url


def test_a_block_and_an_event_verify_from_the_read_api(events, served):
    code, data, _ = events.run(verify, "--source", served, "--block", "1")
    assert code == 0 and data["verdict"] == "VALID", data
    code, data, _ = events.run(verify, "--source", served, "--event", "evt-3")
    assert code == 0 and data["checks"][8]["data"]["index"] == 3
    code, data, _ = events.run(verify, "--source", served, "--block", "2")
    assert code == 3 and "not anchored yet" in data["pending"]


def test_the_whole_log_verifies_from_the_read_api_and_names_every_bad_block(events, served):
    code, data, _ = events.run(verify, "--source", served, "--all")
    assert code == 3 and data["verdict"] == "NOT PROVEN", data  # block 2 is not anchored yet
    (log,) = data["logs"]
    assert (log["blocks"], log["entries"], log["problems"]) == (3, 14, [])
    assert log["on_chain"]["status"] == "ok" and log["anchored_block"] == 1
    db = sqlite3.connect(events.path)
    db.execute("DROP TRIGGER entries_only_redact")
    db.execute("UPDATE entries SET value = CAST('forged' AS BLOB) WHERE idx = 1")
    db.commit()
    db.close()
    code, data, _ = events.run(verify, "--source", served, "--all", "--log", LOG)
    assert code == 1 and data["verdict"] == "INVALID"
    assert [(p["block"], p["check"]) for p in data["logs"][0]["problems"]] == [(0, "entries")]


def test_the_whole_log_from_the_read_api_reports_a_missing_block(events, served):
    db = sqlite3.connect(events.path)
    db.execute("DROP TRIGGER blocks_no_delete")
    db.execute("DELETE FROM blocks WHERE number = 1")
    db.commit()
    db.close()
    code, data, _ = events.run(verify, "--source", served, "--all")
    assert code == 1
    problems = [(p["block"], p["check"]) for p in data["logs"][0]["problems"]]
    assert (1, "missing") in problems and (2, "previous-state") in problems
    code, _, output = events.run(verify, "--source", served, "--all", "--log", "nope")
    assert code == 2 and "serves no log 'nope'" in output


def test_the_read_api_refusing_a_request_is_a_usage_error(events, served):
    code, _, output = events.run(verify, "--source", served, "--block", "9")
    assert code == 2 and "HTTP 404" in output and "no block 9" in output
    code, _, output = events.run(verify, "--source", served, "--event", "evt-404")
    assert code == 2 and "HTTP 404" in output


def test_the_read_api_without_a_token_is_a_usage_error_naming_the_options(events, served):
    token_file = os.environ.pop("AUDITSEAL_API_TOKEN_FILE")
    try:
        code, _, output = events.run(verify, "--source", served, "--block", "1")
    finally:
        os.environ["AUDITSEAL_API_TOKEN_FILE"] = token_file
    assert code == 2 and "HTTP 401" in output and "--api-token-file" in output


def test_an_unreachable_read_api_is_exit_3(events):
    url = f"http://127.0.0.1:{free_port()}"
    code, _, output = events.run(verify, "--source", url, "--block", "0")
    assert code == 3 and "unreachable" in output
    code, _, output = events.run(verify, "--source", "ftp://example", "--block", "0")
    assert code == 2 and "want an http:// or https:// URL" in output


# --- one event id, two sources ------------------------------------------------------------------


@pytest.fixture
def reused(events: Events, artifact: Artifact) -> Events:  # noqa: F811
    """Source B's token holder publishes an event with source A's id evt-7 (into OTHER_LOG,
    as B's key maps there); the sealer seals it and it is anchored like any other."""
    with BlockStore.open(events.path) as store:
        value = event(0, SOURCE_B, "evt-7")
        LogWriter(store, SIGNER, lambda: 42).append(
            OTHER_LOG, [Record(0, 5_000, b"b", value, "evt-7")]
        )
        anchor_once(store, events.rpc, events.record, artifact)
    return events


def test_an_id_published_by_two_sources_is_ambiguous(reused):
    code, data, output = reused.run(verify, "--store", str(reused.path), "--event", "evt-7")
    assert code == 1 and data["verdict"].startswith("AMBIGUOUS"), output
    assert "checks" not in data  # nothing is proven
    found = sorted((c["source"], c["log"], c["index"]) for c in data["candidates"])
    assert found == [(SOURCE_A, LOG, 7), (SOURCE_B, OTHER_LOG, 0)]
    code, _, output = reused.run(
        verify, "--store", str(reused.path), "--event", "evt-7", pins=False
    )
    assert code in (1, 2)  # without pins: a usage error first
    for narrowing, source, log, index in (
        (("--source-uri", SOURCE_A), SOURCE_A, LOG, 7),
        (("--source-uri", SOURCE_B), SOURCE_B, OTHER_LOG, 0),
        (("--log", LOG), SOURCE_A, LOG, 7),
        (("--log", OTHER_LOG), SOURCE_B, OTHER_LOG, 0),
    ):
        code, data, output = reused.run(
            verify, "--store", str(reused.path), "--event", "evt-7", *narrowing
        )
        assert code == 0 and data["verdict"] == "VALID", output
        assert (data["source"], data["origin"], data["checks"][8]["data"]["index"]) == (
            source,
            log,
            index,
        )
        assert source in data["checks"][8]["detail"]
    code, _, output = reused.run(
        verify, "--store", str(reused.path), "--event", "evt-7", "--source-uri", "urn:proxy:c"
    )
    assert code == 2 and "no event with id 'evt-7' of source 'urn:proxy:c'" in output


def test_an_ambiguous_id_in_text_lists_each_source(reused):
    result = CliRunner().invoke(
        verify,
        [
            *("--store", str(reused.path), "--event", "evt-7", "--log-key", LOG_KEY),
            *("--rpc", reused.rpc, "--deployment", str(reused.record_path)),
        ],
    )
    assert result.exit_code == 1
    assert f"source '{SOURCE_A}': log {LOG}, leaf 7" in result.output
    assert f"source '{SOURCE_B}': log {OTHER_LOG}, leaf 0" in result.output
    assert "AMBIGUOUS: event id 'evt-7' was sealed by more than one source" in result.output
    assert "VALID" not in result.output.replace("INVALID", "")


def test_a_bundle_of_a_reused_id_needs_and_keeps_its_source(reused):
    out = reused.tmp / "ambiguous.json"
    result = CliRunner().invoke(
        bundle, ["--store", str(reused.path), "--event", "evt-7", "--out", str(out)]
    )
    assert result.exit_code == 2 and "sealed by 2 sources" in result.output and not out.exists()
    path = reused.make_bundle("--event", "evt-7", "--source-uri", SOURCE_B)
    assert json.loads(path.read_text())["event"]["source_uri"] == SOURCE_B
    code, data, output = reused.run(verify, "--bundle", str(path))
    assert code == 0 and data["source"] == SOURCE_B and data["origin"] == OTHER_LOG, output
    # Asked as source A's event, B's copy does not prove it.
    code, data, _ = reused.run(verify, "--bundle", str(path), "--source-uri", SOURCE_A)
    assert code == 1 and data["first_failure"] == "event"
    assert f"source '{SOURCE_B}', not '{SOURCE_A}'" in data["checks"][8]["detail"]
    # The bundle's recorded source edited to A's: the event check reads the value's own.
    code, data, _ = reused.run(
        verify, "--bundle", str(edit(path, lambda d: d["event"].update(source_uri=SOURCE_A)))
    )
    assert code == 1 and data["first_failure"] == "event"


def test_the_read_api_reports_a_reused_id_as_ambiguous(reused, served):
    code, data, output = reused.run(verify, "--source", served, "--event", "evt-7")
    assert code == 1 and data["verdict"].startswith("AMBIGUOUS"), output
    assert {c["source"] for c in data["candidates"]} == {SOURCE_A, SOURCE_B}
    code, data, output = reused.run(
        verify, "--source", served, "--event", "evt-7", "--source-uri", SOURCE_B
    )
    assert code == 0 and data["source"] == SOURCE_B and data["origin"] == OTHER_LOG, output
    code, data, output = reused.run(verify, "--source", served, "--event", "evt-7", "--log", LOG)
    assert code == 0 and data["source"] == SOURCE_A, output
    query = urllib.parse.urlencode({"id": "evt-7", "source_uri": SOURCE_B})
    token = Path(os.environ["AUDITSEAL_API_TOKEN_FILE"]).read_text().strip()
    request = urllib.request.Request(
        f"{served}/v1/event?{query}", headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=os.environ["AUDITSEAL_API_CA"])
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        entries = json.loads(response.read())["entries"]
    assert [(e["log"], e["source"]) for e in entries] == [(OTHER_LOG, SOURCE_B)]


# --- every field of a bundle is checked or derived ----------------------------------------------


def test_a_bundle_whose_anchored_checkpoint_is_unsigned_fails_consistency(events):
    path = edit(
        events.make_bundle("--block", "1"), lambda d: d["anchor"].update(checkpoint_note=None)
    )
    code, data, _ = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == "consistency", data
    assert "without its signed note" in data["checks"][5]["detail"]


def test_a_previous_header_rewritten_with_the_prev_link_fails_header_chain(events):
    """The previous header's root changed and the block's prev link re-pointed at it: the hash
    chain holds, but the previous header no longer states its signed checkpoint's root."""
    from auditseal.verifier.block import BlockHeader

    def change(d: dict) -> None:
        prev = BlockHeader.from_text(d["previous"]["header"])
        forged = dataclasses.replace(prev, root=bytes(32))
        d["previous"]["header"] = forged.to_text()
        block = BlockHeader.from_text(d["block"]["header"])
        d["block"]["header"] = dataclasses.replace(block, prev_hash=forged.hash()).to_text()

    code, data, _ = events.run(
        verify, "--bundle", str(edit(events.make_bundle("--block", "1"), change))
    )
    assert code == 1 and data["first_failure"] == "header-chain", data
    assert "previous header states" in data["checks"][4]["detail"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["event"].update(copies=[3]), "bundle.event.copies: unknown key"),
        (
            lambda d: d["block"]["entries"][1].update(value_size=999),
            "bundle.block.entries[1].value_size: unknown key",
        ),
        (
            lambda d: d["block"]["entries"][1].update(event_id="evt-99"),
            "bundle.block.entries[1].event_id: 'evt-99', but the value states 'evt-6'",
        ),
        (
            lambda d: d["block"]["entries"][1].update(flag="forged"),
            "bundle.block.entries[1].flag: always null in a bundle",
        ),
        (
            lambda d: d["anchor"]["receipt"].update(
                tx_hash=d["anchor"]["receipt"]["tx_hash"].upper().replace("0X", "0x")
            ),
            "tx_hash wants 0x + 64 lowercase hex digits",
        ),
        (
            lambda d: d["anchor"]["receipt"].update(
                block_hash=d["anchor"]["receipt"]["block_hash"].upper().replace("0X", "0x")
            ),
            "block_hash wants 0x + 64 lowercase hex digits",
        ),
    ],
)
def test_a_bundle_field_no_check_covers_is_refused(events, change, message):
    path = edit(events.make_bundle("--event", "evt-6"), change)
    code, _, output = events.run(verify, "--bundle", str(path))
    assert code == 2 and message in output and str(path) in output, output


@pytest.mark.parametrize(
    ("original", "duplicate", "field"),
    [
        ('"origin": ', '"origin": "forged", ', "bundle.origin"),
        ('"tx_hash": ', '"tx_hash": "0x00", ', "bundle.anchor.receipt.tx_hash"),
        ('"value_b64": ', '"value_b64": "Zm9yZ2Vk", ', "bundle.block.entries[0].value_b64"),
        ('"requested": ', '"requested": "evt-1", ', "bundle.event.requested"),
    ],
)
def test_a_bundle_with_a_key_given_twice_is_refused(events, original, duplicate, field):
    """JSON readers disagree on duplicate keys (first or last wins): a bundle holding one could
    read as two documents, so it is refused, naming the dotted field."""
    path = events.make_bundle("--event", "evt-6")
    text = path.read_text()
    assert original in text
    forged = path.with_name("duplicate.json")
    forged.write_text(text.replace(original, duplicate + original, 1))
    code, _, output = events.run(verify, "--bundle", str(forged))
    assert code == 2 and f"{field}: key given twice" in output, output


# Receipt fields against the chain: a store of three logs (so the aggregate's size is not bound
# by the root: leaf 0 of 3 and of 4 share an audit path), anchored by the service, and the same
# root anchored again under the next seq by the anchorer (so a receipt pointed at that seq
# finds its root on chain).


@pytest.fixture
def three_logs(events: Events, artifact: Artifact) -> tuple[Events, int]:  # noqa: F811
    logs = [f"auditseal.local/audit.events/{p}" for p in (1, 2)]
    with BlockStore.open(events.path) as store:
        writer = LogWriter(store, SIGNER, lambda: 42)
        for p, origin in enumerate(logs):
            writer.append(origin, [Record(0, 6_000 + p, b"x", event(40 + p, SOURCE_B), None)])
        anchor_once(store, events.rpc, events.record, artifact)
        receipt = store.latest_anchored_checkpoint(LOG)
        assert receipt is not None and receipt.size == 3 and receipt.index == 0
    w3 = Web3(Web3.HTTPProvider(events.rpc))
    contract = w3.eth.contract(address=events.record.address, abi=artifact.abi)
    anchorer = ChainKey.from_hex(DEV_KEY, "k").address
    replay = receipt.seq + 1
    tx = contract.functions.anchor(replay, receipt.root, 3).transact({"from": anchorer})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    return events, replay


@pytest.mark.parametrize(
    ("field", "change", "check"),
    [
        ("tx_hash", lambda r, _: r.update(tx_hash="0x" + "ab" * 32), "on-chain"),
        ("block_hash", lambda r, _: r.update(block_hash="0x" + "cd" * 32), "on-chain"),
        ("block_number", lambda r, _: r.update(block_number=r["block_number"] + 1), "on-chain"),
        ("size", lambda r, _: r.update(size=4), "on-chain"),
        ("seq", lambda r, replay: r.update(seq=replay), "on-chain"),
        ("status", lambda r, _: r.update(status="orphaned"), "on-chain"),
        ("index", lambda r, _: r.update(index=1), "anchor-inclusion"),
        ("proof", lambda r, _: r["proof"].__setitem__(0, "11" * 32), "anchor-inclusion"),
        ("root", lambda r, _: r.update(root="22" * 32), "anchor-inclusion"),
    ],
)
def test_each_receipt_field_changed_fails_a_check(three_logs, field, change, check):
    events, replay = three_logs
    original = events.make_bundle("--log", LOG, "--block", "2")
    code, data, output = events.run(verify, "--bundle", str(original))
    assert code == 0, output
    path = edit(original, lambda d: change(d["anchor"]["receipt"], replay))
    code, data, output = events.run(verify, "--bundle", str(path))
    assert code == 1 and data["first_failure"] == check, output
    if check == "on-chain":  # the chain passes; the receipt's own claim is what fails
        assert data["checks"][7]["detail"].startswith("receipt") or field == "status", data
