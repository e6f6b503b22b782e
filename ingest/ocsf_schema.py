"""The official OCSF 1.3.0 schema, as JSON Schema, and what it says about an event's `data`.

The schema is the one the OCSF project publishes, packaged by `ocsf-json-schema` (its exports of
schema.ocsf.io for each version); `jsonschema` checks an event against the class its `class_uid`
names. Nothing here restates an OCSF rule by hand: when the gateway refuses an event for OCSF
reasons, it is because the published schema does.

Two paths, one schema:

- :func:`is_valid` answers yes or no through jsonschema-rs (PyPI `jsonschema-rs`, in the
  `pipeline` extra), a Rust validator built once per class from the same schema. It is what the
  gateway, the emitter and the sealer's triage run on every event: about 1.5 µs per event,
  where jsonschema itself takes about 1 ms.
- :func:`schema_problems` (and :func:`schema_errors`) run jsonschema for the full list of
  problems, each named by its path; they are only needed once an event is known to be invalid.

The two must give the same verdict, and where they could differ it is handled, not guessed at:

- ``pattern``: jsonschema searches with Python's ``re``, jsonschema-rs with ECMA-262 regular
  expressions, which read ``\\s``, ``\\d``, ``.`` and ``$`` differently. Each pattern is
  translated (:func:`_ecma_pattern`) into one that accepts exactly the strings Python's accepts;
  a construct the translation does not know sends the class to jsonschema.
- keywords: only those the OCSF 1.3.0 export uses, whose meaning the tests compare, go to
  jsonschema-rs; any other (``format`` included: the export has none, and the two libraries
  check formats differently) sends the class to jsonschema.
- Python types: jsonschema-rs reads a tuple as an array, a ``Decimal`` as a number and an
  ``Enum`` as its value, where jsonschema refuses them. Data that is not plain JSON (exact
  ``dict``, ``list``, ``str``, ``int``, finite ``float``, ``bool``, ``None``) is checked by
  jsonschema; what orjson parsed is plain by construction (``parsed=True`` skips the look).

tests/unit/ingest/test_ocsf_conformance.py runs both over every event the project produces and
over mutations of them, every OCSF pattern over strings built to split the dialects, and the
translated classes over every code point, and fails on any disagreement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any, Final

import jsonschema
import jsonschema_rs
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

__all__ = [
    "OCSF_VERSION",
    "class_validator",
    "is_valid",
    "prepare",
    "schema_errors",
    "schema_problems",
]

OCSF_VERSION: Final = "1.3.0"

_SHOWN_VALUES: Final = 16  # an enum of more values is summarised, not listed
_SHOWN_CHARS: Final = 60  # a pattern or constant longer than this is cut in messages


@cache
def _schema() -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))


@cache
def class_validator(class_uid: int) -> jsonschema.protocols.Validator:
    """The validator of one OCSF class; KeyError for a class the version does not define."""
    schema = _schema()
    try:
        name = schema.lookup_class_name_from_uid(class_uid)
    except ValueError:
        raise KeyError(class_uid) from None
    class_schema = schema.get_class_schema(name)
    validator_class = jsonschema.validators.validator_for(class_schema)
    return validator_class(class_schema, format_checker=validator_class.FORMAT_CHECKER)


def _class_uid(data: Mapping[str, Any], class_uid: int | None = None) -> int | str:
    """The class to check ``data`` against (``class_uid``, else its own), or why there is none."""
    if class_uid is None:
        class_uid = data.get("class_uid")
    if not isinstance(class_uid, int) or isinstance(class_uid, bool):
        return "class_uid: required, an integer"
    try:
        class_validator(class_uid)
    except KeyError:
        return f"class_uid: {class_uid} is not a class of OCSF {OCSF_VERSION}"
    return class_uid


# -- the fast path: jsonschema-rs ---------------------------------------------------------------

# JSON Schema types as jsonschema's Draft 6+ type checker defines them (bool is not a number, an
# integral float is an integer); the messages use them to leave out an enum error that the type
# error at the same path already says.
_TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


class _Unsupported(Exception):
    """The schema says something whose meaning in jsonschema-rs was not checked against
    jsonschema's: that class is checked by jsonschema alone."""


