"""The read API: a read-only HTTP JSON view of the block store (``auditseal serve``).

Remote verifiers and dashboards use it instead of the database file. Logs are named by their
origin, which contains slashes, so every route takes it as the query parameter ``log``. Binary
fields are lowercase hex; signed checkpoint notes and block headers are returned verbatim as
strings, so a client can check signatures and hashes over the exact bytes.

==========================================================  ==================================
``GET /v1/logs``                                            every log: size, blocks, checkpoint
``GET /v1/checkpoint?log=O``                                latest signed note, ``text/plain``
``GET /v1/checkpoint.json?log=O``                           the same with size and hex root
``GET /v1/blocks?log=O[&from=N][&limit=M]``                 block headers from number N
``GET /v1/block?log=O&number=N[&entries=true]``             one block, optionally its entries
``GET /v1/entries?log=O[&start=I][&limit=M]``               entries from leaf index I
``GET /v1/entry?log=O&index=I`` or ``&position=P``          one entry
``GET /v1/event?id=ID[&log=O][&source_uri=S]``              every entry sealed with event ID
``GET /v1/proof/inclusion?log=O&index=I[&size=N]``          as ``auditseal log proof inclusion``
``GET /v1/proof/consistency?log=O&old=M[&new=N]``           as ``auditseal log proof consistency``
``GET /v1/bundle?[log=O&]block=N`` or ``?event=ID``          a proof bundle, as ``auditseal bundle``
                                                            (with ``&source_uri=S``: of source S)
``GET /healthz``, ``GET /metrics``                          liveness, Prometheus metrics
==========================================================  ==================================

Answers: 200; 400 ``{"error": ...}`` naming the bad or missing parameter; 404 naming the log,
block, entry or event that does not exist; 409 ``{"error", "candidates"}`` for an event id
sealed by more than one source (``source_uri`` or ``log`` narrows it); 503 when the store cannot
be read; 500 only for a store that holds something malformed. Caching (docs/SERVE.md): blocks,
headers and proofs at an explicit size never change and are ``immutable``; entries carry event
values, which redaction may erase, so they are ``private`` with a short ``max-age``; whatever
follows the log's tip (logs, latest checkpoint, proofs to the current size, the last page of
blocks) is ``no-cache``.

SQLite calls block, so they run in the loop's default executor, each thread with its own
read-only connection (sqlite3 connections cannot be shared across threads).
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from auditseal.store.blockstore import BlockStore, StoredBlock
from auditseal.store.database import Location, public_location
from auditseal.store.errors import InputError, NotFoundError, StoreError
from auditseal.store.evidence import store_bundle
from auditseal.store.read_pool import ReadOnlyStores, StoreUnavailable
from auditseal.store.views import block_json, entry_json
from auditseal.verifier.errors import VerifierError
from auditseal.verifier.verify import AmbiguousEventError, event_fields

__all__ = [
    "API",
    "DEFAULT_ENTRY_MAX_AGE_S",
    "MAX_BLOCK_ENTRIES",
    "MAX_PAGE",
    "ReadAPI",
    "make_app",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PAGE = 1000
"""Most blocks or entries in one page (``limit``); the default is 100."""
DEFAULT_PAGE = 100
MAX_BLOCK_ENTRIES = 10_000
"""Most entries ``/v1/block?entries=true`` returns; page larger blocks with ``/v1/entries``."""
MAX_EVENT_MATCHES = 100
"""Most entries ``/v1/event`` returns for one event id (replays); more set ``truncated``."""
DEFAULT_ENTRY_MAX_AGE_S = 60
_MAX_INT = 2**63 - 1  # SQLite's integers are signed 64-bit

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"


class _BadParameter(Exception):
    """A query parameter that is missing or malformed: 400, its name first in the message."""


# --- query parameters ------------------------------------------------------------------------


def _param(request: web.Request, name: str, *, required: bool = True) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _BadParameter(f"{name}: given {len(values)} times, want it once")
    if not values or values[0] == "":
        if required:
            raise _BadParameter(f"{name}: required query parameter is missing")
        return None
    value: str = values[0]
    return value


def _text(request: web.Request, name: str) -> str:
    value = _param(request, name)
    assert value is not None
    return value


def _int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = _MAX_INT,
) -> int:
    text = _param(request, name, required=default is None)
    if text is None:
        assert default is not None
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _BadParameter(f"{name}: want a non-negative decimal integer, got {text[:40]!r}")
    value = int(text)
    if not minimum <= value <= maximum:
        raise _BadParameter(f"{name}: {value} is out of range [{minimum}, {maximum}]")
    return value


def _optional_int(request: web.Request, name: str) -> int | None:
    if _param(request, name, required=False) is None:
        return None
    return _int(request, name)


def _bool(request: web.Request, name: str) -> bool:
    text = _param(request, name, required=False)
    if text is None:
        return False
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise _BadParameter(f"{name}: want true or false, got {text[:40]!r}")


# --- JSON shapes -----------------------------------------------------------------------------


# --- reading the store (these run in executor threads) ----------------------------------------


def _require_log(db: BlockStore, origin: str) -> None:
    if not db.has_log(origin):
        raise NotFoundError(f"no log {origin!r}")


def _logs(db: BlockStore) -> list[dict[str, Any]]:
    out = []
    for origin in db.logs():
        last = db.last_block(origin)
        out.append(
            {
                "log": origin,
                "size": last.header.end if last else 0,
                "blocks": last.header.number + 1 if last else 0,
                "latest_checkpoint": last.checkpoint if last else None,
            }
        )
    return out


def _anchors(db: BlockStore) -> list[dict[str, Any]]:
    """Every recorded anchor with the checkpoint bodies it aggregated (what a verifier needs
    to rebuild each root the chain holds: ``verify --source`` checks ``anchored-state``)."""
    return [
        {
            "seq": a.seq,
            "status": a.status,
            "checkpoints": [r.checkpoint for r in db.anchor_receipts(a.seq)],
        }
        for a in db.anchors()
    ]


def _last_block(db: BlockStore, origin: str) -> StoredBlock:
    _require_log(db, origin)
    last = db.last_block(origin)
    if last is None:
        raise NotFoundError(f"{origin}: no checkpoint yet")
    return last


def _entries(db: BlockStore, origin: str, start: int, end: int) -> list[dict[str, Any]]:
    return [entry_json(*row) for row in db.annotated_entries(origin, start, min(end, _MAX_INT))]


def _entry(db: BlockStore, origin: str, index: int | None, position: int | None) -> Any:
    _require_log(db, origin)
    if index is None:
        assert position is not None
        index = db.index_of_position(origin, position)
    found = _entries(db, origin, index, index + 1)
    if not found:
        raise NotFoundError(f"{origin}: no entry {index} (log size {db.size(origin)})")
    return found[0]


def _block(db: BlockStore, origin: str, number: int, with_entries: bool) -> dict[str, Any]:
    _require_log(db, origin)
    page = db.block_page(origin, number, 1)
    if not page or page[0][0].header.number != number:
        raise NotFoundError(f"{origin}: no block {number}")
    stored, gaps = page[0]
    body = block_json(origin, stored, gaps)
    if with_entries:
        h = stored.header
        if h.size > MAX_BLOCK_ENTRIES:
            raise _BadParameter(
                f"entries: block {number} holds {h.size} entries, more than "
                f"{MAX_BLOCK_ENTRIES}; page them with /v1/entries?start={h.start}"
            )
        body["entries"] = _entries(db, origin, h.start, h.end)
    return body


def _event(
    db: BlockStore, event_id: str, origin: str | None, source: str | None = None
) -> dict[str, Any]:
    if origin is not None:
        _require_log(db, origin)
    found = db.find_event(event_id, origin, MAX_EVENT_MATCHES + 1)
    entries = [_entries(db, o, i, i + 1)[0] for o, i in found[:MAX_EVENT_MATCHES]]
    for entry in entries:  # the source its value states: an id is only unique per source
        entry["source"] = event_fields(bytes.fromhex(entry["value"]) if entry["value"] else None)[1]
    if source is not None:
        entries = [e for e in entries if e["source"] == source]
    if not entries:
        where = f" in {origin!r}" if origin is not None else ""
        of = f" of source {source!r}" if source is not None else ""
        raise NotFoundError(f"no event {event_id!r}{of}{where}")
    return {
        "event_id": event_id,
        "entries": entries,
        "truncated": len(found) > MAX_EVENT_MATCHES,
    }


def _inclusion(db: BlockStore, origin: str, index: int, size: int | None) -> dict[str, Any]:
    _require_log(db, origin)
    p = db.inclusion_proof(origin, index, size)
    return {
        "log": p.origin,
        "index": p.index,
        "size": p.size,
        "leaf_hash": p.leaf_hash.hex(),
        "root": p.root.hex(),
        "proof": [h.hex() for h in p.proof],
    }


def _consistency(db: BlockStore, origin: str, old: int, new: int | None) -> dict[str, Any]:
    _require_log(db, origin)
    p = db.consistency_proof(origin, old, new)
    return {
        "log": p.origin,
        "old_size": p.old_size,
        "new_size": p.new_size,
        "old_root": p.old_root.hex(),
        "new_root": p.new_root.hex(),
        "proof": [h.hex() for h in p.proof],
    }


# --- the application ---------------------------------------------------------------------------


def _json(
    status: int, body: object, cache: str = NO_CACHE, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"Cache-Control": cache, **(headers or {})},
    )


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "auditseal_api_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "auditseal_api_request_seconds",
            "Time to answer a request, by route",
            ["route"],
            registry=self.registry,
        )


class ReadAPI:
    """The routes and middleware of one application, over one store file."""

    def __init__(self, store_path: Location, entry_max_age_s: int) -> None:
        self.store_path = store_path
        self.stores = ReadOnlyStores(store_path)
        self.metrics = _Metrics()
        self.entry_cache = f"private, max-age={entry_max_age_s}"

    def _message(self, exc: Exception) -> str:
        # Store errors name the file; remote clients need not learn the server's paths.
        return str(exc).replace(f"{public_location(self.store_path)}: ", "")

    # --- middleware: errors as JSON, metrics ----------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response: web.StreamResponse = await handler(request)
        except (_BadParameter, InputError) as exc:
            response = _json(400, {"error": self._message(exc)})
        except NotFoundError as exc:
            response = _json(404, {"error": self._message(exc)})
        except AmbiguousEventError as exc:
            body = {"error": str(exc), "candidates": [c.to_json() for c in exc.candidates]}
            response = _json(409, body)
        except StoreUnavailable as exc:
            log.warning("read API: cannot read the store: %s", exc)
            response = _json(503, {"error": "the store cannot be read; retry later"})
        except (StoreError, VerifierError) as exc:
            log.error("read API: the store holds something malformed: %s", exc)
            response = _json(500, {"error": f"store error: {self._message(exc)}"})
        except web.HTTPException as exc:
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            what = {404: "no such route", 405: "method not allowed"}.get(exc.status, exc.reason)
            response = _json(
                exc.status, {"error": f"{what}: {request.method} {request.path}"}, headers=headers
            )
        except Exception:
            log.exception("read API: %s %s failed", request.method, request.path_qs)
            response = _json(500, {"error": "internal error"})
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        self.metrics.requests.labels(route, str(response.status)).inc()
        self.metrics.seconds.labels(route).observe(time.perf_counter() - started)
        return response

    # --- routes ---------------------------------------------------------------------------

    async def logs(self, _request: web.Request) -> web.Response:
        return _json(200, await self.stores.run(_logs))

    async def checkpoint(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        last = await self.stores.run(lambda db: _last_block(db, origin))
        return web.Response(
            text=last.checkpoint,
            content_type="text/plain",
            charset="utf-8",
            headers={"Cache-Control": NO_CACHE},
        )

    async def checkpoint_json(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        last = await self.stores.run(lambda db: _last_block(db, origin))
        body = {
            "log": origin,
            "size": last.header.end,
            "root": last.header.root.hex(),
            "note": last.checkpoint,
        }
        return _json(200, body)

    async def blocks(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        first = _int(request, "from", 0)
        limit = _int(request, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)

        def read(db: BlockStore) -> list[dict[str, Any]]:
            _require_log(db, origin)
            return [block_json(origin, b, g) for b, g in db.block_page(origin, first, limit)]

        page = await self.stores.run(read)
        # A full page never changes; a short one grows as blocks are sealed.
        return _json(200, page, IMMUTABLE if len(page) == limit else NO_CACHE)

    async def block(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        number = _int(request, "number")
        with_entries = _bool(request, "entries")
        body = await self.stores.run(lambda db: _block(db, origin, number, with_entries))
        return _json(200, body, self.entry_cache if with_entries else IMMUTABLE)

    async def entries(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        start = _int(request, "start", 0)
        limit = _int(request, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)

        def read(db: BlockStore) -> list[dict[str, Any]]:
            _require_log(db, origin)
            return _entries(db, origin, start, start + limit)

        return _json(200, await self.stores.run(read), self.entry_cache)

    async def entry(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        index = _optional_int(request, "index")
        position = _optional_int(request, "position")
        if (index is None) == (position is None):
            raise _BadParameter("index or position: give exactly one of them")
        body = await self.stores.run(lambda db: _entry(db, origin, index, position))
        return _json(200, body, self.entry_cache)

    async def event(self, request: web.Request) -> web.Response:
        event_id = _text(request, "id")
        origin = _param(request, "log", required=False)
        source = _param(request, "source_uri", required=False)
        body = await self.stores.run(lambda db: _event(db, event_id, origin, source))
        return _json(200, body, self.entry_cache)

    async def inclusion(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        index = _int(request, "index")
        size = _optional_int(request, "size")
        body = await self.stores.run(lambda db: _inclusion(db, origin, index, size))
        return _json(200, body, NO_CACHE if size is None else IMMUTABLE)

    async def consistency(self, request: web.Request) -> web.Response:
        origin = _text(request, "log")
        old = _int(request, "old")
        new = _optional_int(request, "new")
        body = await self.stores.run(lambda db: _consistency(db, origin, old, new))
        return _json(200, body, NO_CACHE if new is None else IMMUTABLE)

    async def bundle(self, request: web.Request) -> web.Response:
        origin = _param(request, "log", required=False)
        number = _optional_int(request, "block")
        event = _param(request, "event", required=False)
        source = _param(request, "source_uri", required=False)
        if number is None and event is None:
            raise _BadParameter("block or event: give at least one of them")
        if source is not None and event is None:
            raise _BadParameter("source_uri: names the source of an event; give event too")

        def read(db: BlockStore) -> dict[str, Any]:
            return store_bundle(db, origin, number, event, source).to_json()

        # Entries may be redacted and newer anchors cover the block later: short-lived.
        return _json(200, await self.stores.run(read), self.entry_cache)

    async def anchors(self, _request: web.Request) -> web.Response:
        return _json(200, await self.stores.run(_anchors), NO_CACHE)

    async def healthz(self, _request: web.Request) -> web.Response:
        try:
            count = len(await self.stores.run(lambda db: db.logs()))
        except StoreUnavailable as exc:
            return _json(503, {"status": "unavailable", "error": self._message(exc)})
        return _json(200, {"status": "ok", "logs": count})

    async def metrics_route(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": NO_CACHE},
        )


API = web.AppKey("api", ReadAPI)
"""The application's :class:`ReadAPI` (its metrics registry, for tests)."""


def make_app(
    store_path: Location, *, entry_max_age_s: int = DEFAULT_ENTRY_MAX_AGE_S
) -> web.Application:
    """The read API over the store at ``store_path``, opened read-only.

    Raises StoreError at once if there is no block store at ``store_path``.
    """
    BlockStore.open(store_path, readonly=True).close()
    api = ReadAPI(store_path, entry_max_age_s)  # a URL stays a URL (Path() mangled it)
    app = web.Application(middlewares=[api.middleware])
    app.add_routes(
        [
            web.get("/v1/logs", api.logs),
            web.get("/v1/checkpoint", api.checkpoint),
            web.get("/v1/checkpoint.json", api.checkpoint_json),
            web.get("/v1/blocks", api.blocks),
            web.get("/v1/block", api.block),
            web.get("/v1/entries", api.entries),
            web.get("/v1/entry", api.entry),
            web.get("/v1/event", api.event),
            web.get("/v1/proof/inclusion", api.inclusion),
            web.get("/v1/proof/consistency", api.consistency),
            web.get("/v1/bundle", api.bundle),
            web.get("/v1/anchors", api.anchors),
            web.get("/healthz", api.healthz),
            web.get("/metrics", api.metrics_route),
        ]
    )
    app[API] = api
    return app
