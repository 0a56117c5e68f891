"""Scale check for the simulated Kubernetes API: 5,000 pods in one namespace.

Starts `somactl lab kube-api` as its own process, creates a 5,000-replica deployment in a fresh
namespace, lets the controllers settle, then times `kubectl get pods` (fresh discovery cache) and
the Python client's list_namespaced_pod, and reads the simulator's RSS from /proc.
Budgets (from the issue): each list < 2 s, simulator RSS < 300 MB. Prints ratios; never gates.

    .venv/bin/python bench/kube_scale.py [--pods 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
NS = "scale-test"
LIST_BUDGET_S = 2.0
RSS_BUDGET_MB = 300.0


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def call(url: str, method: str, path: str, body: object | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 (the simulator on http://127.0.0.1)
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 (loopback only)
        result: dict[str, object] = json.loads(resp.read())
        return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kube-scale-"))
    kubeconfig = tmp / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "somactl",
            "lab",
            "kube-api",
            "--kubeconfig",
            str(kubeconfig),
            "--tick",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SOMACTL_STATE_DIR": str(tmp / "state")},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        base_rss, _ = rss_mb(proc.pid)
        t0 = time.perf_counter()
        call(url, "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        call(
            url,
            "POST",
            f"/apis/apps/v1/namespaces/{NS}/deployments",
            {
                "metadata": {"name": "load"},
                "spec": {
                    "replicas": args.pods,
                    "selector": {"matchLabels": {"app": "load"}},
                    "template": {
                        "metadata": {"labels": {"app": "load"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "load:1.0",
                                    "resources": {"limits": {"memory": "128Mi"}},
                                }
                            ]
                        },
                    },
                },
            },
        )
        create_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        call(url, "POST", "/_sim/tick?seconds=5")
        settle_s = time.perf_counter() - t0
        state = call(url, "GET", "/_sim/state")
        counts = state["counts"]
        assert isinstance(counts, dict)
        rss, peak = rss_mb(proc.pid)

        kubectl_times = []
        rows = 0
        if shutil.which(KUBECTL) or os.path.exists(KUBECTL):
            for i in range(args.repeat):
                env = {
                    "PATH": os.environ["PATH"],
                    "HOME": str(tmp),
                    "KUBECONFIG": str(kubeconfig),
                    "KUBECACHEDIR": str(tmp / f"cache{i}"),
                }
                t0 = time.perf_counter()
                out = subprocess.run(
                    [KUBECTL, "get", "pods", "-n", NS, "--no-headers"],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                kubectl_times.append(time.perf_counter() - t0)
                rows = sum(1 for ln in out.splitlines() if " Running " in ln)

        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        py_times = []
        raw_times = []
        items = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            items = len(core.list_namespaced_pod(NS).items)
            py_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw = core.list_namespaced_pod(NS, _preload_content=False)
            json.loads(raw.data)
            raw_times.append(time.perf_counter() - t0)
        api.close()
        rss_after, peak_after = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    print(
        f"pods: {counts['core/pods']} (kubectl rows Running: {rows}, python items: {items}), "
        f"events: {counts['core/events']}"
    )
    print(
        f"create deployment: {create_s:.2f} s; controllers settle (5 s simulated): {settle_s:.2f} s"
    )
    if kubectl_times:
        k = med(kubectl_times)
        print(
            f"kubectl get pods (cold cache, {args.repeat} runs): median {k:.2f} s "
            f"= {k / LIST_BUDGET_S:.2f} x budget {LIST_BUDGET_S:.0f} s"
        )
    else:
        print("kubectl get pods: kubectl.1.32 not installed, skipped")
    p = med(py_times)
    print(
        f"python list_namespaced_pod (models): median {p:.2f} s = {p / LIST_BUDGET_S:.2f} x budget"
    )
    r = med(raw_times)
    print(
        f"python list_namespaced_pod (_preload_content=False + json): median {r:.2f} s "
        f"= {r / LIST_BUDGET_S:.2f} x budget"
    )
    print(
        f"simulator RSS: start {base_rss:.0f} MB, settled {rss:.0f} MB, after lists "
        f"{rss_after:.0f} MB, peak {max(peak, peak_after):.0f} MB "
        f"= {max(peak, peak_after) / RSS_BUDGET_MB:.2f} x budget {RSS_BUDGET_MB:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
