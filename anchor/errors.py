"""The anchor package's exception vocabulary; ``exit_code`` becomes the process status.

Exit codes follow the CLI's: 2 usage or input (a key file, a flag, the artifact, an account
without funds, a chain other than the one asked for, a reverted transaction), 3 a service
unavailable or not there yet (the RPC endpoint does not answer, a transaction not mined in
time, fees above the cap right now). Messages never contain a private key or an RPC URL's
path (which often carries a provider's API key).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AnchorError",
    "ArtifactError",
    "BuildError",
    "ChainIdMismatch",
    "ChainUnavailable",
    "FeeCapExceeded",
    "InputError",
    "InsufficientFunds",
    "KeyFileError",
    "TransactionReverted",
]


class AnchorError(Exception):
    """Root of every error raised by the anchor package."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(AnchorError, ValueError):
    """A caller's input that cannot be used (a flag, an address, a record file)."""


class KeyFileError(AnchorError):
    """A chain key (file or environment variable) that is missing, malformed or too open."""


class ArtifactError(AnchorError):
    """The compiled contract artifact is missing or not what the code expects."""


class BuildError(AnchorError):
    """Compiling the contract failed (node or solc missing, a compiler error)."""


class ChainUnavailable(AnchorError):
    """The RPC endpoint does not answer, or a transaction was not mined in time."""

    exit_code = 3


class ChainIdMismatch(AnchorError):
    """The RPC endpoint serves another chain than the one the caller named."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"the RPC endpoint serves chain id {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class InsufficientFunds(AnchorError):
    """The sending account cannot pay for the transaction's gas at the chosen fees."""


class FeeCapExceeded(AnchorError):
    """The chain's base fee is above the caller's fee cap: retry later or raise the cap."""

    exit_code = 3


class TransactionReverted(AnchorError):
    """A transaction that reverts: in gas estimation or an ``eth_call`` (``tx_hash`` None,
    nothing was sent) or once mined (receipt status 0).

    ``error_name``/``error_args`` hold the decoded custom error when it is known, e.g.
    ``AlreadyAnchored`` / ``{"seq": 7}``, so callers can tell a retried anchor from a fault.
    """

    def __init__(
        self,
        message: str,
        tx_hash: str | None = None,
        error_name: str | None = None,
        error_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.error_name = error_name
        self.error_args = error_args or {}
