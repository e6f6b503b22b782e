"""The dev stack's state file, and where the other commands find the broker and the chain.

``auditseal dev up`` writes one JSON file (default ``.auditseal/dev/state.json`` relative to the
working directory, or ``$AUDITSEAL_DEV_STATE``) naming what it started: for each service its
kind, address, PID and exact command line (so that ``dev down`` stops only that process), and
its log file. The logs live next to the state file, and so does ``chain.key``: Anvil's first
dev account key (public, see docs/DEV.md), which ``dev up`` deploys the AuditAnchor contract
with and which the anchor commands use by default while the state file exists. With
``--postgres``, ``postgres/`` next to it holds the PostgreSQL cluster, its log and its password
file; ``store_url()`` gives other commands the store URL with that password.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from auditseal.infra.errors import InfraError
from auditseal.store.files import write_atomic

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_RPC",
    "DEFAULT_STATE",
    "DevState",
    "Service",
    "dev_chain_key",
    "endpoints",
    "load",
    "remove",
    "save",
    "state_path",
    "store_env",
    "store_url",
]

DEFAULT_STATE = Path(".auditseal") / "dev" / "state.json"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_RPC = "http://127.0.0.1:8545"
ENV_STATE = "AUDITSEAL_DEV_STATE"
ENV_BOOTSTRAP = "AUDITSEAL_BOOTSTRAP"
ENV_RPC = "AUDITSEAL_RPC"
CHAIN_KEY_NAME = "chain.key"  # next to the state file
POSTGRES_DIR = "postgres"  # next to the state file: data/, postgres.password, postgres.log
STORE_DB = "auditseal"  # the database `dev up --postgres` creates for the block store
VERSION = 1


@dataclass
class Service:
    """One service of the stack as started by ``dev up``.

    ``kind`` is ``tansu`` or ``docker`` for the broker, ``anvil`` for the chain, the service's
    name for the pipeline (``sealer``, ``anchor``, ``monitor``, ``dashboard``). ``pid`` and
    ``argv`` are set for processes started here (the PID's /proc cmdline must equal ``argv``
    before anything signals it); a Docker broker has ``compose_file`` and ``compose_project``.
    """

    kind: str
    address: str
    port: int
    pid: int | None = None
    argv: list[str] = field(default_factory=list)
    log: str | None = None
    compose_file: str | None = None
    compose_project: str | None = None
    data_dir: str | None = None
    password_file: str | None = None
    """PostgreSQL: its data directory (kept by ``dev down``) and the 0600 password file."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Service:
        return cls(
            kind=str(data["kind"]),
            address=str(data["address"]),
            port=int(data["port"]),
            pid=None if data.get("pid") is None else int(data["pid"]),
            argv=[str(a) for a in data.get("argv") or []],
            log=data.get("log"),
            compose_file=data.get("compose_file"),
            compose_project=data.get("compose_project"),
            data_dir=data.get("data_dir"),
            password_file=data.get("password_file"),
        )


@dataclass
class DevState:
    """What ``dev up`` started; either service may be absent while the stack is half up.

    ``chain_key`` is the key file ``dev up`` wrote (Anvil's dev key), ``contract`` the address
    of the AuditAnchor contract on the dev chain and ``deployment`` its deployment record.
    ``deployment_owned`` says that ``dev up`` wrote that record, so ``dev down`` removes it
    (Anvil keeps its state in memory: after ``down`` the record names nothing).
    """

    broker: Service | None = None
    chain: Service | None = None
    started_at: str | None = None
    chain_key: str | None = None
    contract: str | None = None
    deployment: str | None = None
    deployment_owned: bool = False
    pipeline: list[Service] = field(default_factory=list)
    """Sealer, anchor service, monitor and dashboard started by ``dev up --pipeline``."""
    postgres: Service | None = None
    """The PostgreSQL cluster started by ``dev up --postgres``; its ``address`` is the store
    URL without the password (see ``store_url``)."""
    version: int = VERSION

    @property
    def bootstrap(self) -> str | None:
        return self.broker.address if self.broker else None

    @property
    def rpc_url(self) -> str | None:
        return self.chain.address if self.chain else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DevState:
        broker, chain = data.get("broker"), data.get("chain")
        return cls(
            broker=Service.from_dict(broker) if broker else None,
            chain=Service.from_dict(chain) if chain else None,
            started_at=data.get("started_at"),
            chain_key=data.get("chain_key"),
            contract=data.get("contract"),
            deployment=data.get("deployment"),
            deployment_owned=bool(data.get("deployment_owned", False)),
            pipeline=[Service.from_dict(s) for s in data.get("pipeline") or []],
            postgres=Service.from_dict(data["postgres"]) if data.get("postgres") else None,
            version=int(data.get("version", VERSION)),
        )


