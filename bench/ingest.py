"""Ingest throughput: the emitter and the HTTP gateway vs a bare producer, same run, same events.

Run ``.venv/bin/python -m bench.ingest`` from the repository root. It prints a markdown table and
rewrites the ``ingest`` section of docs/BENCHMARKS.md (``--no-write`` to only print). ``--quick``
is a seconds-long smoke run for the tests and never writes the docs.

The benchmark starts its own Tansu broker (``infra.broker.spawn``) on a free loopback port and
stops it at the end. Before any timing it builds N events once with the ``ingest.events``
builders, driven by the traffic simulator's model (``TrafficModel`` over four simulated proxies,
one of each kind), numbered per source from 1. Every measurement then sends those same events to
a fresh topic of 6 partitions:

* bare: a ``confluent_kafka.Producer`` with ``enable.idempotence=True``, ``acks=all``,
  ``linger.ms=5`` producing ``orjson.dumps(event)`` keyed by the source, with a delivery callback
  counting acknowledgements and ``poll(0)`` after each ``produce``, then ``flush()``: the
  baseline;
* emitter: ``Emitter.emit(event)`` for each event without its ``sequence`` (the emitter assigns
  it), validating (the default) and with ``validate=False``, then ``Emitter.flush()``;
* gateway: ``auditseal ingest serve --rate-limit 0`` as a subprocess; client threads in this
  process (one ``GatewayClient``, one source and one token each) post that source's events as
  NDJSON batches;
  the time runs until the last batch is answered 202 (which the gateway sends only once Kafka has
  acknowledged every event of it). Every batch is valid: one refused (400, 413) or answered 202
  for fewer events than were sent is counted, not retried, and a batch size with any such batch
  is reported as failed instead of with a rate.

Events/s are counted from the first send until every event is acknowledged (flush included).
Rounds are interleaved (round r runs every measurement once) and the table shows the median over
rounds. A per-event CPU breakdown of the emitter's steps (no broker) and the split between the
send loop and the final flush say where the time goes; ``--profile`` adds a cProfile of one
validating emitter run (printed to stderr, not part of the table).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_bytes
from typing import Any

import orjson

from auditseal.infra import broker
from auditseal.infra.processes import free_port, tail
from auditseal.ingest import ocsf_schema
from auditseal.ingest.client import GatewayClient, GatewayRefused
from auditseal.ingest.emitter import Emitter
from auditseal.ingest.envelope import (
    encode_event,
    is_ip_address,
    is_uri_reference,
    parse_batch,
    parse_rfc3339,
    triage,
    validate,
)
from auditseal.ingest.sequence import SequenceCounter
from auditseal.ingest.simulator import TrafficModel, simulated_proxies
from auditseal.sealer.blocks import _seal, build_block
from auditseal.sealer.signer import Signer
from auditseal.store.model import LogTip, Record
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.leaf import Entry
from bench._report import (
    BENCHMARKS_MD,
    Stats,
    markdown_table,
    replace_titled_section,
    section_header,
    significant,
)

COMMAND = ".venv/bin/python -m bench.ingest"
SECTION = "ingest"
TITLE = "## Ingest: emitter and gateway vs a bare producer"
TABLE_HEADER = ("Measurement", "Events/s", "Rounds (min-max)", "Ratio to bare producer")
DEFAULT_N = 200_000
PARTITIONS = 6
PROXIES = 4  # one of each kind; the gateway runs one client thread per proxy
BATCH = 500
SWEEP = (50, 200)
LINGER_MS = 5
WARMUP_SOURCE = "proxy://bench-warmup"
AIM_EMITTER_RATIO = 0.8  # without validation (issue 17)
AIM_VALIDATING_RATIO = 0.5  # validating, the default
AIM_GATEWAY_RATE = 10_000.0

_perf = time.perf_counter


def log(msg: str) -> None:
    print(f"[bench.ingest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the events ---------------------------------------------------------------------------


@dataclass
class Workload:
    events: list[dict[str, Any]]  # complete events, numbered per source from 1
    unnumbered: list[dict[str, Any]]  # the same without `sequence` (sharing `data`), to emit
    by_source: dict[str, list[dict[str, Any]]]
    mean_bytes: float
    warmup: dict[str, Any]  # one event of a source of its own, sent before every timer starts


def build_workload(n: int, seed: int) -> Workload:
    model = TrafficModel(simulated_proxies(PROXIES), seed)
    counts: Counter[str] = Counter()
    events: list[dict[str, Any]] = []
    for _ in range(n):
        proxy, build = model.next()
        counts[proxy.source] += 1
        events.append(build(counts[proxy.source]))
    unnumbered = [{k: v for k, v in e.items() if k != "sequence"} for e in events]
    by_source: dict[str, list[dict[str, Any]]] = {p.source: [] for p in model.proxies}
    for e in events:
        by_source[e["source"]].append(e)
    sample = events[: min(n, 10_000)]
    mean = sum(len(orjson.dumps(e)) for e in sample) / len(sample)
    warmup = {**events[0], "source": WARMUP_SOURCE, "sequence": 1, "id": "bench-warmup"}
    return Workload(events, unnumbered, by_source, mean, warmup)


# --- one measurement each; every function returns a Run ------------------------------------


@dataclass
class Run:
    seconds: float  # first send until every event acknowledged
    send_seconds: float  # first send until the last send call returned
    acked: int
    detail: dict[str, Any] = field(default_factory=dict)


def run_bare(
    bootstrap: str, topic: str, events: Sequence[dict[str, Any]], warmup: dict[str, Any]
) -> Run:
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": LINGER_MS,
        }
    )
    acked = [0, 0]  # delivered, failed

    def delivered(err: Any, _msg: Any) -> None:
        acked[0 if err is None else 1] += 1

    producer.produce(topic, orjson.dumps(warmup), warmup["source"].encode(), on_delivery=delivered)
    producer.flush(30)
    acked[0] = 0
    produce, poll, dumps = producer.produce, producer.poll, orjson.dumps
    t0 = _perf()
    for event in events:
        value, key = dumps(event), event["source"].encode()
        while True:
            try:
                produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:  # the queue is full (100,000 messages): let it drain
                poll(0.005)
        poll(0)
    t1 = _perf()
    left = producer.flush(120)
    t2 = _perf()
    if left or acked[1]:
        raise RuntimeError(f"bare producer: {left} left in the queue, {acked[1]} failed")
    del producer
    return Run(t2 - t0, t1 - t0, acked[0])


def run_emitter(
    bootstrap: str,
    topic: str,
    state_dir: Path,
    unnumbered: Sequence[dict[str, Any]],
    warmup: dict[str, Any],
    validate_events: bool,
    profile: cProfile.Profile | None = None,
) -> Run:
    emitter = Emitter(bootstrap, state_dir, topic=topic, validate=validate_events)
    try:
        emitter.emit({k: v for k, v in warmup.items() if k != "sequence"})
        emitter.flush(30)
        warm_acked = emitter.acked
        emit = emitter.emit
        if profile is not None:
            profile.enable()
        t0 = _perf()
        for event in unnumbered:
            emit(event)
        t1 = _perf()
        pending = emitter.pending()
        left = emitter.flush(120)
        t2 = _perf()
        if profile is not None:
            profile.disable()
    finally:
        emitter.close()
    if left or emitter.failures:
        raise RuntimeError(f"emitter: {left} left over, {emitter.failures} failed")
    return Run(t2 - t0, t1 - t0, emitter.acked - warm_acked, {"pending_after_send": pending})


class GatewayProcess:
    """``auditseal ingest serve`` on a free port, for one topic; stop() ends it."""

    def __init__(self, bootstrap: str, topic: str, tokens: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gateway-{topic}.log"
        argv = [
            *auditseal_argv(),
            "ingest",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--tokens",
            str(tokens),
            "--state-dir",
            str(workdir / f"gateway-state-{topic}"),
            "--rate-limit",
            "0",  # throughput is measured here, not the per-client limit
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {tail(self.log_path, 20)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {tail(self.log_path, 20)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def auditseal_argv() -> list[str]:
    """The ``auditseal`` command of this virtualenv (the console script, else its entry point)."""
    script = Path(sys.executable).with_name("auditseal")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from auditseal.cli.main import main; main()"]


def create_token(tokens: Path, source: str) -> str:
    out = subprocess.run(
        [*auditseal_argv(), "ingest", "token", "--source", source, "--tokens", str(tokens)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"auditseal ingest token failed: {out.stderr}")
    return out.stdout.strip()


def run_gateway(
    gateway: GatewayProcess,
    tokens: dict[str, str],
    by_source: dict[str, list[dict[str, Any]]],
    warmup: dict[str, Any],
    batch: int,
) -> Run:
    warm = GatewayClient(gateway.url)
    warm.post_events(tokens[WARMUP_SOURCE], [warmup])
    warm.close()
    jobs = [
        (tokens[source], [evs[i : i + batch] for i in range(0, len(evs), batch)])
        for source, evs in by_source.items()
    ]
    start = threading.Barrier(len(jobs) + 1)
    ends: list[float] = []
    accepted: list[int] = []
    refused: list[tuple[int, str]] = []  # (events in the batch, the gateway's first error)
    short: list[int] = []  # events missing from a 202 that accepted fewer than were sent
    errors: list[BaseException] = []
    retries: list[int] = []
    lock = threading.Lock()

    def client(token: str, batches: list[list[dict[str, Any]]]) -> None:
        gw_client = GatewayClient(gateway.url)
        count = 0
        try:
            start.wait()
            for chunk in batches:
                try:
                    got = gw_client.post_events(token, chunk)
                    count += got
                    if got != len(chunk):
                        with lock:
                            short.append(len(chunk) - got)
                except GatewayRefused as exc:
                    # A valid batch refused as invalid or too large is the gateway's fault: keep
                    # going and report it. Any other refusal (401, 403) is the benchmark's.
                    if exc.status not in (400, 413):
                        raise
                    with lock:
                        refused.append((len(chunk), f"{exc.status} {exc.errors[0]}"))
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            end = _perf()
            gw_client.close()
            with lock:
                ends.append(end)
                accepted.append(count)
                retries.append(gw_client.retries)

    threads = [threading.Thread(target=client, args=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    start.wait()
    t0 = _perf()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"gateway client failed: {errors[0]!r}") from errors[0]
    total = max(ends) - t0
    detail: dict[str, Any] = {
        "retries": sum(retries),
        "batches": sum(len(batches) for _, batches in jobs),
        "refused_batches": len(refused),
        "refused_events": sum(k for k, _ in refused),
        "short_batches": len(short),
        "lost_events": sum(short),
    }
    if refused:
        detail["refused_example"] = refused[0][1]
    return Run(total, total, sum(accepted), detail)


# --- where the emitter's time goes: per-event CPU cost of its steps, no broker -------------


def step_costs(work: Workload, state_dir: Path, n: int) -> dict[str, float]:
    """Microseconds per event of each step ``Emitter.emit`` takes before ``produce``."""
    events, unnumbered = work.events[:n], work.unnumbered[:n]
    with_ip = [e for e in events if "ip" in e["data"].get("src_endpoint", {})]
    counter = SequenceCounter(state_dir / "sequences.json")
    lock = threading.RLock()

    def each(fn: Callable[[dict[str, Any]], object], items: Sequence[dict[str, Any]]) -> float:
        if not items:
            return float("nan")
        gc.collect()
        t0 = _perf()
        for item in items:
            fn(item)
        return (_perf() - t0) / len(items) * 1e6

    def locked(_e: dict[str, Any]) -> None:
        with lock:
            pass

    def sequence(e: dict[str, Any]) -> None:
        counter.peek(e["source"])
        counter.next(e["source"])

    batch = min(BATCH, len(events))
    bodies = [
        b"\n".join(orjson.dumps(e) for e in events[i : i + batch]) + b"\n"
        for i in range(0, len(events) - batch + 1, batch)
    ]
    t0 = _perf()
    for body in bodies:
        parse_batch(body, "application/x-ndjson")
    parse_us = (_perf() - t0) / (len(bodies) * batch) * 1e6
    costs = {
        "parse_batch": parse_us,
        "validate": each(validate, events),
        "rfc3339": each(lambda e: parse_rfc3339(e["time"]), events),
        "uri": each(lambda e: is_uri_reference(e["source"]), events),
        "ip": each(lambda e: is_ip_address(e["data"]["src_endpoint"]["ip"]), with_ip),
        "encode": each(lambda e: encode_event(e, 1 << 20), events),
        "orjson": each(orjson.dumps, events),
        "copy": each(lambda e: {**e, "sequence": 1}, unnumbered),
        "sequence": each(sequence, unnumbered),
        "lock": each(locked, unnumbered),
    }
    counter.close()
    costs.update(sealing_costs(events))
    return costs


SEALING_ROUNDS = 5


def sealing_costs(events: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Microseconds per event of the sealer's per-record steps, median of several rounds:
    ``triage`` as the sealer runs it, beside the full validation path it used to take
    (``parse_event`` with every event's OCSF ``data`` checked by jsonschema itself), and
    ``build_block`` in blocks of 1000 records."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raws = [orjson.dumps(e) for e in events]

    def full_path(raw: bytes) -> None:
        triage(raw)

    def jsonschema_is_valid(
        data: Any, class_uid: int | None = None, *, parsed: bool = False
    ) -> bool:
        return not ocsf_schema.schema_problems(data, "data", class_uid)

    def timed(fn: Callable[[bytes], object], items: Sequence[bytes]) -> float:
        gc.collect()
        t0 = _perf()
        for item in items:
            fn(item)
        return (_perf() - t0) / len(items) * 1e6

    signer = Signer("bench", Ed25519PrivateKey.from_private_bytes(bytes(32)))
    records = [Record(i, 1_700_000_000_000 + i, b"src", raw) for i, raw in enumerate(raws)]
    blocks = [records[i : i + 1000] for i in range(0, len(records), 1000)]

    def seal_all() -> float:
        gc.collect()
        t0 = _perf()
        for block in blocks:
            build_block(LogTip("bench/0", CompactRange(), None, -1), block, signer, 0)
        return (_perf() - t0) / len(records) * 1e6

    def seal_all_by_entry() -> float:
        # build_block as it was before issue 17: Entry.seal, then Entry.leaf_hash() per entry
        # (which recomputes the commitment and builds a Leaf); the rest of the block the same.
        gc.collect()
        t0 = _perf()
        for block in blocks:
            entries = tuple(
                Entry.seal("bench/0", r.position, r.timestamp_ms, r.key, r.value, token_bytes(16))
                for r in block
            )
            tip = LogTip("bench/0", CompactRange(), None, -1)
            _seal(tip, entries, tuple(block), signer, 0, block[-1].position, ())
        return (_perf() - t0) / len(records) * 1e6

    sample = raws[: min(len(raws), 500)]  # jsonschema takes ~1 ms per event
    rounds: dict[str, list[float]] = {
        "triage": [],
        "triage_full": [],
        "build_block": [],
        "build_block_by_entry": [],
    }
    compiled = ocsf_schema.is_valid
    for _ in range(SEALING_ROUNDS):
        rounds["triage"].append(timed(triage, raws))
        ocsf_schema.is_valid = jsonschema_is_valid  # type: ignore[assignment]
        try:
            rounds["triage_full"].append(timed(full_path, sample))
        finally:
            ocsf_schema.is_valid = compiled  # type: ignore[assignment]
        rounds["build_block"].append(seal_all())
        rounds["build_block_by_entry"].append(seal_all_by_entry())
    return {name: Stats.of(values).median for name, values in rounds.items()}


# --- running and reporting ----------------------------------------------------------------


@dataclass
class Config:
    n: int
    repeat: int
    batch: int
    sweep: tuple[int, ...]
    seed: int
    profile: bool
    quick: bool


def measurement_names(cfg: Config) -> list[str]:
    names = ["bare", "emitter", "emitter-novalidate", f"gateway-{cfg.batch}"]
    return names + [f"gateway-{b}" for b in cfg.sweep if b != cfg.batch]


@dataclass(frozen=True)
class Failure:
    """What went wrong with a gateway measurement's valid batches, over all its rounds."""

    batches: int
    refused: int  # answered 400 or 413
    short: int  # answered 202, but for fewer events than sent
    lost: int  # events missing from those 202 answers
    example: str

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Failure | None:
        def total(key: str) -> int:
            return sum(r.detail.get(key, 0) for r in runs)

        if not total("refused_batches") and not total("short_batches"):
            return None
        examples = [r.detail["refused_example"] for r in runs if "refused_example" in r.detail]
        return cls(
            total("batches"),
            total("refused_batches"),
            total("short_batches"),
            total("lost_events"),
            examples[0] if examples else "",
        )

    def summary(self) -> str:
        parts = []
        if self.refused:
            parts.append(f"{self.refused} of {self.batches} batches refused (`{self.example}`)")
        if self.short:
            parts.append(
                f"{self.short} answered 202 for fewer events than sent ({self.lost:,} events "
                "dropped)"
            )
        return "; ".join(parts)


