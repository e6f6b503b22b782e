"""Who may read from ``auditseal dashboard``, over real TLS sockets: the page's files are open
(they hold no data), everything under /api/ needs a read token (bearer, or the HttpOnly cookie
the page gets from /api/login) or a client certificate, a foreign Host gets 421. The broker is
absent on purpose: none of this needs it (the page says "connecting to Kafka")."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditseal.infra.processes import free_port
from auditseal.sealer.signer import Signer
from auditseal.transport.tokens import add_token
from tests.read_servers import AUDITSEAL, Answer, Server, run_server
from tests.tls_files import PKI, make_pki
from tests.unit.readapi.test_app import ORIGIN, build_store

LOG_KEY = Signer("sealer", Ed25519PrivateKey.from_private_bytes(bytes(32))).verifier.to_string()
BLOCK = "/api/block?log=auditseal.local%2Faudit.events%2F0&number=1"


def dashboard_args(*extra: str) -> list[str]:
    return [
        *("dashboard", "--store", "store.db", "--log-key", LOG_KEY),
        *("--bootstrap", f"127.0.0.1:{free_port()}", "--deployment", "no-deployment.json"),
        *extra,
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard-access")
    build_store(path / "store.db")
    return path


@pytest.fixture(scope="module")
def pki(workdir: Path) -> PKI:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def tokens(workdir: Path) -> Path:
    return workdir / "tokens"


@pytest.fixture(scope="module")
def page(workdir: Path, pki: PKI, tokens: Path) -> Iterator[Server]:
    token = add_token(tokens, "operator", prefix="asd_")
    args = dashboard_args("--tokens", str(tokens), "--tls-client-ca", str(pki.ca_cert))
    with run_server(args, workdir, pki=pki, token=token) as server:
        yield server


def login(
    page: Server, token: str, *, cert: tuple[Path, Path] | None = None, **headers: str
) -> Answer:
    body = json.dumps({"token": token}).encode()
    return page.request(
        "POST",
        "/api/login",
        headers={"Content-Type": "application/json", **headers},
        body=body,
        cert=cert,
    )


def cookie_of(answer: Answer) -> tuple[str, str]:
    """(the cookie's value, its attributes) from Set-Cookie."""
    header = answer.headers["Set-Cookie"]
    pair, _, attributes = header.partition(";")
    name, _, value = pair.partition("=")
    assert name == "auditseal_dashboard"
    return value, attributes


def test_the_page_is_open_and_the_data_is_not(page):
    for route in ("/", "/static/app.js", "/static/style.css", "/healthz"):
        assert page.get(route, token=None).status == 200, route
    for route in ("/api/state", "/api/events", BLOCK, "/api/event?id=ev-1", "/api/session"):
        answer = page.get(route, token=None)
        assert answer.status == 401, route
        assert ORIGIN.encode() not in answer.body
    assert page.get("/api/state").json()["status"]["broker"]
    assert page.get("/api/session").json() == {"reader": "token:operator"}
    assert page.get(BLOCK).json()["block"]["number"] == 1


def test_login_trades_a_token_for_an_httponly_strict_secure_cookie(page, tokens):
    assert login(page, "asd_wrong").status == 401
    answer = login(page, page.token)
    assert answer.status == 200 and answer.json() == {"reader": "token:operator"}
    value, attributes = cookie_of(answer)
    assert value == page.token
    flags = {a.strip().split("=")[0].lower(): a.strip() for a in attributes.split(";")}
    assert "httponly" in flags and flags["samesite"] == "SameSite=Strict"
    assert "secure" in flags and flags["path"] == "Path=/"
    cookie = {"Cookie": f"auditseal_dashboard={value}"}
    assert page.get("/api/session", token=None, headers=cookie).status == 200
    assert page.get(BLOCK, token=None, headers=cookie).status == 200
    # The cookie is the token, checked on every request: revoking it ends the session.
    second = add_token(tokens, "temp", prefix="asd_")
    time.sleep(1.1)
    cookie = {"Cookie": f"auditseal_dashboard={cookie_of(login(page, second))[0]}"}
    assert page.get("/api/state", token=None, headers=cookie).status == 200
    tokens.write_text(
        "".join(line for line in tokens.read_text().splitlines(True) if line.startswith("operator"))
    )
    time.sleep(1.2)
    assert page.get("/api/state", token=None, headers=cookie).status == 401
    answer = page.request("POST", "/api/logout", headers={"Origin": page.url})
    assert answer.status == 200 and "Max-Age=0" in answer.headers["Set-Cookie"]


def test_a_live_stream_ends_when_its_token_is_revoked(page, tokens):
    token = add_token(tokens, "streamer", prefix="asd_")
    time.sleep(1.1)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", page.port, timeout=30, context=page.context()
    )
    try:
        connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.readline() == b"event: snapshot\n"
        tokens.write_text(
            "".join(line for line in tokens.read_text().splitlines(True) if "streamer" not in line)
        )
        revoked = time.monotonic()
        while response.readline():  # until the server ends the stream
            assert time.monotonic() - revoked < 5, "the stream outlived its token"
        assert time.monotonic() - revoked < 3.5
    finally:
        connection.close()


