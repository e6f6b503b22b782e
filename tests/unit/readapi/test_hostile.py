"""The attacker's table: hostile query strings against every route of the read API and the
dashboard, each over real TLS, as a reader (the handlers parse them), without a token and with
a foreign Host. Every answer is 400, 401, 404 or 421 (200 only where a route reads no such
parameter or the value is merely an unknown name), none holds the store's path or a
traceback, and neither server's log holds a traceback afterwards."""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditseal.transport.tokens import add_token
from tests.read_servers import Answer, Server, run_server
from tests.tls_files import PKI, make_pki
from tests.unit.dashboard.test_access import dashboard_args
from tests.unit.readapi.test_app import ORIGIN, build_store

A_LOG = urllib.parse.quote(ORIGIN, safe="")

# Raw (already encoded) values: numbers out of every range, signs, exponents, other scripts'
# digits, control bytes, broken percent-encoding and UTF-8, injection attempts, path tricks.
HOSTILE = [
    str(2**70),
    str(2**64),
    str(2**63),
    "9" * 400,
    "-1",
    "-0",
    "+1",
    "1e3",
    "0x10",
    "1.5",
    "%201",
    "1%20",
    "%EF%BC%91",  # fullwidth 1: isdigit() says yes
    "%D9%A3",  # Arabic-Indic 3
    "NaN",
    "inf",
    "",
    "%00",
    "1%00",
    "%0d%0aX-Injected:%201",
    "%ff%fe",
    "%ED%A0%80",  # an encoded UTF-16 surrogate
    "%",
    "%zz",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%27%20OR%201%3D1%20--",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "x" * 4000,
]

# route -> (the other parameters, valid, and the parameters attacked one at a time)
READ_API = {
    "/v1/checkpoint": ("", ["log"]),
    "/v1/checkpoint.json": ("", ["log"]),
    "/v1/blocks": (f"log={A_LOG}", ["log", "from", "limit"]),
    "/v1/block": (f"log={A_LOG}&number=0", ["log", "number", "entries"]),
    "/v1/entries": (f"log={A_LOG}", ["log", "start", "limit"]),
    "/v1/entry": (f"log={A_LOG}", ["log", "index", "position"]),
    "/v1/event": ("id=ev-1", ["id", "log", "source_uri"]),
    "/v1/proof/inclusion": (f"log={A_LOG}&index=0", ["log", "index", "size"]),
    "/v1/proof/consistency": (f"log={A_LOG}&old=1", ["log", "old", "new"]),
    "/v1/bundle": (f"log={A_LOG}&block=0", ["log", "block", "event", "source_uri"]),
}
READ_API_OPEN = ["/v1/logs", "/v1/anchors", "/metrics", "/healthz"]  # no parameters
DASHBOARD = {
    "/api/block": (f"log={A_LOG}&number=0", ["log", "number"]),
    "/api/event": ("id=ev-1", ["id"]),
}
DASHBOARD_OPEN = ["/api/state", "/api/session", "/healthz", "/", "/static/app.js"]
PATH_TRICKS = [
    "/static/../api/state",
    "/static/%2e%2e/api/state",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/" + "%2e%2e/" * 12 + "etc/passwd",
    "//etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/v1/..%2f..%2fetc%2fpasswd",
    "/api/block/../../etc/passwd",
    "/" + "a" * 4000,
]
REFUSED = {400, 401, 404, 421}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile-secret-path")
    build_store(path / "store.db")
    return path


@pytest.fixture(scope="module")
def pki(workdir: Path) -> PKI:
    return make_pki(workdir / "pki")


@pytest.fixture(scope="module")
def api(workdir: Path, pki: PKI) -> Iterator[Server]:
    token = add_token(workdir / "api-tokens", "attacker-with-a-read-token")
    args = ["serve", "--store", str(workdir / "store.db"), "--tokens", str(workdir / "api-tokens")]
    with run_server(args, workdir, pki=pki, token=token) as server:
        yield server


@pytest.fixture(scope="module")
def dashboard(workdir: Path, pki: PKI) -> Iterator[Server]:
    token = add_token(workdir / "dashboard-tokens", "attacker", prefix="asd_")
    args = dashboard_args("--tokens", str(workdir / "dashboard-tokens"))
    args[args.index("store.db")] = str(workdir / "store.db")
    with run_server(args, workdir, pki=pki, token=token) as server:
        yield server


