"""The HTTP gateway as operators run it (`auditseal ingest serve`), against the real broker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from auditseal.infra.processes import free_port
from auditseal.ingest import events
from auditseal.ingest.ocsf_schema import schema_errors
from tests.integration.test_emitter import consume
from tests.tls_files import make_pki

pytestmark = pytest.mark.kafka
DATA = Path(__file__).resolve().parents[1] / "data"
SOURCE = "proxy://gateway-test"


def auditseal(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Gateway:
    port: int
    topic: str
    bootstrap: str
    tokens: dict[str, str]
    proc: subprocess.Popen[bytes]
    workdir: Path
    tls: ssl.SSLContext | None = None  # the client's context: the gateway speaks HTTPS
    stderr: Path | None = None

    def connection(
        self, timeout: float = 60, tls: ssl.SSLContext | None = None
    ) -> http.client.HTTPConnection:
        context = tls or self.tls
        if context is not None:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def socket(self, timeout: float = 30, tls: ssl.SSLContext | None = None) -> socket.socket:
        """A raw connection (TLS when the gateway speaks it), for requests written by hand."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        context = tls or self.tls
        return context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        token: str | None = None,
        content_type: str = "application/json",
        tls: ssl.SSLContext | None = None,
    ) -> tuple[int, dict, dict]:
        conn = self.connection(tls=tls)
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = {"text": raw.decode(errors="replace")}
        return resp.status, payload, dict(resp.getheaders())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_gateway(
    bootstrap: str,
    topic: str,
    workdir: Path,
    *extra: str,
    tls: ssl.SSLContext | None = None,
    capture_stderr: bool = False,
) -> Gateway:
    """``auditseal ingest serve`` on a free loopback port with four tokens; ``tls`` is the
    client's context when ``extra`` makes the gateway speak HTTPS."""
    tokens = {}
    for source in (SOURCE, "proxy://other", "k8s://prod", "teleport://root.cluster"):
        out = auditseal("ingest", "token", "--source", source, "--tokens", "tokens", cwd=workdir)
        assert out.returncode == 0, out.stderr
        tokens[source] = out.stdout.strip()
    assert (workdir / "tokens").stat().st_mode & 0o077 == 0
    assert all(t not in (workdir / "tokens").read_text() for t in tokens.values())
    port = free_port()
    stderr = workdir / "gateway.stderr" if capture_stderr else None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from auditseal.cli.main import main; main()",
            "ingest",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--tokens",
            "tokens",
            "--state-dir",
            "state",
            *extra,
        ],
        cwd=workdir,
        stderr=stderr.open("wb") if stderr else None,
    )
    gw = Gateway(port, topic, bootstrap, tokens, proc, workdir, tls, stderr)
    deadline = time.monotonic() + 30
    while True:
        try:
            if gw.request("GET", "/healthz")[0] in (200, 503):
                return gw
        except OSError:
            pass
        assert proc.poll() is None, "gateway exited"
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["http", "https"])
def gateway(request, kafka_bootstrap, tmp_path_factory) -> Iterator[Gateway]:
    """The gateway, in plaintext and over TLS (the same tests run against both)."""
    from auditseal.infra import broker

    topic = f"gateway-{os.getpid()}-{request.param}"
    broker.create_topic(kafka_bootstrap, topic, 2)
    workdir = tmp_path_factory.mktemp("gateway")
    extra = ["--max-event-bytes", "4096"]
    tls = None
    if request.param == "https":
        pki = make_pki(workdir / "pki")
        extra += ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
        tls = pki.client_context()
    gw = start_gateway(kafka_bootstrap, topic, workdir, *extra, tls=tls)
    yield gw
    gw.stop()


def event(seq: int, source: str = SOURCE, **changes) -> dict:
    e = events.api_activity(
        source, seq, {"name": "alice"}, "GET", {"name": "/x"}, "success", "10.1.2.3"
    )
    e.update(changes)
    return e


