"""The Prometheus endpoints of `seal`, `anchor run` and `monitor` over TLS, as a scraper and an
attacker meet them: real processes, real sockets, certificates made by the test.

With --tls-client-ca, a scraper must present a certificate that CA signed; without one, or with
another CA's, the connection fails. Plain HTTP to a TLS endpoint gets nothing. A non-loopback
--metrics-listen without TLS is refused at start (exit 2, one line) unless --insecure-plaintext.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditseal.infra.processes import free_port, port_answers
from auditseal.sealer.signer import Signer
from auditseal.store.blockstore import BlockStore
from tests.tls_files import PKI, make_pki

pytestmark = [pytest.mark.kafka, pytest.mark.chain]

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-c", "from auditseal.cli.main import main; main()")
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@dataclass
class Setup:
    dir: Path
    pki: PKI
    commands: dict[str, list[str]]  # the three services, without their metrics options
    metric: dict[str, str]  # a metric each one serves


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, anvil_rpc: str) -> Setup:
    from auditseal.infra import broker

    d = tmp_path_factory.mktemp("metrics-tls")
    signer = Signer.generate("metrics-tls")
    signer.write_private_file(d / "sealer.key")
    BlockStore.open(d / "store.db", create=True).close()
    deploy = subprocess.run(
        [*CLI, "anchor", "deploy", "--rpc", anvil_rpc, "--out", str(d / "deployment.json")],
        cwd=d,
        env=env(AUDITSEAL_CHAIN_KEY=DEV_KEY),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deploy.returncode == 0, deploy.stderr
    topics = [f"metrics-tls-{i}-{os.getpid()}" for i in range(4)]
    for topic in topics:
        broker.create_topic(kafka_bootstrap, topic, 1)
    log_key = signer.verifier.to_string()
    return Setup(
        d,
        make_pki(d / "pki"),
        {
            "seal": [
                *("seal", "--key", "sealer.key", "--store", "store.db", "--state-dir", "sealer"),
                *("--bootstrap", kafka_bootstrap, "--topic", topics[0]),
                *("--sealed-topic", topics[1]),
            ],
            "anchor run": [
                *("anchor", "run", "--store", "store.db", "--rpc", anvil_rpc),
                *("--deployment", "deployment.json", "--interval", "1"),
            ],
            "monitor": [
                *("monitor", "--bootstrap", kafka_bootstrap, "--log-key", log_key, "--no-chain"),
                *("--sealed-topic", topics[2], "--anchors-topic", topics[3]),
                *("--alerts-topic", ""),
            ],
        },
        {
            "seal": "auditseal_sealer_",
            "anchor run": "auditseal_anchor_",
            "monitor": "auditseal_monitor_",
        },
    )


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    return {**base, "PYTHONPATH": str(ROOT), "AUDITSEAL_CHAIN_KEY": DEV_KEY, **extra}


@contextmanager
def running(s: Setup, name: str, *metrics: str) -> Iterator[subprocess.Popen[bytes]]:
    log = open(s.dir / f"{name.replace(' ', '-')}-{time.time_ns()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*CLI, *s.commands[name], *metrics], cwd=s.dir, env=env(), stdout=log, stderr=log
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def scrape(url: str, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        return str(answer.read().decode())


def eventually(get: Callable[[], str], proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            return get()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.parametrize("name", ["seal", "anchor run", "monitor"])
def test_the_metrics_endpoint_speaks_mtls(setup: Setup, name: str) -> None:
    s = setup
    port = free_port()
    url = f"https://127.0.0.1:{port}/metrics"
    good = s.pki.client_context(s.pki.client("prometheus"))
    stranger = make_pki(s.dir / f"other-{port}", "another CA")
    with running(
        s,
        name,
        *("--metrics-listen", f"127.0.0.1:{port}"),
        *("--tls-cert", str(s.pki.server_cert), "--tls-key", str(s.pki.server_key)),
        *("--tls-client-ca", str(s.pki.ca_cert)),
    ) as proc:
        body = eventually(lambda: scrape(url, good), proc)
        assert s.metric[name] in body
        # A client that connects and never says hello holds its own thread, not the endpoint.
        with socket.create_connection(("127.0.0.1", port)):
            started = time.monotonic()
            assert s.metric[name] in scrape(url, good)
            assert time.monotonic() - started < 3
        # No client certificate, one from another CA, or plain HTTP: nothing is served.
        for context in (
            s.pki.client_context(),
            s.pki.client_context(stranger.client("prometheus", signer=stranger)),
        ):
            with pytest.raises(OSError):
                scrape(url, context)
        with pytest.raises(OSError):
            scrape(f"http://127.0.0.1:{port}/metrics")
        assert s.metric[name] in scrape(url, good)  # still serving after the refusals


def test_tls_without_a_client_ca_serves_any_client_that_trusts_the_server(setup: Setup) -> None:
    s = setup
    port = free_port()
    with running(
        s,
        "monitor",
        *("--metrics-listen", f"localhost:{port}"),
        *("--tls-cert", str(s.pki.server_cert), "--tls-key", str(s.pki.server_key)),
    ) as proc:
        body = eventually(
            lambda: scrape(f"https://localhost:{port}/metrics", s.pki.client_context()), proc
        )
        assert "auditseal_monitor_" in body
        with pytest.raises(OSError):  # the server's certificate is checked too
            scrape(f"https://localhost:{port}/metrics", ssl.create_default_context())


@pytest.mark.parametrize("name", ["seal", "anchor run", "monitor"])
def test_plaintext_beyond_loopback_is_refused_at_start(setup: Setup, name: str) -> None:
    s = setup
    port = free_port()
    proc = subprocess.run(
        [*CLI, *s.commands[name], "--metrics-listen", f"0.0.0.0:{port}"],
        cwd=s.dir,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"auditseal: error: the metrics endpoint on 0.0.0.0:{port} is not loopback: give "
        "--tls-cert and --tls-key, or --insecure-plaintext if a proxy in front of it "
        "terminates TLS"
    ], proc.stderr
    assert not port_answers(port)


@pytest.mark.parametrize("name", ["seal", "anchor run", "monitor"])
def test_unusable_tls_options_are_exit_2_naming_the_fault(setup: Setup, name: str) -> None:
    s = setup
    port = free_port()
    for options, said in (
        (("--tls-cert", "missing.pem", "--tls-key", "missing.key"), "--tls-cert missing.pem"),
        (("--tls-cert", str(s.pki.server_cert)), "--tls-cert and --tls-key go together"),
        (
            ("--tls-cert", str(s.pki.server_cert), "--tls-key", str(s.pki.ca_cert)),
            "not a certificate and its private key",
        ),
    ):
        proc = subprocess.run(
            [*CLI, *s.commands[name], "--metrics-listen", f"127.0.0.1:{port}", *options],
            cwd=s.dir,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, (options, proc.stderr)
        assert said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_insecure_plaintext_serves_beyond_loopback_and_says_so(setup: Setup) -> None:
    s = setup
    port = free_port()
    with running(
        s, "monitor", "--metrics-listen", f"0.0.0.0:{port}", "--insecure-plaintext"
    ) as proc:
        body = eventually(lambda: scrape(f"http://127.0.0.1:{port}/metrics"), proc)
        assert "auditseal_monitor_" in body
    logs = "".join(p.read_text() for p in s.dir.glob("monitor-*.log"))
    assert f"on 0.0.0.0:{port} speaks plaintext HTTP (--insecure-plaintext)" in logs


def test_the_metrics_options_are_documented() -> None:
    for command in (["seal"], ["anchor", "run"], ["monitor"]):
        out = subprocess.run(
            [*CLI, *command, "--help"], env=env(), capture_output=True, text=True, timeout=60
        ).stdout
        flat = " ".join(out.split())
        for option in ("--tls-cert", "--tls-key", "--tls-client-ca", "--insecure-plaintext"):
            assert option in flat, (command, option)
        assert "the metrics endpoint" in flat
