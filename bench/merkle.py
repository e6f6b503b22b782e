"""Merkle appends and proofs: auditseal against pymerkle 7.0.0, same data, same run.

Run ``.venv/bin/python -m bench.merkle`` (``make bench``) from the repository root. It prints a
markdown table and rewrites the ``merkle`` section of docs/BENCHMARKS.md (``--no-write`` to
only print). ``--quick`` is a seconds-long smoke run for the tests and never writes the docs.

What is compared (pymerkle is GPL: it is imported here only, never by the product):

* appends: N random 100-byte entries, hashed inside the timing by both libraries. auditseal
  hashes with ``merkle.leaf_hash`` and appends with ``CompactRange.extend``; pymerkle appends
  with ``InmemoryTree.append_entry`` / ``append_entries`` and ``SqliteTree.append_entries``;
  auditseal's durable path is ``LogWriter.append`` into a ``BlockStore`` file (sealing, leaf
  encoding, SQLite commit with synchronous=FULL, Ed25519-signed checkpoint per block).
* proofs: ``BlockStore.inclusion_proof`` / ``consistency_proof`` on the N-leaf store built by
  the last append round, against pymerkle's ``prove_inclusion`` / ``prove_consistency`` on
  its trees of the same N entries, at the same random indices and old sizes; plus the time to
  verify each proof with each library's verifier.

Rounds are interleaved (round r runs every append measurement once) so that noise from the
shared machine spreads over all of them; the table shows medians over rounds for appends and
medians / p99 over samples for proofs.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymerkle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymerkle import InmemoryTree, SqliteTree

from auditseal.sealer.log_writer import LogWriter
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from auditseal.store.database import EVENT_CHUNK
from auditseal.store.model import Record
from auditseal.verifier.compact import CompactRange
from auditseal.verifier.merkle import leaf_hash, verify_consistency, verify_inclusion
from bench._report import Stats, markdown_table, replace_section, section_header, significant

COMMAND = ".venv/bin/python -m bench.merkle"
SECTION = "merkle"
TABLE_HEADER = (
    "Measurement",
    "auditseal",
    f"pymerkle {pymerkle.__version__}",
    "auditseal speed-up",
)
DEFAULT_N = 1_000_000
BLOCK = 1000
ENTRY_SIZE = 100
ORIGIN = "bench.auditseal.local/merkle/0"
AIM_APPEND_RATIO = 10.0
AIM_PROOF_MEDIAN_S = 1e-3
AIM_PROOF_N = 1_000_000
# pymerkle configuration: SHA-256, second-preimage security on (0x00 leaf / 0x01 node prefixes,
# i.e. RFC 9162 hashing), default optimizations and subroot cache.
PYMERKLE_OPTS: dict[str, Any] = {"algorithm": "sha256", "disable_security": False}

_perf = time.perf_counter


def log(msg: str) -> None:
    print(f"[bench.merkle {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_entries(n: int, seed: int) -> list[bytes]:
    raw = random.Random(seed).randbytes(n * ENTRY_SIZE)
    return [raw[i : i + ENTRY_SIZE] for i in range(0, n * ENTRY_SIZE, ENTRY_SIZE)]


def blocks_of(items: Sequence[Any], size: int = BLOCK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- appends: each function returns (seconds, result kept for checks and proofs) ---------


def auditseal_extend_blocks(blocks: list[Sequence[bytes]]) -> tuple[float, bytes]:
    """leaf_hash + CompactRange.extend, one block per call (how the sealer calls it)."""
    t0 = _perf()
    cr = CompactRange()
    extend = cr.extend
    for block in blocks:
        extend([leaf_hash(d) for d in block])
    dt = _perf() - t0
    return dt, cr.root()


def auditseal_extend_per_leaf(entries: Sequence[bytes]) -> tuple[float, bytes]:
    t0 = _perf()
    cr = CompactRange()
    extend = cr.extend
    for d in entries:
        extend([leaf_hash(d)])
    dt = _perf() - t0
    return dt, cr.root()


def pymerkle_memory_blocks(blocks: list[Sequence[bytes]]) -> tuple[float, InmemoryTree]:
    t0 = _perf()
    tree = InmemoryTree(**PYMERKLE_OPTS)
    append = tree.append_entries
    for block in blocks:
        append(block)
    return _perf() - t0, tree


def pymerkle_memory_per_leaf(entries: Sequence[bytes]) -> tuple[float, InmemoryTree]:
    t0 = _perf()
    tree = InmemoryTree(**PYMERKLE_OPTS)
    append = tree.append_entry
    for d in entries:
        append(d)
    return _perf() - t0, tree


def pymerkle_sqlite_blocks(
    blocks: list[Sequence[bytes]], path: Path, with_root: bool
) -> tuple[float, bytes]:
    """SqliteTree.append_entries per block (one transaction each); optionally get_root too."""
    t0 = _perf()
    with SqliteTree(str(path), **PYMERKLE_OPTS) as tree:
        append = tree.append_entries
        for block in blocks:
            append(block)
            if with_root:
                tree.get_root()
        dt = _perf() - t0
        root = tree.get_root()
    return dt, root


def pymerkle_sqlite_per_leaf(entries: Sequence[bytes], path: Path) -> tuple[float, None]:
    t0 = _perf()
    with SqliteTree(str(path), **PYMERKLE_OPTS) as tree:
        append = tree.append_entry
        for d in entries:
            append(d)
        dt = _perf() - t0
    return dt, None


def entry_records(entries: Sequence[bytes], start: int = 0) -> list[Record]:
    """Entries as the store's records, at positions ``start``, ``start + 1``, ..."""
    base = 1_700_000_000_000
    return [Record(i, base + i, b"bench-key", d) for i, d in enumerate(entries, start)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def auditseal_store(
    record_blocks: list[Sequence[Record]], path: Path, signer: Signer
) -> tuple[float, list[float]]:
    """LogWriter.append per block into a fresh BlockStore file; returns per-block latencies."""
    lat = []
    t0 = _perf()
    with BlockStore.open(path, create=True) as store:
        writer = LogWriter(store, signer, _now_ms)
        append = writer.append
        for block in record_blocks:
            t1 = _perf()
            append(ORIGIN, block)
            lat.append(_perf() - t1)
    return _perf() - t0, lat


# --- proofs -------------------------------------------------------------------------------


@dataclass
class ProofTimes:
    prove: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)


