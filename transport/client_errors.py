"""A client's malformed request is the client's error: one line in the log, never a traceback.

aiohttp answers a request it cannot parse (a line over 8190 bytes, a bad byte in the URL, a
broken Content-Length) with 400 and logs the parser's exception with its traceback on the
``aiohttp.server`` logger, at ERROR. Anyone who can reach the port could fill the log with
those, and a traceback in an audit service's log reads as a bug. The filter here rewrites such
records into one INFO line naming the client and the first line of the parser's message.
"""

from __future__ import annotations

import logging

__all__ = ["quiet_malformed_requests"]


class _MalformedRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            # The message quotes the client's bytes: one line, bounded, as the repr shows it.
            detail = " ".join(str(exc.message).split())[:160]
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed request from %s: %d %s"
            record.args = (client, exc.code, detail)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_malformed_requests() -> None:
    """Install the filter on ``aiohttp.server`` (once, however often it is called)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequests) for f in logger.filters):
        logger.addFilter(_MalformedRequests())
