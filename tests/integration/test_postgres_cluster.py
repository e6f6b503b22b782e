"""The throwaway PostgreSQL cluster of infra/postgres.py and `auditseal dev up --postgres`.

Real initdb/pg_ctl/postgres (as the `postgres` user under root), real ports. What an attacker on
the same machine would try: reach the server from a non-loopback address, connect without the
password, read the password from a command line, an environment or the log, get `dev down` to
signal a PID that is not the cluster's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from auditseal.infra import postgres as pg
from auditseal.infra import processes, state
from auditseal.infra.errors import ToolMissingError
from auditseal.sealer.signer import Signer
from tests.conftest import PostgresServer

AUDITSEAL = Path(sys.executable).with_name("auditseal")
STATE = Path(".auditseal") / "dev" / "state.json"
CLI = [sys.executable, "-c", "from auditseal.cli.main import main; main()"]

pytestmark = pytest.mark.postgres


def local(server: PostgresServer) -> state.Service:
    assert server.kind == "local" and server.service is not None, "needs the local cluster"
    return server.service


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets in LISTEN state on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # /proc/net/tcp* prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
            found.add(socket.inet_ntop(family, words))
    return found


def non_loopback_address() -> str | None:
    """This host's address on its default route (a UDP connect sends nothing), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") else address


def postgres_pids(service: state.Service) -> list[int]:
    """The postmaster and its children (the backends and background processes)."""
    assert service.pid is not None
    pids = [service.pid]
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f"\nPPid:\t{service.pid}\n" in status:
            pids.append(int(entry.name))
    return pids


# --- the cluster ------------------------------------------------------------------------------


def test_the_cluster_listens_on_127_0_0_1_only(postgres: PostgresServer) -> None:
    service = local(postgres)
    with psycopg.connect(postgres.admin_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["listen_addresses", "unix_socket_directories", "fsync"],),
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "fsync": "on",
    }
    assert listening_addresses(service.port) == {"127.0.0.1"}
    # Another loopback address and the host's own address are refused.
    assert not processes.port_answers(service.port, "127.0.0.2")
    outside = non_loopback_address()
    if outside is not None:
        assert not processes.port_answers(service.port, outside)
    for socket_dir in ("/var/run/postgresql", "/tmp", str(service.data_dir)):
        assert not Path(socket_dir, f".s.PGSQL.{service.port}").exists()


def test_every_connection_needs_the_scram_password(postgres: PostgresServer) -> None:
    service = local(postgres)
    wrong = pg.url(service.port, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.url(service.port), connect_timeout=5, passfile=os.devnull)
    with psycopg.connect(postgres.admin_url) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (pg.SUPERUSER,)
        ).fetchone()
    assert row is not None and str(row[0]).startswith("SCRAM-SHA-256$")


def test_the_password_is_in_its_0600_file_and_nowhere_else(postgres: PostgresServer) -> None:
    service = local(postgres)
    assert service.password_file is not None and service.log is not None
    file = Path(service.password_file)
    info = file.stat()
    assert info.st_mode & 0o777 == 0o600
    assert info.st_uid == os.geteuid()
    password = postgres.password
    assert len(password) >= 32

    with psycopg.connect(postgres.admin_url) as conn:  # a live session: a backend exists
        conn.execute("SELECT 1")
        pids = postgres_pids(service)
        assert service.pid in pids and len(pids) > 1
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    assert password.encode() not in (entry / "cmdline").read_bytes()
                except (FileNotFoundError, ProcessLookupError):
                    continue
        for pid in pids:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert password.encode() not in environ
    assert password not in Path(service.log).read_text(errors="replace")
    state_dir = file.parent
    assert not (state_dir / ".initdb.pw").exists()  # initdb's transient copy is gone
    data = Path(str(service.data_dir))
    for conf in data.glob("*.conf"):
        assert password not in conf.read_text()


