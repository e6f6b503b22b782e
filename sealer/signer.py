"""The signers of checkpoints: what every signer offers, and the file key.

A signer (:class:`NoteSigner`) is anything with a key ``name``, a ``verifier`` (its public
:class:`~auditseal.verifier.note.NoteVerifier`) and ``sign(message) -> 64-byte Ed25519
signature``; ``sign_note`` is built on those once, here. Two kinds exist: :class:`Signer`, a key
file, and :class:`~auditseal.sealer.pkcs11_signer.Pkcs11Signer`, a key inside a PKCS#11 token
(an HSM), which signs in the token. :func:`load_signer` picks one from what ``--key`` names.

Key files hold ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ 32-byte seed)>``, the format of
golang.org/x/mod/sumdb/note, so keys move between auditseal and Go tooling unchanged.
Key files are written with mode 0600 and refused when group or others can read them.
"""

from __future__ import annotations

import base64
import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditseal.sealer.errors import KeyFileError
from auditseal.verifier.errors import FormatError
from auditseal.verifier.note import (
    ALG_ED25519,
    NoteVerifier,
    b64decode_strict,
    check_key_name,
    key_id,
    signature_line,
)

__all__ = ["PKCS11_SCHEME", "NoteSigner", "Signer", "load_signer"]

_PREFIX = "PRIVATE+KEY+"
PKCS11_SCHEME = "pkcs11:"


class NoteSigner(ABC):
    """An Ed25519 key that signs notes. ``name`` is the key name of the signature lines."""

    name: str

    @property
    @abstractmethod
    def verifier(self) -> NoteVerifier:
        """The public key, as C2SP signed-note verifiers pin it."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message`` (64 bytes)."""

    def sign_note(self, text: str) -> str:
        """The signed note of ``text`` (which must end with a newline) with one signature."""
        if not text.endswith("\n"):
            raise ValueError("note text must end with a newline")
        v = self.verifier
        sig = self.sign(text.encode("utf-8"))
        return text + "\n" + signature_line(self.name, v.key_id, sig)


def load_signer(key: str | Path) -> NoteSigner:
    """The signer ``--key`` names: a ``pkcs11:`` URI (RFC 7512) or a key file's path."""
    if isinstance(key, str) and key.startswith(PKCS11_SCHEME):
        from auditseal.sealer.pkcs11_signer import Pkcs11Signer  # the `hsm` extra, when used

        return Pkcs11Signer.open(key)
    return Signer.from_file(key)


@dataclass(frozen=True)
class Signer(NoteSigner):
    """A key file's Ed25519 key, held in this process."""

    name: str
    _private: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @classmethod
    def generate(cls, name: str) -> Signer:
        check_key_name(name)
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> NoteVerifier:
        pub = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return NoteVerifier(self.name, key_id(self.name, pub), pub)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    # --- the private key string and file --------------------------------------------------

    def to_private_string(self) -> str:
        seed = self._private.private_bytes_raw()
        b64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"{_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{b64}"

    @classmethod
    def from_private_string(cls, skey: str) -> Signer:
        text = skey.strip()
        if not text.startswith(_PREFIX):
            raise FormatError("private key: want PRIVATE+KEY+name+keyid+base64key")
        parts = text[len(_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise FormatError("private key: want PRIVATE+KEY+name+keyid+base64key")
        name, hex_id, b64 = parts
        check_key_name(name)
        raw = b64decode_strict("private key", b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("private key: want an Ed25519 seed (0x01 followed by 32 bytes)")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier.key_id.hex() != hex_id:
            raise FormatError("private key: key ID does not match name and key")
        return signer

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        """Load a key file; it MUST NOT be readable by group or others."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"{p}: key file is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {p}"
                )
            return cls.from_private_string(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot read key file: {exc.strerror}") from exc
        except (FormatError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"{p}: not an auditseal private key: {exc}") from exc

    def write_private_file(self, path: str | Path) -> None:
        """Create ``path`` with mode 0600; refuse to overwrite an existing file."""
        p = Path(path)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise KeyFileError(f"{p}: already exists; refusing to overwrite a key") from exc
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot create key file: {exc.strerror}") from exc
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.to_private_string() + "\n")
