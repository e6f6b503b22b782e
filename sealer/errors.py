"""The sealer's exception vocabulary; the CLI maps ``exit_code`` to the process status.

The store's errors (a conflicting append, a missing entry) are :mod:`auditseal.store.errors`'.
"""

from __future__ import annotations

__all__ = ["InputError", "KeyFileError", "SealerError"]


class SealerError(Exception):
    """Root of every error raised by the sealer package."""

    exit_code = 2


class InputError(SealerError, ValueError):
    """A caller's input that cannot be used (range, size, flag)."""


class KeyFileError(SealerError):
    """A private key file that is missing, unreadable, malformed or too widely readable."""
