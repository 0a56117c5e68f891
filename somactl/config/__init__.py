"""Settings and contexts: the config file, SOMACTL_* environment, flags, secrets by reference."""
