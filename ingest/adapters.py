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

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from auditseal.ingest.errors import EnvelopeError, FieldError
from auditseal.ingest.events import Status, api_activity
from auditseal.ingest.jsonsplit import object_with_array

__all__ = [
    "K8S_AUDIT_API_VERSION",
    "K8S_PRODUCT",
    "AcceptedDigest",
    "K8sBatch",
    "K8sDuplicate",
    "K8sRejected",
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

# OCSF caps raw_data at 65,535 characters; a longer audit event (a RequestResponse event with a
# large object) keeps its unmapped members in `unmapped` only, so nothing is lost.
_RAW_DATA_MAX: Final = 65_535
# "RBAC: allowed by ClusterRoleBinding ..." names its authorizer; the name is the OCSF policy's.
_AUTHORIZER = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*): ")


@dataclass(frozen=True)
class K8sRejected:
    """An item of the batch that cannot be carried, and why (paths ``items[<i>].<field>``)."""

    index: int
    audit_id: str | None
    errors: tuple[FieldError, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "auditID": self.audit_id,
            "errors": [str(e) for e in self.errors],
        }


@dataclass(frozen=True)
class K8sDuplicate:
    """An item whose event ``id`` (``auditID/stage``) was already accepted: earlier in this
    batch (``first`` is that item's index) or in an earlier batch (``first`` is None).
    ``same`` says whether its content is identical: an identical copy (a webhook retry) is not
    published again; a different one is published, never dropped, and flagged."""

    index: int
    id: str
    first: int | None
    same: bool

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "first": self.first, "same": self.same}


