"""Sealer throughput: Kafka to committed blocks, vs a bare Faust agent, same run, same records.

Run ``.venv/bin/python -m bench.sealer`` from the repository root. It prints a markdown table and
rewrites the ``sealer`` section of docs/BENCHMARKS.md (``--no-write`` to only print). ``--quick``
is a short smoke run for the tests and never writes the docs.

The benchmark starts its own Tansu broker (``infra.broker.spawn``) on a free loopback port and
stops it at the end. Before any timing it fills one topic of 6 partitions with N realistic
events: a pool of events built with the ``ingest.events`` builders, driven by the traffic
simulator's model (``TrafficModel`` over four simulated proxies, one of each kind), reused in
turn with a fresh ``id`` and the next ``sequence`` of its source, produced by a bare
``confluent_kafka.Producer`` (key = source, partitions in turn so that each holds N/6). Every
run then consumes that same topic from the beginning with a fresh consumer group:

* bare agent (run A): ``python -m bench._faust_counter``, a Faust app with the sealer's Faust
  settings whose agent iterates ``stream.noack().events()`` and acknowledges each event, counting;
  it says when it received its first and its N-th record. Events/s = (N - 1) / that time.
* sealer (run B): ``auditseal seal`` (defaults: ``--max-events 1000 --max-interval 1``) with a
  fresh store file, a key from ``auditseal keygen`` and a fresh sealed topic. The benchmark reads
  the store (read-only, every 20 ms) until it holds N entries. Events/s = (N - entries at the
  first poll that saw any) / (time of the poll that saw N - time of that first poll): sustained
  events/s to committed (stored, signed) blocks. Its Prometheus counter
  ``auditseal_sealer_events_total`` is checked to be N at the end.

Runs alternate (A, B, A, B, ...) and the table shows medians. While the sealer runs, its peak RSS
(``VmHWM`` of /proc/PID/status) is read when the store first holds N/10 entries and again at N.
A per-event CPU breakdown of the sealing pipeline, run in this process on the same records
without Kafka or Faust, says where the sealer's time goes; ``--profile`` adds a cProfile of one
more sealer worker (printed to stderr, not part of the table).
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from auditseal.infra import broker
from auditseal.infra.processes import free_port, tail
from auditseal.ingest.simulator import TrafficModel, simulated_proxies
from bench._report import (
    BENCHMARKS_MD,
    Stats,
    markdown_table,
    replace_titled_section,
    section_header,
    significant,
)

COMMAND = ".venv/bin/python -m bench.sealer"
SECTION = "sealer"
TITLE = "## Sealer: Kafka to committed blocks vs a bare Faust agent"
TABLE_HEADER = ("Measurement", "Events/s", "Rounds (min-max)", "Ratio to bare agent")
DEFAULT_N = 1_000_000
QUICK_N = 20_000
PARTITIONS = 6
PROXIES = 4  # one of each kind, as bench.ingest
POOL = 50_000  # events built with the builders; reused with fresh ids
MAX_EVENTS = 1000  # the defaults of `auditseal seal`
MAX_INTERVAL = 1.0
POLL_S = 0.02
ORIGIN_PREFIX = "auditseal.local"
AIM_RATIO = 0.8
AIM_MEMORY_GROWTH = 0.10
BREAKDOWN_N = 100_000

_perf = time.perf_counter


def log(msg: str) -> None:
    print(f"[bench.sealer {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the events -----------------------------------------------------------------------------


def build_pool(size: int, seed: int) -> list[dict[str, Any]]:
    model = TrafficModel(simulated_proxies(PROXIES), seed)
    counts: Counter[str] = Counter()
    pool = []
    for _ in range(size):
        proxy, build = model.next()
        counts[proxy.source] += 1
        pool.append(build(counts[proxy.source]))
    return pool


def records(pool: Sequence[dict[str, Any]], n: int) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of N events: the pool in turn, each with a fresh id and the next
    sequence number of its source (valid events, as the builders made them)."""
    sequences: Counter[str] = Counter()
    dumps, size = orjson.dumps, len(pool)
    for i in range(n):
        event = pool[i % size]
        source = event["source"]
        sequences[source] += 1
        yield (
            source.encode(),
            dumps({**event, "id": str(uuid.uuid4()), "sequence": sequences[source]}),
        )


@dataclass(frozen=True)
class Prefill:
    seconds: float
    mean_bytes: float


