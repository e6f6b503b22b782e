"""The official OCSF 1.3.0 schema, as JSON Schema, and what it says about an event's `data`.

The schema is the one the OCSF project publishes, packaged by `ocsf-json-schema` (its exports of
schema.ocsf.io for each version); `jsonschema` checks an event against the class its `class_uid`
names. Nothing here restates an OCSF rule by hand: when the gateway refuses an event for OCSF
reasons, it is because the published schema does.

Two paths, one schema:

- :func:`is_valid` answers yes or no through a checker compiled from the class's schema (the
  few JSON Schema keywords the OCSF export uses, each with jsonschema's own semantics, written
  out as Python source once per class and compiled, as fastjsonschema does). It is what the
  gateway, the emitter and the sealer's triage run on every event: jsonschema itself takes
  about 1 ms per OCSF event, the compiled checker about 10 µs on a busy 2-core machine.
- :func:`schema_problems` (and :func:`schema_errors`) run jsonschema for the full list of
  problems, each named by its path; they are only needed once an event is known to be invalid.

A test runs both over every event the project produces and over mutations of them, and fails
on any disagreement. A schema that uses a keyword the compiler does not know is checked by
jsonschema alone, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from typing import Any, Final

import jsonschema
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


# -- the compiled checker ---------------------------------------------------------------------

Check = Callable[[Any], bool]


class _Unsupported(Exception):
    """The schema uses a keyword the compiler does not know: jsonschema checks that class."""


# JSON Schema types as jsonschema's Draft 6+ type checker defines them (bool is not a number,
# an integral float is an integer), as Python expressions over the variable ``{v}``.
_TYPES: Final[dict[str, Check]] = {
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
_TYPE_SOURCE: Final[dict[str, str]] = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "boolean": "isinstance({v}, bool)",
    "null": "{v} is None",
    "integer": (
        "((isinstance({v}, int) and not isinstance({v}, bool))"
        " or (isinstance({v}, float) and {v}.is_integer()))"
    ),
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool))",
}
_ANNOTATIONS: Final = frozenset({"title", "description", "deprecated", "$schema", "$id", "$defs"})


def _scalars(values: list[Any]) -> frozenset[Any]:
    if not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in values):
        raise _Unsupported("enum or const of non-scalar values")
    return frozenset(values)


class _Compiler:
    """A class's schema → Python source, one function per definition, compiled once.

    As fastjsonschema does: each schema node becomes one boolean expression with jsonschema's
    meaning of its keywords, so checking an event costs about one Python call per member, not
    one per keyword. Guards such as "a maxLength only applies to strings" are kept exactly.
    """

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {}
        self.def_names: dict[str, str] = {}
        self.functions: dict[str, str] = {}  # a node's canonical text → its function's name
        self.tables: list[tuple[str, dict[str, str]]] = []  # members' dispatch tables

    def constant(self, value: Any) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def ref(self, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("#/$defs/"):
            raise _Unsupported(f"$ref {value!r}")
        name = value.removeprefix("#/$defs/")
        if name not in self.def_names:
            # Named before its body compiles: OCSF objects nest recursively (a user's groups,
            # a process's parent), so a definition may reach itself.
            self.def_names[name] = function = f"d{len(self.def_names)}"
            self.emit(function, self.defs[name])
        return self.def_names[name]

    def emit(self, function: str, node: Any) -> None:
        body = self.expr(node, "v")
        self.lines += [f"def {function}(v):", f"    return {body}", ""]

    def function(self, node: Any) -> str:
        """The name of a function checking ``node``: a definition's own for a bare $ref."""
        if isinstance(node, dict) and set(node) - _ANNOTATIONS == {"$ref"}:
            return self.ref(node["$ref"])
        key = repr(_bare(node))
        if key not in self.functions:
            self.functions[key] = function = f"c{len(self.functions)}"
            self.emit(function, node)
        return self.functions[key]

    def expr(self, node: Any, v: str, known: str | None = None) -> str:
        """``node`` as an expression over ``v``; ``known`` is the type ``v`` already has (a
        parent's `type` passed before this node's keywords run)."""
        if node is True:
            return "True"
        if node is False:
            return "False"
        if not isinstance(node, dict):
            raise _Unsupported(f"schema node {node!r}")
        parts: list[str] = []
        if "type" in node:  # first, so that a failed type check skips the rest
            value = node["type"]
            names = [value] if isinstance(value, str) else list(value)
            parts.append(self.any([_TYPE_SOURCE[n].format(v=v) for n in names]))
            known = names[0] if len(names) == 1 else known
        for keyword, value in node.items():
            if keyword in _ANNOTATIONS or keyword == "type":
                continue
            if keyword == "$ref":
                parts.append(f"{self.ref(value)}({v})")
            elif keyword in ("properties", "additionalProperties"):
                if keyword == "additionalProperties" and "properties" in node:
                    continue  # checked with `properties`, in one pass over the members
                if "patternProperties" in node:
                    raise _Unsupported("patternProperties")
                parts.append(f"{self.members(node)}({v})")
            elif keyword == "items":
                item = self.function(value)
                parts.append(f"(not isinstance({v}, list) or all(map({item}, {v})))")
            elif keyword == "anyOf":
                parts.append(self.any([self.expr(sub, v, known) for sub in value]))
            elif keyword == "oneOf":
                branches = ", ".join(f"bool({self.expr(sub, v, known)})" for sub in value)
                parts.append(f"(sum(({branches},)) == 1)" if value else "False")
            elif keyword in ("enum", "const"):
                allowed = self.constant(_scalars(value if keyword == "enum" else [value]))
                # jsonschema's equality: 1 == 1.0, but True is not 1.
                if known in ("string", "integer"):  # a hashable non-bool, by the type check
                    parts.append(f"{v} in {allowed}")
                else:
                    parts.append(
                        f"(isinstance({v}, (int, float, str)) and not isinstance({v}, bool)"
                        f" and {v} in {allowed})"
                    )
            else:
                parts.append(self.leaf(keyword, value, v, known))
        return "(" + " and ".join(parts) + ")" if parts else "True"

    @staticmethod
    def any(options: list[str]) -> str:
        return "(" + " or ".join(options) + ")" if options else "False"

    def leaf(self, keyword: str, value: Any, v: str, known: str | None) -> str:
        """The keywords that look at one object, string or number; each applies only to
        instances of its type, a guard dropped where the node's `type` already proved it."""
        if keyword == "required":
            names = " and ".join(f"{str(n)!r} in {v}" for n in value) or "True"
            test = f"({names})"
            guard = "object"
        elif keyword == "maxLength":
            test = f"len({v}) <= {int(value)!r}"
            guard = "string"
        elif keyword == "pattern":
            test = f"{self.constant(_matcher(value))}({v})"
            guard = "string"
        elif keyword in ("minimum", "maximum"):
            op = ">=" if keyword == "minimum" else "<="
            test = f"{v} {op} {self.constant(value)}"
            guard = "number"
            if known == "integer":  # an integer is a number
                known = "number"
        else:
            raise _Unsupported(keyword)
        if known == guard:
            return f"({test})"
        return f"(not {_TYPE_SOURCE[guard].format(v=v)} or {test})"

    def members(self, node: Mapping[str, Any]) -> str:
        """``properties`` and ``additionalProperties`` together: one pass over the instance's
        members (an OCSF object defines dozens of attributes; an event uses a few)."""
        props = {key: self.function(sub) for key, sub in node.get("properties", {}).items()}
        extra = node.get("additionalProperties", True)
        function = f"m{len(self.namespace)}"
        table = self.constant(None)
        if extra is True:
            otherwise = "continue"
        elif extra is False:
            otherwise = "return False"
        else:
            otherwise = f"if not {self.function(extra)}(x): return False"
        self.lines += [
            f"def {function}(v):",
            "    if not isinstance(v, dict): return True",
            "    for k, x in v.items():",
            f"        f = {table}.get(k)",
            "        if f is None:",
            f"            {otherwise}",
            "        elif not f(x): return False",
            "    return True",
            "",
        ]
        self.tables.append((table, props))
        return function

    def build(self, schema: Mapping[str, Any]) -> Check:
        self.emit("check", schema)
        namespace = dict(self.namespace)
        exec(compile("\n".join(self.lines), "<ocsf checker>", "exec"), namespace)
        for table, props in self.tables:
            namespace[table] = {key: namespace[f] for key, f in props.items()}
        check: Check = namespace["check"]
        return check


