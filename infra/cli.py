"""``auditseal dev up|status|down``: the local broker and chain (see docs/DEV.md).

Wired into the root CLI lazily by ``cli/main.py``, whose ``main()`` turns an InfraError into
``auditseal: error: <message>`` and the error's exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import click

from auditseal.cli.options import json_option
from auditseal.infra import state
from auditseal.infra.errors import InfraError
from auditseal.infra.pipeline import PipelineOptions
from auditseal.infra.state import DevState, Service
from auditseal.store.files import open_private
from auditseal.verifier.pins import DEFAULT_RECORD

# Anvil's first dev account (0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266): derived from the
# public test mnemonic, funded on every fresh Anvil, known to everyone. Never use it on a real
# network. `dev up` writes it to chain.key (0600) next to the state file and never prints it.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

EXIT_CODES = (
    "Exit codes: 0 ok, 2 usage or input (a port already in use, a missing tool or a bad state "
    "file), 3 a service unavailable (did not start or answer in time)."
)


state_option = click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=state.DEFAULT_STATE,
    envvar=state.ENV_STATE,
    show_default=True,
    show_envvar=True,
    help="State file of the dev stack; logs go to its directory.",
)


def _elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f} s"


def _describe(service: Service) -> str:
    where = f"pid {service.pid}" if service.pid else f"compose project {service.compose_project}"
    return f"{service.kind}, {where}"


@click.group("dev")
def dev() -> None:
    """Local stack: a Kafka-protocol broker and an Anvil chain on 127.0.0.1 (and, with
    `dev up --postgres`, a PostgreSQL cluster for the block store).

    `dev up` starts both (Apache Kafka in Docker where an engine answers, else Tansu; Anvil from
    node_modules), `dev status` probes them, `dev down` stops what `dev up` started. Other
    commands find them through the state file, or $AUDITSEAL_BOOTSTRAP and $AUDITSEAL_RPC.
    """


@dev.command("up")
@state_option
@click.option(
    "--broker-port",
    type=click.IntRange(1, 65535),
    default=9092,
    envvar="AUDITSEAL_BROKER_PORT",
    show_default=True,
    show_envvar=True,
    help="Loopback port of the Kafka-protocol broker.",
)
@click.option(
    "--chain-port",
    type=click.IntRange(1, 65535),
    default=8545,
    envvar="AUDITSEAL_CHAIN_PORT",
    show_default=True,
    show_envvar=True,
    help="Loopback port of Anvil's JSON-RPC.",
)
@click.option(
    "--broker",
    "broker_impl",
    type=click.Choice(["auto", "docker", "tansu"]),
    default="auto",
    envvar="AUDITSEAL_BROKER",
    show_default=True,
    show_envvar=True,
    help="auto: Apache Kafka in Docker if `docker info` answers, else Tansu.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for each service to answer.",
)
@click.option(
    "--pipeline",
    is_flag=True,
    help="Also start the sealer, the anchor service, the monitor and the dashboard "
    "(needs the pipeline extra); `dev down` stops them too.",
)
@click.option(
    "--dashboard-port",
    type=click.IntRange(1, 65535),
    default=8088,
    show_default=True,
    help="With --pipeline: loopback port of the dashboard.",
)
@click.option(
    "--anchor-interval",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="With --pipeline: seconds between anchor rounds.",
)
@click.option(
    "--pipeline-metrics/--no-pipeline-metrics",
    default=True,
    show_default=True,
    help="With --pipeline: Prometheus endpoints on the default ports 9464 (sealer), 9465 "
    "(anchor) and 9466 (monitor).",
)
@click.option(
    "--postgres",
    "with_postgres",
    is_flag=True,
    help="Also start a local PostgreSQL cluster (Debian's initdb/pg_ctl) for the block store, "
    "with the database `auditseal`; `dev down` stops it and keeps its data.",
)
@click.option(
    "--postgres-port",
    type=click.IntRange(1, 65535),
    default=5432,
    envvar="AUDITSEAL_POSTGRES_PORT",
    show_default=True,
    show_envvar=True,
    help="With --postgres: loopback port of PostgreSQL.",
)
def up(
    state_file: Path,
    broker_port: int,
    chain_port: int,
    broker_impl: str,
    timeout: float,
    pipeline: bool,
    dashboard_port: int,
    anchor_interval: float,
    pipeline_metrics: bool,
    with_postgres: bool,
    postgres_port: int,
) -> None:
    """Start the broker and the chain, create the topics, deploy AuditAnchor, write the state
    file.

    Both listen on 127.0.0.1 only and run detached (their own session), logging to files next
    to the state file. The contract is deployed from Anvil's first dev account (a public key,
    written to chain.key next to the state file, mode 0600) and its record written to
    .auditseal/anchor/deployment.json, unless that record already names the contract on this
    chain. Already up: says so and exits 0. A port already in use is exit 2 and starts nothing.

    With --pipeline, the sealer (`auditseal seal`), the anchor service, the monitor and the
    dashboard start too, on the default paths (.auditseal/store.db), with a sealer key made on
    first use (sealer.key next to the state file; its verifier key in sealer.pub).

    With --postgres, a PostgreSQL cluster starts too (initdb on first use) in postgres/ next to
    the state file, on 127.0.0.1 only, with a generated superuser password in
    postgres/postgres.password (0600, never printed); the store URL is printed without it.
    As root the cluster runs as the `postgres` user (initdb refuses root).

    Exit codes: 0 up (or already up), 2 a port already in use (or the same port given twice), a
    missing tool or a bad state file, 3 a service did not start or answer in time.
    """
    from auditseal.infra import broker, chain, postgres, processes, topics

    options = PipelineOptions(
        dashboard_port=dashboard_port, anchor_interval=anchor_interval, metrics=pipeline_metrics
    )

    began = time.monotonic()
    path = state.state_path(state_file)
    current = state.load(path) or DevState()
    keep_broker = current.broker is not None and broker.is_running(current.broker)
    keep_chain = current.chain is not None and chain.is_running(current.chain)
    keep_postgres = current.postgres is not None and postgres.is_running(current.postgres)
    if not (keep_broker or keep_chain or keep_postgres):
        current = DevState()  # nothing recorded is running any more (e.g. after a reboot)
    elif not keep_postgres:
        current.postgres = None
    if with_postgres and not keep_postgres:
        # Missing programs or an unreachable directory fail here, before anything starts.
        postgres.preflight(path.parent / state.POSTGRES_DIR)

    if keep_broker and keep_chain:
        assert current.broker is not None and current.chain is not None
        broker.wait_ready(current.broker, timeout)
        chain.wait_ready(current.chain, timeout)
        broker.ensure_topics(current.broker.address, timeout=timeout)
        click.echo(
            f"dev stack already up: broker {current.broker.address} "
            f"({_describe(current.broker)}), chain {current.chain.address} "
            f"({_describe(current.chain)}); state {path}"
        )
        if (current.broker.port, current.chain.port) != (broker_port, chain_port):
            click.echo("(ports as started; run `auditseal dev down` first to change them)")
        _ensure_contract(current, path, chain.CHAIN_ID, timeout)
        if with_postgres:
            _ensure_postgres(current, path, postgres_port, timeout)
        if pipeline:
            _start_pipeline(current, path, options, timeout)
        return

    wanted: dict[str, int] = {}
    if not keep_broker:
        wanted["broker"] = broker_port
    if not keep_chain:
        wanted["chain"] = chain_port
    if with_postgres and not keep_postgres:
        wanted["postgres"] = postgres_port
    kept_services = (
        current.broker if keep_broker else None,
        current.chain if keep_chain else None,
        current.postgres if keep_postgres else None,
    )
    for kept in kept_services:
        if kept is not None and kept.port in wanted.values():
            raise InfraError(f"port {kept.port} is already used by the running {kept.kind}", 2)
    processes.check_ports_free(wanted)
    docker = False if keep_broker else broker.use_docker(broker_impl)
    if not keep_chain:
        chain.find_anvil()  # a missing node_modules fails here, before anything starts

    log_dir = path.parent.absolute()
    started: list[tuple[str, Service]] = []
    try:
        if keep_chain:
            assert current.chain is not None
            click.echo(f"chain: already running ({_describe(current.chain)})")
        else:
            click.echo(f"starting chain: anvil on 127.0.0.1:{chain_port} (log {log_dir}/anvil.log)")
            current.chain = chain.spawn(chain_port, log_dir / "anvil.log")
            started.append(("chain", current.chain))
        if keep_broker:
            assert current.broker is not None
            click.echo(f"broker: already running ({_describe(current.broker)})")
        else:
            kind = "apache kafka (docker compose)" if docker else "tansu"
            click.echo(
                f"starting broker: {kind} on 127.0.0.1:{broker_port} (log {log_dir}/broker.log)"
            )
            current.broker = broker.spawn(broker_port, log_dir / "broker.log", docker=docker)
            started.append(("broker", current.broker))
        current.started_at = current.started_at or time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
        )
        state.save(current, path)  # PIDs on disk first, so that `dev down` can always clean up

        assert current.broker is not None and current.chain is not None
        broker.wait_ready(current.broker, timeout)
        click.echo(f"broker answers at {current.broker.address} ({_elapsed(began)})")
        chain_id = chain.wait_ready(current.chain, timeout)
        click.echo(
            f"chain answers at {current.chain.address}, chain id {chain_id} ({_elapsed(began)})"
        )
        counts = broker.ensure_topics(current.broker.address, timeout=timeout)
        listed = ", ".join(f"{name} ({n})" for name, n in counts.items())
        click.echo(f"topics: {listed}")
        for name, n in counts.items():
            if n != topics.PARTITIONS[name]:
                click.echo(
                    f"warning: {name} has {n} partitions, expected {topics.PARTITIONS[name]}"
                )
        _ensure_contract(current, path, chain_id, timeout)
        if with_postgres and not keep_postgres:
            _ensure_postgres(current, path, postgres_port, timeout, started)
    except BaseException:
        _undo(started, current, path)
        raise

    click.echo(
        f"dev stack up in {_elapsed(began)}: bootstrap {current.broker.address}, "
        f"rpc {current.chain.address}; state {path}"
    )
    if current.broker.kind == "tansu":
        click.echo("note: Tansu keeps everything in memory; `auditseal dev down` drops the topics")
    if with_postgres and keep_postgres:
        _ensure_postgres(current, path, postgres_port, timeout)
    if pipeline:
        _start_pipeline(current, path, options, timeout)


def _ensure_postgres(
    current: DevState,
    path: Path,
    port: int,
    timeout: float,
    started: list[tuple[str, Service]] | None = None,
) -> None:
    """Start the dev cluster unless it runs, create the store database, record it, print the
    store URL without its password (which stays in the 0600 file)."""
    from auditseal.infra import postgres, processes

    began = time.monotonic()
    state_dir = path.parent.absolute() / state.POSTGRES_DIR
    if current.postgres is not None and postgres.is_running(current.postgres):
        service = current.postgres
        click.echo(f"postgres: already running ({_describe(service)})")
        if service.port != port:
            click.echo("(port as started; run `auditseal dev down` first to change it)")
    else:
        processes.check_ports_free({"postgres": port})
        fresh = not (state_dir / "data" / "PG_VERSION").is_file()
        what = "initdb + pg_ctl" if fresh else "pg_ctl, existing data"
        click.echo(
            f"starting postgres: {what} on 127.0.0.1:{port} (data {state_dir / 'data'}, "
            f"log {state_dir / postgres.LOG_FILE})"
        )
        service = postgres.start(state_dir, port, timeout)
        service.address = postgres.url(port, state.STORE_DB)  # what the store connects to
        current.postgres = service
        if started is not None:
            started.append(("postgres", service))
        state.save(current, path)  # PID on disk before anything else can fail
    assert service.password_file is not None
    password = postgres.read_password(service.password_file)
    postgres.create_database(
        postgres.url(service.port, password=password), state.STORE_DB, exist_ok=True
    )
    pgpass = postgres.write_pgpass(state_dir, service.port, password)
    click.echo(
        f"postgres answers at 127.0.0.1:{service.port} ({_elapsed(began)}); "
        f"store {postgres.url(service.port, state.STORE_DB)} "
        f"(user {postgres.SUPERUSER}, password in {service.password_file}, mode 0600)"
    )
    click.echo(
        "  to use it by hand: export "
        f"AUDITSEAL_STORE={postgres.url(service.port, state.STORE_DB)} PGPASSFILE={pgpass}"
    )


def _start_pipeline(
    current: DevState, path: Path, options: PipelineOptions, timeout: float
) -> None:
    from auditseal.infra import pipeline

    try:
        pipeline.start(current, path.parent.absolute(), options, timeout)
    finally:
        state.save(current, path)  # whatever was spawned is on disk for `dev down`
    for service in current.pipeline:
        click.echo(f"{service.kind}: {_describe(service)}, log {service.log}")
    dashboard = next(s for s in current.pipeline if s.kind == "dashboard")
    click.echo(f"pipeline up: dashboard {dashboard.address}")
    # The page needs a read token; the link carries it in its fragment, which browsers keep
    # out of requests (so out of any server's logs).
    login = pipeline.dashboard_login(path.parent.absolute(), dashboard.address)
    if login is not None:
        click.echo(f"  log in to the dashboard: {login}")


def _write_dev_key(file: Path) -> None:
    """Write Anvil's dev key to ``file``, mode 0600 (as the anchor commands demand)."""
    fd = open_private(file, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)  # 0600, an old file too
    with os.fdopen(fd, "w") as out:
        out.write(ANVIL_DEV_KEY + "\n")


