"""The baseline of ``bench.sealer``: a bare Faust agent that only counts records.

Run as ``python -m bench._faust_counter --bootstrap HOST:PORT --topic T --group G --n N
--state-dir DIR``. The app has the Faust settings the sealer had while it was a Faust agent
(memory store, no web server, no topic declaration, ``topic_disable_leader``, earliest offsets,
the same session timeout, heartbeat and commit interval) and one agent that iterates
``stream.noack().events()`` and acknowledges each event, as the sealer's agent did, but does
nothing else with it. docs/ARCHITECTURE.md says why the sealer no longer is one.

It writes two lines to its standard output (straight to file descriptor 1, past Faust's
redirection of ``print``): ``first <monotonic seconds>`` when it receives its first record and
``done <monotonic seconds> <records>`` when it has received ``--n`` records (and ``mark ...``
at ``--mark`` records, if given); it then keeps
running (consuming anything further) until it is terminated. ``time.monotonic`` is
CLOCK_MONOTONIC, one clock for every process of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust

from bench._counting import counter_parser, say

__all__ = ["create_counter_app", "main"]


def create_counter_app(
    bootstrap: str,
    topic: str,
    group: str,
    n: int,
    state_dir: Path,
    session_timeout_s: float = 6.0,
    mark: int = 0,
) -> faust.App:
    """The counting app, with the settings of the sealer's former Faust app."""
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(state_dir / "faust"),
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.5, session_timeout_s / 6),
        broker_commit_interval=1.0,
        producer_acks=-1,
    )
    events_topic = app.topic(
        topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(events_topic, name="bench-count")
    async def count(stream: Any) -> None:
        seen = 0
        async for event in stream.noack().events():
            event.ack()
            seen += 1
            if seen == 1:
                say(f"first {time.monotonic():.6f}")
            if seen == mark:
                say(f"mark {time.monotonic():.6f} {seen}")
            if seen == n:
                say(f"done {time.monotonic():.6f} {seen}")

    return app


def main(argv: Sequence[str] | None = None) -> None:
    ap = counter_parser("python -m bench._faust_counter", __doc__)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--session-timeout", type=float, default=6.0)
    ap.add_argument("--log-level", default="warn")
    args = ap.parse_args(argv)
    from faust.worker import Worker

    args.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_counter_app(
        args.bootstrap,
        args.topic,
        args.group,
        args.n,
        args.state_dir,
        args.session_timeout,
        args.mark,
    )
    # As `auditseal seal` ran its app; Worker parses no arguments of ours.
    Worker(app, loglevel=args.log_level, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
