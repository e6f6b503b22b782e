"""The Teleport adapter: one Teleport audit event, as the Teleport event handler POSTs it to its
Fluentd output, becomes one auditseal event. Pure: bytes in, dicts out.

Every event type of Teleport's audit event reference maps to an OCSF 1.3.0 class (the table is
in docs/EVENTS.md):

- **Authentication (3002)**: logons and what stands for one, ``user.login``, ``auth``,
  ``saml.idp.auth``, ``bot.join``, ``instance.join``, the start (Logon) and end (Logoff) of SSH,
  app, MCP and desktop sessions (``session.start``/``join``/``end``/``leave``,
  ``app.session.*``, ``windows.desktop.session.*``), ``session.rejected``; the issue of a
  credential is an Authentication Ticket (``cert.create``, ``spiffe.svid.issued``);
  ``mfa_auth_challenge.create`` is Preauth.
- **Datastore Activity (6005)**: every ``db.session.*`` event (start is Connect, queries and
  statements Query, ``create_db``/``user.create`` Create, ``drop_db``/``user.deactivate``
  Delete, ``statements.fetch`` Read).
- **API Activity (6003)**: everything else, with the activity from the last part of the name
  (``role.created`` and ``access_list.create`` are Create; ``.updated``/``.update`` Update;
  ``.deleted``/``.delete``/``.delete_all`` Delete; ``.get``/``.list``/``.search``/``.read``
  Read), else Other (99).

Fields are mapped into OCSF attributes (user, login as the user's account, source and
destination endpoints, server id and hostname, session id, user agent, MFA use, database,
query, HTTP request, status, error); every Teleport field not mapped is kept in ``unmapped``,
and the event as received in ``raw_data``. A field Teleport leaves out (``user``,
``addr.remote``, ``uid``, ``cluster_name`` when the route names the cluster) is no reason to
refuse: the OCSF attribute is then left out, or, where OCSF requires one, says "unknown".

The contract of :mod:`auditseal.ingest.adapters` holds: the body is checked first, with every
problem named; ``next_sequence`` is called only for an event that will be produced; an event
too large to carry is refused, never truncated.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import orjson

from auditseal.ingest.adapters import (
    NextSequence,
    _assign_sequences,
    _is_text,
    _load_object,
    _sized,
    _timestamp,
)
from auditseal.ingest.envelope import (
    MAX_EVENT_BYTES,
    MAX_SEQUENCE,
    TYPE_API_ACTIVITY,
    TYPE_AUTHENTICATION,
    TYPE_DATASTORE_ACTIVITY,
)
from auditseal.ingest.errors import EnvelopeError, FieldError
from auditseal.ingest.events import Status, build_event, ocsf_base

__all__ = [
    "TELEPORT_PRODUCT",
    "content_digest",
    "event_id",
    "from_teleport",
    "ocsf_class",
    "teleport_source",
]

TELEPORT_PRODUCT: Final[Mapping[str, str]] = {"name": "Teleport", "vendor_name": "Gravitational"}

# OCSF caps raw_data at 65,535 characters; a longer event keeps its fields in `unmapped` only.
_RAW_DATA_MAX: Final = 65_535
# Where OCSF requires an endpoint that Teleport did not report, the event passed through Teleport.
_THROUGH_TELEPORT: Final[Mapping[str, str]] = {"svc_name": "teleport"}
# Where OCSF requires a user or database that the event does not name (Teleport leaves `user` out
# of a failed SSO login whose claims matched no role): named "unknown", of type 0 (Unknown).
_UNKNOWN: Final[Mapping[str, Any]] = {"name": "unknown", "type_id": 0, "type": "Unknown"}
# OCSF network_endpoint.hostname (RFC 1123 labels); anything else is kept as `name`.
_HOSTNAME = re.compile(
    r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
)

# -- classification -------------------------------------------------------------------------------

# Authentication activity_id: 1 Logon, 2 Logoff, 3 Authentication Ticket, 6 Preauth, 99 Other.
_AUTHENTICATION: Final[dict[str, int]] = {
    "user.login": 1,
    "auth": 1,
    "saml.idp.auth": 1,
    "bot.join": 1,
    "instance.join": 1,
    "session.start": 1,
    "session.join": 1,
    "session.rejected": 1,
    "app.session.start": 1,
    "mcp.session.start": 1,
    "windows.desktop.session.start": 1,
    "session.end": 2,
    "session.leave": 2,
    "app.session.end": 2,
    "mcp.session.end": 2,
    "windows.desktop.session.end": 2,
    "cert.create": 3,
    "spiffe.svid.issued": 3,
    "mfa_auth_challenge.create": 6,
    "mfa_auth_challenge.validate": 99,
    "device.authenticate": 99,
    "device.authenticate.confirm": 99,
}
# Datastore Activity activity_id by the last part of a db.session.* name: 1 Read, 3 Connect,
# 4 Query, 6 Create, 7 Delete; anything else is 99 (Other).
_DATASTORE: Final[dict[str, int]] = {
    "start": 3,
    "query": 4,
    "failed": 4,  # db.session.query.failed
    "execute": 4,
    "bulk_execute": 4,
    "batch": 4,
    "prepare": 4,
    "parse": 4,
    "bind": 4,
    "function": 4,
    "rpc": 4,
    "rpc_request": 4,
    "request": 4,
    "fetch": 1,
    "create_db": 6,
    "create": 6,
    "drop_db": 7,
    "deactivate": 7,
}
# API Activity activity_id by the last part of the name: 1 Create, 2 Read, 3 Update, 4 Delete.
_API: Final[dict[str, int]] = {
    "create": 1,
    "created": 1,
    "add": 1,
    "create_card": 1,
    "generated": 1,
    "get": 2,
    "list": 2,
    "read": 2,
    "search": 2,
    "access": 2,
    "update": 3,
    "updated": 3,
    "patch": 3,
    "write": 3,
    "update_card": 3,
    "update_info": 3,
    "password_change": 3,
    "delete": 4,
    "deleted": 4,
    "delete_all": 4,
    "delete_all_members": 4,
    "delete_card": 4,
}
# Teleport `method` of a login → OCSF auth_protocol_id (4 OpenID, 5 SAML, 6 OAUTH 2.0, 99 Other).
_AUTH_PROTOCOL: Final[dict[str, int]] = {"oidc": 4, "saml": 5, "github": 6}
# Teleport db_protocol → OCSF database.type_id (1 Relational, 6 NoSQL); others 0 with `type`.
_DATABASE_TYPE: Final[dict[str, int]] = {
    "postgres": 1,
    "mysql": 1,
    "sqlserver": 1,
    "oracle": 1,
    "spanner": 1,
    "clickhouse": 1,
    "clickhouse-http": 1,
    "snowflake": 1,
    "cockroachdb": 1,
    "mongodb": 6,
    "cassandra": 6,
    "dynamodb": 6,
    "redis": 6,
    "elasticsearch": 6,
    "opensearch": 6,
}
# Teleport user_kind → OCSF user type_id and type.
_USER_KIND: Final[dict[int, tuple[int, str]]] = {1: (1, "User"), 2: (99, "Bot")}
# The Teleport field naming what an API Activity acted on, and the resource type it names.
_RESOURCE_KEYS: Final = (
    ("kubernetes_cluster", "kube_cluster"),
    ("app_name", "app"),
    ("desktop_name", "windows_desktop"),
    ("access_list_name", "access_list"),
    ("name", None),
)


def teleport_source(cluster_name: str) -> str:
    """The CloudEvents ``source`` for a Teleport cluster: ``teleport://<cluster_name>``."""
    return "teleport://" + quote(cluster_name, safe=":")


