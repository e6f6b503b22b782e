"""infra.pipeline waits for what it started: a process that exits at start, or a port that
never answers, is an error naming the service and quoting its log."""

from __future__ import annotations

import sys

import pytest

from auditseal.infra import pipeline, processes
from auditseal.infra.errors import ServiceUnavailableError
from auditseal.infra.state import Service


def spawn(tmp_path, kind: str, code: str, port: int = 0) -> Service:
    argv = [sys.executable, "-c", code]
    log = tmp_path / f"{kind}.log"
    pid = processes.spawn_detached(argv, log)
    return Service(kind, "-", port, pid, argv, str(log))


def test_a_service_that_exits_at_start_is_named_with_its_log(tmp_path):
    dead = spawn(tmp_path, "sealer", "import sys; print('no such option'); sys.exit(2)")
    with pytest.raises(ServiceUnavailableError, match=r"sealer exited at start(.|\n)*no such"):
        pipeline._wait_started([dead], timeout=5)


def test_a_port_that_never_answers_times_out_with_the_log(tmp_path):
    port = processes.free_port()
    idle = spawn(tmp_path, "dashboard", "import time; print('starting'); time.sleep(30)", port)
    try:
        with pytest.raises(ServiceUnavailableError, match=r"did not answer(.|\n)*starting"):
            pipeline._wait_started([idle], timeout=1.5)
    finally:
        processes.stop(idle.pid, idle.argv, 5)
