"""The HTTP gateway: proxies in any language publish audit events over HTTP.

``POST /v1/events`` takes one event (``application/json``, ``application/cloudevents+json``), a
JSON array (``application/cloudevents-batch+json`` or a JSON array body) or NDJSON
(``application/x-ndjson``). A batch is all or nothing: every event is validated and checked
against the client's sources before any is published, and ``202`` is answered only once Kafka
has acknowledged every one of them (acks=all). Answers:

- 202 ``{"accepted": n, "ids": [...]}``;
- 400 with the first field errors and their count (``[2].data.actor.user: required``); 413 for
  an event over the size limit, a body over the body limit or a batch of too many events; 415
  for an unknown content type; 408 for a body that does not arrive within the body timeout;
- 401 without a valid bearer token or mapped client certificate, 403 for an event whose
  ``source`` is not one the client may publish;
- 429 with ``Retry-After`` once a client sent more events than its rate allows;
- 503 with ``Retry-After`` when Kafka did not acknowledge in time. Some events of the batch may
  have been stored anyway: a retry then publishes them again with the same ``id`` and
  ``sequence``, which the sealer and monitor see as a replay, never as a loss.

A client is a bearer token (it stands for one source, see ``auditseal ingest token``) or, over
mTLS, a client certificate listed in the mapping file (``--client-certs``: it stands for the
sources listed there, see ``auditseal.transport.client_certs``). Both files are re-read when
they change and fail closed.

Adapters, same rules: ``POST /v1/adapters/k8s?cluster=NAME`` (the kube-apiserver audit webhook,
an ``audit.k8s.io/v1`` EventList; the client must be allowed ``k8s://NAME``; judged per item
and answered 200 with the refused items and duplicates, see ``Gateway._k8s_batch``) and
``POST /v1/adapters/teleport[/TAG][?cluster=NAME]`` (one Teleport audit event per request, as
Teleport's event handler sends it: answered 200, which is all the handler counts as delivered;
a resend is recognised and not published twice). The gateway numbers adapter events with its
own persistent per-source ``sequence`` counters.

``GET /healthz`` and ``GET /metrics`` (Prometheus) are open.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from auditseal.ingest.adapters import from_k8s_event_list, k8s_source
from auditseal.ingest.emitter import producer_config
from auditseal.ingest.envelope import (
    KAFKA_HEADERS,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    encode_event,
    parse_batch,
)
from auditseal.ingest.errors import (
    BatchTooLarge,
    EnvelopeError,
    EventTooLarge,
    UnsupportedMediaType,
)
from auditseal.ingest.ratelimit import RateLimiter
from auditseal.ingest.recent import RecentEvents
from auditseal.ingest.sequence import SequenceCounter
from auditseal.ingest.teleport import content_digest, from_teleport
from auditseal.transport.client_certs import CertMapFile
from auditseal.transport.tls import peer_names
from auditseal.transport.tokens import TokenFile

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ERRORS_SHOWN",
    "BrokerUnavailable",
    "GatewayConfig",
    "KafkaSink",
    "make_app",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
"""The largest request body by default (``--max-body-bytes``)."""
MAX_ERRORS_SHOWN = 20
"""A 400 lists this many errors at most (each cut to ``MAX_ERROR_CHARS``), with their count."""
MAX_ERROR_CHARS = 200
TELEPORT_SCHEME: Final = "teleport://"


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway's settings. Limits: ``max_body_bytes`` per request body, ``max_batch_events``
    per body (counted before parsing), ``body_timeout_s`` for a body to arrive whole, and
    ``rate_limit`` events per second per client with a bucket of ``rate_burst`` (``rate_limit``
    0: none; ``rate_burst`` None: two seconds' worth)."""

    bootstrap: str
    tokens_path: Path
    state_dir: Path
    topic: str = "audit.events"
    client_certs_path: Path | None = None
    max_event_bytes: int = MAX_EVENT_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_batch_events: int = MAX_BATCH_EVENTS
    body_timeout_s: float = 30.0
    rate_limit: float = 10_000.0
    rate_burst: float | None = None
    ack_timeout_s: float = 10.0
    retry_after_s: int = 5
    reload_interval_s: float = 1.0
    # librdkafka security properties (--kafka-config), merged into the producer's configuration
    kafka_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_body_bytes < self.max_event_bytes:
            raise ValueError("max_body_bytes must be at least max_event_bytes")
        if self.max_batch_events < 1:
            raise ValueError("max_batch_events must be at least 1")
        if self.ack_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("ack_timeout_s and body_timeout_s must be positive")
        if self.rate_limit < 0 or (self.rate_burst is not None and self.rate_burst < 1):
            raise ValueError("rate_limit must be >= 0 and rate_burst >= 1")

    def limiter(self) -> RateLimiter | None:
        if not self.rate_limit:
            return None
        return RateLimiter(self.rate_limit, self.rate_burst or max(1.0, 2 * self.rate_limit))


