"""``auditseal dashboard``: a live, read-only web page over the sealed stream (docs/DASHBOARD.md).

A background thread tails ``audit.sealed``, ``audit.anchors`` and ``audit.alerts`` with
confluent-kafka (no consumer group: it assigns partitions itself, from the last few records,
and never commits) and hands each value to the event loop, where
:class:`~auditseal.dashboard.feed.Feed` turns it into updates pushed to every browser over
server-sent events. What the streams say is shown as they say it; a block is only *proven*
by its verification report, which :class:`auditseal.verifier.verify.Verifier` computes from the
block store (opened read-only) with the pinned keys and contract, exactly as ``auditseal verify``.

Routes (GET only): ``/`` the page, ``/static/*`` its files, ``/api/state`` the current
snapshot, ``/api/events`` the SSE stream (a ``snapshot`` event, then ``block``, ``anchor``,
``alert``, ``activity`` and ``status`` events), ``/api/block?log=O&number=N`` a block with its
entries and verification report, ``/api/event?id=ID`` an event's inclusion proof and anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from aiohttp import web

from auditseal.cli.options import (
    alerts_topic_option,
    anchors_topic_option,
    bootstrap_option,
    contract_pin_options,
    listen_option,
    log_key_option,
    resolve_contract_pin,
    rpc_option,
    sealed_topic_option,
    store_option,
)
from auditseal.cli.output import fail, warn_alias
from auditseal.dashboard.feed import Feed, Update
from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location, may_exist
from auditseal.store.errors import InputError, NotFoundError, StoreError
from auditseal.store.evidence import block_material, covering_receipt
from auditseal.store.read_pool import ReadOnlyStores, StoreUnavailable
from auditseal.store.views import block_json, entry_json
from auditseal.verifier import merkle
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.verify import Verifier

__all__ = ["DashboardConfig", "dashboard", "make_app"]

log = logging.getLogger("auditseal.dashboard")
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8088
MAX_BLOCK_ENTRIES = 500  # entries listed with a block's report
MAX_EVENT_MATCHES = 20
CLIENT_QUEUE = 1000  # updates buffered per browser before it is dropped (it reconnects)
KEEPALIVE_S = 15.0
ACTIVITY_TICK_S = 15.0
HEAD_POLL_S = 3.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard reads from, and what it trusts when it verifies."""

    bootstrap: str
    store: Location
    sealed_topic: str = "audit.sealed"
    anchors_topic: str = "audit.anchors"
    alerts_topic: str = "audit.alerts"
    history: int = 50
    rpc: str | None = None
    contract: str | None = None
    chain_id: int | None = None
    log_keys: tuple[str, ...] = ()


# --- Kafka: a thread tailing the three topics --------------------------------------------------