@dataclass
class Result:
    rows: list[list[str]]
    notes: list[str]
    mean_bytes: float
    threads: int


def run(cfg: Config, workdir: Path) -> Result:
    log(f"building {cfg.n:,} events from {PROXIES} simulated proxies")
    t0 = _perf()
    work = build_workload(cfg.n, cfg.seed)
    log(f"built in {_perf() - t0:.1f} s, {work.mean_bytes:.0f} bytes per event on average")
    # The pre-built events stay alive all run: keep them out of the collector's way (a proxy or
    # the gateway does not hold hundreds of thousands of events).
    gc.collect()
    gc.freeze()
    costs = step_costs(work, workdir / "steps", min(cfg.n, 20_000))

    service = broker.spawn(free_port(), workdir / "broker.log")
    gateway: GatewayProcess | None = None
    try:
        broker.wait_ready(service, timeout=60)
        bootstrap = service.address
        log(f"Tansu broker at {bootstrap}")
        tokens_path = workdir / "tokens"
        tokens = {s: create_token(tokens_path, s) for s in [*work.by_source, WARMUP_SOURCE]}
        times: dict[str, list[Run]] = {name: [] for name in measurement_names(cfg)}
        topic_no = 0
        for r in range(cfg.repeat):
            for name in times:
                topic_no += 1
                topic = f"bench-{os.getpid()}-{topic_no}-{name}"
                broker.create_topic(bootstrap, topic, PARTITIONS)
                gc.collect()
                try:
                    if name == "bare":
                        result = run_bare(bootstrap, topic, work.events, work.warmup)
                    elif name.startswith("emitter"):
                        result = run_emitter(
                            bootstrap,
                            topic,
                            workdir / f"emitter-{topic_no}",
                            work.unnumbered,
                            work.warmup,
                            validate_events=name == "emitter",
                        )
                    else:
                        gateway = GatewayProcess(bootstrap, topic, tokens_path, workdir)
                        gateway.wait_ready()
                        batch = int(name.rsplit("-", 1)[1])
                        result = run_gateway(gateway, tokens, work.by_source, work.warmup, batch)
                        gateway.stop()
                        gateway = None
                finally:
                    if gateway is not None:
                        gateway.stop()
                        gateway = None
                    broker.delete_topics(bootstrap, [topic])
                refused = result.detail.get("refused_events", 0)
                lost = result.detail.get("lost_events", 0)
                if result.acked + refused + lost != cfg.n:
                    raise RuntimeError(
                        f"{name}: {result.acked} acknowledged, {refused} refused, {lost} missing "
                        f"from 202 answers; not {cfg.n}"
                    )
                times[name].append(result)
                log(
                    f"round {r + 1}/{cfg.repeat} {name}: {result.seconds:.2f} s, "
                    f"{cfg.n / result.seconds:,.0f} events/s {result.detail or ''}"
                )
        if cfg.profile:
            profile_emitter(bootstrap, work, workdir)
    finally:
        if gateway is not None:
            gateway.stop()
        broker.stop(service, timeout=5.0)
        gc.unfreeze()
    rows, notes = report(cfg, work, times, costs)
    return Result(rows, notes, work.mean_bytes, len(work.by_source))


