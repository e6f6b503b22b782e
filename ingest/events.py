"""Builders that produce valid auditseal events, one per OCSF class.

Used by the adapters, the traffic simulator and tests. Every builder returns a plain ``dict``
ready for :func:`auditseal.ingest.envelope.encode_event`, and checks its own output with
:func:`auditseal.ingest.envelope.validate`: a builder MUST NOT return an invalid event; bad
arguments raise :class:`auditseal.ingest.errors.EnvelopeError` (a ``ValueError``) naming the field
at fault.

Time is an argument. :func:`now` is the only clock read in this module and runs only when a
builder is called without ``time``; ids default to random UUID4 strings (:func:`new_event_id`).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from auditseal.ingest.envelope import (
    ACTIVITY_IDS,
    CLASS_API_ACTIVITY,
    CLASS_AUTHENTICATION,
    CLASS_DATASTORE_ACTIVITY,
    CLASS_FOR_TYPE,
    OCSF_VERSION,
    STATUS_IDS,
    TYPE_API_ACTIVITY,
    TYPE_AUTHENTICATION,
    TYPE_DATASTORE_ACTIVITY,
    epoch_millis,
    validate,
)
from auditseal.ingest.errors import EnvelopeError

__all__ = [
    "DEFAULT_PRODUCT",
    "Status",
    "activity_for_operation",
    "api_activity",
    "authentication",
    "build_event",
    "datastore_query",
    "format_time",
    "new_event_id",
    "now",
    "ocsf_base",
]

Status = Literal["success", "failure", "unknown"]
"""An outcome. A denial (403, a refused login) is a ``"failure"``: OCSF ``status_id`` 2."""

Named = str | Mapping[str, Any]
"""A user, database or service: a name, or an OCSF object with ``name`` and/or ``uid``."""

DEFAULT_PRODUCT: Final[Mapping[str, str]] = {"name": "auditseal", "vendor_name": "auditseal"}

_STATUS_ID: Final[dict[str, int]] = {"unknown": 0, "success": 1, "failure": 2}
_CLASS_NAME: Final[dict[int, str]] = {
    CLASS_API_ACTIVITY: "API Activity",
    CLASS_AUTHENTICATION: "Authentication",
    CLASS_DATASTORE_ACTIVITY: "Datastore Activity",
}
_CATEGORY_NAME: Final[dict[int, str]] = {
    3: "Identity & Access Management",
    6: "Application Activity",
}

# API Activity activity_id by verb: Kubernetes verbs, HTTP methods and the last dotted part of
# event names such as Teleport's `access_list.create`. Anything else is 99 (Other).
_OPERATION_ACTIVITY: Final[dict[str, int]] = {
    "create": 1,
    "post": 1,
    "get": 2,
    "head": 2,
    "list": 2,
    "read": 2,
    "watch": 2,
    "patch": 3,
    "put": 3,
    "update": 3,
    "delete": 4,
    "deletecollection": 4,
    "remove": 4,
}
_LOGON: Final[dict[str, int]] = {"logon": 1, "logoff": 2}


def now() -> datetime:
    """The current time in UTC: the one clock read of the event builders."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A fresh CloudEvents ``id``: a random UUID4 string."""
    return str(uuid.uuid4())


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: milliseconds, or microseconds when they are not zero.

    Raises ``ValueError`` for a naive datetime: an audit trail does not guess time zones.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    utc = moment.astimezone(UTC)
    fraction = (
        f"{utc.microsecond // 1000:03d}"
        if utc.microsecond % 1000 == 0
        else f"{utc.microsecond:06d}"
    )
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{fraction}Z"
    )


def activity_for_operation(operation: str) -> int:
    """The OCSF API Activity ``activity_id`` for an operation name; 99 (Other) when unknown.

    ``create``/``post`` → 1 Create, ``get``/``list``/``watch``/``head`` → 2 Read,
    ``update``/``patch``/``put`` → 3 Update, ``delete``/``deletecollection`` → 4 Delete. For a
    dotted name (``access_list.create``) the last part decides.
    """
    return _OPERATION_ACTIVITY.get(operation.rsplit(".", 1)[-1].lower(), 99)


def build_event(
    event_type: str,
    source: str,
    sequence: int,
    data: dict[str, Any],
    *,
    time: datetime,
    id: str | None = None,
) -> dict[str, Any]:
    """Wrap OCSF ``data`` in the CloudEvents envelope and validate the result.

    Raises :class:`EnvelopeError` listing every problem if the event would be invalid.
    """
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": new_event_id() if id is None else id,
        "source": source,
        "type": event_type,
        "time": format_time(time),
        "sequence": sequence,
        "datacontenttype": "application/json",
        "data": data,
    }
    errors = validate(event)
    if errors:
        raise EnvelopeError(errors, "cannot build a valid event")
    return event


