"""Log-key rotation: the rotation record, the keys a verifier pins, and which key may sign
a checkpoint of a given size.

**The record.** ``auditseal log rotate-key`` appends a *log record* leaf (leaf flag bit 2, like
a redaction record, :mod:`auditseal.verifier.redaction`) whose value is a C2SP signed note::

    auditseal.key-rotation/v1
    origin <origin>
    old <verifier key the log signed with until now>
    new <verifier key it signs with from now on>
    from <size: the record's leaf index + 1>
    until <size: the old key signs no checkpoint of this size or larger>
    time <ms since the epoch, the record leaf's timestamp>

    — <old key name> <base64(key id ‖ signature)>
    — <new key name> <base64(key id ‖ signature)>

exactly these lines and these two signatures, old first: the old key authorises the rotation,
the new key proves that its holder has it (and vouches for its predecessor, so a verifier that
pins only the new key can learn the old one). docs/FORMAT.md §2b is the byte-exact spec.

**Which key signs which size.** Once a log holds rotation records they *declare* its key at
every size: before the first record, its old key; from a record's ``from`` on, its new key,
with the old one still valid below ``until`` (the overlap, when the sealer signs with both).
A checkpoint of size ``s`` is valid when it is signed by a key that the log declares at ``s``
and that the verifier accepts at ``s``: pinned there (``--log-key`` pins for every size, a pins
file by range), or, when following rotations (the default), any key of a rotation chain that
holds a pinned key. Each link of the chain is signed by both its keys, so a chain is trusted as
a whole or not at all. A record whose keys are not the chain's (its old key is not the current
key) or that nothing pinned authenticates is :class:`RotationError`; a checkpoint signed only by
a key the log does not declare at its size (the old key after the overlap) is
:class:`LogKeyError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from auditseal.verifier.checkpoint import Checkpoint
from auditseal.verifier.errors import FormatError, SignatureError, VerificationError
from auditseal.verifier.fields import boolean, integer, list_at, loads_strict, object_at, string
from auditseal.verifier.leaf import Entry, commitment
from auditseal.verifier.note import NoteVerifier, SignedNote

__all__ = [
    "KEYS_FORMAT",
    "ROTATION_TYPE",
    "KeyHistory",
    "KeyRotation",
    "KeySet",
    "LogKeyError",
    "PinnedKey",
    "RotationError",
    "history_of",
    "is_rotation_value",
    "open_rotation",
    "open_rotation_record",
    "read_key_set",
    "rotation_entry",
]

ROTATION_TYPE = "auditseal.key-rotation/v1"
KEYS_FORMAT = "auditseal.log-keys/v1"
_LINES = ("origin", "old", "new", "from", "until", "time")
_MAX_SIZE = 2**63 - 1


class RotationError(VerificationError):
    """A rotation record that is malformed, breaks the chain of keys, or that no pinned key
    authenticates."""


class LogKeyError(SignatureError):
    """A checkpoint signed only by keys the log does not declare (or the verifier does not
    accept) at its size: e.g. the old key after the overlap."""


def _decimal(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(f"rotation record {what}: want a decimal without leading zeros")
    value = int(text)
    if value > _MAX_SIZE:
        raise FormatError(f"rotation record {what}: out of range")
    return value


@dataclass(frozen=True)
class KeyRotation:
    """What one rotation record states: log ``origin`` signs with ``new`` from size
    ``from_size`` on, and with ``old`` no more from size ``until``."""

    origin: str
    old: NoteVerifier
    new: NoteVerifier
    from_size: int
    until: int
    time_ms: int

    def __post_init__(self) -> None:
        if not self.origin or any(c.isspace() for c in self.origin):
            raise FormatError("rotation record origin: want one word without spaces")
        if self.old == self.new or (self.old.name, self.old.key_id) == (
            self.new.name,
            self.new.key_id,
        ):
            raise FormatError("rotation record: the new key is the old key")
        if not 1 <= self.from_size < self.until <= _MAX_SIZE:
            raise FormatError(
                f"rotation record: want 1 <= from ({self.from_size}) < until ({self.until}): "
                "the old key signs the record's own checkpoint"
            )
        if not 0 <= self.time_ms <= _MAX_SIZE:
            raise FormatError("rotation record time: want a non-negative i64")

    @property
    def overlap(self) -> int:
        """Leaves after the record's own during which the old key still co-signs."""
        return self.until - self.from_size - 1

    def statement(self) -> str:
        """The note text both keys sign."""
        return (
            f"{ROTATION_TYPE}\norigin {self.origin}\nold {self.old.to_string()}\n"
            f"new {self.new.to_string()}\nfrom {self.from_size}\nuntil {self.until}\n"
            f"time {self.time_ms}\n"
        )

    @classmethod
    def from_statement(cls, text: str) -> KeyRotation:
        """Parse the note text strictly (exact lines, in order); FormatError otherwise."""
        if not text.endswith("\n"):
            raise FormatError("rotation record: text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 1 + len(_LINES) or lines[0] != ROTATION_TYPE:
            raise FormatError(f"rotation record: want {ROTATION_TYPE!r} and {len(_LINES)} lines")
        values: dict[str, str] = {}
        for name, line in zip(_LINES, lines[1:], strict=True):
            word, sep, rest = line.partition(" ")
            if word != name or not sep or not rest:
                raise FormatError(f"rotation record: want a line {name!r} <value>, got {line!r}")
            values[name] = rest
        rotation = cls(
            values["origin"],
            NoteVerifier.from_string(values["old"]),
            NoteVerifier.from_string(values["new"]),
            _decimal(values["from"], "from"),
            _decimal(values["until"], "until"),
            _decimal(values["time"], "time"),
        )
        if rotation.statement() != text:
            raise FormatError("rotation record: not in canonical form")
        return rotation

    def describe(self) -> str:
        return (
            f"{_key_label(self.old)} -> {_key_label(self.new)} from size {self.from_size}, "
            f"old key until size {self.until}"
        )


def _key_label(key: NoteVerifier) -> str:
    return f"{key.name}+{key.key_id.hex()}"


def is_rotation_value(value: bytes | None) -> bool:
    """Whether a log record's value is a rotation record (else it is a redaction record)."""
    return value is not None and value.startswith(ROTATION_TYPE.encode("ascii") + b"\n")


def open_rotation(value: bytes) -> KeyRotation:
    """The rotation a record's value states, once both its keys' signatures verify.

    Raises RotationError: not a signed note, not exactly the old key's then the new key's
    signature, a signature that does not verify, or non-canonical bytes.
    """
    try:
        note = SignedNote.from_text(value)
        rotation = KeyRotation.from_statement(note.text)
    except FormatError as exc:
        raise RotationError(f"rotation record: {exc}") from exc
    signers = [(s.name, s.key_id) for s in note.signatures]
    want = [(k.name, k.key_id) for k in (rotation.old, rotation.new)]
    if signers != want:
        raise RotationError(
            "rotation record: want exactly two signatures, by its old key then its new key "
            f"({_key_label(rotation.old)}, {_key_label(rotation.new)}); it carries "
            + (", ".join(f"{n}+{k.hex()}" for n, k in signers) or "none")
        )
    message = note.text.encode("utf-8")
    for key, sig in zip((rotation.old, rotation.new), note.signatures, strict=True):
        if not key.verify(message, sig.signature):
            role = "old" if key == rotation.old else "new"
            raise RotationError(
                f"rotation record: the signature of its {role} key {_key_label(key)} does not "
                "verify"
            )
    if note.to_text().encode("utf-8") != value:
        raise RotationError("rotation record: not in canonical form")
    return rotation


def open_rotation_record(entry: Entry, index: int, origin: str) -> KeyRotation:
    """The rotation that the log record at leaf ``index`` of log ``origin`` states.

    Raises RotationError unless the entry is a well-formed rotation record at that index: a log
    record, position = index, no key, its value present, signed by both keys, naming this
    log, ``from`` = index + 1 and ``time`` = the leaf's timestamp.
    """
    where = f"rotation record at leaf {index}"
    if not entry.log_record:
        raise RotationError(f"leaf {index} is not a log record")
    if entry.position != index:
        raise RotationError(f"{where}: position {entry.position}, a log record's is its index")
    if entry.key is not None:
        raise RotationError(f"{where}: has a key")
    if entry.value is None or entry.salt is None:
        raise RotationError(f"{where}: its value is erased; a rotation record is evidence")
    try:
        rotation = open_rotation(entry.value)
    except RotationError as exc:
        raise RotationError(f"{where}: {exc}") from exc
    if rotation.origin != origin:
        raise RotationError(f"{where}: rotates the key of log {rotation.origin!r}")
    if rotation.from_size != index + 1:
        raise RotationError(
            f"{where}: states from size {rotation.from_size}, its own position makes it {index + 1}"
        )
    if rotation.time_ms != entry.timestamp_ms:
        raise RotationError(f"{where}: record time {rotation.time_ms} is not the leaf's")
    return rotation


def rotation_entry(index: int, value: bytes, time_ms: int, salt: bytes, origin: str) -> Entry:
    """The log-record entry at leaf ``index`` holding a signed rotation record ``value``."""
    return Entry(
        origin, index, time_ms, None, value, salt, commitment(salt, value), log_record=True
    )


# --- what a verifier pins ---------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedKey:
    """A pinned verifier key, accepted for checkpoints of sizes ``[from_size, to_size)``
    (``to_size`` None: no end), of log ``log`` (None: of every log)."""

    key: NoteVerifier
    from_size: int = 0
    to_size: int | None = None
    log: str | None = None

    def covers(self, size: int, origin: str) -> bool:
        return (
            (self.log is None or self.log == origin)
            and self.from_size <= size
            and (self.to_size is None or size < self.to_size)
        )


@dataclass(frozen=True)
class KeySet:
    """The keys a verifier pins, and whether it follows rotation records (default)."""

    pins: tuple[PinnedKey, ...]
    follow: bool = True

    @classmethod
    def of(cls, keys: Iterable[NoteVerifier], follow: bool = True) -> KeySet:
        """Keys pinned for every size of every log (``--log-key``)."""
        return cls(tuple(PinnedKey(k) for k in keys), follow)

    def keys(self, origin: str | None = None) -> tuple[NoteVerifier, ...]:
        """Every pinned key (of ``origin``), once each."""
        out: list[NoteVerifier] = []
        for p in self.pins:
            if (origin is None or p.log in (None, origin)) and p.key not in out:
                out.append(p.key)
        return tuple(out)

    @property
    def simple(self) -> bool:
        """Every key pinned for every size of every log: nothing but rotations to follow."""
        return all(p.from_size == 0 and p.to_size is None and p.log is None for p in self.pins)

    def merged(self, other: KeySet) -> KeySet:
        return KeySet(self.pins + other.pins, self.follow and other.follow)


def read_key_set(path: str | os.PathLike[str], follow: bool = True) -> KeySet:
    """A pins file (``auditseal.log-keys/v1``, docs/VERIFYING.md)::

        {"format": "auditseal.log-keys/v1", "follow_rotations": true,
         "keys": [{"key": "name+keyid+base64", "from_size": 0, "to_size": 1200,
                   "log": "auditseal.local/audit.events/0"}, ...]}

    ``from_size`` (default 0), ``to_size`` (exclusive; null or absent: no end), ``log`` (null
    or absent: every log) and ``follow_rotations`` (default true) are optional. FormatError
    names the file and the field.
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise FormatError(f"{file}: cannot read the log keys file: {exc.strerror}") from exc
    try:
        data = object_at(loads_strict(raw, "keys"), "keys")
        if data.get("format") != KEYS_FORMAT:
            raise FormatError(f"keys.format: {data.get('format')!r}, want {KEYS_FORMAT!r}")
        unknown = sorted(set(data) - {"format", "follow_rotations", "keys"})
        if unknown:
            raise FormatError(f"keys.{unknown[0]}: unknown key")
        if "follow_rotations" in data:
            follow = follow and boolean(data, "follow_rotations", "keys")
        pins = []
        for i, raw_pin in enumerate(list_at(data.get("keys"), "keys.keys")):
            where = f"keys.keys[{i}]"
            item = object_at(raw_pin, where)
            unknown = sorted(set(item) - {"key", "from_size", "to_size", "log"})
            if unknown:
                raise FormatError(f"{where}.{unknown[0]}: unknown key")
            try:
                key = NoteVerifier.from_string(string(item, "key", where))
            except FormatError as exc:
                raise FormatError(f"{where}.key: {exc}") from exc
            start = integer(item, "from_size", where) if "from_size" in item else 0
            end = None
            if item.get("to_size") is not None:
                end = integer(item, "to_size", where)
                if end <= start:
                    raise FormatError(f"{where}.to_size: want more than from_size ({start})")
            log = string(item, "log", where, nullable=True) if "log" in item else None
            pins.append(PinnedKey(key, start, end, log))
        if not pins:
            raise FormatError("keys.keys: want at least one key")
    except FormatError as exc:
        raise FormatError(f"{file}: {exc}") from exc
    return KeySet(tuple(pins), follow)


# --- a log's keys over its sizes --------------------------------------------------------------


@dataclass
class KeyHistory:
    """The keys of one log by size: the verifier's :class:`KeySet` and the log's rotation
    records (added in leaf order with :meth:`add`)."""

    key_set: KeySet
    origin: str
    rotations: list[tuple[int, KeyRotation]] = field(default_factory=list)

    def copy(self) -> KeyHistory:
        return KeyHistory(self.key_set, self.origin, list(self.rotations))

    @property
    def trivial(self) -> bool:
        """No rotation and keys pinned for every size: any pinned key signs any size."""
        return not self.rotations and self.key_set.simple

    def add(self, index: int, rotation: KeyRotation) -> None:
        """Append the rotation record at leaf ``index``; RotationError if it breaks the chain:
        its old key MUST be the key the previous record rotated to, its new key a key the log
        never had. (Whether a pinned key authenticates the chain: :meth:`chain_problems`.)"""
        where = f"rotation record at leaf {index}"
        if rotation.origin != self.origin:
            raise RotationError(f"{where}: rotates the key of log {rotation.origin!r}")
        if self.rotations:
            last_index, last = self.rotations[-1]
            if index <= last_index:
                raise RotationError(f"{where}: not after the record at leaf {last_index}")
            if rotation.old != last.new:
                raise RotationError(
                    f"{where}: is signed by {_key_label(rotation.old)} as the log's previous "
                    f"key, but the rotation record at leaf {last_index} made the log's key "
                    f"{_key_label(last.new)}: not signed by the previous key"
                )
        if rotation.new in self.chain():
            raise RotationError(f"{where}: {_key_label(rotation.new)} was a key of this log")
        self.rotations.append((index, rotation))

    def observe(self, index: int, rotation: KeyRotation) -> None:
        """A rotation record met while replaying: one already added (read ahead of the replay)
        must be the same; a new one is added. RotationError otherwise."""
        for known_index, known in self.rotations:
            if known_index == index:
                if known != rotation:
                    raise RotationError(
                        f"rotation record at leaf {index}: differs from the one read before"
                    )
                return
        self.add(index, rotation)
        problems = self.chain_problems() if self.key_set.pins else []  # none: structure only
        if problems:
            del self.rotations[-1]
            raise RotationError(problems[-1][1])

    def chain(self) -> list[NoteVerifier]:
        """The log's keys in order: the first record's old key, then each new key."""
        if not self.rotations:
            return []
        return [self.rotations[0][1].old, *(r.new for _, r in self.rotations)]

    def _declared_range(self, position: int) -> tuple[int, int | None]:
        """Sizes ``[from, to)`` at which chain key ``position`` is the log's (or one of)."""
        rs = [r for _, r in self.rotations]
        start = 0 if position == 0 else rs[position - 1].from_size
        end = rs[position].until if position < len(rs) else None
        return start, end

    def declared(self, size: int) -> list[NoteVerifier] | None:
        """The keys the log's records declare at ``size``; None without records (any)."""
        if not self.rotations:
            return None
        out = []
        for i, key in enumerate(self.chain()):
            start, end = self._declared_range(i)
            if start <= size and (end is None or size < end):
                out.append(key)
        return out

    def _pinned(self, key: NoteVerifier, size: int) -> bool:
        return any(p.key == key and p.covers(size, self.origin) for p in self.key_set.pins)

    def _link_pinned(self, rotation: KeyRotation) -> bool:
        return self._pinned(rotation.old, rotation.from_size) or self._pinned(
            rotation.new, rotation.from_size
        )

    def chain_trusted(self) -> bool:
        """Whether following applies: some link has a key pinned at its ``from`` size."""
        return self.key_set.follow and any(self._link_pinned(r) for _, r in self.rotations)

    def chain_problems(self) -> list[tuple[int, str]]:
        """``(leaf, detail)`` for each record that no pinned key authenticates: neither of its
        keys is pinned at its size, and (when following) no other link of the chain is."""
        if self.chain_trusted():
            return []
        pinned = ", ".join(_key_label(k) for k in self.key_set.keys(self.origin)) or "none"
        return [
            (
                index,
                f"rotation record at leaf {index} ({r.describe()}): neither key is pinned at "
                f"size {r.from_size}"
                + (" nor follows from a pinned key" if self.key_set.follow else "")
                + f" (pinned: {pinned}): nothing authenticates it",
            )
            for index, r in self.rotations
            if not self._link_pinned(r)
        ]

    def trusted_keys(self) -> tuple[NoteVerifier, ...]:
        """Every key that may sign some size: pinned, or learnt from a trusted chain."""
        keys = list(self.key_set.keys(self.origin))
        if self.chain_trusted():
            keys.extend(k for k in self.chain() if k not in keys)
        return tuple(keys)

    def valid_at(self, size: int) -> tuple[NoteVerifier, ...]:
        """The keys that may sign a checkpoint of ``size``: declared there by the log, and
        pinned there or (following) a key of a trusted chain that no pin restricts."""
        declared = self.declared(size)
        pinned_keys = self.key_set.keys(self.origin)
        if declared is None:
            return tuple(k for k in pinned_keys if self._pinned(k, size))
        learnt = self.chain_trusted()
        return tuple(
            k for k in declared if self._pinned(k, size) or (learnt and k not in pinned_keys)
        )

    def check_signers(self, note: str, checkpoint: Checkpoint) -> None:
        """LogKeyError unless a key valid at the checkpoint's size signed ``note`` (whose
        signatures by trusted keys were already verified)."""
        valid = self.valid_at(checkpoint.size)
        try:
            signed = SignedNote.from_text(note).verify(self.trusted_keys())
        except VerificationError as exc:
            raise LogKeyError(str(exc)) from exc
        if any(k in valid for k in signed):
            return
        why = ""
        for index, r in self.rotations:
            if r.old in signed and checkpoint.size >= r.until:
                why = (
                    f"; the rotation record at leaf {index} retired {_key_label(r.old)} from "
                    f"size {r.until}"
                )
        names = ", ".join(_key_label(k) for k in signed)
        want = ", ".join(_key_label(k) for k in valid) or "none the verifier accepts"
        raise LogKeyError(
            f"checkpoint of size {checkpoint.size} is signed by {names}, not by a key of the "
            f"log at that size ({want}){why}"
        )

    def describe(self) -> str:
        if not self.rotations:
            return "no key rotation"
        return "; ".join(f"leaf {i}: {r.describe()}" for i, r in self.rotations)


def history_of(
    key_set: KeySet, origin: str, records: Sequence[tuple[int, Entry]]
) -> tuple[KeyHistory, list[tuple[int, str]]]:
    """The history of ``origin`` from its rotation records ``(leaf, entry)`` in leaf order, and
    ``(leaf, detail)`` of each record that is malformed, breaks the chain or is unauthenticated
    (such a record is left out of the history)."""
    history = KeyHistory(key_set, origin)
    problems: list[tuple[int, str]] = []
    for index, entry in records:
        try:
            history.add(index, open_rotation_record(entry, index, origin))
        except RotationError as exc:
            problems.append((index, str(exc)))
    problems.extend(history.chain_problems())
    return history, problems
