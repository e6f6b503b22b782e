"""The read servers (``auditseal serve``, ``auditseal dashboard``) as their users meet them: real
processes on real sockets, over TLS with certificates made by :mod:`tests.tls_files`, asked
with exact requests (any Host header, raw paths and query strings, a client certificate)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditseal.infra.processes import free_port
from tests.tls_files import PKI

__all__ = ["Answer", "Server", "run_server"]

AUDITSEAL = [sys.executable, "-c", "from auditseal.cli.main import main; main()"]


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running server: its port, its log file, and how to ask it."""

    port: int
    log: Path
    pki: PKI | None
    token: str | None = None
    tls: bool = True
    host: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        assert self.pki is not None
        return self.pki.client_context(cert)

    def request(
        self,
        method: str,
        target: str,
        *,
        token: str | None = None,
        host: str | None = None,
        cert: tuple[Path, Path] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """``method target`` exactly as given (a raw path and query), with ``token`` as a
        bearer token, ``host`` as the Host header (default: the address), ``cert`` as the
        client certificate."""
        connection: http.client.HTTPConnection
        if self.tls:
            connection = http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.context(cert)
            )
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        sent = {"Host": f"{self.host}:{self.port}" if host is None else host, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def get(self, target: str, **kwargs: Any) -> Answer:
        """GET ``target`` with the server's token unless ``token`` says otherwise."""
        kwargs.setdefault("token", self.token)
        return self.request("GET", target, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _wait_healthy(server: Server, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{server.log_text()}"
        try:
            if server.request("GET", "/healthz", timeout=2).status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        assert time.monotonic() < deadline, f"no answer in {timeout} s:\n{server.log_text()}"
        time.sleep(0.1)


@contextmanager
def run_server(
    args: list[str],
    workdir: Path,
    *,
    pki: PKI | None,
    token: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``auditseal ARGS --listen 127.0.0.1:PORT`` (plus ``--tls-cert``/``--tls-key`` of
    ``pki``) in ``workdir``; stopped on exit. Its output goes to a log file."""
    port = port or free_port()
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)] if pki else []
    log = workdir / f"server-{port}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    clean["AUDITSEAL_DEV_STATE"] = str(workdir / "no-dev-state.json")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*AUDITSEAL, *args, "--listen", f"127.0.0.1:{port}", *tls],
            cwd=workdir,
            env={**clean, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, log, pki, token, tls=pki is not None)
    try:
        _wait_healthy(server, proc)
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
