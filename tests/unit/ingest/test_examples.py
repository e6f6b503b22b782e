"""The example events the docs hand to users (README's `curl` line) are valid as they stand."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from auditseal.ingest.envelope import validate

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "docs" / "examples").glob("*.json"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_event_is_valid(path):
    assert validate(orjson.loads(path.read_bytes())) == []
