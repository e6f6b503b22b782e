"""The gateway against an attacker, one case at a time, on real gateway processes (`auditseal
ingest serve`), over real TLS sockets where the case is about TLS: refusing plaintext beyond
loopback, client certificates standing for sources, tokens that expire and are revoked, bodies
and batches that cost no more than the limits allow, slow clients, the rate limit, and
malformed requests that leave no traceback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from auditseal.infra.processes import free_port
from auditseal.ingest.client import GatewayClient
from auditseal.transport.tokens import add_token
from tests.integration.test_gateway import SOURCE, Gateway, auditseal, event, start_gateway
from tests.tls_files import PKI, make_pki

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def topic(kafka_bootstrap) -> str:
    from auditseal.infra import broker

    name = f"gateway-security-{os.getpid()}"
    broker.create_topic(kafka_bootstrap, name, 1)
    return name


@pytest.fixture
def running() -> Iterator[list[Gateway]]:
    """Gateways a test started, stopped after it."""
    gateways: list[Gateway] = []
    yield gateways
    for gw in gateways:
        gw.stop()


def _start(
    running: list[Gateway], bootstrap: str, topic: str, workdir: Path, *extra: str, **kwargs
) -> Gateway:
    gw = start_gateway(bootstrap, topic, workdir, *extra, **kwargs)
    running.append(gw)
    return gw


def _post(gw: Gateway, events: list[dict], token: str | None = None, **kwargs) -> tuple[int, dict]:
    status, payload, _ = gw.request("POST", "/v1/events", orjson.dumps(events), token, **kwargs)
    return status, payload


def _until(check, timeout: float, step: float = 0.1) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "did not happen in time"
        time.sleep(step)
    return time.monotonic() - started


def _rewrite(path: Path, text: str) -> None:
    """Replace a file as an editor does: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o600)
    os.replace(tmp, path)


# --- plaintext beyond loopback, and start-up errors ---------------------------------------


def _serve_args(bootstrap: str, *extra: str) -> list[str]:
    return ["ingest", "serve", "--bootstrap", bootstrap, "--tokens", "tokens", *extra]


def test_plaintext_beyond_loopback_is_refused_unless_asked_for(kafka_bootstrap, tmp_path):
    assert auditseal("ingest", "token", "--source", SOURCE, "--tokens", "tokens", cwd=tmp_path)
    port = free_port()
    out = auditseal(*_serve_args(kafka_bootstrap, "--listen", f"0.0.0.0:{port}"), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == (
        f"auditseal: error: the gateway on 0.0.0.0:{port} is not loopback: give --tls-cert and "
        "--tls-key, or --insecure-plaintext if a proxy in front of it terminates TLS\n"
    )
    argv = _serve_args(kafka_bootstrap, "--listen", f"0.0.0.0:{port}", "--insecure-plaintext")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        gw = Gateway(port, "", kafka_bootstrap, {}, proc, tmp_path)
        _until(lambda: _answers(gw), 30)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"speaks plaintext HTTP (--insecure-plaintext)" in err


def _answers(gw: Gateway) -> bool:
    try:
        return gw.request("GET", "/healthz")[0] in (200, 503)
    except OSError:
        return False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tls-cert", "nope.pem", "--tls-key", "nope.key"], "--tls-cert nope.pem: no such file"),
        (["--tls-cert", "nope.pem"], "--tls-cert and --tls-key go together"),
        (["--client-certs", "certs"], "--client-certs needs --tls-client-ca"),
        (["--tokens", "missing"], "missing: cannot read tokens file"),
        (["--max-body-bytes", "2000", "--max-event-bytes", "4096"], "--max-body-bytes must be"),
    ],
)
def test_unusable_settings_are_one_line_errors(kafka_bootstrap, tmp_path, extra, message):
    assert auditseal("ingest", "token", "--source", SOURCE, "--tokens", "tokens", cwd=tmp_path)
    out = auditseal(*_serve_args(kafka_bootstrap, "--listen", "127.0.0.1:1", *extra), cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


# --- mTLS: client certificates standing for sources ---------------------------------------

MAPPING = """\
# certificate name         sources it may publish
uri:spiffe://acme/db-gw    proxy://db-gw
cn:bastion                 ssh://bastion ssh://bastion-2
"""


@pytest.fixture
def mtls(running, kafka_bootstrap, topic, tmp_path) -> tuple[Gateway, PKI]:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "certs").write_text(MAPPING)
    gw = _start(
        running,
        kafka_bootstrap,
        topic,
        tmp_path,
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-client-ca",
        str(pki.ca_cert),
        "--client-certs",
        "certs",
        "--header-timeout",
        "3",
        tls=pki.client_context(),
    )
    return gw, pki


