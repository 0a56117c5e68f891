"""The only place that imports kubernetes, psycopg, redis, httpx and prometheus_api_client.

Thin adapters: explicit connect and read timeouts taken from the command's Deadline, library
retries switched off (their defaults spend 5-9 s against a dead backend), and library errors
translated into somactl errors whose text names the backend and never a secret.
"""
