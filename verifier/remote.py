"""Fetching proof bundles and the list of logs from the read API of ``auditseal serve``
(``verify --source URL``).

The server is not trusted: it only hands over a :class:`~auditseal.verifier.bundle.Bundle`, which
the verifier then checks like any other. Standard library only (``urllib``), so the base install
can verify against a remote log.

The read API lets in readers only (docs/SERVE.md): a :class:`Source` carries a read token, sent
as ``Authorization: Bearer`` and never to another host (not on a redirect, not in clear beyond
loopback), and for ``https://`` the CA that signed the server's certificate and a client
certificate, when the server takes those.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from auditseal.verifier.bundle import Bundle, bundle_from_bytes
from auditseal.verifier.errors import FormatError, VerifierError
from auditseal.verifier.verify import AmbiguousEventError, EventCandidate

__all__ = [
    "MAX_BUNDLE_BYTES",
    "Source",
    "SourceError",
    "SourceUnavailableError",
    "fetch_anchors",
    "fetch_bundle",
    "fetch_logs",
]

MAX_BUNDLE_BYTES = 256 * 1024 * 1024
"""A bigger answer is refused rather than held in memory: no block of the sealer comes near."""


class SourceError(VerifierError):
    """The read API refused the request (no such log, block or event): a usage error."""

    exit_code = 2


class SourceUnavailableError(VerifierError):
    """The read API could not be reached or answered with a server error: try again later."""

    exit_code = 3


@dataclass(frozen=True)
class Source:
    """A read API and how to reach it: ``token`` (a read token), ``ca_file`` (PEM CA
    certificates to trust for ``https://`` instead of the system's), ``client_cert`` (a PEM
    certificate and its key, for a server that takes client certificates)."""

    url: str
    token: str | None = None
    ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None

    def __post_init__(self) -> None:
        token = self.token
        if token is not None and not (
            0 < len(token) <= 512 and token.isascii() and token.isprintable() and " " not in token
        ):
            raise SourceError("read token: want one line of printable ASCII without spaces")

    def __str__(self) -> str:
        return self.url

    def _opener(self) -> urllib.request.OpenerDirector:
        scheme, host = _scheme_host(self.url)
        if self.token is not None and scheme == "http" and not _is_loopback(host):
            raise SourceError(
                f"--source {self.url}: a read token goes over https:// only (or to a loopback "
                "address): in clear it would be readable on the way"
            )
        if scheme != "https":
            return urllib.request.build_opener()
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise SourceError(f"--api-ca {self.ca_file}: not PEM CA certificates ({exc})") from None
        if self.client_cert is not None:
            cert, key = self.client_cert
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError(
                    f"--api-client-cert {cert} / --api-client-key {key}: not a certificate and "
                    f"its private key in PEM ({exc})"
                ) from None
        return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def _scheme_host(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.hostname or ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _source(source: Source | str) -> Source:
    return source if isinstance(source, Source) else Source(source)


def _get(
    source: Source | str, path: str, query: dict[str, str], timeout: float
) -> tuple[str, bytes]:
    """``GET url+path?query``: (the endpoint, the body)."""
    source = _source(source)
    url = source.url
    endpoint = f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(query)}"
    if not endpoint.startswith(("http://", "https://")):
        raise SourceError(f"--source {url!r}: want an http:// or https:// URL")
    request = urllib.request.Request(endpoint)
    if source.token is not None:
        # Unredirected: a redirect (the API makes none) never carries the token elsewhere.
        request.add_unredirected_header("Authorization", f"Bearer {source.token}")
    opener = source._opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_BUNDLE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail, document = _error_detail(exc)
        if exc.code == 409 and "candidates" in document:
            raise _ambiguous(endpoint, query.get("event", ""), document) from exc
        if exc.code >= 500:
            raise SourceUnavailableError(f"{endpoint}: HTTP {exc.code}: {detail}") from exc
        if exc.code in (401, 403):
            how = "--api-token-file or $AUDITSEAL_API_TOKEN, or --api-client-cert"
            raise SourceError(f"{endpoint}: HTTP {exc.code}: {detail} (give {how})") from exc
        raise SourceError(f"{endpoint}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise SourceError(
                f"{endpoint}: the server's certificate is not trusted ({reason.verify_message}); "
                "give --api-ca with the CA that signed it"
            ) from exc
        raise SourceUnavailableError(f"{endpoint}: unreachable: {reason}") from exc
    if len(body) > MAX_BUNDLE_BYTES:
        raise FormatError(f"{endpoint}: answer over {MAX_BUNDLE_BYTES} bytes")
    return endpoint, body


def _get_json(
    source: Source | str, path: str, query: dict[str, str], timeout: float
) -> tuple[str, object]:
    """``GET url+path?query`` as JSON: (the endpoint, the document)."""
    endpoint, body = _get(source, path, query, timeout)
    try:
        return endpoint, json.loads(body)
    except ValueError as exc:
        raise FormatError(f"{endpoint}: not JSON: {exc}") from exc


def _ambiguous(endpoint: str, requested: str, document: dict[str, object]) -> VerifierError:
    """The server's 409 for an event id sealed by several sources, as the local error."""
    candidates = []
    items = document["candidates"]
    for item in items if isinstance(items, list) else [None]:
        log, index = (item.get("log"), item.get("index")) if isinstance(item, dict) else (0, 0)
        source = item.get("source") if isinstance(item, dict) else 0
        if not (
            isinstance(log, str)
            and isinstance(index, int)
            and (source is None or isinstance(source, str))
        ):
            return FormatError(f"{endpoint}: HTTP 409: malformed candidates")
        candidates.append(EventCandidate(log, index, source))
    return AmbiguousEventError(requested, candidates)


