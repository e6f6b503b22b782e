"""A small HTTP client of the gateway, for proxies in Python without Kafka access and for the
traffic simulator. One keep-alive connection; a 503 (Kafka unavailable) or a 429 (over the rate
limit, after its Retry-After) is retried, so order is kept; any other refusal raises with the
gateway's error list."""

from __future__ import annotations

import http.client
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from auditseal.ingest.errors import IngestError

__all__ = ["GatewayClient", "GatewayRefused"]


def _seconds(retry_after: str | None) -> float:
    """A Retry-After in seconds (1 when missing or not a number of seconds)."""
    try:
        return max(0.0, float(retry_after or 1))
    except ValueError:
        return 1.0


class GatewayRefused(IngestError):
    def __init__(self, status: int, errors: list[str]) -> None:
        super().__init__(f"gateway answered {status}: {'; '.join(errors[:5])}")
        self.status = status
        self.errors = errors


class GatewayClient:
    def __init__(self, url: str, timeout: float = 30.0, max_wait: float = 300.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IngestError(f"gateway URL {url!r}: want http://host:port")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._max_wait = max_wait
        self._conn: http.client.HTTPConnection | None = None
        self.retries = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def post_events(self, token: str, events: Sequence[dict[str, Any]]) -> int:
        """POST events as NDJSON; returns how many the gateway accepted (all of them).

        Retries while the gateway answers 503 (Kafka unavailable) or 429 (over the rate
        limit; after its Retry-After), up to ``max_wait`` seconds; a kept-alive connection the
        gateway closed meanwhile is reopened at once."""
        body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
        deadline = time.monotonic() + self._max_wait
        while True:
            reused = self._conn is not None
            wait = 1.0
            try:
                conn = self._connection()
                conn.request("POST", "/v1/events", body, headers)
                response = conn.getresponse()
                status, payload = response.status, response.read()
                if status == 429:
                    wait = _seconds(response.getheader("Retry-After"))
            except (OSError, http.client.HTTPException):
                self.close()  # reconnect on the next try
                if reused:
                    continue  # an idle connection the gateway closed: try a fresh one now
                status, payload = 503, b"{}"
            if status == 202:
                accepted: int = orjson.loads(payload)["accepted"]
                if accepted != len(events):
                    raise GatewayRefused(202, [f"accepted {accepted} of {len(events)} events"])
                return accepted
            if status not in (429, 503) or time.monotonic() > deadline:
                try:
                    answer = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    answer = {"error": payload[:200].decode(errors="replace")}
                raise GatewayRefused(status, answer.get("errors") or [str(answer.get("error"))])
            self.retries += 1
            time.sleep(min(wait, max(0.05, deadline - time.monotonic())))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
