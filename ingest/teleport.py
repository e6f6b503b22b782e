"""The Teleport adapter: one Teleport audit event, as the Teleport event handler POSTs it to its
Fluentd output, becomes one auditseal event. Pure: bytes in, dicts out.

``user.login`` becomes Authentication, ``db.session.query`` Datastore Activity, and everything
else API Activity. The contract of :mod:`auditseal.ingest.adapters` holds: the body is checked
whole first, ``next_sequence`` is called only for an event that will be produced, and an event too
large to carry is refused, never truncated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from auditseal.ingest.adapters import (
    NextSequence,
    _assign_sequences,
    _is_text,
    _load_object,
    _sized,
    _timestamp,
)
from auditseal.ingest.envelope import MAX_EVENT_BYTES, MAX_SEQUENCE
from auditseal.ingest.errors import EnvelopeError, FieldError
from auditseal.ingest.events import Status, api_activity, authentication, datastore_query

__all__ = ["TELEPORT_PRODUCT", "from_teleport", "teleport_source"]

TELEPORT_PRODUCT: Final[Mapping[str, str]] = {"name": "Teleport", "vendor_name": "Gravitational"}

# Teleport `method` of user.login → OCSF auth_protocol_id (4 OpenID, 5 SAML, 6 OAUTH 2.0).
_TELEPORT_AUTH_PROTOCOL: Final[dict[str, int]] = {"oidc": 4, "saml": 5, "github": 6}
# The first of these Teleport fields present names the resource an API Activity acted on.
_TELEPORT_RESOURCE_KEYS: Final = (
    ("server_hostname", "node"),
    ("kubernetes_cluster", "kube_cluster"),
    ("app_name", "app"),
    ("db_service", "db"),
    ("desktop_name", "windows_desktop"),
    ("name", None),
)
_TELEPORT_DATASTORE_EVENTS: Final = frozenset({"db.session.query", "db.session.query.failed"})


def teleport_source(cluster_name: str) -> str:
    """The CloudEvents ``source`` for a Teleport cluster: ``teleport://<cluster_name>``."""
    return "teleport://" + quote(cluster_name, safe=":")


def _remote_ip(value: Any) -> str | None:
    """The IP of a Teleport ``addr.remote``: ``1.2.3.4:5``, ``[::1]:5``, or a bare address."""
    if not isinstance(value, str):
        return None
    host = value
    if value.startswith("["):
        host, bracket, _ = value[1:].partition("]")
        if not bracket:
            return None
    elif value.count(":") == 1:
        host = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _teleport_status(doc: Mapping[str, Any]) -> Status:
    """``success`` when Teleport sent it; else the code's suffix (I info, W/E warning/error)."""
    if doc.get("event") == "db.session.query.failed":
        return "failure"
    if isinstance(doc.get("success"), bool):
        return "success" if doc["success"] else "failure"
    code = doc.get("code")
    if isinstance(code, str) and code:
        if code.endswith("I"):
            return "success"
        if code.endswith(("W", "E")):
            return "failure"
    return "unknown"