def store_proofs(
    path: Path | str, n: int, indices: Sequence[int], olds: Sequence[int]
) -> tuple[ProofTimes, ProofTimes]:
    inc, con = ProofTimes(), ProofTimes()
    with BlockStore.open(path, readonly=True) as store:  # as `auditseal log proof` opens it
        last = store.last_block(ORIGIN)
        assert last is not None and last.header.end == n, "store does not hold n leaves"
        signed_root = last.header.root
        for i in indices:
            t0 = _perf()
            p = store.inclusion_proof(ORIGIN, i)
            t1 = _perf()
            verify_inclusion(p.leaf_hash, p.index, p.size, p.proof, signed_root)
            t2 = _perf()
            inc.prove.append(t1 - t0)
            inc.verify.append(t2 - t1)
        for old in olds:
            t0 = _perf()
            c = store.consistency_proof(ORIGIN, old)
            t1 = _perf()
            verify_consistency(c.old_size, c.new_size, c.proof, c.old_root, signed_root)
            t2 = _perf()
            con.prove.append(t1 - t0)
            con.verify.append(t2 - t1)
    return inc, con


def pymerkle_proofs(
    tree: Any, indices: Sequence[int], olds: Sequence[int], verify: bool
) -> tuple[ProofTimes, ProofTimes]:
    """prove_* (and pymerkle's verify_*) on ``tree``; pymerkle indices count from one."""
    inc, con = ProofTimes(), ProofTimes()
    root = tree.get_root()
    for i in indices:
        base = tree.get_leaf(i + 1) if verify else b""
        t0 = _perf()
        proof = tree.prove_inclusion(i + 1)
        t1 = _perf()
        if verify:
            pymerkle.verify_inclusion(base, root, proof)
            inc.verify.append(_perf() - t1)
        inc.prove.append(t1 - t0)
    for old in olds:
        prior = tree.get_root(old) if verify else b""
        t0 = _perf()
        proof = tree.prove_consistency(old)
        t1 = _perf()
        if verify:
            pymerkle.verify_consistency(prior, root, proof)
            con.verify.append(_perf() - t1)
        con.prove.append(t1 - t0)
    return inc, con


