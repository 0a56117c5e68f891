"""Start, watch and stop the lab's real backing services as detached processes.

Every process we start is recorded in a JSON state file together with the kernel's start time
of that pid (field 22 of /proc/<pid>/stat). Stopping goes by pid *and* start time, so a pid that
the kernel handed to some other process after ours died is never signalled. Nothing here stops a
process by name.

Only the standard library is imported at module level; psycopg/redis/httpx are imported inside
the functions that need them, so importing the lab runtime stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from somactl.core.errors import ConfigError, SomactlError
from somactl.core.exitcodes import ExitCode
from somactl.core.redact import redact

LOOPBACK = "127.0.0.1"
STATE_VERSION = 1

StopOutcome = Literal["stopped", "killed", "gone", "not-ours", "stuck"]

T = TypeVar("T")


# --------------------------------------------------------------------------------------- errors


class MissingBinaryError(ConfigError):
    """A service binary is not installed (exit 3: the machine is not set up for the lab)."""

    default_hint = "run scripts/install-deps.sh (as root) to install every lab dependency"


class StartError(SomactlError):
    """A service did not come up (exited, or not ready before its deadline)."""

    code = ExitCode.FAILED
    default_hint = "see the service's log file in the lab directory"


class PortInUseError(StartError):
    """The service exited because its port was taken between allocation and start."""

    def __init__(self, message: str, port: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.port = port


def which_or_hint(binary: str, debian_package: str, extra_dirs: Sequence[str | Path] = ()) -> str:
    """Return the absolute path of `binary`, or raise one line naming the package to install."""
    if os.sep in binary:
        if os.access(binary, os.X_OK) and Path(binary).is_file():
            return binary
    else:
        found = shutil.which(binary)
        if found:
            return found
        for directory in extra_dirs:
            candidate = Path(directory) / binary
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise MissingBinaryError(
        f"{Path(binary).name} not found: install the Debian package {debian_package} "
        f"(apt-get install -y {debian_package})",
        hint=f"apt-get install -y {debian_package}   (or scripts/install-deps.sh for everything)",
    )


# ---------------------------------------------------------------------------------------- ports

_ports_lock = threading.Lock()
_recent_ports: dict[int, float] = {}
_RECENT_PORT_TTL = 120.0


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free on `host` a moment ago (bind port 0).

    Ports handed out in the last two minutes by this process are never handed out again, so
    components allocated in parallel do not collide with each other. Another process can still
    take the port before the service binds it: launchers retry with `with_port_retry`.
    """
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        now = time.monotonic()
        with _ports_lock:
            for old, at in list(_recent_ports.items()):
                if now - at > _RECENT_PORT_TTL:
                    del _recent_ports[old]
            if port in _recent_ports:
                continue
            _recent_ports[port] = now
        return port
    raise StartError("could not allocate a free loopback port after 64 attempts")


def with_port_retry(
    start: Callable[[int], T],
    *,
    port: int | None = None,
    port_source: Callable[[], int] = free_port,
    attempts: int = 4,
) -> T:
    """Call `start(port)`; if the port was taken meanwhile, retry with a fresh one.

    An explicit `port` is used once (the caller asked for it; taking another would surprise).
    """
    if port is not None:
        return start(port)
    tried: list[int] = []
    for _ in range(attempts):
        candidate = port_source()
        try:
            return start(candidate)
        except PortInUseError as exc:
            tried.append(exc.port)
    raise StartError(
        f"every port tried was taken by another process ({', '.join(map(str, tried))})",
        hint="something on this machine is grabbing loopback ports; retry",
    )


def _listening_inodes(port: int) -> set[int]:
    """Inodes of sockets in LISTEN state on `port` (any address), from /proc/net/tcp{,6}."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "0A":  # 0A = TCP_LISTEN
                continue
            local_port = int(parts[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(int(parts[9]))
    return inodes


def port_listening(port: int) -> bool:
    """True if any socket on this machine (network namespace) listens on `port`."""
    return bool(_listening_inodes(port))


def port_owned_by(pid: int, port: int) -> bool:
    """True if the listening socket on `port` belongs to process `pid` (not some stranger)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{fd}") in wanted:
                return True
    return False


def can_connect(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class ProcStat:
    state: str
    ppid: int
    pgid: int
    start_ticks: int


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(state=rest[0], ppid=int(rest[1]), pgid=int(rest[2]), start_ticks=int(rest[19]))


def start_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat.start_ticks


@dataclass
class ProcRecord:
    """One process we started, as written to the state file."""

    name: str
    pid: int
    start_ticks: int
    command: list[str]
    ports: dict[str, int]
    started_at: str
    log: str
    stop_signal: str = "SIGTERM"
    cleanup: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            command=[str(x) for x in data.get("command", [])],
            ports={str(k): int(v) for k, v in dict(data.get("ports", {})).items()},
            started_at=str(data.get("started_at", "")),
            log=str(data.get("log", "")),
            stop_signal=str(data.get("stop_signal", "SIGTERM")),
            cleanup=[str(x) for x in data.get("cleanup", [])],
            meta=dict(data.get("meta", {})),
        )


