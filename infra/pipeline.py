"""The pipeline on top of the dev stack: sealer, anchor service, monitor and dashboard.

``auditseal dev up --pipeline`` starts them as detached processes (their own session, output in
``<name>.log`` next to the state file) and records each in the state file like the broker and
the chain, so ``dev down`` stops exactly them. Every path is the commands' default relative to
the working directory (``.auditseal/store.db``, ``.auditseal/anchor/deployment.json``), so
``auditseal verify`` and the others find the same files with no flags.

The sealer's signing key is ``sealer.key`` next to the state file, made on first use; its
verifier key (``sealer.pub``) is what the monitor and dashboard pin. Where ``sealer.pkcs11``
lies there instead (``auditseal demo --hsm`` writes it), it holds the ``pkcs11:`` URI of a key in
an HSM, and the sealer signs with that key.

The anchor service signs with an account of its own, not the dev account that owns the
contract: its key is the encrypted keystore ``anchor.keystore.json`` next to the state file
(made on first use, light scrypt: a throwaway key), opened with the random passphrase in
``anchor.passphrase`` (0600); each start funds it from the dev account and has the owner
authorise it (both only when needed: Anvil forgets everything when it stops).

The dashboard requires a read token like any other (docs/DASHBOARD.md): each time it starts, a
fresh one replaces the last in ``dashboard-tokens`` next to the state file, and the token itself
is kept in ``dashboard.token`` (0600, beside the sealer's key and the store, which its user can
read anyway), so ``dev up`` prints the page's log-in link, ``http://127.0.0.1:8088/#token=...``,
each time it runs.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from auditseal.infra import processes, state
from auditseal.infra.errors import InfraError, ServiceUnavailableError
from auditseal.infra.state import DevState, Service
from auditseal.store.files import write_atomic

__all__ = [
    "DASHBOARD_TOKEN",
    "PIPELINE",
    "SEALER_PKCS11",
    "PipelineOptions",
    "auditseal_argv",
    "dashboard_login",
    "ensure_anchor_key",
    "ensure_sealer_key",
    "start",
    "stop",
]

PIPELINE = ("sealer", "anchor", "monitor", "dashboard")
"""Start order: the sealer first, so blocks exist for the rest to follow."""
DASHBOARD_TOKENS = "dashboard-tokens"
DASHBOARD_TOKEN = "dashboard.token"
ANCHOR_KEYSTORE = "anchor.keystore.json"
ANCHOR_PASSPHRASE = "anchor.passphrase"
ANCHOR_FUNDS = 10 * 10**18  # wei the dev account gives the anchor account (Anvil's hold 10000 ETH)
SEALER_PKCS11 = "sealer.pkcs11"
"""Next to the state file: the pkcs11: URI of the sealer's key in an HSM, used instead of a file."""


@dataclass(frozen=True)
class PipelineOptions:
    dashboard_port: int = 8088
    max_events: int = 1000
    max_interval: float = 1.0
    anchor_interval: float = 5.0
    anchor_late_after: float = 60.0
    metrics: bool = True
    """Prometheus endpoints on their default ports (sealer 9464, anchor 9465, monitor 9466)."""


def auditseal_argv() -> list[str]:
    """How to run this installation's ``auditseal``: the interpreter and the venv's script, as
    /proc/PID/cmdline shows them (which ``dev down`` compares before signalling)."""
    return [sys.executable, str(Path(sys.executable).parent / "auditseal")]


def ensure_sealer_key(state_dir: Path) -> tuple[Path | str, str]:
    """The sealer's key next to the state file, made on first use (or the HSM key that
    ``sealer.pkcs11`` names), as ``seal --key`` takes it; and its verifier key."""
    from auditseal.sealer.signer import Signer, load_signer

    key_file = state_dir / "sealer.key"
    uri_file = state_dir / SEALER_PKCS11
    if uri_file.exists():
        uri = uri_file.read_text(encoding="utf-8").strip()
        verifier = load_signer(uri).verifier.to_string()  # the token answers now, or exit 2
        write_atomic(state_dir / "sealer.pub", (verifier + "\n").encode())
        return uri, verifier
    if key_file.exists():
        signer = Signer.from_file(key_file)
    else:
        signer = Signer.generate("auditseal-dev-sealer")
        signer.write_private_file(key_file)
    verifier = signer.verifier.to_string()
    write_atomic(state_dir / "sealer.pub", (verifier + "\n").encode())
    return key_file, verifier


