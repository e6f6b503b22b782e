"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures, parsed strictly.

A note is ``text ‖ "\\n" ‖ signature lines``; the text ends with a newline, each signature line
is ``"— " name " " base64(key_id[4] ‖ signature) "\\n"``. Ed25519 key IDs are the first four bytes
of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key). Verifier keys use the Go note format
``name+hex(key_id)+base64(0x01 ‖ public key)``. Unlike lenient parsers, a line that is not a
well-formed signature makes the whole note malformed; signatures by unknown keys are kept as
unverified and never count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditseal.verifier.errors import FormatError, SignatureError

__all__ = [
    "ALG_ED25519",
    "NoteSignature",
    "NoteVerifier",
    "SignedNote",
    "b64decode_strict",
    "check_key_name",
    "key_id",
    "signature_line",
]

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # as Go's note.Open: bounds the work an attacker can cause


def b64decode_strict(what: str, text: str) -> bytes:
    """Standard padded base64 that re-encodes to exactly ``text``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what}: non-canonical base64")
    return raw


def check_key_name(name: str) -> None:
    """Key names: non-empty, no whitespace, no '+' (it separates the key string's fields)."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise FormatError(f"key name {name!r}: must be non-empty, without spaces or '+'")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise FormatError(f"key name {name!r}: control characters are not allowed")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte Ed25519 key ID of C2SP signed-note."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()[:4]


def signature_line(name: str, kid: bytes, signature: bytes) -> str:
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(kid + signature).decode('ascii')}\n"


@dataclass(frozen=True)
class NoteVerifier:
    """A pinned Ed25519 verifier key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def from_string(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hex(key_id)+base64(0x01 ‖ public key)``, checking the key ID."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise FormatError("verifier key: want name+keyid+base64key")
        name, hex_id, b64 = parts
        check_key_name(name)
        if len(hex_id) != 8 or hex_id.lower() != hex_id:
            raise FormatError("verifier key: key ID must be 8 lowercase hex digits")
        try:
            kid = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise FormatError("verifier key: key ID is not hex") from exc
        raw = b64decode_strict("verifier key", b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("verifier key: want an Ed25519 key (0x01 followed by 32 bytes)")
        if key_id(name, raw[1:]) != kid:
            raise FormatError("verifier key: key ID does not match name and key")
        return cls(name, kid, raw[1:])

    def to_string(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    """A parsed, not yet verified, signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def from_text(cls, raw_note: str | bytes) -> SignedNote:
        """Split a note into text and signatures; any malformed byte or line is an error."""
        if isinstance(raw_note, bytes):
            try:
                raw_note = raw_note.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError("note: not UTF-8") from exc
        if any(c < " " and c != "\n" for c in raw_note):
            raise FormatError("note: control character other than newline")
        split = raw_note.rfind("\n\n")
        if split < 0:
            raise FormatError("note: no blank line before the signatures")
        text, sig_block = raw_note[: split + 1], raw_note[split + 2 :]
        if not sig_block or not sig_block.endswith("\n"):
            raise FormatError("note: signature block must be non-empty and end with a newline")
        lines = sig_block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise FormatError(f"note: more than {MAX_SIGNATURES} signatures")
        signatures = []
        for n, line in enumerate(lines, start=1):
            if not line.startswith(SIGNATURE_PREFIX):
                raise FormatError(f"note: signature line {n} does not start with '— '")
            name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
            if not sep or not b64:
                raise FormatError(f"note: signature line {n}: want '— name base64'")
            check_key_name(name)
            raw = b64decode_strict(f"note: signature line {n}", b64)
            if len(raw) < 5:
                raise FormatError(f"note: signature line {n}: too short")
            signatures.append(NoteSignature(name, raw[:4], raw[4:]))
        return cls(text, tuple(signatures))

    def to_text(self) -> str:
        return (
            self.text
            + "\n"
            + "".join(signature_line(s.name, s.key_id, s.signature) for s in self.signatures)
        )

    def verify(self, verifiers: Iterable[NoteVerifier]) -> list[NoteVerifier]:
        """The pinned verifiers that signed this note; raises SignatureError if none did.

        A signature claiming a pinned key's name and ID that does not verify is an error even
        if another signature verifies: it means someone forged or altered the note.
        """
        known = {(v.name, v.key_id): v for v in verifiers}
        if not known:
            raise SignatureError("note: no verifier keys given")
        opened: list[NoteVerifier] = []
        message = self.text.encode("utf-8")
        for sig in self.signatures:
            v = known.get((sig.name, sig.key_id))
            if v is None:
                continue
            if not v.verify(message, sig.signature):
                raise SignatureError(f"note: invalid signature by {v.name}+{v.key_id.hex()}")
            if v not in opened:
                opened.append(v)
        if not opened:
            names = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in known.values())
            raise SignatureError(f"note: not signed by any pinned key ({names})")
        return opened