def _ensure_contract(current: DevState, path: Path, chain_id: int, timeout: float) -> None:
    """Deploy AuditAnchor to the dev chain unless the deployment record already names a
    contract with the artifact's code on this chain; record the key, address and record in
    the state file.

    A record of another chain, or a file that is no record, is left alone (with a warning):
    it is somebody's deployment, not the dev stack's.
    """
    from auditseal.anchor import deploy as deployments  # web3: only when `dev up` deploys
    from auditseal.anchor.artifact import load_artifact
    from auditseal.anchor.chain_client import ChainClient, ChainKey
    from auditseal.anchor.errors import InputError

    assert current.chain is not None
    key_file = path.parent.absolute() / state.CHAIN_KEY_NAME
    _write_dev_key(key_file)
    current.chain_key = str(key_file)
    key = ChainKey.from_file(key_file)
    record_file = DEFAULT_RECORD.absolute()
    artifact = load_artifact()
    client = ChainClient.connect(current.chain.address, expected_chain_id=chain_id)

    def leave_alone(warning: str) -> None:
        current.contract = current.deployment = None
        current.deployment_owned = False
        state.save(current, path)
        click.echo(f"warning: {DEFAULT_RECORD} {warning}")

    stale = ""
    if record_file.exists():
        try:
            old = deployments.read_record(record_file)
        except InputError:
            leave_alone(
                "is not a deployment record; not deploying "
                "(move it away and run `auditseal dev up` again)"
            )
            return
        if old.chain_id != chain_id:
            leave_alone(
                f"records {old.contract} {old.address} on chain {old.chain_id}, not the dev "
                f"chain ({chain_id}); left alone, not deploying"
            )
            return
        if client.code(old.address) == artifact.deployed_bytecode:
            owned = (
                current.deployment_owned
                and current.contract == old.address
                and current.deployment == str(record_file)
            )
            current.contract = old.address
            current.deployment = str(record_file)
            current.deployment_owned = owned
            state.save(current, path)
            click.echo(
                f"contract: {old.contract} already at {old.address} (record {DEFAULT_RECORD})"
            )
            return
        stale = f" (the record's {old.address} has no such code on this chain: replaced)"

    record = deployments.deploy(client, key, artifact, timeout=timeout)
    deployments.write_record(record, record_file)
    current.contract = record.address
    current.deployment = str(record_file)
    current.deployment_owned = True
    state.save(current, path)
    click.echo(
        f"contract: {record.contract} deployed at {record.address} by {record.owner} "
        f"(block {record.block_number}, gas {record.gas_used}); record {DEFAULT_RECORD}"
        f"{stale}; key {path.parent / state.CHAIN_KEY_NAME} (Anvil's public dev key)"
    )


