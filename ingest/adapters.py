"""Adapters from formats proxies already speak to auditseal events. Pure: bytes in, dicts out.

Teleport has its own module, :mod:`auditseal.ingest.teleport`, built on the helpers here.

- :func:`from_k8s_event_list`: the body the Kubernetes API server's audit webhook backend POSTs,
  an ``audit.k8s.io/v1`` ``EventList``; each audit event becomes one API Activity event.

Each produced event keeps the original audit event, parsed and unchanged, under ``data.raw``.
The field-by-field mappings are tabled in docs/EVENTS.md.

Contract shared by both adapters:

1. The whole body is checked first. Any problem raises :class:`EnvelopeError` naming every field
   at fault (``items[2].auditID: required``); no event is produced.
2. Only then is ``next_sequence(source)`` called, once per produced event, in body order. A
   refused body therefore never consumes sequence numbers: a gap in ``sequence`` always means
   events were lost after the adapter, never that a body was refused.
3. An event whose encoding (``data.raw`` included) exceeds ``max_bytes`` is refused with
   :class:`EventTooLarge`, never truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import orjson

from auditseal.ingest.envelope import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_SEQUENCE,
    encode_event,
    epoch_millis,
    is_ip_address,
    parse_rfc3339,
)
from auditseal.ingest.errors import EnvelopeError, EventTooLarge, FieldError
from auditseal.ingest.events import Status, api_activity
from auditseal.ingest.jsonsplit import object_with_array

__all__ = [
    "K8S_AUDIT_API_VERSION",
    "K8S_PRODUCT",
    "NextSequence",
    "from_k8s_event_list",
    "k8s_source",
]

NextSequence = Callable[[str], int]
"""Returns the next ``sequence`` for a source; the gateway owns the per-source counters."""

K8S_AUDIT_API_VERSION: Final = "audit.k8s.io/v1"
K8S_PRODUCT: Final[Mapping[str, str]] = {
    "name": "Kubernetes API server",
    "vendor_name": "Kubernetes",
}


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def k8s_source(cluster: str) -> str:
    """The CloudEvents ``source`` (and Kafka key) for a Kubernetes cluster: ``k8s://<cluster>``."""
    return "k8s://" + quote(cluster, safe=":")


