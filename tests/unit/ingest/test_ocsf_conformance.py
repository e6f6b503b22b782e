"""Every event auditseal produces is valid OCSF 1.3.0, by the official schema; the gateway
refuses what OCSF refuses.

Sources checked: the traffic simulator (every proxy kind, success and failure), the builders,
the JSON examples in docs/ (extracted from the markdown, so a docs edit is checked), and the
Kubernetes adapter over the payloads in tests/data (the Teleport adapter has its own tests).
Failures are reported grouped by OCSF class, with the first problems of each.
"""

from __future__ import annotations

import copy
import enum
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema_rs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditseal.ingest import envelope, events, ocsf_schema
from auditseal.ingest.adapters import from_k8s_event_list
from auditseal.ingest.envelope import parse_event, triage, validate
from auditseal.ingest.errors import EnvelopeError
from auditseal.ingest.ocsf_schema import class_validator, is_valid, schema_errors
from auditseal.ingest.recent import RecentEvents
from auditseal.ingest.simulator import PROXY_KINDS, TrafficModel, simulated_proxies

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def invalid_by_class(produced: Iterable[dict[str, Any]]) -> dict[int, list[str]]:
    """OCSF problems of each event's data, grouped by class: {class_uid: ["id: path: msg"]}."""
    found: dict[int, list[str]] = defaultdict(list)
    for event in produced:
        data = event["data"]
        for problem in schema_errors(data):
            found[data.get("class_uid", 0)].append(f"{event.get('id')}: {problem}")
    return dict(found)


def report(found: dict[int, list[str]]) -> str:
    return "\n".join(
        f"class {cls}: {len(lines)} problems, e.g. {lines[:3]}" for cls, lines in found.items()
    )


def simulated(n: int) -> list[tuple[str, dict[str, Any]]]:
    model = TrafficModel(simulated_proxies(8), seed=7)
    out = []
    for sequence in range(1, n + 1):
        proxy, build = model.next()
        out.append((proxy.kind, build(sequence)))
    return out


def test_simulated_traffic_is_valid_ocsf():
    produced = simulated(3000)
    found = invalid_by_class(e for _, e in produced)
    assert found == {}, report(found)
    # the model covered every proxy kind, every class, and both outcomes
    assert {kind for kind, _ in produced} == set(PROXY_KINDS)
    seen = Counter((e["data"]["class_uid"], e["data"]["status_id"]) for _, e in produced)
    assert {cls for cls, _ in seen} == {3002, 6003, 6005}
    assert all((cls, status) in seen for cls in (3002, 6003, 6005) for status in (1, 2))


def builder_events() -> list[dict[str, Any]]:
    out = []
    for status in ("success", "failure", "unknown"):
        out += [
            events.api_activity("p://a", 1, "alice", "get", "pods/x", status, "10.0.0.1", T0),
            events.api_activity("p://a", 2, {"uid": "u-1"}, "frobnicate", None, status, "::1", T0),
            events.authentication("p://b", 1, "bob", "logon", status, "10.0.0.2", "sshd", T0),
            events.authentication("p://b", 2, "bob", "logoff", status, "10.0.0.2", "sshd", T0),
            events.datastore_query(
                "p://c", 1, "carol", "billing", "SELECT 1", 3, status, T0, src_ip="10.0.0.3"
            ),
            events.datastore_query(
                "p://c",
                2,
                {"uid": "u-9"},
                {"uid": "db-1", "type_id": 6, "type": "NoSQL"},
                "find({})",
                None,
                status,
                T0,
                query_uid="q-1",
                extra={"src_endpoint": {"hostname": "app-1"}},
            ),
        ]
    return out


def test_builders_produce_valid_ocsf():
    produced = builder_events()
    found = invalid_by_class(produced)
    assert found == {}, report(found)
    assert len(produced) == 18