def test_tokens_are_required_and_bound_to_a_source(gateway):
    body = orjson.dumps(event(1))
    status, _, headers = gateway.request("POST", "/v1/events", body)
    assert status == 401 and "WWW-Authenticate" in headers
    assert gateway.request("POST", "/v1/events", body, token="ast_wrong")[0] == 401
    status, payload, _ = gateway.request(
        "POST", "/v1/events", body, token=gateway.tokens["proxy://other"]
    )
    assert status == 403
    assert payload["errors"] == [
        f"[0].source: '{SOURCE}' is not this token's source 'proxy://other'"
    ]


def test_one_event_an_array_and_ndjson_are_accepted_after_kafka_acks(gateway):
    token = gateway.tokens[SOURCE]
    single = event(1)
    array = [event(2), event(3)]
    ndjson = [event(4), event(5), event(6)]
    assert gateway.request("POST", "/v1/events", orjson.dumps(single), token)[0] == 202
    status, payload, _ = gateway.request("POST", "/v1/events", orjson.dumps(array), token)
    assert status == 202 and payload == {"accepted": 2, "ids": [e["id"] for e in array]}
    body = b"\n".join(orjson.dumps(e) for e in ndjson) + b"\n"
    assert gateway.request("POST", "/v1/events", body, token, "application/x-ndjson")[0] == 202
    ids = {r[1]["id"] for r in consume(gateway.bootstrap, gateway.topic, 6)}
    assert {e["id"] for e in [single, *array, *ndjson]} <= ids


def test_every_field_error_is_reported_and_nothing_is_published(gateway):
    token = gateway.tokens[SOURCE]
    good = event(10)
    bad_time = event(11, time="yesterday")
    no_user = event(12)
    no_user["data"] = {**no_user["data"], "actor": {}}
    status, payload, _ = gateway.request(
        "POST", "/v1/events", orjson.dumps([good, bad_time, no_user]), token
    )
    assert status == 400
    assert any(e.startswith("[1].time:") for e in payload["errors"])
    assert any(e.startswith("[2].data.actor: Actor needs") for e in payload["errors"])
    ids = {r[1]["id"] for r in consume(gateway.bootstrap, gateway.topic, 10**6, timeout=3)}
    assert good["id"] not in ids  # all or nothing


def test_sizes_and_media_types(gateway):
    token = gateway.tokens[SOURCE]
    big = event(20, subject="x" * 5000)
    status, payload, _ = gateway.request("POST", "/v1/events", orjson.dumps(big), token)
    assert status == 413 and "4096" in json.dumps(payload)
    status, _, _ = gateway.request("POST", "/v1/events", b"<xml/>", token, "application/xml")
    assert status == 415
    status, payload, _ = gateway.request("POST", "/v1/events", b"{not json", token)
    assert status == 400 and payload["errors"]


def test_kubernetes_audit_webhook(gateway):
    body = (DATA / "k8s_event_list.json").read_bytes()
    items = json.loads(body)["items"]
    ids = [f"{item['auditID']}/{item['stage']}" for item in items]
    token = gateway.tokens["k8s://prod"]
    assert gateway.request("POST", "/v1/adapters/k8s?cluster=staging", body, token)[0] == 403
    assert gateway.request("POST", "/v1/adapters/k8s", body, token)[0] == 400
    url = "/v1/adapters/k8s?cluster=prod"
    status, payload, _ = gateway.request("POST", url, body, token)
    # 200: the API server's webhook backend resends a batch on any other answer
    assert status == 200 and payload["accepted"] == len(items)
    assert payload["ids"] == ids and payload["rejected"] == [] and payload["duplicates"] == []

    # The same batch again (a webhook retry): recognised, nothing sealed twice.
    status, payload, _ = gateway.request("POST", url, body, token)
    assert status == 200 and payload["accepted"] == 0 and payload["duplicate_count"] == 3
    assert [d["same"] for d in payload["duplicates"]] == [True] * 3

    # One bad item does not hold back the others; a reused id with other content is flagged.
    fresh = {**items[0], "auditID": "0b6c1f0e-2d4f-4a57-9f62-6a1c1f7a0001"}
    bad = {**items[1]}
    del bad["verb"]
    changed = {**items[2], "verb": "delete"}
    mixed = json.dumps({**json.loads(body), "items": [bad, fresh, changed]}).encode()
    status, payload, _ = gateway.request("POST", url, mixed, token)
    assert status == 200, payload
    assert payload["accepted"] == 2 and payload["rejected_count"] == 1
    assert payload["rejected"] == [
        {"index": 0, "auditID": items[1]["auditID"], "errors": ["items[0].verb: required"]}
    ]
    assert payload["duplicates"] == [{"index": 2, "id": ids[2], "first": None, "same": False}]

    published = [
        r[1]
        for r in consume(gateway.bootstrap, gateway.topic, 10**6, timeout=3)
        if r[1]["source"] == "k8s://prod"
    ]
    assert [e["id"] for e in published] == [*ids, f"{fresh['auditID']}/ResponseComplete", ids[2]]
    assert [json.loads(e["data"]["raw_data"]) for e in published[:3]] == items
    assert [e["sequence"] for e in published] == list(range(1, 6))  # gap-free: none skipped
    for record in published:
        assert schema_errors(record["data"]) == []
    status, _, _ = gateway.request("POST", url, b'{"kind":"EventList"}', token)
    assert status == 400  # not an audit.k8s.io/v1 EventList at all


