"""Who may read from ``auditseal serve``, tried as an attacker would: over real TLS sockets, with
no token, a wrong, revoked or expired one, a client certificate of the CA, of another CA, or of
a name that is not a reader, a foreign Host (DNS rebinding), and start-up options that would
leave it open beyond loopback."""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditseal.infra.processes import free_port
from auditseal.transport.tokens import add_token
from tests.read_servers import AUDITSEAL, Server, run_server
from tests.tls_files import PKI, make_pki
from tests.unit.readapi.test_app import ORIGIN, build_store

LOGS = "/v1/logs"
BLOCK = "/v1/block?log=auditseal.local%2Faudit.events%2F0&number=0&entries=true"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("access")
    build_store(path / "store.db")
    return path


@pytest.fixture(scope="module")
def pki(workdir: Path) -> PKI:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def tokens(workdir: Path) -> Path:
    return workdir / "tokens"


@pytest.fixture(scope="module")
def api(workdir: Path, pki: PKI, tokens: Path) -> Iterator[Server]:
    """The read API over TLS, readers by token or by a certificate of the CA named cn:alice."""
    token = add_token(tokens, "auditor")
    args = ["serve", "--store", "store.db", "--tokens", str(tokens)]
    args += ["--tls-client-ca", str(pki.ca_cert), "--reader-cert", "cn:alice"]
    args += ["--allowed-host", "audit.example.com"]
    with run_server(args, workdir, pki=pki, token=token) as server:
        yield server


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    return subprocess.run(
        [*AUDITSEAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


# --- tokens ------------------------------------------------------------------------------------


def test_a_read_token_is_needed_for_every_route_but_healthz(api):
    assert api.get(LOGS).status == 200
    assert api.get(BLOCK).json()["entries"][0]["log"] == ORIGIN
    for route in (LOGS, BLOCK, "/metrics", "/v1/nothing"):
        for token in (None, "", "asr_not-a-token", api.token + "x"):
            answer = api.get(route, token=token)
            assert answer.status == 401, (route, token, answer.body)
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="auditseal"'
            assert ORIGIN.encode() not in answer.body
    assert api.get("/healthz", token=None).json() == {"status": "ok", "logs": 2}
    # Another scheme, or the token where a bearer token is not looked for, is no token.
    assert api.get(LOGS, token=None, headers={"Authorization": f"Basic {api.token}"}).status == 401
    assert api.get(f"{LOGS}?token={api.token}", token=None).status == 401


def test_metrics_are_for_readers(api):
    answer = api.get("/metrics")
    assert answer.status == 200 and b"auditseal_api_requests_total" in answer.body


def test_a_revoked_token_is_refused_within_the_reload_interval(api, tokens):
    second = add_token(tokens, "temp")
    time.sleep(1.1)  # the file is looked at once a second
    assert api.get(LOGS, token=second).status == 200
    kept = [line for line in tokens.read_text().splitlines() if not line.startswith("temp ")]
    tokens.write_text("\n".join(kept) + "\n")
    deadline = time.monotonic() + 1.5
    while api.get(LOGS, token=second).status != 401:
        assert time.monotonic() < deadline, "a revoked token still reads after 1.5 s"
        time.sleep(0.1)
    assert api.get(LOGS).status == 200  # the others stay valid


def test_an_expired_token_is_refused(api, tokens):
    soon = add_token(tokens, "short", expires=datetime.now(UTC) + timedelta(seconds=3))
    time.sleep(1.1)
    assert api.get(LOGS, token=soon).status == 200
    time.sleep(2.5)
    assert api.get(LOGS, token=soon).status == 401


def test_a_broken_tokens_file_lets_no_token_in(workdir, pki):
    tokens = workdir / "broken-tokens"
    token = add_token(tokens, "auditor")
    with run_server(
        ["serve", "--store", "store.db", "--tokens", str(tokens)], workdir, pki=pki, token=token
    ) as api:
        assert api.get(LOGS).status == 200
        tokens.write_text(tokens.read_text() + "half a line\n")
        time.sleep(1.2)
        assert api.get(LOGS).status == 401
        tokens.unlink()
        time.sleep(1.2)
        assert api.get(LOGS).status == 401
        assert "nothing in the tokens file is granted until it is fixed" in api.log_text()


# --- client certificates -------------------------------------------------------------------------


def test_a_named_client_certificate_reads_without_a_token(api, pki):
    alice = pki.client("alice")
    assert api.get(LOGS, token=None, cert=alice).status == 200
    # The CA signed bob too, but only cn:alice is a reader; a token still lets him in.
    bob = pki.client("bob", dns=("bob.example",))
    answer = api.get(LOGS, token=None, cert=bob)
    assert answer.status == 403 and b"'dns:bob.example' is not a reader" in answer.body
    assert api.get(LOGS, cert=bob).status == 200


def test_a_certificate_of_another_ca_never_gets_a_request_through(api, pki, workdir):
    other = make_pki(workdir / "other-pki", "another CA")
    mallory = pki.client("alice", signer=other)  # the right name, the wrong issuer
    with pytest.raises(OSError):  # ssl.SSLError, or the connection closed at the first read
        api.get(LOGS, token=None, cert=mallory)


def test_any_certificate_of_the_ca_reads_without_reader_names(workdir, pki):
    args = ["serve", "--store", "store.db", "--tls-client-ca", str(pki.ca_cert)]
    with run_server(args, workdir, pki=pki) as api:
        assert api.get(LOGS, cert=pki.client("whoever")).status == 200
        assert api.get(LOGS).status == 401  # no tokens file: certificates only
        assert "any client certificate the client CA signed" in api.log_text()


def test_plaintext_to_the_tls_port_gets_no_data(api):
    plain = Server(api.port, api.log, None, api.token, tls=False)
    try:
        answer = plain.get(LOGS)
    except (OSError, http.client.HTTPException):
        return  # the TLS handshake fails: the connection is closed
    assert answer.status != 200 and ORIGIN.encode() not in answer.body


# --- the Host allow-list -----------------------------------------------------------------------


def test_a_dns_rebinding_page_gets_421_and_no_data(api):
    for route in (LOGS, BLOCK, "/healthz", "/metrics", "/v1/nothing"):
        for host in ("evil.example", f"evil.example:{api.port}", "127.0.0.1.evil.example", ""):
            answer = api.get(route, host=host)  # even with a valid token
            assert answer.status == 421, (route, host)
            assert ORIGIN.encode() not in answer.body and b"logs" not in answer.body
    for host in ("localhost", f"localhost:{api.port}", "audit.example.com", f"[::1]:{api.port}"):
        assert api.get(LOGS, host=host).status == 200, host


# --- start-up --------------------------------------------------------------------------------


def test_zero_configuration_refuses_to_start_and_says_how_to_make_a_token(workdir):
    out = cli("serve", "--store", "store.db", "--listen", f"127.0.0.1:{free_port()}", cwd=workdir)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "`auditseal serve token --name NAME`" in out.stderr and "--no-auth" in out.stderr


def test_no_auth_only_on_loopback_and_said_loudly(workdir):
    out = cli(
        *("serve", "--store", "store.db", "--listen", f"0.0.0.0:{free_port()}"),
        *("--no-auth", "--insecure-plaintext"),
        cwd=workdir,
    )
    assert out.returncode == 2 and "--no-auth: only on a loopback address" in out.stderr
    with run_server(["serve", "--store", "store.db", "--no-auth"], workdir, pki=None) as api:
        assert api.get(LOGS).status == 200
        assert api.get(LOGS, host="evil.example").status == 421  # Host is still checked
        assert "NO AUTHENTICATION (--no-auth)" in api.log_text()


def test_plaintext_beyond_loopback_is_refused(workdir, tokens):
    out = cli(
        *("serve", "--store", "store.db", "--tokens", str(tokens)),
        *("--listen", f"0.0.0.0:{free_port()}"),
        cwd=workdir,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "is not loopback: give --tls-cert and --tls-key" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reader-cert", "cn:alice"], "--reader-cert names client certificates"),
        (["--tokens", "missing-tokens"], "--tokens: missing-tokens: cannot read tokens file"),
        (["--tls-cert", "nope.pem", "--tls-key", "nope.key"], "--tls-cert nope.pem: no such"),
        (["--tls-cert", "nope.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_bad_access_options_are_one_line_errors(workdir, args, message):
    out = cli("serve", "--store", "store.db", *args, cwd=workdir)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_serve_token_prints_the_token_once_and_stores_its_hash(tmp_path):
    out = cli("serve", "token", "--name", "auditor", "--expires", "30d", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    path = tmp_path / ".auditseal" / "read-api" / "tokens"
    assert token.startswith("asr_") and token not in path.read_text()
    assert path.read_text().startswith("auditor sha256:") and " expires=" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert "auditor" in out.stderr and token not in out.stderr
    for bad in ("yesterday", "2020-01-01T00:00:00Z", "2030-01-01T00:00:00", "0d", "-1d"):
        out = cli("serve", "token", "--name", "x", "--expires", bad, cwd=tmp_path)
        assert out.returncode == 2 and "--expires" in out.stderr, bad
    out = cli("serve", "token", "--name", "two words", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_help_shows_the_server_and_its_token_command(tmp_path):
    out = cli("serve", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for text in ("--tls-cert", "--tokens", "--reader-cert", "--no-auth", "--allowed-host"):
        assert text in out.stdout, text
    assert "token  Create a read token" in out.stdout
    out = cli("serve", "token", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "--expires" in out.stdout and "--store" not in out.stdout
