"""Adapters: Kubernetes audit webhook EventList and Teleport audit events → auditseal events.

The samples in tests/data/ come from the Kubernetes and Teleport documentation; see
tests/data/README.md.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditseal.ingest.adapters import (
    K8sBatch,
    from_k8s_event_list,
    k8s_source,
)
from auditseal.ingest.envelope import (
    MAX_SEQUENCE,
    encode_event,
    epoch_millis,
    parse_event,
    parse_rfc3339,
)
from auditseal.ingest.errors import BatchTooLarge, EnvelopeError
from auditseal.ingest.jsonsplit import object_with_array
from auditseal.ingest.ocsf_schema import schema_errors
from tests.unit.ingest.counters import Counters

DATA = Path(__file__).resolve().parents[2] / "data"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sample_obj(name: str) -> Any:
    return orjson.loads(sample(name))


def messages(error: EnvelopeError) -> list[str]:
    return [str(e) for e in error.errors]


def assert_valid(event: dict[str, Any]) -> None:
    assert parse_event(encode_event(event)) == event


# -- Kubernetes -----------------------------------------------------------------------------------


@pytest.fixture
def k8s_events() -> tuple[list[dict[str, Any]], Counters]:
    counters = Counters(start=41)
    batch = from_k8s_event_list(sample("k8s_event_list.json"), "prod-eu", counters)
    assert batch.rejected == batch.duplicates == []
    return batch.events, counters


def k8s_items() -> list[str]:
    """The items of the sample EventList, each as the text the API server sent."""
    _, texts = object_with_array(sample("k8s_event_list.json"), "items", 10, "audit events")
    assert texts is not None
    return texts


def test_k8s_each_item_becomes_one_valid_api_activity_event(k8s_events):
    produced, counters = k8s_events
    items = sample_obj("k8s_event_list.json")["items"]
    assert len(produced) == len(items) == 3
    for event, item, text in zip(produced, items, k8s_items(), strict=True):
        assert_valid(event)
        assert schema_errors(event["data"]) == []
        assert event["type"] == "io.auditseal.api_activity"
        assert event["id"] == f"{item['auditID']}/{item['stage']}"
        assert event["source"] == "k8s://prod-eu" == k8s_source("prod-eu")
        assert event["data"]["raw_data"] == text  # verbatim, as the API server sent it
        assert orjson.loads(event["data"]["raw_data"]) == item
        assert event["data"]["unmapped"]["stage"] == item["stage"]
    assert [e["sequence"] for e in produced] == [41, 42, 43]
    assert counters.calls == ["k8s://prod-eu"] * 3


def test_k8s_create_maps_field_by_field(k8s_events):
    data = k8s_events[0][0]["data"]
    assert data["actor"]["user"] == {
        "name": "kubernetes-admin",
        "groups": [{"name": "system:masters"}, {"name": "system:authenticated"}],
    }
    assert data["api"]["operation"] == "create"
    assert data["api"]["request"] == {"uid": "d2a97a82-f39e-41d0-8b31-dd74f42ac7fe"}
    assert data["api"]["response"] == {"code": 201}
    assert data["api"]["version"] == "v1"
    assert (
        data["metadata"]["uid"]
        == data["metadata"]["correlation_uid"]
        == data["api"]["request"]["uid"]
    )
    assert (data["activity_id"], data["type_uid"]) == (1, 600301)
    assert data["resources"] == [{"type": "pods", "name": "logtest1", "namespace": "kube-system"}]
    assert data["src_endpoint"] == {"ip": "192.168.229.157"}
    assert (data["status_id"], data["status_code"]) == (1, "201")
    assert data["http_request"] == {
        "user_agent": "kubectl/v1.20.1 (linux/amd64) kubernetes/c4d7527",
        "url": {
            "path": "/api/v1/namespaces/kube-system/pods",
            "query_string": "fieldManager=kubectl-run",
        },
    }
    assert data["actor"]["authorizations"] == [{"decision": "allow"}]
    assert data["metadata"]["product"] == {
        "name": "Kubernetes API server",
        "vendor_name": "Kubernetes",
    }
    # what OCSF has no attribute for stays in `unmapped`, nothing the mapping carried
    assert data["unmapped"] == {
        "level": "Metadata",
        "stage": "ResponseComplete",
        "responseStatus": {"metadata": {}},
    }


def test_k8s_times_come_from_request_received_and_stage_timestamps(k8s_events):
    event = k8s_events[0][0]
    assert event["time"] == "2021-02-10T00:28:46.451356Z"  # microseconds kept
    received = parse_rfc3339("2021-02-10T00:28:46.451356Z")
    assert event["data"]["time"] == event["data"]["start_time"] == epoch_millis(received)
    assert event["data"]["end_time"] == epoch_millis(parse_rfc3339("2021-02-10T00:28:46.466102Z"))


def test_k8s_subresource_uid_and_api_group(k8s_events):
    data = k8s_events[0][1]["data"]
    assert data["actor"]["user"]["uid"] == "43ee00d0-fd9a-48ff-9e74-da11e39144fe"
    assert data["resources"] == [
        {"type": "addonsets/status", "name": "root-admin", "namespace": "root"}
    ]
    assert data["api"]["group"] == {"name": "addon.private.gdc.goog"}
    assert data["activity_id"] == 3  # patch → Update
    (authorization,) = data["actor"]["authorizations"]
    assert authorization["policy"]["name"] == "RBAC"  # the authorizer that decided
    assert authorization["policy"]["desc"].startswith("RBAC: allowed by")
    assert "extra" in data["unmapped"]["user"]  # user.extra has no OCSF attribute


def test_k8s_forbidden_request_is_a_failure(k8s_events):
    data = k8s_events[0][2]["data"]
    assert (data["activity_id"], data["status_id"], data["status"]) == (2, 2, "Failure")
    assert (data["status_code"], data["status_detail"]) == ("403", "Forbidden")
    assert data["message"].startswith('secrets "db-credentials" is forbidden')
    assert data["actor"]["authorizations"] == [{"decision": "forbid"}]
    assert data["src_endpoint"] == {"ip": "172.31.9.19"}  # the first of sourceIPs


def test_k8s_input_object_is_not_modified():
    doc = sample_obj("k8s_event_list.json")
    before = copy.deepcopy(doc)
    produced = from_k8s_event_list(orjson.dumps(doc), "c", Counters()).events
    produced[0]["data"]["unmapped"]["level"] = "changed"  # the copy is the event's own
    assert doc == before


def test_k8s_stage_without_response_is_status_unknown():
    doc = sample_obj("k8s_event_list.json")
    item = doc["items"][0]
    item["stage"] = "RequestReceived"
    del item["responseStatus"], item["stageTimestamp"]
    (event,) = from_k8s_event_list(orjson.dumps({**doc, "items": [item]}), "c", Counters()).events
    assert event["data"]["status_id"] == 0
    assert event["id"].endswith("/RequestReceived")
    assert "end_time" not in event["data"]


def test_k8s_empty_or_null_items_produce_nothing_and_consume_no_sequence():
    counters = Counters()
    for items in ([], None):
        body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
        assert from_k8s_event_list(orjson.dumps(body), "c", counters) == K8sBatch()
    assert counters.calls == []


def test_k8s_cluster_names_are_percent_encoded_into_the_source():
    batch = from_k8s_event_list(sample("k8s_event_list.json"), "eu west/1", Counters())
    assert batch.events[0]["source"] == "k8s://eu%20west%2F1"
    assert_valid(batch.events[0])
    with pytest.raises(ValueError):
        from_k8s_event_list(sample("k8s_event_list.json"), "", Counters())


def k8s_body_with(*edits: tuple[int, str, Any]) -> bytes:
    """The sample EventList with item fields replaced (or removed with ...)."""
    doc = sample_obj("k8s_event_list.json")
    for index, key, value in edits:
        if value is ...:
            del doc["items"][index][key]
        else:
            doc["items"][index][key] = value
    return orjson.dumps(doc)


def rejections(batch: K8sBatch) -> list[str]:
    return [str(e) for r in batch.rejected for e in r.errors]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ([(1, "auditID", ...)], ["items[1].auditID: required"]),
        ([(0, "auditID", "")], ["items[0].auditID: must be a non-empty string"]),
        ([(2, "verb", ...)], ["items[2].verb: required"]),
        ([(0, "user", ...)], ["items[0].user: required"]),
        ([(0, "user", {"groups": ["g"]})], ["items[0].user.username: required (or user.uid)"]),
        (
            [(0, "user", {"username": "a", "groups": "g"})],
            ["items[0].user.groups: must be a JSON array of strings"],
        ),
        ([(0, "sourceIPs", ...)], ["items[0].sourceIPs: required"]),
        ([(0, "sourceIPs", [])], ["items[0].sourceIPs: must be a non-empty JSON array"]),
        ([(0, "sourceIPs", ["localhost"])], ["items[0].sourceIPs[0]: not an IP address"]),
        (
            [(0, "stageTimestamp", "yesterday")],
            ["items[0].stageTimestamp: not an RFC 3339 timestamp"],
        ),
        (
            [(0, "requestReceivedTimestamp", ...), (0, "stageTimestamp", ...)],
            ["items[0].requestReceivedTimestamp: required (or stageTimestamp)"],
        ),
        (
            [(0, "responseStatus", {"code": "201"})],
            ["items[0].responseStatus.code: must be an integer"],
        ),
        ([(0, "objectRef", "pods")], ["items[0].objectRef: must be a JSON object"]),
        ([(0, "kind", "Policy")], ["items[0].kind: must be 'Event'"]),
        ([(0, "stage", 3)], ["items[0].stage: must be a non-empty string"]),
        (
            [(0, "auditID", ...), (0, "verb", ...), (2, "sourceIPs", ["x"])],
            [
                "items[0].auditID: required",
                "items[0].verb: required",
                "items[2].sourceIPs[0]: not an IP address",
            ],
        ),
    ],
)
def test_k8s_bad_items_are_reported_and_the_good_ones_kept(edits, expected):
    counters = Counters()
    batch = from_k8s_event_list(k8s_body_with(*edits), "c", counters)
    assert rejections(batch) == expected
    bad = sorted({index for index, _, _ in edits})
    assert [r.index for r in batch.rejected] == bad
    assert batch.indices == [i for i in range(3) if i not in bad]
    assert counters.calls == ["k8s://c"] * len(batch.events)  # refused items are not numbered
    assert [e["sequence"] for e in batch.events] == list(range(1, len(batch.events) + 1))
    for event in batch.events:
        assert schema_errors(event["data"]) == []


def test_k8s_a_rejected_item_names_its_audit_id():
    batch = from_k8s_event_list(k8s_body_with((2, "verb", ...)), "c", Counters())
    (rejected,) = batch.rejected
    assert rejected.as_json() == {
        "index": 2,
        "auditID": "4e2a4193-cb3d-4ff7-bf37-32c392fbc23b",
        "errors": ["items[2].verb: required"],
    }


def test_k8s_an_item_ocsf_refuses_is_rejected_naming_the_ocsf_field():
    # a verb the mapping carries as api.operation, but a user OCSF cannot take (a number)
    batch = from_k8s_event_list(k8s_body_with((0, "userAgent", 7)), "c", Counters())
    assert batch.rejected == []  # a non-text user agent is simply not mapped
    assert batch.events[0]["data"]["unmapped"]["userAgent"] == 7


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "$: not valid JSON"),
        (b"[]", "$: must be a JSON object"),
        (
            b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","items":[]}',
            "kind: must be 'EventList'",
        ),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}',
            "apiVersion: must be 'audit.k8s.io/v1'",
        ),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{}}',
            "items: must be a JSON array",
        ),
    ],
)
def test_k8s_bad_bodies_are_refused(body, expected):
    with pytest.raises(EnvelopeError) as caught:
        from_k8s_event_list(body, "c", Counters())
    assert messages(caught.value)[0].startswith(expected)


def test_k8s_an_item_that_is_not_an_object_is_rejected_alone():
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[7]}'
    assert rejections(from_k8s_event_list(body, "c", Counters())) == [
        "items[0]: must be a JSON object"
    ]


def test_k8s_wrong_kind_and_version_are_both_reported():
    with pytest.raises(EnvelopeError) as caught:
        from_k8s_event_list(b'{"kind":"List","apiVersion":"v1","items":[]}', "c", Counters())
    assert messages(caught.value) == [
        "kind: must be 'EventList'",
        "apiVersion: must be 'audit.k8s.io/v1'",
    ]


def test_k8s_an_item_too_large_is_rejected_alone_before_numbering():
    doc = sample_obj("k8s_event_list.json")
    doc["items"][1]["requestObject"] = {"data": {"blob": "x" * 5000}}
    counters = Counters()
    batch = from_k8s_event_list(orjson.dumps(doc), "c", counters, max_bytes=6000)
    (rejected,) = batch.rejected
    assert rejected.index == 1
    assert str(rejected.errors[0]).startswith("items[1]: event of ")
    assert batch.indices == [0, 2]
    assert counters.calls == ["k8s://c"] * 2


def test_k8s_size_is_measured_with_the_widest_sequence():
    produced = from_k8s_event_list(sample("k8s_event_list.json"), "c", Counters()).events
    widest = max(len(encode_event({**e, "sequence": MAX_SEQUENCE})) for e in produced)
    # A limit that fits every event with sequence 1 but not with the widest sequence is refused
    # up front, so no later sequence number can push an accepted event over the limit.
    batch = from_k8s_event_list(
        sample("k8s_event_list.json"), "c", Counters(), max_bytes=widest - 1
    )
    assert batch.rejected


def test_k8s_an_event_too_long_for_raw_data_keeps_everything_in_unmapped():
    doc = sample_obj("k8s_event_list.json")
    doc["items"][0]["requestObject"] = {"blob": "x" * 70_000}  # OCSF caps raw_data at 65,535
    (event, *_) = from_k8s_event_list(orjson.dumps(doc), "c", Counters()).events
    assert "raw_data" not in event["data"]
    assert event["data"]["unmapped"]["requestObject"] == {"blob": "x" * 70_000}
    assert schema_errors(event["data"]) == []


def test_k8s_a_bad_counter_is_a_caller_bug():
    with pytest.raises(ValueError, match="next_sequence"):
        from_k8s_event_list(sample("k8s_event_list.json"), "c", lambda source: 0)


def test_k8s_stages_of_one_request_are_distinct_events():
    doc = sample_obj("k8s_event_list.json")
    received = {**doc["items"][0], "stage": "RequestReceived"}
    batch = from_k8s_event_list(
        orjson.dumps({**doc, "items": [received, doc["items"][0]]}), "c", Counters()
    )
    assert batch.duplicates == []
    assert [e["id"].rsplit("/", 1)[1] for e in batch.events] == [
        "RequestReceived",
        "ResponseComplete",
    ]


def test_k8s_an_identical_copy_in_a_batch_is_flagged_and_not_sealed_twice():
    doc = sample_obj("k8s_event_list.json")
    items = doc["items"]
    counters = Counters()
    batch = from_k8s_event_list(
        orjson.dumps({**doc, "items": [items[0], items[1], items[0]]}), "c", counters
    )
    assert batch.indices == [0, 1]
    assert [d.as_json() for d in batch.duplicates] == [
        {"index": 2, "id": batch.events[0]["id"], "first": 0, "same": True}
    ]
    assert counters.calls == ["k8s://c"] * 2


def test_k8s_a_different_event_under_a_seen_id_is_sealed_and_flagged():
    doc = sample_obj("k8s_event_list.json")
    other = {**doc["items"][0], "verb": "delete"}  # same auditID and stage, other content
    batch = from_k8s_event_list(
        orjson.dumps({**doc, "items": [doc["items"][0], other]}), "c", Counters()
    )
    assert batch.indices == [0, 1]  # evidence is never dropped
    assert [(d.index, d.first, d.same) for d in batch.duplicates] == [(1, 0, False)]


def test_k8s_a_resent_batch_is_recognised_through_the_accepted_digests():
    first = from_k8s_event_list(sample("k8s_event_list.json"), "c", Counters())
    seen = {e["id"]: d for e, d in zip(first.events, first.digests, strict=True)}
    counters = Counters()
    again = from_k8s_event_list(
        sample("k8s_event_list.json"), "c", counters, accepted_digest=seen.get
    )
    assert again.events == [] and counters.calls == []
    assert [(d.index, d.first, d.same) for d in again.duplicates] == [
        (0, None, True),
        (1, None, True),
        (2, None, True),
    ]


# Real audit events written by kube-apiserver, from Falco's test traces (tests/data/README.md).
FALCO_K8S = sorted((DATA / "k8s_falco").glob("*.json"))


def test_k8s_real_api_server_events_map_to_valid_ocsf():
    assert len(FALCO_K8S) == 5
    items = [p.read_text().strip() for p in FALCO_K8S]
    body = (
        '{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + ",".join(items)
        + "]}"
    ).encode()
    batch = from_k8s_event_list(body, "minikube", Counters())
    assert batch.rejected == [] and batch.duplicates == []
    assert len(batch.events) == len(items)
    for event, text in zip(batch.events, items, strict=True):
        assert_valid(event)
        assert schema_errors(event["data"]) == []
        assert event["data"]["raw_data"] == text
    by_name = {p.stem: e["data"] for p, e in zip(FALCO_K8S, batch.events, strict=True)}
    # generateName: the pod's name is the one the server generated (level RequestResponse)
    assert by_name["create_nginx_pod_privileged"]["resources"] == [
        {"type": "pods", "namespace": "default", "name": "nginx-deployment-5cdcc99dbf-rgw6z"}
    ]
    assert by_name["exec_pod"]["resources"][0]["type"] == "pods/exec"
    assert by_name["exec_pod"]["status_id"] == 1  # 101 Switching Protocols
    assert by_name["anonymous_creates_namespace_foo"]["actor"]["user"]["name"] == (
        "system:anonymous"
    )
    assert by_name["delete_secret"]["activity_id"] == 4
    assert by_name["attach_cluster_admin_role"]["api"]["group"] == {
        "name": "rbac.authorization.k8s.io"
    }
    # audit.k8s.io/v1beta1 items keep their version, and their v1beta1-only members unmapped
    assert by_name["anonymous_creates_namespace_foo"]["metadata"]["log_version"] == (
        "audit.k8s.io/v1beta1"
    )
    assert "timestamp" in by_name["anonymous_creates_namespace_foo"]["unmapped"]


def test_k8s_a_collection_request_names_the_collection():
    doc = sample_obj("k8s_event_list.json")
    item = doc["items"][0]
    item["verb"] = "list"
    del item["objectRef"]["name"]
    (event,) = from_k8s_event_list(orjson.dumps({**doc, "items": [item]}), "c", Counters()).events
    assert event["data"]["resources"] == [
        {"type": "pods", "namespace": "kube-system", "name": "pods"}
    ]


def test_adapters_want_bytes():
    with pytest.raises(TypeError):
        from_k8s_event_list("{}", "c", Counters())  # type: ignore[arg-type]


def test_a_k8s_event_list_of_more_items_than_allowed_is_refused_before_they_are_parsed():
    doc = sample_obj("k8s_event_list.json")
    counters = Counters()
    batch = from_k8s_event_list(
        sample("k8s_event_list.json"), "c", counters, max_items=len(doc["items"])
    )
    assert len(batch.events) == len(doc["items"])
    tiny = orjson.dumps({**doc, "items": [{}] * 1_000_001})
    with pytest.raises(BatchTooLarge) as caught:
        from_k8s_event_list(tiny, "c", counters)
    assert str(caught.value.errors[0]) == "$: more than 1000 audit events in one batch"
    assert counters.calls == ["k8s://c"] * len(doc["items"])  # nothing numbered for it


def test_a_k8s_item_orjson_refuses_is_named():
    body = sample("k8s_event_list.json").replace(b'"items": [', b'"items": [NaN, ', 1)
    assert b"NaN" in body
    batch = from_k8s_event_list(body, "c", Counters())
    assert rejections(batch)[0].startswith("items[0]: not valid JSON")
    assert batch.indices == [1, 2, 3]
