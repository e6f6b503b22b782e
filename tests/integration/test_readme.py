"""README.md's walkthrough, run as written: the shell commands of its fenced ``sh`` blocks,
parsed from the file (so an edit to the README is what gets tested), in order, in a fresh
directory, with the long-running services in the background; then the outcomes it promises.

The commands run with the README's own default ports, exactly as a user types them; the test
skips (naming the port) if one of them is taken by something else on this machine. The working
directory is a temporary one whose ``.venv`` points at this interpreter's virtualenv, so
``.auditseal/`` (dev state, store, tokens, deployment record) is private to the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from auditseal.infra import processes

pytestmark = [pytest.mark.kafka, pytest.mark.chain, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WALKTHROUGH = ("Run the local stack and send traffic", "Try the log format")
"""The sections whose commands run. Not run here: "Two commands" (`make demo` has its own test,
tests/integration/test_demo.py; `make test` is this suite) and "The store on PostgreSQL"
(tests/integration/test_postgres_*.py start the same stack on a throwaway cluster)."""

# Commands that serve until stopped: `auditseal <words>` -> the port that says it is ready.
SERVERS = {
    ("ingest", "serve"): 8080,
    ("seal",): 9464,
    ("serve",): 8090,
    ("anchor", "run"): 9465,
    ("monitor",): 9466,
    ("dashboard",): 8088,
}
DEV_PORTS = (9092, 8545)  # `dev up`'s broker and chain
NOT_YET = 3  # verify's exit code for "not anchored yet": a person would wait and run it again


def readme_sections(text: str) -> dict[str, list[str]]:
    """Each ``## ``/``### `` heading's ``sh`` fenced blocks, as commands: continuation lines
    joined, comments and blank lines dropped."""
    sections: dict[str, list[str]] = {}
    heading = ""
    in_block = False
    pending = ""
    for line in text.splitlines():
        if not in_block and (m := re.match(r"#{2,3} (.+)", line)):
            heading = m.group(1).strip()
        elif line.strip() == "```sh":
            in_block = True
        elif in_block and line.strip() == "```":
            in_block = False
        elif in_block:
            pending += line
            if line.rstrip().endswith("\\"):
                pending = pending.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending, comments=True)
            if words:
                sections.setdefault(heading, []).append(_strip_comment(pending))
            pending = ""
    return sections


def _strip_comment(line: str) -> str:
    """The line without its trailing ``# comment`` (a ``#`` outside quotes after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def auditseal_words(command: str) -> tuple[str, ...]:
    """The subcommand words of an ``.venv/bin/auditseal ...`` command (up to the first option)."""
    words = shlex.split(command)
    if "|" in words:
        words = words[words.index("|") + 1 :]
    if not words or not words[0].endswith("/auditseal"):
        return ()
    out: list[str] = []
    for word in words[1:]:
        if word.startswith("-") or word in (">", "<"):
            break
        out.append(word)
    return tuple(out)


def server_port(command: str) -> int | None:
    words = auditseal_words(command)
    for prefix, port in SERVERS.items():
        if words == prefix:
            return port
    return None


