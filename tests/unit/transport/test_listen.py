"""Where servers may listen in plaintext, which Host names they answer, and what a client
certificate proves."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditseal.transport.hosts import allowed_hosts
from auditseal.transport.listen import PlaintextRefused, check_plaintext, is_loopback
from auditseal.transport.tls import ServerTLS, TLSConfigError, peer_names


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "::1", "localhost"])
def test_loopback_may_be_plaintext(host):
    assert is_loopback(host)
    check_plaintext((host, 80), None, False, "the read API")


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.0.0.5", "example.internal", "localhost.evil"]
)
def test_anything_else_needs_tls_or_an_explicit_flag(host, caplog):
    with pytest.raises(PlaintextRefused, match="--tls-cert"):
        check_plaintext((host, 80), None, False, "the read API")
    check_plaintext((host, 80), ServerTLS(Path("c"), Path("k")), False, "the read API")
    check_plaintext((host, 80), None, True, "the read API")
    assert "plaintext" in caplog.text


def test_the_host_allow_list():
    names = allowed_hosts(("127.0.0.1", 8090), ["audit.example.com", "lb.example:443", "::2"])
    for ok in [
        "127.0.0.1:8090",
        "localhost",
        "localhost:8090",
        "[::1]:8090",
        "audit.example.com",
        "audit.example.com:8090",
        "lb.example:443",
        "[::2]:8090",
    ]:
        assert ok in names, ok
    for bad in ["evil.example", "evil.example:8090", "lb.example", "127.0.0.1:8091", ""]:
        assert bad not in names, bad


def test_peer_names_of_a_verified_certificate():
    cert = {
        "subject": ((("organizationName", "Acme"),), (("commonName", "db-gw"),)),
        "subjectAltName": (
            ("DNS", "db-gw.acme"),
            ("URI", "spiffe://acme/db-gw"),
            ("IP Address", "10.0.0.1"),
        ),
    }
    assert peer_names(cert) == ["dns:db-gw.acme", "uri:spiffe://acme/db-gw", "cn:db-gw"]
    assert peer_names(None) == []
    assert peer_names({}) == []


def test_tls_files_at_fault_are_named(tmp_path):
    with pytest.raises(TLSConfigError, match=r"--tls-cert .*cert\.pem: no such file"):
        ServerTLS(tmp_path / "cert.pem", tmp_path / "key.pem").context()
    (tmp_path / "cert.pem").write_text("not pem")
    (tmp_path / "key.pem").write_text("not pem")
    with pytest.raises(TLSConfigError, match="not a certificate and its private key"):
        ServerTLS(tmp_path / "cert.pem", tmp_path / "key.pem").context()


def test_a_server_context_asks_for_client_certificates_of_its_ca(tmp_path):
    import asyncio
    import ssl

    from tests.tls_files import make_pki

    pki = make_pki(tmp_path)
    other = make_pki(tmp_path / "other", "another CA")
    ctx = ServerTLS(pki.server_cert, pki.server_key, pki.ca_cert).context()
    assert ctx.verify_mode == ssl.CERT_OPTIONAL

    async def handshake(client: ssl.SSLContext) -> list[str]:
        seen: list[list[str]] = []

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(peer_names(writer.get_extra_info("peercert")))
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
        finally:
            server.close()
        return seen[0] if seen else ["refused"]

    names = asyncio.run(handshake(pki.client_context(pki.client("db-gw", dns=("db-gw.acme",)))))
    assert names == ["dns:db-gw.acme", "cn:db-gw"]
    assert asyncio.run(handshake(pki.client_context())) == []  # no certificate: a token decides
    # A certificate of another CA: the server's handshake fails, no request is ever handled
    # (with TLS 1.3 the client learns it only at its first read).
    foreign = pki.client("mallory", signer=other)
    assert asyncio.run(handshake(pki.client_context(foreign))) == ["refused"]
