"""A throwaway local PostgreSQL cluster: Debian's ``initdb`` and ``pg_ctl`` in a state directory.

``auditseal dev up --postgres`` and the test fixtures start one with ``start(state_dir, port)``.
Layout of ``state_dir``::

    postgres.password   the superuser's generated password, mode 0600, owned by the caller
    postgres.log        initdb's, pg_ctl's and the server's output
    data/               the cluster (PGDATA), owned by the user the server runs as

The cluster listens on 127.0.0.1 only (no Unix socket), authenticates every connection with
SCRAM-SHA-256 and keeps fsync on. The password is handed to initdb through a transient 0600
file (``--pwfile``) and never appears on a command line, in the environment or in the log.

initdb and postgres refuse to run as root: as root (CI, these machines) every PostgreSQL
program runs as the ``postgres`` system user that Debian's package creates, through
``setpriv`` (or ``runuser``), and ``data/`` is chown'ed to it; ``state_dir``'s ancestors must
be traversable by that user (pytest's private ``/tmp/pytest-of-root`` is not).

psycopg is imported inside the functions that connect, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from auditseal.infra import processes
from auditseal.infra.errors import InfraError, ServiceUnavailableError, ToolMissingError
from auditseal.infra.state import Service
from auditseal.store.files import open_private, private_dir

__all__ = [
    "ADMIN_DB",
    "ENV_BINDIR",
    "PASSWORD_FILE",
    "SUPERUSER",
    "create_database",
    "drop_database",
    "find_bindir",
    "is_running",
    "preflight",
    "probe",
    "read_password",
    "run_as_user",
    "start",
    "stop",
    "unreachable_ancestor",
    "url",
]

ENV_BINDIR = "AUDITSEAL_PG_BINDIR"
SUPERUSER = "auditseal"
ADMIN_DB = "postgres"  # made by initdb; where CREATE/DROP DATABASE are issued from
PASSWORD_FILE = "postgres.password"
PGPASS_FILE = "pgpass"  # libpq's password file ($PGPASSFILE): clients read it, no URL holds it
LOG_FILE = "postgres.log"
DATA_DIR = "data"
SYSTEM_USER = "postgres"  # Debian's package creates it; the server runs as it under root
PROGRAMS = ("initdb", "pg_ctl", "postgres")
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# libpq and the server read these; a stray one in the caller's shell must not redirect pg_ctl
# to another cluster or change initdb's locale.
_DROPPED_ENV = re.compile(r"PG[A-Z_]*|LC_[A-Z]+|LANG|LANGUAGE")


# --- finding the programs and the user to run them as -----------------------------------------


def _has_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in PROGRAMS)


def _version_key(bindir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) for p in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    First found: ``$AUDITSEAL_PG_BINDIR`` (must hold all three, else ToolMissingError),
    ``pg_config --bindir``, the highest ``/usr/lib/postgresql/*/bin`` (Debian), ``initdb``
    on PATH. None of them: ToolMissingError (exit 2) saying what to install.
    """
    override = os.environ.get(ENV_BINDIR)
    if override:
        missing = [n for n in PROGRAMS if not os.access(Path(override) / n, os.X_OK)]
        if missing:
            raise ToolMissingError(
                f"{ENV_BINDIR}={override} has no executable {', '.join(missing)} "
                "(PostgreSQL server programs)"
            )
        return Path(override)
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if _has_programs(bindir):
            return bindir
    raise ToolMissingError(
        "PostgreSQL server programs (initdb, pg_ctl, postgres) not found: install Debian's "
        f"postgresql package (apt-get install postgresql) or set {ENV_BINDIR}"
    )


def run_as_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL programs run as: None (the caller) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ToolMissingError(
            f"running as root, and initdb refuses root: no '{SYSTEM_USER}' user to run the "
            "cluster as (Debian's postgresql package creates it)"
        ) from None


def _as_user_prefix(user: pwd.struct_passwd | None) -> list[str]:
    if user is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv:  # execs in place: no PAM session, no extra parent process
        return [
            setpriv,
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--",
        ]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    raise ToolMissingError(
        "running as root needs setpriv or runuser (util-linux) to drop privileges"
    )


