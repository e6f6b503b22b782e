"""The sealer's triage alone: CPU µs per event over simulated events, median of rounds.

Run ``.venv/bin/python -m bench.triage`` in two checkouts (before and after a change, e.g.
``git worktree add /tmp/base 8db514f``), alternating, to compare them on the same machine; it
prints one line and writes nothing. bench/ingest.py reports triage beside the full validation
path in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from auditseal.ingest import envelope, ocsf_schema
from auditseal.ingest.simulator import TrafficModel, simulated_proxies


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.triage")
    ap.add_argument("--n", type=int, default=5000, help="events (5,000)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    ocsf_schema.prepare(envelope.CLASS_FOR_TYPE.values())  # the validators, before timing
    model = TrafficModel(simulated_proxies(8), seed=7)
    raws = []
    for sequence in range(1, args.n + 1):
        _proxy, build = model.next()
        raws.append(orjson.dumps(build(sequence)))
    rounds, parse_rounds = [], []
    for _ in range(args.rounds):
        t0 = time.process_time()
        for raw in raws:
            envelope.triage(raw)
        rounds.append((time.process_time() - t0) / len(raws) * 1e6)
        t0 = time.process_time()
        for raw in raws:  # the part no check can avoid: triage parses each record once
            orjson.loads(raw)
        parse_rounds.append((time.process_time() - t0) / len(raws) * 1e6)
    print(
        f"triage: {statistics.median(rounds):.1f} µs/event CPU (median of {args.rounds} "
        f"rounds, min {min(rounds):.1f}; orjson.loads alone {statistics.median(parse_rounds):.1f})"
        f", {args.n:,} simulated events"
    )


if __name__ == "__main__":
    main()
