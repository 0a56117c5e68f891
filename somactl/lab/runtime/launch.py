"""The one start-up shape every launcher shares: spawn on a port, wait until ready, retry, stop.

Postgres, Redis, Prometheus and the exporters all come up the same way: spawn the server on a
candidate loopback port (recorded in the state file at once), poll a probe that also proves the
server on that port is ours, and if it is not ready in time stop the process we started (by pid)
and raise; if the port was taken meanwhile, do it all again on a fresh port. `Launch` holds what
a launcher was given (directory, state file, deadline, port choice) and `Launch.start` is that
shape; the launchers supply only the argv, the probe and what to call the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somactl.lab.runtime import procs
from somactl.lab.runtime.procs import LOOPBACK, ProcRecord, StateFile, StopOutcome

Probe = Callable[[ProcRecord, int], bool]


class RunningService:
    """`alive()` and `stop()` for an instance dataclass that carries its `record` and `state`."""

    record: ProcRecord
    state: StateFile

    def alive(self) -> bool:
        return procs.record_alive(self.record)

    def stop(self, timeout: float = 10.0) -> StopOutcome:
        """Stop the process we started (by pid and start time), forget it, remove its paths."""
        return procs.stop_recorded(self.state, self.record, timeout=timeout)


@dataclass(frozen=True)
class Launch:
    """One launcher's call: its directory and state file, its deadline and how to pick a port."""

    directory: Path
    state: StateFile
    began: float
    timeout: float
    port: int | None
    port_source: Callable[[], int]

    @classmethod
    def prepare(
        cls,
        directory: str | Path,
        state: StateFile | None,
        *,
        timeout: float,
        port: int | None,
        port_source: Callable[[], int],
    ) -> Launch:
        """Start the clock, create `directory` (resolved); the state file defaults to one in it."""
        began = time.monotonic()
        resolved = Path(directory).resolve()
        resolved.mkdir(parents=True, exist_ok=True)
        return cls(
            directory=resolved,
            state=state or StateFile(resolved / "state.json"),
            began=began,
            timeout=timeout,
            port=port,
            port_source=port_source,
        )

    def remaining(self) -> float:
        """What is left of the timeout, at least 1 s."""
        return max(1.0, self.timeout - (time.monotonic() - self.began))

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def start(
        self,
        name: str,
        argv: Callable[[int], Sequence[str]],
        probe: Probe,
        *,
        what: str,
        port_key: str,
        meta: Mapping[str, Any],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        run_as: str | None = None,
        stop_signal: str = "SIGTERM",
        cleanup: Sequence[str | Path] = (),
        keep_cleanup_on_retry: bool = False,
        log_context: int = 1,
    ) -> ProcRecord:
        """Start `argv(port)` as `name` and wait until `probe(record, port)`; the ready record.

        The log goes to the directory (also the working directory unless `cwd` is given); errors
        name the server as "<what> on 127.0.0.1:<port>". A failed attempt is stopped and dropped
        from the state file; with `keep_cleanup_on_retry` its cleanup paths stay (the next
        attempt reuses them, e.g. an initdb'd data directory). An explicit port is tried once;
        otherwise a port taken between allocation and bind moves the server to a fresh one.
        """

        def attempt(candidate: int) -> ProcRecord:
            record = procs.spawn(
                name,
                argv(candidate),
                log_dir=self.directory,
                state=self.state,
                ports={port_key: candidate},
                env=env,
                run_as=run_as,
                cwd=cwd if cwd is not None else self.directory,
                stop_signal=stop_signal,
                cleanup=cleanup,
                meta=meta,
            )
            try:
                procs.wait_ready(
                    record,
                    lambda: probe(record, candidate),
                    timeout=self.remaining(),
                    what=f"{what} on {LOOPBACK}:{candidate}",
                    port=candidate,
                    log_context=log_context,
                )
            except BaseException:
                if keep_cleanup_on_retry:
                    procs.stop(record)
                    self.state.remove(record)
                else:
                    procs.stop_recorded(self.state, record)
                raise
            return record

        return procs.with_port_retry(attempt, port=self.port, port_source=self.port_source)


def owned_http_status(record: ProcRecord, port: int, path: str) -> int | None:
    """HTTP status of GET `path` on our loopback `port`.

    None while `record`'s pid does not own the listening socket: a stranger on the port does not
    count.
    """
    if not procs.port_owned_by(record.pid, port):
        return None
    status, _ = procs.http_get(f"http://{LOOPBACK}:{port}{path}", timeout=1.0)
    return status