def docs_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every ```json block in docs/ and README.md that holds an event or a list of events."""
    out = []
    for path in sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]):
        for block in re.findall(r"```json\n(.*?)```", path.read_text(), flags=re.DOTALL):
            try:
                value = orjson.loads(block)
            except orjson.JSONDecodeError:
                continue  # an excerpt with "..." is not an example event
            for item in value if isinstance(value, list) else [value]:
                data = item.get("data") if isinstance(item, dict) else None
                if isinstance(data, dict) and "class_uid" in data:
                    out.append((path.name, item))
    return out


def test_the_docs_examples_are_valid_ocsf_and_valid_events():
    examples = docs_examples()
    assert len(examples) >= 3
    found = invalid_by_class(e for _, e in examples)
    assert found == {}, report(found)
    for name, example in examples:
        assert validate(example) == [], name


def k8s_payloads() -> list[bytes]:
    falco = [p.read_text().strip() for p in sorted((DATA / "k8s_falco").glob("*.json"))]
    wrapped = '{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + ",".join(falco)
    return [(DATA / "k8s_event_list.json").read_bytes(), (wrapped + "]}").encode()]


def test_kubernetes_events_are_valid_ocsf():
    produced = []
    for body in k8s_payloads():
        batch = from_k8s_event_list(body, "c", lambda _source: 1)
        assert batch.rejected == []
        produced += batch.events
    assert len(produced) == 8
    found = invalid_by_class(produced)
    assert found == {}, report(found)


# -- the compiled checker agrees with jsonschema ------------------------------------------------

CORPUS = (
    [e for _, e in simulated(300)]
    + builder_events()
    + [e for _, e in docs_examples()]
    + [e for body in k8s_payloads() for e in from_k8s_event_list(body, "c", lambda _: 1).events]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += paths(child, (*prefix, index))
    return out


def _mutate(data, event: Any, how: str, value: Any, new_keys: list[str]) -> None:
    """Change ``event`` at one drawn place: replace a member, delete it, or add one of
    ``new_keys`` to an object."""
    path = data.draw(st.sampled_from(paths(event)[1:]))
    parent = event
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][data.draw(st.sampled_from(new_keys))] = value


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), how=st.sampled_from(["replace", "delete", "add"]), value=JSON)
def test_jsonschema_rs_agrees_with_jsonschema(data, how, value):
    """jsonschema-rs (the fast path, with the translated patterns) gives jsonschema's verdict
    on real events and on mutations of them anywhere in ``data``."""
    event = copy.deepcopy(data.draw(st.sampled_from(CORPUS)))["data"]
    _mutate(data, event, how, value, ["name", "uid", "type_id", "zz", "ip"])
    cls = event.get("class_uid")
    expected = class_validator(cls).is_valid(event) if cls in (3002, 6003, 6005) else False
    if cls in (3002, 6003, 6005) and ocsf_schema._is_plain(event):
        assert ocsf_schema._rust_validator(cls)(event) == expected
    assert is_valid(event) == expected
    # as the sealer's triage calls it: on what orjson parsed, the look at Python types skipped
    try:
        parsed = orjson.loads(orjson.dumps(event))
    except orjson.JSONEncodeError:
        parsed = None
    if parsed is not None and cls in (3002, 6003, 6005):
        assert is_valid(parsed, parsed=True) == class_validator(cls).is_valid(parsed)
    assert (schema_errors(event) == []) == expected


class Colour(enum.Enum):
    RED = "Success"


class Level(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


class Table(dict):  # type: ignore[type-arg]
    pass


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


# Python values that are not JSON's, some of which jsonschema-rs reads differently from
# jsonschema (a tuple as an array, a Decimal as a number, an Enum as its value, NaN as null).
EXOTIC = st.sampled_from(
    [
        ("a",),
        ({"name": "x"},),
        (),
        Decimal(1),
        Decimal("1.5"),
        Colour.RED,
        Level.ONE,
        Text("Success"),
        Text("10.0.0.1"),
        Table(name="x"),
        Table(),
        float("nan"),
        float("inf"),
        -float("inf"),
        1 << 70,
        -(1 << 70),
        "\ud800",
        {"\ud800": 1},
        {1: "x"},
        b"x",
        {"x"},
        deep(260),
        [deep(260)],
    ]
)


@settings(max_examples=600, deadline=None)
@given(data=st.data(), how=st.sampled_from(["replace", "add"]), value=EXOTIC)
def test_is_valid_gives_jsonschemas_verdict_for_any_python_value(data, how, value):
    """Events built in Python (the emitter validates them) may hold any type: whatever it is,
    is_valid answers as jsonschema does."""
    event = copy.deepcopy(data.draw(st.sampled_from(CORPUS)))["data"]
    _mutate(data, event, how, value, ["name", "uid", "type_id", "zz", "ip", "status"])
    cls = event.get("class_uid")
    expected = class_validator(cls).is_valid(event) if cls in (3002, 6003, 6005) else False
    assert is_valid(event) == expected


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), how=st.sampled_from(["replace", "delete", "add"]), value=JSON)
def test_triage_flags_exactly_what_full_validation_flags(data, how, value):
    """The sealer's triage (one quick pass, jsonschema-rs for OCSF) gives the verdict and reason
    that the full validation path gives (every rule checked and named, jsonschema on every
    event), for real events and mutations of them anywhere: envelope attributes and OCSF data
    alike."""
    event = copy.deepcopy(data.draw(st.sampled_from(CORPUS)))
    if data.draw(st.booleans()):
        _mutate(data, event, how, value, ["name", "uid", "ip", "zz", "time"])
    try:
        raw = orjson.dumps(event)
    except orjson.JSONEncodeError:
        raw = repr(event).encode()  # not JSON at all: flagged either way

    def by_jsonschema(data: Any, class_uid: int | None = None, *, parsed: bool = False) -> bool:
        return not ocsf_schema.schema_problems(data, "data", class_uid)

    verdict = triage(raw)
    with (
        mock.patch.object(ocsf_schema, "is_valid", by_jsonschema),
        mock.patch.object(envelope, "_passes", lambda obj, parsed: False),
    ):
        assert triage(raw) == verdict


def test_jsonschema_rs_checks_every_class():
    for cls in (3002, 6003, 6005):
        assert ocsf_schema._rust_validator(cls) is not None


def test_every_produced_event_takes_the_quick_pass():
    """The corpus is valid, and each event is found so by the quick pass alone (the full
    check, which names problems, would be correct too but slow)."""
    for event in CORPUS:
        assert envelope._passes(event, parsed=False), event.get("id")
        assert envelope._passes(orjson.loads(orjson.dumps(event)), parsed=True)


# -- the patterns mean in jsonschema-rs what they mean in Python's re ---------------------------


def rust_search(pattern: str) -> Callable[[str], bool]:
    check = jsonschema_rs.validator_for(
        {"type": "string", "pattern": ocsf_schema._ecma_pattern(pattern)}
    ).is_valid
    return check


def test_the_translated_classes_match_what_python_matches_at_every_code_point():
    """\\s, \\d and . (and $ before a final newline), one code point at a time, all of
    Unicode but the surrogates (which no JSON text carries)."""
    for pattern in (r"^\s$", r"^\d$", r"^.$", r"^a\s*$"):
        python, rust = re.compile(pattern).search, rust_search(pattern)
        for code in range(0x110000):
            if 0xD800 <= code <= 0xDFFF:
                continue
            char = chr(code)
            for text in (char, char + "\n", "a" + char):
                assert (python(text) is not None) == rust(text), (pattern, hex(code), text)


def ocsf_patterns() -> list[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern" and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for cls in (3002, 6003, 6005):
        walk(class_validator(cls).schema)
    return sorted(found)


PATTERNS = ocsf_patterns()
# Characters that matter to the OCSF patterns (addresses, host names, e-mail, MAC, UUID) and
# those the two regex dialects read differently (Unicode digits and spaces, line ends).
PATTERN_ALPHABET = st.sampled_from(
    [
        *"0123456789abcdefABCDEFxz:.%-@_ ",
        "\n",
        "\r",
        "\t",
        "\x0b",
        "\x1c",
        "\x85",
        "\xa0",
        "\u2028",
        "\u2029",
        "\ufeff",
        "\u3000",
        "\u0661",
        "\u0663",
        "\uff11",
        "\U0001d7d9",
        "é",
    ]
)
PATTERN_SEEDS = [
    "10.0.0.1",
    "192.168.13.168",
    "255.255.255.255",
    "::1",
    "2001:db8::1",
    "fe80::1%eth0",
    "::ffff:10.0.0.1",
    "1:2:3:4:5:6:7:8",
    "host-1.example.com",
    "a@b.example",
    "00:1a:2b:3c:4d:5e",
    "123e4567-e89b-12d3-a456-426614174000",
]


@settings(max_examples=3000, deadline=None)
@given(
    pattern=st.sampled_from(PATTERNS),
    seed=st.sampled_from(PATTERN_SEEDS),
    edits=st.lists(
        st.tuples(
            st.integers(0, 40), st.sampled_from(["insert", "replace", "delete"]), PATTERN_ALPHABET
        ),
        max_size=3,
    ),
    tail=st.sampled_from(["", "\n", "\n\n", " \n", "\r", "\u2028", "\x1c"]),
)
def test_the_ocsf_patterns_accept_the_same_strings_in_both_engines(pattern, seed, edits, tail):
    text = seed
    for at, how, char in edits:
        at = min(at, len(text))
        if how == "insert":
            text = text[:at] + char + text[at:]
        elif how == "replace":
            text = text[:at] + char + text[at + 1 :]
        else:
            text = text[:at] + text[at + 1 :]
    text += tail
    assert (re.search(pattern, text) is not None) == rust_search(pattern)(text), (pattern, text)


@settings(max_examples=500, deadline=None)
@given(pattern=st.sampled_from(PATTERNS), text=st.text(PATTERN_ALPHABET, max_size=50))
def test_the_ocsf_patterns_agree_on_any_string_of_their_alphabet(pattern, text):
    assert (re.search(pattern, text) is not None) == rust_search(pattern)(text), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [r"\w+", r"\bword", "(?=a)b", "(?:a)", "a$b", "[[a]]", "[]a]", r"[\d]", "a{", "a}", r"\Z"],
)
def test_a_pattern_the_translation_does_not_know_is_refused(pattern):
    with pytest.raises(ocsf_schema._Unsupported):
        ocsf_schema._ecma_pattern(pattern)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "ipv4"},
        {"patternProperties": {"a": {}}},
        {"$ref": "https://example.com/other"},
        {"items": [{"type": "string"}]},
        {"type": "string", "pattern": r"\w"},
    ],
)
def test_a_schema_with_an_unchecked_keyword_is_left_to_jsonschema(schema, monkeypatch):
    """`format` and every keyword the tests above do not cover send the class to jsonschema,
    whose verdict is_valid then gives."""
    with pytest.raises(ocsf_schema._Unsupported):
        ocsf_schema._for_rust({"properties": {"x": schema}})
    monkeypatch.setattr(ocsf_schema, "_rust_validator", lambda cls: None)
    good = api()["data"]
    assert is_valid(good)
    assert not is_valid({**good, "status_id": "x"})


# -- the gateway refuses what OCSF refuses ------------------------------------------------------


def api() -> dict[str, Any]:
    return events.api_activity("p://a", 1, "alice", "get", "pods/x", "success", "10.0.0.1", T0)


def datastore() -> dict[str, Any]:
    return events.datastore_query(
        "p://c", 1, "carol", "billing", "SELECT 1", 3, "success", T0, src_ip="10.0.0.3"
    )


def auth() -> dict[str, Any]:
    return events.authentication("p://b", 1, "bob", "logon", "success", "10.0.0.2", "sshd", T0)


def drop(event: dict[str, Any], *path: str) -> dict[str, Any]:
    parent = event["data"]
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (drop(datastore(), "database", "type_id"), "data.database.type_id: required"),
        (
            drop(datastore(), "query_info", "uid"),
            "data.query_info: Query Information needs name or uid",
        ),
        (drop(datastore(), "src_endpoint"), "data.src_endpoint: required"),
        (
            drop(auth(), "metadata", "product", "vendor_name"),
            "data.metadata.product.vendor_name: required",
        ),
        (
            {**api(), "data": {**api()["data"], "raw": {"verb": "get"}}},
            "data.raw: not an attribute of OCSF 1.3.0 API Activity",
        ),
        (
            {**api(), "data": {**api()["data"], "http_response": {"code": 200}}},
            "data.http_response: not an attribute of OCSF 1.3.0 API Activity",
        ),
        (
            {**api(), "data": {**api()["data"], "resources": [{"type": "pods"}]}},
            "data.resources[0]: Resource Details needs name or uid",
        ),
    ],
)
def test_the_envelope_refuses_what_ocsf_refuses_naming_the_field(event, expected):
    assert [str(e) for e in validate(event)] == [expected]
    with pytest.raises(EnvelopeError) as caught:
        parse_event(orjson.dumps(event))
    assert [str(e) for e in caught.value.errors] == [expected]


# -- the gateway's memory of recent Kubernetes events -------------------------------------------


def test_recent_events_remember_digests_and_unacknowledged_records_within_bounds():
    recent = RecentEvents(capacity=2)
    recent.reserve("k8s://c", "a/ResponseComplete", "d1", b"record-a")
    assert recent.digest("k8s://c", "a/ResponseComplete") == "d1"
    assert recent.unacknowledged("k8s://c", "a/ResponseComplete") == b"record-a"
    recent.acknowledge("k8s://c", "a/ResponseComplete")
    assert recent.unacknowledged("k8s://c", "a/ResponseComplete") is None
    assert recent.digest("k8s://other", "a/ResponseComplete") is None  # per source
    recent.reserve("k8s://c", "b/ResponseComplete", "d2", b"b")
    recent.reserve("k8s://c", "c/ResponseComplete", "d3", b"c")
    assert len(recent) == 2 and recent.digest("k8s://c", "a/ResponseComplete") is None
    with pytest.raises(ValueError):
        RecentEvents(capacity=0)
