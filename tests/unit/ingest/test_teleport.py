"""The Teleport adapter: Teleport audit events → auditseal events, valid OCSF 1.3.0.

tests/data/teleport_events/audit_events_reference.jsonl holds every example of Teleport's
generated audit event reference (one line per example, verbatim); see tests/data/README.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditseal.ingest.envelope import encode_event, parse_event
from auditseal.ingest.errors import EnvelopeError, EventTooLarge
from auditseal.ingest.ocsf_schema import schema_errors
from auditseal.ingest.teleport import (
    content_digest,
    event_id,
    from_teleport,
    ocsf_class,
    teleport_source,
)
from tests.unit.ingest.counters import Counters

DATA = Path(__file__).resolve().parents[2] / "data"
REFERENCE = (DATA / "teleport_events" / "audit_events_reference.jsonl").read_bytes().splitlines()


def example(name: str, code: str | None = None) -> dict[str, Any]:
    """The reference's example of event ``name`` (with ``code``, when it has several)."""
    for line in REFERENCE:
        doc = orjson.loads(line)
        if doc["event"] == name and (code is None or doc.get("code") == code):
            return doc
    raise LookupError((name, code))


def convert(doc: dict[str, Any], cluster: str | None = "root") -> dict[str, Any]:
    event = from_teleport(orjson.dumps(doc), Counters(), cluster=cluster)
    assert parse_event(encode_event(event)) == event  # the gateway's own check
    assert schema_errors(event["data"]) == []  # the official OCSF 1.3.0 schema
    return event


def messages(error: EnvelopeError) -> list[str]:
    return [str(e) for e in error.errors]


# -- every example of Teleport's reference -------------------------------------------------------


def test_the_reference_has_every_example():
    docs = [orjson.loads(line) for line in REFERENCE]
    assert len(docs) == 319
    assert len({doc["event"] for doc in docs}) == 234


@pytest.mark.parametrize(
    "line",
    REFERENCE,
    ids=[f"{orjson.loads(x)['event']}-{orjson.loads(x).get('code')}" for x in REFERENCE],
)
def test_every_reference_example_is_accepted_as_valid_ocsf(line):
    doc = orjson.loads(line)
    event = from_teleport(line, Counters(), cluster="root")
    assert parse_event(encode_event(event)) == event
    assert schema_errors(event["data"]) == []
    data = event["data"]
    assert data["class_uid"] == ocsf_class(doc["event"])
    assert event["id"] == event_id(doc)
    assert data["raw_data"] == line.decode()  # as received, byte for byte
    assert data["metadata"]["product"] == {"name": "Teleport", "vendor_name": "Gravitational"}


@pytest.mark.parametrize(
    ("name", "code", "class_uid", "activity_id"),
    [
        ("user.login", "T1000I", 3002, 1),
        ("user.login", "T1000W", 3002, 1),
        ("auth", None, 3002, 1),
        ("cert.create", None, 3002, 3),
        ("spiffe.svid.issued", "TSPIFFE000I", 3002, 3),
        ("mfa_auth_challenge.create", None, 3002, 6),
        ("bot.join", "TJ001I", 3002, 1),
        ("session.start", None, 3002, 1),
        ("session.join", None, 3002, 1),
        ("session.end", None, 3002, 2),
        ("session.leave", None, 3002, 2),
        ("session.rejected", None, 3002, 1),
        ("app.session.start", "T2007I", 3002, 1),
        ("windows.desktop.session.end", None, 3002, 2),
        ("db.session.start", "TDB00I", 6005, 3),
        ("db.session.end", None, 6005, 99),
        ("db.session.query", None, 6005, 4),
        ("db.session.query.failed", None, 6005, 4),
        ("db.session.postgres.statements.parse", None, 6005, 4),
        ("db.session.mysql.create_db", None, 6005, 6),
        ("db.session.mysql.drop_db", None, 6005, 7),
        ("db.session.mysql.statements.fetch", None, 6005, 1),
        ("db.session.spanner.rpc", "TSPN001I", 6005, 4),
        ("db.session.dynamodb.request", "TDY01I", 6005, 4),
        ("role.created", None, 6003, 1),
        ("role.updated", None, 6003, 3),
        ("role.deleted", None, 6003, 4),
        ("lock.created", None, 6003, 1),
        ("github.deleted", None, 6003, 4),
        ("access_list.create", "TAL001I", 6003, 1),
        ("access_list.member.delete_all_members", "TAL008I", 6003, 4),
        ("user.password_change", None, 6003, 3),
        ("kube.request", None, 6003, 2),
        ("session.command", None, 6003, 99),
        ("session.data", None, 6003, 99),
        ("session.upload", None, 6003, 99),
        ("exec", "T3002I", 6003, 99),
        ("sftp", "TS001E", 6003, 99),
    ],
)
def test_class_and_activity(name, code, class_uid, activity_id):
    data = convert(example(name, code))["data"]
    assert (data["class_uid"], data["activity_id"]) == (class_uid, activity_id)
    assert data["type_uid"] == class_uid * 100 + activity_id


