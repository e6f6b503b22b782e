"""The envelope: every validation rule, size limits, batches, and the builders' properties."""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditseal.ingest import envelope, events
from auditseal.ingest.envelope import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    MAX_SEQUENCE,
    encode_event,
    epoch_millis,
    is_uri_reference,
    parse_batch,
    parse_event,
    parse_rfc3339,
    validate,
)
from auditseal.ingest.errors import (
    BatchTooLarge,
    EnvelopeError,
    EventTooLarge,
    FieldError,
    IngestError,
    UnsupportedMediaType,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
DELETE = object()


def api_event() -> dict[str, Any]:
    return events.api_activity(
        "proxy://gw-1", 1, "alice", "get", "pods", "success", "10.0.0.1", T0, "evt-1"
    )


def auth_event() -> dict[str, Any]:
    return events.authentication(
        "proxy://bastion", 7, "bob", "logon", "failure", "2001:db8::1", "ssh", T0, "evt-2"
    )


def datastore_event() -> dict[str, Any]:
    return events.datastore_query(
        "proxy://pg-gw",
        3,
        "carol",
        "billing",
        "SELECT 1",
        1,
        "success",
        T0,
        "evt-3",
        src_ip="10.20.0.14",
    )


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "api": api_event,
    "auth": auth_event,
    "datastore": datastore_event,
}