def _remove_record(current: DevState) -> None:
    """After the chain stopped: remove the deployment record `dev up` wrote, if it still names
    the dev contract (its state went with Anvil's memory)."""
    record, address = current.deployment, current.contract
    current.contract = current.deployment = None
    owned, current.deployment_owned = current.deployment_owned, False
    if record is None or address is None:
        return
    try:
        data = json.loads(Path(record).read_text())
        names = str(data.get("address", "")).lower() == address.lower()
    except (OSError, ValueError, AttributeError):
        return  # gone, or replaced by something else: not ours any more
    if not names:
        return
    if owned:
        with contextlib.suppress(FileNotFoundError):
            Path(record).unlink()
        click.echo(f"removed deployment record {record} (its chain state is gone)")
    else:
        click.echo(f"note: {record} names {address} on the stopped dev chain; it is stale now")


def _undo(started: list[tuple[str, Service]], current: DevState, path: Path) -> None:
    """After a failed `up`: stop what this run started and forget it in the state file."""
    from auditseal.infra import broker, chain, postgres

    stops = {"broker": broker.stop, "chain": chain.stop, "postgres": postgres.stop}
    for role, service in started:
        try:
            stops[role](service)
        except InfraError as exc:
            click.echo(
                f"warning: could not stop the {role} ({_describe(service)}): {exc}", err=True
            )
            continue
        setattr(current, role, None)
    if current.broker is None and current.chain is None and current.postgres is None:
        state.remove(path)
    else:
        state.save(current, path)


