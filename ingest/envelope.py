"""The event envelope: CloudEvents 1.0 in structured JSON mode, ``data`` shaped after OCSF 1.3.

This module is the one place the event schema lives (docs/EVENTS.md describes it for proxy
authors). It is pure: no Kafka, no HTTP, no clock, no I/O.

An event is a JSON object with the CloudEvents attributes ``specversion`` ("1.0"), ``id``,
``source`` (a URI-reference), ``type`` (one of :data:`EVENT_TYPES`), ``time`` (RFC 3339), the
extension ``sequence`` (a per-source counter from 1, a JSON integer), and ``data``: an object
after the OCSF class the ``type`` names (API Activity 6003, Authentication 3002, Datastore
Activity 6005). Other top-level members are CloudEvents extensions and are allowed when their
names are valid.

Entry points, all pure:

- :func:`validate` returns every problem as a :class:`FieldError`, raising nothing;
- :func:`parse_event` checks the size, parses and validates one event, or raises;
- :func:`parse_batch` splits an HTTP body (one event, a JSON array, or NDJSON) into items and
  parses each, reporting failures per item;
- :func:`encode_event` serialises an event compactly, refusing one over the size limit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final

import orjson

from auditseal.ingest import ocsf_schema
from auditseal.ingest.errors import (
    BatchTooLarge,
    EnvelopeError,
    EventTooLarge,
    FieldError,
    UnsupportedMediaType,
)
from auditseal.ingest.jsonsplit import array_items

__all__ = [
    "ACTIVITY_IDS",
    "CLASS_API_ACTIVITY",
    "CLASS_AUTHENTICATION",
    "CLASS_DATASTORE_ACTIVITY",
    "CLASS_FOR_TYPE",
    "EVENT_TYPES",
    "KAFKA_HEADERS",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_SEQUENCE",
    "MEDIA_TYPES",
    "OCSF_VERSION",
    "SEVERITY_IDS",
    "SPECVERSION",
    "STATUS_IDS",
    "TYPE_API_ACTIVITY",
    "TYPE_AUTHENTICATION",
    "TYPE_DATASTORE_ACTIVITY",
    "BatchTooLarge",
    "EnvelopeError",
    "EventTooLarge",
    "FieldError",
    "UnsupportedMediaType",
    "encode_event",
    "epoch_millis",
    "is_ip_address",
    "is_uri_reference",
    "parse_batch",
    "parse_event",
    "parse_rfc3339",
    "validate",
]

MAX_EVENT_BYTES: Final = 1 << 20
"""The largest encoded event accepted, in bytes. Larger events are refused, never truncated."""

MAX_BATCH_EVENTS: Final = 1000
"""The most events one body may carry by default (:func:`parse_batch`'s ``max_items``)."""

SPECVERSION: Final = "1.0"
OCSF_VERSION: Final = "1.3.0"
"""The OCSF schema version the builders write to ``data.metadata.version``."""

MAX_SEQUENCE: Final = (1 << 31) - 1
"""The largest ``sequence``: a CloudEvents Integer, which is 32-bit signed (spec §Type System), so
that every CloudEvents SDK reads the extension; 2^31-1 events per source."""

TYPE_API_ACTIVITY: Final = "io.auditseal.api_activity"
TYPE_AUTHENTICATION: Final = "io.auditseal.authentication"
TYPE_DATASTORE_ACTIVITY: Final = "io.auditseal.datastore_activity"

CLASS_API_ACTIVITY: Final = 6003
CLASS_AUTHENTICATION: Final = 3002
CLASS_DATASTORE_ACTIVITY: Final = 6005

CLASS_FOR_TYPE: Final[dict[str, int]] = {
    TYPE_API_ACTIVITY: CLASS_API_ACTIVITY,
    TYPE_AUTHENTICATION: CLASS_AUTHENTICATION,
    TYPE_DATASTORE_ACTIVITY: CLASS_DATASTORE_ACTIVITY,
}
EVENT_TYPES: Final = tuple(CLASS_FOR_TYPE)

# OCSF 1.3 activity_id enums per class (0 Unknown and 99 Other come from the base event).
ACTIVITY_IDS: Final[dict[int, dict[int, str]]] = {
    CLASS_API_ACTIVITY: {
        0: "Unknown",
        1: "Create",
        2: "Read",
        3: "Update",
        4: "Delete",
        99: "Other",
    },
    CLASS_AUTHENTICATION: {
        0: "Unknown",
        1: "Logon",
        2: "Logoff",
        3: "Authentication Ticket",
        4: "Service Ticket Request",
        5: "Service Ticket Renew",
        6: "Preauth",
        99: "Other",
    },
    CLASS_DATASTORE_ACTIVITY: {
        0: "Unknown",
        1: "Read",
        2: "Update",
        3: "Connect",
        4: "Query",
        5: "Write",
        6: "Create",
        7: "Delete",
        8: "List",
        9: "Encrypt",
        10: "Decrypt",
        99: "Other",
    },
}
SEVERITY_IDS: Final[dict[int, str]] = {
    0: "Unknown",
    1: "Informational",
    2: "Low",
    3: "Medium",
    4: "High",
    5: "Critical",
    6: "Fatal",
    99: "Other",
}
STATUS_IDS: Final[dict[int, str]] = {0: "Unknown", 1: "Success", 2: "Failure", 99: "Other"}

MEDIA_JSON: Final = "application/json"
MEDIA_CLOUDEVENTS: Final = "application/cloudevents+json"
MEDIA_CLOUDEVENTS_BATCH: Final = "application/cloudevents-batch+json"
MEDIA_NDJSON: Final = ("application/x-ndjson", "application/jsonl")
MEDIA_TYPES: Final = (MEDIA_JSON, MEDIA_CLOUDEVENTS, MEDIA_CLOUDEVENTS_BATCH, *MEDIA_NDJSON)

# Typed as confluent-kafka's `headers=` parameter (a list is invariant).
KAFKA_HEADERS: Final[list[tuple[str, str | bytes | None]]] = [
    ("content-type", MEDIA_CLOUDEVENTS.encode())
]
"""The Kafka record headers of every event: the CloudEvents Kafka protocol binding's structured
content mode (the whole event in the value, no ``ce_`` headers). Everything that produces events
to Kafka (the emitter, the gateway) passes these as confluent-kafka's ``headers=``, which takes a
list, not a tuple; nothing mutates it."""

# Members of the JSON format that are not extensions. `data_base64` is the JSON format's member
# for binary data; it is named here so it is refused for what it is, not as a bad extension name.
_CONTEXT_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject"}
)
_RESERVED_MEMBERS = _CONTEXT_ATTRIBUTES | {"sequence", "data", "data_base64"}

