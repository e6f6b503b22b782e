"""Session-wide fixtures for the real broker, the real chain and a real PostgreSQL.

``kafka_bootstrap`` ("host:port") and ``anvil_rpc`` (URL) start their service once per test
session, and only when a test asks for them: through testcontainers where a Docker engine
answers (Apache Kafka in KRaft mode, Foundry's image running Anvil), otherwise through the
same ``infra.broker`` / ``infra.chain`` code as ``auditseal dev up`` (Tansu and Anvil from
node_modules) on free loopback ports. Either way they are stopped at the end of the session.

``postgres`` starts one throwaway PostgreSQL cluster per session through ``infra.postgres`` (the
code of ``auditseal dev up --postgres``: Debian's initdb/pg_ctl, as the ``postgres`` user under
root); only where those programs are missing and a Docker engine answers does it run a
testcontainers PostgreSQL instead. ``pg_url`` hands each test a fresh database of its own.

``softhsm`` makes one SoftHSM2 token per session through ``infra.softhsm`` (the code of
``auditseal demo --hsm``) in a temporary token directory, and points ``$SOFTHSM2_CONF`` at it for
the session (SoftHSM reads it once per process). Without softhsm2 the tests that ask for it are
skipped, unless AUDITSEAL_REQUIRE_HSM=1 (as in CI), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

FOUNDRY_IMAGE = "ghcr.io/foundry-rs/foundry:v1.7.1"  # the Anvil of package.json
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:15"  # the major version of Debian 12's postgresql package

if TYPE_CHECKING:
    from auditseal.infra.softhsm import SoftHsmToken
    from auditseal.infra.state import Service


@dataclass(frozen=True)
class KafkaBroker:
    """The session's broker: its bootstrap address and what runs it (``tansu`` or ``kafka``)."""

    bootstrap: str
    kind: str


@pytest.fixture(scope="session")
def docker_engine() -> bool:
    from auditseal.infra.processes import docker_engine_available

    return docker_engine_available()


@pytest.fixture(scope="session")
def kafka_broker(
    docker_engine: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    from auditseal.infra import broker
    from auditseal.infra.processes import wait_until

    if docker_engine:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
            bootstrap = kafka.get_bootstrap_server()
            wait_until(lambda: broker.probe(bootstrap), 60, f"kafka container at {bootstrap}")
            yield KafkaBroker(bootstrap, "kafka")
        return

    from auditseal.infra.processes import free_port

    logs: Path = tmp_path_factory.mktemp("broker")
    service = broker.spawn(free_port(), logs / "broker.log")
    try:
        broker.wait_ready(service, timeout=60)
        yield KafkaBroker(service.address, service.kind)
    finally:
        broker.stop(service, timeout=2.0)  # in-memory: nothing to flush; clients may linger


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    """Bootstrap servers ("host:port") of the session's Kafka-protocol broker."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def anvil_rpc(docker_engine: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JSON-RPC URL of the session's Anvil chain (chain id 31337)."""
    from auditseal.infra import chain
    from auditseal.infra.processes import wait_until

    if docker_engine:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(FOUNDRY_IMAGE)
            .with_kwargs(entrypoint=["anvil"])
            .with_command(["--host", "0.0.0.0", "--port", "8545"])
            .with_exposed_ports(8545)
        )
        with container:
            host = container.get_container_host_ip()
            url = f"http://{host}:{container.get_exposed_port(8545)}"
            wait_until(lambda: chain.probe(url, timeout=1.0), 60, f"anvil container at {url}")
            yield url
        return

    from auditseal.infra.processes import free_port

    logs: Path = tmp_path_factory.mktemp("chain")
    service = chain.spawn(free_port(), logs / "anvil.log")
    try:
        chain.wait_ready(service, timeout=60)
        yield service.address
    finally:
        chain.stop(service)


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=1)`` creates a uniquely named topic and returns its name.

    The topics are deleted (best effort) when the test ends.
    """
    from auditseal.infra import broker

    created: list[str] = []

    def factory(partitions: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        broker.create_topic(kafka_bootstrap, name, partitions)
        created.append(name)
        return name

    yield factory
    broker.delete_topics(kafka_bootstrap, created)


@dataclass(frozen=True)
class PostgresServer:
    """The session's PostgreSQL: a superuser's credentials and, for the local cluster, its
    record (``service``: postmaster PID and argv, data dir, log, password file)."""

    host: str
    port: int
    user: str
    password: str
    kind: str  # "local" (infra.postgres) or "container" (testcontainers)
    service: Service | None = None

    def url(self, dbname: str = "postgres") -> str:
        """The superuser's URL of ``dbname``, password included (never print it)."""
        from auditseal.infra import postgres

        return postgres.url(self.port, dbname, self.password, self.user, self.host)

    @property
    def admin_url(self) -> str:
        return self.url("postgres")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, stopped at its end (see the module docstring)."""
    from auditseal.infra import postgres as pg
    from auditseal.infra.errors import ToolMissingError
    from auditseal.infra.processes import docker_engine_available, free_port

    try:
        pg.find_bindir()
    except ToolMissingError:
        if not docker_engine_available():
            raise
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield PostgresServer(
                container.get_container_host_ip(),
                int(container.get_exposed_port(5432)),
                container.username,
                container.password,
                "container",
            )
        return

    state_dir: Path = tmp_path_factory.mktemp("postgres")
    owned = None
    user = pg.run_as_user()
    if user is not None and pg.unreachable_ancestor(state_dir, user) is not None:
        # As root the server runs as `postgres`, which cannot enter pytest's private
        # /tmp/pytest-of-root (0700, re-tightened by every pytest run): use a directory of our own.
        state_dir = owned = Path(tempfile.mkdtemp(prefix="auditseal-pg-"))
    try:
        service = pg.start(state_dir, free_port(), timeout=60)
    except BaseException:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        raise
    try:
        assert service.password_file is not None
        yield PostgresServer(
            "127.0.0.1",
            service.port,
            pg.SUPERUSER,
            pg.read_password(service.password_file),
            "local",
            service,
        )
    finally:
        pg.stop(service)
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """URL (superuser, password included) of a fresh, uniquely named database, dropped after."""
    from auditseal.infra import postgres as pg

    name = f"test_{uuid.uuid4().hex[:16]}"
    pg.create_database(postgres.admin_url, name)
    yield postgres.url(name)
    pg.drop_database(postgres.admin_url, name)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """A SoftHSM2 token for the session (see the module docstring); tests name their own keys."""
    import importlib.util

    from auditseal.infra.errors import ToolMissingError
    from auditseal.infra.softhsm import CONF_ENV, init_token

    try:
        if importlib.util.find_spec("pkcs11") is None:
            raise ToolMissingError("python-pkcs11 is not installed: pip install 'auditseal[hsm]'")
        token = init_token(tmp_path_factory.mktemp("softhsm") / "hsm", "auditseal-test")
    except ToolMissingError as exc:
        if os.environ.get("AUDITSEAL_REQUIRE_HSM") == "1":
            pytest.fail(f"{exc} (AUDITSEAL_REQUIRE_HSM=1)", pytrace=False)
        pytest.skip(str(exc))
    before = os.environ.get(CONF_ENV)
    os.environ[CONF_ENV] = str(token.conf)
    try:
        yield token
    finally:
        if before is None:
            os.environ.pop(CONF_ENV, None)
        else:
            os.environ[CONF_ENV] = before
