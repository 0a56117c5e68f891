"""somactl: the on-call CLI for the SomaGent incident-response runbook."""

__version__ = "0.1.0"
