"""Where a server may listen, and serving it: plaintext only on loopback unless the operator
says ``--insecure-plaintext``; TLS otherwise, for the HTTP servers and the metrics endpoints."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from typing import Any

from auditseal.transport.tls import ServerTLS

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "HANDSHAKE_TIMEOUT",
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


DEFAULT_HEADER_TIMEOUT_S = 10.0
"""How long a connection may take to deliver a complete request head (see :func:`serve_app`)."""


def serve_app(
    app: Any,
    address: tuple[str, int],
    tls: ServerTLS | None,
    *,
    shutdown_timeout: float = 60.0,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
) -> None:
    """Run an aiohttp application on ``address`` until SIGINT or SIGTERM, over TLS when given.
    The caller has checked the address with :func:`check_plaintext` and told the user the URL.

    A connection must complete its TLS handshake within ``header_timeout`` seconds, then
    deliver a complete request head (request line and headers) within ``header_timeout`` of
    opening and of the previous response, and is closed otherwise; so is a keep-alive
    connection idle for as long. A body is the handler's to bound in time. A client's protocol
    error (bad framing, a body that cannot be decoded, a connection dropped mid-request) is
    logged as one warning line, without a traceback. See ``auditseal.transport.server``.
    """
    from auditseal.transport.server import run

    if header_timeout <= 0:
        raise ValueError("header_timeout must be positive")
    run(app, address, tls, header_timeout=header_timeout, shutdown_timeout=shutdown_timeout)


HANDSHAKE_TIMEOUT = 10.0
"""Seconds a metrics client has to finish the TLS handshake, then to send its request."""


def serve_metrics(
    address: tuple[str, int], registry: Any, tls: ServerTLS | None, insecure_plaintext: bool
) -> None:
    """Start the Prometheus endpoint in a thread (TLS and client certificates when given).

    With a client CA every scraper must present a certificate it signed (there is no token
    alternative here). The TLS handshake runs in each connection's own thread, bounded by
    :data:`HANDSHAKE_TIMEOUT`: prometheus_client's own TLS option shakes hands in the accept
    loop, where one silent connection stalls every scrape. Raises PlaintextRefused,
    TLSConfigError (naming the file), or OSError when the address cannot be bound."""
    from prometheus_client import start_http_server

    check_plaintext(address, tls, insecure_plaintext, "the metrics endpoint")
    host, port = address
    if tls is None:
        start_http_server(port, host, registry=registry)
        return
    context = tls.context()
    if tls.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    server = _tls_metrics_server(host, port, registry, context)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def _tls_metrics_server(host: str, port: int, registry: Any, context: ssl.SSLContext) -> Any:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape is not news

    class Server(ThreadingWSGIServer):
        def finish_request(self, request: Any, client_address: Any) -> None:
            # In the connection's thread (ThreadingMixIn): the accept loop never waits.
            request.settimeout(HANDSHAKE_TIMEOUT)
            try:
                conn = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # no handshake, a bad or missing client certificate: nothing served
            handler: Any = self.RequestHandlerClass
            try:
                handler(conn, client_address, self)
            finally:
                conn.close()

    # As prometheus_client does: the family of the address (an IPv6 one needs AF_INET6).
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    Server.address_family, bind = info[0][0], str(info[0][4][0])
    return make_server(bind, port, make_wsgi_app(registry), Server, handler_class=Quiet)
