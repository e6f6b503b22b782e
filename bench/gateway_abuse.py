"""The HTTP gateway under abuse: this tree vs a baseline revision, same run, same requests.

Run ``.venv/bin/python -m bench.gateway_abuse`` from the repository root. It prints a markdown
table and rewrites the ``gateway-abuse`` section of docs/BENCHMARKS.md (``--no-write`` to only
print). ``--quick`` skips the baseline and the slow-connection cases and never writes the docs.

The baseline is the gateway of another git revision (``--baseline REV``, default the last one
before the gateway was hardened), extracted with ``git archive`` into a temporary directory and
run from there through a link tree, with this virtualenv's dependencies. Each case starts a fresh
``auditseal ingest serve`` with its default limits (one Tansu broker serves all of them), reads
its memory from ``/proc/PID/status`` and, while the case runs, polls ``GET /healthz`` from a
thread on a keep-alive connection, reporting the longest answer:

* amplification: a 2 MB body of a million tiny items (``[1,1,...]`` as ``application/json`` and
  ``1\\n`` per line as ``application/x-ndjson``) with a valid token: status, response size,
  time to answer, resident memory before and after, peak (``VmHWM``) and the longest
  ``/healthz`` stall;
* slow connections: a request head sent one byte per second, and a complete head followed by a
  body sent one byte per second: the seconds until the gateway closes the connection (capped);
* malformed requests: bad HTTP framing, a bad gzip body, a non-UTF-8 bearer token, a client
  that leaves mid-body: the lines of traceback and the lines in total the gateway writes to
  its stderr for them.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditseal.infra import broker
from auditseal.infra.processes import free_port, tail
from bench._report import (
    BENCHMARKS_MD,
    markdown_table,
    replace_titled_section,
    section_header,
)

COMMAND = ".venv/bin/python -m bench.gateway_abuse"
SECTION = "gateway-abuse"
TITLE = "## Gateway under abuse: amplification, slow clients, malformed requests"
BASELINE = "b611937"  # the gateway before bounded requests (32 MiB bodies, no timeouts)
ROOT = Path(__file__).resolve().parent.parent
ITEMS = 1_000_000
SLOW_CAP_S = 45.0
SOURCE = "proxy://bench-abuse"


def log(msg: str) -> None:
    print(f"[bench.gateway_abuse {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the gateways -------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    pythonpath: str | None  # a link tree of another revision, or None for this tree

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "from auditseal.cli.main import main; main()", *args]


def baseline_tree(rev: str, workdir: Path) -> str:
    """``rev``'s rooms as an ``auditseal`` package under ``workdir``; returns the PYTHONPATH."""
    src, tree = workdir / "src", workdir / "tree"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (tree / "auditseal").mkdir(parents=True)
    with open(src / "pyproject.toml", "rb") as f:
        dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    for package, folder in dirs.items():
        os.symlink(src / folder, tree / package.replace(".", "/"))
    return str(tree)


@dataclass
class Gateway:
    variant: Variant
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    stderr_path: Path

    @classmethod
    def start(cls, variant: Variant, bootstrap: str, topic: str, workdir: Path) -> Gateway:
        workdir.mkdir(parents=True)
        made = subprocess.run(
            variant.argv("ingest", "token", "--source", SOURCE, "--tokens", "tokens"),
            cwd=workdir,
            env=variant.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        port = free_port()
        stderr_path = workdir / "stderr.log"
        argv = variant.argv(
            "ingest",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--tokens",
            "tokens",
            "--state-dir",
            "state",
        )
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=variant.env(), stdout=subprocess.DEVNULL, stderr=err
            )
        gw = cls(variant, port, made.stdout.strip(), proc, stderr_path)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {tail(stderr_path, 20)}")
            try:
                if gw.get("/healthz")[0] == 200:
                    return gw
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {tail(stderr_path, 20)}")
            time.sleep(0.1)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def memory_mb(self) -> tuple[float, float]:
        """Resident memory now and its peak so far, in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- the cases ----------------------------------------------------------------------------


class HealthPoller:
    """Polls /healthz back to back on one keep-alive connection; ``worst`` is the longest wait
    for an answer (a failed request counts as the time until it failed)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.worst = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.worst = max(self.worst, time.perf_counter() - started)
            self.polls += 1
            time.sleep(0.01)
        conn.close()

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *_exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join()