class KafkaTail(threading.Thread):
    """Reads the last records of each topic, then follows it; ``deliver(role, value)`` for each.

    Partitions are assigned by hand (``incremental_assign``) from ``high - tail`` on, and the
    topics' metadata is re-read every few seconds, so a topic created after start (or a new
    partition) is picked up. ``deliver("broker", error or None)`` reports the broker's state.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: dict[str, tuple[str, int]],
        deliver: Callable[[str, bytes | None], None],
    ) -> None:
        super().__init__(name="dashboard-kafka", daemon=True)
        self.bootstrap = bootstrap
        self.topics = topics  # role -> (topic, records to read back)
        self.deliver = deliver
        self.stopping = threading.Event()
        self._assigned: set[tuple[str, int]] = set()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"auditseal-dashboard-{uuid.uuid4().hex[:8]}",  # never joined
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "socket.timeout.ms": 10_000,
            }
        )
        role_of = {topic: role for role, (topic, _) in self.topics.items()}
        next_check = 0.0
        broker_error: str | None = "connecting"
        try:
            while not self.stopping.is_set():
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 5.0
                    try:
                        self._assign_new(consumer)
                        error = None
                    except KafkaException as exc:
                        error = f"broker {self.bootstrap}: {exc.args[0]}"
                    if error != broker_error:
                        broker_error = error
                        self.deliver("broker", None if error is None else error.encode())
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error() is not None:
                    log.debug("kafka: %s", msg.error())
                    continue
                role = role_of.get(msg.topic() or "")
                if role is not None:
                    self.deliver(role, msg.value())
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _assign_new(self, consumer: Any) -> None:
        from confluent_kafka import TopicPartition

        new: list[Any] = []
        for topic, tail in self.topics.values():
            meta = consumer.list_topics(topic, timeout=5.0).topics.get(topic)
            if meta is None or meta.error is not None:
                continue  # not created yet
            for partition in meta.partitions:
                if (topic, partition) in self._assigned:
                    continue
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=5.0
                )
                new.append(TopicPartition(topic, partition, max(low, high - tail)))
                self._assigned.add((topic, partition))
        if new:
            consumer.incremental_assign(new)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# --- the application ---------------------------------------------------------------------------


class Dashboard:
    """The feed, the browsers connected to it, and the request handlers."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.feed = Feed(history=config.history)
        self.broker_error: str | None = "connecting"
        self.stores = ReadOnlyStores(config.store)
        self._clients: set[asyncio.Queue[Update | None]] = set()
        self._inbox: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._tail: KafkaTail | None = None
        self.keys = [NoteVerifier.from_string(k) for k in config.log_keys]

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, _app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        c = self.config

        def deliver(role: str, value: bytes | None) -> None:
            loop.call_soon_threadsafe(self._inbox.put_nowait, (role, value))

        self._tail = KafkaTail(
            c.bootstrap,
            {
                "sealed": (c.sealed_topic, 4 * c.history),
                "anchors": (c.anchors_topic, 2000),
                "alerts": (c.alerts_topic, self.feed.max_alerts),
            },
            deliver,
        )
        self._tail.start()
        self._tasks = [
            asyncio.create_task(self._consume()),
            asyncio.create_task(self._tick()),
        ]
        if c.rpc:
            self._tasks.append(asyncio.create_task(self._poll_head(c.rpc)))

    async def stop(self, _app: web.Application) -> None:
        for q in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        if self._tail is not None:
            self._tail.stop()
            await asyncio.get_running_loop().run_in_executor(None, self._tail.join, 5.0)

    def status(self) -> dict[str, Any]:
        return {**self.feed.status(), "broker": self.broker_error or "connected"}

    def snapshot(self) -> dict[str, Any]:
        return {**self.feed.snapshot(), "status": self.status()}

    def broadcast(self, updates: list[Update]) -> None:
        for update in updates:
            if update.kind == "status":
                update = Update("status", self.status())
            for q in list(self._clients):
                try:
                    q.put_nowait(update)
                except asyncio.QueueFull:  # a stalled browser: drop it, it reconnects
                    self._clients.discard(q)

    async def _consume(self) -> None:
        handlers = {
            "sealed": self.feed.on_sealed,
            "anchors": self.feed.on_anchor,
            "alerts": self.feed.on_alert,
        }
        while True:
            role, value = await self._inbox.get()
            if role == "broker":
                self.broker_error = None if value is None else value.decode()
                self.broadcast([self.feed.status_update()])
                continue
            try:
                self.broadcast(handlers[role](value))
            except Exception:  # one bad record must not stop the page
                log.exception("dashboard: %s record not shown", role)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(ACTIVITY_TICK_S)
            self.broadcast([self.feed.activity_update()])

    async def _poll_head(self, rpc: str) -> None:
        from web3 import HTTPProvider, Web3

        from auditseal.verifier.urls import scrub

        w3 = Web3(HTTPProvider(rpc, request_kwargs={"timeout": 5}))
        loop = asyncio.get_running_loop()
        while True:
            try:
                head: int | None = int(
                    await loop.run_in_executor(None, lambda: w3.eth.block_number)
                )
            except Exception as exc:  # the chain is down: confirmations become unknown
                log.debug("chain head: %s", scrub(str(exc), rpc))  # no API key in logs
                head = None
            self.broadcast(self.feed.set_chain_head(head))
            await asyncio.sleep(HEAD_POLL_S)

    # --- handlers ----------------------------------------------------------------------------

    async def index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def state(self, _request: web.Request) -> web.Response:
        return _json(self.snapshot())

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[Update | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        try:
            await response.write(_sse("snapshot", self.snapshot()))
            while queue in self._clients:
                try:
                    update = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if update is None:
                    break
                await response.write(_sse(update.kind, update.data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return response

    async def block(self, request: web.Request) -> web.Response:
        origin = request.query.get("log")
        number_text = request.query.get("number", "")
        if not origin:
            return _json({"error": "log: required query parameter is missing"}, 400)
        if not number_text.isascii() or not number_text.isdigit():
            return _json({"error": f"number: want a block number, got {number_text!r}"}, 400)
        number = int(number_text)
        return await self._answer(lambda db: self._block_report(db, origin, number))

    async def event(self, request: web.Request) -> web.Response:
        event_id = request.query.get("id", "")
        if not event_id:
            return _json({"error": "id: required query parameter is missing"}, 400)
        return await self._answer(lambda db: self._event_proofs(db, event_id))

    async def _answer(self, fn: Callable[[BlockStore], dict[str, Any]]) -> web.Response:
        try:
            return _json(await self.stores.run(fn))
        except NotFoundError as exc:
            return _json({"error": str(exc)}, 404)
        except InputError as exc:
            return _json({"error": str(exc)}, 400)
        except StoreUnavailable as exc:
            return _json({"error": str(exc)}, 503)
        except (StoreError, VerifierError) as exc:
            return _json({"error": f"store error: {exc}"}, 500)

    # --- reading and verifying (executor threads) ----------------------------------------------

    def _block_report(self, db: BlockStore, origin: str, number: int) -> dict[str, Any]:
        c = self.config
        material = block_material(db, origin, number)
        h = material.block.header
        listed = db.annotated_entries(origin, h.start, min(h.end, h.start + MAX_BLOCK_ENTRIES))
        report: dict[str, Any] | None = None
        report_error = None
        if not self.keys:
            report_error = "no pinned log key: start the dashboard with --log-key"
        elif c.rpc and not c.contract:
            report_error = "no pinned contract: give --contract or a deployment record"
        else:
            reader = None
            if c.rpc and c.contract:
                from auditseal.verifier.chain import (
                    Web3AnchorReader,  # web3 only when a chain is asked
                )

                reader = Web3AnchorReader(c.rpc, c.contract)
            verifier = Verifier(self.keys, reader, c.contract, c.chain_id, int(time.time()))
            report = verifier.verify_block(material).to_json()
        receipt = material.receipt
        return {
            "block": block_json(origin, db.block(origin, number), db.gaps(origin, number)),
            "entries": [entry_json(*row) for row in listed],
            "entries_total": h.end - h.start,
            "receipt": None if receipt is None else self._receipt_json(receipt.to_json()),
            "report": report,
            "report_error": report_error,
        }

    def _receipt_json(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "confirmations": self.feed.confirmations(data["block_number"])}

    def _event_proofs(self, db: BlockStore, event_id: str) -> dict[str, Any]:
        found = db.find_event(event_id, None, MAX_EVENT_MATCHES + 1)
        if not found:
            raise NotFoundError(f"no event {event_id!r} in the store")
        matches = []
        for origin, index in found[:MAX_EVENT_MATCHES]:
            idx, entry, eid, flag, number = db.annotated_entries(origin, index, index + 1)[0]
            stored = db.block(origin, number)
            size = stored.header.end
            proof = db.inclusion_proof(origin, index, size)
            leaf = entry.redact().leaf_hash()
            check = self._check_inclusion(stored.checkpoint, leaf, index, size, proof.proof)
            receipt = covering_receipt(db, origin, size)
            matches.append(
                {
                    "log": origin,
                    "index": index,
                    "block": number,
                    "entry": entry_json(idx, entry, eid, flag, number),
                    "checkpoint": stored.checkpoint,
                    "proof": {
                        "size": size,
                        "leaf_hash": leaf.hex(),
                        "root": proof.root.hex(),
                        "hashes": [p.hex() for p in proof.proof],
                    },
                    "check": check,
                    "receipt": None if receipt is None else self._receipt_json(receipt.to_json()),
                }
            )
        return {
            "event_id": event_id,
            "matches": matches,
            "truncated": len(found) > MAX_EVENT_MATCHES,
        }

    def _check_inclusion(
        self, note: str, leaf: bytes, index: int, size: int, proof: list[bytes]
    ) -> dict[str, Any]:
        """The proof checked here against the checkpoint opened with the pinned keys."""
        if not self.keys:
            return {"status": "skipped", "detail": "no pinned log key (--log-key)"}
        try:
            checkpoint = open_checkpoint(note, self.keys)
            if checkpoint.size != size:
                return {"status": "failed", "detail": f"checkpoint size {checkpoint.size}"}
            merkle.verify_inclusion(leaf, index, size, proof, checkpoint.root)
        except VerifierError as exc:
            return {"status": "failed", "detail": str(exc)}
        return {
            "status": "ok",
            "detail": f"leaf {index} is in the signed tree of size {size}",
        }


def _sse(kind: str, data: object) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


async def _no_content() -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def make_app(config: DashboardConfig) -> web.Application:
    """The aiohttp application; the Kafka thread starts with the app and stops with it."""
    d = Dashboard(config)
    app = web.Application(middlewares=[_headers])
    app["dashboard"] = d
    app.on_startup.append(d.start)
    app.on_shutdown.append(d.stop)
    app.router.add_get("/", d.index)
    app.router.add_get("/favicon.ico", lambda _r: _no_content())
    app.router.add_get("/api/state", d.state)
    app.router.add_get("/api/events", d.events)
    app.router.add_get("/api/block", d.block)
    app.router.add_get("/api/event", d.event)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


# --- the command -------------------------------------------------------------------------------


@click.command("dashboard")
@listen_option(
    f"127.0.0.1:{DEFAULT_PORT}",
    "AUDITSEAL_DASHBOARD_LISTEN",
    "Keep loopback: the page shows event values and has no login.",
)
@click.option("--host", hidden=True, envvar="AUDITSEAL_DASHBOARD_HOST")
@click.option(
    "--port", type=click.IntRange(0, 65535), hidden=True, envvar="AUDITSEAL_DASHBOARD_PORT"
)
@bootstrap_option("The sealed, anchors and alerts topics are read from it.")
@store_option("Opened read-only, for verification reports and event proofs.")
@rpc_option(
    "For confirmations and the on-chain check [default: the chain of `auditseal dev up` "
    "while it runs, else none]."
)
@contract_pin_options
@log_key_option("Without one the page shows blocks but no verification report.")
@sealed_topic_option
@anchors_topic_option
@alerts_topic_option()
@click.option(
    "--history",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Blocks kept and shown to a page that connects.",
)
def dashboard(
    listen: tuple[str, int],
    host: str | None,
    port: int | None,
    bootstrap: str | None,
    store: Location,
    rpc: str | None,
    contract: str | None,
    chain_id: int | None,
    deployment: Path,
    log_keys: tuple[str, ...],
    sealed_topic: str,
    anchors_topic: str,
    alerts_topic: str,
    history: int,
) -> None:
    """Serve a live web page of sealed blocks, their anchors, per-source activity and alerts.

    Read-only: it consumes the topics without a consumer group and opens the store read-only.
    Click a block for its verification report, search an event id for its inclusion proof.
    """
    from auditseal.infra.errors import InfraError
    from auditseal.infra.state import endpoints, load

    if host is not None or port is not None:  # the old spellings, kept hidden for one release
        warn_alias("--host/--port", "--listen HOST:PORT")
        listen = (host or listen[0], listen[1] if port is None else port)
    host, port = listen

    dev_rpc = None
    with contextlib.suppress(InfraError):
        state = load()
        dev_rpc = state.rpc_url if state is not None else None
    contract, chain_id = resolve_contract_pin(contract, chain_id, deployment)
    try:
        config = DashboardConfig(
            bootstrap=bootstrap or endpoints()[0],
            store=store,
            sealed_topic=sealed_topic,
            anchors_topic=anchors_topic,
            alerts_topic=alerts_topic,
            history=history,
            rpc=rpc or dev_rpc,
            contract=contract,
            chain_id=chain_id,
            log_keys=log_keys,
        )
        app = make_app(config)
    except VerifierError as exc:
        fail(f"--log-key: {exc}", 2)
    if not may_exist(store):
        click.echo(
            f"auditseal: warning: {store}: no block store yet; reports wait for it", err=True
        )
    click.echo(f"dashboard on http://{host}:{port}/ (broker {config.bootstrap})", err=True)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=2.0)
