"""A kubeconfig that points kubectl and the Python client at the simulator."""

from __future__ import annotations

import os
from pathlib import Path

CLUSTER = "somactl-lab"
CONTEXT = "lab"
USER = "lab-admin"
# A dummy bearer token: the simulator accepts any (or none); kubectl only sends it over TLS.
TOKEN = "somactl-lab-not-a-secret"  # noqa: S105 (a placeholder; the lab has no auth)


def kubeconfig_text(server: str, namespace: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: {CLUSTER}
  cluster:
    server: {server}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CLUSTER}
    namespace: {namespace}
    user: {USER}
current-context: {CONTEXT}
users:
- name: {USER}
  user:
    token: {TOKEN}
preferences: {{}}
"""


def write_kubeconfig(path: Path, server: str, namespace: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(kubeconfig_text(server, namespace))
    os.replace(tmp, path)
    return path