def fetch_bundle(
    url: Source | str,
    origin: str | None,
    number: int | None = None,
    event: str | None = None,
    timeout: float = 30.0,
    *,
    source_uri: str | None = None,
) -> Bundle:
    """The bundle of block ``number`` (or of the block holding ``event``, of CloudEvents
    source ``source_uri`` if given) from ``url``. AmbiguousEventError when the server holds
    the id from several sources (HTTP 409)."""
    query = {
        k: str(v)
        for k, v in (
            ("log", origin),
            ("block", number),
            ("event", event),
            ("source_uri", source_uri),
        )
        if v is not None
    }
    endpoint, body = _get(url, "/v1/bundle", query, timeout)
    try:
        return bundle_from_bytes(body)
    except FormatError as exc:
        raise FormatError(f"{endpoint}: {exc}") from exc


def _count(item: object, key: str) -> int | None:
    value = item.get(key) if isinstance(item, dict) else None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def fetch_logs(url: Source | str, timeout: float = 30.0) -> list[tuple[str, int, int]]:
    """``(origin, number of blocks, size)`` of every log the read API serves."""
    endpoint, document = _get_json(url, "/v1/logs", {}, timeout)
    logs = []
    for i, item in enumerate(document if isinstance(document, list) else [None]):
        origin = item.get("log") if isinstance(item, dict) else None
        blocks, size = _count(item, "blocks"), _count(item, "size")
        if not isinstance(origin, str) or blocks is None or size is None:
            raise FormatError(f'{endpoint}: [{i}]: want {{"log": str, "blocks": int, "size": int}}')
        logs.append((origin, blocks, size))
    return logs


def fetch_anchors(url: Source | str, timeout: float = 30.0) -> dict[int, tuple[str, list[str]]]:
    """``seq -> (status, checkpoint bodies)`` of every anchor the read API's store records."""
    endpoint, document = _get_json(url, "/v1/anchors", {}, timeout)
    anchors: dict[int, tuple[str, list[str]]] = {}
    for i, item in enumerate(document if isinstance(document, list) else [None]):
        seq = _count(item, "seq")
        status = item.get("status") if isinstance(item, dict) else None
        bodies = item.get("checkpoints") if isinstance(item, dict) else None
        if (
            seq is None
            or not isinstance(status, str)
            or not isinstance(bodies, list)
            or not all(isinstance(b, str) for b in bodies)
            or seq in anchors
        ):
            raise FormatError(
                f'{endpoint}: [{i}]: want {{"seq": int, "status": str, "checkpoints": [str]}}'
                " with each seq once"
            )
        anchors[seq] = (status, bodies)
    return anchors


def _error_detail(exc: urllib.error.HTTPError) -> tuple[str, dict[str, object]]:
    """The API's ``{"error": ...}`` message (else the status reason) and the whole answer."""
    try:
        document = json.loads(exc.read(1024 * 1024))
    except (ValueError, OSError):
        document = None
    if not isinstance(document, dict):
        document = {}
    message = document.get("error")
    return (str(message) if message else str(exc.reason)), document
