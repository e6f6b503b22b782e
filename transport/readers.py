"""Who may read: the access rule of the read API (``auditseal serve``) and the dashboard.

A request reads if it carries a valid read token (``Authorization: Bearer``; the dashboard's
page also sends it as a cookie), or comes over a TLS connection whose client certificate the
server's client CA signed (``--tls-client-ca``), restricted to named readers when
``--reader-cert`` names them. ``--no-auth`` lets everybody read, and is accepted only on a
loopback address. The Host allow-list (:mod:`auditseal.transport.hosts`) runs before this
check, so a page rebinding its DNS name to loopback learns nothing, not even whether a token
would be needed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from auditseal.transport.hosts import allowed_hosts
from auditseal.transport.listen import PlaintextRefused, check_plaintext, is_loopback
from auditseal.transport.tls import ServerTLS, TLSConfigError, peer_names
from auditseal.transport.tokens import TokenFile, TokenFileError

__all__ = [
    "READER",
    "SETUP_ERRORS",
    "ReadAccess",
    "ReadAccessError",
    "ReadServer",
    "bearer_token",
    "read_access",
    "read_auth",
    "read_server",
]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READER = web.RequestKey("reader", str)
"""The reader a request was let in as: ``token:<name>``, ``cert:<name>`` or ``anyone``."""

_MAX_TOKEN = 512  # far above the 47 characters of a token; longer is not one


class ReadAccessError(Exception):
    """Read access that cannot be set up as asked: the message names the option or file."""


@dataclass(frozen=True)
class ReadAccess:
    """Who may read. ``tokens``: the read tokens; ``client_certs``: the server asks for client
    certificates (a client CA is set); ``reader_certs``: the certificate names that may read
    (empty: any certificate the CA signed); ``no_auth``: everybody."""

    tokens: TokenFile | None = None
    client_certs: bool = False
    reader_certs: frozenset[str] = field(default_factory=frozenset)
    no_auth: bool = False

    @classmethod
    def anyone(cls) -> ReadAccess:
        """No authentication (``--no-auth``; and tests of everything else)."""
        return cls(no_auth=True)

    def describe(self) -> list[str]:
        """How readers get in, for the start-up lines."""
        if self.no_auth:
            return ["NO AUTHENTICATION (--no-auth): whoever reaches this address reads everything"]
        ways = []
        if self.tokens is not None:
            ways.append(f"read tokens of {self.tokens.path}")
        if self.client_certs and self.reader_certs:
            ways.append("client certificates " + ", ".join(sorted(self.reader_certs)))
        elif self.client_certs:
            ways.append("any client certificate the client CA signed")
        return ["readers: " + "; ".join(ways)]

    def reader(self, peercert: dict[str, Any] | None, token: str | None) -> str | None:
        """The reader a request stands for, or None. A certificate was verified by the TLS
        handshake against the client CA; here only its names are compared."""
        if self.no_auth:
            return "anyone"
        if self.client_certs:
            names = peer_names(peercert)
            if names and not self.reader_certs:
                return f"cert:{names[0]}"
            allowed = [n for n in names if n in self.reader_certs]
            if allowed:
                return f"cert:{allowed[0]}"
        if token is not None and self.tokens is not None:
            subject = self.tokens.subject_for(token)
            if subject is not None:
                return f"token:{subject}"
        return None

    def refusal(self, peercert: dict[str, Any] | None, token: str | None) -> web.Response:
        """The answer to a request :meth:`reader` refused: 401 asking for a token, or 403 for
        a certificate that proves a name not among the readers."""
        names = peer_names(peercert) if self.client_certs else []
        if names and token is None:
            return web.json_response(
                {"error": f"certificate {names[0]!r} is not a reader (--reader-cert)"},
                status=403,
                headers={"Cache-Control": "no-store"},
            )
        what = "an unknown, expired or revoked read token" if token else "no read token"
        ways = "Authorization: Bearer <read token>"
        if self.client_certs:
            ways += " or a client certificate"
        return web.json_response(
            {"error": f"{what}: send {ways}"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="auditseal"', "Cache-Control": "no-store"},
        )


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None (absent or another scheme)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > _MAX_TOKEN:
        return None
    return value


def read_auth(
    access: ReadAccess,
    open_paths: Collection[str] = ("/healthz",),
    open_prefixes: tuple[str, ...] = (),
    token_of: Callable[[web.Request], str | None] = bearer_token,
) -> Middleware:
    """An aiohttp middleware letting a request through only for a reader (``request[READER]``
    names it); ``open_paths`` and paths starting with one of ``open_prefixes`` are served to
    all (they MUST hold no data)."""
    exact = frozenset(open_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exact or (open_prefixes and request.path.startswith(open_prefixes)):
            return await handler(request)
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        token = token_of(request)
        reader = access.reader(peercert, token)
        if reader is None:
            return access.refusal(peercert, token)
        request[READER] = reader
        return await handler(request)

    return middleware


def read_access(
    address: tuple[str, int],
    tls: ServerTLS | None,
    *,
    tokens_path: Path,
    tokens_given: bool,
    reader_certs: Iterable[str] = (),
    no_auth: bool = False,
    token_command: str,
) -> ReadAccess:
    """The access a server's options ask for, checked: ``--no-auth`` only on loopback; the
    tokens file must load if it was named (``tokens_given``) or exists; some way in must
    remain (else ReadAccessError saying how to create a token with ``token_command``)."""
    certs = frozenset(reader_certs)
    client_certs = tls is not None and tls.client_ca is not None
    if no_auth:
        if not is_loopback(address[0]):
            raise ReadAccessError(
                f"--no-auth: only on a loopback address, and {address[0]} is not one; give "
                "readers a token or a client certificate"
            )
        if certs or tokens_given:
            raise ReadAccessError("--no-auth lets everybody read: give no --reader-cert/--tokens")
        return ReadAccess.anyone()
    if certs and not client_certs:
        raise ReadAccessError("--reader-cert names client certificates: give --tls-client-ca")
    for name in certs:
        if name.partition(":")[0] not in ("cn", "dns", "uri", "email") or ":" not in name:
            raise ReadAccessError(
                f"--reader-cert {name!r}: want cn:NAME, dns:NAME, uri:URI or email:ADDRESS"
            )
    tokens = None
    if tokens_given or tokens_path.exists():
        try:
            tokens = TokenFile(tokens_path)
        except TokenFileError as exc:
            raise ReadAccessError(f"--tokens: {exc}") from None
    if tokens is None and not client_certs:
        raise ReadAccessError(
            f"no way for a reader to authenticate: create a read token with `auditseal "
            f"{token_command} token --name NAME` (kept in {tokens_path}), give --tls-client-ca "
            "for client certificates, or --no-auth on a loopback address"
        )
    return ReadAccess(tokens, client_certs, certs)


@dataclass(frozen=True)
class ReadServer:
    """What a read server's options came to: who may read, the Host names it answers, and
    the lines to print at start."""

    access: ReadAccess
    hosts: frozenset[str]
    notes: tuple[str, ...]


SETUP_ERRORS = (ReadAccessError, PlaintextRefused, TLSConfigError)
"""What :func:`read_server` raises: each message is one line naming the option or file."""


def read_server(
    address: tuple[str, int],
    tls: ServerTLS | None,
    insecure_plaintext: bool,
    *,
    what: str,
    tokens_path: Path,
    tokens_given: bool,
    reader_certs: Iterable[str] = (),
    no_auth: bool = False,
    allowed_host: Iterable[str] = (),
    token_command: str,
) -> ReadServer:
    """Check a read server's options before it listens: plaintext only on loopback (or with
    ``insecure_plaintext``), TLS files that load, read access (:func:`read_access`), and the
    Host allow-list (the listen address, localhost and ``allowed_host``)."""
    check_plaintext(address, tls, insecure_plaintext, what)
    if tls is not None:
        tls.context()  # a bad file is named now, not at the first connection
    access = read_access(
        address,
        tls,
        tokens_path=tokens_path,
        tokens_given=tokens_given,
        reader_certs=reader_certs,
        no_auth=no_auth,
        token_command=token_command,
    )
    extra = tuple(allowed_host)
    notes = list(access.describe())
    if address[0] in ("0.0.0.0", "::") and not extra:
        notes.append(
            f"Host allow-list: only localhost and {address[0]}; name the host clients use "
            "with --allowed-host, or they get 421"
        )
    return ReadServer(access, allowed_hosts(address, extra), tuple(notes))
