"""The block store's exception vocabulary; the CLI maps ``exit_code`` to the process status."""

from __future__ import annotations

__all__ = ["ClaimLostError", "ConflictError", "InputError", "NotFoundError", "StoreError"]


class StoreError(Exception):
    """The block store cannot be opened, is not a block store, or refuses an operation; the root
    of every error the store raises."""

    exit_code = 2


class InputError(StoreError, ValueError):
    """A caller's input the store cannot use (a range, a size, a redaction without a reason)."""


class NotFoundError(StoreError):
    """A log, block, entry or size the store does not hold."""


class ConflictError(StoreError):
    """An append that does not extend the log's current state (another writer went first)."""

    exit_code = 3


class ClaimLostError(ConflictError):
    """An append by a writer whose claim on the partition's logs another writer has since
    replaced (it was paused past its session, its partitions moved on): nothing is written."""