def with_(event: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``event`` with the member at ``dotted`` set to ``value`` (or removed)."""
    event = copy.deepcopy(event)
    *parents, last = dotted.split(".")
    target = event
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return event


def problems(obj: object) -> list[str]:
    return [str(e) for e in validate(obj)]


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


# -- the error vocabulary -------------------------------------------------------------------------


def test_error_classes_form_one_hierarchy_with_exit_code_2():
    error = EnvelopeError([FieldError("sequence", "required")])
    assert isinstance(error, IngestError) and isinstance(error, ValueError)
    assert error.exit_code == 2
    assert error.errors == (FieldError("sequence", "required"),)
    assert "sequence: required" in str(error)
    too_large = EventTooLarge(10, 5)
    assert isinstance(too_large, EnvelopeError) and isinstance(too_large, ValueError)
    assert (too_large.size, too_large.limit) == (10, 5)
    assert str(too_large.errors[0]) == "$: event of 10 bytes exceeds the limit of 5 bytes"
    assert isinstance(UnsupportedMediaType("text/plain", ["application/json"]), IngestError)


def test_field_error_is_frozen_and_prints_path_colon_message():
    error = FieldError("data.actor.user", "required")
    assert str(error) == "data.actor.user: required"
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.path = "x"  # type: ignore[misc]


def test_envelope_error_needs_at_least_one_error():
    with pytest.raises(ValueError):
        EnvelopeError([])


# -- valid events ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_produce_valid_events(name):
    event = BUILDERS[name]()
    assert validate(event) == []
    assert parse_event(encode_event(event)) == event


def test_optional_attributes_and_extensions_are_accepted():
    event = api_event()
    event.update(
        subject="pods/web-1",
        dataschema="https://auditseal.example/schemas/api_activity.json",
        datacontenttype="application/json; charset=utf-8",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        partitionkey="tenant-1",
        retried=True,
        hops=3,
        unsetextension=None,
        **{"a" * 20: "twenty characters is the limit"},
    )
    assert problems(event) == []


def test_null_optional_attributes_count_as_unset():
    event = api_event()
    event.update(subject=None, dataschema=None, datacontenttype=None)
    assert problems(event) == []


# -- required attributes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["specversion", "id", "source", "type", "time", "sequence", "data"]
)
def test_each_required_attribute_missing_is_named(name):
    assert problems(with_(api_event(), name, DELETE)) == [f"{name}: required"]


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "time", "sequence"])
def test_a_null_required_attribute_counts_as_missing(name):
    assert problems(with_(api_event(), name, None)) == [f"{name}: required"]


@pytest.mark.parametrize("value", ["0.3", "1", 1.0, 1, ""])
def test_specversion_must_be_1_0(value):
    assert problems(with_(api_event(), "specversion", value)) == ['specversion: must be "1.0"']


@pytest.mark.parametrize("value", ["", 5, ["a"], {"a": 1}, True])
def test_id_must_be_a_non_empty_string(value):
    assert problems(with_(api_event(), "id", value)) == ["id: must be a non-empty string"]


@pytest.mark.parametrize("value", ["", 5, True])
def test_source_must_be_a_non_empty_string(value):
    assert problems(with_(api_event(), "source", value)) == ["source: must be a non-empty string"]


@pytest.mark.parametrize(
    "value",
    ["has space", "1bad:scheme", "bad%zz", "tab\there", "ünïcode://x", "a:b:c\x00"],
)
def test_source_must_be_a_uri_reference(value):
    assert problems(with_(api_event(), "source", value)) == [
        "source: not a URI-reference (RFC 3986)"
    ]


@pytest.mark.parametrize(
    "value",
    [
        "/mycontext",
        "k8s://prod-eu",
        "teleport://leaf.example.com:443",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "https://github.com/cloudevents/spec/pull/123",
        "mysql-gw-1",
        "relative/path?q=1#frag",
        "k8s://my%20cluster",
    ],
)
def test_source_accepts_uri_references(value):
    assert is_uri_reference(value)
    assert problems(with_(api_event(), "source", value)) == []


@pytest.mark.parametrize("value", ["", 5])
def test_type_must_be_a_non_empty_string(value):
    assert problems(with_(api_event(), "type", value)) == ["type: must be a non-empty string"]


def test_unknown_type_is_refused_and_names_the_known_ones():
    (problem,) = problems(with_(api_event(), "type", "com.example.other"))
    assert problem.startswith("type: unknown event type 'com.example.other'")
    assert "io.auditseal.api_activity" in problem


# -- time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01 12:00:00Z",  # space separator: ISO 8601, not RFC 3339
        "2024-05-01T12:00:00",  # no offset
        "2024-05-01",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:60:00Z",
        "2024-05-01T12:00:61Z",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00:00.Z",
        "2024-W18-3T12:00:00Z",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # fullwidth digits: \d would match them
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC: outside datetime's range
        "9999-12-31T23:59:60Z",  # a leap second into year 10000
        "9999-12-31T23:00:00-05:00",
        "yesterday",
        "",
        1714564800,
        True,
    ],
)
def test_time_must_be_rfc3339(value):
    assert problems(with_(api_event(), "time", value)) == ["time: not an RFC 3339 timestamp"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:30", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T07:00:00-05:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),  # a leap second
    ],
)
def test_rfc3339_timestamps_parse_to_utc(value, expected):
    assert parse_rfc3339(value) == expected
    assert problems(with_(api_event(), "time", value)) == []


# -- sequence -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "1", True, False, 1.5, 1.0, [1], {"n": 1}])
def test_sequence_must_be_an_integer_of_at_least_1(value):
    assert problems(with_(api_event(), "sequence", value)) == ["sequence: must be an integer >= 1"]


def test_sequence_has_a_64_bit_ceiling():
    assert problems(with_(api_event(), "sequence", MAX_SEQUENCE)) == []
    assert problems(with_(api_event(), "sequence", MAX_SEQUENCE + 1)) == [
        f"sequence: must be at most {MAX_SEQUENCE}"
    ]


def test_a_sequence_too_large_for_a_json_integer_parses_as_a_float_and_is_refused():
    raw = encode_event(api_event()).replace(b'"sequence":1', b'"sequence":18446744073709551616')
    with pytest.raises(EnvelopeError) as caught:
        parse_event(raw)
    assert [str(e) for e in caught.value.errors] == ["sequence: must be an integer >= 1"]


# -- optional attributes and extensions -----------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["text/plain", "application/xml", "application/cloudevents+json", 5]
)
def test_datacontenttype_must_be_application_json(value):
    assert problems(with_(api_event(), "datacontenttype", value)) == [
        'datacontenttype: must be "application/json"'
    ]


@pytest.mark.parametrize("value", ["", 5])
def test_subject_must_be_a_non_empty_string(value):
    assert problems(with_(api_event(), "subject", value)) == ["subject: must be a non-empty string"]


@pytest.mark.parametrize("value", ["relative/schema.json", "", "has space", "https://x/s#frag"])
def test_dataschema_must_be_an_absolute_uri(value):
    assert problems(with_(api_event(), "dataschema", value)) == [
        "dataschema: not an absolute URI (RFC 3986)"
    ]


@pytest.mark.parametrize(
    "name", ["Bad", "has-dash", "under_score", "a" * 21, "ünïcode", "with space", "dotted.name"]
)
def test_extension_names_must_be_lowercase_alphanumeric_up_to_20(name):
    event = api_event()
    event[name] = "value"
    (problem,) = validate(event)
    assert problem.path == name
    assert problem.message.startswith("not a valid extension attribute name")


def test_an_empty_extension_name_is_refused():
    event = api_event()
    event[""] = "value"
    assert [e.path for e in validate(event)] == ["''"]


@pytest.mark.parametrize("value", [{"nested": 1}, [1, 2], 1.5])
def test_extension_values_must_be_cloudevents_scalars(value):
    event = with_(api_event(), "myext", value)
    assert problems(event) == ["myext: must be a string, an integer or a boolean"]


@pytest.mark.parametrize("value", [1 << 31, -(1 << 31) - 1])
def test_extension_integers_are_32_bit(value):
    event = with_(api_event(), "myext", value)
    assert problems(event) == ["myext: must be a 32-bit signed integer (CloudEvents Integer)"]


def test_data_base64_is_refused():
    event = with_(api_event(), "data_base64", "aGVsbG8=")
    assert problems(event) == [
        "data_base64: not accepted: send the event data as a JSON object in data"
    ]


@pytest.mark.parametrize("value", [None, [], "string", 5])
def test_data_must_be_an_object(value):
    assert problems(with_(api_event(), "data", value)) == ["data: must be a JSON object"]


# -- data, per OCSF class -------------------------------------------------------------------------
# What OCSF 1.3.0 requires comes from its published schema (ingest/ocsf_schema.py); these cases
# pin the paths and messages the gateway answers with.

COMMON_DATA = [
    ("class_uid", "data.class_uid: required"),
    ("category_uid", "data.category_uid: required"),
    ("activity_id", "data.activity_id: required"),
    ("type_uid", "data.type_uid: required"),
    ("time", "data.time: required"),
    ("severity_id", "data.severity_id: required"),
    ("metadata", "data.metadata: required"),
    ("metadata.version", "data.metadata.version: required"),
    ("metadata.product", "data.metadata.product: required"),
    ("metadata.product.name", "data.metadata.product: Product needs name or uid"),
    ("metadata.product.vendor_name", "data.metadata.product.vendor_name: required"),
]
ENDPOINT_NEEDS = (
    "Network Endpoint needs ip or uid or name or hostname or svc_name or instance_uid"
    " or interface_uid or interface_name"
)
ACTOR_NEEDS = "Actor needs process or user or invoked_by or session or app_name or app_uid"
MISSING_DATA = [
    *[("api", path, expected) for path, expected in COMMON_DATA],
    *[("auth", path, expected) for path, expected in COMMON_DATA],
    *[("datastore", path, expected) for path, expected in COMMON_DATA],
    ("api", "actor", "data.actor: required"),
    ("api", "actor.user", f"data.actor: {ACTOR_NEEDS}"),
    ("api", "api", "data.api: required"),
    ("api", "api.operation", "data.api.operation: required"),
    ("api", "src_endpoint", "data.src_endpoint: required"),
    ("api", "src_endpoint.ip", f"data.src_endpoint: {ENDPOINT_NEEDS}"),
    ("auth", "user", "data.user: required"),
    ("auth", "service", "data: Authentication needs service or dst_endpoint"),
    ("datastore", "actor.user", f"data.actor: {ACTOR_NEEDS}"),
    ("datastore", "src_endpoint", "data.src_endpoint: required"),
    ("datastore", "database", "data: Datastore Activity needs database or databucket or table"),
    ("datastore", "database.type_id", "data.database.type_id: required"),
    ("datastore", "query_info.uid", "data.query_info: Query Information needs name or uid"),
    ("datastore", "query_info.query_string", "data.query_info.query_string: required"),
]


@pytest.mark.parametrize(("kind", "path", "expected"), MISSING_DATA)
def test_each_required_data_member_missing_is_named(kind, path, expected):
    event = with_(BUILDERS[kind](), f"data.{path}", DELETE)
    assert problems(event) == expected.split("; ")


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("api", "status_id"),  # OCSF recommends status_id; it does not require it
        ("auth", "src_endpoint"),  # Authentication does not require a source endpoint
        ("datastore", "query_info"),  # a Connect or Read needs no query
    ],
)
def test_what_ocsf_leaves_optional_may_be_left_out(kind, path):
    assert problems(with_(BUILDERS[kind](), f"data.{path}", DELETE)) == []


def test_authentication_accepts_a_destination_endpoint_instead_of_a_service():
    event = with_(auth_event(), "data.service", DELETE)
    event["data"]["dst_endpoint"] = {"hostname": "bastion-1"}
    assert problems(event) == []


def test_a_source_endpoint_ip_must_be_an_ip_address():
    # OCSF's pattern for ip_t lets "1x2x3x4" through; auditseal checks the address itself.
    for kind in BUILDERS:
        for bad in ("nope", "1x2x3x4", "10.0.0.256"):
            event = with_(BUILDERS[kind](), "data.src_endpoint", {"ip": bad})
            assert problems(event) == ["data.src_endpoint.ip: not an IP address"], (kind, bad)


def test_members_ocsf_does_not_define_are_refused_and_named():
    event = with_(api_event(), "data.raw", {"verb": "get"})
    event["data"]["actor"]["authorizations"] = [{"decision": "allow", "policy": {"desc": "x"}}]
    event["data"]["http_response"] = {"code": 200}
    assert problems(event) == [
        "data.actor.authorizations[0].policy: Policy needs name or uid",
        "data.http_response: not an attribute of OCSF 1.3.0 API Activity",
        "data.raw: not an attribute of OCSF 1.3.0 API Activity",
    ]


def test_unmapped_and_raw_data_carry_what_ocsf_does_not_name():
    event = with_(api_event(), "data.unmapped", {"stage": "ResponseComplete", "n": [1, {}]})
    event["data"]["raw_data"] = '{"verb":"get"}'
    assert problems(event) == []
    assert problems(with_(event, "data.raw_data", {"verb": "get"})) == [
        "data.raw_data: must be a string"
    ]


def test_a_problem_message_never_echoes_the_value():
    huge = "x" * 100_000
    event = with_(api_event(), "data.actor.user", {"uid": [huge]})
    event["data"]["raw_data"] = huge
    found = problems(event)
    assert found == [
        "data.actor.user.uid: must be a string",
        "data.raw_data: longer than 65535 characters",
    ]


@pytest.mark.parametrize(
    ("kind", "path", "value", "expected"),
    [
        ("api", "actor", "alice", "data.actor: must be an object"),
        ("api", "actor.user", "alice", "data.actor.user: must be an object"),
        ("api", "actor.user", {}, "data.actor.user: User needs account or name or uid"),
        ("api", "actor.user", {"uid": 7}, "data.actor.user.uid: must be a string"),
        ("api", "src_endpoint.ip", "10.0.0.256", "data.src_endpoint.ip: not an IP address"),
        ("api", "src_endpoint.ip", 167772161, "data.src_endpoint.ip: must be a string"),
        ("api", "resources", "pods", "data.resources: must be an array"),
        ("api", "resources", [{"name": "a"}, 1], "data.resources[1]: must be an object"),
        (
            "api",
            "resources",
            [{"type": "pods"}],
            "data.resources[0]: Resource Details needs name or uid",
        ),
        ("api", "activity_id", 5, "data.activity_id: must be one of [0, 1, 2, 3, 4, 99]"),
        ("api", "activity_id", "2", "data.activity_id: must be an integer"),
        (
            "api",
            "type_uid",
            600399,
            "data.type_uid: must be 600302 (class_uid * 100 + activity_id)",
        ),
        ("api", "type_uid", "600302", "data.type_uid: must be an integer"),
        ("api", "time", "1714564800123", "data.time: must be an integer"),
        ("api", "time", True, "data.time: must be an integer"),
        (
            "api",
            "time",
            1714564800123.0,
            "data.time: must be an integer (milliseconds since the Unix epoch)",
        ),
        ("api", "severity_id", 7, "data.severity_id: must be one of [0, 1, 2, 3, 4, 5, 6, 99]"),
        ("api", "status_id", 3, "data.status_id: must be one of [0, 1, 2, 99]"),
        ("api", "category_uid", 3, "data.category_uid: must be 6"),
        ("auth", "user", {"groups": []}, "data.user: User needs account or name or uid"),
        ("auth", "service", "ssh", "data.service: must be an object"),
        ("auth", "activity_id", 4, None),  # Service Ticket Request is a valid OCSF activity
        ("auth", "actor", [], "data.actor: must be an object"),
        (
            "datastore",
            "database",
            {"type": "postgres", "type_id": 1},
            "data.database: Database needs name or uid",
        ),
        (
            "datastore",
            "database.type_id",
            7,
            "data.database.type_id: must be one of [0, 1, 2, 3, 4, 5, 6, 99]",
        ),
        (
            "datastore",
            "activity_id",
            11,
            "data.activity_id: must be one of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99]",
        ),
    ],
)
def test_wrong_data_values_are_named(kind, path, value, expected):
    event = with_(BUILDERS[kind](), f"data.{path}", value)
    if path == "activity_id" and expected is None:
        event["data"]["type_uid"] = event["data"]["class_uid"] * 100 + value
    assert problems(event) == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    ("kind", "other_type", "other_class"),
    [
        ("api", "io.auditseal.authentication", 3002),
        ("auth", "io.auditseal.datastore_activity", 6005),
        ("datastore", "io.auditseal.api_activity", 6003),
    ],
)
def test_class_uid_must_match_the_type(kind, other_type, other_class):
    event = with_(BUILDERS[kind](), "type", other_type)
    found = problems(event)
    assert f"data.class_uid: must be {other_class} for type {other_type!r}" in found


def test_every_error_is_reported_at_once_in_a_stable_order():
    event = api_event()
    event["specversion"] = "0.3"
    del event["id"]
    event["time"] = "not a time"
    event["sequence"] = 0
    event["Bad-Ext"] = 1
    del event["data"]["actor"]
    event["data"]["src_endpoint"]["ip"] = "nope"
    assert problems(event) == [
        'specversion: must be "1.0"',
        "id: required",
        "time: not an RFC 3339 timestamp",
        "sequence: must be an integer >= 1",
        "Bad-Ext: not a valid extension attribute name "
        "(lower-case letters a-z and digits 0-9, at most 20 characters)",
        "data.src_endpoint.ip: not an IP address",
        "data.actor: required",
    ]


@pytest.mark.parametrize("value", [[], "event", None, 5, [api_event()]])
def test_validate_refuses_non_objects(value):
    assert problems(value) == ["$: must be a JSON object"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    where=st.sampled_from(
        [
            "id",
            "source",
            "type",
            "time",
            "sequence",
            "data",
            "datacontenttype",
            "dataschema",
            "subject",
            "ext",
            "data.actor",
            "data.actor.user",
            "data.user",
            "data.api",
            "data.src_endpoint",
            "data.metadata",
            "data.metadata.product",
            "data.database",
            "data.query_info",
            "data.resources",
            "data.activity_id",
            "data.service",
        ]
    ),
    value=JSON,
)
def test_validate_never_raises_whatever_a_member_holds(kind, where, value):
    event = BUILDERS[kind]()
    *parents, last = where.split(".")
    target = event
    for part in parents:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[last] = value
    found = validate(event)
    assert all(isinstance(e, FieldError) for e in found)


# -- the quick pass gives the full check's verdict -------------------------------------------------


class Text(str):
    pass


class Level(enum.IntEnum):
    ONE = 1


# Values that break one rule or another, or sit on a rule's edge, beside any JSON value.
TRICKY = st.sampled_from(
    [
        None,
        "",
        "1.0",
        "x",
        0,
        1,
        -1,
        True,
        False,
        1.0,
        1.5,
        MAX_SEQUENCE,
        MAX_SEQUENCE + 1,
        1 << 31,
        -(1 << 31),
        -(1 << 31) - 1,
        1 << 64,
        float("nan"),
        float("inf"),
        [],
        {},
        ("a",),
        Text("x"),
        Text("1.0"),
        Level.ONE,
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00.5+01:00",
        "2024-02-30T12:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T23:59:60Z",
        "9999-12-31T23:59:60Z",
        "0001-01-01T00:00:00+01:00",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-05-01T12:00:00+24:00",
        "proxy://gw-1",
        "has space",
        "1:no-scheme",
        "https://x/s#frag",
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        *EVENT_TYPES,
        "io.auditseal.unknown",
        3002,
        6003,
        6005,
        300201,
        600399,
        600501,
        6003.0,
        "6003",
        1714564800000,
        1714564800000.0,
        "10.0.0.1",
        "1x2x3x4",
        "::1",
        "10.0.0.1\n",
        "x" * 70_000,
    ]
)
WHERE = st.sampled_from(
    [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "sequence",
        "datacontenttype",
        "dataschema",
        "subject",
        "data_base64",
        "data",
        "ext",
        "Ext",
        "waytoolongextensionname",
        "data.class_uid",
        "data.activity_id",
        "data.type_uid",
        "data.time",
        "data.status_id",
        "data.src_endpoint",
        "data.src_endpoint.ip",
        "data.actor.user.name",
        "data.metadata.version",
        "data.zz",
    ]
)


def slow_triage(raw: Any) -> tuple[str | None, str | None]:
    """The sealer's triage without its quick pass: every event checked by the full path."""
    with mock.patch.object(envelope, "_passes", lambda obj, parsed: False):
        return envelope.triage(raw)


# Each member's own edge cases, drawn half of the time for the member chosen.
EDGES: dict[str, list[Any]] = {
    "specversion": ["1.0", "1", 1.0, Text("1.0"), None],
    "id": ["", "x", Text("x"), 5, None],
    "source": ["proxy://gw-1", "gw-1", "", "has space", "1:x", "a:b", "%zz", Text("p://a"), 5],
    "type": [*EVENT_TYPES, "io.auditseal.unknown", "", Text(EVENT_TYPES[0]), 5],
    "time": [
        "2024-05-01T12:00:00Z",
        "2024-05-01t12:00:00.123456789z",
        "2024-02-29T12:00:00-23:59",
        "2023-02-29T12:00:00Z",
        "2024-05-01T23:59:60Z",
        "9999-12-31T23:59:60Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
        "0000-01-01T00:00:00Z",
        "2024-05-01T12:00:00+24:00",
        "2024-05-01T12:00Z",
        Text("2024-05-01T12:00:00Z"),
        1714564800,
    ],
    "sequence": [0, 1, -1, MAX_SEQUENCE, MAX_SEQUENCE + 1, 1 << 64, True, 1.0, "1", Level.ONE],
    "datacontenttype": ["application/json", "application/json;x=y", "APPLICATION/JSON", "text/x"],
    "dataschema": ["https://x/s", "relative", "https://x/s#f", ""],
    "subject": ["s", "", 5],
    "ext": [1 << 31, (1 << 31) - 1, -(1 << 31), -(1 << 31) - 1, True, None, "x", 1.5, [], {}],
    "Ext": ["x", None],
    "data.class_uid": [3002, 6003, 6005, 6003.0, "6003", True, 9999, None],
    "data.activity_id": [0, 1, 2, 3, 4, 7, 99, True, 1.0, Level.ONE],
    "data.type_uid": [300201, 300299, 600301, 600399, 600300, 600501, 600599, 6003.0, "600399"],
    "data.time": [1714564800000, 1714564800000.0, 1714564800000.5, "1714564800000", -1],
    "data.src_endpoint.ip": ["10.0.0.1", "1x2x3x4", "::1", "10.0.0.1\n", "fe80::1%eth0", 5],
    "data.actor.user.name": ["x" * 70_000, "", 5, ("a",)],
}


def changed(event: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    """``event`` with ``where`` (dotted) set to ``value``, or removed for DELETE; a change
    under a member that is not an object is left out."""
    *parents, last = where.split(".")
    target: Any = event
    for part in parents:
        target = target.get(part) if isinstance(target, dict) else None
    if isinstance(target, dict):
        if value is not DELETE:
            target[last] = value
        elif last in target:
            del target[last]
    return event


def assert_same_verdicts(obj: Any) -> None:
    """validate() and triage() give exactly what the full check gives, as Python objects and
    as the bytes the sealer reads; the quick pass never says yes to what the full check
    refuses."""
    full = envelope._problems(obj)
    if type(obj) is dict and envelope._passes(obj, parsed=False):
        assert full == []
    assert validate(obj) == full
    try:
        raw = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return
    parsed = orjson.loads(raw)
    if type(parsed) is dict and envelope._passes(parsed, parsed=True):
        assert envelope._problems(parsed) == []
    assert envelope.triage(raw) == slow_triage(raw)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_each_rules_edges_get_the_full_checks_verdict(kind):
    """Every member's edge cases, one at a time (DELETE: the member left out)."""
    for where, values in EDGES.items():
        for value in [*values, DELETE]:
            assert_same_verdicts(changed(BUILDERS[kind](), where, value))


@settings(max_examples=3000, deadline=None)
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    data=st.data(),
    wrap=st.sampled_from([None, None, None, "list", "string"]),
)
def test_the_quick_pass_gives_the_full_checks_verdict(kind, data, wrap):
    """Events broken in every way the rules know, several at once (wrong types, missing
    members, bad times, sequence limits, class and type mismatches, oversized values,
    extensions, non-objects), get the full check's verdict."""
    obj: Any = BUILDERS[kind]()
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(WHERE)
        edges = EDGES.get(where)
        value = data.draw(
            st.sampled_from([*edges, DELETE])
            if edges and data.draw(st.booleans())
            else TRICKY | JSON | st.just(DELETE)
        )
        obj = changed(obj, where, value)
    if wrap == "list":
        obj = [obj]
    elif wrap == "string":
        obj = "event"
    assert_same_verdicts(obj)


def test_valid_events_take_the_quick_pass():
    for build in BUILDERS.values():
        event = build()
        assert envelope._passes(event, parsed=False)
        assert envelope._passes(orjson.loads(orjson.dumps(event)), parsed=True)
    extended = {**api_event(), "traceparent": "00-ab-cd-01", "n": 5, "flag": True, "x": None}
    assert envelope._passes(extended, parsed=False)


@pytest.mark.parametrize(
    "raw",
    [
        bytearray(encode_event(api_event())),
        memoryview(encode_event(api_event())),
        b"[" * 300 + b"]" * 300,
        orjson.dumps({**api_event(), "data": {**api_event()["data"], "unmapped": {"a": [[]]}}}),
    ],
)
def test_triage_of_unusual_bytes_is_the_full_paths(raw):
    assert envelope.triage(raw) == slow_triage(raw)


def test_triage_refuses_what_orjson_cannot_write_back_as_before():
    """orjson reads 1024 levels of nesting but writes 254: such a record is flagged whichever
    way it goes."""
    raw = (
        orjson.dumps({k: v for k, v in api_event().items() if k != "data"})[:-1]
        + b',"data":'
        + orjson.dumps(api_event()["data"])[:-1]
        + b',"unmapped":{"deep":'
        + b"[" * 300
        + b"]" * 300
        + b"}}}"
    )
    verdict = envelope.triage(raw)
    assert verdict == slow_triage(raw)
    assert verdict[1] is not None


def test_triage_flags_a_record_too_deep_for_the_full_check_instead_of_raising():
    """An invalid value 500 levels down (OCSF lets a process nest its parent): naming the
    problem may take jsonschema deeper than Python's recursion limit (whether it does depends on
    the limit the process runs with). Either way the record is flagged, never raised on."""
    inner = b'{"pid":"x"}'
    for _ in range(500):
        inner = b'{"pid":1,"parent_process":' + inner + b"}"
    event = api_event()
    event["data"]["actor"]["process"] = {"pid": 2}
    raw = encode_event(event).replace(b'{"pid":2}', inner)
    event_id, reason = envelope.triage(raw)
    assert event_id == "evt-1"
    assert reason is not None and reason.startswith("invalid event: ")


DIGITS = st.integers(0, 99).map(lambda n: f"{n:02d}")


@settings(max_examples=2000, deadline=None)
@given(
    year=st.sampled_from(["0000", "0001", "1970", "2024", "9999"]),
    month=DIGITS,
    day=DIGITS,
    hour=DIGITS,
    minute=DIGITS,
    second=st.sampled_from(["00", "59", "60", "61"]) | DIGITS,
    t=st.sampled_from(["T", "t", " "]),
    fraction=st.sampled_from(["", ".5", ".999999", ".9999999", ".", ".000001"]),
    offset=st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "+24:00"])
    | st.tuples(st.sampled_from("+-"), DIGITS, DIGITS).map(lambda p: f"{p[0]}{p[1]}:{p[2]}"),
)
def test_the_quick_time_check_accepts_what_parse_rfc3339_accepts(
    year, month, day, hour, minute, second, t, fraction, offset
):
    value = f"{year}-{month}-{day}{t}{hour}:{minute}:{second}{fraction}{offset}"
    try:
        parse_rfc3339(value)
        accepted = True
    except ValueError:
        accepted = False
    assert envelope._is_rfc3339(value) == accepted, value