# CloudEvents 1.0 §"Attribute Naming Convention": lower-case ASCII letters and digits; the spec
# says SHOULD NOT exceed 20 characters, auditseal makes it a MUST.
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}", re.ASCII)
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
# RFC 3986 characters: unreserved, reserved, and percent-encoded octets; nothing else.
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+", re.ASCII)
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Fail = Callable[[str, str], None]


# -- small predicates, public where adapters and builders need the same rule ----------------------


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 ``date-time`` into an aware UTC datetime.

    Accepts exactly RFC 3339 §5.6 (``T``/``Z`` in either case, any number of fraction digits,
    truncated to microseconds, a leap second ``:60``). Raises ``ValueError`` for anything else,
    including ISO 8601 forms RFC 3339 does not allow (no offset, a space separator, week dates).
    """
    if not isinstance(value, str):
        raise ValueError("not a string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    fraction = match.group(7)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        whole = _whole_seconds(match.group(1, 2, 3, 4, 5, 6, 8, 9, 10, 11))
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from exc
    # Offsets are whole minutes, so adding the fraction after converting to UTC is the same
    # instant, and a fraction (< 1 s) cannot carry a valid whole second out of range.
    return whole + timedelta(microseconds=micro) if micro else whole


# Events arrive in time order, many per second: the whole second (with its offset) is parsed
# once and remembered (bounded), the fraction added per event.
@lru_cache(maxsize=1024)
def _whole_seconds(fields: tuple[str | None, ...]) -> datetime:
    year, month, day, hour, minute, second = (int(f) for f in fields[:6])  # type: ignore[arg-type]
    zulu, sign, off_hours, off_minutes = fields[6:]
    if zulu:
        tz: timezone = UTC
    else:
        off_h, off_m = int(off_hours), int(off_minutes)  # type: ignore[arg-type]
        if off_h > 23 or off_m > 59:
            raise ValueError("offset out of range")
        offset = timedelta(hours=off_h, minutes=off_m)
        tz = timezone(-offset if sign == "-" else offset)
    leap = second == 60
    if leap:
        second = 59
    parsed = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    if leap:
        parsed += timedelta(seconds=1)
    # Converting can leave datetime's range (0001-01-01T00:00:00+01:00 is year 0 in UTC).
    return parsed.astimezone(UTC)


# The same language as _RFC3339, with the whole seconds and the offset as two groups.
_RFC3339_PARTS = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _is_rfc3339(value: str) -> bool:
    """True if :func:`parse_rfc3339` accepts ``value``, without building the datetime: whether
    it does depends on the whole seconds and the offset only (a fraction cannot carry a valid
    time out of range), and those are remembered (bounded)."""
    parts = _RFC3339_PARTS.fullmatch(value)
    return parts is not None and _is_whole_rfc3339(parts.group(1) + parts.group(2))


@lru_cache(maxsize=1024)
def _is_whole_rfc3339(value: str) -> bool:
    try:
        parse_rfc3339(value)
    except ValueError:
        return False
    return True


def is_uri_reference(value: str) -> bool:
    """True if ``value`` is a non-empty RFC 3986 URI-reference (absolute or relative).

    Checks the character set, percent-encoding, and that a colon before the first ``/``, ``?``
    or ``#`` ends a valid scheme (a relative reference cannot carry a colon in its first
    segment).
    """
    return isinstance(value, str) and _is_uri_reference(value)


# A proxy sends thousands of events with one source and a few addresses: the answers for
# recent values are remembered (bounded), so triage does not re-parse them per event.
@lru_cache(maxsize=4096)
def _is_uri_reference(value: str) -> bool:
    if not _URI_CHARS.fullmatch(value):
        return False
    head = re.split(r"[/?#]", value, maxsplit=1)[0]
    if ":" in head:
        return bool(_URI_SCHEME.fullmatch(head.split(":", 1)[0]))
    return True


def _is_absolute_uri(value: str) -> bool:
    if not is_uri_reference(value):
        return False
    head = re.split(r"[/?#]", value, maxsplit=1)[0]
    return ":" in head and "#" not in value


def is_ip_address(value: object) -> bool:
    """True if ``value`` is a string holding an IPv4 or IPv6 address."""
    return isinstance(value, str) and _is_ip_address(value)


@lru_cache(maxsize=4096)
def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_int(value: object) -> bool:
    # JSON integers only: bool is an int subclass in Python and a different JSON type.
    return type(value) is int


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def epoch_millis(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, floored, computed without float rounding."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


# -- validation -----------------------------------------------------------------------------------


def validate(obj: object) -> list[FieldError]:
    """Every problem with ``obj`` as an auditseal event, in a stable order; ``[]`` if it is valid.

    Pure and total: it MUST NOT raise for any input. A CloudEvents attribute whose value is JSON
    ``null`` counts as absent (JSON format §2.2). Class-specific checks of ``data`` run only when
    ``type`` names a known class.

    A valid event takes one quick pass (:func:`_passes`); the problems are only looked for,
    and named, when it does not pass.
    """
    if type(obj) is dict and _passes(obj, parsed=False):
        return []
    return _problems(obj)


def _validate_parsed(obj: Any) -> list[FieldError]:
    """:func:`validate` for what ``orjson.loads`` returned: JSON's types only, so the OCSF
    check skips its look at Python types."""
    if type(obj) is dict and _passes(obj, parsed=True):
        return []
    return _problems(obj)


# The members of a typical event: any other (an extension, `dataschema`, `subject`) is checked
# one by one in `_passes`, or sends the event to the full check.
_USUAL_MEMBERS = frozenset(
    {"specversion", "id", "source", "type", "time", "sequence", "datacontenttype", "data"}
)


def _passes(obj: dict[str, Any], parsed: bool) -> bool:
    """True only if :func:`_problems` finds nothing in ``obj``: the same rules, as one quick
    yes-or-no over exact types. It MAY say False for a valid event (an unusual member, a
    subclass of ``str``): :func:`_problems` then decides. Each test below implies the full
    check's, never the other way round; tests/unit/ingest/test_envelope.py compares the two.
    """
    get = obj.get
    event_id, source, event_type = get("id"), get("source"), get("type")
    time, sequence = get("time"), get("sequence")
    if not (
        get("specversion") == SPECVERSION
        and type(event_id) is str
        and event_id
        and type(source) is str
        and source
        and _is_uri_reference(source)
        and type(event_type) is str
        and type(time) is str
        and _is_rfc3339(time)
        and type(sequence) is int
        and 1 <= sequence <= MAX_SEQUENCE
    ):
        return False
    class_uid = CLASS_FOR_TYPE.get(event_type)
    content_type = get("datacontenttype")
    if class_uid is None or not (
        content_type is None or (type(content_type) is str and content_type == MEDIA_JSON)
    ):
        return False
    for name in () if _USUAL_MEMBERS.issuperset(obj) else obj.keys() - _USUAL_MEMBERS:
        if name in _RESERVED_MEMBERS or not (type(name) is str and _EXTENSION_NAME.fullmatch(name)):
            return False
        value = obj[name]
        kind = type(value)
        if not (
            value is None
            or kind is str
            or kind is bool
            or (kind is int and _INT32_MIN <= value <= _INT32_MAX)
        ):
            return False
    data = get("data")
    if type(data) is not dict:
        return False
    got_class, activity, type_uid = (
        data.get("class_uid"),
        data.get("activity_id"),
        data.get("type_uid"),
    )
    if not (
        type(got_class) is int
        and got_class == class_uid
        and type(activity) is int
        and type(type_uid) is int
        and type_uid == class_uid * 100 + activity
        and not isinstance(data.get("time"), float)
    ):
        return False
    endpoint = data.get("src_endpoint")
    ip = endpoint.get("ip") if isinstance(endpoint, dict) else None
    if isinstance(ip, str) and not is_ip_address(ip):
        return False
    return ocsf_schema.is_valid(data, class_uid, parsed=parsed)


def _problems(obj: object) -> list[FieldError]:
    """:func:`validate`'s full check: every problem, named."""
    if not isinstance(obj, dict):
        return [FieldError("$", "must be a JSON object")]
    errors: list[FieldError] = []

    def fail(path: str, message: str) -> None:
        errors.append(FieldError(path, message))

    specversion = obj.get("specversion")
    if specversion is None:
        fail("specversion", "required")
    elif specversion != SPECVERSION:
        fail("specversion", f'must be "{SPECVERSION}"')

    event_id = obj.get("id")
    if event_id is None:
        fail("id", "required")
    elif not _is_text(event_id):
        fail("id", "must be a non-empty string")

    source = obj.get("source")
    if source is None:
        fail("source", "required")
    elif not _is_text(source):
        fail("source", "must be a non-empty string")
    elif not is_uri_reference(source):
        fail("source", "not a URI-reference (RFC 3986)")

    event_type = obj.get("type")
    class_uid: int | None = None
    if event_type is None:
        fail("type", "required")
    elif not _is_text(event_type):
        fail("type", "must be a non-empty string")
    elif event_type not in CLASS_FOR_TYPE:
        fail("type", f"unknown event type {event_type!r}; expected one of {list(EVENT_TYPES)}")
    else:
        class_uid = CLASS_FOR_TYPE[event_type]

    time = obj.get("time")
    if time is None:
        fail("time", "required")
    else:
        try:
            parse_rfc3339(time)
        except ValueError:
            fail("time", "not an RFC 3339 timestamp")

    sequence = obj.get("sequence")
    if sequence is None:
        fail("sequence", "required")
    elif not _is_int(sequence) or sequence < 1:
        fail("sequence", "must be an integer >= 1")
    elif sequence > MAX_SEQUENCE:
        fail("sequence", f"must be at most {MAX_SEQUENCE}")

    content_type = obj.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str)
        or content_type.split(";", 1)[0].strip().lower() != MEDIA_JSON
    ):
        fail("datacontenttype", f'must be "{MEDIA_JSON}"')

    schema = obj.get("dataschema")
    if schema is not None and not (_is_text(schema) and _is_absolute_uri(schema)):
        fail("dataschema", "not an absolute URI (RFC 3986)")

    subject = obj.get("subject")
    if subject is not None and not _is_text(subject):
        fail("subject", "must be a non-empty string")

    for name, value in obj.items():
        if name in _RESERVED_MEMBERS:
            continue
        path = name if _is_text(name) else repr(name)
        if not isinstance(name, str) or not _EXTENSION_NAME.fullmatch(name):
            fail(
                path,
                "not a valid extension attribute name "
                "(lower-case letters a-z and digits 0-9, at most 20 characters)",
            )
        elif value is None or isinstance(value, (bool, str)):
            continue
        elif _is_int(value):
            if not _INT32_MIN <= value <= _INT32_MAX:
                fail(path, "must be a 32-bit signed integer (CloudEvents Integer)")
        else:
            fail(path, "must be a string, an integer or a boolean")

    if obj.get("data_base64") is not None:
        fail("data_base64", "not accepted: send the event data as a JSON object in data")
    if "data" not in obj:
        fail("data", "required")
    elif not isinstance(obj["data"], dict):
        fail("data", "must be a JSON object")
    elif class_uid is not None:
        _validate_data(obj["data"], class_uid, str(event_type), fail)
    return errors


