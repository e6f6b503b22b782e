"""Detached processes, loopback ports and waiting: the OS plumbing of the dev stack.

A process is identified by its PID *and* its exact command line: before signalling a PID we
read /proc/PID/cmdline and compare it with the argv we started, so a PID the kernel has since
given to another program is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from auditseal.infra.errors import InfraError, PortInUseError, ServiceUnavailableError
from auditseal.store.files import open_private

__all__ = [
    "LOOPBACK",
    "check_ports_free",
    "cmdline",
    "docker_engine_available",
    "free_port",
    "group_members",
    "is_alive",
    "is_running",
    "port_answers",
    "spawn_detached",
    "stop",
    "tail",
    "wait_until",
]

LOOPBACK = "127.0.0.1"
T = TypeVar("T")

# Processes this Python process started, by PID.
_children: dict[int, subprocess.Popen[bytes]] = {}


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if nothing listens on host:port (we could bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port whose old connections linger in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports_free(ports: Mapping[str, int], host: str = LOOPBACK) -> None:
    """Raise PortInUseError (exit 2) for the first port in use; ``ports`` maps what -> port."""
    seen: dict[int, str] = {}
    for what, port in ports.items():
        if port in seen:
            raise InfraError(f"port {port} given for both {seen[port]} and {what}", 2)
        seen[port] = what
        if not port_is_free(port, host):
            raise PortInUseError(port, what)


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel considers free right now (for tests; another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_answers(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn_detached(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv in a new session (its own process group), output appended to log_path.

    The process outlives the caller and ignores the caller's terminal; returns its PID.
    """
    with os.fdopen(open_private(log_path), "ab") as log:  # owner-only: logs name secrets' files
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- {stamp} starting: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        except OSError as exc:
            raise InfraError(f"cannot start {argv[0]}: {exc.strerror or exc}", 2) from exc
    # Kept so that a long-lived caller (a test session) can reap it and Python does not warn
    # about a running subprocess at garbage collection; the child outlives a caller that exits.
    _children[proc.pid] = proc
    return proc.pid


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, D, Z, ...), or None if there is no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The name in parentheses may contain spaces; the state follows the last ")".
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[0] if rest else None


def cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if there is none (or it is a zombie).

    A process caught in the middle of exec() may show an empty command line: [].
    """
    if _proc_state(pid) in (None, "Z", "X"):
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0") if raw else []


def is_alive(pid: int) -> bool:
    """True while the process exists and has not exited (zombies count as gone)."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _children[pid]
        return False
    return _proc_state(pid) not in (None, "Z", "X")


def is_running(pid: int | None, argv: Sequence[str]) -> bool:
    """True if pid is alive and still runs exactly argv (not some later reuse of the PID)."""
    if not pid or not argv or not is_alive(pid):
        return False
    return cmdline(pid) == list(argv)


def stop(pid: int | None, argv: Sequence[str], timeout: float = 10.0) -> bool:
    """Stop the process we started: SIGTERM, then SIGKILL after ``timeout`` seconds.

    The signal goes to the process group when the process leads its own (we start every
    service in a new session), so helpers it spawned stop with it. Returns False, touching
    nothing, if pid is gone or runs something other than argv.
    """
    if not is_running(pid, argv):
        return False
    assert pid is not None

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        return True  # it exited between the check and now
    send(signal.SIGTERM)
    # Returns only once the process, and every helper in its group, has exited: a caller
    # (`dev down`, the demo, a test) may reuse the ports and files at once.
    if _wait_gone(pid, timeout, leads):
        return True
    with contextlib.suppress(ProcessLookupError):
        if leads:  # the leader may be gone, its helpers not; a live group's id is not reused
            os.killpg(pid, signal.SIGKILL)
        elif is_running(pid, argv):
            os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 5.0, leads):
        left = sorted({pid, *group_members(pid)} if leads else {pid})
        raise ServiceUnavailableError(
            f"pid {pid} ({argv[0]}): still running after SIGTERM, {timeout:g} s, then SIGKILL "
            f"and 5 s (processes {', '.join(map(str, left))}); check them with ps"
        )
    return True


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # After the name: state, ppid, pgrp, ...
        if len(rest) > 2 and rest[2] == str(pgid) and rest[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _wait_gone(pid: int, timeout: float, group: bool = False) -> bool:
    def gone() -> bool:
        return not is_alive(pid) and not (group and group_members(pid))

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    return gone()


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something other than None; ServiceUnavailable on timeout.

    ``check`` may raise InfraError to give up early (e.g. the process exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise ServiceUnavailableError(f"{what} did not answer within {timeout:g} s")
        time.sleep(interval)


def tail(path: str | Path | None, lines: int = 5) -> str:
    """The last lines of a log file, for error messages ('' if unreadable)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 4096))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def docker_engine_available(timeout: float = 10.0) -> bool:
    """True if a docker client is installed and ``docker info`` reaches an engine."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