def unreachable_ancestor(
    path: Path, user: pwd.struct_passwd, skip: frozenset[Path] | set[Path] = frozenset()
) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` may not traverse, or None;
    those in ``skip`` are not looked at."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in reversed([path, *path.parents]):
        if directory in skip:
            continue
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            ok = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            ok = info.st_mode & stat.S_IXGRP
        else:
            ok = info.st_mode & stat.S_IXOTH
        if not ok:
            return directory
    return None


def _openable(state_dir: Path) -> set[Path]:
    """The directories on the way to ``state_dir`` that auditseal made owner-only (0700) and
    may open to the server's user for traversal: the state file's directory, and those
    between the working directory and it (the default .auditseal/dev), when they are ours."""
    state_dir = state_dir.absolute()
    cwd = Path.cwd()
    ways = [state_dir, state_dir.parent, *(a for a in state_dir.parents if cwd in a.parents)]
    return {a for a in ways if a.is_dir() and a.stat().st_uid == os.geteuid()}


def _open_the_way(state_dir: Path, user: pwd.struct_passwd) -> None:
    """Traverse-only (0711) for ``user`` on the directories of :func:`_openable` that stop it:
    it reaches data/ and the log, lists nothing, and every file on the way stays 0600."""
    for directory in sorted(_openable(state_dir)):
        if unreachable_ancestor(directory, user, skip=set(directory.parents)) is not None:
            os.chmod(directory, stat.S_IMODE(directory.stat().st_mode) | 0o711)


def _check_traversable(
    path: Path, user: pwd.struct_passwd, openable: frozenset[Path] | set[Path] = frozenset()
) -> None:
    """Fail early, naming the directory, if ``user`` cannot reach ``path`` (a directory of
    ``openable`` will be opened for it)."""
    blocked = unreachable_ancestor(path, user, skip=openable)
    if blocked is not None:
        mode = stat.S_IMODE(blocked.stat().st_mode)
        raise InfraError(
            f"{blocked} (mode {mode:04o}) cannot be traversed by the '{user.pw_name}' user the "
            "cluster runs as under root; choose a state directory it can reach",
            2,
        )


def preflight(state_dir: Path) -> tuple[Path, pwd.struct_passwd | None]:
    """Check, before anything starts, that a cluster can be made in ``state_dir``: the programs
    exist and, as root, the ``postgres`` user exists and can reach the directory's parent (its
    nearest existing ancestor; ``start`` makes the rest, and the owner-only directories
    auditseal made on the way, traversable). Returns (bindir, user)."""
    bindir = find_bindir()
    user = run_as_user()
    if user is not None:
        existing = state_dir.absolute().parent
        while not existing.exists():
            existing = existing.parent
        _check_traversable(existing, user, _openable(state_dir))
    return bindir, user


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _DROPPED_ENV.fullmatch(k)}
    env["LC_ALL"] = "C"  # English messages in the log, a locale that exists everywhere
    return env


def _run(argv: Sequence[str], log_path: Path, what: str, timeout: float) -> None:
    """Run a PostgreSQL program to completion, output appended to the log."""
    with open(log_path, "ab") as log:
        log.write(f"--- {what}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd="/",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceUnavailableError(
                f"postgres: {what} took over {timeout:g} s; see {log_path}:\n"
                f"{processes.tail(log_path)}"
            ) from exc
        except OSError as exc:
            raise InfraError(f"cannot run {argv[0]}: {exc.strerror or exc}", 2) from exc
    if result.returncode != 0:
        raise ServiceUnavailableError(
            f"postgres: {what} failed (exit {result.returncode}); see {log_path}:\n"
            f"{processes.tail(log_path)}"
        )


# --- URLs and the password ------------------------------------------------------------------


def url(
    port: int,
    dbname: str = ADMIN_DB,
    password: str | None = None,
    user: str = SUPERUSER,
    host: str = processes.LOOPBACK,
) -> str:
    """``postgresql://user[:password]@host:port/dbname``, the password URL-quoted."""
    secret = f":{quote(password, safe='')}" if password is not None else ""
    return f"postgresql://{quote(user, safe='')}{secret}@{host}:{port}/{quote(dbname, safe='')}"


def read_password(file: str | os.PathLike[str]) -> str:
    """The password in ``file``; InfraError (2) if it is unreadable or others may read it."""
    path = Path(file)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise InfraError(f"{path}: mode {mode:04o}, a password file must be 0600", 2)
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        message = f"{path}: cannot read the PostgreSQL password ({exc.strerror})"
        raise InfraError(message, 2) from exc
    if not password:
        raise InfraError(f"{path}: empty PostgreSQL password file", 2)
    return password


def write_pgpass(state_dir: Path, port: int, password: str) -> Path:
    """A libpq password file (0600) for the dev cluster's superuser: with ``PGPASSFILE`` set
    to it, a store URL without a password connects, and no process list shows the secret."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    path = state_dir / PGPASS_FILE
    _write_secret(path, f"{processes.LOOPBACK}:{port}:*:{SUPERUSER}:{escaped}")
    return path


def _write_secret(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        if owner is not None:
            os.fchown(out.fileno(), owner.pw_uid, owner.pw_gid)
        out.write(text + "\n")


# --- lifecycle ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    state_dir: Path

    @property
    def data(self) -> Path:
        return self.state_dir / DATA_DIR

    @property
    def password(self) -> Path:
        return self.state_dir / PASSWORD_FILE

    @property
    def log(self) -> Path:
        return self.state_dir / LOG_FILE


def _prepare(layout: _Layout, user: pwd.struct_passwd | None) -> None:
    """Create the state directory, and the log the server (maybe another user) appends to."""
    private_dir(layout.state_dir)
    if user is not None:
        # Traverse-only for the server's user: it reaches data/ and the log, lists nothing.
        _open_the_way(layout.state_dir, user)
        _check_traversable(layout.state_dir, user)
    fd = open_private(layout.log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        if user is not None:
            os.fchown(fd, user.pw_uid, user.pw_gid)
    finally:
        os.close(fd)


def _initdb(layout: _Layout, bindir: Path, user: pwd.struct_passwd | None, timeout: float) -> None:
    if layout.data.exists() and any(layout.data.iterdir()):
        raise InfraError(f"{layout.data} is not empty and holds no cluster; remove it", 2)
    layout.data.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(layout.data, user.pw_uid, user.pw_gid)
    password = secrets.token_urlsafe(32)  # URL- and pgpass-safe characters only
    _write_secret(layout.password, password)
    # initdb (maybe as another user) reads the password from a file of its own, gone at once.
    transient = layout.state_dir / ".initdb.pw"
    try:
        _write_secret(transient, password, owner=user)
        argv = [
            *_as_user_prefix(user),
            str(bindir / "initdb"),
            "--pgdata",
            str(layout.data),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(transient),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]
        _run(argv, layout.log, "initdb", timeout)
    finally:
        with contextlib.suppress(FileNotFoundError):
            transient.unlink()
    # Only TCP from 127.0.0.1, always with a password (no Unix socket: see _server_options).
    hba = layout.data / "pg_hba.conf"
    hba.write_text(
        "# written by auditseal: loopback TCP only, SCRAM-SHA-256 always\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host replication all 127.0.0.1/32 scram-sha-256\n"
    )
    hba.chmod(0o600)  # as initdb's own files
    if user is not None:
        os.chown(hba, user.pw_uid, user.pw_gid)


def _server_options(port: int) -> str:
    # On the postmaster's command line (pg_ctl -o), so /proc shows how it was started. No
    # Unix socket: long temp paths exceed its 107-byte limit, and TCP on loopback is enough.
    return (
        f"-c listen_addresses={processes.LOOPBACK} -c port={port} "
        "-c unix_socket_directories='' -c fsync=on -c password_encryption=scram-sha-256"
    )


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().splitlines()[0]
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def start(state_dir: Path, port: int, timeout: float = 60.0) -> Service:
    """Start a cluster in ``state_dir`` on 127.0.0.1:port (initdb on first use) and wait for it.

    An existing cluster in ``state_dir/data`` is started again with its password file; its data
    is kept. Returns the Service to record: ``address`` is the superuser's URL of the admin
    database *without* the password, ``pid``/``argv`` the postmaster's, ``password_file`` and
    ``data_dir`` set. Raises ToolMissingError (2) when the programs are missing,
    ServiceUnavailableError (3) with the log's tail when the server does not come up.
    """
    bindir, user = preflight(state_dir)
    prefix = _as_user_prefix(user)
    layout = _Layout(state_dir.absolute())
    _prepare(layout, user)
    if not (layout.data / "PG_VERSION").is_file():
        _initdb(layout, bindir, user, timeout)
    elif not layout.password.is_file():
        raise InfraError(
            f"{layout.data} holds a cluster but {layout.password} is missing; "
            "remove the data directory to start over",
            2,
        )
    password = read_password(layout.password)
    argv = [
        *prefix,
        str(bindir / "pg_ctl"),
        "start",
        "--pgdata",
        str(layout.data),
        "--log",
        str(layout.log),
        "--options",
        _server_options(port),
        "--wait",
        "--timeout",
        str(max(1, int(timeout))),
    ]
    _run(argv, layout.log, "pg_ctl start", timeout + 10)
    pid = _postmaster_pid(layout.data)
    server_argv = processes.cmdline(pid) if pid else None
    if pid is None or not server_argv:
        raise ServiceUnavailableError(
            f"postgres: no running postmaster after pg_ctl start; see {layout.log}:\n"
            f"{processes.tail(layout.log)}"
        )
    service = Service(
        kind="postgres",
        address=url(port),
        port=port,
        pid=pid,
        argv=server_argv,
        log=str(layout.log),
        password_file=str(layout.password),
        data_dir=str(layout.data),
    )
    admin = url(port, password=password)

    def check() -> str | None:
        if not processes.is_alive(pid):
            raise ServiceUnavailableError(
                f"postgres exited at start; see {layout.log}:\n{processes.tail(layout.log)}"
            )
        return probe(admin)

    try:
        processes.wait_until(check, timeout, f"postgres at 127.0.0.1:{port}", 0.2)
    except BaseException as exc:
        # Started but unusable: stop it, so that no cluster runs that nobody recorded.
        with contextlib.suppress(InfraError):
            stop(service)
        if isinstance(exc, ServiceUnavailableError) and "did not answer" in str(exc):
            raise ServiceUnavailableError(
                f"{exc}; see {layout.log}:\n{processes.tail(layout.log)}"
            ) from exc
        raise
    return service


def is_running(service: Service) -> bool:
    """True if the postmaster we started is still alive (it may not answer yet)."""
    return processes.is_running(service.pid, service.argv)


def stop(service: Service, timeout: float = 10.0) -> bool:
    """Stop the cluster we started (pg_ctl stop -m fast); False, touching nothing, if its PID is
    gone, runs something else, or is not the PID in the data directory's postmaster.pid.

    Fast shutdown rolls back open transactions and checkpoints; the data directory stays.
    Should pg_ctl fail, the postmaster's process group gets SIGTERM, then SIGKILL.
    """
    if not is_running(service) or service.data_dir is None:
        return False
    data = Path(service.data_dir)
    if _postmaster_pid(data) != service.pid:
        return False  # the data directory is run by another postmaster now: not ours
    argv = [
        *_as_user_prefix(run_as_user()),
        str(find_bindir_for(service)),
        "stop",
        "--pgdata",
        str(data),
        "--mode",
        "fast",
        "--wait",
        "--timeout",
        str(max(1, int(timeout))),
    ]
    log = Path(service.log) if service.log else Path(os.devnull)
    with contextlib.suppress(InfraError):
        _run(argv, log, "pg_ctl stop", timeout + 10)
    pid = service.pid
    assert pid is not None
    with contextlib.suppress(ServiceUnavailableError):
        processes.wait_until(
            lambda: True if not processes.is_alive(pid) else None, 5.0, "postgres stop", 0.05
        )
        return True
    processes.stop(pid, service.argv, timeout)
    return True


def find_bindir_for(service: Service) -> Path:
    """pg_ctl of the binaries the postmaster runs (its argv names them), else find_bindir()'s."""
    for arg in service.argv:
        if Path(arg).name in ("postgres", "postmaster"):
            candidate = Path(arg).parent / "pg_ctl"
            if os.access(candidate, os.X_OK):
                return candidate
    return find_bindir() / "pg_ctl"


# --- talking to the server --------------------------------------------------------------------


def probe(conninfo: str, timeout: float = 2.0) -> str | None:
    """The server's version (``SHOW server_version``), or None if it does not answer."""
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=max(1, int(timeout))) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def _check_name(name: str) -> str:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: want [a-z_][a-z0-9_]*, at most 63 characters")
    return name


def create_database(admin_url: str, name: str, exist_ok: bool = False) -> None:
    """CREATE DATABASE name (owned by the admin URL's user); with exist_ok, an existing one is
    kept as it is. InfraError on any server error."""
    import psycopg
    from psycopg import sql

    _check_name(name)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            if (
                exist_ok
                and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            ):
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise InfraError(f"postgres: cannot create database {name}: {exc}".strip()) from exc


def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE IF EXISTS name WITH (FORCE): its open sessions are ended first."""
    import psycopg
    from psycopg import sql

    _check_name(name)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    except psycopg.Error as exc:
        raise InfraError(f"postgres: cannot drop database {name}: {exc}".strip()) from exc