def test_teleport_event_handler(gateway):
    body = (DATA / "teleport_user_login.json").read_bytes()
    token = gateway.tokens["teleport://root.cluster"]
    status, payload, _ = gateway.request("POST", "/v1/adapters/teleport", body, token)
    assert status == 200, payload  # Teleport's event handler counts anything else as a failure
    assert payload["ids"] == [json.loads(body)["uid"]]
    wrong = gateway.tokens[SOURCE]
    assert gateway.request("POST", "/v1/adapters/teleport", body, wrong)[0] == 403


def test_health_and_metrics(gateway):
    status, payload, _ = gateway.request("GET", "/healthz")
    assert status == 200 and payload == {"status": "ok", "broker": "up"}
    conn = gateway.connection(timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    assert 'auditseal_gateway_events_total{outcome="accepted"}' in text
    assert "auditseal_gateway_requests_total" in text


def test_broker_down_answers_503_with_retry_after(tmp_path):
    from auditseal.infra import broker

    service = broker.spawn(free_port(), tmp_path / "broker.log")
    assert service.pid is not None
    try:
        broker.wait_ready(service, timeout=60)
        broker.create_topic(service.address, "audit.events", 1)
        gw = start_gateway(service.address, "audit.events", tmp_path, "--ack-timeout", "1")
        try:
            token = gw.tokens[SOURCE]
            assert gw.request("POST", "/v1/events", orjson.dumps(event(1)), token)[0] == 202
            os.kill(service.pid, signal.SIGSTOP)
            status, payload, headers = gw.request(
                "POST", "/v1/events", orjson.dumps(event(2)), token
            )
            assert status == 503 and headers["Retry-After"] == "5"
            assert payload["retry_after"] == 5
            os.kill(service.pid, signal.SIGCONT)
            deadline = time.monotonic() + 60
            while gw.request("POST", "/v1/events", orjson.dumps(event(2)), token)[0] != 202:
                assert time.monotonic() < deadline, "gateway did not recover"
                time.sleep(0.5)
        finally:
            gw.stop()
    finally:
        os.kill(service.pid, signal.SIGCONT)
        broker.stop(service, timeout=2.0)


def test_a_body_arriving_in_pieces_is_read_whole(gateway):
    """Regression: one read() returned only the first TCP segment, and the gateway answered
    202 for the events in it, dropping the rest."""
    token = gateway.tokens[SOURCE]
    lines = [orjson.dumps(event(100 + i)) + b"\n" for i in range(10)]
    first, rest = b"".join(lines[:4]), b"".join(lines[4:])
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/x-ndjson\r\nContent-Length: {len(first) + len(rest)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with gateway.socket() as s:
        s.sendall(head + first)
        time.sleep(0.3)
        s.sendall(rest)
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 202")
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["accepted"] == 10