def ensure_anchor_key(dev: DevState, state_dir: Path, timeout: float = 60.0) -> tuple[Path, Path]:
    """The anchor service's keystore and passphrase file next to the state file (made on first
    use), its account funded by the dev account and authorised on the dev contract; returns
    (keystore, passphrase file)."""
    import secrets

    from web3.types import TxParams, Wei

    from auditseal.anchor import deploy as deployments
    from auditseal.anchor.anchorers import set_anchorer
    from auditseal.anchor.artifact import load_artifact
    from auditseal.anchor.chain_client import ChainClient, ChainKey
    from auditseal.anchor.keystore import Passphrase

    assert dev.rpc_url is not None and dev.chain_key is not None and dev.deployment is not None
    keystore_file = state_dir / ANCHOR_KEYSTORE
    passphrase_file = state_dir / ANCHOR_PASSPHRASE
    passphrase = Passphrase(passphrase_file)
    if keystore_file.exists() and passphrase_file.exists():
        key = ChainKey.from_file(keystore_file, passphrase)
    else:
        write_atomic(passphrase_file, (secrets.token_urlsafe(24) + "\n").encode())
        key = ChainKey.generate()
        write_atomic(
            keystore_file, key.to_keystore(passphrase.read(str(keystore_file)), light=True)
        )
    owner = ChainKey.from_file(dev.chain_key)
    record = deployments.read_record(dev.deployment)
    client = ChainClient.connect(dev.rpc_url, expected_chain_id=record.chain_id)
    if client.balance(key.address) < ANCHOR_FUNDS // 2:
        funding: TxParams = {"to": key.address, "value": Wei(ANCHOR_FUNDS)}
        client.transact(
            owner, funding, what="funding the anchor account", gas=21_000, timeout=timeout
        )
    set_anchorer(
        client, owner, record, load_artifact(), key.address, authorise=True, timeout=timeout
    )
    return keystore_file, passphrase_file


def _new_dashboard_token(state_dir: Path) -> Path:
    """A fresh read token for the dev dashboard, replacing the last; its tokens file."""
    from auditseal.transport.tokens import add_token

    tokens = state_dir / DASHBOARD_TOKENS
    tokens.unlink(missing_ok=True)
    token = add_token(tokens, "dev", prefix="asd_")
    kept = state_dir / DASHBOARD_TOKEN
    kept.unlink(missing_ok=True)
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return tokens


def dashboard_login(state_dir: Path, address: str) -> str | None:
    """The dev dashboard's log-in link (``address#token=...``), or None without a token."""
    try:
        token = (state_dir / DASHBOARD_TOKEN).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return f"{address}#token={token}" if token else None


def _argv(
    kind: str,
    dev: DevState,
    key: Path | str,
    log_key: str,
    o: PipelineOptions,
    state_dir: Path,
    anchor_key: tuple[Path, Path] | None = None,
) -> list[str]:
    assert dev.bootstrap is not None and dev.rpc_url is not None and dev.chain_key is not None
    common = ["--bootstrap", dev.bootstrap]
    chain = ["--rpc", dev.rpc_url]
    metrics = () if o.metrics else ("--metrics-listen", "off")
    if kind == "sealer":
        return [
            *("seal", "--key", str(key), *common),
            *("--max-events", str(o.max_events), "--max-interval", str(o.max_interval)),
            *("--log-level", "warn", *metrics),
        ]
    if kind == "anchor":
        # Its own keystore; the dev account's plain key only when the contract is not the dev
        # stack's (then nobody here can authorise another account).
        signer = (
            ("--key", str(anchor_key[0]), "--key-passphrase-file", str(anchor_key[1]))
            if anchor_key
            else ("--key", dev.chain_key)
        )
        return [
            *("anchor", "run", *signer, *chain, *common),
            *("--interval", str(o.anchor_interval), *metrics),
        ]
    if kind == "monitor":
        return [
            *("monitor", "--log-key", log_key, *chain, *common),
            *("--anchor-late-after", str(o.anchor_late_after), *metrics),
        ]
    if kind == "dashboard":
        tokens = state_dir / DASHBOARD_TOKENS
        return [
            *("dashboard", "--log-key", log_key, *chain, *common),
            *("--listen", f"127.0.0.1:{o.dashboard_port}", "--tokens", str(tokens)),
        ]
    raise ValueError(f"unknown pipeline service {kind!r}")


