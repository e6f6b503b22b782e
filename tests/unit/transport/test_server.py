"""Serving with bounded connections: a request head must arrive in time, over TCP and TLS, and a
client's protocol error is one log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
import time

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from auditseal.infra.processes import free_port
from auditseal.transport.server import ClientErrors, HeadDeadlineSite
from auditseal.transport.tls import ServerTLS
from tests.tls_files import make_pki

TIMEOUT = 0.5


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _serving(tls: ServerTLS | None, keepalive: float = 3600) -> tuple[web.AppRunner, int]:
    """A server whose first request heads are timed by HeadDeadline alone (aiohttp's own timer,
    which 3.14 also starts at the connection's start, is out of the way unless ``keepalive``)."""
    app = web.Application()
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app, keepalive_timeout=keepalive)
    await runner.setup()
    port = free_port()
    await HeadDeadlineSite(runner, ("127.0.0.1", port), tls, TIMEOUT).start()
    return runner, port


async def _open(port: int, client: ssl.SSLContext | None):
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname="127.0.0.1" if client else None
    )


async def _seconds_until_closed(reader: asyncio.StreamReader, limit: float) -> float:
    started = time.monotonic()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):  # or still open
        await asyncio.wait_for(reader.read(), limit)
    return time.monotonic() - started


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_head_that_does_not_arrive_in_time_is_cut_and_one_that_does_is_served(scheme, tmp_path):
    tls = client = None
    if scheme == "https":
        pki = make_pki(tmp_path)
        tls, client = ServerTLS(pki.server_cert, pki.server_key), pki.client_context()

    async def main() -> None:
        runner, port = await _serving(tls)
        try:
            # One header byte at a time, never the empty line that ends the head.
            reader, writer = await _open(port, client)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")

            async def dribble() -> None:
                for _ in range(20):
                    await asyncio.sleep(0.1)
                    writer.write(b"X")

            task = asyncio.create_task(dribble())
            assert await _seconds_until_closed(reader, 5) < TIMEOUT + 1
            task.cancel()
            writer.close()
            # A complete head is served; the connection then waits for the next one.
            reader, writer = await _open(port, client)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
            assert await _seconds_until_closed(reader, TIMEOUT + 1) > TIMEOUT + 0.5
            writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_connection_that_never_speaks_is_cut():
    async def main() -> None:
        runner, port = await _serving(None)
        try:
            reader, writer = await _open(port, None)
            assert await _seconds_until_closed(reader, 5) < TIMEOUT + 1
            writer.close()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("10.0.0.9",),
        info,
    )


def test_a_clients_protocol_error_is_one_warning_line_and_a_server_fault_keeps_its_traceback():
    record = _record(BadHttpMessage("Bad status line 'GARBAGE\\r\\n\x1b[31m'"))
    assert ClientErrors().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    text = logging.Formatter().format(record)
    assert "\n" not in text and "\x1b" not in text
    assert text.startswith("Error handling request from 10.0.0.9: BadHttpMessage: 400")
    for exc in (ConnectionResetError("gone"), web.RequestPayloadError("bad gzip")):
        record = _record(exc)
        ClientErrors().filter(record)
        assert record.exc_info is None
    record = _record(KeyError("a bug"))
    ClientErrors().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