@dev.command("status")
@state_option
@json_option
def status(state_file: Path, as_json: bool) -> None:
    """Probe the broker and the chain (and PostgreSQL, if `dev up --postgres` started it) and
    print where they are and what runs them; never the PostgreSQL password.

    Addresses come from $AUDITSEAL_BOOTSTRAP / $AUDITSEAL_RPC, else the state file. Without
    either (never started, or after `dev down`) it says the stack is not up and probes nothing:
    default ports would only describe whatever else listens there. Exit codes: 0 all answer,
    3 any does not (or the stack is not up), 2 a bad state file.
    """
    from auditseal.infra import broker, chain, postgres, processes
    from auditseal.verifier.urls import public_url

    path = state.state_path(state_file)
    current = state.load(path)
    if current is None and not (
        os.environ.get(state.ENV_BOOTSTRAP) or os.environ.get(state.ENV_RPC)
    ):
        if as_json:
            click.echo(
                json.dumps({"up": False, "state_file": str(path), "state_file_exists": False})
            )
        else:
            click.echo(f"dev stack not up: no state file at {path} (`auditseal dev up` starts it)")
        raise SystemExit(3)
    bootstrap, rpc = state.endpoints(path)
    topic_counts = broker.probe(bootstrap, timeout=5.0)
    chain_id = chain.probe(rpc)

    def managed(service: Service | None, address: str, running: bool | None) -> dict[str, Any]:
        if service is None or service.address != address:
            return {"kind": None, "pid": None, "process_running": None, "log": None}
        return {
            "kind": service.kind,
            "pid": service.pid,
            "process_running": running,
            "log": service.log,
        }

    broker_svc = current.broker if current else None
    chain_svc = current.chain if current else None
    broker_running = broker.is_running(broker_svc) if broker_svc else None
    chain_running = chain.is_running(chain_svc) if chain_svc else None
    contract = current.contract if current else None
    has_code = (
        _has_code(rpc, contract)
        if contract and chain_id is not None and chain_svc and chain_svc.address == rpc
        else None
    )
    pg_svc = current.postgres if current else None
    pg_data: dict[str, Any] | None = None
    if pg_svc is not None:
        try:
            version = postgres.probe(state.store_url(path) or "", timeout=2.0)
        except InfraError:
            version = None  # an unreadable password file: it cannot answer us
        pg_data = {
            "url": postgres.url(pg_svc.port, state.STORE_DB),
            "answering": version is not None,
            "version": version,
            "password_file": pg_svc.password_file,
            "data_dir": pg_svc.data_dir,
            **managed(pg_svc, pg_svc.address, postgres.is_running(pg_svc)),
        }
    data: dict[str, Any] = {
        "up": topic_counts is not None
        and chain_id is not None
        and (pg_data is None or pg_data["answering"]),
        "state_file": str(path),
        "state_file_exists": current is not None,
        "started_at": current.started_at if current else None,
        "broker": {
            "address": bootstrap,
            "answering": topic_counts is not None,
            "topics": topic_counts or {},
            **managed(broker_svc, bootstrap, broker_running),
        },
        "chain": {
            "rpc_url": public_url(rpc),  # $AUDITSEAL_RPC may carry an API key
            "answering": chain_id is not None,
            "chain_id": chain_id,
            **managed(chain_svc, rpc, chain_running),
        },
        "anchor": {
            "contract": contract,
            "record": current.deployment if current else None,
            "has_code": has_code,
            "key_file": current.chain_key if current else None,
        },
        "pipeline": [
            {
                "kind": s.kind,
                "pid": s.pid,
                "process_running": processes.is_running(s.pid, s.argv),
                "address": s.address,
                "log": s.log,
            }
            for s in (current.pipeline if current else [])
        ],
        "postgres": pg_data,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(_status_text(data))
    if not data["up"]:
        raise SystemExit(3)


def _has_code(rpc: str, address: str, timeout: float = 2.0) -> bool | None:
    """Whether ``address`` holds code (eth_getCode over urllib, no web3); None if no answer."""
    import urllib.error
    import urllib.request

    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getCode", "params": [address, "latest"]}
    request = urllib.request.Request(
        rpc,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            code = json.loads(response.read())["result"]
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError):
        return None
    return isinstance(code, str) and code not in ("0x", "")


def _status_text(data: dict[str, Any]) -> str:
    def who(entry: dict[str, Any]) -> str:
        if entry["kind"] is None:
            return "not started by `dev up`"
        parts = [entry["kind"]]
        if entry["pid"]:
            alive = "" if entry["process_running"] else " (not running)"
            parts.append(f"pid {entry['pid']}{alive}")
        if entry["log"]:
            parts.append(f"log {entry['log']}")
        return ", ".join(parts)

    b, c = data["broker"], data["chain"]
    lines = [
        f"broker  {'up  ' if b['answering'] else 'DOWN'}  {b['address']}  {who(b)}",
    ]
    if b["answering"]:
        listed = ", ".join(f"{name} ({n})" for name, n in b["topics"].items()) or "none"
        lines.append(f"        topics: {listed}")
    chain_id = f"chain id {c['chain_id']}, " if c["answering"] else ""
    lines.append(
        f"chain   {'up  ' if c['answering'] else 'DOWN'}  {c['rpc_url']}  {chain_id}{who(c)}"
    )
    a = data["anchor"]
    if a["contract"]:
        code = {True: "", False: " (NO CODE: stale; run `auditseal dev up`)", None: ""}
        lines.append(
            f"anchor  {a['contract']}  AuditAnchor{code[a['has_code']]}, record {a['record']}"
        )
    else:
        lines.append("anchor  none (not deployed by `dev up`)")
    pg = data["postgres"]
    if pg is not None:
        version = f"PostgreSQL {pg['version']}, " if pg["answering"] else ""
        lines.append(
            f"postgres {'up  ' if pg['answering'] else 'DOWN'}  {pg['url']}  {version}{who(pg)}"
        )
        lines.append(f"        password file {pg['password_file']}, data {pg['data_dir']}")
    for p in data["pipeline"]:
        where = f"  {p['address']}" if p["address"] != "-" else ""
        lines.append(
            f"{p['kind']:<9} {'up  ' if p['process_running'] else 'DOWN'}{where}  {who(p)}"
        )
    exists = "" if data["state_file_exists"] else " (none)"
    lines.append(f"state   {data['state_file']}{exists}")
    return "\n".join(lines)


@dev.command("down")
@state_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
def down(state_file: Path, timeout: float) -> None:
    """Stop what `dev up` started and remove the state file, and the deployment record that
    `dev up` wrote (the contract was in Anvil's memory). PostgreSQL is stopped with
    `pg_ctl stop -m fast`; its data directory and password file stay for the next `up`.

    A PID is signalled only if /proc/PID/cmdline is still the command `dev up` ran: SIGTERM,
    then SIGKILL after --timeout seconds. Nothing started: says so and exits 0.
    """
    from auditseal.infra import broker, chain, postgres

    path = state.state_path(state_file)
    current = state.load(path)
    if current is None:
        click.echo(f"nothing to stop: no state file at {path}")
        return
    failures: list[InfraError] = []
    if current.pipeline:
        from auditseal.infra import pipeline

        try:
            for part, was_running in pipeline.stop(current, timeout):
                click.echo(
                    f"stopped {part.kind} (pid {part.pid})"
                    if was_running
                    else f"{part.kind} was not running; nothing to stop"
                )
        except InfraError as exc:
            failures.append(exc)
    stops = {"postgres": postgres.stop, "broker": broker.stop, "chain": chain.stop}
    for role, stop in stops.items():
        service: Service | None = getattr(current, role)
        if service is None:
            continue
        try:
            stopped = stop(service, timeout)
        except InfraError as exc:
            failures.append(exc)
            continue
        if stopped:
            kept = f"; data kept in {service.data_dir}" if service.data_dir else ""
            click.echo(f"stopped {role} ({_describe(service)}){kept}")
        else:
            click.echo(f"{role} was not running ({_describe(service)}); nothing to stop")
        setattr(current, role, None)
    if current.chain is None:
        _remove_record(current)
    if failures:
        state.save(current, path)
        raise failures[0]
    state.remove(path)
    click.echo("dev stack down")