# Popen objects of the children this Python process started, so that they are reaped (a dead,
# unreaped child is a zombie that still has a /proc entry and would look alive).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def _reap(pid: int) -> None:
    with _children_lock:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]


def is_alive(pid: int, expected_start_ticks: int) -> bool:
    """True if `pid` runs and is the very process that had `expected_start_ticks`."""
    _reap(pid)
    stat = proc_stat(pid)
    return (
        stat is not None
        and stat.state not in ("Z", "X", "x")
        and stat.start_ticks == expected_start_ticks
    )


def record_alive(record: ProcRecord) -> bool:
    return is_alive(record.pid, record.start_ticks)


def _live_pids(match: Callable[[ProcStat], bool]) -> list[int]:
    """Live pids (not zombies) whose /proc/<pid>/stat satisfies `match`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is not None and match(stat) and stat.state not in ("Z", "X", "x"):
            pids.append(int(entry))
    return pids


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid` (for 'nothing left behind' checks)."""
    return _live_pids(lambda stat: stat.pgid == pgid)


def children_of(pid: int) -> list[int]:
    """Live direct children of `pid`."""
    return _live_pids(lambda stat: stat.ppid == pid)


def run_as_kwargs(user: str | None) -> dict[str, Any]:
    """subprocess keyword arguments to run a child as `user` (uid, primary gid, no extra groups)."""
    if user is None:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"OS user {user!r} does not exist (needed to run the service as non-root)",
            hint="apt-get install -y postgresql creates it; or run the lab as a non-root user",
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    state: StateFile,
    ports: Mapping[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    run_as: str | None = None,
    cwd: Path | None = None,
    stop_signal: str = "SIGTERM",
    cleanup: Sequence[str | Path] = (),
    meta: Mapping[str, Any] | None = None,
) -> ProcRecord:
    """Start `argv` detached in its own session/process group; log to `<log_dir>/<name>.log`.

    The record is written to the state file before this returns, so even a half-started set
    can be stopped from the state file alone. `env` entries are added to our environment (they
    are how secrets reach a child: never argv, which every user can read in /proc).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    child_env = dict(os.environ)
    if env:
        child_env.update(env)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=child_env,
            cwd=str(cwd) if cwd is not None else None,
            **run_as_kwargs(run_as),
        )
    with _children_lock:
        _children[proc.pid] = proc
    ticks = start_ticks(proc.pid)
    record = ProcRecord(
        name=name,
        pid=proc.pid,
        # The child is unreaped until we poll it, so /proc/<pid> exists even if it already died.
        start_ticks=ticks if ticks is not None else -1,
        command=list(argv),
        ports=dict(ports or {}),
        started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        log=str(log_path),
        stop_signal=stop_signal,
        cleanup=[str(p) for p in cleanup],
        meta=dict(meta or {}),
    )
    state.add(record)
    return record


def log_tail(path: str | Path, max_bytes: int = 4096) -> str:
    """The end of a log file, redacted."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return redact(data)


_ADDR_IN_USE = re.compile(r"address already in use", re.IGNORECASE)


_PROBLEM = re.compile(r"\b(FATAL|PANIC|ERROR|error|fatal|panic)\b")


_TIMESTAMP_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:.]+\s*(?:[A-Z]{2,5}\s*)?(?:\[\d+\]\s*)?")


def _telling_line(text: str, context: int = 1) -> str:
    """The first error-looking line of a log tail (else its last line), for a one-line error.

    `context` > 1 also takes the lines just before it (Postgres logs the reason for a FATAL on
    the LOG line before it).
    """
    lines = [_TIMESTAMP_PREFIX.sub("", line.strip()) for line in text.splitlines() if line.strip()]
    if not lines:
        return "(empty log)"
    index = next((i for i, line in enumerate(lines) if _PROBLEM.search(line)), len(lines) - 1)
    return " / ".join(line[:240] for line in lines[max(0, index - context + 1) : index + 1])


def wait_ready(
    record: ProcRecord,
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    port: int | None = None,
    log_context: int = 1,
) -> float:
    """Poll `probe` until it returns True; seconds taken. Fails fast if the process exits.

    If the process exited and its log says the address was in use, raise PortInUseError so the
    launcher can retry on another port. Probe exceptions count as "not ready yet".
    """
    started = time.monotonic()
    deadline = started + timeout
    interval = 0.02
    while True:
        if not record_alive(record):
            tail = log_tail(record.log)
            if port is not None and _ADDR_IN_USE.search(tail):
                raise PortInUseError(
                    f"{what}: port {port} was taken before it could bind", port=port
                )
            raise StartError(
                f"{what} exited during start-up: {_telling_line(tail, log_context)}",
                hint=f"see {record.log}",
            )
        try:
            if probe():
                return time.monotonic() - started
        except (ImportError, NameError, AttributeError, TypeError):
            raise  # a bug or a broken install, not a server that is still starting
        except Exception:  # noqa: BLE001, S110  # any other probe failure means "not ready yet"
            pass
        if time.monotonic() >= deadline:
            raise StartError(
                f"{what} not ready within {timeout:g}s (pid {record.pid})",
                hint=f"see {record.log}",
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 0.25)


