"""TLS for auditseal's servers, and the names a client certificate proves.

With a client CA, a client that presents a certificate must present one the CA signed (the
handshake fails otherwise); a client without one still connects and must then show a bearer
token. The server decides per request which of the two it accepts (see ``peer_names``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServerTLS", "TLSConfigError", "peer_names"]


class TLSConfigError(Exception):
    """A certificate, key or CA file that cannot be used; the message names the file."""

    exit_code = 2  # cli/main.py prints the message as one line and exits with it


@dataclass(frozen=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2 at least), asking for client certificates when a client
        CA is set. Raises TLSConfigError naming the file at fault."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        for path, what in ((self.cert, "--tls-cert"), (self.key, "--tls-key")):
            if not path.is_file():
                raise TLSConfigError(f"{what} {path}: no such file")
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"--tls-cert {self.cert} / --tls-key {self.key}: not a certificate and its "
                f"private key in PEM ({exc})"
            ) from None
        if self.client_ca is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise TLSConfigError(
                    f"--tls-client-ca {self.client_ca}: not PEM CA certificates ({exc})"
                ) from None
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def peer_names(peercert: dict[str, Any] | None) -> list[str]:
    """The names a verified client certificate proves, from ``ssl.SSLSocket.getpeercert()``
    (aiohttp: ``request.transport.get_extra_info("peercert")``), each with its kind:
    ``uri:spiffe://prod/proxy``, ``dns:db-gw.example``, ``email:ops@example``, ``cn:db-gw``.
    Empty without a verified certificate."""
    if not peercert:
        return []
    names: list[str] = []
    kinds = {"URI": "uri", "DNS": "dns", "email": "email"}
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in kinds:
            names.append(f"{kinds[kind]}:{value}")
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(f"cn:{value}")
    return names