@dataclass
class Amplification:
    status: int
    response_bytes: int
    seconds: float
    rss_before: float
    rss_after: float
    peak: float
    healthz_worst_s: float


def amplification(gw: Gateway, body: bytes, content_type: str) -> Amplification:
    rss_before, _ = gw.memory_mb()
    with HealthPoller(gw.port) as poller:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=120)
        started = time.perf_counter()
        conn.request(
            "POST",
            "/v1/events",
            body,
            {"Authorization": f"Bearer {gw.token}", "Content-Type": content_type},
        )
        resp = conn.getresponse()
        payload = resp.read()
        seconds = time.perf_counter() - started
        conn.close()
    rss_after, peak = gw.memory_mb()
    return Amplification(
        resp.status, len(payload), seconds, rss_before, rss_after, peak, poller.worst
    )


def _until_closed(sock: socket.socket, drip: bytes, cap: float) -> float | None:
    """Send ``drip`` one byte per second; the seconds until the peer closed or answered, None
    if it still listened after ``cap``."""
    started = time.monotonic()
    sock.settimeout(1.0)
    for i in range(len(drip)):
        if time.monotonic() - started > cap:
            return None
        try:
            sock.sendall(drip[i : i + 1])
            if sock.recv(1, socket.MSG_PEEK) is not None:
                return time.monotonic() - started  # an answer (408) or EOF: cut
        except TimeoutError:
            continue  # nothing to read yet: the second has passed
        except OSError:
            return time.monotonic() - started
    return None


def slow_head(gw: Gateway, cap: float) -> float | None:
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        head = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        return _until_closed(sock, head, cap)


def slow_body(gw: Gateway, cap: float) -> float | None:
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.sendall(
            (
                f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                f"{gw.token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 200\r\n\r\n"
            ).encode()
        )
        return _until_closed(sock, b"{" * 200, cap)


def malformed_requests(gw: Gateway) -> list[bytes]:
    t = gw.token.encode()
    post = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        post + b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
        post + b"Authorization: Bearer " + t + b"\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        post + b"Authorization: Bearer " + t + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]


@dataclass
class Malformed:
    traceback_lines: int
    stderr_lines: int
    statuses: list[str] = field(default_factory=list)


def malformed(gw: Gateway) -> Malformed:
    before = gw.stderr_path.read_text(errors="replace").splitlines()
    statuses = []
    for raw in malformed_requests(gw):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
            sock.sendall(raw)
            try:
                statuses.append(sock.recv(12)[9:12].decode() or "closed")
            except OSError:
                statuses.append("closed")
    # A client that leaves in the middle of its body.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + gw.token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
    statuses.append("left")
    time.sleep(1.0)
    lines = gw.stderr_path.read_text(errors="replace").splitlines()[len(before) :]
    lines = [line for line in lines if "rdkafka" not in line and "Kafka" not in line]
    tracebacks = sum(1 for line in lines if line.startswith(("Traceback", '  File "')))
    return Malformed(tracebacks, len(lines), statuses)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    array: Amplification
    ndjson: Amplification
    slow_head_s: float | None
    slow_body_s: float | None
    malformed: Malformed