def wait_exit(record: ProcRecord, timeout: float) -> bool:
    """Wait until the recorded process is gone; True if it went within `timeout`."""
    deadline = time.monotonic() + timeout
    interval = 0.01
    while record_alive(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)
    return True


def stop(record: ProcRecord, *, timeout: float = 10.0, kill_timeout: float = 5.0) -> StopOutcome:
    """Stop one recorded process: its stop signal, wait, then SIGKILL. Never a stranger.

    Returns "gone" (already dead), "not-ours" (the pid now belongs to another process: left
    alone), "stopped", "killed" (needed SIGKILL) or "stuck" (survived SIGKILL: should not
    happen).
    """
    stat = proc_stat(record.pid)
    if stat is None or stat.state in ("Z", "X", "x"):
        _reap(record.pid)
        return "gone"
    if stat.start_ticks != record.start_ticks:
        return "not-ours"
    signum = signal.Signals[record.stop_signal]
    try:
        os.kill(record.pid, signum)
    except ProcessLookupError:
        _reap(record.pid)
        return "gone"
    if wait_exit(record, timeout):
        return "stopped"
    # Escalate. Re-check identity right before each signal.
    if record_alive(record):
        stat = proc_stat(record.pid)
        with contextlib.suppress(ProcessLookupError):
            if stat is not None and stat.pgid == record.pid:
                # Our process is still alive and leads its own group (start_new_session), so
                # the group is ours too.
                os.killpg(record.pid, signal.SIGKILL)
            else:
                os.kill(record.pid, signal.SIGKILL)
    return "killed" if wait_exit(record, kill_timeout) else "stuck"


def remove_paths(paths: Sequence[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------ the state


_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _thread_lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _file_locks_guard:
        return _file_locks.setdefault(key, threading.Lock())


class StateFile:
    """The JSON record of every process the lab started (thread- and process-safe updates)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with _thread_lock_for(self.path):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _read(self) -> list[ProcRecord]:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return []
        if not raw.strip():
            return []
        try:
            data = json.loads(raw)
            return [ProcRecord.from_json(item) for item in data.get("processes", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"lab state file {self.path} is not valid JSON state ({type(exc).__name__})",
                hint="stop leftover processes by hand (see the *.log files next to it), "
                "then delete the file",
            ) from None

    def _write(self, records: Sequence[ProcRecord]) -> None:
        payload = {"version": STATE_VERSION, "processes": [asdict(r) for r in records]}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)

    def records(self) -> list[ProcRecord]:
        with self._locked():
            return self._read()

    def add(self, record: ProcRecord) -> None:
        with self._locked():
            records = self._read()
            records.append(record)
            self._write(records)

    def remove(self, record: ProcRecord) -> None:
        with self._locked():
            records = [
                r
                for r in self._read()
                if not (r.pid == record.pid and r.start_ticks == record.start_ticks)
            ]
            self._write(records)


def stop_recorded(state: StateFile, record: ProcRecord, *, timeout: float = 10.0) -> StopOutcome:
    """Stop one recorded process, forget it and remove its cleanup paths once it is gone."""
    outcome = stop(record, timeout=timeout)
    if outcome != "stuck":
        state.remove(record)
        remove_paths(record.cleanup)
    return outcome


def stop_state(state: StateFile, *, timeout: float = 10.0) -> dict[str, StopOutcome]:
    """Stop everything a state file records, newest first. Returns name -> outcome."""
    outcomes: dict[str, StopOutcome] = {}
    for record in reversed(state.records()):
        key = record.name if record.name not in outcomes else f"{record.name}#{record.pid}"
        outcomes[key] = stop_recorded(state, record, timeout=timeout)
    return outcomes


# ------------------------------------------------------------------------------------------ http


def http_get(url: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """GET on loopback, ignoring proxy environment variables; (status, body)."""
    import httpx

    with httpx.Client(trust_env=False, timeout=timeout) as client:
        response = client.get(url)
        return response.status_code, response.text


def http_post(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    import httpx

    with httpx.Client(trust_env=False, timeout=timeout) as client:
        response = client.post(url)
        return response.status_code, response.text


def write_private(path: Path, content: str, *, owner_uid: int | None = None) -> None:
    """Write a 0600 file (created with that mode: never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    if owner_uid is not None:
        entry = pwd.getpwuid(owner_uid)
        os.chown(path, entry.pw_uid, entry.pw_gid)
