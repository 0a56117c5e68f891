"""Running the simulator as a foreground process (`somactl lab kube-api`)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from somactl.lab.kube.cluster import Cluster
from somactl.lab.kube.kubeconfig import write_kubeconfig
from somactl.lab.kube.seed import NAMESPACE, seed
from somactl.lab.kube.server import KubeSimulator


def lab_dir() -> Path:
    """$SOMACTL_STATE_DIR/lab, else $XDG_STATE_HOME/somactl/lab, else ~/.local/state/somactl/lab."""
    base = os.environ.get("SOMACTL_STATE_DIR")
    if base:
        return Path(base).expanduser() / "lab"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser() / "somactl" / "lab"


def build(port: int = 0, snapshot: Path | None = None) -> KubeSimulator:
    """A seeded simulator (restored from `snapshot` when that file exists)."""
    cluster = Cluster()
    if snapshot is None or not cluster.load(snapshot):
        seed(cluster)
    return KubeSimulator(cluster, port=port, snapshot=snapshot, seeder=seed)


def run_kube_api(
    *,
    port: int,
    kubeconfig: Path | None,
    snapshot: Path | None,
    tick: float,
    out: TextIO | None = None,
    ready: Callable[[KubeSimulator], None] | None = None,
) -> int:
    """Serve until SIGINT (exit 130) or SIGTERM (exit 0)."""
    out = out or sys.stdout
    kubeconfig = kubeconfig or lab_dir() / "kubeconfig"
    sim = build(port, snapshot).start()
    if tick > 0:
        sim.start_ticker(tick)
    write_kubeconfig(kubeconfig, sim.url, NAMESPACE)
    out.write(f"simulated Kubernetes API (v1.32) on {sim.url}\n")
    out.write(f"kubeconfig: {kubeconfig} (context lab, namespace {NAMESPACE})\n")
    out.write(f"export KUBECONFIG={kubeconfig}\n")
    out.flush()
    if ready is not None:
        ready(sim)
    done = threading.Event()
    code = [0]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        code[0] = 130 if signum == signal.SIGINT else 0
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sim.stop()
    out.write("stopped\n")
    out.flush()
    return code[0]
