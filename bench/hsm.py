"""The log key in an HSM: signing latency through PKCS#11 and the sealing rate, vs the key file.

Run ``.venv/bin/python -m bench.hsm`` from the repository root (needs softhsm2 and the ``hsm``
extra). It prints a markdown table and rewrites the ``hsm`` section of docs/BENCHMARKS.md
(``--no-write`` to only print); ``--quick`` is a short smoke run that never writes the docs.

The benchmark makes a SoftHSM2 token in its temporary directory (``infra.softhsm``, as
``auditseal demo --hsm`` does) and a key in it with ``auditseal keygen --pkcs11``, and a key
file with ``auditseal keygen``. Then, same run:

* signing latency: this process signs checkpoint notes (``sign_note``, what the sealer does
  once per block) with the key file's :class:`Signer` and with the token's
  :class:`Pkcs11Signer` (one logged-in session, CKM_EDDSA inside the token), in alternating
  batches; the table shows the median and p99 of each single signature;
* sealing rate: ``auditseal seal`` (its defaults: blocks of up to 1000 events) on the same
  pre-filled topic of N events as ``bench.sealer`` (a Tansu broker of the benchmark's own), once
  with ``--key`` the key file, once with ``--key`` the token's ``pkcs11:`` URI, alternating;
  events/s measured as ``bench.sealer`` measures its sealer runs; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._report import Stats, markdown_table, section_header, significant
from bench._sealing import (
    MAX_EVENTS,
    MAX_INTERVAL,
    PARTITIONS,
    ROOT,
    auditseal_argv,
    bench_main,
    log,
    make_key,
    prefilled_topic,
)
from bench.sealer import Run, run_sealer

COMMAND = ".venv/bin/python -m bench.hsm"
SECTION = "hsm"
TITLE = "## Log key in an HSM: PKCS#11 signing vs the key file"
TABLE_HEADER = ("Measurement", "Key file", "PKCS#11 (SoftHSM2)", "PKCS#11 / file")
DEFAULT_N = 100_000
QUICK_N = 12_000
SIGNATURES = 5_000
QUICK_SIGNATURES = 300
BATCH = 100  # signatures per batch; batches alternate between the two keys


@dataclass(frozen=True)
class Config:
    n: int
    repeat: int
    signatures: int
    seed: int
    quick: bool

    @property
    def mark(self) -> int:
        return self.n // 10


@dataclass
class Result:
    file_sign: Stats
    hsm_sign: Stats
    file_runs: list[Run]
    hsm_runs: list[Run]
    module: str
    load: str  # the machine's load average around the sealer runs


def signing_latency(key_file: Path, uri: str, signatures: int) -> tuple[Stats, Stats]:
    """Seconds per ``sign_note`` of a checkpoint, file key vs token key, in alternating batches."""
    from auditseal.sealer.pkcs11_signer import Pkcs11Signer
    from auditseal.sealer.signer import Signer
    from auditseal.verifier.checkpoint import Checkpoint, open_checkpoint
    from auditseal.verifier.note import NoteVerifier

    signers = {"file": Signer.from_file(key_file), "hsm": Pkcs11Signer.open(uri)}
    samples: dict[str, list[float]] = {"file": [], "hsm": []}
    size = 0
    while len(samples["hsm"]) < signatures:
        for which, signer in signers.items():
            for _ in range(BATCH):
                size += 1000
                text = Checkpoint("bench.local/audit.events/0", size, os.urandom(32)).to_text()
                t0 = time.perf_counter()
                note = signer.sign_note(text)
                samples[which].append(time.perf_counter() - t0)
        # The token's last note (the loop signs with it last) verifies under its public key.
        open_checkpoint(note, [NoteVerifier.from_string(signers["hsm"].verifier.to_string())])
    return Stats.of(samples["file"]), Stats.of(samples["hsm"])


def token_key(workdir: Path) -> tuple[str, str]:
    """A SoftHSM2 token in ``workdir`` and a key made in it by the CLI: (URI, module path)."""
    from auditseal.infra.softhsm import CONF_ENV, init_token

    token = init_token(workdir / "softhsm", "bench")
    os.environ[CONF_ENV] = str(token.conf)  # this process and the workers it starts
    out = subprocess.run(
        [*auditseal_argv(), "keygen", "--pkcs11", token.uri(), "--name", "bench.hsm", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=workdir,
    )
    if out.returncode != 0:
        raise RuntimeError(f"auditseal keygen --pkcs11 failed: {out.stderr}")
    return json.loads(out.stdout)["pkcs11"], token.module


def run(cfg: Config, workdir: Path) -> Result:
    key_file = make_key(workdir)
    uri, module = token_key(workdir)
    log(f"signing latency: {cfg.signatures:,} checkpoints with each key")
    file_sign, hsm_sign = signing_latency(key_file, uri, cfg.signatures)
    timeout = max(300.0, cfg.n / 100)  # a shared, loaded machine seals slowly at times
    file_runs: list[Run] = []
    hsm_runs: list[Run] = []
    with prefilled_topic(workdir, cfg.n, cfg.seed) as t:
        load_before = os.getloadavg()[0]
        for r in range(cfg.repeat):
            for name, key, runs in (("file", key_file, file_runs), ("hsm", uri, hsm_runs)):
                tag = f"{name}-{r}"
                # run_sealer passes the key to `seal --key` as text: a path or a pkcs11: URI
                b = run_sealer(
                    t.bootstrap, t.name, cfg.n, cfg.mark, workdir, key, tag, timeout, t.broker_pid
                )  # type: ignore[arg-type]
                (workdir / f"{tag}.db").unlink()
                runs.append(b)
                log(f"round {r + 1}/{cfg.repeat} {name} key: {b.rate:,.0f} events/s; {b.detail}")
    load = f"{load_before:.2f} before the sealer runs, {os.getloadavg()[0]:.2f} after"
    return Result(file_sign, hsm_sign, file_runs, hsm_runs, module, load)


def _us(s: float) -> str:
    return f"{significant(s * 1e6)} µs"


def render(cfg: Config, result: Result) -> str:
    f, h = result.file_sign, result.hsm_sign
    file_rate = statistics.median(r.rate for r in result.file_runs)
    hsm_rate = statistics.median(r.rate for r in result.hsm_runs)

    def rounds(runs: list[Run]) -> str:
        return ", ".join(f"{significant(r.rate)}" for r in runs)

    rows = [
        [
            "`sign_note` of one checkpoint (once per block), median",
            _us(f.median),
            _us(h.median),
            f"{h.median / f.median:.0f}x",
        ],
        ["same, p99", _us(f.p99), _us(h.p99), f"{h.p99 / f.p99:.0f}x"],
        [
            f"signing per event at {MAX_EVENTS} events per block (median / {MAX_EVENTS})",
            _us(f.median / MAX_EVENTS),
            _us(h.median / MAX_EVENTS),
            "-",
        ],
        [
            f"`auditseal seal` events/s to committed blocks (rounds: {rounds(result.file_runs)}"
            f" file; {rounds(result.hsm_runs)} PKCS#11)",
            f"{significant(file_rate)} events/s",
            f"{significant(hsm_rate)} events/s",
            f"{hsm_rate / file_rate:.2f}x",
        ],
    ]
    method = (
        f"a SoftHSM2 token (`{result.module}`, Debian's softhsm2) in the benchmark's temporary "
        "directory, an Ed25519 key generated in it by `auditseal keygen --pkcs11` (sensitive, "
        "not extractable) and a key file from `auditseal keygen`. Signing latency: this process "
        f"signs {cfg.signatures:,} checkpoint notes with each key through `sign_note` (the "
        "sealer's call, once per block; the PKCS#11 one through a logged-in session, CKM_EDDSA "
        f"in the token), alternating batches of {BATCH}; wall time of each call; median and "
        f"p99. Sealing rate: `auditseal seal` with its defaults (`--max-events {MAX_EVENTS} "
        f"--max-interval {MAX_INTERVAL:g}`), `--key` the key file or the token's `pkcs11:` URI, "
        f"on one topic of {cfg.n:,} events in {PARTITIONS} partitions pre-filled as in "
        "`bench.sealer` (Tansu, in-memory), measured as `bench.sealer` measures its sealer "
        f"runs (events committed / time, startup and first block left out); {cfg.repeat} runs "
        "of each, alternating; medians."
    )
    per_event = h.median / MAX_EVENTS
    lo_f, hi_f = min(r.rate for r in result.file_runs), max(r.rate for r in result.file_runs)
    lo_h, hi_h = min(r.rate for r in result.hsm_runs), max(r.rate for r in result.hsm_runs)
    overlap = "do" if lo_f <= hi_h and lo_h <= hi_f else "do not"
    notes = [
        f"The token signs a checkpoint in {_us(h.median)} (median) where the key file takes "
        f"{_us(f.median)}; at {MAX_EVENTS} events per block that is {_us(per_event)} per event, "
        f"{per_event * hsm_rate:.2%} of the {_us(1 / hsm_rate)} a sealed event took in the "
        f"PKCS#11 runs. The median sealing rates differ by {abs(hsm_rate / file_rate - 1):.0%};"
        f" the rounds' ranges {overlap} overlap. Small blocks change the balance: at 10 events "
        f"per block the token's signature alone would cost {_us(h.median / 10)} per event.",
        "SoftHSM2 runs inside the sealer's process (a shared library, keys in files): a "
        "network-attached HSM adds its round trip to every signature, still once per block; "
        "measure yours with `--key` set to its URI.",
        f"Load average {result.load} ({os.cpu_count()} cores): on a loaded machine the "
        "sealing rates follow the load, not the key; compare them only when the rounds are "
        "steady.",
    ]
    table = markdown_table(TABLE_HEADER, rows, align="lrrr")
    bullets = "".join(f"- {note}\n" for note in notes)
    return f"{section_header(COMMAND, method)}\n{table}\n{bullets}"


def parse_args(argv: Sequence[str] | None) -> tuple[Config, bool]:
    ap = argparse.ArgumentParser(prog="python -m bench.hsm", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=DEFAULT_N, help=f"events in the topic ({DEFAULT_N:,})")
    ap.add_argument("--repeat", type=int, default=3, help="sealer runs of each key, alternating")
    ap.add_argument("--signatures", type=int, default=SIGNATURES, help="per key")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="short smoke run; never writes the docs")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeat, args.signatures = QUICK_N, 1, QUICK_SIGNATURES
    if args.n < 10 * PARTITIONS or args.repeat < 1 or args.signatures < 1:
        ap.error(f"need --n >= {10 * PARTITIONS}, a positive --repeat and --signatures")
    cfg = Config(args.n, args.repeat, args.signatures, args.seed, args.quick)
    return cfg, not (args.no_write or args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    cfg, write = parse_args(argv)
    os.chdir(ROOT)
    return bench_main("hsm", lambda workdir: render(cfg, run(cfg, workdir)), write, SECTION, TITLE)


if __name__ == "__main__":
    sys.exit(main())
