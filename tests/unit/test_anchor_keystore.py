"""Encrypted chain keys (anchor/keystore.py, ChainKey.from_file): round trips, passphrase
sources, and every way a keystore can be unusable, each as one KeyFileError naming the file
and quoting neither the passphrase nor the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditseal.anchor.chain_client import ChainKey
from auditseal.anchor.errors import KeyFileError
from auditseal.anchor.keystore import (
    DEV_CHAIN_ID,
    Passphrase,
    decrypt,
    encrypt,
    looks_like_keystore,
    plain_key_warning,
)

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
SECRET = "correct horse battery staple"


def private(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)
    return path


def env(value: str = SECRET) -> Passphrase:
    return Passphrase(environ={"AUDITSEAL_KEY_PASSPHRASE": value})


@pytest.mark.parametrize(("kdf", "light"), [("scrypt", True), ("pbkdf2", True), ("scrypt", False)])
def test_a_keystore_round_trips_with_each_kdf(kdf: str, light: bool) -> None:
    text = encrypt(KEY, SECRET, kdf=kdf, light=light).decode()
    data = json.loads(text)
    assert data["version"] == 3 and data["crypto"]["kdf"] == kdf
    assert data["crypto"]["cipher"] == "aes-128-ctr"
    if kdf == "scrypt":
        assert data["crypto"]["kdfparams"]["n"] == (2**12 if light else 2**18)
    assert KEY.hex() not in text and SECRET not in text
    assert decrypt(text, env(), "k.json") == KEY


def test_chain_key_reads_a_keystore_and_a_plain_file(tmp_path: Path) -> None:
    keystore = private(tmp_path / "k.json", ChainKey.from_hex(KEY.hex(), "k").to_keystore(SECRET))
    key = ChainKey.from_file(keystore, env())
    assert key.address == ADDRESS and key.plain_file is None
    plain = ChainKey.from_file(private(tmp_path / "k.hex", "0x" + KEY.hex() + "\n"))
    assert plain.address == ADDRESS and plain.plain_file == str(tmp_path / "k.hex")
    assert repr(key) == f"ChainKey({ADDRESS})"


def test_the_passphrase_file_loses_one_line_end_only(tmp_path: Path) -> None:
    text = encrypt(KEY, " spaced pass ", light=True).decode()
    for content in (" spaced pass \n", " spaced pass \r\n", " spaced pass "):
        source = Passphrase(private(tmp_path / "pw", content))
        assert decrypt(text, source, "k.json") == KEY
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        decrypt(text, Passphrase(private(tmp_path / "pw", "spaced pass\n")), "k.json")


def test_the_passphrase_file_wins_over_the_environment(tmp_path: Path) -> None:
    text = encrypt(KEY, SECRET, light=True).decode()
    source = Passphrase(private(tmp_path / "pw", SECRET), {"AUDITSEAL_KEY_PASSPHRASE": "nope"})
    assert decrypt(text, source, "k.json") == KEY


def _errors(text: str, passphrase: Passphrase) -> str:
    with pytest.raises(KeyFileError) as caught:
        decrypt(text, passphrase, "/keys/anchor.json")
    message = str(caught.value)
    assert message.startswith("/keys/anchor.json: ") or "passphrase file" in message
    assert "\n" not in message and SECRET not in message and KEY.hex() not in message
    return message


def test_a_wrong_missing_or_empty_passphrase_is_named(tmp_path: Path) -> None:
    text = encrypt(KEY, SECRET, light=True).decode()
    assert "wrong passphrase (from $AUDITSEAL_KEY_PASSPHRASE)" in _errors(text, env("x"))
    assert "no passphrase is given" in _errors(text, Passphrase(environ={}))
    assert "no passphrase is given" in _errors(text, env(""))
    empty = private(tmp_path / "empty", "\n")
    assert f"{empty}: passphrase file is empty" in _errors(text, Passphrase(empty))
    open_file = private(tmp_path / "open", SECRET)
    open_file.chmod(0o644)
    assert "accessible by group or others" in _errors(text, Passphrase(open_file))
    assert "cannot read passphrase file" in _errors(text, Passphrase(tmp_path / "missing"))


def _mutated(**changes: object) -> str:
    data = json.loads(encrypt(KEY, SECRET, light=True))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        at = data
        for p in parents:
            at = at[p]
        if value is None:
            del at[leaf]
        else:
            at[leaf] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (_mutated(version=2), "version 2, want 3"),
        (_mutated(crypto=None), "no 'crypto' object"),
        (_mutated(crypto__cipher="aes-256-gcm"), "cipher 'aes-256-gcm'"),
        (_mutated(crypto__kdf="argon2"), "kdf 'argon2'"),
        (_mutated(crypto__kdfparams=None), "no 'crypto.kdfparams' object"),
        (_mutated(crypto__mac="zz"), "'crypto.mac' is not hex"),
        (_mutated(crypto__ciphertext=None), "'crypto.ciphertext' is not hex"),
        (_mutated(crypto__cipherparams__iv="-"), "'crypto.cipherparams.iv' is not hex"),
        (_mutated(crypto__kdfparams__n=None), "cannot decrypt it"),
        (_mutated(address="0x1234"), "'address' is not an Ethereum address"),
        (_mutated(address="70997970c51812dc3a010c7d01b50e0d17dc79c8"), "not the key's address"),
    ],
)
def test_a_malformed_keystore_is_one_line_naming_what(text: str, why: str) -> None:
    message = _errors(text, env())
    assert why in message, message


def test_an_altered_ciphertext_fails_the_mac() -> None:
    data = json.loads(encrypt(KEY, SECRET, light=True))
    c = data["crypto"]["ciphertext"]
    data["crypto"]["ciphertext"] = ("0" if c[0] != "0" else "1") + c[1:]
    assert "wrong passphrase" in _errors(json.dumps(data), env())


def test_detection_and_the_plain_file_warning() -> None:
    assert looks_like_keystore('  {"version": 3}') and not looks_like_keystore("0xabc")
    assert plain_key_warning(None, 1) is None  # a keystore or the environment
    assert plain_key_warning("/k", DEV_CHAIN_ID) is None  # Anvil's public keys
    warning = plain_key_warning("/k", 11155111)
    assert warning is not None and "/k" in warning and "11155111" in warning
    assert "import-key" in warning
