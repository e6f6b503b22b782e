"""RFC 7512 ``pkcs11:`` URIs as ``--key`` takes them: what is read, what is refused, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditseal.sealer.errors import HsmError
from auditseal.sealer.pkcs11_signer import DEFAULT_MODULE, Pkcs11Uri
from auditseal.sealer.signer import load_signer


def test_path_and_query_attributes_percent_decoded():
    uri = Pkcs11Uri.from_text(
        "pkcs11:token=my%20token;serial=0042;object=log%2Fkey;id=%01%a2;type=private"
        "?pin-source=file:/run/pin%20file&module-path=/opt/hsm/lib.so"
    )
    assert (uri.token, uri.serial, uri.object, uri.id) == (
        "my token",
        "0042",
        "log/key",
        b"\x01\xa2",
    )
    assert uri.pin_source == "file:/run/pin file"
    assert uri.module() == ("/opt/hsm/lib.so", "pkcs11 URI module-path=/opt/hsm/lib.so")
    assert uri.key_fields() == "object=log/key;id=01a2"


def test_module_from_the_environment_then_the_default(monkeypatch):
    uri = Pkcs11Uri.from_text("pkcs11:token=t;object=k")
    monkeypatch.delenv("AUDITSEAL_PKCS11_MODULE", raising=False)
    assert uri.module()[0] == DEFAULT_MODULE == "/usr/lib/softhsm/libsofthsm2.so"
    monkeypatch.setenv("AUDITSEAL_PKCS11_MODULE", "/x/y.so")
    assert uri.module() == ("/x/y.so", "AUDITSEAL_PKCS11_MODULE=/x/y.so")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("pkcs11:token=t;object=k?pin-value=1234", "pin-value: refused"),
        ("pkcs11:token=t;object=k;pin-value=1234", "pin-value: refused"),
        ("pkcs11:object=k", "token: required"),
        ("pkcs11:token=;object=k", "token: required"),
        ("pkcs11:token=t", "object: give object=LABEL or id=BYTES"),
        ("pkcs11:token=t;object=k;object=j", "object: given twice"),
        ("pkcs11:token=t;object=k;type=public", "type: must be 'private'"),
        ("pkcs11:token=t;object=k;slot-id=3", "slot-id: not a path attribute"),
        ("pkcs11:token=t;object=k;pin-source=file:/p", "pin-source: not a path attribute"),
        ("pkcs11:token=t;object=k?module-name=softhsm2", "module-name: not a query attribute"),
        ("pkcs11:token=t;object=k?pin-source=/p", "pin-source: want file:PATH"),
        ("pkcs11:token=t;object", "object: want object=VALUE"),
        ("pkcs11:token=%ff;object=k", "token: not UTF-8 text"),
    ],
)
def test_refused_uris_name_the_field(text, field):
    with pytest.raises(HsmError) as exc:
        Pkcs11Uri.from_text(text)
    assert str(exc.value).startswith(f"pkcs11 URI {field}")
    assert "1234" not in str(exc.value)


def test_the_pin_file_must_be_private_and_not_empty(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AUDITSEAL_PKCS11_PIN", raising=False)
    pin = tmp_path / "pin"
    pin.write_text("s3cret-pin\n")
    uri = Pkcs11Uri.from_text(f"pkcs11:token=t;object=k?pin-source=file:{pin}")
    pin.chmod(0o640)
    with pytest.raises(HsmError, match="accessible by group or others") as exc:
        uri.pin()
    assert "s3cret" not in str(exc.value)
    pin.chmod(0o600)
    assert uri.pin() == "s3cret-pin"
    pin.write_text("\n")
    with pytest.raises(HsmError, match="the PIN file is empty"):
        uri.pin()
    without = Pkcs11Uri.from_text("pkcs11:token=t;object=k")
    with pytest.raises(HsmError, match=r"pin-source: no PIN"):
        without.pin()
    monkeypatch.setenv("AUDITSEAL_PKCS11_PIN", "from-env")
    assert without.pin() == "from-env"


def test_load_signer_reads_a_key_file_unless_given_a_pkcs11_uri(tmp_path: Path):
    from auditseal.sealer.signer import Signer

    Signer.generate("file.key").write_private_file(tmp_path / "k")
    assert load_signer(tmp_path / "k").name == "file.key"
    assert load_signer(str(tmp_path / "k")).name == "file.key"
    with pytest.raises(HsmError, match="pkcs11 URI pin-value"):
        load_signer("pkcs11:token=t;object=k?pin-value=1")
