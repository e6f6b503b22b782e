"""The Teleport adapter: Teleport audit events → auditseal events.

The samples in tests/data/ come from Teleport's documentation; see tests/data/README.md.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditseal.ingest.envelope import encode_event, parse_event
from auditseal.ingest.errors import EnvelopeError, EventTooLarge
from auditseal.ingest.teleport import from_teleport, teleport_source

DATA = Path(__file__).resolve().parents[2] / "data"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sample_obj(name: str) -> Any:
    return orjson.loads(sample(name))


class Counters:
    """A fake of the gateway's per-source counters that records every call."""

    def __init__(self, start: int = 1) -> None:
        self.next: dict[str, int] = defaultdict(lambda: start)
        self.calls: list[str] = []

    def __call__(self, source: str) -> int:
        self.calls.append(source)
        number = self.next[source]
        self.next[source] = number + 1
        return number


def messages(error: EnvelopeError) -> list[str]:
    return [str(e) for e in error.errors]


def assert_valid(event: dict[str, Any]) -> None:
    assert parse_event(encode_event(event)) == event


def test_teleport_user_login_becomes_authentication():
    counters = Counters(start=9)
    event = from_teleport(sample("teleport_user_login.json"), counters)
    assert_valid(event)
    doc = sample_obj("teleport_user_login.json")
    assert event["type"] == "io.auditseal.authentication"
    assert event["id"] == doc["uid"]
    assert event["source"] == "teleport://root.cluster" == teleport_source("root.cluster")
    assert (event["sequence"], counters.calls) == (9, ["teleport://root.cluster"])
    assert event["time"] == "2019-04-22T00:49:03.000Z"
    data = event["data"]
    assert (data["class_uid"], data["activity_id"], data["status_id"]) == (3002, 1, 1)
    assert data["user"] == {"name": "admin@example.com"}
    assert data["src_endpoint"] == {"ip": "2.2.2.2"}
    assert data["service"] == {"name": "root.cluster"}
    assert (data["auth_protocol"], data["auth_protocol_id"]) == ("headless", 99)
    assert data["metadata"]["event_code"] == "T1013I"
    assert data["metadata"]["uid"] == doc["uid"]
    assert data["metadata"]["sequence"] == 0  # Teleport's `ei`
    assert data["message"] == doc["message"]
    assert data["raw"] == doc


def test_teleport_refused_login_is_a_failed_logon():
    event = from_teleport(sample("teleport_user_login_denied.json"), Counters())
    assert_valid(event)
    assert (event["data"]["activity_id"], event["data"]["status_id"]) == (1, 2)
    assert event["data"]["raw"] == sample_obj("teleport_user_login_denied.json")


def test_teleport_db_query_becomes_datastore_activity():
    event = from_teleport(sample("teleport_db_session_query.json"), Counters())
    assert_valid(event)
    doc = sample_obj("teleport_db_session_query.json")
    data = event["data"]
    assert event["type"] == "io.auditseal.datastore_activity"
    assert event["source"] == "teleport://root"
    assert (data["class_uid"], data["activity_id"], data["status_id"]) == (6005, 4, 1)
    assert data["query_info"] == {"query_string": doc["db_query"]}
    assert data["database"] == {"name": "test", "uid": "local", "type": "postgres"}
    assert data["actor"] == {"user": {"name": "alice"}, "session": {"uid": doc["sid"]}}
    assert "src_endpoint" not in data  # Teleport's db events carry no client address
    assert data["metadata"]["sequence"] == 29
    assert data["raw"] == doc


def test_teleport_failed_db_query_is_a_failure():
    doc = sample_obj("teleport_db_session_query.json")
    doc.update(event="db.session.query.failed", code="TDB02W", error="permission denied")
    event = from_teleport(orjson.dumps(doc), Counters())
    assert (event["data"]["status_id"], event["data"]["status_detail"]) == (2, "permission denied")


def test_teleport_other_events_become_api_activity_with_status_from_the_code():
    event = from_teleport(sample("teleport_sftp_failed.json"), Counters())
    assert_valid(event)
    data = event["data"]
    assert (data["class_uid"], data["activity_id"]) == (6003, 99)
    assert data["api"]["operation"] == "sftp"
    assert data["status_id"] == 2  # no `success` field: the E in TS001E decides
    assert data["status_detail"] == "EOF"
    assert data["resources"] == [{"name": "im-a-server-hostname", "type": "node"}]
    assert data["src_endpoint"] == {"ip": "127.0.0.1"}
    assert "session" not in data["actor"]  # an empty sid is no session
    assert data["raw"] == sample_obj("teleport_sftp_failed.json")