# --- running and reporting ----------------------------------------------------------------


@dataclass
class Config:
    n: int
    repeat: int
    samples: int
    per_commit_n: int
    seed: int
    quick: bool
    growth: bool = False


def _timed_rounds(cfg: Config, steps: dict[str, Callable[[bool], float]]) -> dict[str, list[float]]:
    """Run every step once per round; the bool says whether this is the last round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(cfg.repeat):
        for name, step in steps.items():
            gc.collect()
            dt = step(r == cfg.repeat - 1)
            times[name].append(dt)
            log(f"round {r + 1}/{cfg.repeat} {name}: {dt:.3f} s")
    return times


def run(cfg: Config, workdir: Path) -> tuple[list[list[str]], list[str]]:
    n = cfg.n
    log(f"generating {n:,} entries of {ENTRY_SIZE} bytes")
    entries = make_entries(n, cfg.seed)
    blocks = blocks_of(entries)
    few = entries[: cfg.per_commit_n]
    few_records = entry_records(few)
    signer = Signer.generate("bench-sealer")
    store_path = workdir / "store.db"
    kept: dict[str, Any] = {}
    roots: dict[str, bytes] = {}
    block_lat: list[float] = []

    def fresh(path: Path) -> Path:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return path

    def a_blocks(last: bool) -> float:
        dt, roots["auditseal"] = auditseal_extend_blocks(blocks)
        return dt

    def a_leaf(last: bool) -> float:
        dt, roots["auditseal per leaf"] = auditseal_extend_per_leaf(entries)
        return dt

    def p_sql(last: bool) -> float:
        dt, roots["pymerkle sqlite"] = pymerkle_sqlite_blocks(
            blocks, fresh(workdir / "pymerkle.db"), with_root=False
        )
        return dt

    def p_sql_root(last: bool) -> float:
        dt, roots["pymerkle sqlite+root"] = pymerkle_sqlite_blocks(
            blocks, fresh(workdir / "pymerkle-root.db"), with_root=True
        )
        return dt

    def p_sql_leaf(last: bool) -> float:
        return pymerkle_sqlite_per_leaf(few, fresh(workdir / "pymerkle-leaf.db"))[0]

    def a_store(last: bool) -> float:
        # Built here, not up front: n live Records would slow every other step's garbage
        # collections.
        record_blocks = blocks_of(entry_records(entries))
        gc.collect()
        dt, lat = auditseal_store(record_blocks, fresh(store_path), signer)
        if last:
            block_lat.extend(lat)
        return dt

    def a_store_leaf(last: bool) -> float:
        return auditseal_store([[r] for r in few_records], fresh(workdir / "leaf.db"), signer)[0]

    def p_mem_leaf(last: bool) -> float:
        kept.pop("pymerkle memory", None)
        gc.collect()
        dt, tree = pymerkle_memory_per_leaf(entries)
        roots["pymerkle memory per leaf"] = tree.get_root()
        return dt

    def p_mem(last: bool) -> float:
        # Last in the round: the tree it keeps for the proofs would otherwise slow the other
        # steps through the garbage collector (2n objects to traverse).
        dt, tree = pymerkle_memory_blocks(blocks)
        roots["pymerkle memory"] = tree.get_root()
        if last:
            kept["pymerkle memory"] = tree
        return dt

    times = _timed_rounds(
        cfg,
        {
            "auditseal extend, blocks": a_blocks,
            "auditseal extend, per leaf": a_leaf,
            "pymerkle sqlite, blocks": p_sql,
            "pymerkle sqlite+root, blocks": p_sql_root,
            "pymerkle sqlite, per leaf": p_sql_leaf,
            "auditseal store, blocks": a_store,
            "auditseal store, per leaf": a_store_leaf,
            "pymerkle memory, per leaf": p_mem_leaf,
            "pymerkle memory, blocks": p_mem,
        },
    )
    if len(set(roots.values())) != 1:
        raise AssertionError(f"roots differ between libraries: {roots}")
    log("roots of all in-memory and pymerkle SQLite trees agree")
    med = {name: Stats.of(ts).median for name, ts in times.items()}

    rng = random.Random(cfg.seed + 1)
    indices = [rng.randrange(n) for _ in range(cfg.samples)]
    olds = [rng.randrange(1, n) for _ in range(cfg.samples)]
    log(f"proofs: {cfg.samples} inclusion + {cfg.samples} consistency per library")
    gc.collect()
    s_inc, s_con = store_proofs(store_path, n, indices, olds)
    gc.collect()
    sql_first = _perf()
    with SqliteTree(str(workdir / "pymerkle.db"), **PYMERKLE_OPTS) as sql_tree:
        sql_tree.prove_inclusion(1)
        sql_first = _perf() - sql_first
        q_inc, q_con = pymerkle_proofs(sql_tree, indices, olds, verify=False)
    gc.collect()
    m_inc, m_con = pymerkle_proofs(kept["pymerkle memory"], indices, olds, verify=True)
    store_bytes = sum(
        p.stat().st_size for p in workdir.iterdir() if p.name.startswith(store_path.name)
    )

    def rate(name: str, count: int) -> float:
        return count / med[name]

    rows: list[list[str]] = []

    def append_row(what: str, ours: str, theirs: str, ratio: float | None) -> None:
        rows.append([what, ours, theirs, _ratio(ratio)])

    pairs = [
        (
            f"Append {n:,} entries in memory, 1000 per call: `leaf_hash` + "
            "`CompactRange.extend` vs `InmemoryTree.append_entries`",
            "auditseal extend, blocks",
            "pymerkle memory, blocks",
            n,
        ),
        (
            f"Append {n:,} entries in memory, one per call: `extend([leaf_hash(d)])` vs "
            "`InmemoryTree.append_entry(d)`",
            "auditseal extend, per leaf",
            "pymerkle memory, per leaf",
            n,
        ),
        (
            f"Durable append of {n:,} entries, 1000 per transaction: `LogWriter.append` "
            "(seal, store nodes, sign) vs `SqliteTree.append_entries` (stores leaves only)",
            "auditseal store, blocks",
            "pymerkle sqlite, blocks",
            n,
        ),
        (
            "Same, pymerkle also computing the root after each block (`get_root()`), as a "
            "sealer must to sign it",
            "auditseal store, blocks",
            "pymerkle sqlite+root, blocks",
            n,
        ),
        (
            f"Durable append, one commit per entry ({cfg.per_commit_n} entries): "
            "`LogWriter.append([r])` vs `SqliteTree.append_entry`",
            "auditseal store, per leaf",
            "pymerkle sqlite, per leaf",
            cfg.per_commit_n,
        ),
    ]
    for what, ours, theirs, count in pairs:
        a, p = rate(ours, count), rate(theirs, count)
        append_row(what, _rate(a), _rate(p), a / p)

    proof_rows = [
        (
            f"Inclusion proof at size {n:,}, random leaf: `BlockStore.inclusion_proof` "
            "(SQLite) vs `InmemoryTree.prove_inclusion`",
            s_inc.prove,
            m_inc.prove,
        ),
        (
            "Inclusion proof vs `SqliteTree.prove_inclusion` (fresh handle, subroot cache "
            "filling as it goes)",
            s_inc.prove,
            q_inc.prove,
        ),
        (
            f"Consistency proof, random old size → {n:,}: `BlockStore.consistency_proof` vs "
            "`InmemoryTree.prove_consistency`",
            s_con.prove,
            m_con.prove,
        ),
        (
            "Consistency proof vs `SqliteTree.prove_consistency` (cache warmed by the "
            "inclusion proofs)",
            s_con.prove,
            q_con.prove,
        ),
        (
            "Verify an inclusion proof: `verifier.merkle.verify_inclusion` vs "
            "`pymerkle.verify_inclusion`",
            s_inc.verify,
            m_inc.verify,
        ),
        (
            "Verify a consistency proof: `verifier.merkle.verify_consistency` vs "
            "`pymerkle.verify_consistency`",
            s_con.verify,
            m_con.verify,
        ),
    ]
    for what, ours_t, theirs_t in proof_rows:
        a_s, p_s = Stats.of(ours_t), Stats.of(theirs_t)
        append_row(what, _latency(a_s), _latency(p_s), p_s.median / a_s.median)

    notes = _aims(
        n,
        rate("auditseal extend, blocks", n) / rate("pymerkle memory, blocks", n),
        rate("auditseal extend, per leaf", n) / rate("pymerkle memory, per leaf", n),
        rate("auditseal store, blocks", n) / rate("pymerkle sqlite+root, blocks", n),
        Stats.of(s_inc.prove).median,
        Stats.of(s_con.prove).median,
    )
    blk = Stats.of(block_lat)
    notes += [
        f"auditseal store: {store_bytes / 1e6:,.0f} MB on disk for {n:,} entries; one "
        f"`LogWriter.append` of {BLOCK} records takes {blk.median * 1e3:.1f} ms median, "
        f"{blk.p99 * 1e3:.1f} ms p99.",
        f"pymerkle `SqliteTree` stores leaves only and hashes subtrees when asked: its first "
        f"proof on a freshly opened {n:,}-leaf tree took {sql_first * 1e3:,.0f} ms.",
    ]
    return rows, notes


def _aims(
    n: int,
    mem_blocks: float,
    mem_leaf: float,
    durable: float,
    inc_median: float,
    con_median: float,
) -> list[str]:
    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    aim = f"{AIM_APPEND_RATIO:.0f}x"
    out = [
        f"Aim: appends at least {aim} pymerkle's rate: "
        f"{verdict(mem_blocks >= AIM_APPEND_RATIO)} in memory with 1000 entries per call "
        f"({mem_blocks:.1f}x); {verdict(mem_leaf >= AIM_APPEND_RATIO)} with one entry per call "
        f"({mem_leaf:.1f}x); {verdict(durable >= AIM_APPEND_RATIO)} for the durable store "
        f"against pymerkle's SQLite tree computing a root per block ({durable:.2f}x).",
    ]
    ok = inc_median < AIM_PROOF_MEDIAN_S and con_median < AIM_PROOF_MEDIAN_S
    if n >= AIM_PROOF_N:
        status = verdict(ok)
    else:
        status = f"**not assessed** (the aim is for {AIM_PROOF_N:,} leaves, this run has {n:,})"
    out.append(
        f"Aim: inclusion and consistency proofs from the store of a {AIM_PROOF_N:,}-leaf log "
        f"under 1 ms median: {status}: inclusion {inc_median * 1e6:,.0f} µs, consistency "
        f"{con_median * 1e6:,.0f} µs."
    )
    return out


def _rate(per_s: float) -> str:
    return f"{significant(per_s)} entries/s"


def _latency(s: Stats) -> str:
    return f"{significant(s.median * 1e6)} µs (p99 {significant(s.p99 * 1e6)})"


def _ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def render(cfg: Config, rows: list[list[str]], notes: list[str]) -> str:
    method = (
        f"{cfg.n:,} random {ENTRY_SIZE}-byte entries, the same bytes for both libraries, "
        "hashed inside the timing; append rows are the median over "
        f"{cfg.repeat} interleaved rounds, proof rows the median (p99) over {cfg.samples:,} "
        "random indices / old sizes, the same for both libraries, each proof verified. "
        f"pymerkle {pymerkle.__version__} runs with `algorithm='sha256'` and "
        "`disable_security=False` (0x00/0x01 leaf/node prefixes: RFC 9162 hashing; its roots "
        "are checked equal to auditseal's), default cache and optimizations, SQLite defaults. "
        "The auditseal store is a WAL file with `synchronous=FULL` in a temporary directory; "
        "its leaves are the sealed-entry encoding of the same entries. "
        "Speed-up: how many times faster auditseal is (ratio of rates or of medians)."
    )
    table = markdown_table(TABLE_HEADER, rows, align="lrrr")
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{bullets}"


# --- store growth: append cost per block as the log grows, old and new event-id index --------

GROWTH_SECTION = "store-growth"
GROWTH_COMMAND = ".venv/bin/python -m bench.merkle --growth"
GROWTH_SIZES = (100_000, 1_000_000, 3_000_000)
GROWTH_FILL_BLOCK = 10_000  # records per append while filling (not timed)
GROWTH_SAMPLES = 50  # timed 1000-record appends per store at each size
AIM_GROWTH_RATIO = 1.2
_OLD_INDEX_SQL = (
    "DROP INDEX entries_by_event_chunk",
    "CREATE INDEX entries_by_event_id ON entries (log_id, event_id) WHERE event_id IS NOT NULL",
    "UPDATE meta SET value = '1' WHERE name = 'schema_version'",
)


def make_version_1(path: Path) -> None:
    """Turn a new, empty store file into the layout of schema version 1 (the event-id index
    that every insert updates at a random place), as stores made before version 2 have."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql in _OLD_INDEX_SQL:
            conn.execute(sql)
    finally:
        conn.close()