@pytest.mark.parametrize(
    ("code", "status_id"),
    [("TAL001I", 1), ("TAL001E", 2)],
)
def test_status_from_the_code_when_there_is_no_success_field(code, status_id):
    assert convert(example("access_list.create", code))["data"]["status_id"] == status_id


# -- fields mapped, not only kept raw ------------------------------------------------------------


def test_login_maps_user_address_method_mfa_and_user_agent():
    doc = example("user.login", "T1013I")
    # A real login also carries the MFA device and the user agent (Teleport's UserLogin fields).
    doc["mfa_device"] = {
        "mfa_device_name": "yubikey",
        "mfa_device_uuid": "4a1b7a8e-3c1f-4bd1-9f31-0e0d4b1b5f10",
        "mfa_device_type": "WebAuthn",
    }
    doc["user_agent"] = "Mozilla/5.0 (X11; Linux x86_64)"
    event = convert(doc, cluster=None)
    data = event["data"]
    assert event["source"] == "teleport://root.cluster" == teleport_source("root.cluster")
    assert event["id"] == doc["uid"]
    assert data["user"] == {"name": "admin@example.com"}
    assert data["src_endpoint"] == {"ip": "2.2.2.2", "port": 42}
    assert data["service"] == {"name": "root.cluster"}
    assert (data["auth_protocol"], data["auth_protocol_id"]) == ("headless", 99)
    assert data["is_mfa"] is True
    # OCSF 1.3.0 has no auth_factor for a security key (it wants an email, phone or questions)
    assert data["unmapped"] == {"mfa_device": doc["mfa_device"]}
    assert data["http_request"] == {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}
    assert data["message"] == doc["message"]
    assert (data["metadata"]["event_code"], data["metadata"]["sequence"]) == ("T1013I", 0)


def test_sso_login_maps_the_protocol():
    data = convert(example("user.login", "T1010I"))["data"]
    assert (data["auth_protocol"], data["auth_protocol_id"]) == ("oidc", 4)
    assert data["unmapped"]["attributes"]["email"] == "ops@gravitational.io"


def test_session_start_is_a_remote_logon_on_the_server():
    doc = example("session.start")
    data = convert(doc)["data"]
    assert data["user"] == {"name": "admin@example.com", "account": {"name": "root"}}
    assert data["src_endpoint"] == {"ip": "151.181.228.114", "port": 51454}
    assert data["dst_endpoint"] == {"ip": "172.31.28.130", "port": 3022, "uid": doc["server_id"]}
    assert data["session"] == {"uid": doc["sid"]}
    assert (data["is_remote"], data["logon_type_id"]) == (True, 10)
    assert data["metadata"]["correlation_uid"] == doc["sid"]
    assert data["unmapped"] == {"namespace": "default", "size": "80:25"}