def test_pg_url_is_a_fresh_database_of_its_own(pg_url: str, postgres: PostgresServer) -> None:
    with psycopg.connect(pg_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE t (x int)")
    assert name is not None and name[0].startswith("test_")
    assert tables == (0,)


def test_stop_refuses_a_pid_that_is_not_the_cluster(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    service = local(postgres)
    sleeper_argv = ["sleep", "60"]
    sleeper = processes.spawn_detached(sleeper_argv, tmp_path / "sleep.log")
    try:
        # The PID now runs something else: not signalled, nothing stopped.
        assert not pg.stop(dataclasses.replace(service, pid=sleeper), timeout=1)
        assert processes.is_alive(sleeper)
        # The right PID with another command line: the same.
        other_argv = [*service.argv, "-c", "work_mem=1MB"]
        assert not pg.stop(dataclasses.replace(service, argv=other_argv), timeout=1)
        # The right process, but the data directory's postmaster.pid names another one.
        elsewhere = tmp_path / "data"
        elsewhere.mkdir()
        (elsewhere / "postmaster.pid").write_text(f"{sleeper}\n")
        assert not pg.stop(dataclasses.replace(service, data_dir=str(elsewhere)), timeout=1)
    finally:
        processes.stop(sleeper, sleeper_argv, timeout=1)
    assert pg.is_running(service)
    assert pg.probe(postgres.admin_url) is not None


def test_missing_programs_are_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv(pg.ENV_BINDIR, str(empty))
    with pytest.raises(ToolMissingError, match=r"AUDITSEAL_PG_BINDIR=.*initdb, pg_ctl, postgres"):
        pg.start(tmp_path / "cluster", processes.free_port())
    assert ToolMissingError.exit_code == 2
    assert not (tmp_path / "cluster").exists()

    # Through the CLI: exit 2, one line, and nothing started.
    ports = [processes.free_port() for _ in range(3)]
    result = run(tmp_path, "up", "--postgres", *port_args(ports), AUDITSEAL_PG_BINDIR=str(empty))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("auditseal: error: AUDITSEAL_PG_BINDIR=")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / STATE).exists()
    assert not any(processes.port_answers(port) for port in ports)


def test_a_server_that_cannot_start_is_exit_3_with_the_log_tail(stack_dir: Path) -> None:
    from auditseal.infra.errors import ServiceUnavailableError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceUnavailableError) as failed:
            pg.start(stack_dir / "cluster", port, timeout=20)
    message = str(failed.value)
    assert "pg_ctl start failed" in message and "postgres.log" in message
    assert "could not bind IPv4 address" in message or "could not create" in message
    assert failed.value.exit_code == 3
    assert not (stack_dir / "cluster" / "data" / "postmaster.pid").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user is only used under root")
def test_as_root_a_state_dir_postgres_cannot_reach_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    # pytest's /tmp/pytest-of-root is 0700: the postgres user cannot traverse it.
    ports = [processes.free_port() for _ in range(3)]
    result = run(tmp_path, "up", "--postgres", *port_args(ports))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot be traversed by the 'postgres' user" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / STATE).exists()
    assert not any(processes.port_answers(port) for port in ports)


# --- auditseal dev up --postgres ----------------------------------------------------------------