# -- parse_event and encode_event -----------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid event whose compact encoding is exactly ``size`` bytes."""
    event = api_event()
    event["pad"] = ""
    base = len(encode_event(event))
    event["pad"] = "x" * (size - base)
    raw = encode_event(event, max_bytes=size)
    assert len(raw) == size
    return raw


def test_parse_event_returns_the_parsed_object():
    event = api_event()
    assert parse_event(encode_event(event)) == event


def test_an_event_exactly_at_the_limit_is_accepted_and_one_byte_more_is_refused():
    at_limit = padded(MAX_EVENT_BYTES)
    assert parse_event(at_limit)["pad"].startswith("x")
    over = padded(MAX_EVENT_BYTES + 1)
    with pytest.raises(EventTooLarge) as caught:
        parse_event(over)
    assert (caught.value.size, caught.value.limit) == (MAX_EVENT_BYTES + 1, MAX_EVENT_BYTES)


def test_the_size_is_checked_before_parsing():
    # Not JSON at all: a parse-first implementation would answer "not valid JSON" instead.
    with pytest.raises(EventTooLarge):
        parse_event(b"\xff" * 101, max_bytes=100)
    with pytest.raises(EnvelopeError) as caught:
        parse_event(b"\xff" * 100, max_bytes=100)
    assert not isinstance(caught.value, EventTooLarge)


