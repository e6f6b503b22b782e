"""Block headers: a second, simple hash chain beside the Merkle tree.

A block is the contiguous leaf range ``[start, end)`` sealed together. Its header is UTF-8 text,
one field per line, each line ``<name> <value>\\n`` in this exact order::

    auditseal-block v1
    origin <origin>
    number <block number, decimal, 0-based>
    range <start> <end>
    root <hex of the tree root at size end>
    sealed <sealing time, ms since the epoch>
    prev <hex of SHA-256 of the previous block's header; 64 zeros for block 0>

The block hash is SHA-256 of the header bytes. The checkpoint at ``end`` is signed separately.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from auditseal.verifier.errors import FormatError, VerificationError
from auditseal.verifier.leaf import Entry
from auditseal.verifier.merkle import HASH_SIZE

__all__ = ["GENESIS_HASH", "BlockHeader", "ChainError", "SealedBlock"]

GENESIS_HASH = bytes(HASH_SIZE)
_MAGIC = "auditseal-block v1"
_FIELDS = ("origin", "number", "range", "root", "sealed", "prev")


class ChainError(VerificationError):
    """A header that does not follow the previous one."""


def _uint(field: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(f"block header {field}: {text!r} is not a decimal without leading zeros")
    return int(text)


def _hash(field: str, text: str) -> bytes:
    if len(text) != 2 * HASH_SIZE or text.lower() != text:
        raise FormatError(f"block header {field}: want {2 * HASH_SIZE} lowercase hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise FormatError(f"block header {field}: not hex") from exc


@dataclass(frozen=True)
class BlockHeader:
    origin: str
    number: int
    start: int
    end: int
    root: bytes
    sealed_at_ms: int
    prev_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise FormatError("block header origin: must be a non-empty single line")
        if not self.number >= 0 or not 0 <= self.start < self.end:
            raise FormatError(
                f"block header: want number >= 0 and 0 <= start < end, "
                f"got number {self.number}, range [{self.start}, {self.end})"
            )
        if self.sealed_at_ms < 0:
            raise FormatError("block header sealed: negative time")
        if len(self.root) != HASH_SIZE or len(self.prev_hash) != HASH_SIZE:
            raise FormatError(f"block header: root and prev must be {HASH_SIZE} bytes")

    def to_text(self) -> str:
        return (
            f"{_MAGIC}\n"
            f"origin {self.origin}\n"
            f"number {self.number}\n"
            f"range {self.start} {self.end}\n"
            f"root {self.root.hex()}\n"
            f"sealed {self.sealed_at_ms}\n"
            f"prev {self.prev_hash.hex()}\n"
        )

    def hash(self) -> bytes:
        return hashlib.sha256(self.to_text().encode("utf-8")).digest()

    @property
    def size(self) -> int:
        return self.end - self.start

    @classmethod
    def from_text(cls, raw_header: str) -> BlockHeader:
        if not raw_header.endswith("\n"):
            raise FormatError("block header: must end with a newline")
        lines = raw_header[:-1].split("\n")
        if lines[0] != _MAGIC:
            raise FormatError(f"block header: first line must be {_MAGIC!r}")
        if len(lines) != 1 + len(_FIELDS):
            raise FormatError(f"block header: want {1 + len(_FIELDS)} lines, got {len(lines)}")
        values: dict[str, str] = {}
        for want, line in zip(_FIELDS, lines[1:], strict=True):
            name, sep, value = line.partition(" ")
            if name != want or not sep:
                raise FormatError(f"block header: expected field {want!r}, got {line[:40]!r}")
            values[name] = value
        start_text, sep, end_text = values["range"].partition(" ")
        if not sep:
            raise FormatError("block header range: want '<start> <end>'")
        return cls(
            origin=values["origin"],
            number=_uint("number", values["number"]),
            start=_uint("range start", start_text),
            end=_uint("range end", end_text),
            root=_hash("root", values["root"]),
            sealed_at_ms=_uint("sealed", values["sealed"]),
            prev_hash=_hash("prev", values["prev"]),
        )

    def verify_follows(self, prev: BlockHeader | None) -> None:
        """Check that this header extends ``prev`` (None: this must be the log's first block)."""
        if prev is None:
            if self.number != 0 or self.start != 0 or self.prev_hash != GENESIS_HASH:
                raise ChainError(
                    f"block {self.number}: a first block must be number 0 at leaf 0 with a "
                    f"zero prev hash"
                )
            return
        if self.origin != prev.origin:
            raise ChainError(f"block {self.number}: origin {self.origin!r} after {prev.origin!r}")
        if self.number != prev.number + 1:
            raise ChainError(f"block {self.number}: follows block {prev.number}")
        if self.start != prev.end:
            raise ChainError(
                f"block {self.number}: starts at leaf {self.start}, "
                f"previous block ended at {prev.end}"
            )
        if self.prev_hash != prev.hash():
            raise ChainError(
                f"block {self.number}: prev hash {self.prev_hash.hex()} is not the hash of block "
                f"{prev.number} ({prev.hash().hex()})"
            )


@dataclass(frozen=True)
class SealedBlock:
    """A block as published: header, the signed checkpoint at ``end``, and its entries."""

    header: BlockHeader
    checkpoint: str
    entries: tuple[Entry, ...]