def _address(kind: str, o: PipelineOptions) -> tuple[str, int]:
    if kind == "dashboard":
        return f"http://127.0.0.1:{o.dashboard_port}/", o.dashboard_port
    return "-", 0


def start(
    dev: DevState, state_dir: Path, options: PipelineOptions, timeout: float = 60.0
) -> list[Service]:
    """Start the pipeline services not already running; returns the full, running set.

    Each is recorded in ``dev.pipeline`` as soon as it is spawned (the caller saves the state),
    and must still be alive a moment later (a bad flag or a missing extra exits at once: its
    log's tail is in the error). The dashboard must also answer on its port.
    """
    running = {s.kind: s for s in dev.pipeline if processes.is_running(s.pid, s.argv)}
    if "dashboard" not in running and not processes.port_is_free(options.dashboard_port):
        raise InfraError(f"dashboard port {options.dashboard_port} is already in use", 2)
    key, log_key = ensure_sealer_key(state_dir)
    dev.pipeline = list(running.values())
    spawned: list[Service] = []
    try:
        for kind in PIPELINE:
            if kind in running:
                continue
            if kind == "dashboard":
                _new_dashboard_token(state_dir)
            anchor_key = None
            if kind == "anchor" and dev.deployment is not None and dev.contract is not None:
                anchor_key = ensure_anchor_key(dev, state_dir, timeout)
            argv = [
                *auditseal_argv(),
                *_argv(kind, dev, key, log_key, options, state_dir, anchor_key),
            ]
            log = state_dir / f"{kind}.log"
            # The dev PostgreSQL store, if any, through the environment (no secret in argv);
            # the dev broker is plaintext on loopback: a production --kafka-config is not for it.
            env = {**os.environ, **state.store_env(dev), "AUDITSEAL_KAFKA_CONFIG": ""}
            pid = processes.spawn_detached(argv, log, env=env)
            address, port = _address(kind, options)
            spawned.append(Service(kind, address, port, pid, argv, str(log)))
            dev.pipeline.append(spawned[-1])
        _wait_started(dev.pipeline, timeout)
    except BaseException:
        for service in spawned:  # all or nothing: what this call started goes again
            processes.stop(service.pid, service.argv, 10.0)
        dev.pipeline = list(running.values())
        raise
    return dev.pipeline


def _wait_started(services: list[Service], timeout: float) -> None:
    time.sleep(1.0)  # long enough for an option error or a missing extra to end the process
    for service in services:

        def started(s: Service = service) -> bool | None:
            if not processes.is_running(s.pid, s.argv):
                raise ServiceUnavailableError(
                    f"{s.kind} exited at start; its log {s.log} ends with:\n{processes.tail(s.log)}"
                )
            return True if not s.port or processes.port_answers(s.port) else None

        try:
            processes.wait_until(started, timeout, f"{service.kind} on port {service.port}", 0.2)
        except ServiceUnavailableError as exc:
            if "did not answer" in str(exc):
                raise ServiceUnavailableError(
                    f"{exc}; its log {service.log} ends with:\n{processes.tail(service.log)}"
                ) from exc
            raise


def stop(dev: DevState, timeout: float = 20.0) -> list[tuple[Service, bool]]:
    """Stop the pipeline in reverse start order (the sealer last, after its readers);
    returns each service with whether it was running."""
    stopped = [
        (s, processes.stop(s.pid, s.argv, timeout))
        for s in sorted(dev.pipeline, key=lambda s: -PIPELINE.index(s.kind))
    ]
    dev.pipeline = []
    return stopped
