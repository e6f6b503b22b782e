"""Benchmark of whole-log verification (``verify --all``) against the raw hashing it must do.

One store is built with the sealer's ``LogWriter``: one log of N events (default 1,000,000) in
blocks of 1,000, the values the simulator's traffic model makes (CloudEvents JSON, a few hundred
bytes each, keyed by the proxy's source). Then, in the same run, medians of several repetitions:

(a) raw hashing: the same entries held in memory in Python lists, hashed with ``hashlib`` only
    (no I/O, no checks): per entry the commitment SHA-256(salt ‖ value), the key hash
    SHA-256(key), the leaf hash SHA-256(0x00 ‖ leaf) of the packed v1 leaf, and the RFC 9162
    interior hashes of appending it to a compact range (one SHA-256(0x01 ‖ l ‖ r) per leaf on
    average); the per-block work (header parse, checkpoint signature) is not counted;
(b) ``auditseal.store.log_audit.audit_log`` over the store: one ordered SQL read of every entry,
every
    check of every block (header chain, entries, root, checkpoint signature), no chain;
(c) b / a;
(d) ``verify --block`` of one 1,000-event block: ``block_material`` + ``Verifier.verify_block``,
    without a chain and (unless ``--no-chain``) against an Anvil the benchmark starts, with the
    store anchored there once, so the consistency, inclusion and on-chain checks all run.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.ingest.simulator import TrafficModel, simulated_proxies
from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.evidence import block_material
from auditseal.store.log_audit import audit_log
from auditseal.store.model import Record
from auditseal.verifier.audit import LogAudit
from auditseal.verifier.verify import Verifier
from bench._report import (
    BENCHMARKS_MD,
    machine_info,
    markdown_table,
    replace_titled_section,
    section_header,
)

__all__ = ["ROW_HEADER", "SECTION", "TITLE", "main"]

SECTION = "verify"
TITLE = "## Verification: `verify --all` and `verify --block`"
ROW_HEADER = ("Measure", "Result", "Per event")
ORIGIN = "auditseal.local/audit.events/0"
PROXIES = 8
POOL = 4096
SIGNER = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # Anvil's #0


def log(msg: str) -> None:
    print(f"[bench.verify {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    events: int
    block: int
    reps: int
    block_reps: int
    chain: bool


# --- the store ---------------------------------------------------------------------------------


def event_values(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of n simulator events, each with a fresh id and its source's sequence."""
    model = TrafficModel(simulated_proxies(PROXIES), seed)
    counts: Counter[str] = Counter()
    pool: list[dict[str, Any]] = []
    for _ in range(min(n, POOL)):
        proxy, build = model.next()
        counts[proxy.source] += 1
        pool.append(build(counts[proxy.source]))
    sequences: Counter[str] = Counter()
    out = []
    for i in range(n):
        event = pool[i % len(pool)]
        source = event["source"]
        sequences[source] += 1
        value = orjson.dumps({**event, "id": str(uuid.uuid4()), "sequence": sequences[source]})
        out.append((source.encode(), value))
    return out