def _validate_data(data: dict[str, Any], class_uid: int, event_type: str, fail: _Fail) -> None:
    """``data`` against the OCSF 1.3.0 schema of the class ``type`` names, plus auditseal's own
    rules, which the schema cannot state:

    - ``class_uid`` is the class of ``type`` (the schema of another class would say nothing
      useful, so the event is checked against the class ``type`` names);
    - ``type_uid`` is ``class_uid * 100 + activity_id`` (OCSF defines it so; its JSON schema
      only lists the values);
    - ``time`` is a JSON integer (JSON Schema counts ``1.0`` as an integer; OCSF ``timestamp_t``
      is integer milliseconds);
    - ``src_endpoint.ip``, when present, is an IPv4 or IPv6 address (the schema's pattern lets
      ``1x2x3x4`` through).

    The schema is checked first by the compiled checker; only an invalid event pays for
    jsonschema's full list of problems.
    """
    got_class = data.get("class_uid")
    if got_class is not None and (not _is_int(got_class) or got_class != class_uid):
        fail("data.class_uid", f"must be {class_uid} for type {event_type!r}")
    problems = (
        []
        if ocsf_schema.is_valid(data, class_uid)
        else ocsf_schema.schema_problems(data, "data", class_uid)
    )
    wrong = {path for path, _ in problems}
    activity, type_uid = data.get("activity_id"), data.get("type_uid")
    expected = (
        class_uid * 100 + activity if isinstance(activity, int) and _is_int(activity) else None
    )
    checkable = expected is not None and "data.activity_id" not in wrong and _is_int(type_uid)
    if checkable and type_uid != expected:
        fail("data.type_uid", f"must be {expected} (class_uid * 100 + activity_id)")
    time = data.get("time")
    if isinstance(time, float) and time.is_integer():
        fail("data.time", "must be an integer (milliseconds since the Unix epoch)")
    endpoint = data.get("src_endpoint")
    ip = endpoint.get("ip") if isinstance(endpoint, dict) else None
    if isinstance(ip, str) and not is_ip_address(ip):
        fail("data.src_endpoint.ip", "not an IP address")
    for path, message in problems:
        if path == "data.class_uid" and got_class is not None:
            continue  # reported above, with the type it must match
        if path == "data.src_endpoint.ip" and message.startswith("not a valid"):
            continue  # reported above as "not an IP address"
        fail(path, message)


