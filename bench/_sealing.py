"""What the Kafka benchmarks share: a pre-filled topic of realistic events on a broker of their
own, ``auditseal seal`` workers started as subprocesses, and a read-only look at the store they
write (a SQLite file or a PostgreSQL database) to time them from the outside.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from auditseal.infra import broker
from auditseal.infra.processes import free_port, tail
from auditseal.ingest.simulator import TrafficModel, simulated_proxies
from bench._report import replace_titled_section

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 6
PROXIES = 4  # one of each kind, as bench.ingest
POOL = 50_000  # events built with the builders; reused with fresh ids
MAX_EVENTS = 1000  # the defaults of `auditseal seal`
MAX_INTERVAL = 1.0
POLL_S = 0.02
ORIGIN_PREFIX = "auditseal.local"

_perf = time.perf_counter


def log(msg: str) -> None:
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "bench"
    print(f"[bench.{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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


def die_with_parent() -> None:
    """In a child, before exec: get SIGKILL when the benchmark dies (even by SIGKILL)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (a Faust worker's clean stop), then SIGKILL if it is still there."""
    stop_processes([proc], timeout)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """:func:`stop_process` of several at once: all get SIGTERM, then each is waited for."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
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


class StoreProbe:
    """Read-only look at a store other processes write (a SQLite file or a ``postgresql://``
    URL, password included: it stays in this process): entries held, over every log."""

    ENTRIES = (
        "SELECT coalesce(sum(m), 0) FROM "
        "(SELECT max(end_idx) AS m FROM blocks GROUP BY log_id) AS per_log"
    )
    BLOCKS = "SELECT sealed_at_ms, end_idx - start_idx, log_id FROM blocks ORDER BY sealed_at_ms"
    # The writer of each partition's latest claim: who holds it now.
    HOLDERS = (
        "SELECT DISTINCT writer FROM log_claims AS c WHERE epoch = "
        "(SELECT max(epoch) FROM log_claims WHERE base = c.base)"
    )

    def __init__(self, location: Path | str) -> None:
        self.location = location
        self._db: Any = None

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of ``sql``; none while the store or the table is not there yet."""
        if isinstance(self.location, str):
            import psycopg

            if self._db is None:
                self._db = psycopg.connect(self.location, autocommit=True, connect_timeout=10)
            try:
                return list(self._db.execute(sql).fetchall())
            except psycopg.errors.UndefinedTable:
                return []
        if self._db is None:
            if not self.location.exists():
                return []
            self._db = sqlite3.connect(f"file:{self.location}?mode=ro", uri=True, timeout=5)
        try:
            return list(self._db.execute(sql).fetchall())
        except sqlite3.OperationalError:  # the schema is not there yet
            return []

    def entries(self) -> int:
        rows = self._rows(self.ENTRIES)
        return int(rows[0][0]) if rows else 0

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(sealed_at_ms, size, log_id)`` of every block, in sealing order."""
        return [(int(a), int(b), int(c)) for a, b, c in self._rows(self.BLOCKS)]

    def holders(self) -> set[str]:
        """The workers (``host/pid``, as they claim) holding at least one partition now."""
        return {str(w) for (w,) in self._rows(self.HOLDERS)}

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
    bootstrap: str, topic: str, sealed_topic: str, key: Path, state: Path, port: int, group: str
) -> list[str]:
    """``auditseal seal`` with its defaults; the store comes from the environment."""
    return [
        "seal",
        "--key",
        str(key),
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--sealed-topic",
        sealed_topic,
        "--group",
        group,
        "--state-dir",
        str(state),
        "--max-events",
        str(MAX_EVENTS),
        "--max-interval",
        str(MAX_INTERVAL),
        "--metrics-listen",
        f"127.0.0.1:{port}",
    ]


def start_sealer(
    argv: Sequence[str], log_path: Path, store: Path | str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a worker; its store through ``$AUDITSEAL_STORE`` (a URL without its password: the
    password comes from ``env``'s ``PGPASSFILE``, never from a command line)."""
    environ = {**os.environ, **(env or {}), "AUDITSEAL_STORE": str(store)}
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=environ,
            preexec_fn=die_with_parent,
        )


@dataclass(frozen=True)
class Window:
    """The timed part of a run: from the poll that opened it to the poll that saw N entries."""

    opened: float  # monotonic time of the opening poll
    entries_at_open: int
    closed: float

    @property
    def seconds(self) -> float:
        return self.closed - self.opened


def watch_store(
    probe: StoreProbe,
    procs: Sequence[subprocess.Popen[bytes]],
    n: int,
    name: str,
    log_paths: Sequence[Path],
    timeout: float,
    *,
    opens: Callable[[int], bool] = bool,
    on_open: Callable[[], None] = lambda: None,
    on_poll: Callable[[int], None] = lambda count: None,
    on_close: Callable[[], None] = lambda: None,
) -> Window:
    """Poll the store every ``POLL_S`` until it holds N entries (workers must keep running).

    The window opens at the first poll where ``opens(entries)`` (default: any entry);
    ``on_open``/``on_close`` run right at its ends (CPU snapshots), ``on_poll`` at every poll.
    """
    opened: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout
    while True:
        count = probe.entries()
        now = time.monotonic()
        if opened is None and opens(count):
            opened = (now, count)
            on_open()
        on_poll(count)
        if count >= n and opened is not None:
            on_close()
            break
        for proc, log_path in zip(procs, log_paths, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"{name}: a worker exited: {tail(log_path, 20)}")
        if now > deadline:
            raise RuntimeError(
                f"{name}: {count:,} of {n:,} sealed after {timeout:g} s: {tail(log_paths[0], 20)}"
            )
        time.sleep(POLL_S)
    if count != n:
        raise RuntimeError(f"{name}: the store holds {count:,} entries, not {n:,}")
    return Window(opened[0], opened[1], now)