def test_encode_event_refuses_an_event_over_the_limit_and_never_truncates():
    raw = padded(2000)
    event = orjson.loads(raw)
    assert encode_event(event, max_bytes=2000) == raw
    with pytest.raises(EventTooLarge) as caught:
        encode_event(event, max_bytes=1999)
    assert (caught.value.size, caught.value.limit) == (2000, 1999)


def test_encode_event_is_compact():
    raw = encode_event(api_event())
    assert b": " not in raw and b", " not in raw and b"\n" not in raw


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"{}}", b'{"a": NaN}', b'{"a":"\xff"}', b"\xef\xbb\xbf{}"],
)
def test_non_json_is_refused_with_path_dollar(raw):
    with pytest.raises(EnvelopeError) as caught:
        parse_event(raw)
    (error,) = caught.value.errors
    assert error.path == "$"
    assert error.message.startswith("not valid JSON")
    assert isinstance(caught.value.__cause__, orjson.JSONDecodeError)


@pytest.mark.parametrize("raw", [b"[]", b'"event"', b"1", b"null", b"[{}]"])
def test_json_that_is_not_an_object_is_refused(raw):
    with pytest.raises(EnvelopeError) as caught:
        parse_event(raw)
    assert [str(e) for e in caught.value.errors] == ["$: must be a JSON object"]


