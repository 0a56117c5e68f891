"""A real, throw-away PostgreSQL for the lab and the tests.

initdb into a directory, loopback only, a free port, `pg_stat_statements` preloaded, a small
`max_connections` (the db-pool-exhaustion scenario fills it), and the roles the runbook's
commands need:

* `postgres`  superuser: password over TCP; trust only on the private unix socket in the data
  directory (mode 0700), which only its OS owner (and root) can reach;
* `somagent`  the application: owns the `somagent` database and its `public` schema;
* `exporter`  member of `pg_monitor`, for prometheus-postgres-exporter;
* `oncall`    `pg_signal_backend` + `pg_read_all_stats`, what `somactl mitigate kill-queries` needs.

Passwords are generated per instance, written to 0600 files in the instance directory and
registered with `somactl.core.redact`; they never reach argv, logs or pg_stat_statements (roles
are created from SCRAM verifiers computed here, with utility tracking off).

Postgres refuses to run as root: as root, initdb and postgres run as the `postgres` OS user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import re
import secrets
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from somactl.core.redact import register_secret
from somactl.lab.runtime import procs
from somactl.lab.runtime.launch import Launch, RunningService
from somactl.lab.runtime.procs import (
    LOOPBACK,
    MissingBinaryError,
    ProcRecord,
    StartError,
    StateFile,
    StopOutcome,
)

SUPERUSER = "postgres"
APP_ROLE = "somagent"
MONITOR_ROLE = "exporter"
ONCALL_ROLE = "oncall"
APP_DB = "somagent"
DEFAULT_MAX_CONNECTIONS = 40
_SOCKET_PATH_MAX = 107  # sizeof(sun_path) - 1
_PG_LIB_ROOT = Path("/usr/lib/postgresql")


def find_bindir(explicit: str | Path | None = None) -> Path:
    """The bin directory of the newest installed PostgreSQL (Debian layout first, then PATH)."""
    if explicit is not None:
        bindir = Path(explicit)
        if (bindir / "postgres").is_file():
            return bindir
        raise MissingBinaryError(
            f"no postgres binary in {bindir}: install the Debian package postgresql "
            "(apt-get install -y postgresql)"
        )
    versions: list[tuple[tuple[int, ...], Path]] = []
    if _PG_LIB_ROOT.is_dir():
        for entry in _PG_LIB_ROOT.iterdir():
            if (entry / "bin" / "postgres").is_file() and re.fullmatch(r"\d+(\.\d+)?", entry.name):
                versions.append((tuple(int(x) for x in entry.name.split(".")), entry / "bin"))
    if versions:
        return max(versions)[1]
    found = procs.which_or_hint("postgres", "postgresql")
    return Path(found).resolve().parent


def _check_pg_stat_statements(bindir: Path) -> None:
    candidates = [bindir.parent / "lib" / "pg_stat_statements.so"]
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        out = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
        if out:
            candidates.append(Path(out) / "pg_stat_statements.so")
    if not any(path.is_file() for path in candidates):
        raise MissingBinaryError(
            "pg_stat_statements not found: install the Debian package postgresql-contrib "
            "(apt-get install -y postgresql-contrib)"
        )


def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as Postgres stores it, so the password never reaches the server.

    Passwords generated here are ASCII, for which SASLprep is the identity.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _traversable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """True if `uid` can reach `path` (search permission on every ancestor)."""
    for ancestor in [path, *path.parents]:
        try:
            st = ancestor.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in gids:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def _os_user_ids(user: str) -> tuple[int, int, set[int]]:
    import grp

    entry = pwd.getpwnam(user)
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    return entry.pw_uid, entry.pw_gid, gids


@dataclass(frozen=True)
class PostgresInstance(RunningService):
    """A running instance. DSNs carry passwords: this object's repr never shows them."""

    host: str
    port: int
    pid: int
    data_dir: Path
    socket_dir: Path | None
    instance_dir: Path
    record: ProcRecord = field(repr=False)
    state: StateFile = field(repr=False)
    passwords: Mapping[str, str] = field(repr=False)
    timings: Mapping[str, float] = field(default_factory=dict)

    dbname: str = APP_DB
    superuser: str = SUPERUSER
    app_user: str = APP_ROLE
    monitor_user: str = MONITOR_ROLE
    oncall_user: str = ONCALL_ROLE

    def dsn(self, user: str | None = None, dbname: str | None = None) -> str:
        """A libpq URI for `user` (default: the superuser) on `dbname` (default: somagent)."""
        who = user or self.superuser
        return (
            f"postgresql://{who}:{self.passwords[who]}@{self.host}:{self.port}/"
            f"{dbname or self.dbname}"
        )

    @property
    def superuser_dsn(self) -> str:
        return self.dsn(self.superuser)

    @property
    def app_dsn(self) -> str:
        return self.dsn(self.app_user)

    @property
    def oncall_dsn(self) -> str:
        return self.dsn(self.oncall_user)

    @property
    def monitor_dsn(self) -> str:
        return self.dsn(self.monitor_user)

    def password_file(self, user: str) -> Path:
        """The 0600 file holding `user`'s password (what somactl's settings should point at)."""
        return self.instance_dir / "secrets" / f"{user}.password"

    def safe_dsn(self, user: str | None = None, dbname: str | None = None) -> str:
        """user@host:port/db, for messages."""
        return f"{user or self.superuser}@{self.host}:{self.port}/{dbname or self.dbname}"

    def stop(self, timeout: float = 15.0) -> StopOutcome:
        return super().stop(timeout)