def measure(variant: Variant, bootstrap: str, topic: str, workdir: Path, slow: bool) -> Result:
    array_body = b"[" + b",".join([b"1"] * ITEMS) + b"]"
    ndjson_body = b"1\n" * ITEMS

    def fresh(name: str) -> Gateway:
        return Gateway.start(variant, bootstrap, topic, workdir / f"{variant.name}-{name}")

    def with_gateway(name: str, run: Callable[[Gateway], Any]) -> Any:
        gw = fresh(name)
        try:
            return run(gw)
        finally:
            gw.stop()

    log(f"{variant.name}: {len(array_body):,}-byte array of {ITEMS:,} items")
    array = with_gateway("array", lambda gw: amplification(gw, array_body, "application/json"))
    log(f"{variant.name}: {len(ndjson_body):,}-byte NDJSON of {ITEMS:,} lines")
    ndjson = with_gateway(
        "ndjson", lambda gw: amplification(gw, ndjson_body, "application/x-ndjson")
    )
    head_s = body_s = None
    if slow:
        log(f"{variant.name}: slow head and slow body, one byte per second (cap {SLOW_CAP_S} s)")

        def slow_cases(gw: Gateway) -> tuple[float | None, float | None]:
            out: dict[str, float | None] = {}
            threads = [
                threading.Thread(target=lambda: out.update(head=slow_head(gw, SLOW_CAP_S))),
                threading.Thread(target=lambda: out.update(body=slow_body(gw, SLOW_CAP_S))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return out["head"], out["body"]

        head_s, body_s = with_gateway("slow", slow_cases)
    log(f"{variant.name}: malformed requests")
    bad = with_gateway("malformed", malformed)
    return Result(variant.name, array, ndjson, head_s, body_s, bad)


def _amp_cells(a: Amplification) -> list[str]:
    return [
        f"{a.status}",
        f"{a.response_bytes:,} B",
        f"{a.seconds:.2f} s",
        f"{a.rss_before:.0f} → {a.rss_after:.0f} MB (peak {a.peak:.0f})",
        f"{a.healthz_worst_s * 1000:,.0f} ms",
    ]


def _slow(s: float | None) -> str:
    return f"not cut in {SLOW_CAP_S:.0f} s" if s is None else f"cut after {s:.1f} s"


def report(results: list[Result], baseline_rev: str | None) -> str:
    names = [r.variant for r in results]
    rows: list[list[str]] = []
    for label, pick in (
        ("2 MB JSON array of 1,000,000 items", lambda r: r.array),
        ("2 MB NDJSON of 1,000,000 lines", lambda r: r.ndjson),
    ):
        cells = [_amp_cells(pick(r)) for r in results]
        for i, what in enumerate(
            ("status", "response size", "time to answer", "gateway memory", "worst /healthz")
        ):
            rows.append([f"{label}: {what}", *(c[i] for c in cells)])
    rows.append(["Request head at 1 byte/s", *(_slow(r.slow_head_s) for r in results)])
    rows.append(["Body at 1 byte/s (complete head)", *(_slow(r.slow_body_s) for r in results)])
    rows.append(
        [
            "7 malformed requests: traceback lines / stderr lines",
            *(f"{r.malformed.traceback_lines} / {r.malformed.stderr_lines}" for r in results),
        ]
    )
    table = markdown_table(["Case", *names], rows, "l" + "r" * len(names))
    method = (
        "one run of each case, on a fresh `auditseal ingest serve` with its default limits on "
        "loopback, "
        "a Tansu broker on the same machine, a valid bearer token; memory is VmRSS/VmHWM "
        "of the gateway process; the worst `/healthz` is the longest of back-to-back polls "
        "on a keep-alive connection while the case runs; slow cases send one byte per "
        f"second and are capped at {SLOW_CAP_S:.0f} s; malformed requests: bad framing, a "
        "bad Content-Length, a 20 kB header line, a non-UTF-8 bearer token, a bad gzip body, "
        "a bad chunk, a client leaving mid-body (Kafka's own lines not counted)."
    )
    notes = (
        "\n- This tree refuses both bodies at the 1,001st item (`--max-batch-events`, counted "
        "before anything is parsed) with one error and its count; a 400 lists at most 20 errors. "
        "Its slow-client bounds are its defaults: `--header-timeout 10` (the connection is "
        "closed) and `--body-timeout 30` (408, then closed).\n"
    )
    if baseline_rev:
        method += (
            f" `baseline` is revision {baseline_rev} (`git archive`), run from a link tree "
            "with the same dependencies."
        )
    return section_header(COMMAND, method) + "\n" + table + notes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare, or 'none'")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="this tree only, no slow cases")
    args = parser.parse_args(argv)
    baseline = None if args.quick or args.baseline == "none" else args.baseline
    with tempfile.TemporaryDirectory(prefix="bench-gateway-abuse-") as tmp:
        workdir = Path(tmp)
        variants = []
        if baseline:
            (workdir / "baseline").mkdir()
            variants.append(Variant("baseline", baseline_tree(baseline, workdir / "baseline")))
        variants.append(Variant("this tree", None))
        service = broker.spawn(free_port(), workdir / "broker.log")
        try:
            broker.wait_ready(service, timeout=60)
            broker.create_topic(service.address, "audit.events", 1)
            results = [
                measure(v, service.address, "audit.events", workdir, slow=not args.quick)
                for v in variants
            ]
        finally:
            broker.stop(service, timeout=2.0)
    body = report(results, baseline)
    print(body)
    if not (args.no_write or args.quick):
        replace_titled_section(SECTION, TITLE, body, BENCHMARKS_MD)
        log(f"wrote the {SECTION} section of {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
