"""Splitting a JSON array into its items' texts, counting them as it goes.

A batch is refused once it holds more items than allowed, and that must cost no more than a
batch at the limit: parsing a 2 MB body of a million tiny items whole and counting afterwards
builds a million Python objects first. Here the standard library's C scanner reads one item at a
time (``scan_once``), and the split stops at the item past the limit. Each item's text is then
parsed again by the caller with orjson, so what is accepted is exactly what orjson accepts
(``NaN``, lone surrogates or integers past 64 bits pass the scanner but not orjson).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

import orjson

from auditseal.ingest.errors import BatchTooLarge, EnvelopeError, FieldError

__all__ = ["array_items", "object_with_array"]

_SPACE = re.compile(r"[ \t\n\r]*")
# The C scanner where there is one (CPython): one JSON value from a position, and its end.
# (typeshed types the argument as the scanner itself; it is the decoder whose settings it uses)
_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _invalid(message: str) -> EnvelopeError:
    return EnvelopeError([FieldError("$", f"not valid JSON: {message}")])


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"not UTF-8 at byte {exc.start}") from None


def _skip(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string


_RECURSION_LIMIT = 1000  # CPython's default: the scanner recurses once per nesting level


def _value(text: str, pos: int) -> tuple[Any, int]:
    """The JSON value starting at ``pos`` and where it ends."""
    # A library in the same process may have raised the limit (py_ecc, under web3, sets
    # 100,000), where a body of nested brackets would exhaust the C stack before Python's own
    # check: scan under the default limit whatever the process set.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(min(limit, _RECURSION_LIMIT))
    try:
        return _scan(text, pos)
    except StopIteration:
        raise _invalid(f"expected a value at character {pos}") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"{exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise _invalid(f"nested too deeply at character {pos}") from None
    finally:
        sys.setrecursionlimit(limit)


def _value_end(text: str, pos: int) -> int:
    """Where the JSON value starting at ``pos`` ends (it is parsed and dropped)."""
    return _value(text, pos)[1]


def _items(text: str, pos: int, limit: int, what: str) -> tuple[list[str], int]:
    """The items of the array whose ``[`` is at ``pos``, and where the array ends."""
    items: list[str] = []
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        return items, pos + 1
    while True:
        if len(items) == limit:
            raise BatchTooLarge(limit, what)
        end = _value_end(text, pos)
        items.append(text[pos:end])
        pos = _skip(text, end)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("]", pos):
            return items, pos + 1
        else:
            raise _invalid(f"expected ',' or ']' at character {pos}")


def _orjson(value: str, name: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError([FieldError(name, f"not valid JSON: {exc}")]) from None


def _end(text: str, pos: int) -> None:
    pos = _skip(text, pos)
    if pos != len(text):
        raise _invalid(f"unexpected data after the value at character {pos}")


def array_items(body: bytes, limit: int, what: str = "events") -> list[str]:
    """The texts of the items of ``body``, a JSON array (leading whitespace allowed).

    Raises :class:`BatchTooLarge` on reaching item ``limit + 1`` (before reading it), and
    :class:`EnvelopeError` (path ``$``) for a body that is not UTF-8 or not one JSON array.
    """
    text = _text(body)
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        raise _invalid(f"expected '[' at character {pos}")
    items, end = _items(text, pos, limit, what)
    _end(text, end)
    return items


def object_with_array(
    body: bytes, member: str, limit: int, what: str = "items"
) -> tuple[dict[str, Any], list[str] | None]:
    """``body``, a JSON object, with every member parsed except ``member`` when it is an array:
    that one's items come back as texts (split as :func:`array_items` does, with its limit),
    and the object holds no ``member``. When ``member`` is absent or not an array, the texts are
    None and the object holds it as parsed. As in orjson, the last of repeated names wins."""
    text = _text(body)
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        raise EnvelopeError([FieldError("$", "must be a JSON object")])
    doc: dict[str, Any] = {}
    texts: list[str] | None = None
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        _end(text, pos + 1)
        return doc, None
    while True:
        if not text.startswith('"', pos):
            raise _invalid(f"expected a member name at character {pos}")
        name, pos = _value(text, pos)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise _invalid(f"expected ':' at character {pos}")
        pos = _skip(text, pos + 1)
        if name == member and text.startswith("[", pos):
            texts, pos = _items(text, pos, limit, what)
            doc.pop(name, None)
        else:
            end = _value_end(text, pos)
            doc[name] = _orjson(text[pos:end], name)
            if name == member:
                texts = None
            pos = end
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("}", pos):
            _end(text, pos + 1)
            return doc, texts
        else:
            raise _invalid(f"expected ',' or '}}' at character {pos}")