def ocsf_class(event_name: str) -> int:
    """The OCSF class a Teleport event of this name maps to (3002, 6005 or 6003)."""
    if event_name in _AUTHENTICATION:
        return 3002
    if event_name.startswith("db.session."):
        return 6005
    return 6003


def event_id(doc: Mapping[str, Any]) -> str:
    """The CloudEvents ``id``: Teleport's ``uid``, or, for an event without one, a digest of its
    content (sorted keys), so that an event sent twice carries the same id either way."""
    uid = doc.get("uid")
    if _is_text(uid):
        return str(uid)
    return "sha256:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def content_digest(body: bytes) -> str:
    """SHA-256 of a Teleport event's content (keys sorted): two sends of one event agree on it
    whatever their key order or spacing. The body must be a JSON object (from_teleport took it)."""
    return hashlib.sha256(orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- small mappings -------------------------------------------------------------------------------


def _status(doc: Mapping[str, Any]) -> Status:
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


def _endpoint(value: str) -> dict[str, Any]:
    """A Teleport address (``1.2.3.4:5``, ``[::1]:5``, ``host:5``, a bare host) → an OCSF
    network endpoint: ``ip`` or ``hostname``, with ``port``; else the text as ``name``."""
    host, port = value, None
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        if bracket and (not rest or rest.startswith(":")):
            host, port = inner, rest[1:] or None
    elif value.count(":") == 1:
        host, port = value.split(":", 1)
    endpoint: dict[str, Any] = {}
    try:
        endpoint["ip"] = str(ipaddress.ip_address(host))
    except ValueError:
        if _HOSTNAME.fullmatch(host):
            endpoint["hostname"] = host
        else:
            return {"name": value}
    if port is not None:
        if not (port.isascii() and port.isdigit() and int(port) <= 65535):
            return {"name": value}
        endpoint["port"] = int(port)
    return endpoint


def _text(doc: Mapping[str, Any], key: str, used: set[str]) -> str | None:
    """A non-empty string field, marked as mapped; None (and left unmapped) for anything else."""
    value = doc.get(key)
    if _is_text(value):
        used.add(key)
        return str(value)
    if value == "":
        used.add(key)  # Teleport writes "" for "none" (sid, db_name): nothing to keep
    return None


def _user(doc: Mapping[str, Any], used: set[str], *keys: str) -> dict[str, Any] | None:
    """The acting Teleport user as an OCSF user: the first of ``keys`` present (``user`` by
    default), with the OS login as its account and the user kind as its type."""
    name = None
    for key in keys or ("user",):
        name = _text(doc, key, used)
        if name is not None:
            break
    if name is None:
        return None
    user: dict[str, Any] = {"name": name}
    login = _text(doc, "login", used)
    if login is not None:
        user["account"] = {"name": login}
    kind = doc.get("user_kind")
    if type(kind) is int and kind in _USER_KIND:
        user["type_id"], user["type"] = _USER_KIND[kind]
        used.add("user_kind")
    return user


def _destination(doc: Mapping[str, Any], used: set[str]) -> dict[str, Any] | None:
    """The server the event happened on: ``addr.local`` (or ``server_addr``, ``desktop_addr``),
    ``server_hostname``, ``server_id``."""
    endpoint: dict[str, Any] = {}
    for key in ("addr.local", "server_addr", "desktop_addr"):
        address = _text(doc, key, used)
        if address is not None:
            endpoint = _endpoint(address)
            break
    hostname = _text(doc, "server_hostname", used)
    if hostname is not None:
        if _HOSTNAME.fullmatch(hostname):
            endpoint["hostname"] = hostname
        else:
            endpoint.setdefault("name", hostname)
    server_id = _text(doc, "server_id", used)
    if server_id is not None:
        endpoint["uid"] = server_id
    return endpoint or None


def _user_agent(doc: Mapping[str, Any], used: set[str]) -> str | None:
    agent = _text(doc, "user_agent", used)
    if agent is not None:
        return agent
    headers = doc.get("headers")  # db.session.elasticsearch/opensearch.request
    if isinstance(headers, dict):
        values = headers.get("User-Agent")
        if isinstance(values, list) and values and _is_text(values[0]):
            return str(values[0])
    return None


def _http_request(doc: Mapping[str, Any], used: set[str]) -> dict[str, Any] | None:
    """``method``, ``path``, ``raw_query`` and the user agent of an HTTP-shaped event."""
    request: dict[str, Any] = {}
    agent = _user_agent(doc, used)
    if agent is not None:
        request["user_agent"] = agent
    method = doc.get("method")
    if _is_text(method) and str(method).isupper():  # user.login's `method` is the login method
        request["http_method"] = method
        used.add("method")
    path = _text(doc, "path", used) if "http_method" in request else None
    if path is not None:
        request["url"] = {"path": path}
        query = _text(doc, "raw_query", used)
        if query is not None:
            request["url"]["query_string"] = query
    return request or None


def _resource(doc: Mapping[str, Any], used: set[str]) -> dict[str, Any] | None:
    """What an API Activity acted on: a Kubernetes object, an app, a desktop, a named resource,
    an MFA device or a trusted device."""
    if _is_text(doc.get("resource_kind")):  # kube.request
        resource: dict[str, Any] = {"type": _text(doc, "resource_kind", used)}
        name = _text(doc, "resource_name", used)
        resource["name"] = name if name is not None else resource["type"]
        namespace = _text(doc, "resource_namespace", used)
        if namespace is not None:
            resource["namespace"] = namespace
        return resource
    if _is_text(doc.get("mfa_device_name")) or _is_text(doc.get("mfa_device_uuid")):
        resource = {"type": "mfa_device"}
        for key, attr in (("mfa_device_name", "name"), ("mfa_device_uuid", "uid")):
            value = _text(doc, key, used)
            if value is not None:
                resource[attr] = value
        return resource
    for key, kind in _RESOURCE_KEYS:
        name = _text(doc, key, used)
        if name is not None:
            resource = {"name": name}
            if kind is not None:
                resource["type"] = kind
            return resource
    device = doc.get("device")
    if isinstance(device, dict) and _is_text(device.get("device_id")):
        return {"type": "device", "uid": device["device_id"]}
    return None


# -- the adapter ----------------------------------------------------------------------------------


def from_teleport(
    body: bytes,
    next_sequence: NextSequence,
    *,
    cluster: str | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> dict[str, Any]:
    """Map one Teleport audit event (the JSON the event handler POSTs) to an auditseal event.

    The class and activity follow the module's table. ``id`` is :func:`event_id`; ``source`` is
    :func:`teleport_source` of the event's ``cluster_name`` (``cluster`` in SCIM events), or of
    ``cluster`` for an event that names none.

    Raises :class:`EnvelopeError` naming every Teleport field at fault (only fields the mapping
    reads are checked: ``event``, ``time``, ``uid``, ``cluster_name``, ``success``, ``ei``,
    ``addr.remote``), :class:`EventTooLarge` for an event too large to carry.
    """
    doc = _load_object(body)
    errors: list[FieldError] = []

    def fail(path: str, message: str) -> None:
        errors.append(FieldError(path, message))

    event_name = doc.get("event")
    if event_name is None:
        fail("event", "required")
    elif not _is_text(event_name):
        fail("event", "must be a non-empty string")
    moment = _timestamp(doc, "time", fail)
    if doc.get("time") is None:
        fail("time", "required")
    if "uid" in doc and not _is_text(doc["uid"]):
        fail("uid", "must be a non-empty string")
    cluster_key = "cluster_name" if "cluster_name" in doc else "cluster"
    cluster_name = doc.get(cluster_key, cluster)
    if cluster_name is None:
        fail("cluster_name", "required (the event names no cluster and the route gives none)")
    elif not _is_text(cluster_name):
        fail(cluster_key, "must be a non-empty string")
    if doc.get("success") is not None and not isinstance(doc["success"], bool):
        fail("success", "must be a boolean")
    if doc.get("ei") is not None and type(doc["ei"]) is not int:
        fail("ei", "must be an integer")
    remote = doc.get("addr.remote")
    if remote is not None and not isinstance(remote, str):
        fail("addr.remote", "must be a string (host:port)")
    if errors:
        raise EnvelopeError(errors, "cannot map Teleport event")
    assert isinstance(event_name, str) and moment is not None and isinstance(cluster_name, str)

    event = _map(doc, str(event_name), moment, cluster_name, bytes(body))
    _sized(event, max_bytes)
    _assign_sequences([event], next_sequence)
    return event


def _map(
    doc: dict[str, Any], name: str, moment: datetime, cluster_name: str, body: bytes
) -> dict[str, Any]:
    """The event, numbered MAX_SEQUENCE until :func:`_assign_sequences` numbers it."""
    used = {"event", "time", "uid", "code", "ei", "success", "cluster_name", "cluster"}
    status = _status(doc)
    class_uid = ocsf_class(name)
    metadata: dict[str, Any] = {"log_name": "audit", "log_provider": "teleport"}
    if _is_text(doc.get("uid")):
        metadata["uid"] = doc["uid"]
    if _is_text(doc.get("code")):
        metadata["event_code"] = doc["code"]
    if type(doc.get("ei")) is int:
        metadata["sequence"] = doc["ei"]
    sid = _text(doc, "sid", used)
    if sid is not None:
        metadata["correlation_uid"] = sid  # every event of one Teleport session
    extra: dict[str, Any] = {"metadata": metadata}
    message = _text(doc, "message", used)
    if message is not None:
        extra["message"] = message
    detail = _text(doc, "error", used) or _text(doc, "exitError", used)
    if detail is not None:
        extra["status_detail"] = detail
    code = doc.get("status_code", doc.get("response_code"))
    if type(code) is int:
        extra["status_code"] = str(code)
        used.update(("status_code", "response_code"))
    remote = _text(doc, "addr.remote", used)
    source_endpoint = _endpoint(remote) if remote is not None else None
    request = _http_request(doc, used)
    if request is not None:
        extra["http_request"] = request

    if class_uid == 3002:
        event_type = TYPE_AUTHENTICATION
        activity = _AUTHENTICATION[name]
        user = _authentication(doc, name, used, extra)
        extra["user"] = user if user is not None else dict(_UNKNOWN)
        extra.setdefault("service", {"name": cluster_name})  # logged on to the cluster itself
        if sid is not None:
            extra["session"] = {"uid": sid}
        if source_endpoint is not None:
            extra["src_endpoint"] = source_endpoint
    elif class_uid == 6005:
        event_type = TYPE_DATASTORE_ACTIVITY
        activity = _DATASTORE.get(name.rsplit(".", 1)[-1], 99)
        _datastore(doc, used, extra)
        user = _user(doc, used)
        extra["actor"] = {"user": user} if user is not None else {"app_name": "Teleport"}
        if sid is not None:
            extra["actor"]["session"] = {"uid": sid}
        extra["src_endpoint"] = source_endpoint or dict(_THROUGH_TELEPORT)
    else:
        event_type = TYPE_API_ACTIVITY
        activity = _API.get(name.rsplit(".", 1)[-1], 99)
        user = _user(doc, used) or _user(doc, used, "updated_by")
        extra["actor"] = {"user": user} if user is not None else {"app_name": "Teleport"}
        if sid is not None:
            extra["actor"]["session"] = {"uid": sid}
        api: dict[str, Any] = {"operation": name}
        if _is_text(doc.get("uid")):
            api["request"] = {"uid": doc["uid"]}
        if name == "kube.request" and _is_text(doc.get("verb")):
            activity = _API.get(_HTTP_ACTIVITY.get(str(doc["verb"]).upper(), ""), 99)
            used.add("verb")
        extra["api"] = api
        resource = _resource(doc, used)
        if resource is not None:
            extra["resources"] = [resource]
        extra["src_endpoint"] = source_endpoint or dict(_THROUGH_TELEPORT)

    destination = _destination(doc, used)
    if destination is not None:
        extra.setdefault("dst_endpoint", {}).update(destination)
    rest = {key: value for key, value in doc.items() if key not in used}
    if rest:
        extra["unmapped"] = rest
    text = body.decode()
    if len(text) <= _RAW_DATA_MAX:
        extra["raw_data"] = text  # the event exactly as Teleport sent it

    data = ocsf_base(event_type, activity, moment, status, product=TELEPORT_PRODUCT)
    for key, value in extra.items():
        if key == "metadata":
            data["metadata"].update(value)
        else:
            data[key] = value
    return build_event(
        event_type, teleport_source(cluster_name), MAX_SEQUENCE, data, time=moment, id=event_id(doc)
    )


# kube.request's HTTP verb → the API Activity name part that carries its activity.
_HTTP_ACTIVITY: Final[dict[str, str]] = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}


def _authentication(
    doc: Mapping[str, Any], name: str, used: set[str], extra: dict[str, Any]
) -> dict[str, Any] | None:
    """Fill the Authentication attributes; return the subject user (None: unknown)."""
    if name == "cert.create":
        identity = doc.get("identity")
        user = None
        if isinstance(identity, dict) and _is_text(identity.get("user")):
            user = {"name": identity["user"]}
    elif name == "bot.join":
        user = _user(doc, used, "bot_name")
        if user is not None:
            user.update(type_id=99, type="Bot")
    elif name == "instance.join":
        user = _user(doc, used, "node_name")
    else:
        user = _user(doc, used)
    method = _text(doc, "method", used)
    if method is not None:
        extra["auth_protocol"] = method
        extra["auth_protocol_id"] = _AUTH_PROTOCOL.get(method, 99)
    # OCSF 1.3.0's auth_factor must carry an email address, phone number or security questions,
    # so a security key or TOTP device cannot be one: `mfa_device` stays in `unmapped`.
    if isinstance(doc.get("mfa_device"), dict) or name.startswith("mfa_auth_challenge."):
        extra["is_mfa"] = True
    if name.startswith(("session.", "app.", "mcp.", "windows.desktop.")):
        extra["is_remote"] = True
        # 10 Remote Interactive for a shell or desktop, 3 Network for an app or MCP server
        if name.startswith(("app.", "mcp.")) or doc.get("interactive") is False:
            extra["logon_type_id"] = 3
        else:
            extra["logon_type_id"] = 10
    service = None
    for key in ("server_hostname", "kubernetes_cluster", "app_name", "desktop_name"):
        service = _text(doc, key, used)
        if service is not None:
            break
    if service is None:
        service = _text(doc, "service_provider_entity_id", used)
    if service is not None:
        extra["service"] = {"name": service}
    return user


def _datastore(doc: Mapping[str, Any], used: set[str], extra: dict[str, Any]) -> None:
    """Fill database, query_info and the HTTP request of a db.session.* event."""
    database: dict[str, Any] = {}
    db_name = _text(doc, "db_name", used)
    if db_name is not None:
        database["name"] = db_name
    service = _text(doc, "db_service", used)
    if service is not None:
        database["uid"] = service
    protocol = _text(doc, "db_protocol", used)
    if protocol is not None:
        database["type"] = protocol
    if "name" in database or "uid" in database:
        database["type_id"] = _DATABASE_TYPE.get(protocol or "", 0)
    else:
        database = dict(_UNKNOWN)
    extra["database"] = database
    query = None
    for key in ("db_query", "query"):
        query = _text(doc, key, used)
        if query is not None:
            break
    args = doc.get("args")
    if query is None and isinstance(args, dict) and _is_text(args.get("sql")):
        query = str(args["sql"])  # Spanner's ExecuteSql: the args object stays unmapped whole
    if query is not None:  # OCSF query_info requires the query text
        info: dict[str, Any] = {}
        for key in ("statement_name", "procedure", "proc_name", "target"):
            label = _text(doc, key, used)
            if label is not None:
                info["name"] = label
                break
        for key in ("statement_id", "query_id"):
            value = doc.get(key)
            if _is_text(value) or type(value) is int:
                info["uid"] = str(value)
                used.add(key)
                break
        info.setdefault("uid", event_id(doc))  # OCSF names a query by name or uid
        info["query_string"] = query
        extra["query_info"] = info
    uri = _text(doc, "db_uri", used) or _text(doc, "uri", used)
    if uri is not None and "://" not in uri:
        extra["dst_endpoint"] = _endpoint(uri)
    elif uri is not None:
        extra["dst_endpoint"] = {"name": uri}
