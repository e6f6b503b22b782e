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

* bare agent (run A): ``python -m bench._faust_counter``, a Faust app with the old sealer's Faust
  settings whose agent iterates ``stream.noack().events()`` and acknowledges each event, counting;
  it says when it received its first and its N-th record. Events/s = (N - 1) / that time.
* sealer (run B): ``auditseal seal`` (defaults: ``--max-events 1000 --max-interval 1``) with a
  fresh store file, a key from ``auditseal keygen`` and a fresh sealed topic. The benchmark reads
  the store (read-only, every 20 ms) until it holds N entries. Events/s = (N - entries at the
  first poll that saw any) / (time of the poll that saw N - time of that first poll): sustained
  events/s to committed (stored, signed) blocks. Its Prometheus counter
  ``auditseal_sealer_events_total`` is checked to be N at the end.

Two more baselines (``bench._confluent_counter``): a bare confluent-kafka consumer with the
sealer's settings, counting, and the same consumer writing each batch to SQLite in one
transaction (no Merkle tree: the limit of a durable store). Runs alternate (A, consumer,
consumer → SQLite, B, A, ...) and the table shows medians. While the sealer runs, its peak RSS
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
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditseal.infra import broker
from auditseal.infra.processes import free_port, tail
from bench._report import (
    Stats,
    markdown_table,
    section_header,
    significant,
)
from bench._sealing import (
    MAX_EVENTS,
    MAX_INTERVAL,
    ORIGIN_PREFIX,
    PARTITIONS,
    POLL_S,
    POOL,
    PROXIES,
    ROOT,
    Prefill,
    Snapshot,
    StoreProbe,
    auditseal_argv,
    bench_main,
    block_detail,
    build_chains,
    by_origin,
    die_with_parent,
    kafka_records,
    log,
    make_key,
    prefilled_topic,
    seal_argv,
    sealed_metric,
    start_sealer,
    stop_process,
    vm_hwm_kib,
    vm_kib,
    watch_store,
)

COMMAND = ".venv/bin/python -m bench.sealer"
SECTION = "sealer"
TITLE = "## Sealer: Kafka to committed blocks vs a bare Faust agent"
TABLE_HEADER = ("Measurement", "Events/s", "Rounds (min-max)", "Ratio to bare agent")
DEFAULT_N = 1_000_000
QUICK_N = 20_000
AIM_RATIO = 1.5
AIM_MEMORY_GROWTH = 0.10
BREAKDOWN_N = 100_000

_perf = time.perf_counter


