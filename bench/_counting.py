"""What the counting baselines of ``bench.sealer`` share: their arguments and their one way of
saying when they reached a record (``bench._faust_counter``, ``bench._confluent_counter``)."""

from __future__ import annotations

import argparse
import os


def say(line: str) -> None:
    """One line to the standard output, straight to file descriptor 1 (past Faust's
    redirection of ``print``)."""
    os.write(1, (line + "\n").encode())


def counter_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--n", type=int, required=True, help="say 'done' at this many records")
    ap.add_argument("--mark", type=int, default=0, help="say 'mark' at this many records")
    return ap
