"""The official OCSF 1.3.0 schema, as JSON Schema, and what it says about an event's `data`.

The schema is the one the OCSF project publishes, packaged by `ocsf-json-schema` (its exports of
schema.ocsf.io for each version); `jsonschema` checks an event against the class its `class_uid`
names. Nothing here restates an OCSF rule by hand: when the gateway refuses an event for OCSF
reasons, it is because the published schema does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Final

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

OCSF_VERSION: Final = "1.3.0"


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


def _path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(event)"


def schema_errors(data: Mapping[str, Any]) -> list[str]:
    """Every way `data` (an OCSF event object) departs from the OCSF 1.3.0 schema, as
    `path: message` lines in a stable order; empty when it is valid."""
    class_uid = data.get("class_uid")
    if not isinstance(class_uid, int) or isinstance(class_uid, bool):
        return ["class_uid: required, an integer"]
    try:
        validator = class_validator(class_uid)
    except KeyError:
        return [f"class_uid: {class_uid} is not a class of OCSF {OCSF_VERSION}"]
    errors = sorted(validator.iter_errors(data), key=lambda e: (_path(e), e.message))
    return [f"{_path(e)}: {e.message}" for e in errors]