def from_teleport(
    body: bytes,
    next_sequence: NextSequence,
    *,
    cluster: str | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> dict[str, Any]:
    """Map one Teleport audit event (the JSON the event handler POSTs) to an auditseal event.

    ``user.login`` → Authentication (logon; ``success`` false → failure), ``db.session.query`` and
    ``db.session.query.failed`` → Datastore Activity (query), any other event → API Activity with
    the event name as the operation. ``id`` is Teleport's ``uid``; ``source`` is
    :func:`teleport_source` of ``cluster_name``, or of ``cluster`` for events that lack one.
    ``addr.remote`` is required for Authentication and API Activity (it is ``src_endpoint.ip``).

    Raises :class:`EnvelopeError` naming every Teleport field at fault, :class:`EventTooLarge`
    for an event too large to carry.
    """
    doc = _load_object(body)
    errors: list[FieldError] = []

    def fail(path: str, message: str) -> None:
        errors.append(FieldError(path, message))

    def text(key: str) -> str | None:
        value = doc.get(key)
        if value is None:
            fail(key, "required")
        elif not _is_text(value):
            fail(key, "must be a non-empty string")
        else:
            return str(value)
        return None

    event_name = text("event")
    uid = text("uid")
    moment = _timestamp(doc, "time", fail)
    if doc.get("time") is None:
        fail("time", "required")
    user = text("user")
    cluster_name = doc.get("cluster_name")
    if cluster_name is None and cluster is not None:
        cluster_name = cluster
    if cluster_name is None:
        fail("cluster_name", "required")
    elif not _is_text(cluster_name):
        fail("cluster_name", "must be a non-empty string")
    if doc.get("success") is not None and not isinstance(doc["success"], bool):
        fail("success", "must be a boolean")
    if doc.get("ei") is not None and type(doc["ei"]) is not int:
        fail("ei", "must be an integer")

    kind = "api"
    if event_name == "user.login":
        kind = "authentication"
    elif event_name in _TELEPORT_DATASTORE_EVENTS:
        kind = "datastore"
    remote = doc.get("addr.remote")
    src_ip = _remote_ip(remote)
    if remote is None and kind != "datastore":
        fail("addr.remote", "required (the source address becomes data.src_endpoint.ip)")
    elif remote is not None and src_ip is None:
        fail("addr.remote", "not an IP address with an optional port")
    if kind == "datastore":
        query = doc.get("db_query")
        if not _is_text(query):
            fail("db_query", "required" if query is None else "must be a non-empty string")
        if not (_is_text(doc.get("db_service")) or _is_text(doc.get("db_name"))):
            fail("db_name", "required (or db_service)")
    if errors:
        raise EnvelopeError(errors, "cannot map Teleport event")
    assert event_name and uid and user and moment and isinstance(cluster_name, str)

    source = teleport_source(cluster_name)
    status = _teleport_status(doc)
    extra: dict[str, Any] = {"metadata": {"uid": uid, "log_name": "audit"}}
    if _is_text(doc.get("code")):
        extra["metadata"]["event_code"] = doc["code"]
    if type(doc.get("ei")) is int:
        extra["metadata"]["sequence"] = doc["ei"]
    if _is_text(doc.get("message")):
        extra["message"] = doc["message"]
    if _is_text(doc.get("error")):
        extra["status_detail"] = doc["error"]
    session = {"uid": doc["sid"]} if _is_text(doc.get("sid")) else None

    if kind == "authentication":
        method = doc.get("method")
        if isinstance(method, str) and method:
            extra["auth_protocol"] = method
            extra["auth_protocol_id"] = _TELEPORT_AUTH_PROTOCOL.get(method, 99)
        if session:
            extra["session"] = session
        assert src_ip is not None
        extra["raw"] = doc
        event = authentication(
            source,
            MAX_SEQUENCE,
            user,
            "logon",
            status,
            src_ip,
            {"name": cluster_name},
            moment,
            uid,
            product=TELEPORT_PRODUCT,
            extra=extra,
        )
    elif kind == "datastore":
        database: dict[str, Any] = {}
        if _is_text(doc.get("db_name")):
            database["name"] = doc["db_name"]
        if _is_text(doc.get("db_service")):
            database["uid"] = doc["db_service"]
        if _is_text(doc.get("db_protocol")):
            database["type"] = doc["db_protocol"]
        if session:
            extra["actor"] = {"session": session}
        extra["raw"] = doc
        event = datastore_query(
            source,
            MAX_SEQUENCE,
            user,
            database,
            doc["db_query"],
            None,
            status,
            moment,
            uid,
            src_ip=src_ip,
            product=TELEPORT_PRODUCT,
            extra=extra,
        )
    else:
        if session:
            extra["actor"] = {"session": session}
        assert src_ip is not None
        extra["raw"] = doc
        event = api_activity(
            source,
            MAX_SEQUENCE,
            user,
            event_name,
            _teleport_resource(doc),
            status,
            src_ip,
            moment,
            uid,
            product=TELEPORT_PRODUCT,
            extra=extra,
        )
    _sized(event, max_bytes)
    _assign_sequences([event], next_sequence)
    return event


def _teleport_resource(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    for key, kind in _TELEPORT_RESOURCE_KEYS:
        if _is_text(doc.get(key)):
            resource: dict[str, Any] = {"name": doc[key]}
            if kind is not None:
                resource["type"] = kind
            return resource
    return None
