"""What the verifier asks of a chain: the :class:`AnchorReader` protocol.

The verifier's checks are pure; everything it learns from a chain comes through an
``AnchorReader`` passed in by the caller (``verifier.chain.Web3AnchorReader`` for a real RPC
endpoint, a fake in tests). The contract of each method:

* ``chain_id()``: the chain id the endpoint serves.
* ``root_of(seq)``: ``rootOf(seq)`` of the pinned AuditAnchor contract (``eth_call`` at the
  latest block), or None when the contract holds no root for ``seq`` (zero root, or no contract
  code at the address).
* ``anchored_at(seq)``: the ``Anchored`` event of ``seq`` emitted by the pinned contract
  (``eth_getLogs`` filtered by the indexed seq), as an :class:`AnchorFact`; None if there is none.
* ``is_anchorer(address, block)``: ``isAnchorer(address)`` of the pinned contract at chain
  block ``block`` (None: the latest block).
* ``anchors(from_block)``: every ``Anchored`` event of the pinned contract on the canonical
  chain from that block on, by seq,
  as :class:`ChainAnchor` (empty when there is no contract code at the address). This is how a
  verifier learns which anchors exist without asking the evidence (docs/VERIFYING.md).

Every method raises :class:`ChainUnavailableError` when the endpoint cannot be reached or
answers with an error; it never returns a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from auditseal.verifier.errors import VerifierError

__all__ = ["AnchorFact", "AnchorReader", "ChainAnchor", "ChainUnavailableError"]


class ChainUnavailableError(VerifierError):
    """The chain could not be asked (endpoint unreachable, RPC error): nothing is proven."""

    exit_code = 3


@dataclass(frozen=True)
class AnchorFact:
    """Where and by whom the root of one anchor was written on chain."""

    seq: int
    root: bytes
    block_number: int
    block_hash: str
    timestamp: int
    """Unix seconds of the block that holds the ``Anchored`` event."""
    anchorer: str
    """The sender of the transaction that emitted the event (0x-hex address)."""
    tx_hash: str
    confirmations: int
    """Blocks on top of (and including) the event's block: ``latest - block_number + 1``."""
    logs: int | None = None
    """The event's ``logs``: how many logs the aggregate holds (a receipt's ``size``)."""


@dataclass(frozen=True)
class ChainAnchor:
    """One ``Anchored`` event as the chain holds it: the chain's word that anchor ``seq`` exists."""

    seq: int
    root: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    confirmations: int
    """Blocks on top of (and including) the event's block: ``latest - block_number + 1``."""
    logs: int
    """The event's ``logs``: how many checkpoints the aggregate holds."""


class AnchorReader(Protocol):
    def chain_id(self) -> int: ...

    def root_of(self, seq: int) -> bytes | None: ...

    def anchored_at(self, seq: int) -> AnchorFact | None: ...

    def is_anchorer(self, address: str, block: int | None = None) -> bool: ...

    def anchors(self, from_block: int = 0) -> tuple[ChainAnchor, ...]: ...
