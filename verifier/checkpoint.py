"""C2SP tlog-checkpoint bodies (https://c2sp.org/tlog-checkpoint), parsed strictly.

::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <root hash, standard base64>\\n
    [<extension line>\\n ...]

A checkpoint is only trusted once :func:`open_checkpoint` has verified its signed note with a
pinned key.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from auditseal.verifier.errors import FormatError
from auditseal.verifier.merkle import HASH_SIZE
from auditseal.verifier.note import NoteVerifier, SignedNote, b64decode_strict

__all__ = ["Checkpoint", "open_checkpoint"]

MAX_SIZE = 2**64 - 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise FormatError("checkpoint origin: must be a non-empty single line")
        if not 0 <= self.size <= MAX_SIZE:
            raise FormatError(f"checkpoint size {self.size}: out of range")
        if len(self.root) != HASH_SIZE:
            raise FormatError(f"checkpoint root: want {HASH_SIZE} bytes, got {len(self.root)}")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise FormatError("checkpoint extension: must be a non-empty single line")

    def to_text(self) -> str:
        root_b64 = base64.b64encode(self.root).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root_b64, *self.extensions)
        )

    @classmethod
    def from_text(cls, raw_body: str) -> Checkpoint:
        if not raw_body.endswith("\n"):
            raise FormatError("checkpoint: body must end with a newline")
        lines = raw_body[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"checkpoint: want at least 3 lines, got {len(lines)}")
        origin, size_text, root_text, *extensions = lines
        if (
            not size_text.isascii()
            or not size_text.isdigit()
            or (len(size_text) > 1 and size_text[0] == "0")
        ):
            raise FormatError(
                f"checkpoint size {size_text!r}: want a decimal without leading zeros"
            )
        return cls(
            origin,
            int(size_text),
            b64decode_strict("checkpoint root", root_text),
            tuple(extensions),
        )


def open_checkpoint(raw_note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """Parse a signed checkpoint and verify it with the pinned keys.

    Raises FormatError for a malformed note or body, SignatureError if no pinned key signed it.
    """
    note = SignedNote.from_text(raw_note)
    note.verify(verifiers)
    return Checkpoint.from_text(note.text)