def _ocsf(
    event_type: str,
    activity_id: int,
    moment: datetime,
    status: Status,
    severity_id: int,
    product: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The attributes every OCSF class shares (classification, occurrence, status, metadata)."""
    class_uid = CLASS_FOR_TYPE[event_type]
    if status not in _STATUS_ID:
        raise ValueError(f"status must be one of {sorted(_STATUS_ID)}, not {status!r}")
    status_id = _STATUS_ID[status]
    return {
        "class_uid": class_uid,
        "class_name": _CLASS_NAME[class_uid],
        "category_uid": class_uid // 1000,
        "category_name": _CATEGORY_NAME[class_uid // 1000],
        "activity_id": activity_id,
        "activity_name": ACTIVITY_IDS[class_uid].get(activity_id, "Other"),
        "type_uid": class_uid * 100 + activity_id,
        "time": epoch_millis(moment),
        "severity_id": severity_id,
        "status_id": status_id,
        "status": STATUS_IDS[status_id],
        "metadata": {
            "version": OCSF_VERSION,
            "product": dict(DEFAULT_PRODUCT if product is None else product),
        },
    }


def ocsf_base(
    event_type: str,
    activity_id: int,
    time: datetime,
    status: Status,
    *,
    severity_id: int = 1,
    product: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OCSF attributes every class shares, for an adapter that fills in the rest itself and
    wraps the result with :func:`build_event` (which validates it)."""
    return _ocsf(event_type, activity_id, time, status, severity_id, product)


def _named(value: Named) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    return copy.deepcopy(dict(value))


def _merge(target: dict[str, Any], extra: Mapping[str, Any] | None) -> None:
    """Deep-merge ``extra`` into ``target``: objects merge member by member, the rest replaces."""
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def api_activity(
    source: str,
    sequence: int,
    actor: Named,
    operation: str,
    resource: Named | None,
    status: Status,
    src_ip: str,
    time: datetime | None = None,
    id: str | None = None,
    *,
    activity_id: int | None = None,
    severity_id: int = 1,
    product: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An OCSF API Activity (6003) event: ``actor`` called ``operation`` on ``resource``.

    ``activity_id`` defaults to :func:`activity_for_operation`. ``extra`` is deep-merged into
    ``data`` last (e.g. ``http_request``, ``raw``), so it can add or override attributes.
    """
    moment = now() if time is None else time
    activity = activity_for_operation(operation) if activity_id is None else activity_id
    data = _ocsf(TYPE_API_ACTIVITY, activity, moment, status, severity_id, product)
    data["actor"] = {"user": _named(actor)}
    data["api"] = {"operation": operation}
    if resource is not None:
        data["resources"] = [_named(resource)]
    data["src_endpoint"] = {"ip": src_ip}
    _merge(data, extra)
    return build_event(TYPE_API_ACTIVITY, source, sequence, data, time=moment, id=id)


def authentication(
    source: str,
    sequence: int,
    user: Named,
    activity: Literal["logon", "logoff"],
    status: Status,
    src_ip: str,
    service: Named,
    time: datetime | None = None,
    id: str | None = None,
    *,
    severity_id: int = 1,
    product: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An OCSF Authentication (3002) event: ``user`` logged on to (or off) ``service``.

    A refused logon is ``activity="logon", status="failure"``. OCSF names the subject ``user``
    (not ``actor.user``); ``service`` is what was logged on to.
    """
    if activity not in _LOGON:
        raise ValueError(f"activity must be 'logon' or 'logoff', not {activity!r}")
    moment = now() if time is None else time
    data = _ocsf(TYPE_AUTHENTICATION, _LOGON[activity], moment, status, severity_id, product)
    data["user"] = _named(user)
    data["service"] = _named(service)
    data["src_endpoint"] = {"ip": src_ip}
    _merge(data, extra)
    return build_event(TYPE_AUTHENTICATION, source, sequence, data, time=moment, id=id)


def datastore_query(
    source: str,
    sequence: int,
    actor: Named,
    database: Named,
    query: str,
    rows: int | None = None,
    status: Status = "success",
    time: datetime | None = None,
    id: str | None = None,
    *,
    src_ip: str | None = None,
    query_uid: str | None = None,
    severity_id: int = 1,
    product: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An OCSF Datastore Activity (6005) event with activity 4 (Query): ``actor`` ran ``query``.

    OCSF 1.3.0 requires, beside the arguments: ``database.type_id`` (0 Unknown unless
    ``database`` gives one: 1 Relational, 6 NoSQL, ...; with 0 a ``type`` names it freely), an
    identifier of the query (``query_info.uid``: ``query_uid``, by default the event's id, one
    query per event), and ``src_endpoint`` (``src_ip``, or an endpoint by name or uid in
    ``extra``). OCSF has no row
    count; ``rows`` goes to ``data.unmapped.rows``.
    """
    moment = now() if time is None else time
    event_id = new_event_id() if id is None else id
    data = _ocsf(TYPE_DATASTORE_ACTIVITY, 4, moment, status, severity_id, product)
    data["actor"] = {"user": _named(actor)}
    data["type_id"] = 1
    data["type"] = "Database"
    data["database"] = _named(database)
    # type_id 0 (Unknown) keeps the caller's own `type` ("postgres"), as OCSF has it for 0/99
    data["database"].setdefault("type_id", 0)
    data["query_info"] = {
        "uid": event_id if query_uid is None else query_uid,
        "query_string": query,
    }
    if src_ip is not None:
        data["src_endpoint"] = {"ip": src_ip}
    if rows is not None:
        data["unmapped"] = {"rows": rows}
    _merge(data, extra)
    return build_event(TYPE_DATASTORE_ACTIVITY, source, sequence, data, time=moment, id=event_id)
