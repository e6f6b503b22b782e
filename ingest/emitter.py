"""The emitter: how a proxy written in Python publishes audit events without losing one.

``Emitter.emit(event)`` assigns the source's next ``sequence``, validates the envelope, and hands
the event to an idempotent confluent-kafka producer (acks=all, key = source, so one source's
events stay in order on one partition). Where events wait:

1. **memory**: the producer's queue, bounded by ``buffer_max`` events. The producer never
   times a message out (``message.timeout.ms=0``): while the broker is unreachable it keeps
   retrying, and idempotence keeps the order and drops the retries' duplicates. The emitter
   keeps its own reference to each event until Kafka acknowledges it.
2. **spool**: an append-only file (:mod:`auditseal.ingest.spool`). The emitter switches to it when
the
   broker looks unreachable (events are waiting and Kafka has acknowledged none for
   ``spool_after`` seconds, default 0.2) or when the memory queue is full. At the switch, every
   event still unacknowledged in memory is written to the spool too (a *shadow*: the producer
   keeps its copy and Kafka's acknowledgement of it acknowledges the spool record), and every
   later event goes to the spool, written to the OS before ``emit()`` returns and fsynced
   within ``SYNC_INTERVAL`` (50 ms) or every ``SYNC_EVERY`` (1,000) events, until the spool
   has drained, so the order is kept. A background thread feeds the spool back into the
   producer as room frees up and advances the spool's cursor as Kafka acknowledges.

So a crash during an outage loses at most the events emitted in the ``spool_after`` + one poll
interval (0.25 s by default) before the outage was noticed; a power loss, also those spooled in
the last fsync window. A shadow that the broker did store before the crash is sent again after
it: the same id and sequence, a replay the sealer and monitor see, never a loss.

``pending()`` says how much is waiting in each, and the same numbers are Prometheus gauges.
An event Kafka refuses for good (too large for the broker, topic not authorised) is written to a
``failed`` spool beside the other, counted, and passed to ``on_error``: surfaced, never dropped.
A spool found damaged at start (:class:`auditseal.ingest.spool.SpoolDamaged`) is logged as an error,
counted in ``spool_damaged_records`` (a metric too) and passed to ``on_spool_damage``; every
record of it that still checks is delivered.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from auditseal.ingest import ocsf_schema
from auditseal.ingest.envelope import (
    CLASS_FOR_TYPE,
    KAFKA_HEADERS,
    MAX_EVENT_BYTES,
    EnvelopeError,
    EventTooLarge,
    validate,
)
from auditseal.ingest.errors import IngestError
from auditseal.ingest.sequence import SequenceCounter
from auditseal.ingest.spool import Spool, SpoolDamaged

__all__ = ["DeliveryFailure", "Emitter", "EmitterConfigError", "producer_config"]

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "audit.events"
DEFAULT_BUFFER_MAX = 100_000
DEFAULT_SPOOL_AFTER = 0.2  # seconds without any acknowledgement while events wait: an outage
POLL_INTERVAL = 0.05  # the background thread's tick: outage check, spool fsync, drain
SYNC_INTERVAL = POLL_INTERVAL  # spooled events are fsynced within this ...
SYNC_EVERY = 1_000  # ... or after this many, whichever comes first

# What idempotent, durable publishing needs; an override that weakens it is refused.
_REQUIRED = {
    "enable.idempotence": ({True, "true"}, "without it a retry can duplicate or reorder events"),
    "acks": ({"all", "-1", -1}, "anything short of all loses events acknowledged by one replica"),
}


class EmitterConfigError(IngestError, ValueError):
    """A producer configuration that would silently weaken delivery guarantees."""


@dataclass(frozen=True)
class DeliveryFailure:
    event_id: str
    source: str
    error: str


def producer_config(
    bootstrap: str,
    overrides: Mapping[str, Any] | None = None,
    buffer_max: int = DEFAULT_BUFFER_MAX,
    message_timeout_ms: int = 0,
) -> dict[str, Any]:
    """The confluent-kafka producer configuration, with ``overrides`` checked.

    Raises EmitterConfigError, naming the key, for any override that would disable
    idempotence or acks=all, or let messages time out (and so be dropped) while queued.
    ``message_timeout_ms`` is for callers that answer their own client (the HTTP gateway:
    a timed-out event is reported as not accepted); the emitter keeps 0, never time out.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": message_timeout_ms,
        "queue.buffering.max.messages": buffer_max,
        "linger.ms": 5,
        # librdkafka's own log lines (a reconnect attempt every few ms while the broker is
        # away) go to Python logging instead of flooding stderr.
        "logger": logging.getLogger("auditseal.kafka"),
    }
    for key, value in (overrides or {}).items():
        allowed = _REQUIRED.get(key)
        if allowed is not None and value not in allowed[0]:
            raise EmitterConfigError(f"producer config {key}={value!r}: refused, {allowed[1]}")
        if key in {"message.timeout.ms", "delivery.timeout.ms"} and int(value) != 0:
            raise EmitterConfigError(
                f"producer config {key}={value!r}: refused, a timeout drops queued events; "
                "the emitter spools them instead"
            )
        if key == "retries" and int(value) == 0:
            raise EmitterConfigError("producer config retries=0: refused, events would be lost")
        if key == "max.in.flight.requests.per.connection" and int(value) > 5:
            raise EmitterConfigError(
                f"producer config {key}={value!r}: refused, idempotence allows at most 5"
            )
        config[key] = value
    return config


