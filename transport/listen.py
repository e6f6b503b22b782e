"""Where a server may listen, and serving it: plaintext only on loopback unless the operator
says ``--insecure-plaintext``; TLS otherwise, for the HTTP servers and the metrics endpoints."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from auditseal.transport.tls import ServerTLS

__all__ = [
    "PlaintextRefused",
    "check_plaintext",
    "is_loopback",
    "serve_app",
    "serve_metrics",
    "url",
]

log = logging.getLogger(__name__)


class PlaintextRefused(Exception):
    """A non-loopback address without TLS and without ``--insecure-plaintext``."""

    exit_code = 2  # cli/main.py prints the message as one line and exits with it


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_plaintext(
    address: tuple[str, int], tls: ServerTLS | None, insecure_plaintext: bool, what: str
) -> None:
    """Refuse to serve ``what`` in plaintext beyond loopback, unless explicitly allowed (then
    say so in the log)."""
    host, port = address
    if tls is not None or is_loopback(host):
        return
    if not insecure_plaintext:
        raise PlaintextRefused(
            f"{what} on {host}:{port} is not loopback: give --tls-cert and --tls-key, or "
            "--insecure-plaintext if a proxy in front of it terminates TLS"
        )
    log.warning("%s on %s:%d speaks plaintext HTTP (--insecure-plaintext)", what, host, port)


def url(address: tuple[str, int], tls: ServerTLS | None) -> str:
    host, port = address
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def serve_app(
    app: Any,
    address: tuple[str, int],
    tls: ServerTLS | None,
    *,
    shutdown_timeout: float = 60.0,
) -> None:
    """Run an aiohttp application on ``address`` until interrupted, over TLS when given. The
    caller has checked the address with :func:`check_plaintext` and told the user the URL."""
    from aiohttp import web

    host, port = address
    web.run_app(
        app,
        host=host,
        port=port,
        ssl_context=tls.context() if tls else None,
        print=None,
        shutdown_timeout=shutdown_timeout,
    )


def serve_metrics(
    address: tuple[str, int], registry: Any, tls: ServerTLS | None, insecure_plaintext: bool
) -> None:
    """Start the Prometheus endpoint in a thread (TLS and client certificates when given)."""
    from prometheus_client import start_http_server

    check_plaintext(address, tls, insecure_plaintext, "the metrics endpoint")
    host, port = address
    if tls is None:
        start_http_server(port, host, registry=registry)
        return
    tls.context()  # a bad file is named here, not deep in the http.server thread
    start_http_server(
        port,
        host,
        registry=registry,
        certfile=str(tls.cert),
        keyfile=str(tls.key),
        client_cafile=str(tls.client_ca) if tls.client_ca else None,
        client_auth_required=tls.client_ca is not None,
    )
