"""``auditseal monitor``: watch ``audit.sealed`` and ``audit.anchors`` and raise alerts.

The checks are :class:`auditseal.monitor.checks.Checker`'s; this module is the I/O around it: a
confluent-kafka consumer assigned to every partition of both topics from the beginning (the
replay state must be complete), the verifier's reader of the anchor contract, and the alert sinks:
stdout (JSON lines), a webhook (its own thread, bounded queue, retries with backoff, so a dead
endpoint never stalls the consumer), the ``audit.alerts`` topic and Prometheus metrics.
Exit codes: 0 no alert, 1 alerts raised (with --once / --idle-exit), 2 usage error,
3 broker or chain unreachable.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from auditseal.cli.options import (
    alerts_topic_option,
    anchors_topic_option,
    bootstrap_option,
    contract_pin_options,
    log_key_option,
    metrics_listen_option,
    resolve_contract_pin,
    rpc_option,
    sealed_topic_option,
)
from auditseal.cli.output import fail, warn_alias
from auditseal.monitor.checks import (
    DEFAULT_ID_MEMORY,
    DEFAULT_SEQUENCE_MEMORY,
    DEFAULT_SEQUENCE_RUNS,
    KINDS,
    Alert,
    Checker,
)
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.anchoring import ChainUnavailableError
from auditseal.verifier.errors import FormatError, VerifierError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.sealed import BlockAssembler, parse_message

if TYPE_CHECKING:
    from auditseal.verifier.chain import Web3AnchorReader

DEFAULT_METRICS_PORT = 9466
ONCE_IDLE = 3.0  # seconds without a message that count as "drained" for --once


def _note(message: str) -> None:
    click.echo(f"auditseal monitor: {message}", err=True)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the chain -------------------------------------------------------------------------------


# --- the sinks -------------------------------------------------------------------------------


class Webhook:
    """POSTs alerts as JSON from a thread: retried with exponential backoff, queue bounded.

    A full queue drops the alert (with a line on stderr) rather than blocking the consumer;
    the other sinks still have it.
    """

    def __init__(
        self, url: str, retries: int = 5, timeout: float = 5.0, backoff: float = 0.5
    ) -> None:
        self.url, self.retries, self.timeout, self.backoff = url, retries, timeout, backoff
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.failed += 1
            _note(f"webhook queue full, alert {alert['kind']} not posted")

    def _post(self, body: bytes) -> str | None:
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return type(exc).__name__
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            body = json.dumps(alert).encode("utf-8")
            for attempt in range(self.retries + 1):
                error = self._post(body)
                if error is None:
                    self.delivered += 1
                    break
                if attempt == self.retries:
                    self.failed += 1
                    _note(f"webhook: alert {alert['kind']} not delivered: {error}")
                    break
                time.sleep(min(30.0, self.backoff * 2**attempt))
            self._queue.task_done()

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for queued alerts, then stop."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)


class Metrics:
    """Prometheus metrics of one monitor, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.alerts = Counter(
            "auditseal_monitor_alerts_total",
            "Alerts raised, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in KINDS:
            self.alerts.labels(kind)
        self.blocks = Counter(
            "auditseal_monitor_blocks_checked_total",
            "Blocks that passed every check.",
            registry=self.registry,
        )
        self.events = Counter(
            "auditseal_monitor_events_checked_total",
            "Events whose sequence was checked.",
            registry=self.registry,
        )
        self.replays = Counter(
            "auditseal_monitor_replayed_events_total",
            "Identical redeliveries of an event (same source, sequence and bytes): not alerts.",
            registry=self.registry,
        )
        self.unchecked = Counter(
            "auditseal_monitor_unchecked_events_total",
            "Repeated sequence numbers too old for the monitor's memory to compare with the "
            "first copy (each also in a sequence_unchecked warning).",
            registry=self.registry,
        )
        self.receipts = Counter(
            "auditseal_monitor_receipts_checked_total",
            "Anchor receipts checked.",
            registry=self.registry,
        )
        self.last_block = Gauge(
            "auditseal_monitor_last_block_time_seconds",
            "Sealing time of the last block that passed every check.",
            registry=self.registry,
        )
        self.last_message = Gauge(
            "auditseal_monitor_last_message_time_seconds",
            "When the monitor last read a message.",
            registry=self.registry,
        )
        self._seen = (0, 0, 0, 0, 0)

    def update(self, checker: Checker) -> None:
        now = (
            checker.blocks_checked,
            checker.events_checked,
            checker.replays,
            checker.unchecked,
            checker.receipts_checked,
        )
        counters = (self.blocks, self.events, self.replays, self.unchecked, self.receipts)
        for counter, new, old in zip(counters, now, self._seen, strict=True):
            if new > old:
                counter.inc(new - old)
        self._seen = now
        if checker.last_block_ms is not None:
            self.last_block.set(checker.last_block_ms / 1000)
        self.last_message.set(time.time())


class Sinks:
    """Where alerts go: stdout, the webhook, the alerts topic, the metrics."""

    def __init__(
        self,
        metrics: Metrics,
        webhook: Webhook | None,
        producer: Any | None,
        topic: str | None,
    ) -> None:
        self.metrics, self.webhook, self.producer, self.topic = metrics, webhook, producer, topic
        self.raised = 0

    def emit(self, alert: Alert) -> None:
        data = alert.to_json()
        self.raised += 1
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
        self.metrics.alerts.labels(alert.kind).inc()
        if self.webhook is not None:
            self.webhook.send(data)
        if self.producer is not None and self.topic:
            try:
                self.producer.produce(
                    self.topic,
                    key=(alert.log or "").encode("utf-8"),
                    value=json.dumps(data, sort_keys=True).encode("utf-8"),
                )
                self.producer.poll(0)
            except Exception as exc:  # one sink failing must not stop the others
                _note(f"alert not published to {self.topic}: {exc}")

    def close(self, timeout: float) -> None:
        if self.producer is not None:
            left = self.producer.flush(timeout)
            if left:
                _note(f"{left} alert(s) not delivered to {self.topic}")
        if self.webhook is not None:
            self.webhook.close(timeout)


# --- the loop --------------------------------------------------------------------------------


class Monitor:
    """Reads both topics, feeds the checker, routes alerts; ``run`` returns the exit code."""

    def __init__(
        self,
        consumer: Any,
        checker: Checker,
        sinks: Sinks,
        chain: Web3AnchorReader | None,
        sealed_topic: str,
        anchors_topic: str,
        *,
        history_before_ms: int | None = None,
        idle_exit: float | None = None,
        tick: float = 5.0,
    ) -> None:
        self.consumer, self.checker, self.sinks, self.chain = consumer, checker, sinks, chain
        self.sealed_topic, self.anchors_topic = sealed_topic, anchors_topic
        self.history_before_ms = history_before_ms
        self.idle_exit, self.tick = idle_exit, tick
        self.assembler = BlockAssembler()
        self.stop = threading.Event()
        self._retry: list[tuple[AnchorReceipt, int | None]] = []
        self._chain_error: str | None = None

    def _emit(self, alerts: list[Alert], timestamp_ms: int | None = None) -> None:
        history = self.history_before_ms
        if history is not None and timestamp_ms is not None and timestamp_ms < history:
            return  # --from-now: history rebuilds the state, its alerts are not repeated
        for alert in alerts:
            self.sinks.emit(alert)

    def _receipt(self, receipt: AnchorReceipt, timestamp_ms: int | None) -> None:
        try:
            alerts = self.checker.receipt(receipt, self.chain, _now_ms())
        except ChainUnavailableError as exc:
            self._chain_error = str(exc)
            self._retry.append((receipt, timestamp_ms))
            return
        self._emit(alerts, timestamp_ms)

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Check one message; ``timestamp_ms`` (Kafka's) places it before or after the start."""
        now = _now_ms()
        where = f"{topic}[{partition}]@{offset}"
        log = key.decode("utf-8", "replace") if key else None
        try:
            data = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            malformed = self.checker.malformed(where, f"not JSON: {exc}", now, log)
            self._emit([malformed], timestamp_ms)
            return
        if topic == self.sealed_topic:
            try:
                message = parse_message(data)
            except VerifierError as exc:
                self._emit([self.checker.malformed(where, str(exc), now, log)], timestamp_ms)
                return
            done = self.assembler.add(message)
            if done is not None:
                self._emit(self.checker.block(done[0], done[1], now), timestamp_ms)
        else:
            try:
                receipt = AnchorReceipt.from_json(data)
            except (VerifierError, ValueError, TypeError, KeyError) as exc:
                self._emit([self.checker.malformed(where, str(exc), now, log)], timestamp_ms)
                return
            self._receipt(receipt, timestamp_ms)

    def on_tick(self, caught_up: bool) -> None:
        """Periodic work: retried receipts, reorg re-checks and, once caught up, lateness."""
        now = _now_ms()
        retry, self._retry = self._retry, []
        self._chain_error = None
        for receipt, timestamp_ms in retry:
            self._receipt(receipt, timestamp_ms)
        if self.chain is not None and not self._retry:
            try:
                self._emit(self.checker.recheck_anchors(self.chain, now))
            except ChainUnavailableError as exc:
                self._chain_error = str(exc)
        if self._chain_error:
            _note(f"{self._chain_error}; retrying")
        if caught_up:
            self._emit(self.checker.late(now))

    def run(self, metrics: Metrics) -> int:
        from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError

        last_message = time.monotonic()
        next_tick = time.monotonic() + self.tick
        while not self.stop.is_set():
            msg = self.consumer.poll(0.5)
            now = time.monotonic()
            if msg is None:
                if now >= next_tick:
                    self.on_tick(caught_up=True)
                    metrics.update(self.checker)
                    next_tick = now + self.tick
                if self.idle_exit is not None and now - last_message >= self.idle_exit:
                    break
                continue
            if msg.error():
                err = msg.error()
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    fail(f"broker: {err.str()}", 3)
                _note(f"broker: {err.str()}")
                continue
            last_message = now
            kind, stamp = msg.timestamp()
            self.handle(
                msg.topic(),
                msg.partition(),
                msg.offset(),
                msg.key(),
                msg.value(),
                stamp if kind != TIMESTAMP_NOT_AVAILABLE else None,
            )
            metrics.update(self.checker)
            if now >= next_tick:
                self.on_tick(caught_up=False)
                next_tick = now + self.tick
        if self.idle_exit is not None:
            self.on_tick(caught_up=True)  # drained: the final checks
            metrics.update(self.checker)
            if self._chain_error:
                return 3
        return 1 if self.sinks.raised else 0


# --- the command -----------------------------------------------------------------------------


def _kinds_help() -> str:
    return "\n".join(f"  {kind} ({sev}): {text}." for kind, (sev, text) in KINDS.items())


HELP = f"""Watch audit.sealed and audit.anchors and raise an alert when a check fails.

Trusts only the pinned log keys (--log-key) and the chain (--rpc, --contract). Each block is
replayed as it arrives (signature, header chain, entries, tree root); each event's source and
sequence are followed for gaps and duplicates, and its id for reuse by another source;
forks and republished blocks are told apart; each anchor receipt is checked on chain
(canonical block, rootOf, inclusion proof) and re-checked for reorgs; blocks not anchored
within --anchor-late-after are reported.

An identical event sealed twice (same source, sequence and bytes: an at-least-once
redelivery) is counted in auditseal_monitor_replayed_events_total, not alerted. Memory is
bounded by --sequence-memory, --sequence-runs and --id-memory: a repeat older than what the
monitor remembers is the warning sequence_unchecked, never a critical alert.

Alerts are JSON lines on stdout (kind, severity, log, block, detail, time), POSTed to
--webhook, published to --alerts-topic and counted in auditseal_monitor_alerts_total{{kind}}.

\b
Alert kinds:
{_kinds_help()}

\b
Exit codes: 0 no alert, 1 alerts raised (with --once or --idle-exit), 2 usage error,
3 broker or chain unreachable.
"""


@click.command("monitor", help=HELP)
@bootstrap_option()
@log_key_option("Required.")
@rpc_option("[default: from `auditseal dev up`, else http://127.0.0.1:8545]")
@contract_pin_options
@click.option(
    "--no-chain",
    is_flag=True,
    help="Do not ask the chain: receipts are checked for coherence and coverage only "
    "(no reorg, rootOf or anchor_not_on_chain checks).",
)
@sealed_topic_option
@anchors_topic_option
@alerts_topic_option("Alerts are published to it, keyed by log; '' publishes none.")
@click.option(
    "--anchor-late-after",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds after its sealing time within which a block must be covered by an anchor "
    "receipt; later: anchor_late.",
)
@click.option(
    "--reorg-depth",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Chain blocks after which a receipt is no longer re-checked for reorgs.",
)
@click.option(
    "--check-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between reorg re-checks and lateness checks.",
)
@click.option(
    "--sequence-memory",
    type=click.IntRange(min=2),
    default=DEFAULT_SEQUENCE_MEMORY,
    show_default=True,
    help="Events (all sources together) whose first copy is kept to compare a repeated "
    "sequence number with; at least the newest half of them is kept.",
)
@click.option(
    "--sequence-runs",
    type=click.IntRange(min=1),
    default=DEFAULT_SEQUENCE_RUNS,
    show_default=True,
    help="Runs of consecutive sequence numbers kept per source; past that the lowest are "
    "forgotten.",
)
@click.option(
    "--id-memory",
    type=click.IntRange(min=2),
    default=DEFAULT_ID_MEMORY,
    show_default=True,
    help="Event ids kept to find one sealed from two sources (event_id_reused); at least the "
    "newest half of them is kept.",
)
@click.option(
    "--webhook",
    envvar="AUDITSEAL_MONITOR_WEBHOOK",
    show_envvar=True,
    help="URL each alert is POSTed to as JSON (retried with backoff; never blocks the checks).",
)
@click.option(
    "--webhook-retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries of a failed POST; the pause doubles from 0.5 s, up to 30 s.",
)
@click.option(
    "--webhook-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds one POST may take.",
)
@metrics_listen_option(f"127.0.0.1:{DEFAULT_METRICS_PORT}")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), hidden=True)
@click.option(
    "--from-beginning/--from-now",
    default=True,
    show_default=True,
    help="Report alerts for the whole history, or only for messages stamped (Kafka timestamp) "
    "after the start "
    "(the history is read either way: the replay state must be complete).",
)
@click.option(
    "--once",
    is_flag=True,
    help=f"Exit once the topics are drained (no message for {ONCE_IDLE:g} s, or --idle-exit).",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Exit after this many seconds without a message (implies the final checks of --once).",
)
def monitor(
    bootstrap: str | None,
    log_keys: tuple[str, ...],
    rpc: str | None,
    contract: str | None,
    chain_id: int | None,
    deployment: Path,
    no_chain: bool,
    sealed_topic: str,
    anchors_topic: str,
    alerts_topic: str,
    anchor_late_after: float,
    reorg_depth: int,
    check_interval: float,
    sequence_memory: int,
    sequence_runs: int,
    id_memory: int,
    webhook: str | None,
    webhook_retries: int,
    webhook_timeout: float,
    metrics_listen: tuple[str, int] | None,
    metrics_port: int | None,
    from_beginning: bool,
    once: bool,
    idle_exit: float | None,
) -> None:
    if not log_keys:
        fail("no pinned log key: give --log-key or set AUDITSEAL_LOG_KEY", 2)
    try:
        keys = [NoteVerifier.from_string(k) for k in log_keys]
    except FormatError as exc:
        fail(f"--log-key: {exc}", 2)
    from auditseal.infra.state import endpoints

    default_bootstrap, default_rpc = endpoints()
    bootstrap = bootstrap or default_bootstrap
    chain: Web3AnchorReader | None = None
    if not no_chain:
        contract, chain_id = resolve_contract_pin(contract, chain_id, deployment)
        if not contract:
            fail(
                f"no pinned contract: give --contract, a deployment record ({deployment}) "
                "or --no-chain",
                2,
            )
        try:
            from auditseal.verifier.chain import Web3AnchorReader  # web3 only when a chain is asked

            chain = Web3AnchorReader(rpc or default_rpc, contract)
            served = chain.chain_id()
            if not chain.has_code():
                fail(f"--contract: no code at {contract} on the chain", 2)
        except ChainUnavailableError as exc:
            fail(str(exc), 3)
        except FormatError as exc:
            fail(f"--contract: {exc}", 2)
        if chain_id is not None and served != chain_id:
            fail(f"--chain-id: the endpoint serves chain {served}, pinned {chain_id}", 2)
        chain_id = served
    if once and idle_exit is None:
        idle_exit = ONCE_IDLE

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"auditseal-monitor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "socket.connection.setup.timeout.ms": 10_000,
        }
    )
    try:
        topics = consumer.list_topics(timeout=15).topics
    except KafkaException as exc:
        fail(f"broker at {bootstrap} unreachable: {exc.args[0].str()}", 3)
    assignment: list[Any] = []
    for topic in (sealed_topic, anchors_topic):
        meta = topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            fail(f"topic {topic} does not exist on the broker at {bootstrap}", 3)
        for p in sorted(meta.partitions):
            tp = TopicPartition(topic, p, OFFSET_BEGINNING)
            assignment.append(tp)
    consumer.assign(assignment)

    metrics = Metrics()
    if metrics_port is not None:  # the old spelling, kept hidden for one release
        warn_alias("--metrics-port PORT", "--metrics-listen 127.0.0.1:PORT (or off)")
        metrics_listen = ("127.0.0.1", metrics_port) if metrics_port else None
    if metrics_listen is not None:
        from prometheus_client import start_http_server

        host, port = metrics_listen
        try:
            start_http_server(port, host, registry=metrics.registry)
        except OSError as exc:
            fail(f"--metrics-listen {host}:{port}: {exc.strerror}", 2)
    producer = (
        Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        if alerts_topic
        else None
    )
    sinks = Sinks(
        metrics,
        Webhook(webhook, webhook_retries, webhook_timeout) if webhook else None,
        producer,
        alerts_topic or None,
    )
    checker = Checker(
        keys,
        anchor_late_after_ms=int(anchor_late_after * 1000),
        contract=contract if chain is not None else None,
        chain_id=chain_id,
        reorg_depth=reorg_depth,
        sequence_memory=sequence_memory,
        sequence_runs=sequence_runs,
        id_memory=id_memory,
    )
    loop = Monitor(
        consumer,
        checker,
        sinks,
        chain,
        sealed_topic,
        anchors_topic,
        history_before_ms=None if from_beginning else _now_ms(),
        idle_exit=idle_exit,
        tick=check_interval,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop.set())
    _note(
        f"watching {sealed_topic} and {anchors_topic} on {bootstrap}"
        + (f", chain {chain_id} contract {contract}" if chain else ", no chain")
    )
    try:
        code = loop.run(metrics)
    finally:
        consumer.close()
        sinks.close(timeout=max(10.0, webhook_timeout * 2))
    _note(
        f"{checker.blocks_checked} blocks, {checker.events_checked} events, "
        f"{checker.receipts_checked} receipts checked; {sinks.raised} alert(s), "
        f"{checker.replays} replayed event(s)"
        + (
            f", {checker.unchecked} repeated sequence number(s) too old to compare"
            if checker.unchecked
            else ""
        )
    )
    sys.exit(code)
