"""Anchoring on Ethereum: gas and latency per anchor transaction, through the real service.

Run ``.venv/bin/python -m bench.anchor`` from the repository root. It prints markdown tables and
rewrites the ``anchor`` section of docs/BENCHMARKS.md (``--no-write`` to only print).
``--quick`` is a seconds-long smoke run for the tests and never writes the docs.

The benchmark starts its own Anvil (``infra.chain``) on a free loopback port and stops it at the
end. For each case (1, 16 and 256 logs) it deploys a fresh ``AuditAnchor`` with
``anchor.deploy.deploy`` (so every case starts at ``seq`` 1), builds a block store with the
sealer's ``LogWriter`` (each log gets several blocks of many events, so one anchor covers a
realistic number of events) and runs anchor rounds with ``AnchorService.run_once``, the code of
``auditseal anchor run``, with the service's default options (one confirmation):

* gas: the receipt's ``gasUsed`` of every anchor transaction; cost in ETH = gas x gas price;
* events covered: the sum of the sizes of the checkpoints in the first anchor's aggregate;
* round time: ``run_once`` from start to return (reorg check, reading the latest checkpoint of
  every log, the aggregate tree, ``rootOf``, gas estimate, fees, signing, sending, the receipt
  with one confirmation, the store's record); the first round of a case follows the service's
  connection checks, which are not timed (a running service makes them once). Later rounds
  follow a new block in one log.

Latency from sealing to anchor: a service loop (``AnchorService.run_forever`` with an interval,
in a thread with its own store handle) runs over a store of 16 logs; the benchmark waits a
random fraction of the interval, seals a block into one log with ``LogWriter.append``, notes the
time when it returns (durable), and polls the store until the receipt of that log's new
checkpoint is recorded. The bound to compare with is interval + round time: a block sealed just
after a round read the logs waits for the next round, which starts one interval after the
previous one started and takes one round time.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_typing import HexStr

from auditseal.anchor.artifact import Artifact, load_artifact
from auditseal.anchor.chain_client import ChainClient, ChainKey
from auditseal.anchor.deploy import Deployment, deploy
from auditseal.anchor.service import AnchorService, RoundResult, ServiceOptions
from auditseal.infra import chain
from auditseal.infra.processes import free_port, tail
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.model import Record
from auditseal.verifier.anchor import build_aggregate, checkpoint_body
from auditseal.verifier.checkpoint import Checkpoint
from bench._report import (
    BENCHMARKS_MD,
    Stats,
    markdown_table,
    replace_titled_section,
    section_header,
)

COMMAND = ".venv/bin/python -m bench.anchor"
SECTION = "anchor"
TITLE = "## Anchor: gas and latency per anchor transaction"
CASES = (1, 16, 256)
TABLE_HEADER = ("Measurement", *(f"{n} log{'s' if n > 1 else ''}" for n in CASES))
LATENCY_HEADER = ("Seal to anchor", "Median", "Max", "Bound: interval + round time", "Samples")
GWEI = (1, 10, 50)
AIM_GAS = 50_000
POLL = ServiceOptions().poll  # s between the service's receipt look-ups (the default)
LATENCY_LOGS = 16
# Anvil's first default account: public, funded on every fresh Anvil. Never on a real network.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SIGNER = Signer("bench", Ed25519PrivateKey.from_private_bytes(bytes(32)))


def log(msg: str) -> None:
    print(f"[bench.anchor {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    blocks: int  # blocks per log
    events: int  # events per block
    rounds: int  # anchor rounds per case
    interval: float  # s, the service interval of the latency measurement
    samples: int  # latency samples
    seed: int
    quick: bool


@dataclass
class Case:
    logs: int
    events: int  # covered by the first anchor
    build_seconds: float
    aggregate_seconds: float  # current_bodies + build_aggregate, measured alone
    gas: list[int] = field(default_factory=list)
    calldata_gas: list[int] = field(default_factory=list)  # 4 per zero byte, 16 per other
    round_seconds: list[float] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)  # the service's pauses
    polled_rounds: int = 0  # rounds in which the service paused (receipt not there yet)


@dataclass
class Latency:
    interval: float
    seconds: list[float]  # seal returned -> receipt in the store
    rounds: list[float]  # duration of every anchoring round of the loop
    sleeps: list[float]  # the service's pauses in them


# --- stores -----------------------------------------------------------------------------


def origin(i: int) -> str:
    return f"bench.auditseal.local/anchor/{i}"


class Logs:
    """A store whose logs are appended to by the sealer's LogWriter."""

    def __init__(self, path: Path, events: int) -> None:
        self.store = BlockStore.open(path, create=True)
        self.writer = LogWriter(self.store, SIGNER, lambda: time.time_ns() // 1_000_000)
        self.events = events

    def append(self, i: int) -> str:
        """Seal one block of ``events`` records into log ``i``; its checkpoint body."""
        start = self.writer.tip(origin(i)).next_position
        now = time.time_ns() // 1_000_000
        records = [
            Record(start + k, now, b"bench", f"event {start + k} of log {i}".encode())
            for k in range(self.events)
        ]
        return checkpoint_body(self.writer.append(origin(i), records).checkpoint)


def covered_events(bodies: Sequence[str]) -> int:
    return sum(Checkpoint.from_text(b).size for b in bodies)


# --- the chain --------------------------------------------------------------------------


def new_service(
    store: BlockStore, rpc: str, record: Deployment, artifact: Artifact, sleeps: list[float]
) -> AnchorService:
    """The service as ``auditseal anchor run`` builds it, with its default options; every
    pause it makes (receipt polls, backoff) is appended to ``sleeps``."""

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    key = ChainKey.from_hex(DEV_KEY, "dev key")
    return AnchorService(store, key, record, artifact, rpc, sleep=sleep)


def deployed(rpc: str, artifact: Artifact) -> Deployment:
    client = ChainClient.connect(rpc, expected_chain_id=chain.CHAIN_ID)
    return deploy(client, ChainKey.from_hex(DEV_KEY, "dev key"), artifact)


def anchored(result: RoundResult, what: str) -> int:
    if result.action != "anchored" or result.gas_used is None:
        raise RuntimeError(f"{what}: expected an anchor transaction, got {result.to_json()}")
    return result.gas_used


def calldata_gas(client: ChainClient, tx_hash: str) -> int:
    """The transaction's calldata charge: 4 gas per zero byte, 16 per non-zero byte."""
    data = bytes(client.w3.eth.get_transaction(HexStr(tx_hash))["input"])
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


# --- measurements -----------------------------------------------------------------------


def run_case(n: int, cfg: Config, rpc: str, artifact: Artifact, tmp: Path) -> Case:
    started = time.perf_counter()
    logs = Logs(tmp / f"store-{n}.db", cfg.events)
    try:
        for _ in range(cfg.blocks):
            for i in range(n):
                logs.append(i)
        build = time.perf_counter() - started
        log(f"{n} log(s): store of {n * cfg.blocks * cfg.events:,} events built in {build:.1f} s")
        record = deployed(rpc, artifact)
        sleeps: list[float] = []
        svc = new_service(logs.store, rpc, record, artifact, sleeps)
        svc.client()  # connection checks, once per service: not part of a round
        t0 = time.perf_counter()
        bodies = list(svc.current_bodies().values())
        build_aggregate(bodies)
        aggregate = time.perf_counter() - t0
        case = Case(n, covered_events(bodies), build, aggregate, sleeps=sleeps)
        rng = random.Random(cfg.seed + n)
        for r in range(cfg.rounds):
            if r:
                logs.append(rng.randrange(n))
            paused = len(sleeps)
            t0 = time.perf_counter()
            result = svc.run_once()
            case.round_seconds.append(time.perf_counter() - t0)
            case.polled_rounds += len(sleeps) > paused
            case.gas.append(anchored(result, f"{n} log(s), round {r + 1}"))
            assert result.tx_hash is not None
            case.calldata_gas.append(calldata_gas(svc.client(), result.tx_hash))
            if result.logs != n:
                raise RuntimeError(f"anchor {result.seq} covers {result.logs} logs, not {n}")
        log(
            f"{n} log(s): gas {case.gas}, rounds "
            + ", ".join(f"{s * 1000:.0f} ms" for s in case.round_seconds)
            + f", service pauses {sleeps}"
        )
        return case
    finally:
        logs.store.close()


def run_latency(cfg: Config, rpc: str, artifact: Artifact, tmp: Path) -> Latency:
    logs = Logs(tmp / "store-latency.db", cfg.events)
    for i in range(LATENCY_LOGS):
        logs.append(i)
    record = deployed(rpc, artifact)
    rounds: list[float] = []
    sleeps: list[float] = []
    failed: list[BaseException] = []
    stop = threading.Event()
    ready = threading.Event()

    def loop() -> None:
        try:
            with BlockStore.open(logs.store.path) as own:  # SQLite handles stay in a thread
                svc = new_service(own, rpc, record, artifact, sleeps)
                svc.client()
                inner: Callable[[], RoundResult] = svc.run_once

                def timed() -> RoundResult:
                    t0 = time.perf_counter()
                    result = inner()
                    if result.action != "unchanged":
                        rounds.append(time.perf_counter() - t0)
                        ready.set()
                    return result

                svc.run_once = timed  # type: ignore[method-assign]
                svc.run_forever(cfg.interval, stop)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
            ready.set()

    thread = threading.Thread(target=loop, name="anchor-service", daemon=True)
    thread.start()
    rng = random.Random(cfg.seed)
    seconds: list[float] = []
    try:
        if not ready.wait(60) or failed:
            raise RuntimeError(f"the service loop did not anchor the initial state: {failed}")
        for k in range(cfg.samples):
            time.sleep(rng.uniform(0, cfg.interval))  # a random phase of the loop
            i = k % LATENCY_LOGS
            body = logs.append(i)
            sealed = time.perf_counter()
            deadline = sealed + cfg.interval * 3 + 60
            while True:
                got = logs.store.latest_anchored_checkpoint(origin(i))
                if got is not None and got.checkpoint == body:
                    seconds.append(time.perf_counter() - sealed)
                    break
                if failed or time.perf_counter() > deadline:
                    raise RuntimeError(f"block {k} was not anchored in time: {failed}")
                time.sleep(0.002)
            log(f"latency sample {k + 1}/{cfg.samples}: {seconds[-1] * 1000:.0f} ms")
    finally:
        stop.set()
        thread.join(cfg.interval + 120)
        logs.store.close()
    if failed:
        raise RuntimeError(f"the service loop failed: {failed[0]!r}")
    return Latency(cfg.interval, seconds, rounds, sleeps)


def run(cfg: Config, tmp: Path) -> tuple[list[Case], Latency, str]:
    artifact = load_artifact()
    service = chain.start(free_port(), tmp / "anvil.log")
    log(f"Anvil at {service.address} (pid {service.pid})")
    try:
        client = ChainClient.connect(service.address)
        version = str(client.w3.provider.make_request("web3_clientVersion", [])["result"])  # type: ignore[arg-type]
        cases = [run_case(n, cfg, service.address, artifact, tmp) for n in CASES]
        latency = run_latency(cfg, service.address, artifact, tmp)
    except BaseException:
        log(f"Anvil log tail:\n{tail(service.log)}")
        raise
    finally:
        chain.stop(service)
        log(f"Anvil at {service.address} stopped")
    return cases, latency, version


# --- the report -------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def sig3(x: float) -> str:
    """Three significant digits, without exponent notation."""
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{max(0, 2 - math.floor(math.log10(x)))}f}"


