"""The sealer's exception vocabulary; the CLI maps ``exit_code`` to the process status.

The store's errors (a conflicting append, a missing entry) are :mod:`auditseal.store.errors`'.
"""

from __future__ import annotations

__all__ = ["HsmError", "InputError", "KeyFileError", "SealerError"]


class SealerError(Exception):
    """Root of every error raised by the sealer package."""

    exit_code = 2


class InputError(SealerError, ValueError):
    """A caller's input that cannot be used (range, size, flag)."""


class KeyFileError(SealerError):
    """A private key file that is missing, unreadable, malformed or too widely readable."""


class HsmError(SealerError):
    """A ``pkcs11:`` key that cannot be used: a bad URI, a missing module, token or key, a
    refused PIN. The message names the URI field (never the PIN)."""
