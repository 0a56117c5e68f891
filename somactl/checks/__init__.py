"""Read-only diagnosis. Each check: inputs -> CheckResult(status, summary, evidence, duration)."""
