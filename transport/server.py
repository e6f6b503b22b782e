"""Serving an aiohttp application with bounded connections (``listen.serve_app`` calls this).

Three things aiohttp's ``run_app`` leaves open:

- the first request head: aiohttp times the wait for a request head from each response (its
  keep-alive timer) but, before 3.14, not from the connection's start, so a client that
  connects and sends a header byte now and then held its connection for good (slowloris).
  :class:`HeadDeadline` sits in front of aiohttp's protocol and closes a connection whose first
  head is not complete in time; the keep-alive timer, set to the same value, bounds the rest;
- the TLS handshake (asyncio's default is 60 s): the same bound;
- logs: aiohttp reports a client's bad request with a full traceback; :class:`ClientErrors`
  makes it one warning line (a server fault keeps its traceback).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from auditseal.transport.listen import url
from auditseal.transport.tls import ServerTLS

__all__ = ["ClientErrors", "HeadDeadline", "HeadDeadlineSite", "quiet_client_errors", "run"]

log = logging.getLogger(__name__)


def run(
    app: web.Application,
    address: tuple[str, int],
    tls: ServerTLS | None,
    *,
    header_timeout: float,
    shutdown_timeout: float,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``web.run_app`` does, through a
    :class:`HeadDeadlineSite`; then run its shutdown and cleanup hooks."""
    quiet_client_errors()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, address, tls, header_timeout, shutdown_timeout))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        main.cancel()  # its `finally` shuts the application down
        loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


async def _serve(
    app: web.Application,
    address: tuple[str, int],
    tls: ServerTLS | None,
    header_timeout: float,
    shutdown_timeout: float,
) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=True,  # SIGINT and SIGTERM raise GracefulExit out of the loop
        keepalive_timeout=header_timeout,  # idle connections, and every later request head
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        await HeadDeadlineSite(runner, address, tls, header_timeout).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class HeadDeadlineSite(web.BaseSite):
    """A TCP site (as ``web.TCPSite``) whose connections pass through :class:`HeadDeadline`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        address: tuple[str, int],
        tls: ServerTLS | None,
        header_timeout: float,
    ) -> None:
        super().__init__(runner, ssl_context=tls.context() if tls else None)
        self._address = address
        self._tls = tls
        self._header_timeout = header_timeout

    @property
    def name(self) -> str:
        return url(self._address, self._tls)

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        host, port = self._address
        self._server = await loop.create_server(
            lambda: HeadDeadline(server(), self._header_timeout, loop),
            host,
            port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self._header_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )


class HeadDeadline(asyncio.Protocol):
    """Stands in front of aiohttp's protocol and closes the connection unless the first
    request head is complete ``timeout`` seconds after the connection opened. A head ends with
    an empty line: seeing ``\\n\\n`` or ``\\n\\r\\n`` stops the timer (a false early stop only
    hands the connection to aiohttp's own timer)."""

    def __init__(self, inner: asyncio.Protocol, timeout: float, loop: asyncio.AbstractEventLoop):
        self._inner = inner
        self._timeout = timeout
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._timer = self._loop.call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            log.info("closed a connection without a request head after %.0f s", self._timeout)
            self._transport.abort()  # close() would wait for a TLS close_notify from this peer

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if b"\n\n" in seen or b"\n\r\n" in seen:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ClientErrors(logging.Filter):
    """Turns aiohttp's report of a client's protocol error (logged with its traceback) into one
    warning line, attacker-supplied text cut short and made printable; a server fault keeps its
    traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_client_error(exc):
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            text = "".join(c if c.isprintable() else "?" for c in text)
            record.msg = f"{record.getMessage()}: {text}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def is_client_error(exc: BaseException) -> bool:
    """A request the client got wrong (4xx framing, an undecodable body) or abandoned."""
    if isinstance(exc, HttpProcessingError):
        return exc.code < 500
    return isinstance(exc, (web.RequestPayloadError, ConnectionError))


def quiet_client_errors() -> None:
    """Install :class:`ClientErrors` on aiohttp's server logger (once)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrors) for f in server_log.filters):
        server_log.addFilter(ClientErrors())