def eth(wei: int) -> str:
    return f"{sig3(wei / 1e18)} ETH"


def gas_cell(gas: Sequence[int]) -> str:
    if min(gas) == max(gas):
        return f"{gas[0]:,}" + (f" (all {len(gas)} rounds)" if len(gas) > 1 else "")
    return f"{gas[0]:,} (rounds {min(gas):,}-{max(gas):,})"


def render(cfg: Config, cases: list[Case], latency: Latency, version: str) -> str:
    per_block = f"{cfg.blocks} block{'s' if cfg.blocks > 1 else ''} of {cfg.events:,} events"
    method = (
        f"an Anvil started by the benchmark ({version}, chain id {chain.CHAIN_ID}, automine, "
        f"default hardfork), a fresh `AuditAnchor` deployed per case with `anchor.deploy.deploy`; "
        f"stores built with the sealer's `LogWriter` ({per_block} per log, Ed25519-signed "
        "checkpoints); anchor rounds run by `AnchorService.run_once` (the code of "
        "`auditseal anchor run`) with its default options (1 confirmation, estimate + 20 % gas "
        f"limit, EIP-1559 fees from the node). {cfg.rounds} rounds per case: the first covers "
        "the whole store, each later one follows one new block in one log. Gas is the receipt's "
        "`gasUsed`; cost = gas x gas price (base fee + tip). Round time is `run_once` from call "
        "to return: reorg check, latest checkpoint of every log, aggregate tree, `rootOf`, gas "
        "estimate, signing, sending, the receipt with 1 confirmation, the store's record of the "
        "anchor and one receipt per log (the service's one-time connection checks are not "
        "timed). Latency: `AnchorService.run_forever` with an interval of "
        f"{latency.interval:g} s in a thread over a store of {LATENCY_LOGS} logs; after a random "
        "wait of 0 to 1 interval, one block is sealed with `LogWriter.append`, and the time runs "
        "from its return (durable) until the store holds the receipt for that log's new "
        "checkpoint (polled every 2 ms)."
    )
    rows: list[list[str]] = [
        ["Logs (checkpoints) in the aggregate", *(f"{c.logs:,}" for c in cases)],
        [
            "Events covered by one anchor transaction (first round)",
            *(f"{c.events:,}" for c in cases),
        ],
        ["Gas used per anchor transaction (receipt `gasUsed`)", *(gas_cell(c.gas) for c in cases)],
        [
            "Of which calldata (4 gas per zero byte, 16 per other byte of the input)",
            *(gas_cell(c.calldata_gas) for c in cases),
        ],
        [
            "Gas used minus calldata",
            *(gas_cell([g - d for g, d in zip(c.gas, c.calldata_gas, strict=True)]) for c in cases),
        ],
        ["Gas per event covered (first round)", *(sig3(c.gas[0] / c.events) for c in cases)],
    ]
    for g in GWEI:
        rows.append([f"Cost per anchor at {g} gwei", *(eth(c.gas[0] * g * 10**9) for c in cases)])
    rows.append(
        [
            "Service round time, median (max): aggregate + send + 1 confirmation + record",
            *(
                f"{ms(statistics.median(c.round_seconds))} ({ms(max(c.round_seconds))})"
                for c in cases
            ),
        ]
    )
    rows.append(
        [
            "of which reading the latest checkpoints and building the aggregate (measured alone)",
            *(ms(c.aggregate_seconds) for c in cases),
        ]
    )
    rows.append(
        [
            f"Rounds that paused one receipt poll ({POLL:g} s): receipt not there at the first "
            "look-up after sending",
            *(f"{c.polled_rounds} of {len(c.round_seconds)}" for c in cases),
        ]
    )
    table = markdown_table(TABLE_HEADER, rows, align="l" + "r" * len(CASES))

    lat = Stats.of(latency.seconds)
    round_max = max(latency.rounds)
    bound = latency.interval + round_max
    lat_table = markdown_table(
        LATENCY_HEADER,
        [
            [
                f"Block sealed → its receipt recorded, service interval {latency.interval:g} s, "
                f"{LATENCY_LOGS} logs",
                ms(lat.median),
                ms(lat.maximum),
                f"{latency.interval:g} s + {ms(round_max)} = {ms(bound)}",
                str(lat.n),
            ]
        ],
        align="lrrrr",
    )

    gases = [g for c in cases for g in c.gas]
    execution = {g - d for c in cases for g, d in zip(c.gas, c.calldata_gas, strict=True)}
    under = max(gases) <= AIM_GAS
    same = len(execution) == 1  # only the calldata bytes differ, never with the number of logs
    notes = [
        f"Aim: at most {AIM_GAS:,} gas per anchor transaction, the same for 1 and 256 logs: "
        + ("**met**" if under and same else "**not met**")
        + f": {cases[0].gas[0]:,} gas for 1 log, {cases[-1].gas[0]:,} for 256 logs, "
        f"{min(gases):,}-{max(gases):,} over all {len(gases)} anchors; gas minus calldata is "
        + (
            f"{min(execution):,} for every one of them. Any variation is calldata: "
            "a zero byte in the root (or in `seq`, `logs`) costs 4 gas instead of 16, so "
            "a root with k zero bytes costs 12 x k gas less, whatever the number of logs."
            if same
            else f"{min(execution):,}-{max(execution):,}: it depends on more than calldata."
        ),
        "Aim: seal-to-anchor latency at most interval + confirmation time: "
        + ("**met**" if lat.maximum <= bound else "**not met**")
        + f": median {ms(lat.median)}, max {ms(lat.maximum)} against "
        f"{latency.interval:g} s + the longest anchoring round of the loop ({ms(round_max)}, "
        f"median {ms(statistics.median(latency.rounds))} over {len(latency.rounds)} rounds). "
        "A block waits on average half an interval for the next round, then one round.",
        f"Round times near {POLL:g} s: right after `eth_sendRawTransaction` "
        "the service looks up the receipt once; when Anvil (automine) has not made it "
        f"available yet, the service sleeps its receipt poll interval ({POLL:g} s, "
        "the default of `ServiceOptions.poll`) before the next look-up. That happened in "
        + ", ".join(f"{c.polled_rounds} of {len(c.round_seconds)}" for c in cases)
        + " rounds of the 1-, 16- and 256-log cases and in "
        f"{len(latency.sleeps)} pause(s) over the {len(latency.rounds)} rounds of the loop; "
        "it is a race between Anvil's mining and the first look-up, not work of the service.",
        "Building the stores (not timed in the table): "
        + ", ".join(f"{c.logs} log(s) {c.build_seconds:.1f} s" for c in cases)
        + ". On Anvil (automine) a transaction is mined as soon as it is sent, so the round time "
        "is the service's own work and RPC round trips; on a real chain add the wait for the next "
        "block (12 s slots on Ethereum) per confirmation.",
    ]
    bullets = "".join(f"- {n}\n" for n in notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{lat_table}\n{bullets}"


def write_section(text: str, path: Path = BENCHMARKS_MD) -> None:
    replace_titled_section(SECTION, TITLE, text, path)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.anchor", description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=4, help="blocks per log (4)")
    ap.add_argument("--events", type=int, default=1000, help="events per block (1000)")
    ap.add_argument("--rounds", type=int, default=5, help="anchor rounds per case (5)")
    ap.add_argument("--interval", type=float, default=2.0, help="service interval, s (2)")
    ap.add_argument("--samples", type=int, default=10, help="latency samples (10)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args(argv)
    if args.quick:
        args.blocks, args.events, args.rounds, args.interval, args.samples = 1, 10, 2, 0.5, 2
    if min(args.blocks, args.events, args.rounds, args.samples) < 1 or args.interval <= 0:
        ap.error("need positive --blocks, --events, --rounds, --samples and --interval")
    cfg = Config(
        args.blocks, args.events, args.rounds, args.interval, args.samples, args.seed, args.quick
    )
    return cfg, not (args.no_write or args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="auditseal-bench-anchor-") as tmp:
        cases, latency, version = run(cfg, Path(tmp))
    text = render(cfg, cases, latency, version)
    print(text)
    if write:
        write_section(text)
        log(f"wrote section {SECTION!r} of docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
