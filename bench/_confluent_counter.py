"""Baselines of ``bench.sealer`` without the sealer: a bare confluent-kafka consumer, counting,
and the same consumer writing every record to SQLite (the limit of a durable store).

Run as ``python -m bench._confluent_counter --bootstrap HOST:PORT --topic T --group G --n N``
(``--sqlite FILE`` for the store). The consumer has the sealer's settings (``sealer/app.py``:
a cooperative-sticky group member, earliest offsets, offsets stored by hand) and reads with
``consume(1000)``. With ``--sqlite`` each batch is one transaction (WAL, ``synchronous=FULL``,
as the block store) inserting (partition, offset, timestamp, key, value) rows into a table
with a primary key on (partition, offset): no Merkle tree, no hashing, no signature, no event
index, no publication.

It writes ``first``, ``mark`` and ``done`` lines to its standard output as
``bench._faust_counter`` does, then keeps consuming until it is terminated.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench._counting import counter_parser, say

BATCH = 1000


def _store(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS records (partition INTEGER, offset INTEGER, ts INTEGER, "
        "key BLOB, value BLOB, PRIMARY KEY (partition, offset))"
    )
    return db


def main(argv: Sequence[str] | None = None) -> None:
    ap = counter_parser("python -m bench._confluent_counter", __doc__)
    ap.add_argument("--sqlite", type=Path, help="write every record to this SQLite file")
    args = ap.parse_args(argv)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    db = _store(args.sqlite) if args.sqlite is not None else None
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "partition.assignment.strategy": "cooperative-sticky",
            "auto.offset.reset": "earliest",
            "enable.auto.offset.store": False,
        }
    )
    consumer.subscribe([args.topic])
    seen = 0
    try:
        while not stopping:
            batch = [m for m in consumer.consume(BATCH, 0.1) if m.error() is None]
            if not batch:
                continue
            if db is not None:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                    [
                        (m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value())
                        for m in batch
                    ],
                )
                db.execute("COMMIT")
            before, seen = seen, seen + len(batch)
            if before == 0:
                say(f"first {time.monotonic():.6f} {seen}")
            if before < args.mark <= seen:
                say(f"mark {time.monotonic():.6f} {seen}")
            if before < args.n <= seen:
                say(f"done {time.monotonic():.6f} {seen}")
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