def profile_emitter(bootstrap: str, work: Workload, workdir: Path) -> None:
    topic = f"bench-{os.getpid()}-profile"
    broker.create_topic(bootstrap, topic, PARTITIONS)
    prof = cProfile.Profile()
    try:
        result = run_emitter(
            bootstrap, topic, workdir / "profile", work.unnumbered, work.warmup, True, prof
        )
    finally:
        broker.delete_topics(bootstrap, [topic])
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(20)
    log(f"cProfile of one validating emitter run ({result.seconds:.2f} s under the profiler):")
    print(out.getvalue(), file=sys.stderr)


def report(
    cfg: Config, work: Workload, times: dict[str, list[Run]], costs: dict[str, float]
) -> tuple[list[list[str]], list[str]]:
    n = cfg.n
    rates = {name: [n / r.seconds for r in runs] for name, runs in times.items()}
    threads = len(work.by_source)

    labels = {
        "bare": "Bare `confluent_kafka.Producer`: `produce(orjson.dumps(event), key=source)`, "
        "`flush()` (baseline)",
        "emitter": "`Emitter.emit(event)`, validating (the default), `flush()`",
        "emitter-novalidate": "`Emitter(validate=False).emit(event)`, `flush()`",
    }
    rows: list[list[str]] = []
    failed: dict[str, Failure] = {}
    for name, runs in times.items():
        failure = Failure.of(runs)
        if failure is not None:
            failed[name] = failure
    med = {name: Stats.of(rs).median for name, rs in rates.items() if name not in failed}
    base = med["bare"]
    for name, rs in rates.items():
        if name.startswith("gateway-"):
            b = int(name.rsplit("-", 1)[1])
            label = (
                f"Gateway `POST /v1/events`, NDJSON batches of {b:,}, {threads} client threads "
                "(`auditseal ingest serve` subprocess)"
            )
        else:
            label = labels[name]
        if name in failed:
            rows.append([label, f"**failed**: {failed[name].summary()}", "-", "-"])
            continue
        s = Stats.of(rs)
        rows.append(
            [
                label,
                _rate(s.median),
                f"{significant(s.minimum)}-{significant(s.maximum)}",
                _ratio(s.median / base),
            ]
        )

    def send_us(name: str) -> float:
        return Stats.of([r.send_seconds / n * 1e6 for r in times[name]]).median

    def flush_ms(name: str) -> float:
        return Stats.of([(r.seconds - r.send_seconds) * 1e3 for r in times[name]]).median

    emitter_ratio = med["emitter"] / base
    novalidate_ratio = med["emitter-novalidate"] / base
    gw_name = f"gateway-{cfg.batch}"
    working = {int(k.rsplit("-", 1)[1]): v for k, v in med.items() if k.startswith("gateway-")}

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    if gw_name in failed:
        gw_verdict = (
            f"**not met**: with batches of {cfg.batch}, over {cfg.repeat} round(s), "
            f"{failed[gw_name].summary()}"
        )
    else:
        gw = med[gw_name]
        gw_verdict = f"{verdict(gw >= AIM_GATEWAY_RATE)} with batches of {cfg.batch} ({_rate(gw)})"
    others = [
        f"{_rate(r)} with batches of {b}" for b, r in sorted(working.items()) if b != cfg.batch
    ]
    if others:
        gw_verdict += "; " + ", ".join(others)
    bare_us = 1e6 / base
    budget_us = bare_us / AIM_EMITTER_RATIO - bare_us
    notes = [
        f"Aim: the emitter at least {AIM_VALIDATING_RATIO:.0%} of the bare producer's rate "
        f"validating, {AIM_EMITTER_RATIO:.0%} without: "
        f"{verdict(emitter_ratio >= AIM_VALIDATING_RATIO)} with validation, the default "
        f"({emitter_ratio:.0%}); {verdict(novalidate_ratio >= AIM_EMITTER_RATIO)} with "
        f"`validate=False` ({novalidate_ratio:.0%}). The bare producer spends "
        f"{bare_us:.1f} µs per event, so the aim leaves the emitter {budget_us:.1f} µs per "
        f"event for everything it adds; `validate` alone takes {costs['validate']:.1f} µs.",
        f"Aim: the gateway at least {AIM_GATEWAY_RATE:,.0f} events/s in batches: {gw_verdict}.",
        f"Where the emitter's time goes: the send loop (first to last send call) takes "
        f"{send_us('bare'):.1f} µs per event for the bare producer, "
        f"{send_us('emitter'):.1f} µs for the validating emitter and "
        f"{send_us('emitter-novalidate'):.1f} µs without validation; the final flush adds "
        f"{flush_ms('bare'):.0f} / {flush_ms('emitter'):.0f} / "
        f"{flush_ms('emitter-novalidate'):.0f} ms. Per event, measured alone on the same "
        f"events (no broker): `validate` {costs['validate']:.1f} µs (of which "
        f"`parse_rfc3339(time)` {costs['rfc3339']:.1f}, `is_ip_address` "
        f"{costs['ip']:.1f}, `is_uri_reference(source)` {costs['uri']:.1f}), "
        f"`encode_event` {costs['encode']:.2f} µs (`orjson.dumps` alone {costs['orjson']:.2f}), "
        f"the event copy with its sequence {costs['copy']:.2f} µs, `SequenceCounter.peek` + "
        f"`next` {costs['sequence']:.2f} µs (an fsync'd save every 1000 events per source), "
        f"the `RLock` {costs['lock']:.2f} µs.",
        f"The sealer's per-record steps, measured alone on the same events (median of "
        f"{SEALING_ROUNDS} rounds): `triage` {costs['triage']:.1f} µs per event, against "
        f"{costs['triage_full']:.0f} µs for the same verdict by the full validation path "
        "(every event's OCSF `data` checked by jsonschema itself); `build_block` "
        f"{costs['build_block']:.1f} µs per event in blocks of 1000 (salt, commitment, leaf "
        "hash, tree, signed checkpoint), against "
        f"{costs['build_block_by_entry']:.1f} µs hashing each leaf through `Entry.leaf_hash()` "
        "as before.",
        f"Where the gateway's time goes, per event, measured alone: `parse_batch` of a "
        f"{cfg.batch}-event NDJSON body {costs['parse_batch']:.1f} µs (parse, `validate`, size "
        f"re-encode), `encode_event` again before producing {costs['encode']:.2f} µs; the "
        "gateway is one asyncio process, on the same cores as its clients and the broker.",
    ]
    if any("unexpected end of data" in f.example or f.short for f in failed.values()):
        notes.append(
            "Every batch sent is valid (the same events pass every other measurement). A batch "
            "refused with 400 `not valid JSON: unexpected end of data`, or answered 202 with "
            "fewer `accepted` than sent, is a body the gateway read only in part: "
            "`Gateway._body` reads it with a single `request.content.read(limit + 1)`, and "
            "aiohttp's `StreamReader.read(n)` returns what has arrived so far (at most n "
            "bytes), so a body that arrives in several chunks is cut short. Cut inside a line, "
            "the batch is refused; cut at the end of a line, the rest of the batch is dropped "
            "and the gateway still answers 202 for what it read."
        )
    last = times["emitter"][-1].detail.get("pending_after_send")
    if last is not None:
        notes.append(
            "When the validating emitter's send loop ended (last round), `pending()` counted "
            f"{last['memory']:,} events in memory (queued, in flight, or acknowledged with "
            "the delivery report not yet served by the emitter's poll thread) and "
            f"{last['spool']:,} in the spool."
        )
    retries = sum(r.detail.get("retries", 0) for name in times for r in times[name])
    notes.append(
        f"Gateway clients retried {retries} batch(es) after a 503 over all rounds; "
        "the client threads, the gateway and the broker share the machine's "
        f"{os.cpu_count()} cores."
    )
    return rows, notes