def build_store(path: Path, cfg: Config) -> tuple[int, float]:
    """The store of cfg.events events; returns (mean value bytes, seconds taken)."""
    t0 = time.perf_counter()
    total = 0
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, SIGNER, lambda: 1_700_000_000_000)
        for start in range(0, cfg.events, cfg.block):
            n = min(cfg.block, cfg.events - start)
            kv = event_values(n, seed=start + 1)
            total += sum(len(v) for _, v in kv)
            writer.append(
                ORIGIN,
                [
                    Record(start + k, 1_700_000_000_000 + start + k, key, value)
                    for k, (key, value) in enumerate(kv)
                ],
            )
            if (start // cfg.block) % 100 == 99:
                log(f"built {start + n:,} events")
    return total // max(1, cfg.events), time.perf_counter() - t0


# --- (a) raw hashing ---------------------------------------------------------------------------


def load_entries(path: Path) -> list[tuple[int, int, bytes, bytes, bytes]]:
    """``(position, timestamp, key, value, salt)`` of every entry, held in memory."""
    with BlockStore.open(path, readonly=True) as store:
        size = store.size(ORIGIN)
        return [
            (e.position, e.timestamp_ms, e.key or b"", e.value or b"", e.salt or b"")
            for start in range(0, size, 10_000)
            for e in store.entries(ORIGIN, start, min(size, start + 10_000))
        ]


def raw_hashing(entries: Sequence[tuple[int, int, bytes, bytes, bytes]]) -> bytes:
    """The hashes verification cannot avoid, in a plain loop: see the module docstring (a)."""
    sha256 = hashlib.sha256
    origin = ORIGIN.encode()
    head = b"\x00" + struct.pack(">BBH", 1, 0, len(origin)) + origin
    pack = struct.Struct(">Qq32s32s").pack
    hashes: list[bytes] = []
    pop, push = hashes.pop, hashes.append
    for size, (position, timestamp, key, value, salt) in enumerate(entries):
        commitment = sha256(salt + value).digest()
        key_hash = sha256(key).digest()
        h = sha256(head + pack(position, timestamp, key_hash, commitment)).digest()
        s = size
        while s & 1:
            h = sha256(b"\x01" + pop() + h).digest()
            s >>= 1
        push(h)
    return hashes[-1]


def raw_rate(path: Path, reps: int) -> list[float]:
    """Seconds of (a), the entries loaded once and dropped after."""
    entries = load_entries(path)
    seconds, _ = timed(lambda: raw_hashing(entries), reps)
    return seconds


def timed(fn: Callable[[], object], reps: int) -> tuple[list[float], object]:
    seconds, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, result


# --- (d) one block, with and without the chain -------------------------------------------------


@dataclass
class Chain:
    rpc: str
    contract: str
    version: str


def anchor_on_anvil(path: Path, tmp: Path) -> tuple[Chain, Callable[[], None]]:
    from auditseal.anchor.artifact import load_artifact
    from auditseal.anchor.chain_client import ChainClient, ChainKey
    from auditseal.anchor.deploy import deploy
    from auditseal.anchor.service import AnchorService, ServiceOptions
    from auditseal.infra import chain
    from auditseal.infra.processes import free_port

    service = chain.start(free_port(), tmp / "anvil.log")
    log(f"Anvil at {service.address} (pid {service.pid})")
    try:
        artifact = load_artifact()
        client = ChainClient.connect(service.address, expected_chain_id=chain.CHAIN_ID)
        version = str(client.w3.provider.make_request("web3_clientVersion", [])["result"])  # type: ignore[arg-type]
        key = ChainKey.from_hex(DEV_KEY, "key")
        record = deploy(client, key, artifact)
        options = ServiceOptions(
            poll=0.05, backoff=0.05, retries=3, rebroadcast_after=30.0, timeout=60.0
        )
        with BlockStore.open(path) as store:
            result = AnchorService(
                store, key, record, artifact, service.address, options
            ).run_once()
        if result.action != "anchored":
            raise RuntimeError(f"anchoring the bench store: {result.action}")
    except BaseException:
        chain.stop(service)
        raise

    def stop() -> None:
        chain.stop(service)
        log(f"Anvil at {service.address} stopped")

    return Chain(service.address, record.address, version), stop


def verify_block_ms(path: Path, number: int, verifier: Verifier, reps: int) -> tuple[float, int]:
    with BlockStore.open(path, readonly=True) as store:

        def once() -> int:
            return verifier.verify_block(block_material(store, ORIGIN, number)).exit_code

        seconds, code = timed(once, reps)
    return statistics.median(seconds) * 1000, int(code)  # type: ignore[call-overload]


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    events: int
    mean_bytes: int
    build_s: float
    raw_s: list[float]
    audit_s: list[float]
    audit: LogAudit
    block_ms: float
    block_code: int
    chain_block_ms: float | None = None
    chain_block_code: int | None = None
    chain_audit_s: float | None = None
    chain_audit_code: int | None = None
    chain: Chain | None = None


def keys() -> list[Any]:
    return [SIGNER.verifier]


def run(cfg: Config, tmp: Path) -> Results:
    path = tmp / "store.db"
    log(f"building a store of {cfg.events:,} events in blocks of {cfg.block:,}")
    mean_bytes, build_s = build_store(path, cfg)
    log(f"built in {build_s:.1f} s, mean value {mean_bytes} bytes")

    raw_s = raw_rate(path, cfg.reps)
    log(f"raw hashing: median {statistics.median(raw_s):.2f} s")

    offline = Verifier(keys(), None, None, None, int(time.time()))

    def audit_once() -> LogAudit:
        with BlockStore.open(path, readonly=True) as store:
            return audit_log(store, ORIGIN, offline)

    audit_s, audit = timed(audit_once, cfg.reps)
    assert isinstance(audit, LogAudit)
    if audit.problems:
        raise RuntimeError(f"the bench store does not verify:\n{audit.render()}")
    log(f"audit_log: median {statistics.median(audit_s):.2f} s ({audit.verdict})")

    number = audit.last_block // 2 if audit.last_block else 0
    block_ms, block_code = verify_block_ms(path, number, offline, cfg.block_reps)
    results = Results(cfg.events, mean_bytes, build_s, raw_s, audit_s, audit, block_ms, block_code)
    if cfg.chain:
        chain_info, stop = anchor_on_anvil(path, tmp)
        try:
            from auditseal.verifier.chain import Web3AnchorReader

            reader = Web3AnchorReader(chain_info.rpc, chain_info.contract)
            online = Verifier(keys(), reader, chain_info.contract, 31337, int(time.time()))
            results.chain_block_ms, results.chain_block_code = verify_block_ms(
                path, number, online, cfg.block_reps
            )
            with BlockStore.open(path, readonly=True) as store:
                seconds, done = timed(lambda: audit_log(store, ORIGIN, online), 1)
            assert isinstance(done, LogAudit)
            results.chain_audit_s, results.chain_audit_code = seconds[0], done.exit_code
            results.chain = chain_info
        finally:
            stop()
    return results


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:,.0f} events/s"


