"""Fetching proof bundles from the read API of ``auditseal serve`` (``verify --source URL``).

The server is not trusted: it only hands over a :class:`~verifier.bundle.Bundle`, which the
verifier then checks like any other. Standard library only (``urllib``), so the base install
can verify against a remote log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from verifier.bundle import Bundle, bundle_from_json
from verifier.errors import FormatError, VerifierError

__all__ = ["MAX_BUNDLE_BYTES", "SourceError", "SourceUnavailableError", "fetch_bundle"]

MAX_BUNDLE_BYTES = 256 * 1024 * 1024
"""A bigger answer is refused rather than held in memory: no block of the sealer comes near."""


class SourceError(VerifierError):
    """The read API refused the request (no such log, block or event): a usage error."""

    exit_code = 2


class SourceUnavailableError(VerifierError):
    """The read API could not be reached or answered with a server error: try again later."""

    exit_code = 3


def fetch_bundle(
    url: str,
    origin: str | None,
    number: int | None = None,
    event: str | None = None,
    timeout: float = 30.0,
) -> Bundle:
    """The bundle of block ``number`` (or of the block holding ``event``) from ``url``."""
    query = {
        k: str(v)
        for k, v in (("log", origin), ("block", number), ("event", event))
        if v is not None
    }
    endpoint = f"{url.rstrip('/')}/v1/bundle?{urllib.parse.urlencode(query)}"
    if not endpoint.startswith(("http://", "https://")):
        raise SourceError(f"--source {url!r}: want an http:// or https:// URL")
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            body = response.read(MAX_BUNDLE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        if exc.code >= 500:
            raise SourceUnavailableError(f"{endpoint}: HTTP {exc.code}: {detail}") from exc
        raise SourceError(f"{endpoint}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceUnavailableError(f"{endpoint}: unreachable: {reason}") from exc
    if len(body) > MAX_BUNDLE_BYTES:
        raise FormatError(f"{endpoint}: answer over {MAX_BUNDLE_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise FormatError(f"{endpoint}: not JSON: {exc}") from exc
    try:
        return bundle_from_json(document)
    except FormatError as exc:
        raise FormatError(f"{endpoint}: {exc}") from exc


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The API's ``{"error": ...}`` message, else the status reason."""
    try:
        message = json.loads(exc.read(64 * 1024)).get("error")
    except (ValueError, AttributeError, OSError):
        message = None
    return str(message) if message else str(exc.reason)