def growth_records(rng: random.Random, start: int, n: int) -> list[Record]:
    """``n`` records with random 100-byte values and random UUID-shaped event ids."""
    base = 1_700_000_000_000
    return [
        Record(
            i,
            base + i,
            b"bench-key",
            rng.randbytes(ENTRY_SIZE),
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        )
        for i in range(start, start + n)
    ]


@dataclass
class GrowthStore:
    name: str
    store: BlockStore
    writer: LogWriter
    rng: random.Random
    size: int = 0
    ids: list[str] = field(default_factory=list)  # a sample of sealed event ids

    def append(self, n: int) -> float:
        records = growth_records(self.rng, self.size, n)
        t0 = _perf()
        self.writer.append(ORIGIN, records)
        dt = _perf() - t0
        self.size += n
        self.ids.append(str(records[self.rng.randrange(n)].event_id))
        return dt


def run_growth(
    sizes: Sequence[int], samples: int, seed: int, workdir: Path
) -> tuple[list[list[str]], list[str]]:
    signer = Signer("bench", Ed25519PrivateKey.generate())
    stores: list[GrowthStore] = []
    for name, old in (
        ("version 1: `entries_by_event_id`", True),
        ("version 2: `entries_by_event_chunk`", False),
    ):
        path = workdir / f"growth-{len(stores)}.db"
        BlockStore.open(path, create=True).close()
        if old:
            make_version_1(path)
        store = BlockStore.open(path)
        stores.append(
            GrowthStore(name, store, LogWriter(store, signer, _now_ms), random.Random(seed))
        )
    times: dict[tuple[int, int], list[float]] = {}
    lookups: dict[int, list[float]] = {}
    fill_s = [0.0 for _ in stores]
    for size in sizes:
        for k, g in enumerate(stores):  # fill each to `size` (whole blocks), not timed per block
            t0 = _perf()
            while g.size < size:
                g.append(min(GROWTH_FILL_BLOCK, size - g.size))
            fill_s[k] += _perf() - t0
            log(f"{g.name}: filled to {g.size:,} ({fill_s[k]:.0f} s so far)")
        # Settle before timing: the fill's WAL checkpointed into the files, the files written
        # back, so that no store's timed commits wait behind the fill's writeback.
        for g in stores:
            g.store.purge_wal()
        os.sync()
        for _ in range(samples):  # interleaved: one block into each store per round
            for k, g in enumerate(stores):
                gc.collect()
                times.setdefault((size, k), []).append(g.append(BLOCK))
        log(
            f"{size:,}: "
            + ", ".join(
                f"{Stats.of(times[(size, k)]).median * 1e3:.1f} ms" for k in range(len(stores))
            )
        )
    for k, g in enumerate(stores):  # look-ups at the largest size: sealed ids and unknown ones
        lat = lookups.setdefault(k, [])
        rng = random.Random(seed + 1)
        for event_id in rng.sample(g.ids, min(len(g.ids), samples * 10)):
            t0 = _perf()
            found = g.store.find_event(event_id)
            lat.append(_perf() - t0)
            if not found:
                raise RuntimeError(f"{g.name}: sealed event {event_id} not found")
        for _ in range(samples * 10):
            t0 = _perf()
            found = g.store.find_event(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
            lat.append(_perf() - t0)
            if found:
                raise RuntimeError(f"{g.name}: an event id never sealed was found")
    rows = []
    for size in sizes:
        rows.append(
            [f"Append one block of {BLOCK} records at {size:,} entries (median of {samples})"]
            + [f"{Stats.of(times[(size, k)]).median * 1e3:.1f} ms" for k in range(len(stores))]
        )
    first, last = sizes[0], sizes[-1]
    ratios = [
        Stats.of(times[(last, k)]).median / Stats.of(times[(first, k)]).median
        for k in range(len(stores))
    ]
    rows.append([f"At {last:,} / at {first:,}"] + [f"{r:.2f}x" for r in ratios])
    rows.append(
        [
            f"`find_event` at {last:,} entries: median (p99) of {len(lookups[0]):,}, "
            "half sealed ids, half unknown"
        ]
        + [
            f"{Stats.of(lookups[k]).median * 1e3:.2f} ms ({Stats.of(lookups[k]).p99 * 1e3:.2f})"
            for k in range(len(stores))
        ]
    )
    verdict = "**met**" if ratios[-1] <= AIM_GROWTH_RATIO else "**not met**"
    notes = [
        f"Aim: append time per block at {last:,} entries within {AIM_GROWTH_RATIO}x of that at "
        f"{first:,}: {verdict} ({ratios[-1]:.2f}x; the version 1 index: {ratios[0]:.2f}x).",
        f"Fill (not timed per block, {GROWTH_FILL_BLOCK:,} records per append): "
        + ", ".join(f"{g.name} {fill_s[k]:.0f} s" for k, g in enumerate(stores))
        + ".",
    ]
    for g in stores:
        g.store.close()
    return rows, notes


def render_growth(
    sizes: Sequence[int], samples: int, rows: list[list[str]], notes: list[str]
) -> str:
    method = (
        f"Two SQLite stores (WAL, `synchronous=FULL`) in one run: one with the event-id index of "
        "schema version 1 (`(log_id, event_id)`, every insert at a random place), one with "
        f"version 2's (`(log_id, idx / {EVENT_CHUNK}, event_id)`). Both are filled by "
        f"`LogWriter.append` to {', '.join(f'{s:,}' for s in sizes)} entries of "
        f"{ENTRY_SIZE} random bytes with random UUID event ids; at each size {samples} blocks "
        f"of {BLOCK} records are appended to each, alternating between the stores, and timed "
        "after both WALs were checkpointed and the files synced "
        "(`LogWriter.append`: build, sign, commit). Look-ups: `BlockStore.find_event` over "
        "every log, for sealed ids drawn across the whole log and for random unknown ids."
    )
    table = markdown_table(("Measurement", "version 1 index", "version 2 index"), rows, align="lrr")
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(GROWTH_COMMAND, method)}\n{table}\n{bullets}"


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.merkle", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="entries to append (default 1M)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of append measurements")
    ap.add_argument("--samples", type=int, default=2000, help="proofs of each kind per library")
    ap.add_argument(
        "--per-commit-n",
        type=int,
        default=300,
        help="entries for the one-commit-per-entry rows (pymerkle does ~100/s with fsync)",
    )
    ap.add_argument("--seed", type=int, default=9162)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    ap.add_argument(
        "--growth",
        action="store_true",
        help="only the store-growth table: append per block at 100k, 1M, 3M entries",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.samples, args.per_commit_n = 2500, 1, 50, 3
    if args.n < 2 or args.repeat < 1 or args.samples < 1 or args.per_commit_n < 1:
        ap.error("need --n >= 2 and positive --repeat, --samples, --per-commit-n")
    cfg = Config(
        args.n, args.repeat, args.samples, args.per_commit_n, args.seed, args.quick, args.growth
    )
    return cfg, not (args.no_write or args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    if cfg.growth:
        sizes = (2_000, 10_000) if cfg.quick else GROWTH_SIZES
        samples = 5 if cfg.quick else GROWTH_SAMPLES
        with tempfile.TemporaryDirectory(prefix="auditseal-bench-") as tmp:
            rows, notes = run_growth(sizes, samples, cfg.seed, Path(tmp))
        text = render_growth(sizes, samples, rows, notes)
        print(text)
        if write:
            replace_section(GROWTH_SECTION, text)
            log(f"wrote section {GROWTH_SECTION!r} of docs/BENCHMARKS.md")
        return 0
    with tempfile.TemporaryDirectory(prefix="auditseal-bench-") as tmp:
        rows, notes = run(cfg, Path(tmp))
    text = render(cfg, rows, notes)
    print(text)
    if write:
        replace_section(SECTION, text)
        log(f"wrote section {SECTION!r} of docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
