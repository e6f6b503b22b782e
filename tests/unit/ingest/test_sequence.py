"""Folding a second sequence state file into the one a counter reads."""

from __future__ import annotations

import json

import pytest

from auditseal.ingest.sequence import SequenceCounter, merge_into


def test_merge_keeps_the_higher_next_number_per_source_and_removes_the_other(tmp_path):
    path, other = tmp_path / "sequences.json", tmp_path / "http-sequences.json"
    path.write_text(json.dumps({"a": 10, "b": 3}))
    other.write_text(json.dumps({"a": 4, "b": 30, "c": 7}))
    merge_into(path, other)
    assert json.loads(path.read_text()) == {"a": 10, "b": 30, "c": 7}
    assert not other.exists()
    counter = SequenceCounter(path)
    assert [counter.next(s) for s in "abcd"] == [10, 30, 7, 1]


def test_merge_without_the_other_file_changes_nothing(tmp_path):
    merge_into(tmp_path / "sequences.json", tmp_path / "absent.json")
    assert not (tmp_path / "sequences.json").exists()


def test_merge_of_a_bad_file_names_it(tmp_path):
    other = tmp_path / "http-sequences.json"
    other.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"http-sequences\.json: not a sequence state file"):
        merge_into(tmp_path / "sequences.json", other)
    assert other.exists()