def render(cfg: Config, r: Results, command: str) -> str:
    raw, aud = statistics.median(r.raw_s), statistics.median(r.audit_s)
    n = r.events
    rows = [
        ["(a) raw hashing, in memory (hashlib only)", _rate(n, raw), f"{raw / n * 1e6:.2f} µs"],
        ["(b) `audit_log` over the store, no chain", _rate(n, aud), f"{aud / n * 1e6:.2f} µs"],
        ["(c) b / a", f"{raw / aud:.2f}", ""],
        [
            f"(d) `verify --block` of a {cfg.block:,}-event block, no chain (exit {r.block_code})",
            f"{r.block_ms:.1f} ms",
            f"{r.block_ms / cfg.block * 1000:.2f} µs",
        ],
    ]
    if r.chain_block_ms is not None:
        rows.append(
            [
                f"(d) `verify --block` of a {cfg.block:,}-event block, Anvil "
                f"(exit {r.chain_block_code})",
                f"{r.chain_block_ms:.1f} ms",
                f"{r.chain_block_ms / cfg.block * 1000:.2f} µs",
            ]
        )
    if r.chain_audit_s is not None:
        rows.append(
            [
                f"(b) `audit_log` with the anchor proven on Anvil, once "
                f"(exit {r.chain_audit_code})",
                _rate(n, r.chain_audit_s),
                f"{r.chain_audit_s / n * 1e6:.2f} µs",
            ]
        )
    chain = (
        f" The chain rows run against an Anvil the benchmark starts ({r.chain.version}), the "
        "store anchored there once with `AnchorService.run_once`."
        if r.chain is not None
        else ""
    )
    method = (
        f"one log of {n:,} events in blocks of {cfg.block:,} built with the sealer's `LogWriter` "
        f"(simulator traffic over {PROXIES} proxies, CloudEvents JSON values of {r.mean_bytes} "
        f"bytes on average; built in {r.build_s:.0f} s). Medians of {cfg.reps} repetitions for "
        f"(a) and (b), {cfg.block_reps} for (d). (a) hashes the entries held in memory in a "
        "plain loop: per entry SHA-256(salt ‖ value), SHA-256(key), the leaf hash "
        "SHA-256(0x00 ‖ leaf) and the RFC 9162 interior hashes of a compact-range append "
        "(about one per leaf); no checks, no per-block work. (b) is "
        "`auditseal.store.log_audit.audit_log` "
        "from a fresh store handle: one read transaction, blocks and entries each read by one "
        "ordered query, every check of every block (header chain, entry well-formedness and "
        "commitment, positions, root, Ed25519 checkpoint signature); it hashes each distinct "
        "key once (the keys are the proxies' sources), which (a) does not. (d) is "
        "`block_material` + `Verifier.verify_block`, i.e. `verify --block` without the CLI." + chain
    )
    header = section_header(command, method)
    table = markdown_table(ROW_HEADER, rows, "lrr")
    return f"{header}\n{table}"


def write_section(text: str, path: Path = BENCHMARKS_MD) -> None:
    replace_titled_section(SECTION, TITLE, text, path)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool, Path]:
    ap = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the log (1,000,000)")
    ap.add_argument("--block", type=int, default=1000, help="events per block (1000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of (a) and (b) (3)")
    ap.add_argument("--block-reps", type=int, default=20, help="repetitions of (d) (20)")
    ap.add_argument("--no-chain", action="store_true", help="skip the Anvil rows")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    ap.add_argument("--docs", type=Path, default=BENCHMARKS_MD, help="the file to write to")
    args = ap.parse_args(argv)
    if min(args.events, args.block, args.reps, args.block_reps) < 1:
        ap.error("need positive --events, --block, --reps and --block-reps")
    cfg = Config(args.events, args.block, args.reps, args.block_reps, not args.no_chain)
    return cfg, not args.no_write, args.docs


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write, docs = parse_args(argv)
    command = " ".join(["python -m bench.verify", *(sys.argv[1:] if argv is None else argv)])
    log(machine_info())
    with tempfile.TemporaryDirectory(prefix="auditseal-bench-verify-") as tmp:
        results = run(cfg, Path(tmp))
    text = render(cfg, results, command)
    print(f"{TITLE}\n\n{text}")
    if write:
        write_section(text, docs)
        log(f"wrote section {SECTION!r} of {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