class BrokerUnavailable(Exception):
    """Kafka did not acknowledge in time."""


class KafkaSink:
    """An idempotent acks=all producer whose batches can be awaited from asyncio."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        ack_timeout_s: float,
        kafka_config: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.ack_timeout_s = ack_timeout_s
        self._config = producer_config(
            bootstrap, kafka_config, message_timeout_ms=int(ack_timeout_s * 1000)
        )
        self._config["error_cb"] = self._on_error
        self._new_producer = Producer
        self._producer = Producer(self._config)
        self._fenced = False
        self.broker_down_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="gateway-producer", daemon=True)
        self._thread.start()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal():
            self._fenced = True
        down = err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
        if down and self.broker_down_since is None:
            log.warning("Kafka unreachable: %s", err)
            self.broker_down_since = time.monotonic()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            if self._fenced:
                self._replace_producer()

    def _replace_producer(self) -> None:
        """Start over with a new producer id after the old one was fenced or failed fatally.

        A timed-out batch makes librdkafka bump its idempotent epoch (KIP-360); brokers that do
        not support the bump (Tansu 0.6) then answer PRODUCER_FENCED to every later request.
        The events of the failed batches were already answered with 503.
        """
        old = self._producer
        self._producer = self._new_producer(self._config)
        self._fenced = False
        old.purge()
        old.flush(0)
        log.warning("Kafka producer replaced after a fatal or fencing error")

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Publish ``(key, value)`` records; return once Kafka acknowledged all of them.

        Raises BrokerUnavailable if any was not acknowledged within the ack timeout.
        """
        if not records:
            return
        from confluent_kafka import KafkaError

        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[str]] = loop.create_future()
        errors: list[str] = []
        remaining = len(records)
        lock = threading.Lock()

        def delivered(err: Any, _msg: Any) -> None:
            nonlocal remaining
            with lock:
                if err is not None:
                    errors.append(str(err))
                    if err.fatal() or err.code() == KafkaError.PRODUCER_FENCED:
                        self._fenced = True
                remaining -= 1
                last = remaining == 0
            if last:
                loop.call_soon_threadsafe(_resolve, done, errors)

        for key, value in records:
            while True:
                try:
                    self._producer.produce(
                        self.topic, value, key, headers=KAFKA_HEADERS, on_delivery=delivered
                    )
                    break
                except BufferError:  # the producer's queue is full: let it drain
                    await asyncio.sleep(0.005)
        # librdkafka fails every message after message.timeout.ms, so `done` always resolves;
        # the extra margin only guards against a stuck poll thread.
        try:
            failed = await asyncio.wait_for(done, self.ack_timeout_s + 5)
        except TimeoutError as exc:
            raise BrokerUnavailable("Kafka did not acknowledge in time") from exc
        if failed:
            raise BrokerUnavailable(f"Kafka refused {len(failed)} event(s): {failed[0]}")
        self.broker_down_since = None

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join()


def _resolve(fut: asyncio.Future[list[str]], errors: list[str]) -> None:
    if not fut.done():
        fut.set_result(errors)