def test_session_end_names_the_server_by_hostname():
    data = convert(example("session.end"))["data"]
    assert data["service"] == {"name": "ip-172-31-30-254"}
    assert data["dst_endpoint"]["hostname"] == "ip-172-31-30-254"
    assert data["logon_type_id"] == 3  # interactive: false
    assert data["unmapped"]["participants"] == ["foo"]


def test_session_data_keeps_byte_counts_unmapped():
    data = convert(example("session.data"))["data"]
    assert data["unmapped"] == {"rx": 3974, "tx": 4730}  # API Activity has no traffic object
    assert data["actor"]["user"] == {"name": "Stanley_Cooper", "account": {"name": "root"}}


def test_db_query_maps_database_query_and_session():
    doc = example("db.session.query")
    data = convert(doc)["data"]
    assert data["database"] == {
        "name": "test",
        "uid": "mongo-primary",
        "type": "mongodb",
        "type_id": 6,
    }
    assert data["query_info"] == {"uid": doc["uid"], "query_string": doc["db_query"]}
    assert data["actor"] == {"user": {"name": "alice@example.com"}, "session": {"uid": doc["sid"]}}
    assert data["src_endpoint"] == {"svc_name": "teleport"}  # Teleport gives no client address
    assert data["dst_endpoint"] == {"name": doc["db_uri"]}
    assert data["unmapped"] == {"db_user": "alice"}


def test_postgres_query_of_the_database_access_reference():
    doc = orjson.loads((DATA / "teleport_db_session_query.json").read_bytes())
    data = convert(doc)["data"]
    assert (data["class_uid"], data["activity_id"]) == (6005, 4)
    assert data["database"] == {"name": "test", "uid": "local", "type": "postgres", "type_id": 1}
    assert data["query_info"]["query_string"] == doc["db_query"]


def test_prepared_statement_names_the_query():
    data = convert(example("db.session.postgres.statements.parse"))["data"]
    assert data["query_info"] == {
        "name": "test-ps",
        "uid": "06781ebf-6c5b-463b-ad32-e7395afd4a59",
        "query_string": "select id from test where id = $1::varchar",
    }
    assert data["dst_endpoint"] == {"hostname": "localhost", "port": 5432}


def test_http_database_request_maps_method_path_and_user_agent():
    data = convert(example("db.session.opensearch.request", "TOS00I"))["data"]
    assert data["http_request"] == {
        "user_agent": "Go-http-client/1.1",
        "http_method": "GET",
        "url": {"path": "/_count"},
    }
    assert data["status_code"] == "200"


def test_kube_request_maps_verb_resource_and_endpoints():
    data = convert(example("kube.request"))["data"]
    assert data["resources"] == [{"type": "pods", "name": "test-pod", "namespace": "teletest"}]
    assert data["src_endpoint"] == {"ip": "::1", "port": 43026}
    assert data["actor"]["user"] == {"name": "alex", "account": {"name": "awly"}}
    assert data["status_code"] == "200"


def test_mfa_device_event_names_the_device():
    data = convert(example("mfa.delete", "T1007I"))["data"]
    assert data["resources"] == [
        {"type": "mfa_device", "name": "usb-c", "uid": "7a6fbf23-d75c-4c62-8215-e962d0f2a1f3"}
    ]
    assert data["unmapped"] == {"mfa_device_type": "U2F"}


def test_non_ip_addresses_become_hostnames_or_names():
    data = convert(example("desktop.directory.read", "TDP05I"))["data"]
    assert data["src_endpoint"] == {
        "hostname": "ec2-54-162-177-255.compute-1.amazonaws.com",
        "port": 3389,
    }
    data = convert(example("x11-forward", "T3008I"))["data"]
    assert data["dst_endpoint"] == {"hostname": "192.000.0.000", "port": 3022}


# -- what Teleport leaves out is accepted ---------------------------------------------------------


