"""The HTTP gateway: proxies in any language publish audit events over HTTP.

``POST /v1/events`` takes one event (``application/json``, ``application/cloudevents+json``), a
JSON array (``application/cloudevents-batch+json`` or a JSON array body) or NDJSON
(``application/x-ndjson``). A batch is all or nothing: every event is validated and checked
against the token's source before any is published, and ``202`` is answered only once Kafka has
acknowledged every one of them (acks=all). Answers:

- 202 ``{"accepted": n, "ids": [...]}``;
- 400 with every field error (``[2].data.actor.user: required``); 413 for an event over the
  size limit or a body over the batch limit; 415 for an unknown content type;
- 401 without a valid bearer token, 403 for an event whose ``source`` is not the token's;
- 503 with ``Retry-After`` when Kafka did not acknowledge in time. Some events of the batch may
  have been stored anyway: a retry then publishes them again with the same ``id`` and
  ``sequence``, which the sealer and monitor see as a replay, never as a loss.

Adapters, same rules: ``POST /v1/adapters/k8s?cluster=NAME`` (the kube-apiserver audit webhook,
an ``audit.k8s.io/v1`` EventList; the token must be for ``k8s://NAME``) and
``POST /v1/adapters/teleport[?cluster=NAME]`` (one Teleport audit event per request). The
gateway numbers adapter events with its own persistent per-source ``sequence`` counters.

``GET /healthz`` and ``GET /metrics`` (Prometheus) are open.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from auditseal.ingest.adapters import from_k8s_event_list, from_teleport, k8s_source
from auditseal.ingest.emitter import producer_config
from auditseal.ingest.envelope import MAX_EVENT_BYTES, encode_event, parse_batch
from auditseal.ingest.errors import EnvelopeError, EventTooLarge, UnsupportedMediaType
from auditseal.ingest.sequence import SequenceCounter
from auditseal.transport.tokens import TokenFile

__all__ = ["BrokerUnavailable", "GatewayConfig", "KafkaSink", "make_app"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayConfig:
    bootstrap: str
    tokens_path: Path
    state_dir: Path
    topic: str = "audit.events"
    max_event_bytes: int = MAX_EVENT_BYTES
    max_body_bytes: int = 32 * MAX_EVENT_BYTES
    ack_timeout_s: float = 10.0
    retry_after_s: int = 5
    # librdkafka security properties (--kafka-config), merged into the producer's configuration
    kafka_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_body_bytes < self.max_event_bytes:
            raise ValueError("max_body_bytes must be at least max_event_bytes")
        if self.ack_timeout_s <= 0:
            raise ValueError("ack_timeout_s must be positive")


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
                    self._producer.produce(self.topic, value, key, on_delivery=delivered)
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


class Gateway:
    def __init__(self, config: GatewayConfig, sink: KafkaSink, tokens: TokenFile) -> None:
        self.config = config
        self.sink = sink
        self.tokens = tokens
        self.sequences = SequenceCounter(config.state_dir / "gateway-sequences.json")
        self.metrics = _Metrics()

    # --- helpers --------------------------------------------------------------------------

    def _authorised_source(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _json(
                401,
                {"error": "missing bearer token"},
                {"WWW-Authenticate": 'Bearer realm="auditseal"'},
            )
        source = self.tokens.subject_for(token.strip())
        if source is None:
            return _json(
                401,
                {"error": "unknown token"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return source

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The whole body, or 413 past the limit. A single ``read(n)`` returns only what has
        arrived so far, so read until the end: a body cut short must never be half-accepted."""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _json(413, {"error": f"body of {request.content_length} bytes exceeds {limit}"})
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(1 << 16):
            size += len(chunk)
            if size > limit:
                return _json(413, {"error": f"body exceeds {limit} bytes"})
            chunks.append(chunk)
        return b"".join(chunks)

    async def _publish(self, events: list[dict[str, Any]]) -> web.Response:
        records = [
            (e["source"].encode(), encode_event(e, self.config.max_event_bytes)) for e in events
        ]
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
        return _json(202, {"accepted": len(records), "ids": [e["id"] for e in events]})

    def _rejected(self, status: int, errors: Sequence[object]) -> web.Response:
        self.metrics.events.labels("rejected").inc()
        return _json(status, {"errors": [str(e) for e in errors]})

    # --- routes ---------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        source = self._authorised_source(request)
        if isinstance(source, web.Response):
            return source
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            items = parse_batch(body, request.content_type, self.config.max_event_bytes)
        except UnsupportedMediaType as exc:
            return _json(415, {"error": str(exc)})
        except EnvelopeError as exc:
            return self._rejected(413 if isinstance(exc, EventTooLarge) else 400, exc.errors)
        errors: list[object] = []
        too_large = False
        events: list[dict[str, Any]] = []
        for _index, item in items:
            if isinstance(item, EnvelopeError):
                errors.extend(item.errors)
                too_large = too_large or isinstance(item, EventTooLarge)
            else:
                events.append(item)
        if errors:
            return self._rejected(413 if too_large else 400, errors)
        forbidden = [
            f"[{i}].source: {e['source']!r} is not this token's source {source!r}"
            for i, e in enumerate(events)
            if e["source"] != source
        ]
        if forbidden:
            self.metrics.events.labels("forbidden").inc(len(forbidden))
            return _json(403, {"errors": forbidden})
        return await self._publish(events)

    async def _adapter(
        self, request: web.Request, convert: Callable[[bytes], list[dict[str, Any]]]
    ) -> web.Response:
        """Read, convert (which numbers the events) and publish; the caller checked the token."""
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            events = convert(body)
        except EnvelopeError as exc:
            return self._rejected(413 if isinstance(exc, EventTooLarge) else 400, exc.errors)
        return await self._publish(events)

    async def k8s(self, request: web.Request) -> web.Response:
        cluster = request.query.get("cluster", "")
        if not cluster:
            return _json(400, {"errors": ["cluster: required query parameter"]})
        token_source = self._authorised_source(request)
        if isinstance(token_source, web.Response):
            return token_source
        if token_source != k8s_source(cluster):
            return _json(
                403,
                {
                    "errors": [
                        f"cluster: token is for {token_source!r}, not {k8s_source(cluster)!r}"
                    ]
                },
            )
        return await self._adapter(
            request,
            lambda body: from_k8s_event_list(
                body, cluster, self.sequences.next, max_bytes=self.config.max_event_bytes
            ),
        )

    async def teleport(self, request: web.Request) -> web.Response:
        token_source = self._authorised_source(request)
        if isinstance(token_source, web.Response):
            return token_source
        cluster = request.query.get("cluster")

        def convert(body: bytes) -> list[dict[str, Any]]:
            # Number with a counter that refuses other sources, so a forbidden event is
            # refused before it consumes a sequence number.
            def next_sequence(event_source: str) -> int:
                if event_source != token_source:
                    raise EnvelopeError.single(
                        "source", f"{event_source!r} is not this token's source {token_source!r}"
                    )
                return self.sequences.next(event_source)

            return [
                from_teleport(
                    body, next_sequence, cluster=cluster, max_bytes=self.config.max_event_bytes
                )
            ]

        return await self._adapter(request, convert)

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
    """The aiohttp application; the sink is created (and closed on shutdown) unless given."""
    tokens = TokenFile(config.tokens_path)
    own_sink = sink is None
    the_sink = sink or KafkaSink(
        config.bootstrap, config.topic, config.ack_timeout_s, config.kafka_config
    )
    gateway = Gateway(config, the_sink, tokens)
    app = web.Application(middlewares=[gateway.count], client_max_size=config.max_body_bytes + 1)
    app.add_routes(
        [
            web.post("/v1/events", gateway.events),
            web.post("/v1/adapters/k8s", gateway.k8s),
            web.post("/v1/adapters/teleport", gateway.teleport),
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
