"""A simulated Kubernetes API server that kubectl 1.32 and the official Python client accept.

Stdlib only. `KubeSimulator` serves a `Cluster` (store + controllers + time) over HTTP on
loopback; `seed` builds the SomaGent production namespace; `behaviors` decides how pods live and
fail. See shared/reference/kubernetes-simulator.md for the facts this follows.
"""

from __future__ import annotations

from somactl.lab.kube.behaviors import (
    BEHAVIOR_ANNOTATION,
    BEHAVIORS,
    MEMORY_ANNOTATION,
    Behavior,
    register_behavior,
    register_image_rule,
)
from somactl.lab.kube.clock import Clock
from somactl.lab.kube.cluster import Cluster
from somactl.lab.kube.errors import ApiError
from somactl.lab.kube.kubeconfig import write_kubeconfig
from somactl.lab.kube.server import KubeSimulator, LoggedRequest

__all__ = [
    "BEHAVIORS",
    "BEHAVIOR_ANNOTATION",
    "MEMORY_ANNOTATION",
    "ApiError",
    "Behavior",
    "Clock",
    "Cluster",
    "KubeSimulator",
    "LoggedRequest",
    "register_behavior",
    "register_image_rule",
    "write_kubeconfig",
]
