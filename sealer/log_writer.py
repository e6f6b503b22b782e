"""Appending blocks to logs: tip cache, block building and the store transaction together."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from auditseal.sealer.blocks import build_block, checkpoint_signers
from auditseal.sealer.signer import NoteSigner
from auditseal.store.blockstore import BlockStore
from auditseal.store.errors import ConflictError
from auditseal.store.model import BuiltBlock, LogTip, Record
from auditseal.verifier.block import SealedBlock
from auditseal.verifier.origin import split_generation
from auditseal.verifier.rotation import KeyRotation, is_rotation_value, open_rotation_record

__all__ = ["LogWriter", "load_rotations"]


def load_rotations(store: BlockStore, origin: str) -> list[tuple[int, KeyRotation]]:
    """The rotation records of ``origin`` in the store, ``(leaf, rotation)`` in leaf order;
    RotationError for one that does not open (the sealer refuses to sign on a broken log)."""
    if not store.has_log(origin):
        return []
    return [
        (e.position, open_rotation_record(e, e.position, origin))
        for e in store.log_records(origin)
        if is_rotation_value(e.value)
    ]


class LogWriter:
    """Seals records into blocks of the logs of one store, signing with one key.

    The tip of each log is cached after the first append; if another writer moved the log on,
    the append fails with ConflictError and the next one reloads the tip from the store. A
    writer that claimed a partition (:meth:`claim`) appends to its logs under that claim, and
    fails with ClaimLostError once another writer claimed it since.
    """

    def __init__(
        self,
        store: BlockStore,
        signer: NoteSigner,
        clock_ms: Callable[[], int],
        previous: NoteSigner | None = None,
    ) -> None:
        """``signer`` is ``--key``; ``previous`` (``--previous-key``) the key it replaces
        during a rotation: each checkpoint is signed by the held keys that the log's rotation
        records declare at its size (:func:`auditseal.sealer.blocks.checkpoint_signers`)."""
        self.store = store
        self.signer = signer
        self.previous = previous
        self._clock_ms = clock_ms
        self._tips: dict[str, LogTip] = {}
        self._rotations: dict[str, list[tuple[int, KeyRotation]]] = {}
        self._epochs: dict[str, int] = {}

    def claim(self, base: str, writer: str) -> int:
        """Claim the logs of partition ``base`` (every generation) for this writer."""
        epoch = self._epochs[base] = self.store.claim(base, writer, self._clock_ms())
        return epoch

    def tip(self, origin: str) -> LogTip:
        tip = self._tips.get(origin)
        if tip is None:
            tip = self._tips[origin] = self.store.tip(origin)
            # reloaded with the tip: a rotation appended by another process moved the tip too
            self._rotations[origin] = load_rotations(self.store, origin)
        return tip

    def append(self, origin: str, records: Sequence[Record]) -> SealedBlock:
        """Seal ``records`` as one block and commit it; returns the block once durable."""
        return self.append_built(origin, records).block

    def append_built(self, origin: str, records: Sequence[Record]) -> BuiltBlock:
        """As :meth:`append`, returning everything the block was built with (gaps, nodes)."""
        tip = self.tip(origin)
        signers = checkpoint_signers(
            origin,
            self._rotations.get(origin, []),
            tip.size + len(records),
            self.signer,
            self.previous,
        )
        built = build_block(tip, records, signers, self._clock_ms())
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