def _matcher(pattern: str) -> Callable[[str], bool]:
    """``pattern``'s search as a yes or no, remembering recent answers (bounded): OCSF's
    address patterns are long alternations, and a source sends the same few addresses."""
    search = re.compile(pattern).search

    @lru_cache(maxsize=4096)
    def matches(value: str) -> bool:
        return search(value) is not None

    return matches


def _bare(node: Any) -> Any:
    """``node`` without annotations: nodes that check the same share one function."""
    if isinstance(node, dict):
        return {k: _bare(v) for k, v in node.items() if k not in _ANNOTATIONS or k == "$defs"}
    if isinstance(node, list):
        return [_bare(v) for v in node]
    return node


@cache
def _checker(class_uid: int) -> Check:
    validator = class_validator(class_uid)
    schema = validator.schema
    try:
        return _Compiler(schema.get("$defs", {})).build(schema)
    except _Unsupported:
        fallback: Check = validator.is_valid
        return fallback


def prepare(class_uids: Iterable[int]) -> None:
    """Build the checkers of ``class_uids`` now (about 0.2 s each), so that a service's first
    events do not pay for it."""
    for class_uid in class_uids:
        _checker(class_uid)


def is_valid(data: Mapping[str, Any], class_uid: int | None = None) -> bool:
    """True if ``data`` is a valid event of OCSF 1.3.0 class ``class_uid`` (by default, the
    class its own ``class_uid`` names)."""
    checked = _class_uid(data, class_uid)
    return isinstance(checked, int) and _checker(checked)(data)


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