def test_parse_event_reports_every_envelope_error():
    event = with_(api_event(), "sequence", True)
    del event["data"]["actor"]
    with pytest.raises(EnvelopeError) as caught:
        parse_event(encode_event(event))
    assert [str(e) for e in caught.value.errors] == [
        "sequence: must be an integer >= 1",
        "data.actor: required",
    ]


def test_parse_event_wants_bytes_and_a_positive_limit():
    with pytest.raises(TypeError):
        parse_event('{"id": "x"}')  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_event(b"{}", max_bytes=0)


# -- parse_batch ----------------------------------------------------------------------------------


def ok(result: tuple[int, Any]) -> bool:
    return isinstance(result[1], dict)


def errors_of(result: tuple[int, Any]) -> list[str]:
    assert isinstance(result[1], EnvelopeError)
    return [str(e) for e in result[1].errors]


def three_items() -> list[Any]:
    bad = with_(auth_event(), "sequence", 0)
    del bad["data"]["user"]
    return [api_event(), bad, "not an event"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/cloudevents+json",
        "application/json; charset=utf-8",
        "Application/CloudEvents+JSON; charset=UTF-8",
    ],
)
def test_a_single_event_body(content_type):
    event = api_event()
    assert parse_batch(body(event), content_type) == [(0, event)]


