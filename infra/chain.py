"""The local chain: Anvil from the npm package @foundry-rs/anvil (node_modules), on loopback.

The probe is one JSON-RPC ``eth_chainId`` call over urllib, so nothing here needs web3.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from auditseal.infra import processes
from auditseal.infra.errors import InfraError, ServiceUnavailableError, ToolMissingError
from auditseal.infra.state import Service

__all__ = ["CHAIN_ID", "anvil_argv", "find_anvil", "is_running", "probe", "start", "stop"]

CHAIN_ID = 31337
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_ANVIL = "AUDITSEAL_ANVIL_BIN"


def find_anvil() -> str:
    """The Anvil executable: ``$AUDITSEAL_ANVIL_BIN``, else the project's node_modules.

    The platform package's native binary is preferred over the node wrapper in .bin, so the
    PID we record is Anvil itself and signals reach it directly.
    """
    override = os.environ.get(ENV_ANVIL)
    if override:
        if not os.access(override, os.X_OK):
            raise ToolMissingError(f"{ENV_ANVIL}={override} is not an executable file")
        return override
    roots = dict.fromkeys([REPO_ROOT / "node_modules", Path.cwd() / "node_modules"])
    for modules in roots:
        for native in sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil")):
            if os.access(native, os.X_OK):
                return str(native)
        wrapper = modules / ".bin" / "anvil"
        if os.access(wrapper, os.X_OK):
            return str(wrapper)
    raise ToolMissingError(
        f"Anvil not found in {REPO_ROOT / 'node_modules'}: run make install "
        "(npm ci installs the pinned @foundry-rs/anvil)"
    )


def anvil_argv(port: int, host: str = processes.LOOPBACK) -> list[str]:
    return [find_anvil(), "--host", host, "--port", str(port), "--chain-id", str(CHAIN_ID)]


def rpc_url(port: int, host: str = processes.LOOPBACK) -> str:
    return f"http://{host}:{port}"


def probe(url: str, timeout: float = 2.0) -> int | None:
    """The chain id the RPC endpoint reports, or None if it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        return int(answer["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError):
        return None


def start(port: int, log_path: Path, timeout: float = 60.0) -> Service:
    """Start Anvil detached on 127.0.0.1:port and wait until it answers eth_chainId."""
    service = spawn(port, log_path)
    wait_ready(service, timeout)
    return service


def spawn(port: int, log_path: Path) -> Service:
    """Start Anvil detached, without waiting for it (see ``wait_ready``)."""
    argv = anvil_argv(port)
    pid = processes.spawn_detached(argv, log_path)
    return Service(
        kind="anvil", address=rpc_url(port), port=port, pid=pid, argv=argv, log=str(log_path)
    )


def wait_ready(service: Service, timeout: float = 60.0) -> int:
    """Wait until the chain answers; returns its chain id. Fails early if Anvil exited."""

    def check() -> int | None:
        if service.pid is not None and not processes.is_alive(service.pid):
            raise ServiceUnavailableError(
                f"anvil exited at start; see {service.log}:\n{processes.tail(service.log)}"
            )
        return probe(service.address, timeout=1.0)

    try:
        chain_id = processes.wait_until(check, timeout, f"anvil at {service.address}")
    except ServiceUnavailableError as exc:
        if "did not answer" in str(exc):
            raise ServiceUnavailableError(f"{exc}; see {service.log}") from exc
        raise
    if chain_id != CHAIN_ID:
        raise InfraError(f"{service.address} answers chain id {chain_id}, expected {CHAIN_ID}")
    return chain_id


def is_running(service: Service) -> bool:
    """True if the Anvil process we started is still alive (it may not answer yet)."""
    return processes.is_running(service.pid, service.argv)


def stop(service: Service, timeout: float = 10.0) -> bool:
    """Stop the Anvil we started; False if it was already gone (or the PID is not Anvil)."""
    return processes.stop(service.pid, service.argv, timeout)