@dataclass
class K8sBatch:
    """What :func:`from_k8s_event_list` made of one webhook body: the events to publish (in item
    order, numbered), each with its item index and content digest, and the items it refused or
    found duplicated."""

    events: list[dict[str, Any]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    rejected: list[K8sRejected] = field(default_factory=list)
    duplicates: list[K8sDuplicate] = field(default_factory=list)


AcceptedDigest = Callable[[str], str | None]
"""The content digest of an event ``id`` an earlier batch published, or None: the gateway's
memory of recent Kubernetes events, so a batch the API server resends is not sealed twice."""


def from_k8s_event_list(
    body: bytes,
    cluster: str,
    next_sequence: NextSequence,
    *,
    max_bytes: int = MAX_EVENT_BYTES,
    max_items: int = MAX_BATCH_EVENTS,
    accepted_digest: AcceptedDigest | None = None,
) -> K8sBatch:
    """Map a Kubernetes audit webhook body (``audit.k8s.io/v1`` ``EventList``) to API Activity
    events, one per item, in item order, all with ``source`` :func:`k8s_source` ``(cluster)``.

    Items are judged one by one, so one odd event never blocks the rest (the API server resends
    a refused batch whole, up to five times, then drops it):

    1. an item that cannot be mapped, or whose event would not be valid OCSF or exceeds
       ``max_bytes``, is listed in ``rejected`` with its index, ``auditID`` and every problem;
    2. the event ``id`` is ``<auditID>/<stage>``: the API server writes one event per stage of
       a request, all with one ``auditID``, so (source, id) names one audit event. An ``id`` seen
       earlier in the batch, or that ``accepted_digest`` knows, is listed in ``duplicates``; an
       identical copy is dropped from ``events`` (it is already carried), a different one is kept;
    3. only then is ``next_sequence(source)`` called, once per event in ``events``: rejected
       items and identical copies never consume a sequence number.

    Raises :class:`EnvelopeError` only for a body that is not an ``EventList`` at all (not
    JSON, wrong ``kind`` or ``apiVersion``, ``items`` not an array) and :class:`BatchTooLarge`
    for more than ``max_items`` items, counted before they are parsed (the kube-apiserver's
    ``--audit-webhook-batch-max-size`` defaults to 400).
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
    if item_texts is None and doc.get("items") is not None:  # Go writes an empty list as null
        errors.append(FieldError("items", "must be a JSON array"))
    if errors:
        raise EnvelopeError(errors, "invalid Kubernetes audit EventList")
    batch = K8sBatch()
    first_copy: dict[str, tuple[int, str]] = {}
    for i, text in enumerate(item_texts or ()):
        prefix = f"items[{i}]"
        try:
            item = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            batch.rejected.append(
                K8sRejected(i, None, (FieldError(prefix, f"not valid JSON: {exc}"),))
            )
            continue
        audit_id = item.get("auditID") if isinstance(item, dict) else None
        try:
            event = _sized(_k8s_event(item, text, source), max_bytes)
        except EnvelopeError as exc:
            batch.rejected.append(
                K8sRejected(
                    i, audit_id if _is_text(audit_id) else None, exc.prefixed(prefix).errors
                )
            )
            continue
        digest = hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()
        event_id = event["id"]
        earlier: tuple[int | None, str] | None = first_copy.get(event_id)
        if earlier is None and accepted_digest is not None:
            known = accepted_digest(event_id)
            earlier = None if known is None else (None, known)
        if earlier is not None:
            same = earlier[1] == digest
            batch.duplicates.append(K8sDuplicate(i, event_id, earlier[0], same))
            if same:
                continue
        else:
            first_copy[event_id] = (i, digest)
        batch.events.append(event)
        batch.indices.append(i)
        batch.digests.append(digest)
    _assign_sequences(batch.events, next_sequence)
    return batch


def _k8s_event(item: Any, text: str, source: str) -> dict[str, Any]:
    """One audit.k8s.io Event (``text``, parsed as ``item``) → one API Activity event, with a
    placeholder sequence. Raises :class:`EnvelopeError` naming every field at fault."""
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
    stage = item.get("stage")
    if stage is not None and not _is_text(stage):
        fail("stage", "must be a non-empty string")

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
    # What the mapping carries in OCSF attributes; the rest of the item goes to `unmapped`.
    mapped: list[tuple[str, ...]] = [
        ("kind",), ("apiVersion",), ("auditID",), ("verb",), ("requestReceivedTimestamp",),
        ("stageTimestamp",), ("user", "username"), ("user", "uid"), ("user", "groups"),
    ]  # fmt: skip
    actor: dict[str, Any] = {
        key: value
        for key, value in (("name", user.get("username")), ("uid", user.get("uid")))
        if _is_text(value)
    }
    if groups:
        actor["groups"] = [{"name": group} for group in groups]

    metadata: dict[str, Any] = {
        "uid": audit_id,
        "correlation_uid": audit_id,  # the same for every stage of one request
        "log_name": "audit",
        "log_provider": "kube-apiserver",
    }
    if _is_text(item.get("apiVersion")):
        metadata["log_version"] = item["apiVersion"]
    extra: dict[str, Any] = {
        "api": {"request": {"uid": audit_id}, "service": {"name": "kube-apiserver"}},
        "metadata": metadata,
    }
    if len(source_ips) == 1:
        mapped.append(("sourceIPs",))  # a longer list (proxies) stays whole in `unmapped`
    if object_ref:
        if _is_text(object_ref.get("apiGroup")):
            extra["api"]["group"] = {"name": object_ref["apiGroup"]}
        if _is_text(object_ref.get("apiVersion")):
            extra["api"]["version"] = object_ref["apiVersion"]
        mapped.extend(
            ("objectRef", key)
            for key in (
                "resource",
                "subresource",
                "name",
                "namespace",
                "uid",
                "apiGroup",
                "apiVersion",
            )
        )
    http_request: dict[str, Any] = {}
    if _is_text(item.get("userAgent")):
        http_request["user_agent"] = item["userAgent"]
        mapped.append(("userAgent",))
    if _is_text(item.get("requestURI")):
        path, _, query = item["requestURI"].partition("?")
        http_request["url"] = {"path": path, **({"query_string": query} if query else {})}
        mapped.append(("requestURI",))
    if http_request:
        extra["http_request"] = http_request
    if code is not None:
        extra["api"]["response"] = {"code": code}
        extra["status_code"] = str(code)
        mapped.append(("responseStatus", "code"))
    if isinstance(response, dict):
        if _is_text(response.get("reason")):
            extra["status_detail"] = response["reason"]
            mapped.append(("responseStatus", "reason"))
        if _is_text(response.get("message")):
            extra["message"] = response["message"]
            mapped.append(("responseStatus", "message"))
    if received is not None:
        extra["start_time"] = epoch_millis(received)
    if staged is not None:
        extra["end_time"] = epoch_millis(staged)
    annotations = item.get("annotations")
    if isinstance(annotations, dict) and _is_text(annotations.get("authorization.k8s.io/decision")):
        authorization: dict[str, Any] = {"decision": annotations["authorization.k8s.io/decision"]}
        mapped.append(("annotations", "authorization.k8s.io/decision"))
        reason = annotations.get("authorization.k8s.io/reason")
        authorizer = _AUTHORIZER.match(reason) if isinstance(reason, str) else None
        if authorizer:  # OCSF names a policy by name or uid; a reason alone stays unmapped
            authorization["policy"] = {"name": authorizer.group(1), "desc": reason}
            mapped.append(("annotations", "authorization.k8s.io/reason"))
        elif reason == "":
            mapped.append(("annotations", "authorization.k8s.io/reason"))
        extra["actor"] = {"authorizations": [authorization]}
    unmapped = _unmapped(text, mapped)
    if unmapped:
        extra["unmapped"] = unmapped
    if len(text) <= _RAW_DATA_MAX:
        extra["raw_data"] = text  # the audit event exactly as the API server sent it

    return api_activity(
        source,
        MAX_SEQUENCE,
        actor,
        str(verb),
        _k8s_resource(object_ref, item.get("responseObject")),
        _http_status(code),
        source_ips[0],
        moment,
        f"{audit_id}/{stage}" if stage else str(audit_id),
        product=K8S_PRODUCT,
        extra=extra,
    )


def _unmapped(text: str, mapped: list[tuple[str, ...]]) -> dict[str, Any]:
    """The audit event less the members the mapping carried (a fresh parse of ``text``, so the
    caller's objects are never shared); objects left empty by the removal are dropped."""
    rest: dict[str, Any] = orjson.loads(text)
    touched: set[str] = set()
    for path in mapped:
        parent: Any = rest
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
            touched.add(path[0])
    for key in touched:
        if rest.get(key) == {}:
            del rest[key]
    return rest


def _k8s_resource(
    object_ref: Mapping[str, Any] | None, response_object: Any
) -> dict[str, Any] | None:
    """objectRef → an OCSF resource: type ``pods`` or ``pods/log``, name, namespace, uid.

    OCSF wants a name or uid. A request on a collection (``list``, or ``create`` of an object
    whose name the server generates from ``generateName``) has none in objectRef: the name is
    then the created object's, when the event carries the response (level RequestResponse),
    else the collection's own (``pods``)."""
    if not object_ref or not _is_text(object_ref.get("resource")):
        return None
    kind = object_ref["resource"]
    if _is_text(object_ref.get("subresource")):
        kind = f"{kind}/{object_ref['subresource']}"
    resource: dict[str, Any] = {"type": kind}
    for key in ("name", "namespace", "uid"):
        if _is_text(object_ref.get(key)):
            resource[key] = object_ref[key]
    if "name" not in resource:
        meta = response_object.get("metadata") if isinstance(response_object, dict) else None
        generated = meta.get("name") if isinstance(meta, dict) else None
        resource["name"] = generated if _is_text(generated) else object_ref["resource"]
    return resource