def _config_block(
    *,
    max_connections: int,
    socket_dir: Path | None,
    settings: Mapping[str, str | int],
) -> str:
    values: dict[str, str | int] = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{socket_dir}'" if socket_dir is not None else "''",
        "unix_socket_permissions": "0700",
        "max_connections": max_connections,
        "superuser_reserved_connections": 3,
        "shared_preload_libraries": "'pg_stat_statements'",
        "pg_stat_statements.track": "all",
        "password_encryption": "'scram-sha-256'",
        "shared_buffers": "'16MB'",
        # The lab's data is throw-away: trade durability for a fast cold start.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "log_statement": "'none'",
        "log_min_duration_statement": -1,
        "dynamic_shared_memory_type": "posix",
        "track_activity_query_size": 2048,
    }
    values.update(settings)
    lines = ["", "# --- somactl lab (generated) ---"]
    lines += [f"{key} = {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


_HBA = """\
# somactl lab (generated): loopback only.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 trust
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
"""


def start_postgres(
    directory: str | Path,
    *,
    state: StateFile | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    settings: Mapping[str, str | int] | None = None,
    bindir: str | Path | None = None,
    port: int | None = None,
    port_source: Callable[[], int] = procs.free_port,
    timeout: float = 30.0,
    name: str = "postgres",
) -> PostgresInstance:
    """initdb into `directory`, start Postgres on a free loopback port, create the roles."""
    run = Launch.prepare(directory, state, timeout=timeout, port=port, port_source=port_source)
    instance_dir = run.directory
    bin_path = find_bindir(bindir)
    _check_pg_stat_statements(bin_path)

    run_as = SUPERUSER if os.geteuid() == 0 else None
    cleanup: list[str] = []
    base = instance_dir / "pg"
    if run_as is not None:
        uid, gid, gids = _os_user_ids(run_as)
        if not _traversable_by(instance_dir, uid, gids):
            # e.g. pytest's 0700 tmp dirs: the postgres user could not reach a data dir there.
            base = Path(tempfile.mkdtemp(prefix="somactl-pg-"))
            cleanup.append(str(base))
            (instance_dir / "pg-data-location").write_text(f"{base}\n")
        base.mkdir(mode=0o700, exist_ok=True)
        os.chown(base, uid, gid)
    else:
        uid = os.geteuid()
        base.mkdir(mode=0o700, exist_ok=True)
    if (base / "data").exists():
        raise StartError(
            f"{base / 'data'} already exists: refusing to reuse another instance's data",
            hint="give each instance a fresh directory",
        )

    passwords = {
        role: secrets.token_urlsafe(24) for role in (SUPERUSER, APP_ROLE, MONITOR_ROLE, ONCALL_ROLE)
    }
    for role, password in passwords.items():
        register_secret(password)
        procs.write_private(instance_dir / "secrets" / f"{role}.password", password + "\n")

    try:
        return _init_and_start(
            run,
            base=base,
            bin_path=bin_path,
            run_as=run_as,
            uid=uid,
            cleanup=cleanup,
            passwords=passwords,
            max_connections=max_connections,
            settings=settings or {},
            name=name,
        )
    except BaseException:
        # A data directory outside the instance dir must not outlive a failed start.
        procs.remove_paths(cleanup)
        raise


def _init_and_start(
    run: Launch,
    *,
    base: Path,
    bin_path: Path,
    run_as: str | None,
    uid: int,
    cleanup: list[str],
    passwords: Mapping[str, str],
    max_connections: int,
    settings: Mapping[str, str | int],
    name: str,
) -> PostgresInstance:
    instance_dir, state = run.directory, run.state
    data_dir = base / "data"
    timings: dict[str, float] = {}
    mark = time.monotonic()
    _initdb(bin_path, base, data_dir, passwords[SUPERUSER], run_as, uid, instance_dir, run.timeout)
    timings["initdb"] = time.monotonic() - mark

    socket_dir: Path | None = data_dir
    if len(str(data_dir / ".s.PGSQL.65535")) > _SOCKET_PATH_MAX:
        socket_dir = None  # path too long for a unix socket: TCP only
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write(
            _config_block(max_connections=max_connections, socket_dir=socket_dir, settings=settings)
        )
    (data_dir / "pg_hba.conf").write_text(_HBA)

    superuser_password = passwords[SUPERUSER]

    mark = time.monotonic()
    record = run.start(
        name,
        lambda candidate: [str(bin_path / "postgres"), "-D", str(data_dir), "-p", str(candidate)],
        lambda _record, candidate: _ready(candidate, superuser_password, data_dir),
        what="postgres",
        port_key="postgres",
        meta={"data_dir": str(data_dir), "kind": "postgres"},
        cwd=base,
        run_as=run_as,
        # SIGINT = fast shutdown (SIGTERM would wait for every client to leave).
        stop_signal="SIGINT",
        cleanup=cleanup,
        # A failed attempt keeps the data dir (cleanup paths) for the retry.
        keep_cleanup_on_retry=True,
        log_context=2,
    )
    timings["start"] = time.monotonic() - mark
    actual_port = record.ports["postgres"]

    mark = time.monotonic()
    try:
        _create_roles(actual_port, passwords)
    except BaseException:
        procs.stop_recorded(state, record)
        raise
    timings["setup"] = time.monotonic() - mark
    timings["total"] = run.elapsed()

    return PostgresInstance(
        host=LOOPBACK,
        port=actual_port,
        pid=record.pid,
        data_dir=data_dir,
        socket_dir=socket_dir,
        instance_dir=instance_dir,
        record=record,
        state=state,
        passwords=dict(passwords),
        timings=timings,
    )


def _initdb(
    bin_path: Path,
    base: Path,
    data_dir: Path,
    superuser_password: str,
    run_as: str | None,
    uid: int,
    instance_dir: Path,
    timeout: float,
) -> None:
    pwfile = base / ".initdb-password"
    procs.write_private(pwfile, superuser_password + "\n", owner_uid=uid if run_as else None)
    log_path = instance_dir / "initdb.log"
    argv = [
        str(bin_path / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        f"--pwfile={pwfile}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    try:
        with open(log_path, "wb") as log:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(base),
                timeout=timeout,
                check=False,
                **procs.run_as_kwargs(run_as),
            )
    except subprocess.TimeoutExpired:
        raise StartError(
            f"initdb did not finish within {timeout:g}s", hint=f"see {log_path}"
        ) from None
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        tail = procs.log_tail(log_path).strip().splitlines()
        raise StartError(
            f"initdb failed (exit {result.returncode}): {tail[-1] if tail else 'no output'}",
            hint=f"see {log_path}",
        )


def _ready(port: int, password: str, data_dir: Path) -> bool:
    import psycopg

    with psycopg.connect(
        host=LOOPBACK,
        port=port,
        user=SUPERUSER,
        password=password,
        dbname="postgres",
        connect_timeout=2,
        autocommit=True,
    ) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    # The data directory proves this is our server, not a stranger that got the port.
    return row is not None and Path(str(row[0])) == data_dir


def _create_roles(port: int, passwords: Mapping[str, str]) -> None:
    import psycopg
    from psycopg import sql

    def connect(dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(
            host=LOOPBACK,
            port=port,
            user=SUPERUSER,
            password=passwords[SUPERUSER],
            dbname=dbname,
            connect_timeout=5,
            autocommit=True,
        )
        # Role DDL carries (hashed) passwords: keep it out of pg_stat_statements and the log.
        conn.execute("SET pg_stat_statements.track_utility = off")
        conn.execute("SET log_statement = 'none'")
        return conn

    with connect("postgres") as conn:
        for role in (APP_ROLE, MONITOR_ROLE, ONCALL_ROLE):
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(scram_verifier(passwords[role]))
                )
            )
        conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(MONITOR_ROLE)))
        conn.execute(
            sql.SQL("GRANT pg_signal_backend, pg_read_all_stats TO {}").format(
                sql.Identifier(ONCALL_ROLE)
            )
        )
    # The extension goes into template1 so every database created later has it too.
    with connect("template1") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with connect("postgres") as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_ROLE)
            )
        )
    with connect(APP_DB) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(APP_ROLE)))
