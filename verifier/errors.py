"""The verifier's exception vocabulary.

Every error raised by ``verifier`` derives from :class:`VerifierError`. The CLI catches that root
once and maps ``exit_code`` to the process status: 1 when something failed verification, 2 when
the input could not even be parsed.
"""

from __future__ import annotations

__all__ = [
    "FormatError",
    "InconsistencyError",
    "ProofError",
    "RootMismatchError",
    "SignatureError",
    "VerificationError",
    "VerifierError",
]


class VerifierError(Exception):
    """Root of every error raised by the verifier package."""

    exit_code = 1


class FormatError(VerifierError, ValueError):
    """Input that does not parse as the format it claims to be (note, leaf, header, key)."""

    exit_code = 2


class VerificationError(VerifierError):
    """Well-formed input that fails a check."""


class ProofError(VerificationError, ValueError):
    """A Merkle proof that does not verify, malformed proofs included."""


class RootMismatchError(ProofError):
    """A recomputed root differs from the one that was claimed."""

    def __init__(self, what: str, expected: bytes, calculated: bytes) -> None:
        super().__init__(
            f"{what}: root mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated


class SignatureError(VerificationError):
    """A signed note whose signatures do not open with the pinned keys."""


class InconsistencyError(VerificationError):
    """Two signed statements of one log that cannot both be true; carries the evidence."""

    def __init__(self, message: str, **evidence: object) -> None:
        super().__init__(message)
        self.evidence = evidence
