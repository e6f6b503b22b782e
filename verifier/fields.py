"""Strict readers of decoded JSON: each checks one field's type and shape and, when it is
wrong, raises a :class:`~auditseal.verifier.errors.FormatError` naming the field by its dotted path
(``bundle.block.entries[3].salt: want 32 lowercase hex digits``). The sealed stream and proof
bundles are read with them.

:func:`loads_strict` is the way in for a whole document: standard JSON, but a key given twice
in one object (which ``json`` and ``orjson`` silently read last-wins, so two readers could see
two different documents) and the non-JSON constants ``NaN``/``Infinity`` are format errors.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from auditseal.verifier.errors import FormatError

__all__ = [
    "base64_field",
    "boolean",
    "field",
    "hex_field",
    "hex_list",
    "integer",
    "list_at",
    "loads_strict",
    "object_at",
    "string",
]


def field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise FormatError(f"{where}.{key}: missing")
    return data[key]


def integer(data: Mapping[str, Any], key: str, where: str, *, signed: bool = False) -> int:
    value = field(data, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or (value < 0 and not signed):
        kind = "an integer" if signed else "a non-negative integer"
        raise FormatError(f"{where}.{key}: want {kind}, got {value!r}")
    return value


def boolean(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = field(data, key, where)
    if not isinstance(value, bool):
        raise FormatError(f"{where}.{key}: want true or false, got {value!r}")
    return value


def string(data: Mapping[str, Any], key: str, where: str, *, nullable: bool = False) -> Any:
    value = field(data, key, where)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise FormatError(f"{where}.{key}: want a string, got {type(value).__name__}")
    return value


def _hex_digits(value: str, where: str, size: int) -> bytes:
    if len(value) != 2 * size or value != value.lower():
        raise FormatError(f"{where}: want {2 * size} lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise FormatError(f"{where}: not hex") from exc


def hex_field(
    data: Mapping[str, Any], key: str, where: str, size: int, *, nullable: bool = False
) -> Any:
    value = string(data, key, where, nullable=nullable)
    return None if value is None else _hex_digits(value, f"{where}.{key}", size)


def hex_list(value: object, where: str, size: int) -> tuple[bytes, ...]:
    """A JSON array of hex strings of ``size`` bytes each, named ``where[i]`` in errors."""
    out = []
    for i, item in enumerate(list_at(value, where)):
        if not isinstance(item, str):
            raise FormatError(f"{where}[{i}]: want {2 * size} lowercase hex digits")
        out.append(_hex_digits(item, f"{where}[{i}]", size))
    return tuple(out)


def base64_field(data: Mapping[str, Any], key: str, where: str) -> bytes | None:
    value = string(data, key, where, nullable=True)
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{where}.{key}: not base64") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise FormatError(f"{where}.{key}: not canonical base64")
    return raw


def object_at(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FormatError(f"{where}: want a JSON object, got {type(value).__name__}")
    return value


def list_at(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(f"{where}: want a JSON array, got {type(value).__name__}")
    return value


class _Duplicated(dict[str, Any]):
    """A decoded object that had ``key`` more than once (kept to name it by its path)."""

    key: str = ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(raw: bytes | str, where: str) -> Any:
    """Decode one JSON document, refusing a key given twice in any object.

    Raises FormatError naming the field by its dotted path from ``where``
    (``bundle.anchor.receipt.tx_hash: key given twice``), or ``where: not JSON: ...``.
    The duplicate check costs one ``dict()`` per object; the path is only searched for when
    a duplicate was seen.
    """
    duplicated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        duplicated = True
        marked = _Duplicated(pairs)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        return marked

    try:
        value = json.loads(raw, object_pairs_hook=pairs_hook, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise FormatError(f"{where}: not JSON: {exc}") from exc
    if duplicated:
        path = _find_duplicate(value, where)
        raise FormatError(f"{path}: key given twice")
    return value


def _find_duplicate(value: Any, where: str) -> str:
    """The dotted path of the first duplicated key, depth first (iterative: no recursion
    limit on a deeply nested document)."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Duplicated):
            return f"{path}.{item.key}"
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return where
