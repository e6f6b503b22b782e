"""Teleport's event handler against a real gateway process over mTLS, posting exactly as its
Fluentd client does (integrations/event-handler/fluentd_client.go in gravitational/teleport):
one event per request, the event's JSON as the body, ``Content-Type: application/json``, no
``Authorization`` header, the client certificate as the only credential, and any status but
200 taken as a failure and sent again. Events are the examples of Teleport's audit event
reference (tests/data/teleport_events)."""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration.test_emitter import consume
from tests.integration.test_gateway import Gateway, start_gateway
from tests.tls_files import PKI, make_pki

pytestmark = pytest.mark.kafka
REFERENCE = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "teleport_events"
    / "audit_events_reference.jsonl"
)


def example(name: str, code: str | None = None) -> bytes:
    for line in REFERENCE.read_bytes().splitlines():
        doc = orjson.loads(line)
        if doc["event"] == name and (code is None or doc.get("code") == code):
            return line
    raise LookupError(name)


@pytest.fixture
def handler_gateway(kafka_bootstrap, tmp_path) -> Iterator[tuple[Gateway, PKI, str]]:
    """A gateway speaking mTLS whose mapping gives the event handler's certificate the source of
    cluster ``root.cluster`` only, on a topic of its own."""
    from auditseal.infra import broker

    topic = f"teleport-handler-{os.getpid()}-{tmp_path.name}"
    broker.create_topic(kafka_bootstrap, topic, 1)
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "certs").write_text("cn:teleport-event-handler  teleport://root.cluster\n")
    gw = start_gateway(
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
        tls=pki.client_context(),
    )
    try:
        yield gw, pki, topic
    finally:
        gw.stop()


def send(gw: Gateway, tls: ssl.SSLContext, path: str, body: bytes) -> tuple[int, dict]:
    """One POST as fluentd_client.go sends it: its one header, its body, nothing else."""
    conn = http.client.HTTPSConnection("127.0.0.1", gw.port, timeout=30, context=tls)
    conn.putrequest("POST", path, skip_accept_encoding=True)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    payload = orjson.loads(response.read())
    conn.close()
    return response.status, payload


def test_the_event_handler_delivers_over_mtls_and_a_resend_is_sealed_once(handler_gateway):
    gw, pki, topic = handler_gateway
    handler = pki.client_context(pki.client("teleport-event-handler"))
    login = example("user.login", "T1013I")  # cluster_name root.cluster
    start = example("session.start")  # no cluster_name: the certificate's cluster
    cert = example("cert.create")  # no uid, user or cluster_name
    command = example("session.command")  # a session recording's event, on the session URL
    sid = orjson.loads(command)["sid"]
    sends = [
        ("/v1/adapters/teleport", login),
        ("/v1/adapters/teleport/events.log", start),
        ("/v1/adapters/teleport", cert),
        (f"/v1/adapters/teleport/session.{sid}.log", command),
    ]
    ids = []
    for path, body in sends:
        status, payload = send(gw, handler, path, body)
        assert (status, payload["accepted"]) == (200, 1), payload  # 200: the handler moves on
        ids.extend(payload["ids"])
    # The handler resends whatever it did not see answered 200: each resend is answered 200
    # and publishes nothing.
    for path, body in sends:
        status, payload = send(gw, handler, path, body)
        assert (status, payload) == (200, {"accepted": 0, "ids": payload["ids"], "duplicate": True})
    published = consume(gw.bootstrap, topic, len(sends), timeout=10)
    assert [e["id"] for _, e in published] == ids  # each event once, in order
    assert [key for key, _ in published] == [b"teleport://root.cluster"] * len(sends)
    assert [e["sequence"] for _, e in published] == [1, 2, 3, 4]
    assert [e["data"]["class_uid"] for _, e in published] == [3002, 3002, 3002, 6003]
    assert ids[0] == orjson.loads(login)["uid"] and ids[2].startswith("sha256:")


def test_the_handler_certificate_stands_for_its_cluster_only(handler_gateway):
    gw, pki, _ = handler_gateway
    handler = pki.client_context(pki.client("teleport-event-handler"))
    other = orjson.loads(example("db.session.query"))  # cluster_name "root"
    status, payload = send(gw, handler, "/v1/adapters/teleport", orjson.dumps(other))
    assert status == 403
    assert payload["errors"] == [
        "source: 'teleport://root' is not a source of certificate "
        "'cn:teleport-event-handler' ('teleport://root.cluster')"
    ]
    stranger = pki.client_context(pki.client("someone-else"))
    status, payload = send(gw, stranger, "/v1/adapters/teleport", example("session.start"))
    assert status == 401 and "not mapped to any source" in payload["error"]
    status, payload = send(gw, handler, "/v1/adapters/teleport", b'{"event": "x"}')
    assert status == 400 and payload["errors"] == ["time: required"]