def _load_object(body: bytes) -> dict[str, Any]:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError.single("$", f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise EnvelopeError.single("$", "must be a JSON object")
    return doc


def _timestamp(
    doc: Mapping[str, Any], key: str, fail: Callable[[str, str], None]
) -> datetime | None:
    value = doc.get(key)
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        fail(key, "not an RFC 3339 timestamp")
        return None


def _sized(event: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    # Measured while `sequence` holds its widest value, so the real one cannot push it over.
    encode_event(event, max_bytes)
    return event


def _assign_sequences(events: list[dict[str, Any]], next_sequence: NextSequence) -> None:
    for event in events:
        number = next_sequence(event["source"])
        if type(number) is not int or not 1 <= number <= MAX_SEQUENCE:
            raise ValueError(f"next_sequence({event['source']!r}) returned {number!r}")
        event["sequence"] = number


def _http_status(code: int | None) -> Status:
    if code is None:
        return "unknown"
    return "success" if 100 <= code < 400 else "failure"


# -- Kubernetes -----------------------------------------------------------------------------------


def from_k8s_event_list(
    body: bytes,
    cluster: str,
    next_sequence: NextSequence,
    *,
    max_bytes: int = MAX_EVENT_BYTES,
    max_items: int = MAX_BATCH_EVENTS,
) -> list[dict[str, Any]]:
    """Map a Kubernetes audit webhook body (``audit.k8s.io/v1`` ``EventList``) to API Activity
    events, one per item, in item order, all with ``source`` :func:`k8s_source` ``(cluster)``.

    The CloudEvents ``id`` is the item's ``auditID``, unchanged. Kubernetes emits one audit event
    per stage of a request, all with the same ``auditID``; a policy with
    ``omitStages: ["RequestReceived"]`` keeps one event per request.

    Raises :class:`EnvelopeError` for a body that is not JSON, not an ``EventList`` of
    ``audit.k8s.io/v1``, or has an item missing a field the mapping needs (errors are named
    ``items[<i>].<field>``); :class:`EventTooLarge` for an item too large to carry;
    :class:`BatchTooLarge` for more than ``max_items`` items, counted before they are parsed
    (the kube-apiserver's ``--audit-webhook-batch-max-size`` defaults to 400).
    """
    if not _is_text(cluster):
        raise ValueError("cluster must be a non-empty string")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    source = k8s_source(cluster)
    doc, item_texts = object_with_array(bytes(body), "items", max_items, "audit events")
    errors: list[FieldError] = []
    if doc.get("kind") != "EventList":
        errors.append(FieldError("kind", "must be 'EventList'"))
    if doc.get("apiVersion") != K8S_AUDIT_API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {K8S_AUDIT_API_VERSION!r}"))
    items: list[Any] = []
    if item_texts is not None:
        items = item_texts
    elif doc.get("items") is not None:  # Go's encoding/json writes an empty list as null
        errors.append(FieldError("items", "must be a JSON array"))
    events: list[dict[str, Any]] = []
    too_large: list[EventTooLarge] = []
    for i, text in enumerate(items):
        try:
            item = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            errors.append(FieldError(f"items[{i}]", f"not valid JSON: {exc}"))
            continue
        try:
            events.append(_sized(_k8s_event(item, source), max_bytes))
        except EventTooLarge as exc:
            too_large.append(exc.prefixed(f"items[{i}]"))
            errors.extend(too_large[-1].errors)
        except EnvelopeError as exc:
            errors.extend(exc.prefixed(f"items[{i}]").errors)
    if len(errors) == 1 and too_large:
        raise too_large[0]  # size is the only problem: let the caller answer 413
    if errors:
        raise EnvelopeError(errors, "invalid Kubernetes audit EventList")
    _assign_sequences(events, next_sequence)
    return events


def _k8s_event(item: Any, source: str) -> dict[str, Any]:
    """One audit.k8s.io/v1 Event → one API Activity event, with a placeholder sequence."""
    if not isinstance(item, dict):
        raise EnvelopeError.single("$", "must be a JSON object")
    errors: list[FieldError] = []

    def fail(path: str, message: str) -> None:
        errors.append(FieldError(path, message))

    kind = item.get("kind")
    if kind is not None and kind != "Event":
        fail("kind", "must be 'Event'")
    audit_id = item.get("auditID")
    if not _is_text(audit_id):
        fail("auditID", "required" if audit_id is None else "must be a non-empty string")
    verb = item.get("verb")
    if not _is_text(verb):
        fail("verb", "required" if verb is None else "must be a non-empty string")

    user = item.get("user")
    if not isinstance(user, dict):
        fail("user", "required" if user is None else "must be a JSON object")
        user = {}
    elif not (_is_text(user.get("username")) or _is_text(user.get("uid"))):
        fail("user.username", "required (or user.uid)")
    groups = user.get("groups")
    if groups is not None and not (
        isinstance(groups, list) and all(isinstance(g, str) for g in groups)
    ):
        fail("user.groups", "must be a JSON array of strings")
        groups = None

    source_ips: Any = item.get("sourceIPs")
    if not isinstance(source_ips, list) or not source_ips:
        fail("sourceIPs", "required" if source_ips is None else "must be a non-empty JSON array")
    elif not is_ip_address(source_ips[0]):
        fail("sourceIPs[0]", "not an IP address")

    received = _timestamp(item, "requestReceivedTimestamp", fail)
    staged = _timestamp(item, "stageTimestamp", fail)
    if item.get("requestReceivedTimestamp") is None and item.get("stageTimestamp") is None:
        fail("requestReceivedTimestamp", "required (or stageTimestamp)")

    response = item.get("responseStatus")
    code: int | None = None
    if response is not None:
        if not isinstance(response, dict):
            fail("responseStatus", "must be a JSON object")
        elif response.get("code") is not None:
            if type(response["code"]) is not int:
                fail("responseStatus.code", "must be an integer")
            else:
                code = response["code"]
    object_ref = item.get("objectRef")
    if object_ref is not None and not isinstance(object_ref, dict):
        fail("objectRef", "must be a JSON object")
        object_ref = None
    if errors:
        raise EnvelopeError(errors)

    moment = received or staged
    assert moment is not None  # one of the two parsed, or an error was raised above
    actor: dict[str, Any] = {
        key: value
        for key, value in (("name", user.get("username")), ("uid", user.get("uid")))
        if _is_text(value)
    }
    if groups:
        actor["groups"] = [{"name": group} for group in groups]

    extra: dict[str, Any] = {
        "api": {"request": {"uid": audit_id}, "service": {"name": "kube-apiserver"}},
        "metadata": {"uid": audit_id, "log_name": "audit"},
    }
    if object_ref:
        if _is_text(object_ref.get("apiGroup")):
            extra["api"]["group"] = {"name": object_ref["apiGroup"]}
        if _is_text(object_ref.get("apiVersion")):
            extra["api"]["version"] = object_ref["apiVersion"]
    http_request: dict[str, Any] = {}
    if _is_text(item.get("userAgent")):
        http_request["user_agent"] = item["userAgent"]
    if _is_text(item.get("requestURI")):
        path, _, query = item["requestURI"].partition("?")
        http_request["url"] = {"path": path, **({"query_string": query} if query else {})}
    if http_request:
        extra["http_request"] = http_request
    if code is not None:
        extra["http_response"] = {"code": code}
        extra["status_code"] = str(code)
    if isinstance(response, dict):
        if _is_text(response.get("reason")):
            extra["status_detail"] = response["reason"]
        if _is_text(response.get("message")):
            extra["message"] = response["message"]
    if received is not None:
        extra["start_time"] = epoch_millis(received)
    if staged is not None:
        extra["end_time"] = epoch_millis(staged)
    annotations = item.get("annotations")
    if isinstance(annotations, dict) and _is_text(annotations.get("authorization.k8s.io/decision")):
        authorization: dict[str, Any] = {"decision": annotations["authorization.k8s.io/decision"]}
        if _is_text(annotations.get("authorization.k8s.io/reason")):
            authorization["policy"] = {"desc": annotations["authorization.k8s.io/reason"]}
        extra["actor"] = {"authorizations": [authorization]}
    extra["raw"] = item  # last, so it reads as the tail of data

    return api_activity(
        source,
        MAX_SEQUENCE,
        actor,
        str(verb),
        _k8s_resource(object_ref),
        _http_status(code),
        source_ips[0],
        moment,
        str(audit_id),
        product=K8S_PRODUCT,
        extra=extra,
    )


def _k8s_resource(object_ref: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """objectRef → an OCSF resource: type ``pods`` or ``pods/log``, name, namespace, uid."""
    if not object_ref or not _is_text(object_ref.get("resource")):
        return None
    kind = object_ref["resource"]
    if _is_text(object_ref.get("subresource")):
        kind = f"{kind}/{object_ref['subresource']}"
    resource: dict[str, Any] = {"type": kind}
    for key in ("name", "namespace", "uid"):
        if _is_text(object_ref.get(key)):
            resource[key] = object_ref[key]
    return resource
