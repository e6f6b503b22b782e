"""Strict readers of decoded JSON: each checks one field's type and shape and, when it is
wrong, raises a :class:`~verifier.errors.FormatError` naming the field by its dotted path
(``bundle.block.entries[3].salt: want 32 lowercase hex digits``). The sealed stream and proof
bundles are read with them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from verifier.errors import FormatError

__all__ = [
    "base64_field",
    "boolean",
    "field",
    "hex_field",
    "hex_list",
    "integer",
    "list_at",
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