def test_a_mapped_client_certificate_stands_for_its_sources(mtls):
    gw, pki = mtls
    db = pki.client_context(pki.client("db-gw", uris=("spiffe://acme/db-gw",)))
    bastion = pki.client_context(pki.client("bastion"))
    stranger = pki.client_context(pki.client("stranger", dns=("db-gw.acme",)))

    assert _post(gw, [event(1, "proxy://db-gw")], tls=db)[0] == 202
    assert (
        _post(gw, [event(1, "ssh://bastion"), event(1, "ssh://bastion-2")], tls=bastion)[0] == 202
    )
    status, payload = _post(gw, [event(2, "proxy://db-gw"), event(1, SOURCE)], tls=db)
    assert status == 403
    assert payload["errors"] == [
        f"[1].source: '{SOURCE}' is not a source of certificate 'uri:spiffe://acme/db-gw' "
        "('proxy://db-gw')"
    ]
    status, payload = _post(gw, [event(1, "proxy://db-gw")], tls=stranger)
    assert status == 401 and "not mapped to any source" in payload["error"]
    status, payload = _post(gw, [event(1, SOURCE)])  # no certificate, no token
    assert status == 401 and payload["error"] == "missing bearer token or client certificate"
    # Bearer tokens keep working, with or without a certificate; a token decides when given.
    assert _post(gw, [event(1, SOURCE)], gw.tokens[SOURCE])[0] == 202
    assert _post(gw, [event(3, "proxy://db-gw")], gw.tokens[SOURCE], tls=db)[0] == 403


def test_a_certificate_of_another_ca_does_not_get_through_the_handshake(mtls, tmp_path):
    gw, pki = mtls
    other = make_pki(tmp_path / "other", "another CA")
    forged = pki.client_context(pki.client("db-gw", uris=("spiffe://acme/db-gw",), signer=other))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _post(gw, [event(1, "proxy://db-gw")], tls=forged)


def test_the_mapping_is_reloaded_and_fails_closed(mtls):
    gw, pki = mtls
    db = pki.client_context(pki.client("db-gw", uris=("spiffe://acme/db-gw",)))
    bastion = pki.client_context(pki.client("bastion"))
    path = gw.workdir / "certs"

    def status(tls) -> int:
        return _post(
            gw,
            [event(1, "ssh://bastion") if tls is bastion else event(1, "proxy://db-gw")],
            tls=tls,
        )[0]

    assert status(db) == 202
    _rewrite(path, MAPPING.replace("uri:spiffe://acme/db-gw    proxy://db-gw\n", ""))
    assert _until(lambda: status(db) == 401, 3) < 2.5  # revoked within a reload interval
    assert status(bastion) == 202
    _rewrite(path, MAPPING + "cn:oops\n")  # a malformed line: nothing is mapped
    _until(lambda: status(bastion) == 401, 3)
    path.unlink()
    time.sleep(1.2)
    assert status(bastion) == 401
    _rewrite(path, MAPPING)
    _until(lambda: status(db) == 202 and status(bastion) == 202, 3)


def test_a_tls_handshake_that_never_starts_is_cut(mtls):
    gw, _ = mtls
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the gateway, not by this 10 s timeout
        assert time.monotonic() - started < 3 + 1.5


# --- tokens: expiry, revocation, a broken tokens file -------------------------------------


