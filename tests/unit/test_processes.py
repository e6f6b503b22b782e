"""Stopping what the dev stack started returns only once every process of it has exited."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from auditseal.infra import processes

# A helper that, like a broker's child, takes a while to exit after SIGTERM.
SLOW_CHILD = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    time.sleep(1.5)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "open(sys.argv[1], 'w').write('ready')\n"
    "time.sleep(60)\n"
)
# The leader starts it in its own process group and dies at once on SIGTERM.
LEADER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])\n"
    "open(sys.argv[3], 'w').write(str(child.pid))\n"
    "time.sleep(60)\n"
)


def wait_for(path: Path) -> str:
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.05)
    return path.read_text()


def test_stop_waits_for_every_process_of_the_group(tmp_path):
    ready, child_pid_file = tmp_path / "ready", tmp_path / "child.pid"
    argv = [sys.executable, "-c", LEADER, SLOW_CHILD, str(ready), str(child_pid_file)]
    pid = processes.spawn_detached(argv, tmp_path / "log")
    wait_for(ready)
    child = int(wait_for(child_pid_file))
    assert processes.group_members(pid) == sorted([pid, child])

    began = time.monotonic()
    assert processes.stop(pid, argv, timeout=10) is True
    assert time.monotonic() - began >= 1.0  # it waited for the slow helper ...
    assert not processes.is_alive(pid) and not processes.is_alive(child)
    assert processes.group_members(pid) == []  # ... and nothing of the group is left


def test_stop_leaves_a_pid_that_runs_something_else_alone(tmp_path):
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = processes.spawn_detached(argv, tmp_path / "log")
    try:
        assert processes.stop(pid, [*argv, "other"], timeout=1) is False
        assert processes.is_alive(pid)
    finally:
        assert processes.stop(pid, argv, timeout=5) is True
