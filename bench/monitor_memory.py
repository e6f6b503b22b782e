"""Memory of the monitor's event checks with their maps full (docs/MONITOR.md, "Memory").

Feeds N events of 24 sources (uuid ids, in order) straight into the sequence and event-id
checks of :class:`auditseal.monitor.checks.Checker`, bypassing block replay and event parsing
so that only the state those checks keep is traced, and prints bytes per event.

    python -m bench.monitor_memory --events 500000
"""

from __future__ import annotations

import argparse
import tracemalloc
import uuid

from auditseal.monitor.checks import Checker


def measure(events: int, sources: int = 24) -> float:
    checker = Checker([], sequence_memory=events, id_memory=events)
    names = [f"proxy://db-gateway-{i}" for i in range(sources)]
    values = [uuid.uuid4().bytes * 20 for _ in range(1000)]  # content only feeds a digest
    tracemalloc.start()
    for i in range(events):
        source, event_id = names[i % sources], str(uuid.uuid4())
        checker._sequence(source, i // sources + 1, event_id, values[i % 1000])
        checker._event_id(source, event_id)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    per_event = measure(args.events)
    print(
        f"{args.events} events remembered: {per_event:.0f} bytes per event, "
        f"{per_event * args.events / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