def _rate(per_s: float) -> str:
    return f"{significant(per_s)} events/s"


def _ratio(r: float) -> str:
    return f"{r:.2f}x"


def render(cfg: Config, result: Result) -> str:
    threads = result.threads
    method = (
        f"{cfg.n:,} events built once before any timing with the `ingest.events` builders, "
        f"driven by `TrafficModel` over {PROXIES} simulated proxies (database, SSH, API, "
        f"Kubernetes; {result.mean_bytes:.0f} bytes per event on average), the same events for "
        "every measurement; the emitter gets them without their `sequence` and numbers them "
        "itself. A Tansu broker (in-memory storage) started by the benchmark on the same "
        f"machine; a fresh topic of {PARTITIONS} partitions per measurement, keys = sources. "
        "The bare producer has `enable.idempotence=True`, `acks=all`, "
        f"`linger.ms={LINGER_MS}` (librdkafka defaults otherwise), a delivery callback "
        "counting acknowledgements and `poll(0)` after each `produce`; the emitter runs with "
        "its defaults (the same idempotent acks=all producer settings, a 100,000-event memory "
        "queue) and a fresh state directory. Before each timer starts, one warm-up event of a "
        "source of its own is sent and acknowledged (by the same producer, emitter or gateway), "
        "so that connecting, the idempotent producer id and the new topic's metadata are not "
        "timed (a first send to a new topic otherwise stalls about 0.5 s). Gateway: "
        f"`auditseal ingest serve` subprocess, {threads} client "
        "threads in the benchmark process, one `GatewayClient`, source and token each, posting "
        "their source's events in order. Events/s from the first send until every event is "
        "acknowledged (flush, or the last 202); median over "
        f"{cfg.repeat} interleaved rounds; ratio = median rate / the bare producer's median rate."
    )
    table = markdown_table(TABLE_HEADER, result.rows, align="lrrr")
    bullets = "".join(f"- {note}\n" for note in result.notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{bullets}"


def write_section(text: str, path: Path = BENCHMARKS_MD) -> None:
    replace_titled_section(SECTION, TITLE, text, path)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="events per measurement (200,000)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--batch", type=int, default=BATCH, help="gateway batch size (500)")
    ap.add_argument(
        "--sweep",
        default=",".join(map(str, SWEEP)),
        help="other gateway batch sizes, comma separated ('' for none)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="cProfile one emitter run (stderr)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args(argv)
    try:
        sweep = tuple(int(b) for b in args.sweep.split(",") if b.strip())
    except ValueError:
        ap.error("--sweep: comma-separated batch sizes")
    if args.quick:
        args.n, args.repeat, sweep = 2000, 1, (50,)
    if args.n < PROXIES or args.repeat < 1 or args.batch < 1 or any(b < 1 for b in sweep):
        ap.error(f"need --n >= {PROXIES} and positive --repeat, --batch, --sweep sizes")
    cfg = Config(args.n, args.repeat, args.batch, sweep, args.seed, args.profile, args.quick)
    return cfg, not (args.no_write or args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="auditseal-bench-ingest-") as tmp:
        result = run(cfg, Path(tmp))
    text = render(cfg, result)
    print(text)
    if write:
        write_section(text)
        log(f"wrote section {SECTION!r} of docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
