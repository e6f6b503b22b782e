"""`auditseal dev up|status|down` end to end: real processes, real ports, a temporary cwd.

The broker is forced to Tansu (AUDITSEAL_BROKER=tansu) so that the same path runs on every
machine; the Docker path of `dev up` is not exercised here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditseal.infra import processes, state, topics

AUDITSEAL = Path(sys.executable).with_name("auditseal")
STATE = Path(".auditseal") / "dev" / "state.json"
RECORD = Path(".auditseal") / "anchor" / "deployment.json"
CHAIN_KEY = Path(".auditseal") / "dev" / "chain.key"
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # public


def rpc(url: str, method: str, *params: object) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["result"]


def deployed_code(url: str, address: str) -> str:
    from auditseal.anchor.artifact import load_artifact

    code = rpc(url, "eth_getCode", address, "latest")
    assert code == load_artifact().deployed_bytecode
    return str(code)


def run(
    cwd: Path, *args: str, timeout: float = 120, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    env["AUDITSEAL_BROKER"] = "tansu"
    env.update(extra_env)
    return subprocess.run(
        [str(AUDITSEAL), "dev", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def two_free_ports() -> tuple[int, int]:
    first = processes.free_port()
    second = processes.free_port()
    while second == first:
        second = processes.free_port()
    return first, second


def processes_mentioning(port: int) -> list[int]:
    """PIDs of live broker/Anvil processes whose command line names this port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = processes.cmdline(int(entry.name)) or []
        text = " ".join(argv)
        if ("tansu" in text or "anvil" in text) and str(port) in text:
            found.append(int(entry.name))
    return found


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A working directory for `dev` commands; whatever a failing test left up is stopped."""
    yield tmp_path
    if (tmp_path / STATE).exists():
        run(tmp_path, "down")


@pytest.mark.kafka
@pytest.mark.chain
def test_up_status_up_again_and_down(stack_dir: Path) -> None:
    broker_port, chain_port = two_free_ports()
    ports = ["--broker-port", str(broker_port), "--chain-port", str(chain_port)]

    began = time.monotonic()
    up = run(stack_dir, "up", *ports)
    took = time.monotonic() - began
    assert up.returncode == 0, up.stderr
    assert took < 30, f"dev up took {took:.1f} s"
    assert "starting broker: tansu" in up.stdout and "starting chain: anvil" in up.stdout
    assert "dev stack up" in up.stdout

    recorded = json.loads((stack_dir / STATE).read_text())
    broker_pid, chain_pid = recorded["broker"]["pid"], recorded["chain"]["pid"]
    assert processes.is_running(broker_pid, recorded["broker"]["argv"])
    assert processes.is_running(chain_pid, recorded["chain"]["argv"])
    assert Path(recorded["broker"]["log"]).is_file()
    assert Path(recorded["chain"]["log"]).is_file()

    # The contract is deployed from Anvil's dev account, whose key is written (0600), not shown.
    rpc_url = f"http://127.0.0.1:{chain_port}"
    assert ANVIL_KEY[2:] not in (up.stdout + up.stderr).lower()
    assert (stack_dir / CHAIN_KEY).read_text().strip() == ANVIL_KEY
    assert (stack_dir / CHAIN_KEY).stat().st_mode & 0o777 == 0o600
    record = json.loads((stack_dir / RECORD).read_text())
    address = record["address"]
    assert record["chain_id"] == 31337 and f"deployed at {address}" in up.stdout
    deployed_code(rpc_url, address)
    assert recorded["contract"] == address and recorded["deployment_owned"] is True
    assert recorded["deployment"] == str(stack_dir / RECORD)
    assert recorded["chain_key"] == str(stack_dir / CHAIN_KEY)

    status = run(stack_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["up"] is True
    assert data["broker"]["address"] == f"127.0.0.1:{broker_port}"
    assert data["broker"]["kind"] == "tansu" and data["broker"]["pid"] == broker_pid
    assert data["broker"]["process_running"] is True
    assert {t: data["broker"]["topics"][t] for t in topics.PARTITIONS} == topics.PARTITIONS
    assert data["broker"]["topics"]["audit.events"] == 6
    assert data["chain"]["rpc_url"] == f"http://127.0.0.1:{chain_port}"
    assert data["chain"]["chain_id"] == 31337 and data["chain"]["pid"] == chain_pid
    assert data["anchor"]["contract"] == address and data["anchor"]["has_code"] is True
    assert data["anchor"]["record"] == str(stack_dir / RECORD)

    text = run(stack_dir, "status")
    assert text.returncode == 0 and "audit.events (6)" in text.stdout
    assert f"anchor  {address}  AuditAnchor, record " in text.stdout

    # `anchor deploy` finds the chain and the key through the state file (no flags, no env).
    def anchor_deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AUDITSEAL), "anchor", "deploy", *args],
            cwd=stack_dir,
            env={k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    other = anchor_deploy("--out", "other.json", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["owner"] == record["owner"]
    deployed_code(rpc_url, json.loads(other.stdout)["address"])
    # The public dev key is never the default for another endpoint.
    elsewhere = anchor_deploy("--rpc", f"http://127.0.0.1:{broker_port}", "--out", "x.json")
    assert elsewhere.returncode == 2 and "no chain key" in elsewhere.stderr, elsewhere.stderr

    # Other commands find the stack through the state file.
    assert state.endpoints(stack_dir / STATE) == (
        f"127.0.0.1:{broker_port}",
        f"http://127.0.0.1:{chain_port}",
    )

    nonce = rpc(rpc_url, "eth_getTransactionCount", record["owner"], "latest")
    again = run(stack_dir, "up", *ports)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    assert f"contract: AuditAnchor already at {address}" in again.stdout
    assert json.loads((stack_dir / STATE).read_text())["broker"]["pid"] == broker_pid
    assert json.loads((stack_dir / RECORD).read_text()) == record  # not redeployed
    assert rpc(rpc_url, "eth_getTransactionCount", record["owner"], "latest") == nonce

    # A service that died is started again; the one still running is kept.
    assert processes.stop(chain_pid, recorded["chain"]["argv"])
    healed = run(stack_dir, "up", *ports)
    assert healed.returncode == 0, healed.stderr
    assert "broker: already running" in healed.stdout and "starting chain" in healed.stdout
    recorded = json.loads((stack_dir / STATE).read_text())
    assert recorded["broker"]["pid"] == broker_pid
    chain_pid = recorded["chain"]["pid"]
    # The new Anvil starts empty: the stale record is replaced by a new deployment.
    # (Same account, nonce and fees on a fresh Anvil: even the address and tx hash are equal.)
    assert "contract: AuditAnchor deployed at" in healed.stdout
    assert "has no such code on this chain: replaced" in healed.stdout
    deployed_code(rpc_url, json.loads((stack_dir / RECORD).read_text())["address"])

    down = run(stack_dir, "down")
    assert down.returncode == 0, down.stderr
    assert f"stopped broker (tansu, pid {broker_pid})" in down.stdout
    assert f"stopped chain (anvil, pid {chain_pid})" in down.stdout
    assert not processes.is_alive(broker_pid) and not processes.is_alive(chain_pid)
    assert processes.port_is_free(broker_port) and processes.port_is_free(chain_port)
    assert not (stack_dir / STATE).exists()
    assert "removed deployment record" in down.stdout
    assert not (stack_dir / RECORD).exists()  # it named a contract in Anvil's lost memory

    second = run(stack_dir, "down")
    assert second.returncode == 0, second.stderr
    assert "nothing to stop" in second.stdout

    after = run(stack_dir, "status", "--json")
    assert after.returncode == 3
    assert json.loads(after.stdout)["up"] is False


@pytest.mark.kafka
@pytest.mark.chain
@pytest.mark.parametrize("busy", ["broker", "chain"])
def test_a_port_in_use_is_exit_2_and_starts_nothing(stack_dir: Path, busy: str) -> None:
    broker_port, chain_port = two_free_ports()
    taken = broker_port if busy == "broker" else chain_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", taken))
        sock.listen()
        up = run(
            stack_dir, "up", "--broker-port", str(broker_port), "--chain-port", str(chain_port)
        )
    assert up.returncode == 2
    assert up.stdout == ""
    assert up.stderr.strip().splitlines() == [
        f"auditseal: error: port {taken} ({busy}) is already in use on 127.0.0.1; "
        "stop what listens there or choose another port"
    ]
    assert not (stack_dir / STATE).exists()
    assert processes_mentioning(broker_port) == [] and processes_mentioning(chain_port) == []
    assert processes.port_is_free(broker_port) and processes.port_is_free(chain_port)


@pytest.mark.chain
def test_a_service_that_dies_at_start_is_exit_3_and_the_other_is_stopped(stack_dir: Path) -> None:
    broker_port, chain_port = two_free_ports()
    up = run(
        stack_dir,
        "up",
        "--broker-port",
        str(broker_port),
        "--chain-port",
        str(chain_port),
        CALF_TANSU_BIN="/bin/false",  # a "broker" that exits at once
    )
    assert up.returncode == 3
    assert up.stderr.startswith("auditseal: error: tansu exited at start; see ")
    assert "broker.log" in up.stderr
    assert not (stack_dir / STATE).exists()
    assert processes_mentioning(chain_port) == []
    assert processes.port_is_free(chain_port)


def test_help_documents_exit_2_for_a_port_in_use(stack_dir: Path) -> None:
    result = run(stack_dir, "up", "--help")
    assert result.returncode == 0
    flat = " ".join(result.stdout.split())
    assert "2 a port already in use" in flat
    assert "AUDITSEAL_BROKER_PORT" in flat and "AUDITSEAL_CHAIN_PORT" in flat


def test_down_never_signals_a_pid_that_runs_something_else(stack_dir: Path) -> None:
    """A recorded PID now running another program (PID reuse) is left alone."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        fake = state.DevState(
            broker=state.Service(
                kind="tansu",
                address="127.0.0.1:1",
                port=1,
                pid=stranger.pid,
                argv=["/nonexistent/tansu", "broker"],
            )
        )
        state.save(fake, stack_dir / STATE)
        down = run(stack_dir, "down")
        assert down.returncode == 0, down.stderr
        assert "broker was not running" in down.stdout
        assert stranger.poll() is None, "down signalled a process it did not start"
        assert not (stack_dir / STATE).exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_endpoints_prefer_env_then_state_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AUDITSEAL_BOOTSTRAP", "AUDITSEAL_RPC", "AUDITSEAL_DEV_STATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert state.endpoints() == ("127.0.0.1:9092", "http://127.0.0.1:8545")

    saved = state.DevState(
        broker=state.Service(kind="tansu", address="127.0.0.1:19092", port=19092),
        chain=state.Service(kind="anvil", address="http://127.0.0.1:18545", port=18545),
    )
    state.save(saved)  # the default path, relative to the cwd
    assert state.endpoints() == ("127.0.0.1:19092", "http://127.0.0.1:18545")

    other = tmp_path / "elsewhere" / "state.json"
    state.save(state.DevState(chain=state.Service("anvil", "http://127.0.0.1:28545", 28545)), other)
    monkeypatch.setenv("AUDITSEAL_DEV_STATE", str(other))
    assert state.endpoints() == ("127.0.0.1:9092", "http://127.0.0.1:28545")

    monkeypatch.setenv("AUDITSEAL_BOOTSTRAP", "broker.example:9092")
    assert state.endpoints() == ("broker.example:9092", "http://127.0.0.1:28545")
    monkeypatch.setenv("AUDITSEAL_RPC", "http://chain.example:8545")
    assert state.endpoints() == ("broker.example:9092", "http://chain.example:8545")

    (tmp_path / "elsewhere" / "state.json").write_text("{not json")
    monkeypatch.delenv("AUDITSEAL_RPC")
    assert state.endpoints() == ("broker.example:9092", "http://127.0.0.1:8545")