class Emitter:
    """Publish audit events to Kafka; thread-safe. Close it to flush and stop its thread."""

    def __init__(
        self,
        bootstrap: str,
        state_dir: str | Path,
        *,
        topic: str = DEFAULT_TOPIC,
        buffer_max: int = DEFAULT_BUFFER_MAX,
        config: Mapping[str, Any] | None = None,
        on_error: Callable[[DeliveryFailure], None] | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
        validate: bool = True,
        registry: Any = None,
        spool_after: float = DEFAULT_SPOOL_AFTER,
        on_spool_damage: Callable[[SpoolDamaged], None] | None = None,
    ) -> None:
        """``validate=False`` skips the envelope check, for events from
        :mod:`auditseal.ingest.events` builders, which validate what they build; size is always
        checked. ``registry`` is the Prometheus registry for the emitter's metrics (default: the
        global one). ``spool_after``: seconds without an acknowledgement, while events wait, after
        which the broker counts as unreachable and events go to the spool (see the module doc).
        ``on_spool_damage`` is called with each spool found damaged at start."""
        if spool_after <= 0:
            raise ValueError(f"spool_after must be positive, got {spool_after}")
        from confluent_kafka import Producer

        if not isinstance(max_event_bytes, int) or max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be a positive integer, got {max_event_bytes!r}")
        if validate:
            ocsf_schema.prepare(CLASS_FOR_TYPE.values())  # not on the first events' time
        self.topic = topic
        self.validate = validate
        self.max_event_bytes = max_event_bytes
        self._keys: dict[str, bytes] = {}  # source -> its encoded Kafka key
        self._producer = Producer(producer_config(bootstrap, config, buffer_max))
        state = Path(state_dir)
        self._sequences = SequenceCounter(state / "sequences.json")
        self._spool = Spool(state, "events")
        self._failed = Spool(state, "failed")
        self._on_error = on_error
        self.failures = 0
        self.acked = 0
        self.spool_after = spool_after
        # A damaged spool was moved aside and what checks kept (ingest.spool): say so loudly.
        self.spool_damage = [s.damage for s in (self._spool, self._failed) if s.damage]
        self.spool_damaged_records = sum(d.recovery.damaged_records for d in self.spool_damage)
        for damage in self.spool_damage:
            log.error("emitter spool damaged: %s", damage)
            if on_spool_damage is not None:
                on_spool_damage(damage)
        self._lock = threading.RLock()
        # Spooled records handed to the producer and awaiting acknowledgement, in spool order:
        # end offset -> acknowledged yet?
        self._inflight: OrderedDict[int, bool] = OrderedDict()
        self._sent_upto = self._spool.acked_offset
        self._spooling = len(self._spool) > 0  # replay a previous run's spool first
        self._purged: list[tuple[bytes, bytes]] = []
        # Events produced straight from emit() and not acknowledged yet (token -> key, value),
        # in emission order, so that an outage can write them to the spool; and those written
        # there (token -> the spool record's end offset).
        self._tokens = itertools.count()
        self._unacked: dict[int, tuple[bytes, bytes]] = {}
        self._shadows: dict[int, int] = {}
        self._shadow_lock = threading.Lock()  # taken inside self._lock, never the other way
        self._progress = (0, time.monotonic())  # (acknowledged + refused, when it last moved)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditseal-emitter", daemon=True)
        self._thread.start()
        self._metrics = _EmitterCollector(self, registry)

    # --- publishing ------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> int:
        """Publish one event; returns the ``sequence`` assigned to it.

        The event MUST NOT carry a ``sequence``: the emitter owns the counter. Raises
        EnvelopeError (every field at fault) or EventTooLarge; nothing is sent then, and the
        sequence number is not consumed.
        """
        if "sequence" in event:
            raise EnvelopeError.single("sequence", "assigned by the emitter; do not set it")
        source = event.get("source")
        if not isinstance(source, str) or not source:
            raise EnvelopeError(tuple(validate({**event, "sequence": 1})))
        return self.emit_with(source, lambda sequence: {**event, "sequence": sequence})

    def emit_with(self, source: str, build: Callable[[int], dict[str, Any]]) -> int:
        """Publish the event ``build(sequence)`` for ``source``'s next sequence; return it.

        For builders such as :mod:`auditseal.ingest.events` that take the sequence as an argument.
        If ``build`` raises, or its event is invalid, nothing is sent and the number is not used.
        """
        with self._lock:
            sequence = self._sequences.peek(source)
            event = build(sequence)
            if event.get("source") != source or event.get("sequence") != sequence:
                raise EnvelopeError.single(
                    "sequence", f"the built event must carry source {source!r}, sequence {sequence}"
                )
            if self.validate:
                errors = validate(event)
                if errors:
                    raise EnvelopeError(tuple(errors))
            value = orjson.dumps(event)  # the one serialisation: these bytes go to Kafka
            if len(value) > self.max_event_bytes:
                raise EventTooLarge(len(value), self.max_event_bytes)
            self._sequences.next(source)
            key = self._keys.get(source)
            if key is None:
                key = self._keys[source] = source.encode()
            self._publish(key, value)
            return sequence

    def _publish(self, key: bytes, value: bytes) -> None:
        if not self._spooling:
            token = next(self._tokens)
            self._unacked[token] = (key, value)  # before produce: its report may come first
            try:
                self._producer.produce(
                    self.topic,
                    value,
                    key,
                    headers=KAFKA_HEADERS,
                    on_delivery=functools.partial(self._direct_delivered, token),
                )
                return
            except BufferError:
                del self._unacked[token]
                self._start_spooling("memory buffer full")
        self._spool.append(key, value)
        if self._spool.unsynced >= SYNC_EVERY:
            self._spool.sync()

    def _start_spooling(self, why: str) -> None:
        """Switch to the spool; first write there every event still unacknowledged in memory.

        Caller holds the lock. Not spooling means the spool is empty and fully acknowledged,
        so the shadows go first, in emission order, ahead of every later event.
        """
        if self._spooling:
            return
        self._spooling = True
        with self._shadow_lock:
            for token, (key, value) in self._unacked.items():
                end = self._spool.append(key, value)
                self._shadows[token] = end
                self._inflight[end] = False
                self._sent_upto = end
        self._spool.sync()
        log.warning(
            "emitter: %s: spooling to %s (%d unacknowledged events written there first)",
            why,
            self._spool.path,
            len(self._shadows),
        )

    # --- delivery --------------------------------------------------------------------------

    def _direct_delivered(self, token: int, err: Any, msg: Any) -> None:
        # Not self._lock: emit() holds that for a whole event, and waiting for it on every
        # acknowledgement halved the emitter's rate. This one guards only the two maps.
        with self._shadow_lock:
            self._unacked.pop(token, None)
            end = self._shadows.pop(token, None)
        if end is not None:
            self._spool_delivered(end, err, msg)
        else:
            self._delivered(err, msg)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked += 1
        elif _is_purge(err):
            self._purged.append((msg.key() or b"", msg.value() or b""))
        else:
            self._fail(msg.key() or b"", msg.value() or b"", str(err))

    def _fail(self, key: bytes, value: bytes, error: str) -> None:
        with self._lock:
            self._failed.append(key, value)
            self._failed.sync()
            self.failures += 1
        event_id = _event_id(value)
        log.error(
            "event %s from %s refused by Kafka: %s", event_id, key.decode(errors="replace"), error
        )
        if self._on_error is not None:
            self._on_error(DeliveryFailure(event_id, key.decode(errors="replace"), error))

    def _spool_delivered(self, end: int, err: Any, msg: Any) -> None:
        if err is not None and _is_purge(err):
            return  # still in the spool, unacknowledged: the next run sends it
        if err is not None:
            self._fail(msg.key() or b"", msg.value() or b"", str(err))
        else:
            self.acked += 1
        with self._lock:
            self._inflight[end] = True
            upto: int | None = None
            count = 0
            while self._inflight:
                first, acked = next(iter(self._inflight.items()))
                if not acked:
                    break
                del self._inflight[first]
                upto, count = first, count + 1
            if upto is not None:
                self._spool.ack(upto, count)
                if len(self._spool) == 0:
                    # Everything spooled is acknowledged (the file was reset): new events may
                    # go straight to the producer again. Not earlier: at shutdown, events still
                    # in memory must all be older than those in the spool.
                    self._sent_upto = 0
                    self._spooling = False

    def _drain_spool(self) -> None:
        with self._lock:
            if not self._spooling:
                return
            for end, key, value in self._spool.records(self._sent_upto):
                try:
                    self._producer.produce(
                        self.topic,
                        value,
                        key,
                        headers=KAFKA_HEADERS,  # a replayed record is the same CloudEvent
                        on_delivery=functools.partial(self._spool_delivered, end),
                    )
                except BufferError:
                    return
                self._inflight[end] = False
                self._sent_upto = end

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(POLL_INTERVAL)
            self._watch()
            self._drain_spool()

    def _watch(self) -> None:
        """Spool when Kafka has acknowledged nothing for ``spool_after`` while events wait;
        fsync what was spooled since the last tick."""
        now = time.monotonic()
        done = self.acked + self.failures
        if done != self._progress[0] or not self._unacked:
            self._progress = (done, now)
        elif not self._spooling and now - self._progress[1] >= self.spool_after:
            with self._lock:
                self._start_spooling(f"no acknowledgement from Kafka for {self.spool_after} s")
        if self._spool.unsynced:
            with self._lock:
                self._spool.sync()

    # --- state -----------------------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Events not yet acknowledged by Kafka: in the producer's memory queue, in the spool."""
        with self._lock:
            return {"memory": len(self._producer), "spool": len(self._spool) - len(self._inflight)}

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until everything is acknowledged or ``timeout`` passes; returns what is left."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain_spool()
            self._producer.flush(min(0.2, max(0.0, deadline - time.monotonic())))
            left = self.pending()
            if left["memory"] == 0 and left["spool"] == 0 and not self._inflight:
                return 0
        left = self.pending()
        return left["memory"] + left["spool"]

    def close(self, timeout: float = 30.0) -> int:
        """Flush, stop the background thread, persist the counters; returns events left over.

        If the broker stayed unreachable, events still in memory are moved into the spool,
        ahead of what was already spooled, so the next Emitter on this state directory sends
        them first; an event in flight at that moment may then be delivered twice (same id and
        sequence: a visible replay, never a loss).
        """
        left = self.flush(timeout)
        self._stop.set()
        self._thread.join()
        if left:
            # The broker stayed away: take the queued events back from the producer (their
            # delivery reports come back as purged) and keep them, oldest first, in the spool.
            self._producer.purge()
            self._producer.poll(0)
            self._producer.flush(0)
            with self._lock:
                self._spool.prepend(self._purged)
                self._purged = []
        self._metrics.unregister()
        self._sequences.close()
        self._spool.sync()
        self._spool.close()
        self._failed.close()
        return left


