"""Log generations: how the origin of a log's later generations is spelled (FORMAT.md §1.1).

When the Kafka partition a log was built from is reset (broker restarted with in-memory topics,
topic deleted and recreated), offsets start again at 0. The records at those positions are not
the ones the log holds, so the sealer closes the log and seals the new partition as a new log:
generation ``g`` of the same base origin. Generation 0 is the base origin itself (every log
sealed before generations existed); generation ``g >= 1`` is ``<base>/g<g>``: still a
schema-less URL path without spaces or ``+``, as C2SP tlog-checkpoint asks of an origin, and
never a generation-0 sealer origin, whose last segment is a decimal partition number.
"""

from __future__ import annotations

import re

__all__ = ["generation_origin", "split_generation"]

_GENERATION = re.compile(r"(?P<base>.+)/g(?P<generation>[1-9][0-9]*)")


def generation_origin(base: str, generation: int) -> str:
    """The origin of generation ``generation`` of the log named ``base``."""
    if generation < 0:
        raise ValueError(f"generation must be >= 0, got {generation}")
    return base if generation == 0 else f"{base}/g{generation}"


def split_generation(origin: str) -> tuple[str, int]:
    """``(base, generation)`` of ``origin``; an origin without the suffix is generation 0."""
    m = _GENERATION.fullmatch(origin)
    if m is None:
        return origin, 0
    return m["base"], int(m["generation"])