@dataclass
class _Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "auditseal_gateway_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "auditseal_gateway_events", "Events by outcome", ["outcome"], registry=self.registry
        )
        self.publish_seconds = Histogram(
            "auditseal_gateway_publish_seconds",
            "Time from request to Kafka acknowledgement",
            registry=self.registry,
        )


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _errors(status: int, errors: Sequence[object]) -> web.Response:
    """The first errors, each cut short, and how many there were: a body of a million bad
    items gets an answer of a few kilobytes, not one line per item."""
    shown = []
    for error in errors[:MAX_ERRORS_SHOWN]:
        text = str(error)
        shown.append(text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…")
    return _json(status, {"errors": shown, "error_count": len(errors)})


def _teleport_cluster(client: Client) -> str | None:
    """The cluster a client stands for when it may publish one Teleport source only (a client
    certificate mapped to ``teleport://<cluster>``): the default for events naming none."""
    clusters = [s for s in client.sources if s.startswith(TELEPORT_SCHEME)]
    return unquote(clusters[0][len(TELEPORT_SCHEME) :]) if len(clusters) == 1 else None


def _unauthorized(error: str, challenge: str = 'Bearer realm="auditseal"') -> web.Response:
    return _json(401, {"error": error}, {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Client:
    """Who sent a request: a bearer token (one source) or a mapped client certificate."""

    key: str  # the rate limiter's key: the token's source, or the certificate's name
    sources: frozenset[str]
    grants: str  # for messages: "this token's source 'proxy://db'"

    def may_publish(self, source: object) -> bool:
        return source in self.sources


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        sink: KafkaSink,
        tokens: TokenFile,
        cert_map: CertMapFile | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.tokens = tokens
        self.cert_map = cert_map
        self.limiter = config.limiter()
        self.sequences = SequenceCounter(config.state_dir / "gateway-sequences.json")
        self.metrics = _Metrics()
        self.k8s_recent = RecentEvents()
        self.teleport_recent = RecentEvents()

    # --- helpers --------------------------------------------------------------------------

    def _client(self, request: web.Request) -> Client | web.Response:
        """The request's client, or 401. A bearer token, when given, decides; otherwise a
        verified client certificate listed in the mapping file."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return _unauthorized("missing bearer token")
            # Tokens are URL-safe ASCII; anything else (a header of undecodable bytes) is none.
            source = self.tokens.subject_for(token)
            if source is None:
                return _unauthorized("unknown token", 'Bearer error="invalid_token"')
            return Client(f"token {source}", frozenset({source}), f"this token's source {source!r}")
        transport = request.transport
        names = peer_names(transport.get_extra_info("peercert") if transport else None)
        if names and self.cert_map is not None:
            name, sources = self.cert_map.subjects_for(names)
            if name is None:
                return _unauthorized(
                    f"client certificate {names[0][:100]!r} is not mapped to any source"
                )
            listed = ", ".join(repr(s) for s in sorted(sources))
            return Client(
                f"certificate {name}", sources, f"a source of certificate {name!r} ({listed})"
            )
        return _unauthorized("missing bearer token or client certificate")

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The whole body, or 413 past the limit, 408 past the body timeout, 400 for one that
        cannot be read. A single ``read(n)`` returns only what has arrived so far, so read until
        the end: a body cut short must never be half-accepted."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _json(413, {"error": f"body of {request.content_length} bytes exceeds {limit}"})
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                while chunk := await request.content.read(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        return _json(413, {"error": f"body exceeds {limit} bytes"})
                    chunks.append(chunk)
        except TimeoutError:
            return await self._cut(
                request,
                _json(
                    408,
                    {"error": f"body not received within {self.config.body_timeout_s:g} s"},
                ),
            )
        except (web.RequestPayloadError, ConnectionError) as exc:
            # A body that cannot be decoded (Content-Encoding, chunks) or a client gone: its
            # fault, answered (if it still listens) without a traceback in the log.
            reason = " ".join(str(exc).split())[:MAX_ERROR_CHARS]
            return await self._cut(request, _json(400, {"error": f"body: {reason}"}))
        return b"".join(chunks)

    @staticmethod
    async def _cut(request: web.Request, response: web.Response) -> web.Response:
        """Send ``response`` and close the connection at once, instead of reading on (aiohttp
        would keep reading an unfinished body for its lingering time)."""
        response.force_close()
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            pass
        if request.transport is not None:
            request.transport.close()
        return response

    def _records(self, events: list[dict[str, Any]]) -> tuple[list[tuple[bytes, bytes]], list[str]]:
        """The Kafka records and ids of validated events."""
        records = [
            (e["source"].encode(), encode_event(e, self.config.max_event_bytes)) for e in events
        ]
        return records, [e["id"] for e in events]

    async def _publish(self, records: list[tuple[bytes, bytes]], ids: list[str]) -> web.Response:
        # Only the encoded records are held while Kafka acknowledges, not the parsed events.
        started = time.monotonic()
        try:
            await self.sink.publish(records)
        except BrokerUnavailable as exc:
            self.metrics.events.labels("unavailable").inc(len(records))
            return _json(
                503,
                {"error": f"{exc}; retry later", "retry_after": self.config.retry_after_s},
                {"Retry-After": str(self.config.retry_after_s)},
            )
        self.metrics.publish_seconds.observe(time.monotonic() - started)
        self.metrics.events.labels("accepted").inc(len(records))
        return _json(202, {"accepted": len(records), "ids": ids})

    def _rejected(self, status: int, errors: Sequence[object]) -> web.Response:
        self.metrics.events.labels("rejected").inc()
        return _errors(status, errors)

    async def _serve(
        self,
        request: web.Request,
        handle: Callable[[Client, bytes], Awaitable[tuple[web.Response, int]]],
    ) -> web.Response:
        """Authenticate, apply the client's rate limit, read the body, ``handle`` it; charge
        the client what ``handle`` says the request cost (its events, at least one)."""
        client = self._client(request)
        if isinstance(client, web.Response):
            return client
        if self.limiter is not None:
            wait = self.limiter.retry_after(client.key)
            if wait is not None:
                self.metrics.events.labels("rate_limited").inc()
                return _json(
                    429,
                    {
                        "error": f"rate limit of {self.config.rate_limit:g} events/s exceeded",
                        "retry_after": wait,
                    },
                    {"Retry-After": str(wait)},
                )
        cost = 1
        try:
            body = await self._body(request)
            if isinstance(body, web.Response):
                return body
            response, cost = await handle(client, body)
            return response
        finally:
            if self.limiter is not None:
                self.limiter.charge(client.key, cost)

    # --- routes ---------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        return await self._serve(request, lambda client, body: self._events(request, client, body))

    async def _events(
        self, request: web.Request, client: Client, body: bytes
    ) -> tuple[web.Response, int]:
        try:
            items = parse_batch(
                body,
                request.content_type,
                self.config.max_event_bytes,
                self.config.max_batch_events,
            )
        except UnsupportedMediaType as exc:
            return _json(415, {"error": str(exc)}), 1
        except BatchTooLarge as exc:
            return self._rejected(413, exc.errors), self.config.max_batch_events
        except EnvelopeError as exc:
            return self._rejected(413 if isinstance(exc, EventTooLarge) else 400, exc.errors), 1
        cost = len(items)
        errors: list[object] = []
        too_large = False
        events: list[dict[str, Any]] = []
        for _index, item in items:
            if isinstance(item, EnvelopeError):
                errors.extend(item.errors)
                too_large = too_large or isinstance(item, EventTooLarge)
            else:
                events.append(item)
        del items
        if errors:
            return self._rejected(413 if too_large else 400, errors), cost
        forbidden = [
            f"[{i}].source: {e['source']!r} is not {client.grants}"
            for i, e in enumerate(events)
            if not client.may_publish(e["source"])
        ]
        if forbidden:
            self.metrics.events.labels("forbidden").inc(len(forbidden))
            return _errors(403, forbidden), cost
        records, ids = self._records(events)
        del events
        return await self._publish(records, ids), cost

    async def _adapter(
        self, body: bytes, convert: Callable[[bytes], list[dict[str, Any]]]
    ) -> tuple[web.Response, int]:
        """Convert (which numbers the events) and publish; the caller checked the client."""
        try:
            events = convert(body)
        except BatchTooLarge as exc:
            return self._rejected(413, exc.errors), self.config.max_batch_events
        except EnvelopeError as exc:
            return self._rejected(413 if isinstance(exc, EventTooLarge) else 400, exc.errors), 1
        records, ids = self._records(events)
        del events
        return await self._publish(records, ids), len(records)

    async def k8s(self, request: web.Request) -> web.Response:
        cluster = request.query.get("cluster", "")
        if not cluster:
            return _json(400, {"errors": ["cluster: required query parameter"]})
        source = k8s_source(cluster)

        async def handle(client: Client, body: bytes) -> tuple[web.Response, int]:
            if not client.may_publish(source):
                return _errors(403, [f"cluster: {source!r} is not {client.grants}"]), 1
            return await self._k8s_batch(source, cluster, body)

        return await self._serve(request, handle)

    async def _k8s_batch(self, source: str, cluster: str, body: bytes) -> tuple[web.Response, int]:
        """Seal the good items of a webhook batch, report the others per item.

        The API server's webhook backend resends a batch on any answer but 2xx, so a 4xx for
        one odd item would hold back every other item five times over, then drop them all. A
        batch is therefore answered 200 once its good items are acknowledged, listing the
        refused ones (index, auditID, reasons) and the duplicates; only a body that is no
        EventList at all is a 400, and an unacknowledged publication a 503 (retried).
        """
        recent = self.k8s_recent
        try:
            batch = from_k8s_event_list(
                body,
                cluster,
                self.sequences.next,
                max_bytes=self.config.max_event_bytes,
                max_items=self.config.max_batch_events,
                accepted_digest=lambda event_id: recent.digest(source, event_id),
            )
        except BatchTooLarge as exc:
            return self._rejected(413, exc.errors), self.config.max_batch_events
        except EnvelopeError as exc:
            return self._rejected(400, exc.errors), 1
        cost = len(batch.events) + len(batch.rejected) + len(batch.duplicates)
        for rejected in batch.rejected:
            log.warning(
                "k8s %s: item %d (auditID %s) refused: %s",
                source,
                rejected.index,
                rejected.audit_id,
                "; ".join(str(e) for e in rejected.errors)[:MAX_ERROR_CHARS],
            )
        if batch.rejected:
            self.metrics.events.labels("rejected").inc(len(batch.rejected))
        conflicts = [d for d in batch.duplicates if not d.same]
        for duplicate in conflicts:
            log.warning(
                "k8s %s: item %d reuses event id %s with other content; sealed and flagged",
                source,
                duplicate.index,
                duplicate.id,
            )
        records, ids = self._records(batch.events)
        # An identical copy of an event whose publication was never acknowledged (the batch
        # answered 503) goes out again byte for byte: same id and sequence, a replay.
        resent = [
            (d.id, record)
            for d in batch.duplicates
            if d.same and (record := recent.unacknowledged(source, d.id)) is not None
        ]
        for event_id, record in resent:
            records.append((source.encode(), record))
            ids.append(event_id)
        fresh = len(batch.events)
        for (_, value), event_id, digest in zip(records, ids, batch.digests, strict=False):
            recent.reserve(source, event_id, digest, value)
        response = await self._publish(records, ids)
        if response.status != 202:
            return response, cost
        for event_id in ids:
            recent.acknowledge(source, event_id)
        if batch.duplicates:
            self.metrics.events.labels("duplicate").inc(len(batch.duplicates) - len(conflicts))
            self.metrics.events.labels("duplicate_conflict").inc(len(conflicts))
        shown = batch.rejected[:MAX_ERRORS_SHOWN]
        return _json(
            200,
            {
                "accepted": fresh,
                "ids": ids[:fresh],
                "republished": ids[fresh:],
                "rejected": [r.as_json() for r in shown],
                "rejected_count": len(batch.rejected),
                "duplicates": [d.as_json() for d in batch.duplicates[:MAX_ERRORS_SHOWN]],
                "duplicate_count": len(batch.duplicates),
            },
        ), cost

    async def teleport(self, request: web.Request) -> web.Response:
        """One Teleport audit event, as the Teleport event handler's Fluentd client POSTs it, on
        ``/v1/adapters/teleport`` or any one segment under it (its ``session-url`` gets
        ``.<session id>.log`` appended). Answers 200 once Kafka acknowledged the event: the
        handler counts anything else as a failure and sends the event again.

        A resend of an event already published (same source and id, same content) is answered
        200 and not published again; if its publication was never acknowledged, its record goes
        out again byte for byte (same sequence: a replay, not a second event). Another event
        under an id already used is published and logged as a conflict.
        """
        cluster = request.query.get("cluster")

        async def handle(client: Client, body: bytes) -> tuple[web.Response, int]:
            try:
                # Numbered provisionally: a refused, forbidden or repeated event takes no number.
                event = from_teleport(
                    body,
                    lambda _source: 1,
                    cluster=cluster or _teleport_cluster(client),
                    max_bytes=self.config.max_event_bytes,
                )
            except EnvelopeError as exc:
                return self._rejected(413 if isinstance(exc, EventTooLarge) else 400, exc.errors), 1
            source, event_id = event["source"], event["id"]
            if not client.may_publish(source):
                self.metrics.events.labels("forbidden").inc()
                return _errors(403, [f"source: {source!r} is not {client.grants}"]), 1
            recent, digest = self.teleport_recent, content_digest(body)
            known = recent.digest(source, event_id)
            if known == digest:
                record = recent.unacknowledged(source, event_id)
                if record is None:
                    self.metrics.events.labels("duplicate").inc()
                    return _json(200, {"accepted": 0, "ids": [event_id], "duplicate": True}), 1
            else:
                if known is not None:
                    self.metrics.events.labels("duplicate_conflict").inc()
                    log.warning(
                        "teleport %s: event id %s reused with other content; sealed and flagged",
                        source,
                        event_id,
                    )
                event["sequence"] = self.sequences.next(source)
                record = encode_event(event, self.config.max_event_bytes)
                recent.reserve(source, event_id, digest, record)
            response = await self._publish([(source.encode(), record)], [event_id])
            if response.status != 202:
                return response, 1
            recent.acknowledge(source, event_id)
            return _json(200, {"accepted": 1, "ids": [event_id]}), 1

        return await self._serve(request, handle)

    async def healthz(self, _request: web.Request) -> web.Response:
        down = self.sink.broker_down_since
        if down is None:
            return _json(200, {"status": "ok", "broker": "up"})
        return _json(
            503,
            {
                "status": "degraded",
                "broker": "down",
                "down_for_s": round(time.monotonic() - down, 1),
            },
        )

    async def metrics_route(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    @web.middleware
    async def count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unknown"
        self.metrics.requests.labels(name, str(response.status)).inc()
        return response


def make_app(config: GatewayConfig, sink: KafkaSink | None = None) -> web.Application:
    """The aiohttp application; the sink is created (and closed on shutdown) unless given.
    Raises TokenFileError or CertMapError for a tokens file or mapping that cannot be used."""
    tokens = TokenFile(config.tokens_path, interval=config.reload_interval_s)
    cert_map = (
        CertMapFile(config.client_certs_path, interval=config.reload_interval_s)
        if config.client_certs_path is not None
        else None
    )
    own_sink = sink is None
    the_sink = sink or KafkaSink(
        config.bootstrap, config.topic, config.ack_timeout_s, config.kafka_config
    )
    gateway = Gateway(config, the_sink, tokens, cert_map)
    app = web.Application(middlewares=[gateway.count], client_max_size=config.max_body_bytes + 1)
    app.add_routes(
        [
            web.post("/v1/events", gateway.events),
            web.post("/v1/adapters/k8s", gateway.k8s),
            web.post("/v1/adapters/teleport", gateway.teleport),
            web.post("/v1/adapters/teleport/{tag}", gateway.teleport),
            web.get("/healthz", gateway.healthz),
            web.get("/metrics", gateway.metrics_route),
        ]
    )

    async def shutdown(_app: web.Application) -> None:
        gateway.sequences.close()
        if own_sink:
            await asyncio.get_running_loop().run_in_executor(None, the_sink.close)

    app.on_cleanup.append(shutdown)
    app["gateway"] = gateway
    return app
