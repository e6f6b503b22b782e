"""The sealer's exception vocabulary; the CLI maps ``exit_code`` to the process status."""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "InputError",
    "KeyFileError",
    "NotFoundError",
    "SealerError",
    "StoreError",
]


class SealerError(Exception):
    """Root of every error raised by the sealer package."""

    exit_code = 2


class InputError(SealerError, ValueError):
    """A caller's input that cannot be used (range, size, flag)."""


class KeyFileError(SealerError):
    """A private key file that is missing, unreadable, malformed or too widely readable."""


class StoreError(SealerError):
    """The block store cannot be opened or is not a block store."""


class NotFoundError(StoreError):
    """A log, block, entry or size the store does not hold."""


class ConflictError(StoreError):
    """An append that does not extend the log's current state (another writer went first)."""

    exit_code = 3
