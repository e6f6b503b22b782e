"""The Host allow-list: a page on another site that rebinds its DNS name to 127.0.0.1 reaches a
loopback server with its own name in Host; answering only the names the server is known by
(421 Misdirected Request otherwise) keeps such a page from reading anything."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

__all__ = ["allowed_hosts", "host_check"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed_hosts(address: tuple[str, int], extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host values a server bound to ``address`` answers: the bound address, localhost and
    the loopback addresses, with and without the port, and each of ``extra`` (``name``,
    ``name:port``, ``[v6]:port``; without a port, with and without the server's)."""
    host, port = address
    out: set[str] = set()
    for name in (host, "localhost", "127.0.0.1", "::1", *extra):
        name = name.lower()
        if name.count(":") > 1 and not name.startswith("["):
            name = f"[{name}]"  # a bare IPv6 address: Host carries it in brackets
        if re.fullmatch(r".*[^:]:\d+", name) and not name.endswith("]"):
            out.add(name)  # given with its port
        else:
            out |= {name, f"{name}:{port}"}
    return frozenset(out)


def host_check(
    allowed: frozenset[str],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware answering 421 to a request whose Host is not in ``allowed``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "").lower()
        if host not in allowed:
            return web.json_response(
                {"error": f"Host {host[:100]!r} is not a name of this server"}, status=421
            )
        return await handler(request)

    return middleware