def test_a_single_invalid_event_reports_plain_paths():
    result = parse_batch(body(with_(api_event(), "sequence", -1)), "application/json")
    assert [i for i, _ in result] == [0]
    assert errors_of(result[0]) == ["sequence: must be an integer >= 1"]


def test_a_single_event_over_the_limit_is_refused_before_parsing():
    ((index, error),) = parse_batch(b"{" + b" " * 200 + b"}", "application/json", max_bytes=100)
    assert index == 0 and isinstance(error, EventTooLarge)


@pytest.mark.parametrize("content_type", ["application/json", "application/cloudevents-batch+json"])
def test_a_json_array_reports_each_item_under_its_index(content_type):
    result = parse_batch(body(three_items()), content_type)
    assert [i for i, _ in result] == [0, 1, 2]
    assert ok(result[0])
    assert errors_of(result[1]) == [
        "[1].sequence: must be an integer >= 1",
        "[1].data.user: required",
    ]
    assert errors_of(result[2]) == ["[2]: must be a JSON object"]


def test_an_empty_cloudevents_batch_is_valid():
    assert parse_batch(b"[]", "application/cloudevents-batch+json") == []
    assert parse_batch(b" [ ] ", "application/json") == []


def test_an_array_member_over_the_limit_is_refused_in_place():
    events = [api_event(), orjson.loads(padded(3000))]
    result = parse_batch(body(events), "application/json", max_bytes=2999)
    assert ok(result[0])
    error = result[1][1]
    assert isinstance(error, EventTooLarge)
    assert str(error.errors[0]) == "[1]: event of 3000 bytes exceeds the limit of 2999 bytes"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl"])
def test_ndjson_one_event_per_line_with_a_trailing_newline(content_type):
    lines = b"\n".join(body(item) for item in three_items()) + b"\n"
    result = parse_batch(lines, content_type)
    assert [i for i, _ in result] == [0, 1, 2]
    assert ok(result[0])
    assert errors_of(result[1]) == [
        "[1].sequence: must be an integer >= 1",
        "[1].data.user: required",
    ]
    assert errors_of(result[2]) == ["[2]: must be a JSON object"]


