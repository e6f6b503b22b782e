"""No secret in any output: the attacker's test of docs/SECURITY.md's promise.

An API key is planted in the path, the query and the user information of the RPC URL, as
providers hand them out (``https://user:KEY@host/v3/KEY?apikey=KEY``). Anvil answers only ``/``,
so a small pass-through proxy in front of it accepts exactly that path and query: a command
that got through really used the secret URL. Every command that takes ``--rpc`` runs against it
on success and on failure (endpoint unreachable, key refused, a contract that is not there),
and every byte it printed, logged, answered over HTTP or left in a file is searched for the
keys. A PostgreSQL store URL's password gets the same treatment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from auditseal.infra.processes import free_port, wait_until

pytestmark = [pytest.mark.chain]

ROOT = Path(__file__).resolve().parents[2]
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SECRETS = ("SECRETKEY123", "SECRETKEY456", "SECRETPW789")
PATH_QUERY = "/v3/SECRETKEY123?apikey=SECRETKEY456"
NO_CODE = "0x000000000000000000000000000000000000dEaD"
ORIGIN = "test.local/secrets/0"
CLI = (sys.executable, "-c", "from auditseal.cli.main import main; main()")


class _Forward(BaseHTTPRequestHandler):
    """JSON-RPC through to Anvil for the one secret path and query; 404 for anything else."""

    server: _ProxyServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != PATH_QUERY:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = urllib.request.Request(
            self.server.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            data = answer.read()
        self.server.forwarded += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream = ""
    forwarded = 0


@pytest.fixture(scope="module")
def rpc_proxy(anvil_rpc: str) -> Iterator[_ProxyServer]:
    server = _ProxyServer(("127.0.0.1", 0), _Forward)
    server.upstream = anvil_rpc
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def secret_url(port: int, query_extra: str = "") -> str:
    return f"http://user:SECRETPW789@127.0.0.1:{port}{PATH_QUERY}{query_extra}"


@dataclass
class World:
    """A store with one anchored block, its keys and deployment, and everything said so far."""

    dir: Path
    rpc: str  # through the proxy: works
    unreachable: str  # nobody listens
    refused: str  # the proxy answers 404: a key the provider does not know
    log_key: str = ""
    contract: str = ""
    said: list[tuple[str, str]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
        return {
            **base,
            "PYTHONPATH": str(ROOT),
            "AUDITSEAL_DEV_STATE": str(self.dir / "no-dev-state.json"),
            "AUDITSEAL_CHAIN_KEY": DEV_KEY,
            "AUDITSEAL_ANCHOR_DEPLOYMENT": "deployment.json",
            **extra,
        }

    def run(
        self, *args: str, codes: tuple[int, ...] = (0,), stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*CLI, *args],
            cwd=self.dir,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            env=self.env(**env),
        )
        self.said.append((" ".join(args), proc.stdout + proc.stderr))
        assert proc.returncode in codes, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def assert_nothing_leaked(self) -> None:
        """No key in anything said, nor in any file the commands left behind."""
        for what, text in self.said:
            for secret in SECRETS:
                assert secret not in text, f"{what} showed {secret}:\n{text}"
        for path in self.dir.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for secret in SECRETS:
                    assert secret.encode() not in data, f"{path} holds {secret}"


@pytest.fixture(scope="module")
def world(rpc_proxy: _ProxyServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    port = rpc_proxy.server_address[1]
    w = World(
        tmp_path_factory.mktemp("secrets"),
        secret_url(port),
        secret_url(free_port()),
        secret_url(port, "&v=2"),
    )
    keygen = w.run("keygen", "--name", "secrets-test", "--json")
    w.log_key = json.loads(keygen.stdout)["verifier_key"]
    w.run(
        *("log", "append", "--store", "store.db", "--log", ORIGIN, "--key", "secrets-test.key"),
        stdin="one\ntwo\nthree\n",
    )
    before = rpc_proxy.forwarded
    w.run("anchor", "deploy", "--rpc", w.rpc, "--out", "deployment.json", "--json")
    w.contract = json.loads((w.dir / "deployment.json").read_text())["address"]
    w.run("anchor", "run", "--once", "--store", "store.db", "--rpc", w.rpc, "--json")
    assert rpc_proxy.forwarded > before  # the secret URL was used, not bypassed
    return w


def test_anchor_deploy_and_run_show_no_key(world: World) -> None:
    w = world
    for rpc, code, said in ((w.unreachable, 3, "unreachable"), (w.refused, 3, "HTTP 404")):
        for args in (
            ("anchor", "deploy", "--rpc", rpc, "--out", "other.json", "--force"),
            ("anchor", "run", "--once", "--store", "store.db", "--rpc", rpc, "--retries", "1"),
        ):
            proc = w.run(*args, codes=(code,))
            assert said in proc.stderr and "http://127.0.0.1:" in proc.stderr, proc.stderr
    # A deployment record naming an address without a contract.
    record = json.loads((w.dir / "deployment.json").read_text())
    (w.dir / "wrong.json").write_text(json.dumps({**record, "address": NO_CODE}))
    proc = w.run(
        *("anchor", "run", "--once", "--store", "store.db", "--rpc", w.rpc),
        *("--deployment", "wrong.json"),
        codes=(2,),
    )
    assert "no contract code" in proc.stderr
    # The service loop logs each failed round: no key in its log either.
    proc = subprocess.Popen(
        [
            *(*CLI, "anchor", "run", "--store", "store.db", "--rpc", w.unreachable),
            *("--interval", "0.2", "--retries", "1", "--backoff", "0", "--metrics-listen", "off"),
        ],
        cwd=w.dir,
        env=w.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    w.said.append(("anchor run (loop)", out + err))
    assert "anchor round failed" in err, err
    w.assert_nothing_leaked()


def test_verify_shows_no_key(world: World) -> None:
    w = world
    pins = ("--log-key", w.log_key, "--deployment", "deployment.json")
    block = ("verify", "--block", "0", "--log", ORIGIN, "--store", "store.db", *pins)
    every = ("verify", "--all", "--store", "store.db", *pins)
    for args in (block, every):
        ok = w.run(*args, "--rpc", w.rpc, "--json")
        assert json.loads(ok.stdout)["verdict"].startswith("VALID"), ok.stdout
        for rpc in (w.unreachable, w.refused):
            w.run(*args, "--rpc", rpc, codes=(3,))
            w.run(*args, "--rpc", rpc, "--json", codes=(3,))
        w.run(*args, "--rpc", w.rpc, "--contract", NO_CODE, codes=(1, 3))
    w.run(*block, "--json", codes=(3,), AUDITSEAL_RPC=w.unreachable)
    w.assert_nothing_leaked()


@pytest.mark.kafka
def test_monitor_shows_no_key(world: World, kafka_bootstrap: str, new_topic) -> None:
    w = world
    args = (
        *("monitor", "--bootstrap", kafka_bootstrap, "--log-key", w.log_key),
        *("--sealed-topic", new_topic(), "--anchors-topic", new_topic(), "--alerts-topic", ""),
        *("--deployment", "deployment.json", "--metrics-listen", "off", "--idle-exit", "1"),
    )
    w.run(*args, "--rpc", w.rpc)
    for rpc in (w.unreachable, w.refused):
        proc = w.run(*args, "--rpc", rpc, codes=(3,))
        assert "chain at http://127.0.0.1:" in proc.stderr, proc.stderr
    proc = w.run(*args, "--rpc", w.rpc, "--contract", NO_CODE, codes=(2,))
    assert "no code" in proc.stderr
    w.assert_nothing_leaked()


@pytest.mark.kafka
def test_the_dashboard_shows_no_key(world: World, kafka_bootstrap: str, new_topic) -> None:
    w = world
    for rpc in (w.rpc, w.unreachable, w.refused):
        port = free_port()
        log_path = w.dir / f"dashboard-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    *(*CLI, "dashboard", "--listen", f"127.0.0.1:{port}", "--store", "store.db"),
                    "--no-auth",  # loopback: readers are not what this test is about
                    *("--bootstrap", kafka_bootstrap, "--sealed-topic", new_topic()),
                    *("--anchors-topic", new_topic(), "--alerts-topic", new_topic()),
                    *("--rpc", rpc, "--log-key", w.log_key, "--deployment", "deployment.json"),
                ],
                cwd=w.dir,
                env=w.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            state = f"{base}/api/state"
            wait_until(lambda: _get(state)[0] == 200 or None, 60, "the dashboard")  # noqa: B023
            answers = [
                _get(f"{base}/api/block?log={ORIGIN}&number=0"),
                _get(f"{base}/api/event?id=position:0"),
                _get(f"{base}/api/state"),
            ]
            status, body = answers[0]
            assert status == 200, body
            report = json.loads(body)
            if rpc == w.rpc:
                assert report["report"]["verdict"].startswith("VALID"), report
            else:
                assert "http://127.0.0.1:" in body, body  # the endpoint, named without its key
            for _status, text in answers:
                for secret in SECRETS:
                    assert secret not in text, text
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    w.assert_nothing_leaked()  # the dashboards' logs included


def test_dev_status_shows_no_key(world: World) -> None:
    w = world
    for rpc in (w.rpc, w.unreachable):
        for fmt in ((), ("--json",)):
            proc = w.run("dev", "status", *fmt, codes=(0, 3), AUDITSEAL_RPC=rpc)
            assert "http://127.0.0.1:" in proc.stdout
    w.assert_nothing_leaked()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, repr(exc)


# --- a PostgreSQL store's password ------------------------------------------------------------


@pytest.mark.postgres
def test_a_store_url_password_is_never_shown(world: World, pg_url: str) -> None:
    w = world
    password = urlsplit(pg_url).password
    assert password
    parts = urlsplit(pg_url)
    wrong = urlunsplit(parts._replace(netloc=parts.netloc.replace(password, "WRONGPASSWORD42")))
    said_before = len(w.said)
    w.run("store", "init", "--store", pg_url)
    w.run("store", "copy", "--from", "store.db", "--to", pg_url)
    w.run(
        *("log", "append", "--store", pg_url, "--log", ORIGIN, "--key", "secrets-test.key"),
        stdin="four\n",
    )
    pins = ("--log-key", w.log_key, "--deployment", "deployment.json")
    w.run("verify", "--all", "--store", pg_url, *pins, "--rpc", w.rpc, "--json", codes=(0, 1, 3))
    w.run("bundle", "--block", "0", "--log", ORIGIN, "--store", pg_url, "--out", "b.json")
    for args in (
        ("verify", "--all", "--store", wrong, *pins, "--rpc", w.rpc),
        ("log", "append", "--store", wrong, "--log", ORIGIN, "--key", "secrets-test.key"),
        ("store", "init", "--store", wrong),
    ):
        proc = w.run(*args, codes=(2, 3), stdin="x\n")
        assert "cannot connect" in proc.stderr, proc.stderr
    w.run(*("anchor", "run", "--once", "--store", pg_url, "--rpc", w.rpc), codes=(0, 3))
    # The read API names the store it serves on its first line.
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--store", pg_url, "--listen", f"127.0.0.1:{port}", "--no-auth"],
        cwd=w.dir,
        env=w.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/v1/logs")[0] or None, 60, "the read API")
        answer = _get(f"http://127.0.0.1:{port}/v1/logs")[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    w.said.append(("serve", out + answer))
    assert "postgresql://" in out and ORIGIN in answer, (out, answer)
    for what, text in w.said[said_before:]:
        for secret in (password, "WRONGPASSWORD42"):
            assert secret not in text, f"{what} showed the password:\n{text}"
    w.assert_nothing_leaked()
