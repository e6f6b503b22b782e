"""``auditseal dashboard``: a live, read-only web page over the sealed stream (docs/DASHBOARD.md).

A background thread tails ``audit.sealed``, ``audit.anchors`` and ``audit.alerts`` with
confluent-kafka (no consumer group: it assigns partitions itself, from the last few records,
and never commits) and hands each value to the event loop, where
:class:`~auditseal.dashboard.feed.Feed` turns it into updates pushed to every browser over
server-sent events. What the streams say is shown as they say it; a block is only *proven*
by its verification report, which :class:`auditseal.verifier.verify.Verifier` computes from the
block store (opened read-only) with the pinned keys and contract, exactly as ``auditseal verify``.

Routes: ``/`` the page, ``/static/*`` its files, ``/healthz`` (open to all, like the page, which
holds no data); behind a reader's credentials: ``/api/state`` the current snapshot,
``/api/events`` the SSE stream (a ``snapshot`` event, then ``block``, ``anchor``, ``alert``,
``activity`` and ``status`` events), ``/api/block?log=O&number=N`` a block with its entries and
verification report, ``/api/event?id=ID`` an event's inclusion proof and anchor,
``/api/session`` who the request reads as. ``POST /api/login`` takes a read token and answers
with it as an HttpOnly, SameSite=Strict cookie (the page's way in: a browser cannot put a
bearer token on an EventSource), ``POST /api/logout`` clears it.

Every request is first checked against the Host allow-list (421), then for a reader: a read
token (``Authorization: Bearer`` or the cookie, re-checked against the tokens file on every
request, so revoking or expiring it ends the session) or a client certificate
(:mod:`auditseal.transport.readers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import click
import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from auditseal.cli.options import (
    alerts_topic_option,
    anchors_topic_option,
    bootstrap_option,
    contract_pin_options,
    kafka_config_option,
    listen_option,
    log_key_option,
    read_access_options,
    read_token_options,
    resolve_contract_pin,
    rpc_option,
    sealed_topic_option,
    server_tls_options,
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
from auditseal.transport.hosts import host_check
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.readers import READER, ReadAccess, bearer_token, read_auth
from auditseal.transport.tls import ServerTLS
from auditseal.verifier import merkle
from auditseal.verifier.checkpoint import open_checkpoint
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.rotation import KeyHistory, KeySet, history_of, is_rotation_value
from auditseal.verifier.verify import Verifier

__all__ = ["COOKIE", "DashboardConfig", "dashboard", "make_app"]

log = logging.getLogger("auditseal.dashboard")
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
DEFAULT_PORT = 8088
MAX_BLOCK_ENTRIES = 500  # entries listed with a block's report
MAX_EVENT_MATCHES = 20
CLIENT_QUEUE = 1000  # updates buffered per browser before it is dropped (it reconnects)
KEEPALIVE_S = 15.0
READER_CHECK_S = 1.0  # how often a live stream checks that its reader may still read
_TICK = Update("tick", {})  # no update for READER_CHECK_S
ACTIVITY_TICK_S = 15.0
HEAD_POLL_S = 3.0
COOKIE = "auditseal_dashboard"
"""The page's read token, HttpOnly (the page's script never sees it) and SameSite=Strict
(another site's page cannot make the browser send it)."""
MAX_LOGIN_BYTES = 4096
MAX_NUMBER = 2**63 - 1  # the store's integers are signed 64-bit
DEFAULT_TOKENS = Path(".auditseal") / "dashboard" / "tokens"
ENV_PREFIX = "AUDITSEAL_DASHBOARD"
OPEN_PATHS = ("/", "/favicon.ico", "/healthz", "/api/login", "/api/logout")
"""With the files under /static/: served without credentials, none of them holds data."""
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
    # librdkafka security properties (--kafka-config) of the topics' consumer
    kafka_config: Mapping[str, str] = field(default_factory=dict)


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
        kafka_config: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name="dashboard-kafka", daemon=True)
        self.bootstrap = bootstrap
        self.kafka_config = dict(kafka_config or {})
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
                **self.kafka_config,
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


def _param(request: web.Request, name: str) -> str | None:
    """The one non-empty value of query parameter ``name``, else None (see _missing)."""
    values = request.query.getall(name, [])
    return values[0] if len(values) == 1 and values[0] else None