def test_ndjson_accepts_crlf_and_no_final_newline():
    raw = body(api_event()) + b"\r\n" + body(datastore_event())
    result = parse_batch(raw, "application/x-ndjson")
    assert [ok(r) for r in result] == [True, True]


def test_ndjson_blank_and_broken_lines_are_errors_of_that_line():
    raw = body(api_event()) + b"\n\n{broken\n" + body(auth_event()) + b"\n"
    result = parse_batch(raw, "application/x-ndjson")
    assert [i for i, _ in result] == [0, 1, 2, 3]
    assert errors_of(result[1]) == ["[1]: blank line"]
    (broken,) = errors_of(result[2])
    assert broken.startswith("[2]: not valid JSON")
    assert ok(result[0]) and ok(result[3])


def test_ndjson_lines_are_size_checked_before_parsing():
    raw = body(api_event()) + b"\n" + b"\xff" * 5000 + b"\n"
    result = parse_batch(raw, "application/x-ndjson", max_bytes=4000)
    assert ok(result[0])
    assert isinstance(result[1][1], EventTooLarge)
    assert str(result[1][1].errors[0]).startswith("[1]: event of 5000 bytes")


def test_batch_items_report_all_their_errors():
    bad = api_event()
    bad["time"] = "soon"
    bad["sequence"] = "1"
    del bad["data"]["api"]
    result = parse_batch(body([bad]), "application/cloudevents-batch+json")
    assert errors_of(result[0]) == [
        "[0].time: not an RFC 3339 timestamp",
        "[0].sequence: must be an integer >= 1",
        "[0].data.api: required",
    ]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_a_batch_of_more_items_than_allowed_is_refused_before_parsing(content_type):
    ndjson = content_type == "application/x-ndjson"

    def batch(n: int, item: bytes = b"{}") -> bytes:
        return b"\n".join([item] * n) + b"\n" if ndjson else b"[" + b",".join([item] * n) + b"]"

    assert len(parse_batch(batch(3, body(api_event())), content_type, max_items=3)) == 3
    with pytest.raises(BatchTooLarge) as caught:
        parse_batch(batch(4), content_type, max_items=3)
    assert str(caught.value.errors[0]) == "$: more than 3 events in one batch"
    # the default: a thousand
    assert len(parse_batch(batch(1000), content_type)) == 1000
    with pytest.raises(BatchTooLarge):
        parse_batch(batch(1_000_000, b"1"), content_type)


def test_an_ndjson_body_without_its_final_newline_counts_its_last_line():
    raw = body(api_event()) + b"\n" + body(api_event())
    assert len(parse_batch(raw, "application/x-ndjson", max_items=2)) == 2
    with pytest.raises(BatchTooLarge):
        parse_batch(raw, "application/x-ndjson", max_items=1)


def test_an_array_member_orjson_refuses_is_that_members_error():
    raw = b"[" + body(api_event()) + b", NaN, " + body(api_event()) + b"]"
    result = parse_batch(raw, "application/json")
    assert [ok(r) for r in result] == [True, False, True]
    (error,) = errors_of(result[1])
    assert error.startswith("[1]: not valid JSON")


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b"", "application/json", "$: empty body"),
        (b" \n", "application/x-ndjson", "$: empty body"),
        (b"[1,", "application/json", "$: not valid JSON"),
        (b"{oops", "application/cloudevents+json", "$: not valid JSON"),
        (b'"event"', "application/json", "$: must be a JSON object or a JSON array"),
        (b"[]", "application/cloudevents+json", "$: must be a JSON object"),
        (b"{}", "application/cloudevents-batch+json", "$: must be a JSON array"),
    ],
)
def test_bodies_that_cannot_be_split_into_events_raise(raw, content_type, message):
    with pytest.raises(EnvelopeError) as caught:
        parse_batch(raw, content_type)
    assert str(caught.value.errors[0]).startswith(message)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "", "application/xml", "application/json; charset=latin-1", "multipart/mixed"],
)
def test_other_content_types_are_refused(content_type):
    with pytest.raises(UnsupportedMediaType) as caught:
        parse_batch(body(api_event()), content_type)
    assert caught.value.content_type == content_type
    assert "application/cloudevents-batch+json" in str(caught.value)


# -- builders -------------------------------------------------------------------------------------


def test_builders_default_to_a_uuid4_id_and_the_current_time(monkeypatch):
    monkeypatch.setattr(events, "now", lambda: T0)
    event = events.api_activity("proxy://gw", 1, "alice", "get", None, "success", "10.0.0.1")
    assert uuid.UUID(event["id"]).version == 4
    assert event["time"] == "2024-05-01T12:00:00.123Z"
    assert event["data"]["time"] == epoch_millis(T0) == 1714564800123
    assert "resources" not in event["data"]


def test_builder_time_keeps_microseconds_and_converts_to_utc():
    moment = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert events.format_time(moment) == "2024-05-01T12:00:00.123456Z"
    with pytest.raises(ValueError):
        events.format_time(datetime(2024, 5, 1))


@pytest.mark.parametrize(
    ("operation", "activity_id"),
    [
        ("create", 1),
        ("POST", 1),
        ("get", 2),
        ("list", 2),
        ("watch", 2),
        ("patch", 3),
        ("update", 3),
        ("delete", 4),
        ("deletecollection", 4),
        ("access_list.create", 1),
        ("impersonate", 99),
        ("session.start", 99),
    ],
)
def test_activity_for_operation(operation, activity_id):
    assert events.activity_for_operation(operation) == activity_id
    event = events.api_activity("p", 1, "a", operation, None, "success", "::1", T0)
    assert event["data"]["activity_id"] == activity_id
    assert event["data"]["type_uid"] == 600300 + activity_id