def prefill(bootstrap: str, topic: str, pool: Sequence[dict[str, Any]], n: int) -> Prefill:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    acked = [0, 0]

    def delivered(err: Any, _msg: Any) -> None:
        acked[0 if err is None else 1] += 1

    produce, poll = producer.produce, producer.poll
    total = 0
    t0 = _perf()
    for i, (key, value) in enumerate(records(pool, n)):
        total += len(value)
        while True:
            try:
                produce(topic, value, key, partition=i % PARTITIONS, on_delivery=delivered)
                break
            except BufferError:
                poll(0.005)
        poll(0)
    left = producer.flush(300)
    seconds = _perf() - t0
    if left or acked[1] or acked[0] != n:
        raise RuntimeError(f"pre-fill: {acked[0]} acknowledged, {acked[1]} failed, {left} left")
    return Prefill(seconds, total / n)


# --- processes ------------------------------------------------------------------------------


def auditseal_argv() -> list[str]:
    """The ``auditseal`` command of this virtualenv (the console script, else its entry point)."""
    script = Path(sys.executable).with_name("auditseal")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from auditseal.cli.main import main; main()"]


def vm_kib(pid: int, field: str) -> int:
    """A memory figure of ``pid`` from /proc/PID/status (``VmHWM``: peak RSS; ``VmRSS``), KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for PID {pid}")


def vm_hwm_kib(pid: int) -> int:
    return vm_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _die_with_parent() -> None:
    """In a child, before exec: get SIGKILL when the benchmark dies (even by SIGKILL)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a Faust worker's clean stop), then SIGKILL if it is still there."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"PID {proc.pid} still running {timeout:g} s after SIGTERM: killing it")
            proc.kill()
            proc.wait(10)


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds used so far by the measured process and by the broker."""

    process: float
    broker: float

    @classmethod
    def of(cls, pid: int, broker_pid: int | None) -> Snapshot:
        return cls(cpu_seconds(pid), cpu_seconds(broker_pid) if broker_pid else 0.0)


@dataclass
class Run:
    seconds: float  # the timed window
    events: int  # records received (A) or sealed (B) in that window
    startup: float  # process start until the window opened
    hwm_mark_kib: int  # VmHWM when N/10 records were received (A) or sealed (B)
    hwm_end_kib: int  # VmHWM at N
    rss_end_kib: int  # VmRSS at N
    cpu: float  # CPU seconds of the process inside the window
    broker_cpu: float  # CPU seconds of the broker inside the window
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def busy(self) -> float:
        """The process's CPU time / the window's wall time (1.0: one core, all the time)."""
        return self.cpu / self.seconds

    @property
    def broker_busy(self) -> float:
        return self.broker_cpu / self.seconds


def run_counter(
    bootstrap: str,
    topic: str,
    n: int,
    mark: int,
    workdir: Path,
    name: str,
    timeout: float,
    broker_pid: int | None = None,
) -> Run:
    """Run A: the bare Faust agent, from its first record to its N-th."""
    state = workdir / name
    log_path = workdir / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "bench._faust_counter",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        f"bench-{name}-{uuid.uuid4().hex[:8]}",
        "--n",
        str(n),
        "--mark",
        str(mark),
        "--state-dir",
        str(state),
    ]
    lines: queue.Queue[tuple[str, float]] = queue.Queue()
    with open(log_path, "wb") as err:
        t_spawn = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=_ROOT,
            preexec_fn=_die_with_parent,
        )
    try:

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put((raw.decode(errors="replace").strip(), time.monotonic()))

        threading.Thread(target=read, daemon=True).start()
        first = done = None
        cpu0 = cpu1 = None
        hwm_mark = 0
        deadline = time.monotonic() + timeout
        while done is None:
            if proc.poll() is not None and lines.empty():
                raise RuntimeError(f"{name}: the agent exited: {tail(log_path, 20)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no 'done' within {timeout:g} s: {tail(log_path, 20)}")
            try:
                line, _ = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            # Faust's worker may write terminal control codes to the same stream.
            said = re.search(r"(first|mark|done) (\d+\.\d+)", line)
            if said is None:
                continue
            word, when = said.group(1), float(said.group(2))
            if word == "first":
                first, cpu0 = when, Snapshot.of(proc.pid, broker_pid)
            elif word == "mark":
                hwm_mark = vm_hwm_kib(proc.pid)
            else:
                done, cpu1 = when, Snapshot.of(proc.pid, broker_pid)
                hwm_end, rss_end = vm_hwm_kib(proc.pid), vm_kib(proc.pid, "VmRSS")
        if first is None or cpu0 is None or cpu1 is None:
            raise RuntimeError(f"{name}: 'done' before 'first'")
    finally:
        stop_process(proc)
    return Run(
        done - first,
        n - 1,
        first - t_spawn,
        hwm_mark,
        hwm_end,
        rss_end,
        cpu1.process - cpu0.process,
        cpu1.broker - cpu0.broker,
    )


class StoreProbe:
    """Read-only look at a store another process writes: entries held, over every log."""

    SQL = "SELECT coalesce(sum(m), 0) FROM (SELECT max(end_idx) AS m FROM blocks GROUP BY log_id)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def entries(self) -> int:
        if self._db is None:
            if not self.path.exists():
                return 0
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            row = self._db.execute(self.SQL).fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0
        return int(row[0])

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(sealed_at_ms, size, log_id)`` of every block, in sealing order."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT sealed_at_ms, end_idx - start_idx, log_id FROM blocks ORDER BY sealed_at_ms"
        ).fetchall()
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def events_total(port: int) -> float:
    """``auditseal_sealer_events_total`` summed over logs, from the worker's endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^auditseal_sealer_events_total\{[^}]*\} (\S+)$", text, re.M)
    )


