"""Publishing committed blocks to the sealed stream without waiting for each one.

A block is handed over once it is committed to the store; its messages are produced at once
and the worker goes on sealing while the broker acknowledges them (acks=all). When every
message of a block is acknowledged, ``on_published(origin, number, acknowledge)`` runs, in the
worker's thread (delivery reports are served by :meth:`Publisher.poll`): only then is the block
marked published and are its records' offsets stored. ``acknowledge`` is what was given with the
newest block of the log whose earlier blocks are all acknowledged too (None if nothing new), so
offsets never move past a block still in flight. A block whose publication failed is produced
again after a pause, for up to :data:`PATIENCE` seconds; the worker stops after that, and its
restart publishes the block from the store's outbox. Publishing a block again is a republish,
which readers of the sealed stream expect (FORMAT.md §7), and blocks that arrive out of order
are held by the monitor until the missing ones arrive.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaException

__all__ = ["PATIENCE", "Publisher"]

log = logging.getLogger(__name__)

PATIENCE = 120.0  # seconds a block may wait for the sealed stream before the worker stops
MAX_IN_FLIGHT = 8  # blocks produced and not yet acknowledged; more waits (memory stays bounded)
FIRST_PAUSE, LAST_PAUSE = 0.5, 8.0  # between attempts of a failed block, doubling


@dataclass
class _Block:
    origin: str
    number: int
    messages: list[bytes]
    started: float
    waiting: int = 0
    error: Any = None
    pause: float = FIRST_PAUSE
    retry_at: float | None = None


A = TypeVar("A")


class Publisher(Generic[A]):
    """Blocks in flight to the sealed stream, each acknowledged in full before it counts."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        on_published: Callable[[str, int, A | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self._on_published = on_published
        self._clock = clock
        self._blocks: dict[tuple[str, int], _Block] = {}
        self._acks: dict[str, dict[int, A]] = {}  # per log: block number -> its acknowledge

    def in_flight(self, origin: str, number: int) -> bool:
        return (origin, number) in self._blocks

    def pending(self, origin: str) -> list[int]:
        """Numbers of ``origin``'s blocks not yet acknowledged, lowest first."""
        return sorted(n for o, n in self._blocks if o == origin)

    def publish(
        self, origin: str, number: int, messages: list[bytes], acknowledge: A | None = None
    ) -> None:
        """Produce a committed block's messages; returns without waiting for the broker (but
        first waits while :data:`MAX_IN_FLIGHT` blocks are)."""
        while len(self._blocks) >= MAX_IN_FLIGHT:
            self.poll(0.05)
        block = _Block(origin, number, messages, self._clock())
        self._blocks[(origin, number)] = block
        if acknowledge is not None:
            self._acks.setdefault(origin, {})[number] = acknowledge
        self._produce(block)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports; produce again the failed blocks whose pause is over.
        Raises KafkaException for a block that could not be published within the patience."""
        self.producer.poll(timeout)
        now = self._clock()
        for block in [b for b in self._blocks.values() if b.retry_at is not None]:
            if now >= block.retry_at:  # type: ignore[operator]
                self._produce(block)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the blocks in flight (a clean stop)."""
        deadline = self._clock() + timeout
        while self._blocks and self._clock() < deadline:
            self.poll(0.1)

    def _produce(self, block: _Block) -> None:
        block.retry_at, block.error = None, None
        block.waiting = len(block.messages)
        report = functools.partial(self._delivered, block)
        key = block.origin.encode()
        for value in block.messages:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let it drain
                    self.producer.poll(0.1)

    def _settled(self, origin: str) -> A | None:
        """The acknowledge of the newest block of ``origin`` with none before it in flight."""
        acks = self._acks.get(origin)
        if not acks:
            return None
        waiting = self.pending(origin)
        done = [n for n in acks if not waiting or n < waiting[0]]
        if not done:
            return None
        newest = acks[max(done)]
        for n in done:
            del acks[n]
        return newest

    def _delivered(self, block: _Block, error: Any, _message: Any) -> None:
        block.waiting -= 1
        if error is not None and block.error is None:
            block.error = error
        if block.waiting:
            return
        if block.error is None:
            del self._blocks[(block.origin, block.number)]
            self._on_published(block.origin, block.number, self._settled(block.origin))
            return
        # The block is safe in the store. A broker that restarts or re-creates the topic
        # answers errors for a while: wait for it, and give up (a crash the supervisor restarts
        # from the store) only after the patience.
        now = self._clock()
        if now + block.pause - block.started > PATIENCE:
            raise KafkaException(block.error)
        log.warning(
            "publishing block %d of %s to the sealed stream failed (%s); again in %.1f s",
            block.number,
            block.origin,
            block.error,
            block.pause,
        )
        block.retry_at = now + block.pause
        block.pause = min(block.pause * 2, LAST_PAUSE)