# --- the events -----------------------------------------------------------------------------


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
    module: str = "bench._faust_counter",
    extra: Sequence[str] = (),
) -> Run:
    """A baseline (the bare Faust agent, or a ``bench._confluent_counter``), from its first
    record (or batch) to its N-th record."""
    log_path = workdir / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        module,
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
        *extra,
    ]
    lines: queue.Queue[tuple[str, float]] = queue.Queue()
    with open(log_path, "wb") as err:
        t_spawn = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            preexec_fn=die_with_parent,
        )
    try:

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put((raw.decode(errors="replace").strip(), time.monotonic()))

        threading.Thread(target=read, daemon=True).start()
        first = done = None
        first_count = 1
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
            said = re.search(r"(first|mark|done) (\d+\.\d+)(?: (\d+))?", line)
            if said is None:
                continue
            word, when = said.group(1), float(said.group(2))
            if word == "first":
                first, cpu0 = when, Snapshot.of(proc.pid, broker_pid)
                first_count = int(said.group(3) or 1)  # a batch counts as received at once
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
        n - first_count,
        first - t_spawn,
        hwm_mark,
        hwm_end,
        rss_end,
        cpu1.process - cpu0.process,
        cpu1.broker - cpu0.broker,
    )


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
    group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    args = seal_argv(bootstrap, topic, sealed_topic, key, workdir / name, port, group)
    probe = StoreProbe(store)
    marks: dict[str, Any] = {"hwm_mark": 0}
    try:
        t_spawn = time.monotonic()
        proc = start_sealer([*(prefix or auditseal_argv()), *args], log_path, store)
        pid = proc.pid

        def on_poll(count: int) -> None:
            if count >= mark and not marks["hwm_mark"]:
                marks["hwm_mark"] = vm_hwm_kib(pid)

        def on_close() -> None:
            marks.update(
                cpu1=Snapshot.of(pid, broker_pid),
                hwm_end=vm_hwm_kib(pid),
                rss_end=vm_kib(pid, "VmRSS"),
            )

        try:
            window = watch_store(
                probe,
                [proc],
                n,
                name,
                [log_path],
                timeout,
                on_open=lambda: marks.update(cpu0=Snapshot.of(pid, broker_pid)),
                on_poll=on_poll,
                on_close=on_close,
            )
            metric = sealed_metric([port], n)
            blocks = probe.blocks()
        finally:
            stop_process(proc)
    finally:
        probe.close()
        broker.delete_topics(bootstrap, [sealed_topic])
    if metric != n:
        raise RuntimeError(f"{name}: auditseal_sealer_events_total is {metric}, not {n}")
    cpu0, cpu1 = marks["cpu0"], marks["cpu1"]
    return Run(
        window.seconds,
        n - window.entries_at_open,
        window.opened - t_spawn,
        marks["hwm_mark"],
        marks["hwm_end"],
        marks["rss_end"],
        cpu1.process - cpu0.process,
        cpu1.broker - cpu0.broker,
        block_detail(blocks, n),
    )


# --- where the sealer's time goes: the pipeline in this process, no Kafka, no Faust -------------


@dataclass(frozen=True)
class Costs:
    """Microseconds per event of each step (medians over passes) and the oversized blocks."""

    us: dict[str, float]
    records: int
    blocks: int
    oversized_blocks: int  # blocks with a sealed-stream message over the producer's limit
    largest_message: int  # aiokafka's size estimate of the largest message, bytes
    sealed_bytes: float  # sealed-stream bytes per event
    producer_limit: int  # the worker's producer message.max.bytes


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


def producer_limit() -> int:
    """The ``message.max.bytes`` of the worker's sealed-stream producer."""
    from auditseal.sealer.app import PRODUCER_MAX_MESSAGE_BYTES

    return PRODUCER_MAX_MESSAGE_BYTES


def _step_costs_once(
    pool: Sequence[dict[str, Any]], m: int, workdir: Path, topic: str, limit: int
) -> tuple[dict[str, float], int, int, int, float]:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    from auditseal.ingest.envelope import triage
    from auditseal.sealer.log_writer import LogWriter
    from auditseal.sealer.pipeline import Sealer, SealerConfig
    from auditseal.sealer.sealed_stream import encode_block
    from auditseal.sealer.signer import Signer
    from auditseal.store.blockstore import BlockStore

    workdir.mkdir(parents=True, exist_ok=True)
    now_ms = time.time_ns() // 1_000_000
    kafka = kafka_records(pool, m, topic, now_ms)
    signer = Signer.generate("bench.sealer")
    costs: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> None:
        t0 = _perf()
        fn()
        costs[name] = (_perf() - t0) / m * 1e6

    triaged: list[tuple[str | None, str | None]] = []
    timed("triage", lambda: triaged.extend(triage(r.value) for r in kafka))
    logs = by_origin(kafka, triaged, topic)
    store = BlockStore.open(workdir / "steps.db", create=True)
    built_blocks: list[Any] = []

    def build_all() -> None:
        built_blocks.extend(build_chains(logs, store.tip, signer, now_ms))

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
    # A record's size in Kafka's record format (aiokafka's estimate, librdkafka counts alike).
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
    consumer: list[Run]  # the bare confluent-kafka consumer
    sqlite: list[Run]  # the same, writing each batch to SQLite (the limit)
    prefill: Prefill
    costs: Costs
    load: str