def seal_argv(
    bootstrap: str, topic: str, sealed_topic: str, store: Path, key: Path, state: Path, port: int
) -> list[str]:
    return [
        "seal",
        "--store",
        str(store),
        "--key",
        str(key),
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--sealed-topic",
        sealed_topic,
        "--group",
        f"bench-{state.name}-{uuid.uuid4().hex[:8]}",
        "--state-dir",
        str(state),
        "--max-events",
        str(MAX_EVENTS),
        "--max-interval",
        str(MAX_INTERVAL),
        "--metrics-listen",
        f"127.0.0.1:{port}",
    ]


def run_sealer(
    bootstrap: str,
    topic: str,
    n: int,
    mark: int,
    workdir: Path,
    key: Path,
    name: str,
    timeout: float,
    broker_pid: int | None = None,
    prefix: Sequence[str] | None = None,
) -> Run:
    """Run B: ``auditseal seal`` until its store holds N entries."""
    sealed_topic = f"bench-sealed-{name}-{os.getpid()}"
    broker.create_topic(bootstrap, sealed_topic, 1)
    store = workdir / f"{name}.db"
    log_path = workdir / f"{name}.log"
    port = free_port()
    args = seal_argv(bootstrap, topic, sealed_topic, store, key, workdir / name, port)
    argv = [*(prefix or auditseal_argv()), *args]
    probe = StoreProbe(store)
    try:
        with open(log_path, "wb") as out:
            t_spawn = time.monotonic()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=_ROOT,
                preexec_fn=_die_with_parent,
            )
        try:
            first: tuple[float, int, Snapshot] | None = None
            hwm_mark = 0
            deadline = time.monotonic() + timeout
            while True:
                count = probe.entries()
                now = time.monotonic()
                if count and first is None:
                    first = (now, count, Snapshot.of(proc.pid, broker_pid))
                if count >= mark and not hwm_mark:
                    hwm_mark = vm_hwm_kib(proc.pid)
                if count >= n:
                    cpu1, hwm_end = Snapshot.of(proc.pid, broker_pid), vm_hwm_kib(proc.pid)
                    rss_end = vm_kib(proc.pid, "VmRSS")
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"{name}: the worker exited: {tail(log_path, 20)}")
                if now > deadline:
                    raise RuntimeError(
                        f"{name}: {count:,} of {n:,} sealed after {timeout:g} s: "
                        f"{tail(log_path, 20)}"
                    )
                time.sleep(POLL_S)
            assert first is not None
            if count != n:
                raise RuntimeError(f"{name}: the store holds {count:,} entries, not {n:,}")
            # The worker counts a block once it is published, after the commit the probe saw.
            metric_deadline = time.monotonic() + 30
            while (sealed_metric := events_total(port)) < n and time.monotonic() < metric_deadline:
                time.sleep(0.1)
            blocks = probe.blocks()
        finally:
            stop_process(proc)
    finally:
        probe.close()
        broker.delete_topics(bootstrap, [sealed_topic])
    if sealed_metric != n:
        raise RuntimeError(f"{name}: auditseal_sealer_events_total is {sealed_metric}, not {n}")
    # The end of the run: the last records of each partition (fewer than --max-events) wait
    # for --max-interval before their block closes.
    full = [b for b in blocks if b[1] >= MAX_EVENTS]
    tail_s = (blocks[-1][0] - full[-1][0]) / 1000 if full else 0.0
    short = sum(1 for b in blocks if b[1] < MAX_EVENTS)
    detail = {
        "blocks": len(blocks),
        "short_blocks": short,
        "tail_s": tail_s,
        "rate_10_20": _rate_between(blocks, n // 10, n // 5),
        "rate_80_90": _rate_between(blocks, n * 8 // 10, n * 9 // 10),
    }
    t0, c0, cpu0 = first
    return Run(
        now - t0,
        n - c0,
        t0 - t_spawn,
        hwm_mark,
        hwm_end,
        rss_end,
        cpu1.process - cpu0.process,
        cpu1.broker - cpu0.broker,
        detail,
    )


def _rate_between(blocks: Sequence[tuple[int, int, int]], lo: int, hi: int) -> float:
    """Entries/s committed while the store grew from ``lo`` to ``hi`` entries (block times)."""
    total, start, end = 0, None, None
    for sealed_at_ms, size, _ in blocks:
        total += size
        if start is None and total >= lo:
            start = (sealed_at_ms, total)
        if total >= hi:
            end = (sealed_at_ms, total)
            break
    if start is None or end is None or end[0] <= start[0]:
        return 0.0
    return (end[1] - start[1]) / ((end[0] - start[0]) / 1000)


# --- where the sealer's time goes: the pipeline in this process, no Kafka, no Faust -------------


@dataclass(frozen=True)
class Costs:
    """Microseconds per event of each step (medians over passes) and the oversized blocks."""

    us: dict[str, float]
    records: int
    blocks: int
    oversized_blocks: int  # blocks with a sealed-stream message over Faust's default limit
    largest_message: int  # aiokafka's size estimate of the largest message, bytes
    sealed_bytes: float  # sealed-stream bytes per event
    producer_limit: int  # the worker's producer_max_request_size


def step_costs(
    pool: Sequence[dict[str, Any]],
    m: int,
    workdir: Path,
    topic: str,
    producer_limit: int,
    passes: int = 3,
) -> Costs:
    """The sealing steps on ``m`` of the benchmark's records, ``passes`` times (fresh stores)."""
    runs = [
        _step_costs_once(pool, m, workdir / f"steps-{i}", topic, producer_limit)
        for i in range(passes)
    ]
    us = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
    _, blocks, oversized, largest, sealed_bytes = runs[0]
    return Costs(us, m, blocks, oversized, largest, sealed_bytes, producer_limit)


def producer_limit(workdir: Path, key: Path) -> int:
    """The ``producer_max_request_size`` of the worker's Faust app (built, never started)."""
    from auditseal.ingest.envelope import triage
    from auditseal.sealer.app import WorkerConfig, create_app
    from auditseal.sealer.pipeline import SealerConfig

    config = WorkerConfig(
        bootstrap="127.0.0.1:9",
        store_path=workdir / "limit.db",
        key_file=key,
        state_dir=workdir / "limit",
        sealer=SealerConfig(),
        metrics_listen=None,
    )
    app, worker = create_app(config, triage)
    worker.store.close()
    return int(app.conf.producer_max_request_size)


def _step_costs_once(
    pool: Sequence[dict[str, Any]], m: int, workdir: Path, topic: str, limit: int
) -> tuple[dict[str, float], int, int, int, float]:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    from auditseal.ingest.envelope import triage
    from auditseal.sealer.blocks import build_block
    from auditseal.sealer.log_writer import LogWriter
    from auditseal.sealer.pipeline import KafkaRecord, Sealer, SealerConfig
    from auditseal.sealer.sealed_stream import encode_block
    from auditseal.sealer.signer import Signer
    from auditseal.store.blockstore import BlockStore
    from auditseal.store.model import Record

    workdir.mkdir(parents=True, exist_ok=True)
    now_ms = time.time_ns() // 1_000_000
    kafka = [
        KafkaRecord(topic, i % PARTITIONS, i // PARTITIONS, now_ms, k, v)
        for i, (k, v) in enumerate(records(pool, m))
    ]
    signer = Signer.generate("bench.sealer")
    costs: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        t0 = _perf()
        fn()
        costs[name] = (_perf() - t0) / m * 1e6

    triaged: list[tuple[str | None, str | None]] = []
    timed("triage", lambda: triaged.extend(triage(r.value) for r in kafka))
    flagged = sum(1 for _, flag in triaged if flag)
    if flagged:
        raise RuntimeError(f"{flagged} of the benchmark's events are flagged invalid")
    by_origin: dict[str, list[Record]] = {}
    for r, (event_id, flag) in zip(kafka, triaged, strict=True):
        by_origin.setdefault(f"{ORIGIN_PREFIX}/{topic}/{r.partition}", []).append(
            Record(r.offset, r.timestamp_ms, r.key, r.value, event_id, flag)
        )

    store = BlockStore.open(workdir / "steps.db", create=True)
    built_blocks: list[Any] = []

    def build_all() -> None:
        for origin, rs in by_origin.items():
            tip = store.tip(origin)
            for i in range(0, len(rs), MAX_EVENTS):
                built = build_block(tip, rs[i : i + MAX_EVENTS], signer, now_ms)
                built_blocks.append(built)
                tip = built.tip

    timed("build", build_all)

    def store_all() -> None:
        for b in built_blocks:
            store.append_block(b)

    timed("store", store_all)
    messages: list[list[bytes]] = []
    timed(
        "encode",
        lambda: messages.extend(encode_block(b.block, b.records, b.gaps) for b in built_blocks),
    )

    def outbox() -> None:
        for b in built_blocks:
            origin = b.block.header.origin
            store.unpublished(origin)
            store.mark_published(origin, b.block.header.number)

    timed("outbox", outbox)
    store.close()
    # What Faust's producer checks before sending: aiokafka's estimate of the record's size.
    sizes = [
        [
            DefaultRecordBatchBuilder.estimate_size_in_bytes(b.block.header.origin.encode(), v, [])
            for v in ms
        ]
        for b, ms in zip(built_blocks, messages, strict=True)
    ]
    oversized = sum(1 for ss in sizes if max(ss) > limit)
    largest = max(max(ss) for ss in sizes)

    # The whole pipeline as the worker runs it, on a fresh store: add (triage, buffer, build,
    # commit) and, for each block, the outbox query, the encoding and the publication mark.
    store = BlockStore.open(workdir / "pipeline.db", create=True)
    writer = LogWriter(store, signer, lambda: time.time_ns() // 1_000_000)
    sealer = Sealer(writer, SealerConfig(ORIGIN_PREFIX, MAX_EVENTS, 3600.0), triage)

    def publish(sealed: Any) -> None:
        origin = sealed.block.header.origin
        for number in store.unpublished(origin):
            encode_block(sealed.block, sealed.records, sealed.gaps)
            store.mark_published(origin, number)

    def pipeline() -> None:
        for r in kafka:
            sealed = sealer.add(r)
            if sealed is not None:
                publish(sealed)
        for sealed in sealer.flush():  # the last records of each partition
            publish(sealed)

    timed("pipeline", pipeline)
    store.close()
    for f in workdir.iterdir():
        f.unlink()
    sealed_bytes = sum(len(v) for ms in messages for v in ms) / m
    return costs, len(built_blocks), oversized, largest, sealed_bytes


# --- the run ----------------------------------------------------------------------------------


_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    n: int
    repeat: int
    seed: int
    profile: bool
    quick: bool

    @property
    def mark(self) -> int:
        return self.n // 10


@dataclass
class Result:
    counter: list[Run]
    sealer: list[Run]
    prefill: Prefill
    costs: Costs
    load: str


def make_key(workdir: Path) -> Path:
    out = subprocess.run(
        [*auditseal_argv(), "keygen", "--name", "bench.sealer", "--out", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=_ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"auditseal keygen failed: {out.stderr}")
    return workdir / "bench.sealer.key"


def run(cfg: Config, workdir: Path) -> Result:
    log(f"building a pool of {min(POOL, cfg.n):,} events from {PROXIES} simulated proxies")
    pool = build_pool(min(POOL, cfg.n), cfg.seed)
    key = make_key(workdir)
    timeout = max(120.0, cfg.n / 2_000)
    topic = f"bench-events-{os.getpid()}"
    service = broker.spawn(free_port(), workdir / "broker.log")
    try:
        broker.wait_ready(service, timeout=60)
        bootstrap, broker_pid = service.address, service.pid
        log(f"Tansu broker at {bootstrap}")
        broker.create_topic(bootstrap, topic, PARTITIONS)
        fill = prefill(bootstrap, topic, pool, cfg.n)
        log(
            f"pre-filled {topic} with {cfg.n:,} events ({fill.mean_bytes:.0f} bytes on average) "
            f"in {fill.seconds:.1f} s"
        )
        counter: list[Run] = []
        sealer: list[Run] = []
        load_before = os.getloadavg()[0]
        for r in range(cfg.repeat):
            name = f"agent-{r}"
            a = run_counter(bootstrap, topic, cfg.n, cfg.mark, workdir, name, timeout, broker_pid)
            counter.append(a)
            log(
                f"round {r + 1}/{cfg.repeat} bare agent: {a.seconds:.2f} s, {a.rate:,.0f} events/s"
                f" (first record {a.startup:.1f} s after start), agent {a.busy:.0%} busy, broker "
                f"{a.broker_busy:.0%}, VmHWM {a.hwm_end_kib // 1024} MiB"
            )
            name = f"sealer-{r}"
            b = run_sealer(
                bootstrap, topic, cfg.n, cfg.mark, workdir, key, name, timeout, broker_pid
            )
            sealer.append(b)
            (workdir / f"{name}.db").unlink()
            log(
                f"round {r + 1}/{cfg.repeat} sealer: {b.seconds:.2f} s, {b.rate:,.0f} events/s "
                f"(first block {b.startup:.1f} s after start), worker {b.busy:.0%} busy, broker "
                f"{b.broker_busy:.0%}, VmHWM {b.hwm_mark_kib // 1024} MiB at {cfg.mark:,}, "
                f"{b.hwm_end_kib // 1024} MiB at {cfg.n:,}; {b.detail}"
            )
        load = f"{load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after"
        if cfg.profile:
            profile_sealer(bootstrap, topic, cfg, workdir, key, timeout)
    finally:
        broker.stop(service, timeout=5.0)
    m = min(cfg.n, BREAKDOWN_N)
    log(f"per-event costs of the pipeline in this process, on {m:,} records")
    costs = step_costs(pool, m, workdir / "steps", topic, producer_limit(workdir, key))
    return Result(counter, sealer, fill, costs, load)


def profile_sealer(
    bootstrap: str,
    topic: str,
    cfg: Config,
    workdir: Path,
    key: Path,
    timeout: float,
) -> None:
    """One more sealer worker under cProfile; its top functions to stderr."""
    import pstats

    wrapper = workdir / "auditseal_main.py"
    wrapper.write_text("from auditseal.cli.main import main\n\nmain()\n", encoding="utf-8")
    out = workdir / "sealer.prof"
    prefix = [sys.executable, "-m", "cProfile", "-o", str(out), str(wrapper)]
    b = run_sealer(
        bootstrap, topic, cfg.n, cfg.mark, workdir, key, "sealer-prof", timeout, None, prefix
    )
    log(f"sealer under cProfile: {b.rate:,.0f} events/s; top functions by own time:")
    stats = pstats.Stats(str(out), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)


# --- the report -------------------------------------------------------------------------------


def _rate(per_s: float) -> str:
    return f"{significant(per_s)} events/s"


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(cfg: Config, result: Result) -> tuple[list[list[str]], list[str]]:
    a, b = (Stats.of([r.rate for r in runs]) for runs in (result.counter, result.sealer))
    ratio = b.median / a.median
    mark_hwm = statistics.median(r.hwm_mark_kib for r in result.sealer)
    end_hwm = statistics.median(r.hwm_end_kib for r in result.sealer)
    growth = end_hwm / mark_hwm - 1
    agent_hwm = statistics.median(r.hwm_end_kib for r in result.counter)
    rows = [
        [
            "Bare Faust agent: `stream.noack().events()`, `event.ack()`, count "
            "(`bench._faust_counter` subprocess; baseline)",
            _rate(a.median),
            f"{significant(a.minimum)}-{significant(a.maximum)}",
            "1.00x",
        ],
        [
            f"`auditseal seal --max-events {MAX_EVENTS} --max-interval {MAX_INTERVAL:g}` "
            "subprocess: Kafka to committed blocks (stored, signed; published)",
            _rate(b.median),
            f"{significant(b.minimum)}-{significant(b.maximum)}",
            f"{ratio:.2f}x",
        ],
        [
            f"Sealer peak RSS (`VmHWM`) when the store holds {cfg.mark:,} entries → {cfg.n:,}",
            f"{_mib(mark_hwm)} → {_mib(end_hwm)} ({growth:+.0%})",
            ", ".join(f"{r.hwm_mark_kib // 1024}→{r.hwm_end_kib // 1024}" for r in result.sealer),
            "-",
        ],
        [
            f"Bare agent peak RSS (`VmHWM`) at {cfg.mark:,} → {cfg.n:,} records",
            f"{_mib(statistics.median(r.hwm_mark_kib for r in result.counter))} → "
            f"{_mib(agent_hwm)}",
            ", ".join(f"{r.hwm_mark_kib // 1024}→{r.hwm_end_kib // 1024}" for r in result.counter),
            "-",
        ],
    ]

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    c = result.costs
    us = c.us
    a_us, b_us = 1e6 / a.median, 1e6 / b.median

    def med(runs: list[Run], f: Callable[[Run], float]) -> float:
        return statistics.median(f(r) for r in runs)

    a_cpu = med(result.counter, lambda r: r.cpu / r.events * 1e6)
    b_cpu = med(result.sealer, lambda r: r.cpu / r.events * 1e6)
    steps = us["triage"] + us["build"] + us["store"] + us["encode"] + us["outbox"]
    tails = med(result.sealer, lambda r: r.detail["tail_s"])
    early = med(result.sealer, lambda r: r.detail["rate_10_20"])
    late = med(result.sealer, lambda r: r.detail["rate_80_90"])
    end_rss = statistics.median(r.rss_end_kib for r in result.sealer)
    a_busy, b_busy = med(result.counter, lambda r: r.busy), med(result.sealer, lambda r: r.busy)
    b_broker = med(result.sealer, lambda r: r.broker_busy)
    rest = b_cpu - a_cpu - us["pipeline"]
    blocks = result.sealer[-1].detail
    scale = "" if cfg.n >= DEFAULT_N else f" (N = {cfg.n:,} in this run, not {DEFAULT_N:,})"
    notes = [
        f"Aim: the sealer at least {AIM_RATIO:.0%} of the bare agent's rate: "
        f"{verdict(ratio >= AIM_RATIO)} ({ratio:.0%}: {_rate(b.median)} vs {_rate(a.median)}).",
        f"Aim: the sealer's peak RSS at {cfg.n:,} entries at most {AIM_MEMORY_GROWTH:.0%} above "
        f"its peak at {cfg.mark:,}{scale}: {verdict(growth <= AIM_MEMORY_GROWTH)} "
        f"({growth:+.1%}, medians over runs); its resident set at {cfg.n:,} (`VmRSS`) was "
        f"{_mib(end_rss)}.",
        f"Sealed stream: {c.sealed_bytes:,.0f} bytes per event (base64 values in JSON); the "
        "largest message of the breakdown's blocks, as aiokafka estimates it before sending "
        f"(value, key and record batch overhead), {c.largest_message:,} bytes: "
        + (
            f"**over** the worker's producer limit (`producer_max_request_size` "
            f"{c.producer_limit:,}) in {c.oversized_blocks} of {c.blocks} blocks, each of which "
            "would crash the worker when it publishes it."
            if c.oversized_blocks
            else f"under the worker's producer limit (`producer_max_request_size` "
            f"{c.producer_limit:,})."
        ),
        f"Per event: the bare agent takes {a_us:.1f} µs of wall time and {a_cpu:.1f} µs of its "
        f"process's CPU, the sealer {b_us:.1f} µs and {b_cpu:.1f} µs (inside the timed window; "
        f"each process does its work on one Python thread). "
        f"{'Both are CPU-bound: b' if min(a_busy, b_busy) >= 0.9 else 'B'}usy (CPU time "
        f"/ window): agent {a_busy:.0%}, sealer worker "
        f"{b_busy:.0%} of a core; the broker "
        f"{med(result.counter, lambda r: r.broker_busy):.0%} during the agent's runs, "
        f"{b_broker:.0%} during the sealer's (it also "
        f"stores the sealed stream): of the machine's {os.cpu_count()} cores, about "
        f"{(os.cpu_count() or 1) - b_busy - b_broker:.1f} stay idle while the sealer runs.",
        f"Where the sealer's time goes: it adds {b_cpu - a_cpu:.1f} µs of CPU per event to the "
        f"bare agent's {a_cpu:.1f} µs. The pipeline alone, in one process on {c.records:,} of "
        "the same records (no Kafka, no Faust; median of 3 passes, a store of "
        f"{c.records:,} entries), takes {us['pipeline']:.1f} µs per event (`Sealer.add` and, "
        "per block, the outbox query, `encode_block` and `mark_published`); by step: `triage` "
        f"(parse and validate the event) {us['triage']:.1f} µs, `build_block` (salt, "
        f"commitment, leaf hash, tree, signature) {us['build']:.1f} µs, "
        f"`BlockStore.append_block` (one transaction of {MAX_EVENTS} entries and their tree "
        f"nodes, `synchronous=FULL`) {us['store']:.1f} µs, `encode_block` for the sealed stream "
        f"{us['encode']:.1f} µs, outbox bookkeeping {us['outbox']:.2f} µs (sum {steps:.1f} µs). "
        f"The rest{f', {rest:.1f} µs,' if rest > 0 else ''} is the worker's work this "
        f"breakdown leaves out: publishing the sealed stream ({c.sealed_bytes:,.0f} bytes per "
        "event, base64 values in JSON) through Faust's producer, and the same steps running "
        f"slower interleaved with Faust's and on a store of up to {cfg.n:,} entries. The aim "
        f"leaves {a_us / AIM_RATIO - a_us:.1f} µs per event for everything the sealer adds.",
    ]
    if cfg.n // 10 >= 10 * MAX_EVENTS:  # enough blocks in each window to time it
        notes.append(
            f"As the store grows: the sealer committed {_rate(early)} while the store went from "
            f"{cfg.n // 10:,} to {cfg.n // 5:,} entries and {_rate(late)} from "
            f"{cfg.n * 8 // 10:,} to {cfg.n * 9 // 10:,} (medians over runs, from the blocks' "
            "`sealed_at_ms`)."
        )
    notes += [
        f"Blocks: {blocks['blocks']:,} in the last run, {blocks['short_blocks']} of them "
        f"smaller than {MAX_EVENTS} (closed by `--max-interval`, the worker taking more than "
        f"{MAX_INTERVAL:g} s to receive {MAX_EVENTS} records of a partition); the last records "
        "of each partition wait for `--max-interval` before their block closes: "
        f"{tails:.2f} s from the last full block to the last block (median), inside the timed "
        "window.",
        f"Pre-fill: {cfg.n:,} events ({result.prefill.mean_bytes:.0f} bytes on average) "
        f"produced in {result.prefill.seconds:.1f} s (not timed). Load average "
        f"{result.load}.",
    ]
    return rows, notes


def render(cfg: Config, result: Result) -> str:
    method = (
        f"{cfg.n:,} events in one topic of {PARTITIONS} partitions ({cfg.n // PARTITIONS:,} "
        "or one more each) on a Tansu broker (in-memory storage) started by the benchmark on "
        "the same machine, filled before any timing by a bare `confluent_kafka.Producer` "
        "(idempotent, acks=all, key = source, partitions in turn): a pool of "
        f"{min(POOL, cfg.n):,} events built with the `ingest.events` builders, driven by "
        f"`TrafficModel` over {PROXIES} simulated proxies (database, SSH, API, Kubernetes), "
        "reused in turn with a fresh `id` and the next `sequence` of its source; "
        f"{result.prefill.mean_bytes:.0f} bytes per event on average, every one valid. Each "
        "run consumes the whole topic from the start with a fresh consumer group, in a fresh "
        "subprocess. Bare agent: a Faust app with the sealer's Faust settings (memory store, "
        "`topic_disable_leader`, `consumer_auto_offset_reset=earliest`, 6 s session timeout, "
        "1 s commit interval) iterating `stream.noack().events()` and acknowledging each "
        "event; events/s = (N - 1) / time from its first record to its N-th. Sealer: "
        "`auditseal seal` with its defaults, a fresh store file (WAL, `synchronous=FULL`, "
        "on the machine's disk), a key from `auditseal keygen`, a fresh sealed topic and the "
        "metrics endpoint on; the benchmark reads the store read-only every "
        f"{POLL_S * 1000:.0f} ms; events/s = entries committed after the first poll that "
        "saw any / time from that poll to the one that saw N (startup and the first block "
        "left out, the end of the run in); `auditseal_sealer_events_total` is checked to reach "
        "N. Peak RSS: `VmHWM` of /proc/PID/status of the worker process, read when the store "
        f"first holds {cfg.mark:,} entries and at {cfg.n:,}. Runs alternate (agent, sealer, "
        f"agent, ...), {cfg.repeat} of each; medians; ratio = the sealer's median rate / the "
        "agent's."
    )
    rows, notes = report(cfg, result)
    table = markdown_table(TABLE_HEADER, rows, align="lrrr")
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{bullets}"


def write_section(text: str, path: Path = BENCHMARKS_MD) -> None:
    replace_titled_section(SECTION, TITLE, text, path)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.sealer", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="events in the topic (1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--profile", action="store_true", help="cProfile one more sealer worker (stderr)"
    )
    ap.add_argument("--quick", action="store_true", help="short smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat = QUICK_N, 1
    if args.n < 10 * PARTITIONS or args.repeat < 1:
        ap.error(f"need --n >= {10 * PARTITIONS} and a positive --repeat")
    cfg = Config(args.n, args.repeat, args.seed, args.profile, args.quick)
    return cfg, not (args.no_write or args.quick)


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind: stop the workers and the broker on the way out


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    with tempfile.TemporaryDirectory(prefix="auditseal-bench-sealer-") as tmp:
        result = run(cfg, Path(tmp))
    text = render(cfg, result)
    print(text)
    if write:
        write_section(text)
        log(f"wrote section {SECTION!r} of docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