@dataclass
class Walkthrough:
    cwd: Path
    env: dict[str, str]
    exports: list[str] = field(default_factory=list)
    background: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    results: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def script(self, command: str) -> str:
        return "\n".join([*self.exports, command])

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.script(command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.results[command] = done
        return done

    def start(self, command: str, port: int) -> None:
        log = self.cwd / f"bg-{len(self.background)}.log"
        proc = subprocess.Popen(
            ["bash", "-c", self.script("exec " + command)],
            cwd=self.cwd,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append((command, proc, log))
        deadline = time.monotonic() + 60
        while not processes.port_answers(port):
            assert proc.poll() is None, f"{command!r} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command!r}: port {port} did not answer"
            time.sleep(0.2)

    def stop_background(self) -> None:
        for _, proc, _ in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for command, proc, log in self.background:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
                pytest.fail(f"{command!r} did not stop on SIGTERM:\n{log.read_text()[-2000:]}")

    def log_of(self, words: tuple[str, ...]) -> str:
        return "\n".join(
            log.read_text()
            for command, _, log in self.background
            if auditseal_words(command) == words
        )


def test_the_readme_sections_are_found():
    sections = readme_sections(README.read_text())
    for name in WALKTHROUGH:
        assert sections.get(name), f"README.md has no sh commands under '{name}'"
    commands = sections[WALKTHROUGH[0]]
    assert auditseal_words(commands[0]) == ("dev", "up")
    assert auditseal_words(commands[-1]) == ("dev", "down")
    assert {server_port(c) for c in commands} >= set(SERVERS.values())


@pytest.fixture
def walkthrough(tmp_path):
    busy = [p for p in (*DEV_PORTS, *SERVERS.values()) if not processes.port_is_free(p)]
    if busy:
        pytest.skip(f"the README's default ports {busy} are in use on this machine")
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    # As after `make install` in a fresh clone: .venv beside the README, and the files the
    # README names (docs/examples).
    (cwd / ".venv").symlink_to(Path(sys.executable).parents[1])
    shutil.copytree(ROOT / "docs", cwd / "docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITSEAL_", "PG"))}
    env["AUDITSEAL_BROKER"] = "tansu"  # no Docker engine here; `auto` picks Tansu too
    w = Walkthrough(cwd, env)
    yield w
    w.stop_background()
    if (cwd / ".auditseal" / "dev" / "state.json").exists():  # a failure before `dev down`
        subprocess.run(
            [str(cwd / ".venv" / "bin" / "auditseal"), "dev", "down"], cwd=cwd, timeout=120
        )


def test_every_readme_command_works_as_written(walkthrough: Walkthrough):
    w = walkthrough
    sections = readme_sections(README.read_text())
    for section in WALKTHROUGH:
        for command in sections[section]:
            words = auditseal_words(command)
            if command.startswith("export "):
                w.exports.append(command)
                assert w.run("true").returncode == 0, command
                continue
            port = server_port(command)
            if port is not None:
                w.start(command, port)
                continue
            if words == ("dev", "down"):
                w.stop_background()  # the services started by hand stop first, as a user would
            done = w.run(command)
            if words[:1] == ("verify",):
                # Anchoring happens every 10 s: a person who sees "not anchored yet" waits.
                deadline = time.monotonic() + 90
                while done.returncode == NOT_YET and time.monotonic() < deadline:
                    time.sleep(2)
                    done = w.run(command)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            if words[:1] == ("verify",):
                assert "VALID" in done.stdout and "INVALID" not in done.stdout, done.stdout
            if words == ("verify",) and "--all" in shlex.split(command):
                check_the_dashboard(w)
                check_the_monitor(w)
            if words == ("dev", "down"):
                check_down(w)
    assert any(auditseal_words(c) == ("dev", "down") for c in w.results)


def check_the_dashboard(w: Walkthrough) -> None:
    """The page's data: every block it shows is anchored (none "not anchored yet")."""
    token = next(
        done.stdout.strip()
        for command, done in w.results.items()
        if auditseal_words(command) == ("dashboard", "token")
    )
    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            "http://127.0.0.1:8088/api/state", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.loads(response.read())
        blocks = state["blocks"]
        pending = [(b["log"], b["number"]) for b in blocks if b["anchor"] is None]
        if blocks and not pending:
            return
        assert time.monotonic() < deadline, f"blocks not anchored on the dashboard: {pending}"
        time.sleep(2)


def check_the_monitor(w: Walkthrough) -> None:
    """The monitor raised no alert: the walkthrough's traffic is clean and anchored."""
    alerts = [line for line in w.log_of(("monitor",)).splitlines() if line.startswith("{")]
    assert alerts == [], alerts


def check_down(w: Walkthrough) -> None:
    """After `dev down`: nothing left listening, and `dev status` says the stack is down."""
    busy = [p for p in (*DEV_PORTS, *SERVERS.values()) if not processes.port_is_free(p)]
    assert busy == [], f"still listening after dev down: {busy}"
    status = w.run(".venv/bin/auditseal dev status")
    assert status.returncode == 3, status.stdout
    assert status.stdout.startswith("dev stack not up"), status.stdout
    assert "9092" not in status.stdout and "8545" not in status.stdout, status.stdout