def test_login_from_another_site_or_with_a_bad_body_is_refused(page):
    answer = login(page, page.token, Origin="https://evil.example")
    assert answer.status == 403 and "Set-Cookie" not in answer.headers
    answer = login(page, page.token, **{"Sec-Fetch-Site": "cross-site"})
    assert answer.status == 403
    assert login(page, page.token, Origin=page.url).status == 200
    for body in (b"", b"not json", b"[]", b'{"token": 5}', b"{}", b'{"token": "' + b"x" * 5000):
        answer = page.request("POST", "/api/login", body=body)
        assert answer.status == 400, body[:20]
        assert "Set-Cookie" not in answer.headers


def test_a_client_certificate_of_the_ca_reads_without_a_token(page, pki):
    assert page.get("/api/session", token=None, cert=pki.client("ops")).json() == {
        "reader": "cert:cn:ops"
    }
    # ... but cannot log in with it: the cookie holds a token only.
    assert login(page, "", cert=pki.client("ops")).status == 400


def test_a_dns_rebinding_page_gets_421_and_no_data(page):
    for route in ("/", "/static/app.js", "/api/state", BLOCK, "/healthz", "/api/session"):
        for host in ("evil.example", f"evil.example:{page.port}", ""):
            answer = page.get(route, host=host)
            assert answer.status == 421, (route, host)
            assert ORIGIN.encode() not in answer.body and b"<html" not in answer.body
    answer = login(page, page.token, Host="evil.example")
    assert answer.status == 421 and "Set-Cookie" not in answer.headers


def test_errors_are_400_or_404_never_500_and_never_name_the_store(page, workdir):
    cases = [
        ("/api/block?log=x&number=" + "9" * 25, 400),
        ("/api/block?log=x&number=" + str(2**63), 400),
        ("/api/block?log=x&number=-1", 400),
        ("/api/block?log=x&number=%EF%BC%91", 400),  # a fullwidth digit one
        ("/api/block?log=x&number=1", 404),
        ("/api/block?log=auditseal.local%2Faudit.events%2F0&number=" + str(2**63 - 1), 404),
        ("/api/event?id=nope", 404),
        ("/api/nothing", 404),
    ]
    for target, status in cases:
        answer = page.get(target)
        assert answer.status == status, (target, answer.body)
        assert answer.headers["Content-Type"].startswith("application/json")
        assert str(workdir).encode() not in answer.body and b"store.db" not in answer.body
    assert "Traceback" not in page.log_text()


# --- start-up --------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    env["AUDITSEAL_DEV_STATE"] = str(cwd / "no-dev-state.json")
    return subprocess.run(
        [*AUDITSEAL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_zero_configuration_refuses_to_start_and_says_how_to_make_a_token(workdir):
    out = cli(*dashboard_args("--listen", f"127.0.0.1:{free_port()}"), cwd=workdir)
    assert out.returncode == 2 and "`auditseal dashboard token --name NAME`" in out.stderr
    out = cli(*dashboard_args("--listen", f"0.0.0.0:{free_port()}", "--no-auth"), cwd=workdir)
    assert out.returncode == 2 and "is not loopback" in out.stderr


def test_no_auth_on_loopback_is_said_loudly(workdir):
    with run_server(dashboard_args("--no-auth"), workdir, pki=None) as page:
        assert page.get("/api/session").json() == {"reader": "anyone"}
        assert "NO AUTHENTICATION (--no-auth)" in page.log_text()


def test_dashboard_token_prints_the_token_once(tmp_path):
    out = cli("dashboard", "token", "--name", "ops", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    path = tmp_path / ".auditseal" / "dashboard" / "tokens"
    assert token.startswith("asd_") and token not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    out = cli("dashboard", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "token  Create a read token" in out.stdout
    assert "#token=TOKEN" in out.stdout
