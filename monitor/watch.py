"""``auditseal monitor``: watch ``audit.sealed`` and ``audit.anchors`` and raise alerts.

The checks are :class:`auditseal.monitor.checks.Checker`'s; this module is the I/O around it: a
confluent-kafka consumer assigned to every partition of both topics from the beginning (the
replay state must be complete) or, with ``--state``, from where the saved state stops (the
checker's snapshot and the offsets it reflects, written atomically every few seconds and at
exit), the verifier's reader of the anchor contract, and the alert sinks:
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from auditseal.cli.options import (
    alerts_topic_option,
    anchors_topic_option,
    bootstrap_option,
    contract_pin_options,
    kafka_config_option,
    log_key_option,
    metrics_listen_option,
    resolve_contract_pin,
    rpc_option,
    sealed_topic_option,
    server_tls_options,
)
from auditseal.cli.output import fail, warn_alias
from auditseal.monitor.checks import (
    DEFAULT_ID_MEMORY,
    DEFAULT_SEQUENCE_MEMORY,
    DEFAULT_SEQUENCE_RUNS,
    KINDS,
    STATE_FORMAT,
    Alert,
    Checker,
    StateError,
)
from auditseal.store.files import write_atomic
from auditseal.transport.kafka_settings import KafkaSettings
from auditseal.transport.listen import check_plaintext
from auditseal.transport.tls import ServerTLS
from auditseal.verifier.anchor import AnchorReceipt
from auditseal.verifier.anchoring import ChainUnavailableError
from auditseal.verifier.errors import FormatError, VerifierError
from auditseal.verifier.note import NoteVerifier
from auditseal.verifier.sealed import BlockAssembler, parse_message

if TYPE_CHECKING:
    from auditseal.verifier.chain import Web3AnchorReader

DEFAULT_METRICS_PORT = 9466
DEFAULT_STATE = Path(".auditseal/monitor/state.json")
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


# --- the saved state -------------------------------------------------------------------------

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> the next offset to read


class StateFile:
    """The monitor's saved state (docs/MONITOR.md, "State file"): the checker's snapshot and,
    per topic partition, the offset to resume at. Any fault is one line naming the file."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path, self.interval = path, interval
        self.failed = False

    def _refuse(self, detail: str) -> NoReturn:
        fail(f"--state {self.path}: {detail}; --reset-state starts over from the beginning", 2)

    def load(self, checker: Checker) -> Offsets | None:
        """Restore ``checker`` and return the saved offsets; None if there is no file yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refuse(f"cannot read it ({exc.strerror})")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._refuse(f"not JSON ({exc})")
        if not isinstance(data, dict):
            self._refuse("not a JSON object")
        if data.get("format") != STATE_FORMAT:
            self._refuse(f"format {data.get('format')!r}, this monitor reads {STATE_FORMAT!r}")
        offsets: Offsets = {}
        topics = data.get("topics")
        if not isinstance(topics, dict):
            self._refuse("topics: want an object")
        for topic, parts in topics.items():
            if not isinstance(parts, dict):
                self._refuse(f"topics[{topic!r}]: want an object")
            for part, offset in parts.items():
                if not part.isdigit() or type(offset) is not int or offset < 0:
                    self._refuse(f"topics[{topic!r}][{part!r}]: want a partition and an offset")
                offsets[topic, int(part)] = offset
        try:
            checker.restore(data.get("checker"))
        except StateError as exc:
            self._refuse(str(exc))
        return offsets

    def save(self, checker: Checker, offsets: Offsets) -> None:
        """Write atomically, owner-only (the file is trusted on the next start)."""
        topics: dict[str, dict[str, int]] = {}
        for (topic, part), offset in sorted(offsets.items()):
            topics.setdefault(topic, {})[str(part)] = offset
        data = {
            "format": STATE_FORMAT,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "topics": topics,
            "checker": checker.snapshot(),
        }
        try:
            write_atomic(self.path, orjson.dumps(data), 0o600)
        except OSError as exc:
            if not self.failed:  # said once; the next save tries again
                _note(f"state not saved to {self.path}: {exc.strerror or exc}")
            self.failed = True
            return
        self.failed = False


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
        state: StateFile | None = None,
        offsets: Offsets | None = None,
    ) -> None:
        self.consumer, self.checker, self.sinks, self.chain = consumer, checker, sinks, chain
        self.sealed_topic, self.anchors_topic = sealed_topic, anchors_topic
        self.history_before_ms = history_before_ms
        self.idle_exit, self.tick = idle_exit, tick
        self.assembler = BlockAssembler()
        self.stop = threading.Event()
        self._retry: list[tuple[AnchorReceipt, int | None, tuple[str, int, int]]] = []
        self._chain_error: str | None = None
        self.state = state
        self.positions: Offsets = dict(offsets or {})  # next offset per partition, as read
        self.read = 0
        # Messages the checker's snapshot does not hold yet, by (topic, partition, offset): a
        # block's first part until its last is in, blocks held before a hole, receipts to
        # retry. The saved offsets stop at the oldest of them, so a restart reads them again.
        self._partial: dict[str, tuple[str, int, int]] = {}
        self._held: dict[tuple[str, int], tuple[str, int, int]] = {}

    def _emit(self, alerts: list[Alert], timestamp_ms: int | None = None) -> None:
        history = self.history_before_ms
        if history is not None and timestamp_ms is not None and timestamp_ms < history:
            return  # --from-now: history rebuilds the state, its alerts are not repeated
        for alert in alerts:
            self.sinks.emit(alert)

    def _receipt(
        self, receipt: AnchorReceipt, timestamp_ms: int | None, where: tuple[str, int, int]
    ) -> None:
        try:
            alerts = self.checker.receipt(receipt, self.chain, _now_ms())
        except ChainUnavailableError as exc:
            self._chain_error = str(exc)
            self._retry.append((receipt, timestamp_ms, where))
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
            if message.part == 0:
                self._partial[message.origin] = (topic, partition, offset)
            done = self.assembler.add(message)
            if done is not None:
                first = self._partial.pop(message.origin, (topic, partition, offset))
                self._emit(self.checker.block(done[0], done[1], now), timestamp_ms)
                self._held[message.origin, done[0].header.number] = first
                held = self.checker.held()
                self._held = {k: v for k, v in self._held.items() if k in held}
        else:
            try:
                receipt = AnchorReceipt.from_json(data)
            except (VerifierError, ValueError, TypeError, KeyError) as exc:
                self._emit([self.checker.malformed(where, str(exc), now, log)], timestamp_ms)
                return
            self._receipt(receipt, timestamp_ms, (topic, partition, offset))

    def resume_offsets(self) -> Offsets:
        """Per partition, the offset up to which the checker's snapshot reflects the topic."""
        out = dict(self.positions)
        pending = [*self._partial.values(), *self._held.values(), *(r[2] for r in self._retry)]
        for topic, partition, offset in pending:
            out[topic, partition] = min(out.get((topic, partition), offset), offset)
        return out

    def save(self) -> None:
        if self.state is not None:
            self.state.save(self.checker, self.resume_offsets())

    def on_tick(self, caught_up: bool) -> None:
        """Periodic work: retried receipts, reorg re-checks and, once caught up, lateness."""
        now = _now_ms()
        retry, self._retry = self._retry, []
        self._chain_error = None
        for receipt, timestamp_ms, where in retry:
            self._receipt(receipt, timestamp_ms, where)
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
        interval = self.state.interval if self.state is not None else 0.0
        next_save = time.monotonic() + interval
        saved = dict(self.positions)
        while not self.stop.is_set():
            msg = self.consumer.poll(0.5)
            now = time.monotonic()
            if self.state is not None and now >= next_save:
                next_save = now + interval
                if self.positions != saved:  # nothing read, nothing to write
                    self.save()
                    saved = dict(self.positions)
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
            self.positions[msg.topic(), msg.partition()] = msg.offset() + 1
            self.read += 1
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
@kafka_config_option()
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
@server_tls_options("the metrics endpoint")
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
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    is_flag=False,
    flag_value=str(DEFAULT_STATE),
    default=None,
    envvar="AUDITSEAL_MONITOR_STATE",
    show_envvar=True,
    help=f"Keep the monitor's state in this file (--state alone: {DEFAULT_STATE}) and resume "
    "from it: the topics are read from where it stops, not from the beginning. Written "
    "atomically, owner-only, every --state-interval seconds and at exit.",
)
@click.option(
    "--reset-state",
    is_flag=True,
    help="Ignore an existing --state file (also one that does not load) and start over from "
    "the beginning of the topics; it is overwritten.",
)
@click.option(
    "--state-interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between writes of the --state file (only when something was read).",
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
    kafka_settings: KafkaSettings,
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
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    from_beginning: bool,
    state_path: Path | None,
    reset_state: bool,
    state_interval: float,
    once: bool,
    idle_exit: float | None,
) -> None:
    if metrics_port is not None:  # the old spelling, kept hidden for one release
        warn_alias("--metrics-port PORT", "--metrics-listen 127.0.0.1:PORT (or off)")
        metrics_listen = ("127.0.0.1", metrics_port) if metrics_port else None
    if metrics_listen is None and tls is not None:
        fail("--tls-cert: the metrics endpoint is off (--metrics-listen off)", 2)
    if metrics_listen is not None:  # refused (exit 2) before anything starts
        check_plaintext(metrics_listen, tls, insecure_plaintext, "the metrics endpoint")
        if tls is not None:
            tls.context()
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
    state = StateFile(state_path, state_interval) if state_path is not None else None
    saved = None if state is None or reset_state else state.load(checker)

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

    kafka_config = kafka_settings.confluent()  # security properties, from --kafka-config
    consumer = Consumer(
        {
            **kafka_config,
            "bootstrap.servers": bootstrap,
            "group.id": f"auditseal-monitor-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "socket.connection.setup.timeout.ms": 10_000,
            # A saved offset the broker no longer has (a recreated topic) restarts the
            # partition from its first message, never from its end.
            "auto.offset.reset": "earliest",
        }
    )
    try:
        topics = consumer.list_topics(timeout=15).topics
    except KafkaException as exc:
        fail(f"broker at {bootstrap} unreachable: {exc.args[0].str()}", 3)
    assignment: list[Any] = []
    lost: list[Alert] = []
    offsets: Offsets = {}
    for topic in (sealed_topic, anchors_topic):
        meta = topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            fail(f"topic {topic} does not exist on the broker at {bootstrap}", 3)
        for p in sorted(meta.partitions):
            resume = (saved or {}).get((topic, p))
            if resume is not None:
                tp = TopicPartition(topic, p)
                try:
                    low, _high = consumer.get_watermark_offsets(tp, timeout=15)
                except KafkaException as exc:
                    fail(f"broker at {bootstrap}: {exc.args[0].str()}", 3)
                if resume < low:
                    lost.append(
                        checker.history_lost(
                            f"{topic}[{p}]",
                            f"the saved state stops at offset {resume}, the topic now starts at "
                            f"{low}: {low - resume} message(s) were deleted unread (retention) "
                            "and never checked; a log whose blocks were among them shows a "
                            "chain_break next. Check those logs on the store (auditseal verify "
                            "--all), then restart with --reset-state",
                            _now_ms(),
                        )
                    )
                    resume = low
                offsets[topic, p] = resume
            assignment.append(
                TopicPartition(topic, p, OFFSET_BEGINNING if resume is None else resume)
            )
    consumer.assign(assignment)

    metrics = Metrics()
    if metrics_listen is not None:
        from auditseal.transport.listen import serve_metrics

        host, port = metrics_listen
        try:
            serve_metrics(metrics_listen, metrics.registry, tls, insecure_plaintext)
        except OSError as exc:
            fail(f"--metrics-listen {host}:{port}: {exc.strerror}", 2)
    producer = (
        Producer(
            {
                **kafka_config,
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
            }
        )
        if alerts_topic
        else None
    )
    sinks = Sinks(
        metrics,
        Webhook(webhook, webhook_retries, webhook_timeout) if webhook else None,
        producer,
        alerts_topic or None,
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
        state=state,
        offsets=offsets,
    )
    for alert in lost:
        sinks.emit(alert)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop.set())
    _note(
        f"watching {sealed_topic} and {anchors_topic} on {bootstrap}"
        + (f", chain {chain_id} contract {contract}" if chain else ", no chain")
        + (
            ""
            if state is None
            else f"; state {state.path}, " + ("resumed" if saved is not None else "new")
        )
    )
    try:
        code = loop.run(metrics)
        loop.save()  # at exit: the next start goes on from here
    finally:
        consumer.close()
        sinks.close(timeout=max(10.0, webhook_timeout * 2))
    _note(
        f"{loop.read} messages read, "
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