def test_tokens_expire_and_are_revoked_within_a_reload_interval(
    running, kafka_bootstrap, topic, tmp_path
):
    gw = _start(running, kafka_bootstrap, topic, tmp_path)
    tokens = tmp_path / "tokens"

    def token(*args: str) -> str:
        out = auditseal(
            "ingest", "token", "--source", SOURCE, "--tokens", "tokens", *args, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def status(t: str) -> int:
        return _post(gw, [event(1)], t)[0]

    # (the command refuses a time in the past: write such a line as an old token would be)
    expired = add_token(tokens, SOURCE, expires=datetime(2020, 1, 31, tzinfo=UTC))
    later = token("--expires", "2099-01-31T00:00:00+01:00")
    assert "expires=2099-01-30T23:00:00Z" in tokens.read_text()
    out = auditseal("ingest", "token", "--source", SOURCE, "--expires", "2027-01-31", cwd=tmp_path)
    assert out.returncode == 2 and "with its zone" in out.stderr
    out = auditseal("ingest", "token", "--source", SOURCE, "--expires", "soon", cwd=tmp_path)
    assert out.returncode == 2 and "or a duration" in out.stderr
    out = auditseal(
        "ingest", "token", "--source", SOURCE, "--expires", "2020-01-31T00:00:00Z", cwd=tmp_path
    )
    assert out.returncode == 2 and "in the past" in out.stderr
    soon = token("--expires", "4s")
    made = time.monotonic()
    _until(lambda: status(soon) == 202, 3)  # the new lines are read within a reload interval
    assert status(expired) == 401 and status(later) == 202
    _until(lambda: status(soon) == 401, 6)
    assert time.monotonic() - made > 2.5

    # Revoked: its line removed.
    kept = gw.tokens[SOURCE]
    lines = tokens.read_text().splitlines()
    revoked_line = next(line for line in lines if "2099" in line)
    _rewrite(tokens, "\n".join(line for line in lines if line != revoked_line) + "\n")
    assert _until(lambda: status(later) == 401, 3) < 2.5
    assert status(kept) == 202

    # A deleted or malformed tokens file: every token refused until it is fixed.
    good = tokens.read_text()
    tokens.unlink()
    assert _until(lambda: status(kept) == 401, 3) < 2.5
    _rewrite(tokens, good + "proxy://x sha256:not-hex\n")
    time.sleep(1.2)
    assert status(kept) == 401
    _rewrite(tokens, good)
    assert _until(lambda: status(kept) == 202, 3) < 2.5


# --- bounded requests ---------------------------------------------------------------------


def _memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class HealthPoller(threading.Thread):
    """Polls /healthz back to back on one keep-alive connection, keeping the longest wait."""

    def __init__(self, gw: Gateway) -> None:
        super().__init__(daemon=True)
        self.gw = gw
        self.worst = 0.0
        self.polls = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = self.gw.connection(timeout=30)
        while not self.stop.is_set():
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            self.worst = max(self.worst, time.perf_counter() - started)
            self.polls += 1
            time.sleep(0.005)
        conn.close()


@pytest.mark.parametrize("shape", ["array", "ndjson"])
def test_a_million_tiny_items_are_refused_at_once_and_cost_nothing(
    running, kafka_bootstrap, topic, tmp_path, shape
):
    """The issue's case: a 2 MB body of a million tiny items made the gateway answer a 34 MB
    error body in 6.6 s, stall /healthz for 5.3 s and grow from 150 MB to 950 MB."""
    gw = _start(running, kafka_bootstrap, topic, tmp_path)
    if shape == "array":
        body, content_type = b"[" + b",".join([b"1"] * 1_000_000) + b"]", "application/json"
    else:
        body, content_type = b"1\n" * 1_000_000, "application/x-ndjson"
    assert len(body) >= 2_000_000
    before = _memory_mb(gw.proc.pid)
    poller = HealthPoller(gw)
    poller.start()
    time.sleep(0.3)
    conn = gw.connection()
    started = time.perf_counter()
    conn.request(
        "POST",
        "/v1/events",
        body,
        {"Authorization": f"Bearer {gw.tokens[SOURCE]}", "Content-Type": content_type},
    )
    resp = conn.getresponse()
    answer = resp.read()
    elapsed = time.perf_counter() - started
    time.sleep(0.3)
    poller.stop.set()
    poller.join()
    assert resp.status == 413
    assert orjson.loads(answer) == {
        "errors": ["$: more than 1000 events in one batch"],
        "error_count": 1,
    }
    assert elapsed < 1.0
    assert _memory_mb(gw.proc.pid) - before < 30
    assert poller.polls > 10 and poller.worst < 0.1


def test_bodies_batches_and_error_lists_are_bounded(running, kafka_bootstrap, topic, tmp_path):
    gw = _start(
        running,
        kafka_bootstrap,
        topic,
        tmp_path,
        "--max-body-bytes",
        "100000",
        "--max-event-bytes",
        "4096",
        "--max-batch-events",
        "3000",
        "--rate-limit",
        "0",
    )
    token = gw.tokens[SOURCE]
    # The body limit, whether the client declares the length or not.
    status, payload, _ = gw.request("POST", "/v1/events", b"[" + b" " * 100_000 + b"]", token)
    assert status == 413 and payload == {"error": "body of 100002 bytes exceeds 100000"}
    conn = gw.connection()
    conn.request(
        "POST",
        "/v1/events",
        (b" " * 10_000 for _ in range(20)),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413 and orjson.loads(resp.read()) == {
        "error": "body exceeds 100000 bytes"
    }
    # Error detail: the first 20 errors and their count, never larger than the request.
    body = orjson.dumps([{"id": i} for i in range(2500)])
    status, payload, _ = gw.request("POST", "/v1/events", body, token)
    assert status == 400
    assert len(payload["errors"]) == 20 and payload["error_count"] > 2500
    assert payload["errors"][0].startswith("[0].")
    assert len(orjson.dumps(payload)) < min(len(body), 5000)
    # A batch at the limit is parsed; one more item is refused before parsing.
    ndjson = "application/x-ndjson"
    status, payload, _ = gw.request("POST", "/v1/events", b"{}\n" * 3000, token, ndjson)
    assert status == 400 and payload["error_count"] > 3000
    status, payload, _ = gw.request("POST", "/v1/events", b"{}\n" * 3001, token, ndjson)
    assert status == 413 and payload["errors"] == ["$: more than 3000 events in one batch"]


def test_slow_clients_are_cut(running, kafka_bootstrap, topic, tmp_path):
    gw = _start(
        running,
        kafka_bootstrap,
        topic,
        tmp_path,
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
    )

    def dribble(sock: socket.socket, data: bytes) -> tuple[float, bytes]:
        """One byte every 0.25 s until the gateway answers or closes: seconds, answer."""
        started = time.monotonic()
        sock.settimeout(0.25)
        for i in range(len(data)):
            try:
                sock.sendall(data[i : i + 1])
                answer = sock.recv(4096)
                return time.monotonic() - started, answer
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started, b""
        raise AssertionError("still open")

    head = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    with gw.socket() as sock:
        elapsed, answer = dribble(sock, head)
    assert 1.5 < elapsed < 3.5 and answer == b""

    with gw.socket() as sock:  # a head after a response on a kept-alive connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        elapsed, answer = dribble(sock, head)
    assert 1.5 < elapsed < 3.5 and answer == b""

    with gw.socket() as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + gw.tokens[SOURCE].encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        elapsed, answer = dribble(sock, b"[" * 100)
        assert 1.5 < elapsed < 3.5 and answer.startswith(b"HTTP/1.1 408")
        assert b"Connection: close" in answer
        sock.settimeout(2)
        rest = b""
        while chunk := sock.recv(4096):
            rest += chunk
    assert b"body not received within 2 s" in answer + rest


def test_the_rate_limit_answers_429_with_retry_after(running, kafka_bootstrap, topic, tmp_path):
    gw = _start(running, kafka_bootstrap, topic, tmp_path, "--rate-limit", "2", "--rate-burst", "2")
    token, other = gw.tokens[SOURCE], gw.tokens["proxy://other"]
    # A batch past the bucket passes once; its client then waits until it has paid it back.
    assert _post(gw, [event(i) for i in range(1, 7)], token)[0] == 202
    status, payload, headers = gw.request("POST", "/v1/events", orjson.dumps(event(7)), token)
    assert status == 429 and headers["Retry-After"] in ("1", "2")
    assert payload["retry_after"] == int(headers["Retry-After"])
    assert _post(gw, [event(1, "proxy://other")], other)[0] == 202  # a bucket per client
    time.sleep(int(headers["Retry-After"]) + 0.1)
    assert _post(gw, [event(7)], token)[0] == 202
    # A refused body costs its items too: a client cannot make the gateway parse for free.
    time.sleep(1.1)
    assert gw.request("POST", "/v1/events", b"[" + b"{}," * 9 + b"{}]", other)[0] == 400
    assert _post(gw, [event(2, "proxy://other")], other)[0] == 429
    # The Python client waits as told and gets through.
    client = GatewayClient(f"http://127.0.0.1:{gw.port}")
    assert client.post_events(other, [event(2, "proxy://other")]) == 1
    assert client.retries >= 1
    client.close()


def test_malformed_requests_leave_one_line_and_no_traceback(
    running, kafka_bootstrap, topic, tmp_path
):
    gw = _start(running, kafka_bootstrap, topic, tmp_path, capture_stderr=True)
    assert gw.stderr is not None
    token = gw.tokens[SOURCE].encode()
    post = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    cases = {
        b"GARBAGE\r\n\r\n": b"400",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n": b"400",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n": b"400",
        post + b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}": b"401",
        post + b"Authorization: Bearer " + token + b"\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 4\r\n\r\nabcd": b"400",
        post + b"Authorization: Bearer " + token + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n": b"400",
        post + b"Authorization: Bearer " + token + b'\r\nContent-Length: 8\r\n\r\n{"a": [1': b"400",
    }
    for raw, expected in cases.items():
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
            sock.sendall(raw)
            assert sock.recv(12)[9:12] == expected, raw[:60]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:  # leaves mid-body
        sock.sendall(post + b"Authorization: Bearer " + token + b"\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(1.0)
    assert gw.request("GET", "/healthz")[0] == 200
    lines = [
        line
        for line in gw.stderr.read_text(errors="replace").splitlines()
        if "Kafka" not in line and "rdkafka" not in line
    ]
    assert not any("Traceback" in line or line.startswith("  File") for line in lines), lines
    assert len(lines) <= len(cases) + 1, lines
