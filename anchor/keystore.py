"""Encrypted chain keys: the Web3 Secret Storage JSON (version 3) that geth, Foundry's
``cast wallet`` and MetaMask exports use, and the passphrase that opens it.

A key file given as ``--key`` is a keystore when its content is a JSON object, else a plain
``0x`` + 64 hex digits file (see ``ChainKey.from_file``). The passphrase comes from a file
(``--key-passphrase-file``, mode 0600) or ``$AUDITSEAL_KEY_PASSPHRASE``, never from the
command line (where ``ps`` and shell histories show it). Errors name the file and never quote
the passphrase, the key or the keystore's ciphertext.

Encryption and decryption are eth-account's (``Account.encrypt``/``Account.decrypt``, AES-128-CTR
with a scrypt or PBKDF2-SHA256 key derivation and a Keccak MAC). The standard scrypt cost
(N = 2^18, about a second and 256 MiB to open) is the default; ``light`` (N = 2^12, as geth's
``--lightkdf``) is for throwaway keys such as the dev stack's.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_utils.address import is_address, to_checksum_address

from auditseal.anchor.errors import KeyFileError

__all__ = [
    "DEV_CHAIN_ID",
    "ENV_PASSPHRASE",
    "KDFS",
    "Passphrase",
    "decrypt",
    "encrypt",
    "looks_like_keystore",
    "plain_key_warning",
]

ENV_PASSPHRASE = "AUDITSEAL_KEY_PASSPHRASE"
DEV_CHAIN_ID = 31337  # Anvil's (and Hardhat's) chain id: its accounts' keys are public anyway
KDFS = ("scrypt", "pbkdf2")
_LIGHT = {"scrypt": 2**12, "pbkdf2": 2**14}  # cost for throwaway keys; None: eth-account's


def looks_like_keystore(text: str) -> bool:
    """True if ``text`` is meant as a keystore (a JSON object), not a plain hex key."""
    return text.lstrip().startswith("{")


@dataclass(frozen=True)
class Passphrase:
    """Where a keystore's passphrase comes from: ``file`` if given, else the environment
    (``$AUDITSEAL_KEY_PASSPHRASE``).

    Nothing is read until a keystore needs it, so a plain key file works without one.
    """

    file: Path | None = None
    environ: Mapping[str, str] | None = None

    @property
    def source(self) -> str:
        return str(self.file) if self.file is not None else f"${ENV_PASSPHRASE}"

    def read(self, key_file: str) -> str:
        """The passphrase; KeyFileError (naming ``key_file`` or the passphrase file) if there
        is none, it is empty, or its file is unreadable or open to group or others."""
        if self.file is not None:
            return _read_passphrase_file(self.file)
        value = (os.environ if self.environ is None else self.environ).get(ENV_PASSPHRASE, "")
        if not value:
            raise KeyFileError(
                f"{key_file}: is an encrypted keystore and no passphrase is given: pass "
                f"--key-passphrase-file FILE (mode 0600) or set ${ENV_PASSPHRASE}"
            )
        return value


def _read_passphrase_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: passphrase file is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read passphrase file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: passphrase file is not UTF-8 text") from None
    # One trailing line end is the editor's, not the passphrase's (as geth's --password file).
    passphrase = text.removesuffix("\n").removesuffix("\r")
    if not passphrase:
        raise KeyFileError(f"{path}: passphrase file is empty")
    return passphrase


def _malformed(where: str, why: str) -> KeyFileError:
    return KeyFileError(f"{where}: not a usable Web3 Secret Storage keystore: {why}")


def _check_shape(data: Any, where: str) -> dict[str, Any]:
    """The structural checks eth-account leaves to KeyErrors, as one readable line each."""
    if not isinstance(data, dict):
        raise _malformed(where, "not a JSON object")
    if data.get("version") != 3:
        raise _malformed(where, f"version {data.get('version')!r}, want 3")
    crypto = data.get("crypto", data.get("Crypto"))
    if not isinstance(crypto, dict):
        raise _malformed(where, "no 'crypto' object")
    if crypto.get("cipher") != "aes-128-ctr":
        raise _malformed(where, f"cipher {crypto.get('cipher')!r}, want 'aes-128-ctr'")
    if crypto.get("kdf") not in KDFS:
        raise _malformed(where, f"kdf {crypto.get('kdf')!r}, want 'scrypt' or 'pbkdf2'")
    for name in ("kdfparams", "cipherparams"):
        if not isinstance(crypto.get(name), dict):
            raise _malformed(where, f"no 'crypto.{name}' object")
    for name in ("ciphertext", "mac"):
        value = crypto.get(name)
        if not isinstance(value, str) or not _is_hex(value):
            raise _malformed(where, f"'crypto.{name}' is not hex")
    if not _is_hex(str(crypto["cipherparams"].get("iv", ""))):
        raise _malformed(where, "'crypto.cipherparams.iv' is not hex")
    address = data.get("address")
    if address is not None and not (isinstance(address, str) and is_address(_0x(address))):
        raise _malformed(where, "'address' is not an Ethereum address")
    return data


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        return False
    return bool(text)


def _0x(address: str) -> str:
    return address if address.startswith("0x") else "0x" + address


def decrypt(text: str, passphrase: Passphrase, where: str) -> bytes:
    """The private key in the keystore ``text`` (read from ``where``).

    Raises KeyFileError: malformed (naming what), no passphrase, a wrong passphrase (the MAC
    does not match), or an ``address`` field that is not the key's address.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise _malformed(where, "not JSON") from None
    keystore = _check_shape(data, where)
    secret = passphrase.read(where)
    try:
        key = bytes(Account.decrypt(keystore, secret))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeyFileError(
                f"{where}: wrong passphrase (from {passphrase.source}), or the keystore was "
                "altered: its MAC does not match"
            ) from None
        raise _malformed(where, f"cannot decrypt it ({type(exc).__name__})") from None
    except Exception as exc:  # eth-keyfile's KeyErrors, TypeErrors on odd kdfparams: no details
        raise _malformed(where, f"cannot decrypt it ({type(exc).__name__})") from None
    if len(key) != 32:
        raise _malformed(where, "the decrypted key is not 32 bytes")
    address = keystore.get("address")
    if address is not None:
        actual = Account.from_key(key).address
        if to_checksum_address(_0x(address)) != actual:
            raise _malformed(where, f"its 'address' field is not the key's address {actual}")
    return key


def encrypt(key: bytes, passphrase: str, *, kdf: str = "scrypt", light: bool = False) -> bytes:
    """The keystore JSON (UTF-8, newline-terminated) holding ``key`` under ``passphrase``."""
    if kdf not in KDFS:
        raise ValueError(f"kdf {kdf!r}: want one of {KDFS}")
    name: Literal["scrypt", "pbkdf2"] = "scrypt" if kdf == "scrypt" else "pbkdf2"
    data = Account.encrypt(key, passphrase, kdf=name, iterations=_LIGHT[kdf] if light else None)
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def plain_key_warning(key_source: str | None, chain_id: int) -> str | None:
    """The warning for a chain key read from a plain file (``key_source``) on a chain other than
    the dev chain; None for a keystore, the environment, or the dev chain."""
    if key_source is None or chain_id == DEV_CHAIN_ID:
        return None
    return (
        f"the chain key in {key_source} is a plain, unencrypted file on chain {chain_id}: "
        "anyone who can read it can anchor (or act as the owner); make a keystore with "
        "`auditseal anchor import-key` (docs/ANCHORING.md, The anchor key)"
    )