def run(cwd: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITSEAL_")}
    env["AUDITSEAL_BROKER"] = "tansu"
    env.update(extra_env)
    return subprocess.run(
        [str(AUDITSEAL), "dev", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def port_args(ports: list[int]) -> list[str]:
    broker, chain, postgres = ports
    return [
        *("--broker-port", str(broker), "--chain-port", str(chain)),
        *("--postgres-port", str(postgres)),
    ]


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A working directory the cluster's user can reach; whatever a failing test left up is
    stopped."""
    user = pg.run_as_user()
    owned = None
    directory = tmp_path
    if user is not None and pg.unreachable_ancestor(tmp_path, user) is not None:
        directory = owned = Path(tempfile.mkdtemp(prefix="auditseal-devpg-"))
        directory.chmod(0o711)  # traversable, as a project directory would be
    yield directory
    if (directory / STATE).exists():
        run(directory, "down")
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)


@pytest.mark.kafka
@pytest.mark.chain
def test_dev_up_postgres_status_down_and_up_again_keeps_the_data(stack_dir: Path) -> None:
    ports = [processes.free_port() for _ in range(3)]
    while len(set(ports)) < 3:
        ports = [processes.free_port() for _ in range(3)]
    pg_port = ports[2]
    password_file = stack_dir / ".auditseal" / "dev" / "postgres" / pg.PASSWORD_FILE

    up = run(stack_dir, "up", "--postgres", *port_args(ports))
    assert up.returncode == 0, up.stderr
    assert "starting postgres: initdb + pg_ctl" in up.stdout
    assert f"store postgresql://auditseal@127.0.0.1:{pg_port}/auditseal " in up.stdout
    assert f"password in {password_file}" in up.stdout
    password = pg.read_password(password_file)
    assert password not in up.stdout + up.stderr
    state_text = (stack_dir / STATE).read_text()
    assert password not in state_text

    recorded = state.load(stack_dir / STATE)
    assert recorded is not None and recorded.postgres is not None
    service = recorded.postgres
    assert service.kind == "postgres" and service.port == pg_port
    assert service.address == f"postgresql://auditseal@127.0.0.1:{pg_port}/auditseal"
    assert pg.is_running(service)
    assert service.password_file == str(password_file)

    # By hand, or for the pipeline: a URL without the password and libpq's 0600 pgpass file.
    env = state.store_env(recorded)
    assert env["AUDITSEAL_STORE"] == f"postgresql://auditseal@127.0.0.1:{pg_port}/auditseal"
    pgpass = Path(env["PGPASSFILE"])
    assert oct(pgpass.stat().st_mode & 0o777) == "0o600"
    assert f"export AUDITSEAL_STORE={env['AUDITSEAL_STORE']} PGPASSFILE={pgpass}" in up.stdout
    key = stack_dir / "k.key"
    Signer.generate("k").write_private_file(key)
    appended = subprocess.run(
        [*CLI, "log", "append", "--log", "dev.local/t/0", "--key", str(key), "--json"],
        input=b"one\ntwo\n",
        capture_output=True,
        env={**os.environ, **env},
        cwd=stack_dir,
        timeout=60,
        check=False,
    )
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout)["end"] == 2 and password.encode() not in appended.stdout

    # Other commands get the full URL from the state file and the 0600 password file.
    url = state.store_url(stack_dir / STATE)
    assert url == pg.url(pg_port, "auditseal", password)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("auditseal",)
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (41)")

    status = run(stack_dir, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert password not in status.stdout
    shown = json.loads(status.stdout)["postgres"]
    assert shown["answering"] is True and shown["process_running"] is True
    assert shown["url"] == f"postgresql://auditseal@127.0.0.1:{pg_port}/auditseal"
    assert shown["password_file"] == str(password_file) and shown["pid"] == service.pid
    text = run(stack_dir, "status")
    assert text.returncode == 0 and "postgres up" in text.stdout
    assert password not in text.stdout

    down = run(stack_dir, "down")
    assert down.returncode == 0, down.stderr
    assert f"stopped postgres (postgres, pid {service.pid}); data kept in" in down.stdout
    assert not processes.is_alive(service.pid or 0)
    assert not processes.port_answers(pg_port)
    assert (Path(str(service.data_dir)) / "PG_VERSION").is_file() and password_file.is_file()
    assert state.store_url(stack_dir / STATE) is None

    # Up again on another port: the same cluster, its data and its password.
    ports[2] = pg_port = processes.free_port()
    again = run(stack_dir, "up", "--postgres", *port_args(ports))
    assert again.returncode == 0, again.stderr
    assert "starting postgres: pg_ctl, existing data" in again.stdout
    assert pg.read_password(password_file) == password
    url = state.store_url(stack_dir / STATE)
    assert url == pg.url(pg_port, "auditseal", password)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(41,)]
    assert run(stack_dir, "down").returncode == 0
