"""Appending blocks to logs: tip cache, block building and the store transaction together."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from auditseal.sealer.blocks import build_block
from auditseal.sealer.signer import NoteSigner
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import ConflictError
from auditseal.store.model import BuiltBlock, LogTip, Record
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.origin import split_generation

__all__ = ["LogWriter"]


class LogWriter:
    """Seals records into blocks of the logs of one store, signing with one key.

    The tip of each log is cached after the first append; if another writer moved the log on,
    the append fails with ConflictError and the next one reloads the tip from the store. A
    writer that claimed a partition (:meth:`claim`) appends to its logs under that claim, and
    fails with ClaimLostError once another writer claimed it since.
    """

    def __init__(self, store: BlockStore, signer: NoteSigner, clock_ms: Callable[[], int]) -> None:
        self.store = store
        self.signer = signer
        self._clock_ms = clock_ms
        self._tips: dict[str, LogTip] = {}
        self._epochs: dict[str, int] = {}

    def claim(self, base: str, writer: str) -> int:
        """Claim the logs of partition ``base`` (every generation) for this writer."""
        epoch = self._epochs[base] = self.store.claim(base, writer, self._clock_ms())
        return epoch

    def tip(self, origin: str) -> LogTip:
        tip = self._tips.get(origin)
        if tip is None:
            tip = self._tips[origin] = self.store.tip(origin)
        return tip

    def append(self, origin: str, records: Sequence[Record]) -> SealedBlock:
        """Seal ``records`` as one block and commit it; returns the block once durable."""
        return self.append_built(origin, records).block

    def append_built(self, origin: str, records: Sequence[Record]) -> BuiltBlock:
        """As :meth:`append`, returning everything the block was built with (gaps, nodes)."""
        built = build_block(self.tip(origin), records, self.signer, self._clock_ms())
        try:
            self.store.append_block(built, self._epochs.get(split_generation(origin)[0]))
        except ConflictError:
            self._tips.pop(origin, None)
            raise
        self._tips[origin] = built.tip
        return built

    def forget(self, origin: str) -> None:
        """Drop the cached tip: the next append reloads it from the store."""
        self._tips.pop(origin, None)

    def release(self, base: str) -> None:
        """Stop appending under the claim of ``base`` (the partition was revoked)."""
        self._epochs.pop(base, None)
