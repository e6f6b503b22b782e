"""The read API (`auditseal serve`): every route, its errors and caching, against a real store.

The app runs on a real loopback socket through aiohttp's TestServer; each test is a coroutine
run by ``asyncio.run`` (see :func:`async_test`), since pytest-asyncio is not a dependency.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.cli.main import cli
from auditseal.cli.options import HostPort
from auditseal.readapi import app as api
from auditseal.readapi import cli as serve
from auditseal.sealer.blocks import redaction_sealer
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.transport.readers import ReadAccess
from auditseal.transport.tokens import add_token
from auditseal.verifier import merkle
from auditseal.verifier.block import BlockHeader
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.leaf import commitment

ORIGIN = "auditseal.local/audit.events/0"
OTHER = "auditseal.local/audit.events/1"
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32)))
SEALED_AT = 1_767_225_600_000
REDACTED = 5
ENTRY_KEYS = {
    "log",
    "index",
    "position",
    "timestamp_ms",
    "key",
    "value",
    "value_text",
    "salt",
    "value_commitment",
    "value_null",
    "redacted",
    "leaf_hash",
    "event_id",
    "flag",
    "block",
}
BLOCK_KEYS = {
    "log",
    "number",
    "start",
    "end",
    "root",
    "sealed_at_ms",
    "prev_hash",
    "hash",
    "header",
    "checkpoint",
    "gaps",
}


def build_store(path: Path) -> None:
    """ORIGIN: blocks [0, 3) [3, 4) [4, 10), a Kafka offset gap 3..5, a replayed event, a
    non-UTF-8 value, a null key and value, a flagged record, entry 5 redacted (its redaction
    record is leaf 10, block [10, 11)). OTHER: 1 entry."""
    with BlockStore.open(path, create=True) as db:
        writer = LogWriter(db, SIGNER, lambda: SEALED_AT)
        writer.append(
            ORIGIN,
            [
                Record(0, 1000, b"proxy-1", b'{"hello":"world"}', event_id="ev-1"),
                Record(1, 1001, b"proxy-1", b"\xff\xfe binary", event_id="ev-2"),
                Record(2, 1002, None, None, flag="not a CloudEvent: invalid JSON"),
            ],
        )
        writer.append(ORIGIN, [Record(5, 1005, b"proxy-1", b"replayed", event_id="ev-1")])
        writer.append(
            ORIGIN,
            [Record(6 + i, 1006 + i, b"proxy-2", f"value {i}".encode()) for i in range(6)],
        )
        writer.append(OTHER, [Record(0, 2000, b"proxy-3", b"elsewhere", event_id="ev-1")])
        db.redact(
            ORIGIN,
            REDACTED,
            "dpo@example.com",
            "GDPR-1",
            redaction_sealer(SIGNER),
            now_ms=SEALED_AT,
        )


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "store.db"
    build_store(path)
    return path


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test function with asyncio.run (fixtures still work: see __wrapped__)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


@asynccontextmanager
async def client_for(path: Path, **kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    # Who may read and the Host check are tested over real sockets in test_access.py.
    app = api.make_app(path, access=ReadAccess.anyone(), hosts=None, **kwargs)
    async with TestClient(TestServer(app)) as client:
        yield client


async def get_json(
    client: TestClient[Any, Any], path: str, status: int = 200, **params: object
) -> Any:
    response = await client.get(path, params={k: str(v) for k, v in params.items()})
    body = await response.json()
    assert response.status == status, body
    assert response.content_type == "application/json"
    return body


def cli_json(store_path: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--store", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- logs and checkpoints ---------------------------------------------------------------------


@async_test
async def test_logs_lists_every_log_with_its_latest_checkpoint(store_path):
    async with client_for(store_path) as client:
        response = await client.get("/v1/logs")
        assert response.headers["Cache-Control"] == "no-cache"
        logs = await response.json()
    assert [log["log"] for log in logs] == [ORIGIN, OTHER]
    assert [(log["size"], log["blocks"]) for log in logs] == [(11, 4), (1, 1)]
    for log in logs:
        checkpoint = open_checkpoint(log["latest_checkpoint"], [SIGNER.verifier])
        assert (checkpoint.origin, checkpoint.size) == (log["log"], log["size"])


@async_test
async def test_checkpoint_is_the_signed_note_verbatim(store_path):
    with BlockStore.open(store_path, readonly=True) as db:
        note, root = db.latest_checkpoint(ORIGIN), db.root(ORIGIN)
    async with client_for(store_path) as client:
        response = await client.get("/v1/checkpoint", params={"log": ORIGIN})
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        text = await response.text()
        as_json = await get_json(client, "/v1/checkpoint.json", log=ORIGIN)
    assert text == note
    checkpoint = open_checkpoint(text, [SIGNER.verifier])
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 11, root)
    assert as_json == {"log": ORIGIN, "size": 11, "root": root.hex(), "note": note}


@async_test
async def test_new_blocks_show_without_a_restart(tmp_path):
    path = tmp_path / "store.db"
    build_store(path)
    async with client_for(path) as client:
        assert (await get_json(client, "/v1/checkpoint.json", log=OTHER))["size"] == 1
        with BlockStore.open(path) as db:
            LogWriter(db, SIGNER, lambda: SEALED_AT + 1).append(
                OTHER, [Record(1, 2001, None, b"later")]
            )
        assert (await get_json(client, "/v1/checkpoint.json", log=OTHER))["size"] == 2
        proof = await get_json(client, "/v1/proof/consistency", log=OTHER, old=1)
        assert proof["new_size"] == 2


# --- blocks -----------------------------------------------------------------------------------


@async_test
async def test_blocks_are_listed_with_headers_that_chain(store_path):
    async with client_for(store_path) as client:
        response = await client.get("/v1/blocks", params={"log": ORIGIN})
        assert response.headers["Cache-Control"] == "no-cache"  # a short page: it will grow
        blocks = await response.json()
    assert [(b["number"], b["start"], b["end"]) for b in blocks] == [
        (0, 0, 3),
        (1, 3, 4),
        (2, 4, 10),
        (3, 10, 11),
    ]
    prev = None
    for b in blocks:
        assert set(b) == BLOCK_KEYS
        header = BlockHeader.from_text(b["header"])
        header.verify_follows(prev)
        assert hashlib.sha256(b["header"].encode()).hexdigest() == b["hash"]
        assert (header.root.hex(), header.prev_hash.hex()) == (b["root"], b["prev_hash"])
        assert header.sealed_at_ms == b["sealed_at_ms"] == SEALED_AT
        assert open_checkpoint(b["checkpoint"], [SIGNER.verifier]).size == b["end"]
        prev = header
    assert [b["gaps"] for b in blocks] == [[], [[3, 5]], [], []]


@async_test
async def test_blocks_page_with_from_and_limit(store_path):
    async with client_for(store_path) as client:
        response = await client.get("/v1/blocks", params={"log": ORIGIN, "from": "1", "limit": "1"})
        assert response.headers["Cache-Control"] == api.IMMUTABLE  # a full page never changes
        assert [b["number"] for b in await response.json()] == [1]
        assert await get_json(client, "/v1/blocks", log=ORIGIN, **{"from": 4}) == []
        for params, name in [
            ({"limit": 1001}, "limit"),
            ({"limit": 0}, "limit"),
            ({"from": -1}, "from"),
            ({"from": "1.5"}, "from"),
            ({"limit": "ten"}, "limit"),
        ]:
            body = await get_json(client, "/v1/blocks", 400, log=ORIGIN, **params)
            assert body["error"].startswith(f"{name}: ")


@async_test
async def test_a_block_with_and_without_its_entries(store_path):
    async with client_for(store_path) as client:
        response = await client.get("/v1/block", params={"log": ORIGIN, "number": "2"})
        assert response.headers["Cache-Control"] == api.IMMUTABLE
        bare = await response.json()
        response = await client.get(
            "/v1/block", params={"log": ORIGIN, "number": "2", "entries": "true"}
        )
        assert response.headers["Cache-Control"] == "private, max-age=60"
        full = await response.json()
        listed = await get_json(client, "/v1/blocks", log=ORIGIN, **{"from": 2})
    assert set(bare) == BLOCK_KEYS and bare == listed[0]
    entries = full.pop("entries")
    assert full == bare
    assert [e["index"] for e in entries] == list(range(4, 10))
    assert all(e["block"] == 2 for e in entries)
    # The block's entries rebuild its root, given the tree before it.
    with BlockStore.open(store_path, readonly=True) as db:
        before = [e.leaf_hash() for e in db.entries(ORIGIN, 0, 4)]
    leaves = before + [bytes.fromhex(e["leaf_hash"]) for e in entries]
    assert merkle.root(leaves).hex() == bare["root"]


@async_test
async def test_block_errors(store_path, monkeypatch):
    async with client_for(store_path) as client:
        body = await get_json(client, "/v1/block", 404, log=ORIGIN, number=4)
        assert body["error"] == f"{ORIGIN}: no block 4"
        body = await get_json(client, "/v1/block", 400, log=ORIGIN)
        assert body["error"].startswith("number: ")
        body = await get_json(client, "/v1/block", 400, log=ORIGIN, number=0, entries="maybe")
        assert body["error"].startswith("entries: ")
        monkeypatch.setattr(api, "MAX_BLOCK_ENTRIES", 5)
        body = await get_json(client, "/v1/block", 400, log=ORIGIN, number=2, entries="true")
        assert "/v1/entries?start=4" in body["error"]


# --- entries and events -----------------------------------------------------------------------


@async_test
async def test_an_entry_by_index_and_by_position(store_path):
    with BlockStore.open(store_path, readonly=True) as db:
        stored = db.entries(ORIGIN, 0, 1)[0]
    async with client_for(store_path) as client:
        response = await client.get("/v1/entry", params={"log": ORIGIN, "index": "0"})
        assert response.headers["Cache-Control"] == "private, max-age=60"
        entry = await response.json()
        assert await get_json(client, "/v1/entry", log=ORIGIN, position=0) == entry
        replay = await get_json(client, "/v1/entry", log=ORIGIN, position=5)
    assert set(entry) == ENTRY_KEYS
    assert entry == {
        "log": ORIGIN,
        "index": 0,
        "position": 0,
        "timestamp_ms": 1000,
        "key": b"proxy-1".hex(),
        "value": b'{"hello":"world"}'.hex(),
        "value_text": '{"hello":"world"}',
        "salt": stored.salt.hex(),
        "value_commitment": stored.value_commitment.hex(),
        "value_null": False,
        "redacted": False,
        "leaf_hash": stored.leaf_hash().hex(),
        "event_id": "ev-1",
        "flag": None,
        "block": 0,
    }
    salt, value = bytes.fromhex(entry["salt"]), bytes.fromhex(entry["value"])
    assert commitment(salt, value).hex() == entry["value_commitment"]
    assert (replay["index"], replay["block"], replay["event_id"]) == (3, 1, "ev-1")


@async_test
async def test_binary_null_and_flagged_entries(store_path):
    async with client_for(store_path) as client:
        binary = await get_json(client, "/v1/entry", log=ORIGIN, index=1)
        null = await get_json(client, "/v1/entry", log=ORIGIN, index=2)
    assert binary["value"] == b"\xff\xfe binary".hex() and binary["value_text"] is None
    assert null["key"] is None and null["value"] is None and null["value_text"] is None
    assert null["value_null"] is True and null["redacted"] is False and null["salt"] is not None
    assert null["flag"] == "not a CloudEvent: invalid JSON" and null["event_id"] is None


@async_test
async def test_a_redacted_entry_keeps_its_leaf_and_proof(store_path):
    async with client_for(store_path) as client:
        entry = await get_json(client, "/v1/entry", log=ORIGIN, index=REDACTED)
        proof = await get_json(client, "/v1/proof/inclusion", log=ORIGIN, index=REDACTED)
    assert entry["redacted"] is True and entry["value_null"] is False
    assert entry["value"] is None and entry["value_text"] is None and entry["salt"] is None
    assert entry["leaf_hash"] == proof["leaf_hash"]
    merkle.verify_inclusion(
        bytes.fromhex(entry["leaf_hash"]),
        REDACTED,
        proof["size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )


@async_test
async def test_entries_page(store_path):
    async with client_for(store_path) as client:
        page = await get_json(client, "/v1/entries", log=ORIGIN, start=2, limit=3)
        tail = await get_json(client, "/v1/entries", log=ORIGIN, start=8)
        past = await get_json(client, "/v1/entries", log=ORIGIN, start=11)
        body = await get_json(client, "/v1/entries", 400, log=ORIGIN, limit=1001)
    assert [(e["index"], e["block"]) for e in page] == [(2, 0), (3, 1), (4, 2)]
    assert [e["index"] for e in tail] == [8, 9, 10] and past == []
    assert body["error"].startswith("limit: ")


@async_test
async def test_entry_errors(store_path):
    async with client_for(store_path) as client:
        body = await get_json(client, "/v1/entry", 404, log=ORIGIN, index=11)
        assert body["error"] == f"{ORIGIN}: no entry 11 (log size 11)"
        body = await get_json(client, "/v1/entry", 404, log=ORIGIN, position=3)  # in the gap
        assert body["error"] == f"{ORIGIN}: no entry at position 3"
        for params in [{}, {"index": 1, "position": 1}]:
            body = await get_json(client, "/v1/entry", 400, log=ORIGIN, **params)
            assert body["error"].startswith("index or position: ")
        # Numbers SQLite cannot hold are bad input, the largest it can are merely absent.
        body = await get_json(client, "/v1/entry", 400, log=ORIGIN, index=2**63)
        assert body["error"].startswith("index: ")
        body = await get_json(client, "/v1/entry", 400, log=ORIGIN, index="9" * 30)
        assert body["error"].startswith("index: ")
        await get_json(client, "/v1/entry", 404, log=ORIGIN, index=2**63 - 1)
        await get_json(client, "/v1/entry", 404, log=ORIGIN, position=2**63 - 1)
        response = await client.get("/v1/entry", params=[("log", ORIGIN), ("log", OTHER)])
        assert response.status == 400
        assert (await response.json())["error"].startswith("log: given 2 times")


@async_test
async def test_an_event_id_finds_every_copy_across_logs(store_path):
    async with client_for(store_path) as client:
        response = await client.get("/v1/event", params={"id": "ev-1"})
        assert response.headers["Cache-Control"] == "private, max-age=60"
        everywhere = await response.json()
        in_other = await get_json(client, "/v1/event", id="ev-1", log=OTHER)
        single = await get_json(client, "/v1/event", id="ev-2")
        body = await get_json(client, "/v1/event", 404, id="ev-404")
        assert body["error"] == "no event 'ev-404'"
        body = await get_json(client, "/v1/event", 404, id="ev-2", log=OTHER)
        assert body["error"] == f"no event 'ev-2' in {OTHER!r}"
        body = await get_json(client, "/v1/event", 400)
        assert body["error"].startswith("id: ")
    assert everywhere["event_id"] == "ev-1" and everywhere["truncated"] is False
    copies = [(e["log"], e["index"], e["position"]) for e in everywhere["entries"]]
    assert copies == [(ORIGIN, 0, 0), (ORIGIN, 3, 5), (OTHER, 0, 0)]
    # Each copy names the CloudEvents source its value states (none here: not events).
    assert all(set(e) == ENTRY_KEYS | {"source"} for e in everywhere["entries"])
    assert {e["source"] for e in everywhere["entries"]} == {None}
    assert [(e["log"], e["index"]) for e in in_other["entries"]] == [(OTHER, 0)]
    assert [e["index"] for e in single["entries"]] == [1]


@async_test
async def test_event_matches_are_capped(store_path, monkeypatch):
    monkeypatch.setattr(api, "MAX_EVENT_MATCHES", 2)
    async with client_for(store_path) as client:
        body = await get_json(client, "/v1/event", id="ev-1")
    assert len(body["entries"]) == 2 and body["truncated"] is True


def test_event_lookup_seeks_the_event_index(store_path):
    with BlockStore.open(store_path, readonly=True) as db:
        assert db.find_event("ev-1", limit=2) == [(ORIGIN, 0), (ORIGIN, 3)]
        traced: list[str] = []
        db._db._conn.set_trace_callback(traced.append)  # type: ignore[attr-defined]
        db.find_event("ev-1", limit=2)
    (sql,) = traced
    plan = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True).execute(
        f"EXPLAIN QUERY PLAN {sql}"
    )
    assert any("entries_by_event_chunk" in row[3] for row in plan)


# --- proofs -----------------------------------------------------------------------------------


@async_test
async def test_inclusion_proofs_verify_and_match_the_cli(store_path):
    async with client_for(store_path) as client:
        latest = await client.get("/v1/proof/inclusion", params={"log": ORIGIN, "index": "4"})
        assert latest.headers["Cache-Control"] == "no-cache"
        assert await latest.json() == cli_json(
            store_path, "log", "proof", "inclusion", "--log", ORIGIN, "--index", "4"
        )
        for size in range(1, 11):
            for index in range(size):
                response = await client.get(
                    "/v1/proof/inclusion",
                    params={"log": ORIGIN, "index": str(index), "size": str(size)},
                )
                assert response.headers["Cache-Control"] == api.IMMUTABLE
                p = await response.json()
                assert (p["log"], p["index"], p["size"]) == (ORIGIN, index, size)
                merkle.verify_inclusion(
                    bytes.fromhex(p["leaf_hash"]),
                    index,
                    size,
                    [bytes.fromhex(h) for h in p["proof"]],
                    bytes.fromhex(p["root"]),
                )


@async_test
async def test_consistency_proofs_verify_and_match_the_cli(store_path):
    async with client_for(store_path) as client:
        latest = await client.get("/v1/proof/consistency", params={"log": ORIGIN, "old": "3"})
        assert latest.headers["Cache-Control"] == "no-cache"
        assert await latest.json() == cli_json(
            store_path, "log", "proof", "consistency", "--log", ORIGIN, "--old", "3"
        )
        for new in range(1, 12):
            for old in range(1, new + 1):
                response = await client.get(
                    "/v1/proof/consistency",
                    params={"log": ORIGIN, "old": str(old), "new": str(new)},
                )
                assert response.headers["Cache-Control"] == api.IMMUTABLE
                p = await response.json()
                assert (p["old_size"], p["new_size"]) == (old, new)
                merkle.verify_consistency(
                    old,
                    new,
                    [bytes.fromhex(h) for h in p["proof"]],
                    bytes.fromhex(p["old_root"]),
                    bytes.fromhex(p["new_root"]),
                )
        checkpoint = open_checkpoint(
            await (await client.get("/v1/checkpoint", params={"log": ORIGIN})).text(),
            [SIGNER.verifier],
        )
        assert p["new_root"] == checkpoint.root.hex()


@async_test
async def test_proof_errors_name_the_parameter(store_path):
    async with client_for(store_path) as client:
        cases = [
            ("/v1/proof/inclusion", {"log": ORIGIN}, "index: "),
            ("/v1/proof/inclusion", {"log": ORIGIN, "index": 11}, f"{ORIGIN}: index 11"),
            ("/v1/proof/inclusion", {"log": ORIGIN, "index": 0, "size": 12}, f"{ORIGIN}: size 12"),
            ("/v1/proof/inclusion", {"log": ORIGIN, "index": 0, "size": "x"}, "size: "),
            ("/v1/proof/consistency", {"log": ORIGIN}, "old: "),
            ("/v1/proof/consistency", {"log": ORIGIN, "old": 0}, f"{ORIGIN}: consistency"),
            ("/v1/proof/consistency", {"log": ORIGIN, "old": 5, "new": 4}, f"{ORIGIN}: consis"),
            ("/v1/proof/consistency", {"log": ORIGIN, "old": 1, "new": 12}, f"{ORIGIN}: size"),
        ]
        for route, params, start in cases:
            response = await client.get(route, params={k: str(v) for k, v in params.items()})
            body = await response.json()
            assert response.status == 400, (route, params, body)
            assert response.headers["Cache-Control"] == "no-cache"
            assert body["error"].startswith(start), body


# --- errors, health, metrics ------------------------------------------------------------------


@async_test
async def test_an_unknown_or_missing_log_is_named_on_every_route(store_path):
    routes = [
        ("/v1/checkpoint", {}),
        ("/v1/checkpoint.json", {}),
        ("/v1/blocks", {}),
        ("/v1/block", {"number": "0"}),
        ("/v1/entries", {}),
        ("/v1/entry", {"index": "0"}),
        ("/v1/event", {"id": "ev-1"}),
        ("/v1/proof/inclusion", {"index": "0"}),
        ("/v1/proof/consistency", {"old": "1"}),
    ]
    async with client_for(store_path) as client:
        for route, params in routes:
            body = await get_json(client, route, 404, log="nope/0", **params)
            assert body["error"] == "no log 'nope/0'"  # and no server path in it
            if route != "/v1/event":
                body = await get_json(client, route, 400, **params)
                assert body["error"] == "log: required query parameter is missing"


@async_test
async def test_unknown_routes_and_methods_answer_json(store_path):
    async with client_for(store_path) as client:
        body = await get_json(client, "/v1/nothing", 404)
        assert body["error"] == "no such route: GET /v1/nothing"
        response = await client.post("/v1/logs")
        assert response.status == 405 and response.headers["Allow"] == "GET,HEAD"
        assert (await response.json())["error"] == "method not allowed: POST /v1/logs"


@async_test
async def test_a_damaged_store_is_a_500_not_a_crash(tmp_path):
    path = tmp_path / "store.db"
    build_store(path)
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER nodes_no_delete")
    db.execute("DELETE FROM nodes WHERE level = 0 AND idx = 2")
    db.commit()
    db.close()
    async with client_for(path) as client:
        body = await get_json(client, "/v1/proof/inclusion", 500, log=ORIGIN, index=2)
        assert body["error"] == "store error: tree node (0, 2) is missing"
        assert (await get_json(client, "/healthz"))["status"] == "ok"


@async_test
async def test_a_store_gone_after_start_up_is_a_503(tmp_path):
    path = tmp_path / "store.db"
    build_store(path)
    async with client_for(path) as client:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        body = await get_json(client, "/v1/logs", 503)
        assert body == {"error": "the store cannot be read; retry later"}
        body = await get_json(client, "/healthz", 503)
        assert body["status"] == "unavailable" and str(tmp_path) not in body["error"]


@async_test
async def test_healthz_and_metrics(store_path):
    async with client_for(store_path) as client:
        assert await get_json(client, "/healthz") == {"status": "ok", "logs": 2}
        await get_json(client, "/v1/block", 404, log=ORIGIN, number=99)
        await get_json(client, "/v1/nothing", 404)
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
        assert client.app is not None and client.app[api.API].metrics.registry
    assert 'auditseal_api_requests_total{route="/healthz",status="200"} 1.0' in text
    assert 'auditseal_api_requests_total{route="/v1/block",status="404"} 1.0' in text
    assert 'auditseal_api_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'auditseal_api_request_seconds_count{route="/healthz"} 1.0' in text


@async_test
async def test_fifty_parallel_requests_all_succeed(store_path):
    paths = [
        ("/v1/logs", {}),
        ("/v1/checkpoint.json", {"log": ORIGIN}),
        ("/v1/blocks", {"log": ORIGIN}),
        ("/v1/block", {"log": ORIGIN, "number": "1", "entries": "true"}),
        ("/v1/entry", {"log": ORIGIN, "index": "7"}),
        ("/v1/event", {"id": "ev-1"}),
        ("/v1/proof/inclusion", {"log": ORIGIN, "index": "3", "size": "9"}),
        ("/v1/proof/consistency", {"log": ORIGIN, "old": "2", "new": "10"}),
    ]
    async with client_for(store_path) as client:

        async def one(i: int) -> tuple[int, Any]:
            route, params = paths[i % len(paths)]
            response = await client.get(route, params=params)
            return response.status, await response.json()

        results = await asyncio.gather(*(one(i) for i in range(50)))
        again = await asyncio.gather(*(one(i) for i in range(len(paths))))
    assert [status for status, _ in results] == [200] * 50
    assert [body for _, body in results[: len(paths)]] == [body for _, body in again]


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_without_a_store_exits_2_with_one_line(tmp_path):
    out = run_cli("serve", "--store", "missing.db", "--no-auth", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "missing.db: no block store here" in out.stderr
    (tmp_path / "junk.db").write_bytes(b"not sqlite" * 100)
    out = run_cli("serve", "--store", "junk.db", "--no-auth", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "not a block store" in out.stderr
    out = run_cli("serve", "--store", "junk.db", "--listen", "8090", cwd=tmp_path)
    assert out.returncode == 2 and "--listen" in out.stderr


def test_serve_runs_the_api(store_path, tmp_path):
    tokens = tmp_path / "tokens"
    token = add_token(tokens, "reader")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", "serve"],
        cwd=tmp_path,
        env={
            **os.environ,
            "AUDITSEAL_STORE": str(store_path),
            "AUDITSEAL_API_LISTEN": f"127.0.0.1:{port}",
            "AUDITSEAL_API_TOKENS": str(tokens),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.load(r) == {"status": "ok", "logs": 2}
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/logs", headers={"Authorization": f"Bearer {token}"}
                )
                with urllib.request.urlopen(request, timeout=2) as r:
                    assert len(json.load(r)) == 2
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "auditseal serve did not answer in 30 s"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_command_default_matches_the_app():
    assert serve.DEFAULT_ENTRY_MAX_AGE_S == api.DEFAULT_ENTRY_MAX_AGE_S
    assert HostPort().convert("[::1]:8090", None, None) == ("::1", 8090)