def run(cfg: Config, workdir: Path) -> Result:
    key = make_key(workdir)
    timeout = max(120.0, cfg.n / 2_000)
    with prefilled_topic(workdir, cfg.n, cfg.seed) as t:
        bootstrap, broker_pid, topic = t.bootstrap, t.broker_pid, t.name
        counter: list[Run] = []
        sealer: list[Run] = []
        consumer: list[Run] = []
        sqlite: list[Run] = []
        load_before = os.getloadavg()[0]
        for r in range(cfg.repeat):
            name = f"agent-{r}"
            state = ["--state-dir", str(workdir / name)]
            a = run_counter(
                bootstrap, topic, cfg.n, cfg.mark, workdir, name, timeout, broker_pid, extra=state
            )
            counter.append(a)
            log(
                f"round {r + 1}/{cfg.repeat} bare agent: {a.seconds:.2f} s, {a.rate:,.0f} events/s"
                f" (first record {a.startup:.1f} s after start), agent {a.busy:.0%} busy, broker "
                f"{a.broker_busy:.0%}, VmHWM {a.hwm_end_kib // 1024} MiB"
            )
            for runs, extra, what in (
                (consumer, [], "bare consumer"),
                (sqlite, ["--sqlite", str(workdir / f"sqlite-{r}.db")], "consumer → SQLite"),
            ):
                name = f"{'sqlite' if extra else 'consumer'}-{r}"
                c = run_counter(
                    *(bootstrap, topic, cfg.n, cfg.mark, workdir, name, timeout, broker_pid),
                    module="bench._confluent_counter",
                    extra=extra,
                )
                runs.append(c)
                log(
                    f"round {r + 1}/{cfg.repeat} {what}: {c.seconds:.2f} s, {c.rate:,.0f} "
                    f"events/s, {c.busy:.0%} busy, broker {c.broker_busy:.0%}"
                )
            for f in workdir.glob(f"sqlite-{r}.db*"):
                f.unlink()
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
    m = min(cfg.n, BREAKDOWN_N)
    log(f"per-event costs of the pipeline in this process, on {m:,} records")
    costs = step_costs(t.pool, m, workdir / "steps", topic, producer_limit())
    return Result(counter, sealer, consumer, sqlite, t.prefill, costs, load)


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
    a, b, k, q = (
        Stats.of([r.rate for r in runs])
        for runs in (result.counter, result.sealer, result.consumer, result.sqlite)
    )
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
            "Bare confluent-kafka consumer: `consume(1000)`, count (`bench._confluent_counter`"
            " subprocess)",
            _rate(k.median),
            f"{significant(k.minimum)}-{significant(k.maximum)}",
            f"{k.median / a.median:.2f}x",
        ],
        [
            "The same consumer writing each batch to SQLite in one transaction (WAL, "
            "`synchronous=FULL`; no Merkle tree, signature, index or publication): the limit "
            "of a durable store",
            _rate(q.median),
            f"{significant(q.minimum)}-{significant(q.maximum)}",
            f"{q.median / a.median:.2f}x",
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
    rest = b_cpu - us["pipeline"]
    blocks = result.sealer[-1].detail
    scale = "" if cfg.n >= DEFAULT_N else f" (N = {cfg.n:,} in this run, not {DEFAULT_N:,})"
    notes = [
        f"Aim: the sealer at least {AIM_RATIO:.1f}x the bare Faust agent's rate: "
        f"{verdict(ratio >= AIM_RATIO)} ({ratio:.2f}x: {_rate(b.median)} vs "
        f"{_rate(a.median)}). Against the limit (the bare consumer writing to SQLite): "
        f"{b.median / q.median:.0%}.",
        f"Aim: the sealer's peak RSS at {cfg.n:,} entries at most {AIM_MEMORY_GROWTH:.0%} above "
        f"its peak at {cfg.mark:,}{scale}: {verdict(growth <= AIM_MEMORY_GROWTH)} "
        f"({growth:+.1%}, medians over runs); its resident set at {cfg.n:,} (`VmRSS`) was "
        f"{_mib(end_rss)}.",
        f"Sealed stream: {c.sealed_bytes:,.0f} bytes per event (base64 values in JSON); the "
        "largest message of the breakdown's blocks (value, key and record batch overhead, "
        "estimated as Kafka's record format counts them) "
        f"{c.largest_message:,} bytes: "
        + (
            f"**over** the worker's producer limit (`message.max.bytes` "
            f"{c.producer_limit:,}) in {c.oversized_blocks} of {c.blocks} blocks, each of which "
            "would crash the worker when it publishes it."
            if c.oversized_blocks
            else f"under the worker's producer limit (`message.max.bytes` {c.producer_limit:,})."
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
        f"Where the sealer's time goes: {b_cpu:.1f} µs of CPU per event in its process. The "
        f"pipeline alone, in one process on {c.records:,} of the same records (no Kafka; "
        f"median of 3 passes, a store of {c.records:,} entries), takes {us['pipeline']:.1f} µs "
        "per event (`Sealer.add` and, per block, the outbox query, `encode_block` and "
        f"`mark_published`); by step: `triage` (parse and validate the event) "
        f"{us['triage']:.1f} µs, `build_block` (salt, commitment, leaf hash, tree, signature) "
        f"{us['build']:.1f} µs, `BlockStore.append_block` (one transaction of {MAX_EVENTS} "
        f"entries and their tree nodes, `synchronous=FULL`) {us['store']:.1f} µs, "
        f"`encode_block` for the sealed stream {us['encode']:.1f} µs, outbox bookkeeping "
        f"{us['outbox']:.2f} µs (sum {steps:.1f} µs). "
        + (
            f"The rest, {rest:.1f} µs, is reading Kafka and producing the sealed stream "
            f"({c.sealed_bytes:,.0f} bytes per event, base64 values in JSON). "
            if rest > 0
            else ""
        )
        + f"Its wall time per event exceeds its CPU time by {b_us - b_cpu:.1f} µs: the waits "
        "for each block's commit to reach the disk (`synchronous=FULL`), and the worker sharing "
        f"the cores. The aim leaves {a_us / AIM_RATIO:.1f} µs of wall time per event.",
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
        "subprocess. Bare agent: a Faust app with the Faust settings the sealer had (memory "
        "store, `topic_disable_leader`, `consumer_auto_offset_reset=earliest`, 6 s session "
        "timeout, 1 s commit interval) iterating `stream.noack().events()` and acknowledging each "
        "event; events/s = (N - 1) / time from its first record to its N-th. Bare consumer: "
        "a confluent-kafka consumer with the sealer's settings (cooperative-sticky group, "
        "`consume(1000)`), counting; with SQLite, each batch inserted in one transaction into "
        "a table keyed by (partition, offset); events/s = records after the first batch / "
        "time from the first batch to the N-th record. Sealer: "
        "`auditseal seal` with its defaults, a fresh store file (WAL, `synchronous=FULL`, "
        "on the machine's disk), a key from `auditseal keygen`, a fresh sealed topic and the "
        "metrics endpoint on; the benchmark reads the store read-only every "
        f"{POLL_S * 1000:.0f} ms; events/s = entries committed after the first poll that "
        "saw any / time from that poll to the one that saw N (startup and the first block "
        "left out, the end of the run in); `auditseal_sealer_events_total` is checked to reach "
        "N. Peak RSS: `VmHWM` of /proc/PID/status of the worker process, read when the store "
        f"first holds {cfg.mark:,} entries and at {cfg.n:,}. Runs alternate (agent, consumer, "
        f"consumer → SQLite, sealer, agent, ...), {cfg.repeat} of each; medians; ratio = a "
        "median rate / the agent's."
    )
    rows, notes = report(cfg, result)
    table = markdown_table(TABLE_HEADER, rows, align="lrrr")
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{bullets}"


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


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    return bench_main(
        "sealer", lambda workdir: render(cfg, run(cfg, workdir)), write, SECTION, TITLE
    )


if __name__ == "__main__":
    sys.exit(main())