def state_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The state file: ``path`` if given, else ``$AUDITSEAL_DEV_STATE``, else the default."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_STATE)
    return Path(env) if env else DEFAULT_STATE


def load(path: str | os.PathLike[str] | None = None) -> DevState | None:
    """Read the state file; None when there is none. A malformed file is an InfraError (2)."""
    file = state_path(path)
    try:
        data = json.loads(file.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return DevState.from_dict(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfraError(f"{file}: unreadable dev state file ({exc}); remove it", 2) from exc


def save(state: DevState, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the state file atomically (owner-only: it names the chain key file)."""
    file = state_path(path)
    write_atomic(file, (json.dumps(state.to_dict(), indent=2) + "\n").encode(), mode=0o600)
    return file


def remove(path: str | os.PathLike[str] | None = None) -> bool:
    """Delete the state file; False if there was none."""
    try:
        state_path(path).unlink()
    except FileNotFoundError:
        return False
    return True


def endpoints(path: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """(bootstrap servers, RPC URL) for commands that talk to the broker and the chain.

    Each comes from, first found: ``$AUDITSEAL_BOOTSTRAP`` / ``$AUDITSEAL_RPC``, the dev state
    file (see ``state_path``), the defaults 127.0.0.1:9092 and http://127.0.0.1:8545. A missing
    or unreadable state file falls through to the defaults.
    """
    bootstrap = os.environ.get(ENV_BOOTSTRAP) or None
    rpc = os.environ.get(ENV_RPC) or None
    if bootstrap is None or rpc is None:
        try:
            state = load(path)
        except InfraError:
            state = None
        if state is not None:
            bootstrap = bootstrap or state.bootstrap
            rpc = rpc or state.rpc_url
    return bootstrap or DEFAULT_BOOTSTRAP, rpc or DEFAULT_RPC


def dev_chain_key(
    path: str | os.PathLike[str] | None = None, rpc_url: str | None = None
) -> Path | None:
    """The dev stack's chain key file, for the anchor commands' ``--key`` default.

    Only while the state file exists (and reads): the key it records, else ``chain.key`` next
    to it, if that file exists. With ``rpc_url``, only if that is the dev chain's URL: the
    public dev key is never picked for another endpoint. None otherwise, so that a missing key
    stays an error.
    """
    file = state_path(path)
    try:
        state = load(file)
    except InfraError:
        return None
    if state is None or (rpc_url is not None and rpc_url != state.rpc_url):
        return None
    for candidate in (state.chain_key, file.parent / CHAIN_KEY_NAME):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def store_url(path: str | os.PathLike[str] | None = None) -> str | None:
    """The dev stack's PostgreSQL store URL, password included (read from its 0600 file).

    None when there is no state file or the stack has no PostgreSQL. The URL holds a secret:
    hand it to a connection, never print it or put it on a command line. An unreadable or
    group/other-readable password file is an InfraError (exit 2).
    """
    from auditseal.infra import postgres  # postgres imports this module

    try:
        state = load(path)
    except InfraError:
        return None
    if state is None or state.postgres is None or state.postgres.password_file is None:
        return None
    password = postgres.read_password(state.postgres.password_file)
    return postgres.url(state.postgres.port, STORE_DB, password=password)


def store_env(dev: DevState) -> dict[str, str]:
    """The environment that points a command at the dev stack's PostgreSQL store without a
    secret in it (the URL has no password; libpq reads it from the 0600 ``PGPASSFILE``), or
    nothing when the stack has no PostgreSQL."""
    from auditseal.infra import postgres  # postgres imports this module

    if dev.postgres is None or dev.postgres.password_file is None:
        return {}
    state_dir = Path(dev.postgres.password_file).parent
    return {
        "AUDITSEAL_STORE": postgres.url(dev.postgres.port, STORE_DB),
        "PGPASSFILE": str(state_dir / postgres.PGPASS_FILE),
    }