def test_teleport_event_without_cluster_name_needs_a_default_cluster():
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(sample("teleport_exec.json"), Counters())
    assert messages(caught.value) == ["cluster_name: required"]
    event = from_teleport(sample("teleport_exec.json"), Counters(), cluster="root")
    assert_valid(event)
    assert event["source"] == "teleport://root"
    assert event["data"]["resources"] == [{"name": "clusterOne", "type": "kube_cluster"}]
    assert event["data"]["status_id"] == 1
    assert event["data"]["raw"] == sample_obj("teleport_exec.json")  # not given a cluster_name


def test_teleport_cluster_name_in_the_event_wins_over_the_default():
    event = from_teleport(sample("teleport_user_login.json"), Counters(), cluster="other")
    assert event["source"] == "teleport://root.cluster"


def test_teleport_event_that_cannot_be_mapped_names_every_field_and_numbers_nothing():
    counters = Counters()
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(sample("teleport_user_login_local_failed.json"), counters)
    assert messages(caught.value) == [
        "cluster_name: required",
        "addr.remote: required (the source address becomes data.src_endpoint.ip)",
    ]
    assert counters.calls == []


@pytest.mark.parametrize(
    ("remote", "ip"),
    [("[::1]:3022", "::1"), ("10.0.0.1", "10.0.0.1"), ("2001:db8::7", "2001:db8::7")],
)
def test_teleport_remote_addresses(remote, ip):
    doc = sample_obj("teleport_sftp_failed.json")
    doc["addr.remote"] = remote
    assert from_teleport(orjson.dumps(doc), Counters())["data"]["src_endpoint"] == {"ip": ip}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"uid": None}, ["uid: required"]),
        ({"event": ""}, ["event: must be a non-empty string"]),
        ({"time": "2019-04-22"}, ["time: not an RFC 3339 timestamp"]),
        ({"time": None}, ["time: required"]),
        ({"user": {"user": "x"}}, ["user: must be a non-empty string"]),
        ({"success": "yes"}, ["success: must be a boolean"]),
        ({"ei": "0"}, ["ei: must be an integer"]),
        ({"cluster_name": 5}, ["cluster_name: must be a non-empty string"]),
        (
            {"addr.remote": "ec2-54-162-177-255.compute-1.amazonaws.com:3389"},
            ["addr.remote: not an IP address with an optional port"],
        ),
        ({"uid": None, "user": None}, ["uid: required", "user: required"]),
    ],
)
def test_teleport_bad_fields_are_named(edit, expected):
    doc = sample_obj("teleport_user_login.json")
    for key, value in edit.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(orjson.dumps(doc), Counters())
    assert messages(caught.value) == expected


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"db_query": None}, ["db_query: required"]),
        ({"db_query": ""}, ["db_query: must be a non-empty string"]),
        ({"db_name": None, "db_service": None}, ["db_name: required (or db_service)"]),
        ({"addr.remote": "nowhere"}, ["addr.remote: not an IP address with an optional port"]),
    ],
)
def test_teleport_bad_db_query_fields_are_named(edit, expected):
    doc = sample_obj("teleport_db_session_query.json")
    for key, value in edit.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(orjson.dumps(doc), Counters())
    assert messages(caught.value) == expected


@pytest.mark.parametrize(
    ("body", "expected"), [(b"nope", "$: not valid JSON"), (b"[{}]", "$: must be a JSON object")]
)
def test_teleport_bad_bodies_are_refused(body, expected):
    with pytest.raises(EnvelopeError) as caught:
        from_teleport(body, Counters())
    assert messages(caught.value)[0].startswith(expected)


def test_teleport_event_too_large_is_refused_before_numbering():
    doc = sample_obj("teleport_db_session_query.json")
    doc["db_query"] = "SELECT '" + "x" * 5000 + "'"
    counters = Counters()
    with pytest.raises(EventTooLarge):
        from_teleport(orjson.dumps(doc), counters, max_bytes=4000)
    assert counters.calls == []


def test_the_adapter_wants_bytes():
    with pytest.raises(TypeError):
        from_teleport("{}", Counters())  # type: ignore[arg-type]
