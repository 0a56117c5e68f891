"""What `somactl diagnose` costs beyond its slowest check, against the whole lab.

    .venv/bin/python -m bench.diagnose              # 7 rounds, prints ratios (never gates)
    .venv/bin/python -m bench.diagnose --rounds 3 --json out.json

Starts a throw-away lab (`somactl.lab.stack`, real Postgres/Redis/Prometheus, the simulated
Kubernetes API and the stand-ins) in a temp dir, and measures, each case right after its own
`python -c pass` (R), as paired ratios:

- overhead: run wall - min(deadline, slowest check), in the process (the orchestration: threads,
  the verdict, the timeline); budget 5 x R. Also shown for information: the start-up before the
  checks (Python, Typer, runbooks.yaml, settings) and the whole process wall minus the slowest
  check;
- a blackholed Postgres and a dripping Kubernetes API (the fault proxy of tests/helpers): the
  process ends within --timeout + 0.2 s;
- 5,000 pods of the diagnosed service (on a simulated API server of their own, since the lab's
  is busy serving its stand-ins): within 3 s, peak RSS under 250 MB;
- `diagnose --help`: no backend library imported (a gate, not a timing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REF, _time_argv, imported_modules

BACKENDS = {"kubernetes", "psycopg", "redis", "httpx", "requests", "prometheus_api_client"}
NAMESPACE = "somagent-production"


def run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """(wall seconds, exit code, peak RSS in KiB, stdout) of `python -m somactl argv`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "somactl", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, proc.returncode, usage.ru_maxrss, out