def test_cert_create_without_uid_user_or_address_is_accepted_with_a_content_id():
    doc = example("cert.create")
    event = convert(doc)
    assert event["data"]["user"] == {"name": "alice"}  # identity.user
    assert (
        event["id"]
        == "sha256:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )
    # the same event, keys in another order: the same id, so a resend is a duplicate
    reordered = dict(reversed(list(doc.items())))
    assert convert(reordered)["id"] == event["id"]
    assert content_digest(orjson.dumps(reordered)) == content_digest(orjson.dumps(doc))


def test_minimal_events_say_unknown_where_ocsf_requires_a_value():
    data = convert(example("session.leave"))["data"]
    assert data["user"] == {"name": "unknown", "type_id": 0, "type": "Unknown"}
    assert data["service"] == {"name": "root"}
    data = convert(example("role.created"))["data"]
    assert data["actor"] == {"app_name": "Teleport"}
    assert data["src_endpoint"] == {"svc_name": "teleport"}
    data = convert(example("db.session.start", "TDB00W"))["data"]
    assert data["database"] == {"name": "unknown", "type_id": 0, "type": "Unknown"}


def test_access_list_events_name_the_editor_as_actor():
    data = convert(example("access_list.create", "TAL001I"))["data"]
    assert data["actor"] == {"user": {"name": "mike"}}
    assert data["resources"] == [{"name": "access-list"}]


def test_the_cluster_comes_from_the_event_or_the_default():
    doc = example("exec", "T3002I")  # no cluster_name
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(orjson.dumps(doc), Counters())
    assert messages(caught.value) == [
        "cluster_name: required (the event names no cluster and the route gives none)"
    ]
    assert convert(doc, cluster="leaf")["source"] == "teleport://leaf"
    assert convert(example("user.login", "T1013I"), cluster="other")["source"] == (
        "teleport://root.cluster"
    )
    assert convert(example("scim.list", "TSCIM005I"), cluster=None)["source"] == "teleport://dev"


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"event": None}, ["event: required"]),
        ({"event": ""}, ["event: must be a non-empty string"]),
        ({"time": "2019-04-22"}, ["time: not an RFC 3339 timestamp"]),
        ({"time": None}, ["time: required"]),
        ({"uid": 7}, ["uid: must be a non-empty string"]),
        ({"success": "yes"}, ["success: must be a boolean"]),
        ({"ei": "0"}, ["ei: must be an integer"]),
        ({"cluster_name": 5}, ["cluster_name: must be a non-empty string"]),
        ({"addr.remote": ["1.2.3.4"]}, ["addr.remote: must be a string (host:port)"]),
        ({"event": None, "time": None}, ["event: required", "time: required"]),
    ],
)
def test_bad_fields_are_named_and_nothing_is_numbered(edit, expected):
    doc = example("user.login", "T1013I")
    for key, value in edit.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    counters = Counters()
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(orjson.dumps(doc), counters)
    assert messages(caught.value) == expected
    assert counters.calls == []


@pytest.mark.parametrize(
    ("body", "expected"), [(b"nope", "$: not valid JSON"), (b"[{}]", "$: must be a JSON object")]
)
def test_bad_bodies_are_refused(body, expected):
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(body, Counters())
    assert messages(caught.value)[0].startswith(expected)


def test_event_too_large_is_refused_before_numbering():
    doc = example("db.session.query")
    doc["db_query"] = "SELECT '" + "x" * 5000 + "'"
    counters = Counters()
    with pytest.raises(EventTooLarge):
        from_teleport(orjson.dumps(doc), counters, max_bytes=4000)
    assert counters.calls == []


def test_numbering_is_the_callers():
    counters = Counters(start=9)
    event = from_teleport(orjson.dumps(example("session.start")), counters, cluster="root")
    assert (event["sequence"], counters.calls) == (9, ["teleport://root"])


def test_the_adapter_wants_bytes():
    with pytest.raises(TypeError):
        from_teleport("{}", Counters())  # type: ignore[arg-type]