# The keywords the OCSF export uses, each of which jsonschema-rs reads as jsonschema does (the
# tests compare the two over every event the project produces and mutations of them). `pattern`
# is among them only after translation (below). Anything else, `format` included (OCSF 1.3.0
# has none, and the two libraries check formats differently), sends the class to jsonschema.
_ANNOTATIONS: Final = frozenset({"title", "description", "deprecated", "$schema", "$id"})
_VALUES: Final = frozenset({"type", "enum", "const", "required", "maxLength", "minimum", "maximum"})
_SUBSCHEMA: Final = frozenset({"items", "additionalProperties"})
_SUBSCHEMAS: Final = frozenset({"anyOf", "oneOf"})
_NAMED_SUBSCHEMAS: Final = frozenset({"properties", "$defs"})


def _for_rust(node: Any) -> Any:
    """``node`` with every ``pattern`` rewritten to mean in jsonschema-rs's ECMA-262 regular
    expressions what it means in Python's ``re``, which jsonschema uses."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise _Unsupported(f"schema node {node!r}")
    out: dict[str, Any] = {}
    for keyword, value in node.items():
        if keyword in _ANNOTATIONS or keyword in _VALUES:
            out[keyword] = value
        elif keyword == "$ref":
            if not isinstance(value, str) or not value.startswith("#/$defs/"):
                raise _Unsupported(f"$ref {value!r}")
            out[keyword] = value
        elif keyword == "pattern":
            out[keyword] = _ecma_pattern(value)
        elif keyword in _SUBSCHEMA:
            out[keyword] = _for_rust(value)
        elif keyword in _SUBSCHEMAS:
            out[keyword] = [_for_rust(sub) for sub in value]
        elif keyword in _NAMED_SUBSCHEMAS:
            out[keyword] = {name: _for_rust(sub) for name, sub in value.items()}
        else:
            raise _Unsupported(keyword)
    return out


def _class_of(predicate: Callable[[str], bool]) -> str:
    """The characters ``predicate`` accepts, as the inside of a character class of literal
    characters and ranges (no escapes, so both regex dialects read it alike)."""
    runs: list[tuple[int, int]] = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF or not predicate(chr(code)):
            continue
        if runs and runs[-1][1] == code - 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in runs)


@cache
def _python_classes() -> dict[str, str]:
    """What ``\\s`` and ``\\d`` match in a Python ``str`` pattern (Unicode whitespace and
    decimal digits; ECMA-262's are other sets), as character classes. A test checks them
    against ``re`` over every code point."""
    return {"s": f"[{_class_of(str.isspace)}]", "d": f"[{_class_of(str.isdecimal)}]"}


_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}", re.ASCII)
_CLASS_ESCAPES: Final = frozenset("-")  # `\-` inside [...]: a literal hyphen in both dialects
_ESCAPES: Final = frozenset(".")  # `\.` outside [...]: a literal dot in both


def _ecma_pattern(pattern: str) -> str:
    """A Python ``re`` pattern as an ECMA-262 pattern that accepts exactly the same strings
    (with ``re.search``'s meaning: a match anywhere). Translated, for what the OCSF export uses:

    - ``\\s`` and ``\\d``: Python's Unicode sets, spelled out as character classes;
    - ``.``: any character but ``\\n`` (ECMA's dot also refuses ``\\r``, U+2028 and U+2029);
    - ``$``: the end, or before a ``\\n`` that ends the string, as in Python: ``\\n?$``, where
      only the ends of groups and alternatives follow it.

    Character classes of literal characters and ranges, groups, alternation and quantifiers
    mean the same in both and are copied. Anything else raises :class:`_Unsupported`.
    """
    classes = _python_classes()
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped in classes:
                out.append(classes[escaped])
            elif escaped in _ESCAPES:
                out.append(char + escaped)
            else:
                raise _Unsupported(f"escape \\{escaped} in {pattern!r}")
            i += 2
        elif char == "[":
            end = i + 1 + (pattern[i + 1 : i + 2] == "^")
            if pattern[end : end + 1] == "]":
                raise _Unsupported(f"a class starting with ] in {pattern!r}")
            while end < len(pattern) and pattern[end] != "]":
                if pattern[end] == "[":
                    raise _Unsupported(f"[ inside a class in {pattern!r}")
                if pattern[end] == "\\":
                    if pattern[end + 1 : end + 2] not in _CLASS_ESCAPES:
                        raise _Unsupported(f"escape in a class in {pattern!r}")
                    end += 1
                end += 1
            if end >= len(pattern):
                raise _Unsupported(f"unclosed class in {pattern!r}")
            out.append(pattern[i : end + 1])
            i = end + 1
        elif char == "{":
            quantifier = _QUANTIFIER.match(pattern, i)
            if quantifier is None:
                raise _Unsupported(f"a literal {{ in {pattern!r}")
            out.append(quantifier.group())
            i = quantifier.end()
        elif char == "(" and pattern[i + 1 : i + 2] == "?":
            raise _Unsupported(f"a group extension in {pattern!r}")
        elif char in "]}":
            raise _Unsupported(f"a literal {char} in {pattern!r}")
        elif char == ".":
            out.append("[^\n]")
            i += 1
        elif char == "$":
            # Python's end also matches before a final newline. Consuming that newline instead
            # keeps the answer where nothing but the ends of groups and alternatives follow
            # (no lookahead: it would move jsonschema-rs to its slow backtracking engine).
            rest = pattern[i + 1 :].lstrip(")")
            if rest and not rest.startswith("|"):
                raise _Unsupported(f"$ before more pattern in {pattern!r}")
            out.append("\n?$")
            i += 1
        else:
            out.append(char)  # a literal, ^, |, (, ), *, +, ?
            i += 1
    return "".join(out)


@cache
def _rust_validator(class_uid: int) -> Callable[[Any], bool] | None:
    """jsonschema-rs's check of a class (about 5 ms to build), or None where its meaning
    could differ from jsonschema's."""
    try:
        schema = _for_rust(class_validator(class_uid).schema)
    except _Unsupported:
        return None
    check: Callable[[Any], bool] = jsonschema_rs.validator_for(schema).is_valid
    return check


_LEAVES: Final = frozenset({str, int, bool, type(None)})
_STR: Final = frozenset({str})
_MAX_DEPTH: Final = 200  # jsonschema-rs stops at 255 levels; deeper data goes to jsonschema


def _is_plain(container: dict[Any, Any] | list[Any], depth: int = 0) -> bool:
    """True if ``container`` (a ``dict`` or a ``list``) holds only what a JSON parser returns:
    ``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``bool``, ``None`` and finite
    ``float``, exact types, not subclasses. jsonschema-rs reads some other Python types unlike
    jsonschema (a tuple as an array, a ``Decimal`` as a number, an ``Enum`` as its value)."""
    if depth >= _MAX_DEPTH:
        return False
    if type(container) is dict:
        if not _STR.issuperset(map(type, container)):
            return False
        items: Iterable[Any] = container.values()
    else:
        items = container
    for item in items:
        kind = type(item)
        if kind in _LEAVES:
            continue
        if kind is dict or kind is list:
            if not _is_plain(item, depth + 1):
                return False
        elif kind is not float or item - item != 0.0:  # inf - inf and nan - nan are nan
            return False
    return True


def prepare(class_uids: Iterable[int]) -> None:
    """Build the validators of ``class_uids`` now (a fraction of a second each), so that a
    service's first events do not pay for it."""
    for class_uid in class_uids:
        _rust_validator(class_uid)


def is_valid(
    data: Mapping[str, Any], class_uid: int | None = None, *, parsed: bool = False
) -> bool:
    """True if ``data`` is a valid event of OCSF 1.3.0 class ``class_uid`` (by default, the
    class its own ``class_uid`` names): jsonschema's verdict, computed by jsonschema-rs.

    ``parsed=True`` promises that ``data`` came from a JSON parser (orjson), so it holds only
    JSON's types and the check of its Python types is skipped. Data jsonschema-rs cannot read
    as jsonschema does (other Python types, deeper than 200 levels, a string it cannot encode)
    is checked by jsonschema itself.
    """
    checked = _class_uid(data, class_uid)
    if not isinstance(checked, int):
        return False
    check = _rust_validator(checked)
    if check is not None and (parsed or (type(data) is dict and _is_plain(data))):
        try:
            return check(data)
        except ValueError:  # a lone surrogate, a nesting past jsonschema-rs's limit
            pass
    valid: bool = class_validator(checked).is_valid(data)
    return valid


# -- the problems, named ----------------------------------------------------------------------


def _join(base: str, parts: list[str | int]) -> str:
    path = base
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else part
    return path or "(event)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _problems(error: jsonschema.ValidationError, base: str) -> list[tuple[str, str]]:
    """One jsonschema error as ``(path, message)`` pairs; messages never echo the value, so a
    huge or hostile value cannot swell an answer."""
    parts: list[str | int] = list(error.absolute_path)
    here = _join(base, parts)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    title = error.schema.get("title", "object") if isinstance(error.schema, dict) else "object"
    if keyword == "required":
        return [(_join(base, [*parts, n]), "required") for n in expected if n not in instance]
    if keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        return [
            (_join(base, [*parts, str(k)]), f"not an attribute of OCSF {OCSF_VERSION} {title}")
            for k in sorted(instance, key=str)
            if k not in known
        ]
    if keyword == "anyOf" and all(set(b) == {"required"} for b in expected):
        options = " or ".join("+".join(b["required"]) for b in expected)
        return [(here, f"{title} needs {options}")]
    if keyword == "anyOf":
        best = jsonschema.exceptions.best_match(error.context or ())
        if best is not None and best.absolute_path != error.absolute_path:
            return _problems(best, base)
        return [(here, f"not a valid {title}")]
    if keyword == "type":
        names = expected if isinstance(expected, str) else " or ".join(expected)
        article = "an" if names[0] in "aeiou" else "a"
        return [(here, f"must be {article} {names}")]
    declared = error.schema.get("type") if isinstance(error.schema, dict) else None
    mistyped = isinstance(declared, str) and not _TYPES[declared](instance)
    if keyword in ("enum", "const") and mistyped:
        return []  # the type error at the same path says it
    if keyword == "enum":
        try:
            shown = sorted(expected)
        except TypeError:
            shown = sorted(expected, key=str)
        if len(shown) > _SHOWN_VALUES:
            return [(here, f"not one of the {len(shown)} values OCSF {OCSF_VERSION} allows")]
        return [(here, f"must be one of {shown}")]
    if keyword == "const":
        return [(here, f"must be {_short(expected)}")]
    if keyword == "maxLength":
        return [(here, f"longer than {expected} characters")]
    if keyword == "pattern":
        return [(here, f"not a valid {title} (pattern {_short(expected)})")]
    if keyword in ("minimum", "maximum"):
        return [(here, f"must be {'>=' if keyword == 'minimum' else '<='} {expected}")]
    return [(here, error.message[:200])]


def schema_problems(
    data: Mapping[str, Any], base: str = "", class_uid: int | None = None
) -> list[tuple[str, str]]:
    """Every way ``data`` (an OCSF event object) departs from the OCSF 1.3.0 schema of class
    ``class_uid`` (by default its own ``class_uid``), as ``(path, message)`` pairs in a stable
    order; empty when it is valid. Paths are dotted from ``base`` with bracketed indices
    (``data.resources[0].name`` for ``base="data"``)."""
    checked = _class_uid(data, class_uid)
    if isinstance(checked, str):
        field, _, message = checked.partition(": ")
        return [(_join(base, [field]), message)]
    problems: set[tuple[str, str]] = set()
    for error in class_validator(checked).iter_errors(data):
        problems.update(_problems(error, base))
    return sorted(problems)


def schema_errors(data: Mapping[str, Any]) -> list[str]:
    """Every way `data` (an OCSF event object) departs from the OCSF 1.3.0 schema, as
    `path: message` lines in a stable order; empty when it is valid."""
    return [f"{path}: {message}" for path, message in schema_problems(data)]
