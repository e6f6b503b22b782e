"""Splitting a JSON array item by item, and refusing a batch past its limit before building it."""

from __future__ import annotations

import time
import tracemalloc

import orjson
import pytest

from auditseal.ingest.errors import BatchTooLarge, EnvelopeError
from auditseal.ingest.jsonsplit import array_items, object_with_array


def test_items_come_back_as_their_texts_whatever_they_hold():
    body = b' [ {"a": "x,]}[\\"", "b": [1, {"c": null}]} ,\n2, "s" , [], {} ] '
    items = array_items(body, 10)
    assert [orjson.loads(i) for i in items] == [
        {"a": 'x,]}["', "b": [1, {"c": None}]},
        2,
        "s",
        [],
        {},
    ]
    assert array_items(b"[]", 10) == [] and array_items(b"\n[ ]\n", 1) == []


def test_a_batch_at_the_limit_passes_and_one_more_item_is_refused():
    assert len(array_items(b"[" + b",".join([b"{}"] * 5) + b"]", 5)) == 5
    with pytest.raises(BatchTooLarge) as caught:
        array_items(b"[" + b",".join([b"{}"] * 6) + b"]", 5)
    assert str(caught.value.errors[0]) == "$: more than 5 events in one batch"
    # refused at the item past the limit, whatever follows it
    with pytest.raises(BatchTooLarge):
        array_items(b"[1,2,3,4,5,6, this is not JSON", 5)


def test_a_million_tiny_items_cost_no_more_than_the_limit():
    body = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(BatchTooLarge):
        array_items(body, 1000)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the text of the body (3 MB) plus a thousand items, never a million objects (~100 MB)
    assert peak < 3 * len(body)
    assert elapsed < 0.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1,", "$: not valid JSON: expected a value at character 3"),
        (b"[1 2]", "$: not valid JSON: expected ',' or ']' at character 3"),
        (b"[1] x", "$: not valid JSON: unexpected data after the value at character 4"),
        (b"{}", "$: not valid JSON: expected '[' at character 0"),
        (b'["\xff"]', "$: not valid JSON: not UTF-8 at byte 2"),
        (b'["a\nb"]', "$: not valid JSON: Invalid control character at"),
        (b"[" * 5000 + b"]" * 5000, "$: not valid JSON: nested too deeply"),
    ],
)
def test_bodies_that_are_not_one_json_array_are_refused(body, message):
    with pytest.raises(EnvelopeError) as caught:
        array_items(body, 10)
    assert str(caught.value.errors[0]).startswith(message)


def test_an_object_with_its_array_member_split():
    body = b'{"kind": "EventList", "items": [{"a": 1}, {"b": [2]}], "metadata": {}}'
    doc, texts = object_with_array(body, "items", 10)
    assert doc == {"kind": "EventList", "metadata": {}}
    assert texts is not None and [orjson.loads(t) for t in texts] == [{"a": 1}, {"b": [2]}]
    with pytest.raises(BatchTooLarge) as caught:
        object_with_array(b'{"items": [1, 2, 3]}', "items", 2, "audit events")
    assert str(caught.value.errors[0]) == "$: more than 2 audit events in one batch"


def test_a_member_that_is_not_an_array_or_is_repeated_is_parsed_as_orjson_would():
    assert object_with_array(b'{"items": null}', "items", 1) == ({"items": None}, None)
    assert object_with_array(b'{"items": {"x": 1}}', "items", 1) == ({"items": {"x": 1}}, None)
    assert object_with_array(b'{"items": [1], "items": 5}', "items", 1) == ({"items": 5}, None)
    doc, texts = object_with_array(b'{"items": 5, "items": [1]}', "items", 1)
    assert doc == {} and texts == ["1"]
    assert object_with_array(b" {} ", "items", 1) == ({}, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "$: must be a JSON object"),
        (b'{"a" 1}', "$: not valid JSON: expected ':' at character 5"),
        (b"{a: 1}", "$: not valid JSON: expected a member name at character 1"),
        (b'{"a": 1,}', "$: not valid JSON: expected a member name at character 8"),
        (b'{"a": NaN}', "a: not valid JSON"),
        (b'{"a": 1} {}', "$: not valid JSON: unexpected data after the value"),
    ],
)
def test_objects_that_are_not_json_are_refused(body, message):
    with pytest.raises(EnvelopeError) as caught:
        object_with_array(body, "items", 10)
    assert str(caught.value.errors[0]).startswith(message)


def test_deep_nesting_is_refused_whatever_recursion_limit_the_process_set():
    # py_ecc (imported by web3) raises the limit to 100,000 for the whole process; under it
    # the scanner would accept (or, deeper, crash on) what the default limit refuses.
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(EnvelopeError, match="nested too deeply"):
            array_items(b"[" + b"[" * 5000 + b"]" * 5000 + b"]", 1000)
        assert sys.getrecursionlimit() == 100_000  # the process's own setting is left alone
    finally:
        sys.setrecursionlimit(old)
