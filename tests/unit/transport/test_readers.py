"""Read access as the servers' options set it up: every way it could end up open by mistake is
refused before the server listens."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditseal.transport.readers import ReadAccess, ReadAccessError, read_access
from auditseal.transport.tls import ServerTLS
from auditseal.transport.tokens import add_token

LOOPBACK = ("127.0.0.1", 8090)
WIDE = ("0.0.0.0", 8090)
MTLS = ServerTLS(Path("cert.pem"), Path("key.pem"), Path("ca.pem"))


def access(tmp_path: Path, address=LOOPBACK, tls=None, **kwargs) -> ReadAccess:
    kwargs.setdefault("tokens_path", tmp_path / "tokens")
    kwargs.setdefault("tokens_given", False)
    return read_access(address, tls, token_command="serve", **kwargs)


def test_nothing_configured_is_no_open_door(tmp_path):
    with pytest.raises(ReadAccessError, match="`auditseal serve token --name NAME`"):
        access(tmp_path)


def test_no_auth_only_on_loopback_and_alone(tmp_path):
    assert access(tmp_path, no_auth=True).reader(None, None) == "anyone"
    for address in (WIDE, ("::", 1), ("10.0.0.1", 1), ("localhost.evil", 1)):
        with pytest.raises(ReadAccessError, match="only on a loopback address"):
            access(tmp_path, address, no_auth=True)
    with pytest.raises(ReadAccessError, match="lets everybody read"):
        access(tmp_path, no_auth=True, reader_certs=["cn:a"])


def test_reader_names_need_a_client_ca_and_a_kind(tmp_path):
    with pytest.raises(ReadAccessError, match="give --tls-client-ca"):
        access(tmp_path, reader_certs=["cn:alice"])
    with pytest.raises(ReadAccessError, match="want cn:NAME"):
        access(tmp_path, tls=MTLS, reader_certs=["alice"])


def test_tokens_and_certificates(tmp_path):
    token = add_token(tmp_path / "tokens", "auditor")
    tokens_only = access(tmp_path)
    assert tokens_only.reader(None, token) == "token:auditor"
    assert tokens_only.reader(None, token + "x") is None
    assert tokens_only.reader({"subject": ((("commonName", "alice"),),)}, None) is None
    named = access(tmp_path, tls=MTLS, reader_certs=["cn:alice"])
    alice = {"subject": ((("commonName", "alice"),),)}
    bob = {"subject": ((("commonName", "bob"),),)}
    assert named.reader(alice, None) == "cert:cn:alice"
    assert named.reader(bob, None) is None and named.reader(bob, token) == "token:auditor"
    assert named.refusal(bob, None).status == 403 and named.refusal(None, None).status == 401
    assert access(tmp_path, tls=MTLS).reader(bob, None) == "cert:cn:bob"


def test_a_named_tokens_file_must_load(tmp_path):
    with pytest.raises(ReadAccessError, match=r"--tokens: .*cannot read tokens file"):
        access(tmp_path, tokens_path=tmp_path / "missing", tokens_given=True)
    (tmp_path / "tokens").write_text("half a line\n")
    with pytest.raises(ReadAccessError, match=r"--tokens: .*tokens:1: want"):
        access(tmp_path)  # found at the default path: malformed is an error too