def leaks(answer: Answer, workdir: Path) -> list[str]:
    found = []
    for secret in (str(workdir), "store.db", "Traceback", 'File "', "hostile-secret-path"):
        if secret.encode() in answer.body:
            found.append(secret)
    return found


def targets(routes: dict[str, tuple[str, list[str]]]) -> Iterator[tuple[str, str]]:
    """(the value, the target) for every hostile value in every parameter of every route, and
    each parameter given twice."""
    for route, (base, attacked) in routes.items():
        for name in attacked:
            kept = "&".join(p for p in base.split("&") if p and not p.startswith(f"{name}="))
            for value in HOSTILE:
                yield value, f"{route}?{kept}&{name}={value}".replace("?&", "?")
            yield "twice", f"{route}?{base}&{name}=1&{name}=2".replace("?&", "?")


def check_server(server: Server, workdir: Path, routes: dict, open_routes: list[str]) -> None:
    problems = []
    for value, target in targets(routes):
        # An empty value is an absent one: an optional parameter takes its default.
        as_reader = {400, 404} | ({200} if value == "" else set())
        for token, host, allowed in (
            (server.token, None, as_reader),
            (None, None, {401}),
            (server.token, "evil.example", {421}),
        ):
            answer = server.get(target, token=token, host=host)
            if answer.status not in allowed or leaks(answer, workdir):
                problems.append(
                    (
                        target[:120],
                        token is not None,
                        host,
                        answer.status,
                        leaks(answer, workdir),
                        answer.body[:200],
                    )
                )
    for route in open_routes:
        for query in ("", "?log=%ff&number=" + str(2**70) + "&x=%00"):
            answer = server.get(route + query)
            if answer.status != 200 or leaks(answer, workdir):
                problems.append(
                    (
                        route + query,
                        True,
                        None,
                        answer.status,
                        leaks(answer, workdir),
                        answer.body[:200],
                    )
                )
            answer = server.get(route + query, host="evil.example")
            if answer.status != 421:
                problems.append((route + query, True, "evil", answer.status, [], answer.body[:200]))
    for target in PATH_TRICKS:
        answer = server.get(target)
        if answer.status not in REFUSED or leaks(answer, workdir) or b"root:" in answer.body:
            problems.append(
                (target[:120], True, None, answer.status, leaks(answer, workdir), answer.body[:200])
            )
    assert problems == [], "\n".join(repr(p[:5]) for p in problems)
    assert "Traceback" not in server.log_text()


# Requests aiohttp's parser refuses before any handler runs.
MALFORMED = [
    b"GET /v1/logs?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n",
    b"GET /v1/logs HTTP/1.1\r\nHost: {host}\r\nX-Long: " + b"b" * 10_000 + b"\r\n\r\n",
    b"GET /v1/block?log=\xff\xfe&number=1 HTTP/1.1\r\nHost: {host}\r\n\r\n",
    b"GET /v1/logs HTTP/1.1\r\nHost: {host}\r\nContent-Length: -5\r\n\r\n",
    b"GET /v1/logs HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
]


def send_raw(server: Server, raw: bytes) -> bytes:
    """``raw`` bytes over a TLS connection; the start of the answer."""
    assert server.pki is not None
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain,
        server.context().wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(raw.replace(b"{host}", f"127.0.0.1:{server.port}".encode()))
        try:
            return tls.recv(200)
        except (ConnectionError, OSError):
            return b""


@pytest.mark.parametrize("which", ["api", "dashboard"])
def test_malformed_requests_are_400_and_one_log_line_at_most(which, request, workdir):
    server: Server = request.getfixturevalue(which)
    for raw in MALFORMED:
        answer = send_raw(server, raw)
        refused = answer.startswith(b"HTTP/1.") and b" 400 " in answer[:20]
        assert answer == b"" or refused, raw[:40]
    assert "Traceback" not in server.log_text()


def test_the_read_api_refuses_hostile_queries_cleanly(api, workdir):
    check_server(api, workdir, READ_API, READ_API_OPEN)


def test_the_dashboard_refuses_hostile_queries_cleanly(dashboard, workdir):
    check_server(dashboard, workdir, DASHBOARD, DASHBOARD_OPEN)
    # The live stream (a reader's request would stream until closed): refused before it starts.
    for value in HOSTILE:
        target = f"/api/events?x={value}"
        assert dashboard.get(target, token=None).status == 401, value
        assert dashboard.get(target, host="evil.example").status == 421, value