# -- parsing and encoding -------------------------------------------------------------------------


def _check_limit(max_bytes: int) -> None:
    if not _is_int(max_bytes) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")


def _loads(raw: bytes | bytearray | memoryview, what: str = "$") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError([FieldError(what, f"not valid JSON: {exc}")]) from exc


def _encoded_size(obj: Any, path: str) -> int:
    """The compact encoding's size; refuses what parses but cannot be re-encoded.

    orjson reads up to 1024 levels of nesting but writes only 255: such an event would pass
    parsing here and fail later in :func:`encode_event`, so it is refused up front.
    """
    try:
        return len(orjson.dumps(obj))
    except orjson.JSONEncodeError as exc:
        raise EnvelopeError.single(path, f"cannot be re-encoded: {exc}") from exc


def _encodable(raw: bytes | bytearray, obj: Any) -> bool:
    """True if orjson can re-encode ``obj``, parsed from ``raw``: it writes at most 254 levels
    of nesting, and ``raw`` has fewer opening brackets than that, or it is tried."""
    if raw.count(b"{") + raw.count(b"[") <= 254:
        return True
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return False
    return True


def parse_event(raw: bytes, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Parse and validate one event in the CloudEvents JSON format.

    Steps, in this order:

    1. the size: ``raw`` longer than ``max_bytes`` raises :class:`EventTooLarge` before a byte of
       it is parsed (an event exactly ``max_bytes`` long is accepted);
    2. the JSON: invalid UTF-8 or JSON raises :class:`EnvelopeError` with path ``"$"``;
    3. the envelope: :func:`validate`; any problem raises :class:`EnvelopeError` listing all.

    Returns the parsed object, unchanged. Raises ``TypeError`` if ``raw`` is not bytes.
    """
    _check_limit(max_bytes)
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"raw must be bytes, not {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise EventTooLarge(len(raw), max_bytes)
    obj = _loads(raw)
    errors = _validate_parsed(obj)
    if errors:
        raise EnvelopeError(errors)
    _encoded_size(obj, "$")
    return obj  # type: ignore[no-any-return]  # validate() proved it is a dict


def encode_event(obj: dict[str, Any], max_bytes: int = MAX_EVENT_BYTES) -> bytes:
    """The compact JSON encoding of ``obj`` (orjson, no whitespace, keys in insertion order).

    Serialises only; validate first if ``obj`` did not come from :func:`parse_event` or the
    builders. Raises :class:`EventTooLarge` when the encoding exceeds ``max_bytes``, and
    ``TypeError`` (``orjson.JSONEncodeError``) for values JSON cannot carry.
    """
    _check_limit(max_bytes)
    encoded = orjson.dumps(obj)
    if len(encoded) > max_bytes:
        raise EventTooLarge(len(encoded), max_bytes)
    return encoded


def _media_type(content_type: str) -> str:
    """The bare media type of a Content-Type header, refusing charsets other than UTF-8."""
    if not isinstance(content_type, str):
        raise UnsupportedMediaType(repr(content_type), MEDIA_TYPES)
    media, *params = content_type.split(";")
    media = media.strip().lower()
    if media not in MEDIA_TYPES:
        raise UnsupportedMediaType(content_type, MEDIA_TYPES)
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType(content_type, MEDIA_TYPES)
    return media


def _first_byte(body: bytes) -> int | None:
    for byte in body:
        if byte not in b" \t\r\n":
            return byte
    return None


def _item(obj: Any, index: int, max_bytes: int) -> dict[str, Any] | EnvelopeError:
    """One parsed member of a JSON array, checked for size (re-encoded) and envelope."""
    prefix = f"[{index}]"
    try:
        size = _encoded_size(obj, prefix)
    except EnvelopeError as exc:
        return exc
    if size > max_bytes:
        return EventTooLarge(size, max_bytes, prefix)
    errors = _validate_parsed(obj)
    if errors:
        return EnvelopeError(e.prefixed(prefix) for e in errors)
    return obj  # type: ignore[no-any-return]


def _member(text: str, index: int, max_bytes: int) -> dict[str, Any] | EnvelopeError:
    """One member of a JSON array, as split by :func:`array_items`: parsed by orjson, then
    checked as :func:`_item` does."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return EnvelopeError([FieldError(f"[{index}]", f"not valid JSON: {exc}")])
    return _item(obj, index, max_bytes)


def _line(raw: bytes, index: int, max_bytes: int) -> dict[str, Any] | EnvelopeError:
    """One NDJSON line: the size is checked on the raw line, before parsing."""
    prefix = f"[{index}]"
    if not raw.strip():
        return EnvelopeError([FieldError(prefix, "blank line")])
    if len(raw) > max_bytes:
        return EventTooLarge(len(raw), max_bytes, prefix)
    try:
        obj = _loads(raw)
        errors = _validate_parsed(obj)
        if errors:
            return EnvelopeError(e.prefixed(prefix) for e in errors)
        _encoded_size(obj, "$")
    except EnvelopeError as exc:
        return exc.prefixed(prefix)
    return obj  # type: ignore[no-any-return]


def parse_batch(
    body: bytes,
    content_type: str,
    max_bytes: int = MAX_EVENT_BYTES,
    max_items: int = MAX_BATCH_EVENTS,
) -> list[tuple[int, dict[str, Any] | EnvelopeError]]:
    """Split an HTTP request body into events and parse each; failures are reported per item.

    ``content_type`` selects the shape (parameters are ignored except a charset, which must be
    UTF-8):

    - ``application/json``: one event (a JSON object) or a batch (a JSON array);
    - ``application/cloudevents+json``: one event;
    - ``application/cloudevents-batch+json``: a JSON array of events (possibly empty);
    - ``application/x-ndjson``, ``application/jsonl``: one event per line, ``\\n`` or ``\\r\\n``
      ended; a final newline is fine, a blank line elsewhere is an error for that line.

    Returns ``(index, event_or_error)`` pairs in body order, 0-based. A single event's errors
    carry plain paths (``sequence``); a batch item's carry its index (``[2].data.actor.user``).
    ``max_bytes`` applies to each event: to the body for a single event and to each NDJSON line
    before it is parsed; an array member's compact re-encoding is measured after it is parsed.
    The caller MUST cap the body size itself.

    ``max_items`` caps the number of items, counted before they are parsed (NDJSON lines by
    their newlines, array members one by one as the array is split): a body of a million tiny
    items is refused at the first item past the limit, never built whole.

    Raises :class:`UnsupportedMediaType` for other content types, :class:`BatchTooLarge` for a
    body of more than ``max_items`` items, and :class:`EnvelopeError` when the body cannot be
    split into events: empty, not JSON, or the wrong shape for its content type. Everything
    else (too large, invalid envelope, an array member orjson refuses) is reported in place of
    the item.
    """
    _check_limit(max_bytes)
    _check_limit(max_items)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    body = bytes(body)
    media = _media_type(content_type)
    first = _first_byte(body)
    if first is None:
        raise EnvelopeError([FieldError("$", "empty body")])

    if media in MEDIA_NDJSON:
        if body.count(b"\n") + (not body.endswith(b"\n")) > max_items:
            raise BatchTooLarge(max_items)
        lines = body.split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the newline that ends the last line
        return [
            (i, _line(line[:-1] if line.endswith(b"\r") else line, i, max_bytes))
            for i, line in enumerate(lines)
        ]

    is_array = first == ord("[")
    if media == MEDIA_CLOUDEVENTS and is_array:
        raise EnvelopeError(
            [FieldError("$", f"must be a JSON object: {MEDIA_CLOUDEVENTS} carries one event")]
        )
    if media == MEDIA_CLOUDEVENTS_BATCH and not is_array:
        raise EnvelopeError(
            [FieldError("$", f"must be a JSON array: {MEDIA_CLOUDEVENTS_BATCH} carries a batch")]
        )
    if not is_array:
        return [(0, _single(body, max_bytes))]
    return [(i, _member(text, i, max_bytes)) for i, text in enumerate(array_items(body, max_items))]


def _single(body: bytes, max_bytes: int) -> dict[str, Any] | EnvelopeError:
    """A body holding one event: too large or invalid is that item's error, not JSON is not."""
    if len(body) > max_bytes:
        return EventTooLarge(len(body), max_bytes)
    obj = _loads(body)
    if not isinstance(obj, dict):
        raise EnvelopeError([FieldError("$", "must be a JSON object or a JSON array")])
    errors = _validate_parsed(obj)
    if errors:
        return EnvelopeError(errors)
    try:
        _encoded_size(obj, "$")
    except EnvelopeError as exc:
        return exc
    return obj


def triage(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> tuple[str | None, str | None]:
    """Why a Kafka record is not a valid event: ``(event id or None, reason or None)``.

    Never raises: the sealer seals every record verbatim and flags the ones this refuses, so
    a malformed record is evidence, not an error. The reason names the first problems found.
    """
    if raw is None:
        return None, "null value (tombstone)"
    if not raw:
        return None, "empty value"
    if len(raw) > max_bytes:
        return None, f"too large: {len(raw)} bytes > {max_bytes}"
    if type(max_bytes) is int and isinstance(raw, (bytes, bytearray)):
        # The quick way for a valid event: one parse, one pass (what parse_event checks, in
        # the same order, is all implied). Anything else goes the full way for its reasons.
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict and _passes(obj, parsed=True) and _encodable(raw, obj):
            return obj["id"], None  # a non-empty str: _passes checked it
    try:
        event = parse_event(raw, max_bytes)
    except EnvelopeError as exc:
        reasons = "; ".join(str(e) for e in exc.errors[:3])
        more = f" (+{len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
        return _event_id(raw), f"invalid event: {reasons}{more}"
    except RecursionError:
        # jsonschema names problems by recursing, one Python frame per level and more: a
        # record nested some hundreds of levels deep (orjson reads 1024) must be flagged, not
        # crash the sealer on every restart.
        return _event_id(raw), "invalid event: nested too deeply to check"
    return str(event["id"]), None


def _event_id(raw: bytes) -> str | None:
    """The ``id`` of a record that is not a valid event, if it has a string one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    event_id = obj.get("id") if isinstance(obj, dict) else None
    return event_id if isinstance(event_id, str) else None