def _missing(request: web.Request, *names: str) -> str:
    """The 400 message for the first of ``names`` that _param found missing or repeated."""
    for name in names:
        count = len(request.query.getall(name, []))
        if count > 1:
            return f"{name}: given {count} times, want it once"
        if _param(request, name) is None:
            return f"{name}: required query parameter is missing"
    raise AssertionError("no parameter is missing")


def _block_number(text: str) -> int | str:
    """A block number, or the 400 message saying what is wrong with ``text``."""
    if not text.isascii() or not text.isdigit():
        return f"number: want a block number, got {text[:40]!r}"
    if len(text) > 19 or int(text) > MAX_NUMBER:
        return f"number: a {len(text)}-digit number is out of range [0, {MAX_NUMBER}]"
    return int(text)


def _token_of(request: web.Request) -> str | None:
    """A bearer token (scripts), else the page's cookie."""
    return bearer_token(request) or request.cookies.get(COOKIE) or None


def _same_origin(request: web.Request) -> bool:
    """A state-changing request (login, logout) came from this server's own page: its Origin,
    when the browser sends one, names the host the request was sent to."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc.lower() == request.host.lower()


# --- the application ---------------------------------------------------------------------------


class Dashboard:
    """The feed, the browsers connected to it, and the request handlers."""

    def __init__(
        self, config: DashboardConfig, access: ReadAccess, secure_cookie: bool = False
    ) -> None:
        self.config = config
        self.access = access
        self.secure_cookie = secure_cookie
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
            c.kafka_config,
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
        # The stream outlives the request's check: the reader is checked again every second,
        # so a revoked or expired token ends it (the page then asks for a new one).
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        token = _token_of(request)
        checked = written = time.monotonic()
        try:
            await response.write(_sse("snapshot", self.snapshot()))
            while queue in self._clients:
                try:
                    update = await asyncio.wait_for(queue.get(), READER_CHECK_S)
                except TimeoutError:
                    update = _TICK
                if update is None:  # the server is stopping
                    break
                now = time.monotonic()
                if now - checked >= READER_CHECK_S:
                    if self.access.reader(peercert, token) is None:
                        break
                    checked = now
                if update is _TICK:
                    if now - written >= KEEPALIVE_S:
                        await response.write(b": keep-alive\n\n")
                        written = now
                    continue
                await response.write(_sse(update.kind, update.data))
                written = now
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return response

    async def block(self, request: web.Request) -> web.Response:
        origin = _param(request, "log")
        number_text = _param(request, "number")
        if origin is None or number_text is None:
            return _json({"error": _missing(request, "log", "number")}, 400)
        number = _block_number(number_text)
        if isinstance(number, str):
            return _json({"error": number}, 400)
        return await self._answer(lambda db: self._block_report(db, origin, number))

    async def event(self, request: web.Request) -> web.Response:
        event_id = _param(request, "id")
        if event_id is None:
            return _json({"error": _missing(request, "id")}, 400)
        return await self._answer(lambda db: self._event_proofs(db, event_id))

    async def _answer(self, fn: Callable[[BlockStore], dict[str, Any]]) -> web.Response:
        scrub = self.stores.scrub  # no answer names the store's path or URL
        try:
            return _json(await self.stores.run(fn))
        except NotFoundError as exc:
            return _json({"error": scrub(str(exc))}, 404)
        except InputError as exc:
            return _json({"error": scrub(str(exc))}, 400)
        except StoreUnavailable as exc:
            log.warning("dashboard: cannot read the store: %s", exc)
            return _json({"error": "the store cannot be read yet; retry later"}, 503)
        except (StoreError, VerifierError) as exc:
            log.error("dashboard: the store holds something malformed: %s", exc)
            return _json({"error": f"store error: {scrub(str(exc))}"}, 500)

    # --- the page's session ------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.Response:
        return _json({"reader": request[READER]})

    async def login(self, request: web.Request) -> web.Response:
        """A read token (JSON ``{"token": ...}``) for the cookie the page then reads with."""
        if not _same_origin(request):
            return _json({"error": "login: refused from another site's page"}, 403)
        if request.content_length is None or request.content_length > MAX_LOGIN_BYTES:
            return _json(
                {
                    "error": f'login: want a JSON body {{"token": ...}} (at most '
                    f"{MAX_LOGIN_BYTES} bytes)"
                },
                400,
            )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return _json({"error": 'login: want a JSON body {"token": ...}'}, 400)
        token = token.strip()
        reader = self.access.reader(None, token)
        if reader is None or not reader.startswith("token:"):
            return _json({"error": "login: an unknown, expired or revoked read token"}, 401)
        log.info("dashboard: %s logged in", reader)
        response = _json({"reader": reader})
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie,
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return _json({"error": "logout: refused from another site's page"}, 403)
        response = _json({"reader": None})
        response.del_cookie(COOKIE, path="/")
        return response

    async def healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

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
            check = self._check_inclusion(
                stored.checkpoint,
                leaf,
                index,
                size,
                proof.proof,
                _key_history(db, origin, self.keys),
            )
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
        self,
        note: str,
        leaf: bytes,
        index: int,
        size: int,
        proof: list[bytes],
        history: KeyHistory,
    ) -> dict[str, Any]:
        """The proof checked here against the checkpoint opened with the pinned keys (or the
        keys the log's rotation records lead to from them, valid at its size)."""
        if not self.keys:
            return {"status": "skipped", "detail": "no pinned log key (--log-key)"}
        try:
            checkpoint = open_checkpoint(note, history.trusted_keys())
            if not history.trivial:
                history.check_signers(note, checkpoint)
            if checkpoint.size != size:
                return {"status": "failed", "detail": f"checkpoint size {checkpoint.size}"}
            merkle.verify_inclusion(leaf, index, size, proof, checkpoint.root)
        except VerifierError as exc:
            return {"status": "failed", "detail": str(exc)}
        return {
            "status": "ok",
            "detail": f"leaf {index} is in the signed tree of size {size}",
        }


def _key_history(db: BlockStore, origin: str, keys: list[NoteVerifier]) -> KeyHistory:
    """The pinned keys and the log's rotation records (a bad record is left out: the block's
    verification report names it)."""
    records = [(e.position, e) for e in db.log_records(origin) if is_rotation_value(e.value)]
    return history_of(KeySet.of(keys), origin, records)[0]


def _sse(kind: str, data: object) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors as JSON; a client's request never gets a 500 or puts a traceback in the log."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # A path the static files refuse (outside the folder) is simply not there.
        status = 404 if exc.status == 403 else exc.status
        what = {404: "no such page", 405: "method not allowed"}.get(status, exc.reason)
        response = _json({"error": f"{what}: {request.method} {request.path[:200]}"}, status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("dashboard: %s %s failed", request.method, request.path[:200])
        return _json({"error": "internal error"}, 500)


async def _no_content() -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def make_app(
    config: DashboardConfig,
    *,
    access: ReadAccess,
    hosts: frozenset[str] | None,
    secure_cookie: bool = False,
) -> web.Application:
    """The aiohttp application; the Kafka thread starts with the app and stops with it.

    Only readers ``access`` lets in get data (the page and its files are open: they hold
    none); only requests whose Host is in ``hosts`` are answered (None: no Host check, for a
    server embedded behind one that checks). ``secure_cookie``: the session cookie is sent
    over HTTPS only (the server speaks TLS).
    """
    d = Dashboard(config, access, secure_cookie)
    # host_check's Callable type is the Middleware protocol's, but for its parameter names.
    guards = [cast(Middleware, host_check(hosts))] if hosts is not None else []
    auth = read_auth(access, OPEN_PATHS, ("/static/",), _token_of)
    app = web.Application(middlewares=[_headers, *guards, auth, _errors])
    app["dashboard"] = d
    app.on_startup.append(d.start)
    app.on_shutdown.append(d.stop)
    app.router.add_get("/", d.index)
    app.router.add_get("/favicon.ico", lambda _r: _no_content())
    app.router.add_get("/healthz", d.healthz)
    app.router.add_get("/api/state", d.state)
    app.router.add_get("/api/events", d.events)
    app.router.add_get("/api/block", d.block)
    app.router.add_get("/api/event", d.event)
    app.router.add_get("/api/session", d.session)
    app.router.add_post("/api/login", d.login)
    app.router.add_post("/api/logout", d.logout)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


# --- the command -------------------------------------------------------------------------------


@click.group("dashboard", invoke_without_command=True, subcommand_metavar="[token --name NAME]")
@listen_option(f"127.0.0.1:{DEFAULT_PORT}", "AUDITSEAL_DASHBOARD_LISTEN")
@click.option("--host", hidden=True, envvar="AUDITSEAL_DASHBOARD_HOST")
@click.option(
    "--port", type=click.IntRange(0, 65535), hidden=True, envvar="AUDITSEAL_DASHBOARD_PORT"
)
@server_tls_options("the dashboard")
@read_access_options("the dashboard", "dashboard", DEFAULT_TOKENS, ENV_PREFIX)
@bootstrap_option("The sealed, anchors and alerts topics are read from it.")
@kafka_config_option()
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
@click.pass_context
def dashboard(
    ctx: click.Context,
    listen: tuple[str, int],
    host: str | None,
    port: int | None,
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    tokens_path: Path | None,
    reader_certs: tuple[str, ...],
    no_auth: bool,
    allowed_host: tuple[str, ...],
    bootstrap: str | None,
    kafka_settings: KafkaSettings,
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
    `auditseal dashboard token --name NAME` makes a read token for it.

    Read-only: it consumes the topics without a consumer group and opens the store read-only.
    Click a block for its verification report, search an event id for its inclusion proof.

    \b
    The page shows event values, so readers authenticate, by one of:
      a read token     `auditseal dashboard token`: open the page at URL/#token=TOKEN, or
                       paste it into the page's login form (it becomes an HttpOnly cookie);
                       scripts send Authorization: Bearer TOKEN
      a client cert    with --tls-client-ca: any certificate it signed, or --reader-cert names
      nothing          --no-auth, only on a loopback address (said loudly at start)
    Requests whose Host is not the listen address, localhost or an --allowed-host get 421.
    A non-loopback address needs --tls-cert/--tls-key (or --insecure-plaintext behind a proxy
    that terminates TLS).
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditseal.infra.errors import InfraError
    from auditseal.infra.state import endpoints, load
    from auditseal.transport.listen import serve_app, url
    from auditseal.transport.readers import SETUP_ERRORS, read_server

    if host is not None or port is not None:  # the old spellings, kept hidden for one release
        warn_alias("--host/--port", "--listen HOST:PORT")
        listen = (host or listen[0], listen[1] if port is None else port)
    try:
        server = read_server(
            listen,
            tls,
            insecure_plaintext,
            what="the dashboard",
            tokens_path=tokens_path or DEFAULT_TOKENS,
            tokens_given=tokens_path is not None,
            reader_certs=reader_certs,
            no_auth=no_auth,
            allowed_host=allowed_host,
            token_command="dashboard",
        )
    except SETUP_ERRORS as exc:
        fail(str(exc), 2)

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
            kafka_config=kafka_settings.confluent(),
        )
        app = make_app(
            config, access=server.access, hosts=server.hosts, secure_cookie=tls is not None
        )
    except VerifierError as exc:
        fail(f"--log-key: {exc}", 2)
    if not may_exist(store):
        click.echo(
            f"auditseal: warning: {store}: no block store yet; reports wait for it", err=True
        )
    for note in server.notes:
        click.echo(f"auditseal dashboard: {note}", err=True)
    click.echo(f"dashboard on {url(listen, tls)}/ (broker {config.bootstrap})", err=True)
    serve_app(app, listen, tls, shutdown_timeout=2.0)


@dashboard.command("token")
@read_token_options("the dashboard", DEFAULT_TOKENS, ENV_PREFIX)
def token(name: str, expires: datetime | None, tokens_path: Path | None) -> None:
    """Create a read token for NAME: prints it once, keeps only its hash in --tokens.

    A running dashboard picks it up within a second; delete its line to revoke it (the
    page's session ends with it). Open the page at http://HOST:PORT/#token=TOKEN, or paste
    the token into its login form.
    """
    from auditseal.transport.tokens import TokenFileError, add_token

    path = tokens_path or DEFAULT_TOKENS
    try:
        click.echo(add_token(path, name, prefix="asd_", expires=expires))
    except TokenFileError as exc:
        fail(f"--name {exc}", 2)
    except OSError as exc:
        fail(f"{path}: cannot add the token: {exc.strerror or exc}", 2)
    until = f", until {expires.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if expires else ""
    click.echo(f"dashboard read token for {name}{until}; its hash is in {path}", err=True)
