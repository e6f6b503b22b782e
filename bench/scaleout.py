"""Scale-out: sealed events/s with 1, 2 and 3 workers on PostgreSQL and 1 on SQLite, same run.

Run ``.venv/bin/python -m bench.scaleout`` from the repository root. It prints two markdown
tables and rewrites the ``scaleout`` section of docs/BENCHMARKS.md (``--no-write`` to only
print). ``--quick`` is a short smoke run for the tests and never writes the docs.

The benchmark starts its own Tansu broker and its own throwaway PostgreSQL cluster
(``infra.postgres``, the code of ``auditseal dev up --postgres``) and stops both at the end.

* Throughput, Kafka to committed block: one topic of 6 partitions pre-filled with N realistic
  events (bench.sealer's pre-fill). Each configuration (1 worker on SQLite; 1, 2 and 3 workers
  on PostgreSQL) consumes the whole topic with a fresh consumer group, a fresh store (a new
  SQLite file, a new PostgreSQL database) and a fresh sealed topic; its workers are
  ``auditseal seal`` processes with their defaults, the store given as ``$AUDITSEAL_STORE`` (the
  URL without its password, which comes from a libpq password file named by ``$PGPASSFILE``).
  The benchmark reads the store every 20 ms; the window opens at the first poll where every
  worker holds a partition (the latest claim of a partition names its worker) and the store
  holds entries, and closes at the poll that sees N. Events/s = entries committed in the
  window / its length. Configurations run in turn, round after round, the order rotated each
  round; the table shows medians.
* Per-block commit latency: the same blocks of 1000 events (built once in this process with
  ``build_block``) appended with ``BlockStore.append_block`` to a fresh SQLite file and a fresh
  PostgreSQL database, alternately; median and p99.
* Proofs at 1M leaves: one log filled to 1,000,000 leaves by appending big blocks (built once,
  appended to both backends, each append timed), then inclusion and consistency proofs at the
  same random indices and old sizes from each backend (bench.merkle's proof timing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditseal.infra import broker
from auditseal.infra import postgres as pg
from auditseal.infra.processes import free_port
from auditseal.infra.state import Service
from bench._report import (
    Stats,
    markdown_table,
    section_header,
    significant,
)
from bench._sealing import (
    MAX_EVENTS,
    MAX_INTERVAL,
    PARTITIONS,
    POLL_S,
    StoreProbe,
    Topic,
    auditseal_argv,
    bench_main,
    block_detail,
    build_chains,
    by_origin,
    cpu_seconds,
    kafka_records,
    log,
    make_key,
    prefilled_topic,
    seal_argv,
    sealed_metric,
    start_sealer,
    stop_processes,
    watch_store,
)
from bench.merkle import ORIGIN, ProofTimes, entry_records, make_entries, store_proofs

COMMAND = ".venv/bin/python -m bench.scaleout"
SECTION = "scaleout"
TITLE = "## Scale-out: several sealers on PostgreSQL vs one on SQLite"
TABLE_HEADER = (
    "Configuration",
    "Events/s",
    "Rounds (min-max)",
    "Per worker",
    "Ratio to 1 worker on SQLite",
    "CPU in the window, cores: workers + broker + PostgreSQL",
)
LATENCY_HEADER = ("Measurement", "SQLite", "PostgreSQL", "PostgreSQL / SQLite")
DEFAULT_N = 200_000
DEFAULT_REPEAT = 3
QUICK_N = 12_000
DEFAULT_COMMIT_BLOCKS = 200
DEFAULT_PROOF_N = 1_000_000
QUICK_PROOF_N = 20_000
PROOF_BLOCK = 50_000  # entries per block of the 1M-leaf fill
DEFAULT_SAMPLES = 2_000
WORKERS = (1, 2, 3)
AIM_PG_RATIO = 0.9
AIM_PROOF_MEDIAN_S = 1e-3

_perf = time.perf_counter


# --- PostgreSQL ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """The benchmark's PostgreSQL cluster: its superuser's password stays in this process; the
    workers read it from ``pgpass`` (``$PGPASSFILE``)."""

    service: Service
    password: str
    pgpass: Path

    def url(self, dbname: str, with_password: bool = True) -> str:
        password = self.password if with_password else None
        return pg.url(self.service.port, dbname, password)

    @property
    def admin_url(self) -> str:
        return self.url(pg.ADMIN_DB)

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        """A fresh database (its name: ``name`` and a random suffix), dropped on the way out."""
        dbname = f"bench_{name}_{uuid.uuid4().hex[:8]}".replace("-", "_")
        pg.create_database(self.admin_url, dbname)
        try:
            yield dbname
        finally:
            pg.drop_database(self.admin_url, dbname)

    def cpu(self) -> float:
        """CPU seconds of the postmaster and its children (the backends serving connections)."""
        pid = self.service.pid
        assert pid is not None
        total = cpu_seconds(pid)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text(encoding="ascii")
            except OSError:  # gone meanwhile
                continue
            if int(text.rsplit(")", 1)[1].split()[1]) == pid:
                with contextlib.suppress(OSError):
                    total += cpu_seconds(int(stat.parent.name))
        return total


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    # Not under the benchmark's private temporary directory: as root the server runs as the
    # `postgres` user, which must reach its data directory.
    state = Path(tempfile.mkdtemp(prefix="auditseal-bench-pg-"))
    try:
        service = pg.start(state, free_port(), timeout=60)
        try:
            assert service.password_file is not None
            password = pg.read_password(service.password_file)
            pgpass = pg.write_pgpass(state, service.port, password)
            log(f"PostgreSQL at 127.0.0.1:{service.port}")
            yield Cluster(service, password, pgpass)
        finally:
            pg.stop(service)
    finally:
        shutil.rmtree(state, ignore_errors=True)


# --- throughput: Kafka to committed block, N workers ------------------------------------------


@dataclass(frozen=True)
class Setup:
    backend: str  # "sqlite" or "postgresql"
    workers: int

    @property
    def name(self) -> str:
        return f"{'pg' if self.backend == 'postgresql' else 'sqlite'}{self.workers}"

    @property
    def label(self) -> str:
        plural = "s" if self.workers > 1 else ""
        store = "PostgreSQL" if self.backend == "postgresql" else "SQLite"
        return f"{self.workers} worker{plural}, {store}"


SETUPS = (Setup("sqlite", 1), *(Setup("postgresql", w) for w in WORKERS))


@dataclass
class ScaleRun:
    seconds: float
    events: int
    settled: float  # from starting the workers to the window's start
    grouped: bool  # the window opened with every worker holding a partition
    workers_cpu: float  # CPU seconds of all workers inside the window
    broker_cpu: float
    postgres_cpu: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def cores(self, cpu: float) -> float:
        return cpu / self.seconds


@contextlib.contextmanager
def fresh_store(setup: Setup, workdir: Path, cluster: Cluster, tag: str) -> Iterator[Any]:
    """``(for the workers, for the probe, environment)`` of a store used by one run only."""
    if setup.backend == "sqlite":
        path = workdir / f"{tag}.db"
        try:
            yield path, path, {}
        finally:
            for f in workdir.glob(f"{tag}.db*"):
                f.unlink()
        return
    with cluster.database(tag) as dbname:
        env = {"PGPASSFILE": str(cluster.pgpass)}
        yield cluster.url(dbname, with_password=False), cluster.url(dbname), env


def run_setup(
    setup: Setup,
    topic: Topic,
    n: int,
    workdir: Path,
    key: Path,
    cluster: Cluster,
    tag: str,
    timeout: float,
) -> ScaleRun:
    """``setup.workers`` workers in one consumer group until the store holds N entries."""
    sealed_topic = f"bench-sealed-{tag}-{os.getpid()}"
    broker.create_topic(topic.bootstrap, sealed_topic, 1)
    group = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    ports = [free_port() for _ in range(setup.workers)]
    logs = [workdir / f"{tag}-{i}.log" for i in range(setup.workers)]
    host = socket.gethostname()
    marks: dict[str, Any] = {"grouped": False}
    try:
        with fresh_store(setup, workdir, cluster, tag) as (store, probe_at, env):
            probe = StoreProbe(probe_at)
            procs = []
            try:
                spawned = time.monotonic()
                for i, port in enumerate(ports):
                    state = workdir / f"{tag}-{i}"
                    args = seal_argv(
                        topic.bootstrap, topic.name, sealed_topic, key, state, port, group
                    )
                    procs.append(start_sealer([*auditseal_argv(), *args], logs[i], store, env))
                expected = {f"{host}/{p.pid}" for p in procs}

                def cpu() -> tuple[float, float, float]:
                    return (
                        sum(cpu_seconds(p.pid) for p in procs),
                        cpu_seconds(topic.broker_pid),
                        cluster.cpu() if setup.backend == "postgresql" else 0.0,
                    )

                def opens(count: int) -> bool:
                    # Every worker holds partitions (the group settled), or half the topic is
                    # sealed without it (then the run says so).
                    marks["grouped"] = count > 0 and probe.holders() >= expected
                    return bool(marks["grouped"]) or count >= n // 2

                window = watch_store(
                    probe,
                    procs,
                    n,
                    tag,
                    logs,
                    timeout,
                    opens=opens,
                    on_open=lambda: marks.update(start=cpu()),
                    on_close=lambda: marks.update(end=cpu()),
                )
                metric = sealed_metric(ports, n)
                blocks = probe.blocks()
            finally:
                stop_processes(procs)
                probe.close()
    finally:
        broker.delete_topics(topic.bootstrap, [sealed_topic])
    if metric < n:
        raise RuntimeError(f"{tag}: auditseal_sealer_events_total is {metric}, not {n}")
    (w0, b0, p0), (w1, b1, p1) = marks["start"], marks["end"]
    return ScaleRun(
        window.seconds,
        n - window.entries_at_open,
        window.opened - spawned,
        marks["grouped"],
        w1 - w0,
        b1 - b0,
        p1 - p0,
        block_detail(blocks, n),
    )


# --- per-block commit latency -------------------------------------------------------------------


def commit_latency(
    pool: Sequence[dict[str, Any]], blocks: int, workdir: Path, cluster: Cluster
) -> tuple[list[float], list[float]]:
    """Seconds of ``BlockStore.append_block`` per block on SQLite and on PostgreSQL: the same
    blocks of ``MAX_EVENTS`` realistic events, the two backends taking turns going first."""
    from auditseal.ingest.envelope import triage
    from auditseal.sealer.signer import Signer
    from auditseal.store.blockstore import BlockStore

    now_ms = time.time_ns() // 1_000_000
    topic = "bench-commit"
    per_log = -(-blocks // PARTITIONS)  # whole blocks in every partition's log
    kafka = kafka_records(pool, per_log * PARTITIONS * MAX_EVENTS, topic, now_ms)
    logs = by_origin(kafka, [triage(r.value) for r in kafka], topic)
    signer = Signer.generate("bench.scaleout")
    lite_lat: list[float] = []
    pg_lat: list[float] = []
    with (
        cluster.database("commit") as dbname,
        BlockStore.open(workdir / "commit.db", create=True) as lite,
        BlockStore.open(cluster.url(dbname), create=True) as post,
    ):
        built = build_chains(logs, lite.tip, signer, now_ms)
        for i, b in enumerate(built):
            pair = [(lite, lite_lat), (post, pg_lat)]
            for store, lat in pair if i % 2 == 0 else pair[::-1]:
                t0 = _perf()
                store.append_block(b)
                lat.append(_perf() - t0)
    for f in workdir.glob("commit.db*"):
        f.unlink()
    return lite_lat, pg_lat


# --- proofs at 1M leaves ----------------------------------------------------------------------


@dataclass
class ProofResult:
    fill_s: dict[str, float]  # backend -> seconds of append_block over the whole fill
    build_s: float  # build_block over the whole fill, once for both
    proofs: dict[str, tuple[ProofTimes, ProofTimes]]  # backend -> (inclusion, consistency)


def proofs_at(n: int, samples: int, seed: int, workdir: Path, cluster: Cluster) -> ProofResult:
    """Fill one log to N leaves on both backends, then time proofs from each."""
    from auditseal.sealer.blocks import build_block
    from auditseal.sealer.signer import Signer
    from auditseal.store.blockstore import BlockStore

    signer = Signer.generate("bench.scaleout")
    fill = {"sqlite": 0.0, "postgresql": 0.0}
    build_s = 0.0
    path = workdir / "proofs.db"
    with cluster.database("proofs") as dbname:
        url = cluster.url(dbname)
        with (
            BlockStore.open(path, create=True) as lite,
            BlockStore.open(url, create=True) as post,
        ):
            tip = lite.tip(ORIGIN)
            chunk = min(PROOF_BLOCK, n)
            for k, start in enumerate(range(0, n, chunk)):
                entries = make_entries(min(chunk, n - start), seed + k)
                t0 = _perf()
                built = build_block(tip, entry_records(entries, start), signer, now_ms())
                build_s += _perf() - t0
                for backend, store in (("sqlite", lite), ("postgresql", post)):
                    t0 = _perf()
                    store.append_block(built)
                    fill[backend] += _perf() - t0
                tip = built.tip
        log(
            f"filled a log to {n:,} leaves: SQLite {fill['sqlite']:.1f} s, "
            f"PostgreSQL {fill['postgresql']:.1f} s (build_block {build_s:.1f} s)"
        )
        rng = random.Random(seed)
        indices = [rng.randrange(n) for _ in range(samples)]
        olds = [rng.randint(1, n - 1) for _ in range(samples)]
        proofs = {
            "sqlite": store_proofs(path, n, indices, olds),
            "postgresql": store_proofs(url, n, indices, olds),
        }
    for f in workdir.glob("proofs.db*"):
        f.unlink()
    return ProofResult(fill, build_s, proofs)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    n: int
    repeat: int
    seed: int
    commit_blocks: int
    proof_n: int
    samples: int
    quick: bool


@dataclass
class Result:
    runs: dict[Setup, list[ScaleRun]]
    commit: tuple[list[float], list[float]]
    proofs: ProofResult
    topic: Topic
    load: str


def run(cfg: Config, workdir: Path) -> Result:
    key = make_key(workdir, "bench.scaleout")
    timeout = max(120.0, cfg.n / 1_000)
    runs: dict[Setup, list[ScaleRun]] = {s: [] for s in SETUPS}
    with postgres_cluster() as cluster:
        with prefilled_topic(workdir, cfg.n, cfg.seed) as topic:
            load_before = os.getloadavg()[0]
            for r in range(cfg.repeat):
                k = r % len(SETUPS)
                for setup in (*SETUPS[k:], *SETUPS[:k]):  # each setup in every position
                    tag = f"{setup.name}-r{r}"
                    one = run_setup(setup, topic, cfg.n, workdir, key, cluster, tag, timeout)
                    runs[setup].append(one)
                    log(
                        f"round {r + 1}/{cfg.repeat} {setup.label}: {one.rate:,.0f} events/s "
                        f"over {one.seconds:.1f} s (window opened {one.settled:.1f} s after "
                        f"start{'' if one.grouped else ', before every worker held a partition'}"
                        f"); cores: workers {one.cores(one.workers_cpu):.2f}, broker "
                        f"{one.cores(one.broker_cpu):.2f}, PostgreSQL "
                        f"{one.cores(one.postgres_cpu):.2f}; {one.detail}"
                    )
            load = f"{load_before:.2f} before the runs, {os.getloadavg()[0]:.2f} after"
        log(f"per-block commit latency, {cfg.commit_blocks} blocks of {MAX_EVENTS} events")
        commit = commit_latency(topic.pool, cfg.commit_blocks, workdir, cluster)
        log(f"proofs at {cfg.proof_n:,} leaves")
        proofs = proofs_at(cfg.proof_n, cfg.samples, cfg.seed, workdir, cluster)
    return Result(runs, commit, proofs, topic, load)


# --- the report -------------------------------------------------------------------------------


def _rate(per_s: float) -> str:
    return f"{significant(per_s)} events/s"


def _latency(s: Stats, unit: str = "ms") -> str:
    scale = 1e3 if unit == "ms" else 1e6
    return f"{significant(s.median * scale)} {unit} (p99 {significant(s.p99 * scale)})"


def _median(runs: Sequence[ScaleRun], f: Callable[[ScaleRun], float]) -> float:
    return statistics.median(f(r) for r in runs)


def report(cfg: Config, result: Result) -> tuple[str, str, list[str]]:
    stats = {s: Stats.of([r.rate for r in runs]) for s, runs in result.runs.items()}
    base = stats[SETUPS[0]].median
    rows = []
    for setup in SETUPS:
        s, runs = stats[setup], result.runs[setup]
        cores = [
            _median(runs, lambda r: r.cores(r.workers_cpu)),
            _median(runs, lambda r: r.cores(r.broker_cpu)),
            _median(runs, lambda r: r.cores(r.postgres_cpu)),
        ]
        rows.append(
            [
                f"`auditseal seal`: {setup.label}" + (" (baseline)" if setup is SETUPS[0] else ""),
                _rate(s.median),
                f"{significant(s.minimum)}-{significant(s.maximum)}",
                _rate(s.median / setup.workers),
                f"{s.median / base:.2f}x",
                f"{cores[0]:.2f} + {cores[1]:.2f} + {cores[2]:.2f} = {sum(cores):.2f}",
            ]
        )
    throughput = markdown_table(TABLE_HEADER, rows, align="lrrrrr")

    lite_c, pg_c = (Stats.of(x) for x in result.commit)
    p = result.proofs
    lite_inc, lite_con = (Stats.of(t.prove) for t in p.proofs["sqlite"])
    pg_inc, pg_con = (Stats.of(t.prove) for t in p.proofs["postgresql"])
    n = cfg.proof_n
    lat_rows = [
        [
            f"`BlockStore.append_block` of a block of {MAX_EVENTS} events "
            f"({len(result.commit[0])} blocks, the same for both)",
            _latency(lite_c),
            _latency(pg_c),
            f"{pg_c.median / lite_c.median:.2f}x",
        ],
        [
            f"Fill one log to {n:,} leaves: `append_block` of blocks of "
            f"{min(PROOF_BLOCK, n):,} entries (100 bytes each)",
            _rate(n / p.fill_s["sqlite"]).replace("events", "entries")
            + f" ({p.fill_s['sqlite']:.1f} s)",
            _rate(n / p.fill_s["postgresql"]).replace("events", "entries")
            + f" ({p.fill_s['postgresql']:.1f} s)",
            f"{p.fill_s['postgresql'] / p.fill_s['sqlite']:.2f}x the time",
        ],
        [
            f"Inclusion proof at size {n:,}, random leaf: `BlockStore.inclusion_proof`",
            _latency(lite_inc, "µs"),
            _latency(pg_inc, "µs"),
            f"{pg_inc.median / lite_inc.median:.2f}x",
        ],
        [
            f"Consistency proof, random old size → {n:,}: `BlockStore.consistency_proof`",
            _latency(lite_con, "µs"),
            _latency(pg_con, "µs"),
            f"{pg_con.median / lite_con.median:.2f}x",
        ],
    ]
    latency = markdown_table(LATENCY_HEADER, lat_rows, align="lrrr")

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    pg1 = stats[Setup("postgresql", 1)].median
    ratio = pg1 / base
    growth = ", ".join(
        f"{w} workers {stats[Setup('postgresql', w)].median / pg1:.2f}x" for w in WORKERS[1:]
    )
    machine_cores = os.cpu_count() or 1
    busy = {
        s: _median(result.runs[s], lambda r: r.cores(r.workers_cpu + r.broker_cpu + r.postgres_cpu))
        for s in SETUPS
    }
    per_worker = {
        s: _median(result.runs[s], lambda r: r.cores(r.workers_cpu)) / s.workers for s in SETUPS
    }
    pg_proof = max(pg_inc.median, pg_con.median)
    ungrouped = sum(1 for runs in result.runs.values() for r in runs if not r.grouped)
    scale = "" if n >= DEFAULT_PROOF_N else f" (N = {n:,} in this run, not {DEFAULT_PROOF_N:,})"
    notes = [
        f"Aim: one worker on PostgreSQL at least {AIM_PG_RATIO:.0%} of one on SQLite: "
        f"{verdict(ratio >= AIM_PG_RATIO)} ({ratio:.0%}: {_rate(pg1)} vs {_rate(base)}).",
        f"Aim: the rate grows with workers until the machine's cores are used: on PostgreSQL, "
        f"relative to 1 worker: {growth}. CPU busy in the window (all processes the run "
        f"started, of the machine's {machine_cores} cores): "
        + ", ".join(f"{s.label} {busy[s]:.2f}" for s in SETUPS)
        + "; each worker process "
        + ", ".join(f"{per_worker[s]:.2f}" for s in SETUPS)
        + " of a core (same order).",
        f"Aim: proofs at {n:,} leaves from PostgreSQL under "
        f"{AIM_PROOF_MEDIAN_S * 1e3:g} ms median{scale}: {verdict(pg_proof < AIM_PROOF_MEDIAN_S)} "
        f"(inclusion {pg_inc.median * 1e6:.0f} µs, consistency {pg_con.median * 1e6:.0f} µs; "
        f"{cfg.samples:,} random indices / old sizes, the same for both backends, each proof "
        "verified against the signed root).",
        f"The fill built its {-(-n // min(PROOF_BLOCK, n))} blocks once ({p.build_s:.1f} s of "
        "`build_block`: leaf hashes, tree, signature) and appended each to both stores; the "
        "times above are the appends alone.",
        f"Pre-fill: {cfg.n:,} events ({result.topic.prefill.mean_bytes:.0f} bytes on average) "
        f"produced in {result.topic.prefill.seconds:.1f} s (not timed). Load average "
        f"{result.load}. "
        + (
            f"{ungrouped} run(s) opened their window before every worker held a partition."
            if ungrouped
            else "Every window opened with every worker holding partitions."
        ),
    ]
    return throughput, latency, notes


def render(cfg: Config, result: Result) -> str:
    method = (
        f"{cfg.n:,} events in one topic of {PARTITIONS} partitions on a Tansu broker (in-memory "
        "storage) started by the benchmark, pre-filled before any timing as in `bench.sealer` "
        "(realistic events from the `ingest.events` builders and `TrafficModel`, every one "
        "valid). PostgreSQL: a throwaway local cluster started by the benchmark "
        "(`infra.postgres`: initdb/pg_ctl, loopback TCP, `fsync=on`, default "
        "`synchronous_commit`), on the same machine and disk as the SQLite files (WAL, "
        "`synchronous=FULL`). Each configuration runs `auditseal seal` workers with their "
        f"defaults (`--max-events {MAX_EVENTS} --max-interval {MAX_INTERVAL:g}`) in one fresh "
        "consumer group over the whole topic, with a fresh store (a new SQLite file or a new "
        "PostgreSQL database, given as `$AUDITSEAL_STORE`; the password from a libpq password "
        "file, `$PGPASSFILE`) and a fresh sealed topic. The benchmark reads the store every "
        f"{POLL_S * 1000:.0f} ms; the window opens at the first poll where every worker holds "
        "a partition (latest claims) and entries are committed, and closes at the poll that "
        "sees all N; events/s = entries committed in the window / its length (group forming "
        "left out, the last blocks waiting for `--max-interval` in). The workers' "
        "`auditseal_sealer_events_total` is checked to reach N. Configurations run in turn, "
        f"{cfg.repeat} round(s), the order rotated each round; medians. CPU: user + system "
        "time of the workers, the broker and the PostgreSQL server (postmaster and backends) "
        "inside the window / its length. Commit latency: the same blocks of "
        f"{MAX_EVENTS} of the same events built once in the benchmark's process, appended "
        "with `BlockStore.append_block` (one transaction each) to a fresh store of each "
        "backend, alternately. Proofs: one log filled to "
        f"{cfg.proof_n:,} leaves by appending the same big blocks to both backends, then "
        "proofs as in `bench.merkle` (a read-only store handle, random leaves and old sizes). "
        "The machine was shared with other work while it ran: read the ratios, measured side "
        "by side in one run."
    )
    throughput, latency, notes = report(cfg, result)
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(command(cfg), method)}\n{throughput}\n{latency}\n{bullets}"


def command(cfg: Config) -> str:
    """The command that makes this section: COMMAND and the options that are not defaults."""
    given = [
        ("--n", cfg.n, DEFAULT_N),
        ("--repeat", cfg.repeat, DEFAULT_REPEAT),
        ("--seed", cfg.seed, 1),
        ("--commit-blocks", cfg.commit_blocks, DEFAULT_COMMIT_BLOCKS),
        ("--proof-n", cfg.proof_n, DEFAULT_PROOF_N),
        ("--samples", cfg.samples, DEFAULT_SAMPLES),
    ]
    return " ".join(
        [COMMAND, *(f"{opt} {value}" for opt, value, default in given if value != default)]
    )


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"events in the topic ({DEFAULT_N:,})")
    ap.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="rounds over the configurations"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--commit-blocks",
        type=int,
        default=DEFAULT_COMMIT_BLOCKS,
        help=f"blocks timed for the commit latency ({DEFAULT_COMMIT_BLOCKS})",
    )
    ap.add_argument(
        "--proof-n",
        type=int,
        default=DEFAULT_PROOF_N,
        help=f"leaves of the log the proofs are taken from ({DEFAULT_PROOF_N:,})",
    )
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="proofs of each kind")
    ap.add_argument("--quick", action="store_true", help="short smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.commit_blocks = QUICK_N, 1, 12
        args.proof_n, args.samples = QUICK_PROOF_N, 100
    if args.n < 10 * PARTITIONS or args.repeat < 1:
        ap.error(f"need --n >= {10 * PARTITIONS} and a positive --repeat")
    if args.commit_blocks < 1 or args.proof_n < 2 or args.samples < 1:
        ap.error("need a positive --commit-blocks and --samples, and --proof-n >= 2")
    cfg = Config(
        args.n,
        args.repeat,
        args.seed,
        args.commit_blocks,
        args.proof_n,
        args.samples,
        args.quick,
    )
    return cfg, not (args.no_write or args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    return bench_main(
        "scaleout", lambda workdir: render(cfg, run(cfg, workdir)), write, SECTION, TITLE
    )


if __name__ == "__main__":
    sys.exit(main())