class _EmitterCollector:
    """Prometheus metrics read from the emitter when scraped, labelled by topic."""

    def __init__(self, emitter: Emitter, registry: Any) -> None:
        from prometheus_client import REGISTRY

        self._emitter = emitter
        self._registry = registry if registry is not None else REGISTRY
        self._registry.register(self)

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        e = self._emitter
        labels = ["topic", "buffer"]
        pending = GaugeMetricFamily(
            "auditseal_emitter_pending_events",
            "Events not yet acknowledged by Kafka, by where they wait",
            labels=labels,
        )
        for where, count in e.pending().items():
            pending.add_metric([e.topic, where], count)
        yield pending
        acked = CounterMetricFamily(
            "auditseal_emitter_acknowledged_events",
            "Events acknowledged by Kafka",
            labels=["topic"],
        )
        acked.add_metric([e.topic], e.acked)
        yield acked
        failed = CounterMetricFamily(
            "auditseal_emitter_failed_events",
            "Events Kafka refused for good (kept in the failed spool)",
            labels=["topic"],
        )
        failed.add_metric([e.topic], e.failures)
        yield failed
        damaged = CounterMetricFamily(
            "auditseal_emitter_spool_damaged_records",
            "Spool records found damaged at start (the file kept aside, the rest delivered)",
            labels=["topic"],
        )
        damaged.add_metric([e.topic], e.spool_damaged_records)
        yield damaged

    def unregister(self) -> None:
        self._registry.unregister(self)


def _is_purge(err: Any) -> bool:
    from confluent_kafka import KafkaError

    return bool(err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT))


def _event_id(value: bytes) -> str:
    try:
        parsed = orjson.loads(value)
        return str(parsed.get("id", "?")) if isinstance(parsed, dict) else "?"
    except ValueError:
        return "?"