def wait_healthy(env: dict[str, str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, rc, _, _ = run(["-o", "json", "diagnose", "gateway-api"], env)
        if rc == 0:
            return
        time.sleep(2)
    raise SystemExit("the lab did not become healthy (diagnose gateway-api != 0)")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def serve_5k(kubeconfig: str) -> int:
    """A simulated API server whose gateway-api has 5,000 pods; "ready" on stdout; SIGTERM."""
    import signal

    from somactl.lab.kube import Cluster, KubeSimulator, write_kubeconfig
    from somactl.lab.kube.seed import scale, seed

    cluster = Cluster()
    seed(cluster, end_at=time.time() - 600)
    scale(cluster, NAMESPACE, "gateway-api", 5000)
    cluster.tick(20)
    sim = KubeSimulator(cluster).start()
    write_kubeconfig(Path(kubeconfig), sim.url, NAMESPACE)
    signal.signal(signal.SIGTERM, lambda *_: None)
    print("ready", flush=True)
    signal.pause()
    sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--serve-5k", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if args.serve_5k:
        return serve_5k(args.serve_5k)
    from somactl.lab import stack
    from tests.helpers.faultproxy import FaultProxy

    root = Path(tempfile.mkdtemp(prefix="somactl-bench-diagnose-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOMACTL_", "PG", "KUBE"))}
    env.update(
        SOMACTL_CONFIG=str(root / "config.yaml"),
        SOMACTL_STATE_DIR=str(root / "state"),
        KUBECACHEDIR=str(root / "kubecache"),
        HOME=str(root / "home"),
        NO_COLOR="1",
    )
    (root / "home").mkdir()
    lab_dir = root / "state" / "lab"
    print(f"starting the lab in {lab_dir} ...", flush=True)
    stack.up(lab_dir, env=env, tools_port=0)
    figures: dict[str, Any] = {}
    try:
        info = stack.load(lab_dir)
        wait_healthy(env)

        # -- import gate ------------------------------------------------------------------------
        loaded = {
            m.split(".")[0]
            for m in imported_modules(
                "import sys\nsys.argv=['somactl','diagnose','--help']\n"
                "from somactl.app import run\nrun(['diagnose','--help'])",
                env,
            )
        } & BACKENDS
        figures["diagnose --help backend imports"] = sorted(loaded)

        # -- overhead of a healthy diagnosis -----------------------------------------------------
        refs: list[float] = []
        inproc: list[float] = []
        after: list[float] = []
        startup: list[float] = []
        process: list[float] = []
        walls: list[float] = []
        for _ in range(args.rounds):
            ref = _time_argv(REF, {})
            wall, rc, _, out = run(["-o", "json", "diagnose", "gateway-api"], env)
            t = json.loads(out)["data"]["timing"]
            refs.append(ref)
            walls.append(wall / ref)
            slowest = min(t["deadline_seconds"], t["slowest_check_seconds"])
            inproc.append(t["overhead_seconds"] / ref)
            startup.append((t["since_process_start"] - t["run_seconds"]) / ref)
            after.append(max(0.0, wall - t["since_process_start"]) / ref)
            process.append((wall - slowest) / ref)
            assert rc == 0, f"healthy lab diagnosed with exit {rc}"
        figures["R ms"] = round(median(refs) * 1000, 1)
        figures["overhead in-process (run - slowest check) x R"] = round(median(inproc), 2)
        figures["render + exit after the run x R"] = round(median(after), 2)
        figures["start-up before the checks x R"] = round(median(startup), 2)
        figures["process wall - slowest check x R"] = round(median(process), 2)
        figures["process wall x R"] = round(median(walls), 2)

        # -- a blackholed database, a dripping Kubernetes API ------------------------------------
        pg = info.pg
        kube = info.kube_url.rsplit(":", 1)
        for name, proxy_to, mode, extra in (
            ("postgres blackholed", (pg["host"], int(pg["port"])), "blackhole", "pg"),
            ("kubernetes API dripping", (kube[0].split("//")[1], int(kube[1])), "drip", "kube"),
        ):
            with FaultProxy(proxy_to, mode=mode) as proxy:
                case_env = dict(env)
                if extra == "pg":
                    case_env["SOMACTL_PG_DSN"] = (
                        f"host=127.0.0.1 port={proxy.port} user=oncall dbname={pg['dbname']}"
                    )
                else:
                    from somactl.lab.kube import write_kubeconfig

                    kc = write_kubeconfig(root / "kc-drip", f"http://{proxy.address}", NAMESPACE)
                    case_env["SOMACTL_KUBECONFIG"] = str(kc)
                    case_env["SOMACTL_KUBE_CONTEXT"] = "lab"
                late: list[float] = []
                codes: set[int] = set()
                for _ in range(args.rounds):
                    ref = _time_argv(REF, {})
                    wall, rc, _, _ = run(
                        ["-o", "json", "--timeout", "2s", "diagnose", "gateway-api"], case_env
                    )
                    late.append((wall - 2.0) / ref)
                    codes.add(rc)
                    figures.setdefault(f"{name}: worst ms past the deadline", 0.0)
                    figures[f"{name}: worst ms past the deadline"] = max(
                        figures[f"{name}: worst ms past the deadline"],
                        round((wall - 2.0) * 1000, 1),
                    )
                figures[f"{name}: wall - deadline x R"] = round(median(late), 2)
                figures[f"{name}: exit codes"] = sorted(codes)

        # -- 5,000 pods ------------------------------------------------------------------------
        # A quiet simulated API server of its own, in a process of its own: the lab's simulator
        # also serves the stand-ins, which list the gateway's pods every second (at 5,000 pods
        # that load is the simulator's, not somactl's); and a big parent would inflate the
        # child's peak RSS (ru_maxrss counts the pages shared at fork).
        kc = root / "kc-5k"
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.diagnose", "--serve-5k", str(kc)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != b"ready":
                raise SystemExit("the 5,000-pod simulator did not start")
            big_env = {**env, "SOMACTL_KUBECONFIG": str(kc), "SOMACTL_KUBE_CONTEXT": "lab"}
            walls5k: list[float] = []
            rss: list[int] = []
            pods_seen = 0
            for _ in range(max(3, args.rounds)):
                wall, _rc, maxrss, out = run(["-o", "json", "diagnose", "gateway-api"], big_env)
                data = json.loads(out)["data"]
                pods = next(c for c in data["checks"] if c["id"] == "k8s.pods")
                pods_seen = pods["evidence"]["total"]
                walls5k.append(wall)
                rss.append(maxrss)
        finally:
            server.terminate()
            server.wait(timeout=30)
        figures["5,000 pods: pods listed"] = pods_seen
        figures["5,000 pods: wall s (median, budget 3)"] = round(median(walls5k), 2)
        figures["5,000 pods: wall s (max)"] = round(max(walls5k), 2)
        figures["5,000 pods: peak RSS MB (max, budget 250)"] = round(max(rss) / 1024, 1)
    finally:
        stack.down(lab_dir)

    print(f"\nsomactl diagnose against the lab ({args.rounds} rounds; medians of paired ratios)")
    budgets = {
        "overhead in-process (run - slowest check) x R": "<= 5",
        "postgres blackholed: worst ms past the deadline": "<= 200",
        "kubernetes API dripping: worst ms past the deadline": "<= 200",
        "5,000 pods: wall s (median, budget 3)": "<= 3",
        "5,000 pods: peak RSS MB (max, budget 250)": "<= 250",
        "diagnose --help backend imports": "none",
    }
    for key, value in figures.items():
        print(f"  {key:58} {value!s:>12}   {budgets.get(key, '')}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