def sealed_metric(ports: Sequence[int], n: int, wait: float = 30.0) -> float:
    """``auditseal_sealer_events_total`` over the workers, once it reaches N (or after ``wait``
    seconds): a worker counts a block once it is published, after the commit a probe saw."""
    deadline = time.monotonic() + wait
    while (total := sum(events_total(p) for p in ports)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return total


def rate_between(blocks: Sequence[tuple[int, int, int]], lo: int, hi: int) -> float:
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


def block_detail(blocks: Sequence[tuple[int, int, int]], n: int) -> dict[str, Any]:
    """How a run's blocks came out: counts, and the end of the run, when the last records of
    each partition (fewer than --max-events) wait for --max-interval before their block closes."""
    full = [b for b in blocks if b[1] >= MAX_EVENTS]
    return {
        "blocks": len(blocks),
        "short_blocks": sum(1 for b in blocks if b[1] < MAX_EVENTS),
        "tail_s": (blocks[-1][0] - full[-1][0]) / 1000 if full else 0.0,
        "rate_10_20": rate_between(blocks, n // 10, n // 5),
        "rate_80_90": rate_between(blocks, n * 8 // 10, n * 9 // 10),
    }


def make_key(workdir: Path, name: str = "bench.sealer") -> Path:
    out = subprocess.run(
        [*auditseal_argv(), "keygen", "--name", name, "--out", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"auditseal keygen failed: {out.stderr}")
    return workdir / f"{name}.key"


def terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwind: stop the workers and the broker on the way out


def bench_main(
    name: str, measure: Callable[[Path], str], write: bool, section: str, title: str
) -> int:
    """Run ``measure`` in a temporary directory (SIGTERM unwinds it, stopping what it started),
    print the section it renders and, with ``write``, put it in docs/BENCHMARKS.md."""
    signal.signal(signal.SIGTERM, terminated)
    with tempfile.TemporaryDirectory(prefix=f"auditseal-bench-{name}-") as tmp:
        text = measure(Path(tmp))
    print(text)
    if write:
        replace_titled_section(section, title, text)
        log(f"wrote section {section!r} of docs/BENCHMARKS.md")
    return 0


# --- the pre-filled topic ---------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """A broker of the benchmark's own and one topic of N events on it."""

    bootstrap: str
    broker_pid: int
    name: str
    pool: list[dict[str, Any]]
    prefill: Prefill


@contextlib.contextmanager
def prefilled_topic(workdir: Path, n: int, seed: int) -> Iterator[Topic]:
    """A Tansu broker on a free loopback port holding a topic of ``PARTITIONS`` partitions filled
    with N events (see :func:`records`); the broker is stopped on the way out."""
    log(f"building a pool of {min(POOL, n):,} events from {PROXIES} simulated proxies")
    pool = build_pool(min(POOL, n), seed)
    topic = f"bench-events-{os.getpid()}"
    service = broker.spawn(free_port(), workdir / "broker.log")
    try:
        broker.wait_ready(service, timeout=60)
        assert service.pid is not None
        log(f"Tansu broker at {service.address}")
        broker.create_topic(service.address, topic, PARTITIONS)
        fill = prefill(service.address, topic, pool, n)
        log(
            f"pre-filled {topic} with {n:,} events ({fill.mean_bytes:.0f} bytes on average) "
            f"in {fill.seconds:.1f} s"
        )
        yield Topic(service.address, service.pid, topic, pool, fill)
    finally:
        broker.stop(service, timeout=5.0)


# --- blocks built in this process --------------------------------------------------------------


def kafka_records(pool: Sequence[dict[str, Any]], m: int, topic: str, now_ms: int) -> list[Any]:
    """``KafkaRecord``s of M events of the pool, spread over the partitions as the pre-fill does."""
    from auditseal.sealer.pipeline import KafkaRecord

    return [
        KafkaRecord(topic, i % PARTITIONS, i // PARTITIONS, now_ms, k, v)
        for i, (k, v) in enumerate(records(pool, m))
    ]


def by_origin(
    kafka: Sequence[Any], triaged: Sequence[tuple[str | None, str | None]], topic: str
) -> dict[str, list[Any]]:
    """The store's ``Record``s of triaged Kafka records, per log (one per partition)."""
    from auditseal.store.model import Record

    flagged = sum(1 for _, flag in triaged if flag)
    if flagged:
        raise RuntimeError(f"{flagged} of the benchmark's events are flagged invalid")
    out: dict[str, list[Any]] = {}
    for r, (event_id, flag) in zip(kafka, triaged, strict=True):
        out.setdefault(f"{ORIGIN_PREFIX}/{topic}/{r.partition}", []).append(
            Record(r.offset, r.timestamp_ms, r.key, r.value, event_id, flag)
        )
    return out


def build_chains(
    logs: dict[str, list[Any]], tip_of: Callable[[str], Any], signer: Any, now_ms: int
) -> list[Any]:
    """Each log's records as ``BuiltBlock``s of ``MAX_EVENTS``, each extending the one before."""
    from auditseal.sealer.blocks import build_block

    built_blocks = []
    for origin, rs in logs.items():
        tip = tip_of(origin)
        for i in range(0, len(rs), MAX_EVENTS):
            built = build_block(tip, rs[i : i + MAX_EVENTS], signer, now_ms)
            built_blocks.append(built)
            tip = built.tip
    return built_blocks
