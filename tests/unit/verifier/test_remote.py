"""The read API client of ``verify --source``: it reaches a real ``auditseal serve`` over TLS with
a read token or a client certificate, and never lets the token go where it should not (another
host on a redirect, plaintext beyond loopback, the command line)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from auditseal.cli.verify import verify
from auditseal.transport.tokens import add_token
from auditseal.verifier.remote import Source, SourceError, fetch_logs
from tests.read_servers import Server, run_server
from tests.tls_files import PKI, make_pki
from tests.unit.readapi.test_app import ORIGIN, SIGNER, build_store


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("remote")
    build_store(path / "store.db")
    return path


@pytest.fixture(scope="module")
def pki(workdir: Path) -> PKI:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def api(workdir: Path, pki: PKI) -> Iterator[Server]:
    token = add_token(workdir / "tokens", "verifier")
    args = ["serve", "--store", "store.db", "--tokens", str(workdir / "tokens")]
    args += ["--tls-client-ca", str(pki.ca_cert)]
    with run_server(args, workdir, pki=pki, token=token) as server:
        yield server


def test_a_token_and_the_ca_reach_the_read_api(api, pki):
    source = Source(api.url, api.token, pki.ca_cert)
    assert [log for log, _, _ in fetch_logs(source)] == [ORIGIN, "auditseal.local/audit.events/1"]
    with pytest.raises(SourceError, match=r"HTTP 401: no read token.*--api-token-file"):
        fetch_logs(Source(api.url, None, pki.ca_cert))
    with pytest.raises(SourceError, match="HTTP 401: an unknown, expired or revoked read token"):
        fetch_logs(Source(api.url, "asr_wrong", pki.ca_cert))
    with pytest.raises(SourceError, match=r"certificate is not trusted.*give --api-ca"):
        fetch_logs(Source(api.url, api.token))  # the system's CAs did not sign it


def test_a_client_certificate_reads_without_a_token(api, pki):
    source = Source(api.url, None, pki.ca_cert, pki.client("verifier"))
    assert len(fetch_logs(source)) == 2


def test_bad_client_files_are_named(api, pki, tmp_path):
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(SourceError, match=r"--api-ca .*junk\.pem: not PEM"):
        fetch_logs(Source(api.url, api.token, tmp_path / "junk.pem"))
    with pytest.raises(SourceError, match=r"--api-client-cert .*junk\.pem"):
        fetch_logs(Source(api.url, None, pki.ca_cert, (tmp_path / "junk.pem",) * 2))


def test_a_token_never_goes_in_clear_beyond_loopback():
    # Refused before any connection: 192.0.2.1 (TEST-NET-1) is never dialled.
    with pytest.raises(SourceError, match="a read token goes over https:// only"):
        fetch_logs(Source("http://192.0.2.1:8090", "asr_token"))
    for bad in ("two words", "line\nbreak", "", "x" * 600, "tökén"):
        with pytest.raises(SourceError, match="read token: want one line"):
            Source("https://audit.example", bad)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []
    redirect_to: ClassVar[str] = ""

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_does_not_carry_the_token_to_another_server():
    elsewhere = type("Elsewhere", (_Recorder,), {"seen": [], "redirect_to": ""})
    target = _serve(elsewhere)
    first = type("First", (_Recorder,), {"seen": [], "redirect_to": ""})
    first.redirect_to = f"http://localhost:{target.server_address[1]}"
    origin = _serve(first)
    try:
        url = f"http://127.0.0.1:{origin.server_address[1]}"
        assert fetch_logs(Source(url, "asr_secret")) == []
    finally:
        origin.shutdown()
        target.shutdown()
    assert first.seen == ["Bearer asr_secret"]
    assert elsewhere.seen == [None]


def test_verify_reads_the_token_from_a_file_or_the_environment_only(tmp_path, api, pki):
    log_key = SIGNER.verifier.to_string()
    common = ["--block", "0", "--log", ORIGIN, "--log-key", log_key, "--json"]
    common += ["--deployment", str(tmp_path / "none.json"), "--source", api.url]
    env = {"AUDITSEAL_API_CA": str(pki.ca_cert), "AUDITSEAL_RPC": ""}
    token_file = tmp_path / "token"
    token_file.write_text(api.token + "\n")
    result = CliRunner().invoke(verify, [*common, "--api-token-file", str(token_file)], env=env)
    assert result.exit_code == 3, result.output  # NOT PROVEN (no chain): read and checked
    assert '"verdict": "NOT PROVEN' in result.output
    result = CliRunner().invoke(verify, common, env={**env, "AUDITSEAL_API_TOKEN": api.token})
    assert result.exit_code == 3, result.output
    result = CliRunner().invoke(verify, common, env=env)
    assert result.exit_code == 2 and "HTTP 401" in result.output
    token_file.write_text(f"{api.token}\nsecond line\n")
    result = CliRunner().invoke(verify, [*common, "--api-token-file", str(token_file)], env=env)
    assert result.exit_code == 2 and "want the token alone on one line" in result.output
    assert api.token not in result.output
