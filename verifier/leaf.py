"""The leaf encoding (version 1): what each Merkle leaf binds, and the entry that opens it.

A leaf commits to a Kafka record without containing it, so that the record's value can later be
erased (redaction, GDPR) while every proof stays valid::

    leaf = version (u8, 0x01)
         ‖ flags (u8: bit 0 key is null, bit 1 value is null, bit 2 a log record;
                   other bits zero)
         ‖ len(origin) (u16 BE) ‖ origin (UTF-8)
         ‖ position (u64 BE: the Kafka offset)
         ‖ timestamp (i64 BE: Kafka timestamp, ms since the epoch)
         ‖ SHA-256(key)            (a null key hashes as b"")
         ‖ SHA-256(salt ‖ value)   (salt: 16 random bytes; a null value commits as b"")

A *log record* (flag bit 2) is a leaf the log writes about itself, not a Kafka record: today
only a redaction record (:mod:`auditseal.verifier.redaction`). Its position is its own leaf index,
so it never stands for a Kafka offset, and Kafka positions stay strictly increasing across the
leaves that are Kafka records.

The Merkle leaf hash is ``merkle.leaf_hash(leaf)``. docs/FORMAT.md has worked examples.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

from auditseal.verifier.errors import FormatError, VerificationError
from auditseal.verifier.merkle import HASH_SIZE, leaf_hash

__all__ = [
    "LEAF_VERSION",
    "SALT_SIZE",
    "Entry",
    "Leaf",
    "LeafMismatchError",
    "commitment",
    "leaf_flags",
    "leaf_hasher",
]

LEAF_VERSION = 1
SALT_SIZE = 16
MAX_ORIGIN_BYTES = 0xFFFF

_FLAG_KEY_NULL = 0x01
_FLAG_VALUE_NULL = 0x02
_FLAG_LOG_RECORD = 0x04
_KNOWN_FLAGS = _FLAG_KEY_NULL | _FLAG_VALUE_NULL | _FLAG_LOG_RECORD
_TAIL = struct.Struct(">Qq32s32s")
_HEAD = struct.Struct(">BBH")


class LeafMismatchError(VerificationError):
    """An entry whose value no longer matches the commitment in its leaf."""


def commitment(salt: bytes, value: bytes | None) -> bytes:
    """SHA-256(salt ‖ value), a null value committing as the empty string."""
    return hashlib.sha256(salt + (value or b"")).digest()


def leaf_flags(key_null: bool | int, value_null: bool | int, log_record: bool | int = False) -> int:
    """The leaf's flags byte (FORMAT.md §2): bit 0 key null, bit 1 value null, bit 2 log record."""
    return (
        (_FLAG_KEY_NULL if key_null else 0)
        | (_FLAG_VALUE_NULL if value_null else 0)
        | (_FLAG_LOG_RECORD if log_record else 0)
    )


def _head(flags: int, origin: bytes) -> bytes:
    return _HEAD.pack(LEAF_VERSION, flags, len(origin)) + origin


def leaf_hasher(origin: str) -> Callable[[int, int, bytes, bytes, int], bytes]:
    """``hash(position, timestamp_ms, key_hash, value_commitment, flags)``: the Merkle leaf hash.

    The same bytes as :meth:`Leaf.hash` without building a Leaf per entry, for replaying whole
    logs; ``flags`` as :func:`leaf_flags` makes them. Raises FormatError
    or struct.error on a field out of range.
    """
    origin_bytes = origin.encode("utf-8")
    if not origin_bytes or len(origin_bytes) > MAX_ORIGIN_BYTES:
        raise FormatError(f"leaf origin: want 1..{MAX_ORIGIN_BYTES} UTF-8 bytes")
    heads = tuple(b"\x00" + _head(flags, origin_bytes) for flags in range(_KNOWN_FLAGS + 1))
    pack, sha256 = _TAIL.pack, hashlib.sha256

    def hash_leaf(
        position: int, timestamp_ms: int, key_hash: bytes, value_commitment: bytes, flags: int
    ) -> bytes:
        if len(value_commitment) != HASH_SIZE or len(key_hash) != HASH_SIZE:
            raise FormatError(f"leaf {position}: key hash and commitment must be {HASH_SIZE} bytes")
        return sha256(
            heads[flags] + pack(position, timestamp_ms, key_hash, value_commitment)
        ).digest()

    return hash_leaf


