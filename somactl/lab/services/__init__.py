"""The SomaGent services of `somactl lab`: HTTP stand-ins on 127.0.0.1.

* one metrics listener per service (gateway-api, orchestrator, kamachiq-service) whose
  `/metrics` follow the service's Deployment in the simulated Kubernetes API (metrics.py);
* the tools API of the runbook (`/tools/...`, tools.py);
* a GitHub REST API stand-in with real rate-limit shapes (github.py);
* `start_services()` / `python -m somactl.lab.services` to run them all (runner.py).

Every listener also serves `/_lab/...` controls for the lab's scenarios (see each module).
"""

from __future__ import annotations

from somactl.lab.services.runner import ServicesHandle, start_services

__all__ = ["ServicesHandle", "start_services"]