def test_authentication_logon_logoff_and_denial():
    denied = events.authentication("p", 1, "eve", "logon", "failure", "10.1.1.1", "ssh", T0)
    assert (denied["data"]["activity_id"], denied["data"]["status_id"]) == (1, 2)
    assert denied["data"]["status"] == "Failure"
    logoff = events.authentication("p", 2, "eve", "logoff", "success", "10.1.1.1", "ssh", T0)
    assert (logoff["data"]["activity_id"], logoff["data"]["status_id"]) == (2, 1)
    assert logoff["data"]["type_uid"] == 300202
    with pytest.raises(ValueError):
        events.authentication("p", 3, "eve", "login", "success", "10.1.1.1", "ssh", T0)  # type: ignore[arg-type]


def test_datastore_query_carries_query_database_and_rows():
    event = events.datastore_query(
        "p",
        1,
        {"name": "carol", "uid": "u-7"},
        {"name": "billing", "type": "postgres"},
        "DELETE FROM invoices",
        42,
        "success",
        T0,
        src_ip="192.0.2.7",
    )
    data = event["data"]
    assert (data["class_uid"], data["activity_id"], data["type_uid"]) == (6005, 4, 600504)
    # OCSF requires an identifier of the query (by default the event's) and a database type
    assert data["query_info"] == {"uid": event["id"], "query_string": "DELETE FROM invoices"}
    assert data["database"] == {"name": "billing", "type": "postgres", "type_id": 0}
    assert data["actor"]["user"] == {"name": "carol", "uid": "u-7"}
    assert data["unmapped"] == {"rows": 42}
    assert data["src_endpoint"] == {"ip": "192.0.2.7"}


def test_builders_refuse_to_build_an_invalid_event():
    with pytest.raises(EnvelopeError) as caught:
        events.api_activity("has space", 0, {"uid": 7}, "get", None, "success", "nope", T0)
    assert [str(e) for e in caught.value.errors] == [
        "source: not a URI-reference (RFC 3986)",
        "sequence: must be an integer >= 1",
        "data.src_endpoint.ip: not an IP address",
        "data.actor.user.uid: must be a string",
    ]
    with pytest.raises(ValueError):
        events.api_activity("p", 1, "a", "get", None, "denied", "::1", T0)  # type: ignore[arg-type]


def test_extra_is_deep_merged_into_data():
    event = events.api_activity(
        "p",
        1,
        "a",
        "get",
        None,
        "success",
        "::1",
        T0,
        extra={"api": {"request": {"uid": "r-1"}, "response": {"code": 200}}},
    )
    assert event["data"]["api"] == {
        "operation": "get",
        "request": {"uid": "r-1"},
        "response": {"code": 200},
    }


# -- the builder property -------------------------------------------------------------------------

names = st.text(min_size=1, max_size=40)
sources = st.builds(
    lambda scheme, host: f"{scheme}://{host}",
    st.sampled_from(["k8s", "teleport", "proxy", "https"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True),
) | st.from_regex(r"/[a-z0-9/_-]{0,20}", fullmatch=True)
sequences = st.integers(min_value=1, max_value=MAX_SEQUENCE)
times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))]
    ),
)
ips = st.ip_addresses().map(str)
statuses = st.sampled_from(["success", "failure", "unknown"])
users = names | st.fixed_dictionaries({"name": names}, optional={"uid": names})
event_ids = st.none() | names


def api_events() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        events.api_activity,
        sources,
        sequences,
        users,
        names,
        st.none() | names,
        statuses,
        ips,
        times,
        event_ids,
    )


def auth_events() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        events.authentication,
        sources,
        sequences,
        users,
        st.sampled_from(["logon", "logoff"]),
        statuses,
        ips,
        names,
        times,
        event_ids,
    )


def datastore_events() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        events.datastore_query,
        sources,
        sequences,
        users,
        users,
        names,
        st.none() | st.integers(min_value=0, max_value=1 << 40),
        statuses,
        times,
        event_ids,
        src_ip=ips,
    )


@settings(max_examples=300, deadline=None)
@given(event=api_events() | auth_events() | datastore_events())
def test_built_events_always_validate_and_round_trip(event):
    assert validate(event) == []
    raw = encode_event(event)
    assert parse_event(raw) == event
    assert parse_batch(raw, "application/cloudevents+json") == [(0, event)]
    assert event["data"]["time"] == epoch_millis(parse_rfc3339(event["time"]))


# -- the documentation ----------------------------------------------------------------------------

EVENTS_MD = Path(__file__).resolve().parents[3] / "docs" / "EVENTS.md"


def test_the_examples_in_docs_events_md_are_valid():
    text = EVENTS_MD.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    examples = [orjson.loads(block) for block in blocks]
    assert len(examples) == 3
    assert sorted(e["type"] for e in examples) == sorted(
        [
            "io.auditseal.api_activity",
            "io.auditseal.authentication",
            "io.auditseal.datastore_activity",
        ]
    )
    for example in examples:
        assert problems(example) == []
        assert example["data"]["time"] == epoch_millis(parse_rfc3339(example["time"]))


def deeply_nested_event() -> bytes:
    # orjson parses 1024 levels but writes 255: such an event could never be re-encoded.
    raw = encode_event(api_event())
    return raw[:-2] + b',"unmapped":{"deep":' + b"[" * 300 + b"]" * 300 + b"}}}"


def test_an_event_that_cannot_be_re_encoded_is_refused_in_every_shape():
    raw = deeply_nested_event()
    with pytest.raises(EnvelopeError) as caught:
        parse_event(raw)
    assert str(caught.value.errors[0]).startswith("$: cannot be re-encoded")
    for body_, content_type, path in [
        (raw, "application/json", "$"),
        (b"[" + raw + b"]", "application/json", "[0]"),
        (raw + b"\n", "application/x-ndjson", "[0]"),
    ]:
        ((_, error),) = parse_batch(body_, content_type)
        assert isinstance(error, EnvelopeError)
        assert str(error.errors[0]).startswith(f"{path}: cannot be re-encoded")