@dataclass(frozen=True)
class Leaf:
    """The bytes hashed into the tree; construction validates every field."""

    origin: str
    position: int
    timestamp_ms: int
    key_hash: bytes
    value_commitment: bytes
    key_null: bool = False
    value_null: bool = False
    log_record: bool = False

    def __post_init__(self) -> None:
        origin_bytes = self.origin.encode("utf-8")
        if not origin_bytes or len(origin_bytes) > MAX_ORIGIN_BYTES:
            raise FormatError(f"leaf origin: want 1..{MAX_ORIGIN_BYTES} UTF-8 bytes")
        if not 0 <= self.position < 2**64:
            raise FormatError(f"leaf position {self.position}: out of u64 range")
        if not -(2**63) <= self.timestamp_ms < 2**63:
            raise FormatError(f"leaf timestamp {self.timestamp_ms}: out of i64 range")
        for name in ("key_hash", "value_commitment"):
            if len(getattr(self, name)) != HASH_SIZE:
                raise FormatError(f"leaf {name}: want {HASH_SIZE} bytes")

    def to_bytes(self) -> bytes:
        flags = leaf_flags(self.key_null, self.value_null, self.log_record)
        return _head(flags, self.origin.encode("utf-8")) + _TAIL.pack(
            self.position, self.timestamp_ms, self.key_hash, self.value_commitment
        )

    def hash(self) -> bytes:
        return leaf_hash(self.to_bytes())

    @classmethod
    def from_bytes(cls, raw_leaf: bytes) -> Leaf:
        """Parse a leaf strictly: known version, known flags, exact length."""
        if len(raw_leaf) < _HEAD.size:
            raise FormatError(f"leaf: {len(raw_leaf)} bytes is too short")
        version, flags, origin_len = _HEAD.unpack_from(raw_leaf)
        if version != LEAF_VERSION:
            raise FormatError(f"leaf: unknown version {version}")
        if flags & ~_KNOWN_FLAGS:
            raise FormatError(f"leaf: unknown flags {flags:#04x}")
        want = _HEAD.size + origin_len + _TAIL.size
        if len(raw_leaf) != want:
            raise FormatError(f"leaf: {len(raw_leaf)} bytes, want {want}")
        try:
            origin = raw_leaf[_HEAD.size : _HEAD.size + origin_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError("leaf origin: not UTF-8") from exc
        position, timestamp, key_hash, value_commitment = _TAIL.unpack_from(
            raw_leaf, _HEAD.size + origin_len
        )
        return cls(
            origin,
            position,
            timestamp,
            key_hash,
            value_commitment,
            key_null=bool(flags & _FLAG_KEY_NULL),
            value_null=bool(flags & _FLAG_VALUE_NULL),
            log_record=bool(flags & _FLAG_LOG_RECORD),
        )


@dataclass(frozen=True)
class Entry:
    """A sealed record: its leaf's fields plus the opening (value and salt) unless redacted.

    A redacted entry has ``value`` and ``salt`` set to None and keeps ``value_commitment``;
    it still yields the same leaf, so every proof through it still verifies. A log record
    (``log_record``) is a leaf the log wrote about itself; its ``position`` is its leaf index.
    """

    origin: str
    position: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    salt: bytes | None
    value_commitment: bytes
    value_null: bool = False
    log_record: bool = False

    def __post_init__(self) -> None:
        if (self.value is None) != (self.salt is None) and not self.value_null:
            raise FormatError(
                f"entry {self.position}: value and salt must be both present or both redacted"
            )
        if self.salt is not None and len(self.salt) != SALT_SIZE:
            raise FormatError(f"entry {self.position}: salt of {len(self.salt)} bytes, want 16")
        if self.value_null and self.value is not None:
            raise FormatError(f"entry {self.position}: null value flag with a value present")

    @classmethod
    def seal(
        cls,
        origin: str,
        position: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        salt: bytes,
    ) -> Entry:
        """The entry for a record, committing to ``value`` with ``salt`` (caller's randomness)."""
        return cls(
            origin,
            position,
            timestamp_ms,
            key,
            value,
            salt,
            commitment(salt, value),
            value_null=value is None,
        )

    @property
    def redacted(self) -> bool:
        return self.salt is None

    def leaf(self) -> Leaf:
        """The leaf this entry opens; raises LeafMismatchError if the value was altered."""
        if self.salt is not None:
            recomputed = commitment(self.salt, self.value)
            if recomputed != self.value_commitment:
                raise LeafMismatchError(
                    f"entry {self.position}: value does not match its commitment "
                    f"(committed {self.value_commitment.hex()}, recomputed {recomputed.hex()})"
                )
        return Leaf(
            self.origin,
            self.position,
            self.timestamp_ms,
            hashlib.sha256(self.key or b"").digest(),
            self.value_commitment,
            key_null=self.key is None,
            value_null=self.value_null,
            log_record=self.log_record,
        )

    def leaf_hash(self) -> bytes:
        return self.leaf().hash()

    def redact(self) -> Entry:
        """This entry with value and salt dropped; its leaf is unchanged."""
        return Entry(
            self.origin,
            self.position,
            self.timestamp_ms,
            self.key,
            None,
            None,
            self.value_commitment,
            value_null=self.value_null,
            log_record=self.log_record,
        )
