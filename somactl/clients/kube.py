"""Kubernetes: the official client for config, auth and transport; JSON dicts in and out.

Responses are parsed as plain dicts (no model deserialisation: 5,000 pods stay cheap), and every
call carries (connect, read) timeouts from the command's deadline with urllib3 retries off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from somactl.core.deadline import Deadline
from somactl.core.errors import (
    ActionFailedError,
    ConfigError,
    PermissionDeniedError,
    PreconditionError,
    SomactlError,
    UnreachableError,
)
from somactl.core.exitcodes import ExitCode
from somactl.core.netfail import network_problem
from somactl.core.redact import redact

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
# what kubectl get asks for: server-side printing, with the objects' metadata only
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


class NotFoundError(SomactlError):
    """The object does not exist (a missing target is a failed precondition of the command)."""

    code = ExitCode.PRECONDITION
    default_hint = "check the name and namespace (`somactl config show`)"


class ConflictError(PreconditionError):
    """409: the object changed since it was read (or already exists)."""


@dataclass(frozen=True)
class KubeTarget:
    kubeconfig: str | None
    context: str | None
    namespace: str


class KubeClient:
    """A connection to one cluster. `deadline` bounds every call."""

    def __init__(self, target: KubeTarget, deadline: Deadline) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.target = target
        self.deadline = deadline
        cfg = client.Configuration()
        try:
            config.load_kube_config(
                config_file=target.kubeconfig, context=target.context, client_configuration=cfg
            )
        except (ConfigException, OSError, TypeError, ValueError) as exc:
            where = target.kubeconfig or "~/.kube/config"
            raise ConfigError(
                f"kubernetes: cannot load kubeconfig {where}"
                + (f" (context {target.context})" if target.context else "")
                + f": {redact(str(exc))}",
                "check `somactl config show` (kube.kubeconfig, kube.context)",
            ) from None
        cfg.retries = 0  # the client's default retries take ~9 s against a dead API server
        self.host = cfg.host
        self._api = client.ApiClient(cfg)

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def _where(self) -> str:
        host = str(self.host)
        return urlsplit(host).netloc or host

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
        accept: str = "application/json",
    ) -> Any:
        """One API call; the parsed JSON answer (or text for logs)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        cap = timeout if timeout is not None else READ_TIMEOUT
        read = self.deadline.timeout(cap)
        # the wait to name: the command's --timeout when it is what cut the read short (not the
        # 2.6s that was left of 4.5s when the request started), else the per-read cap
        waited = f"{self.deadline.seconds:g}s" if read < cap else f"{read:g}s"
        connect = min(CONNECT_TIMEOUT, read)
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        try:
            resp = self._api.call_api(
                path,
                method,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=(connect, read),
            )
        except ApiException as exc:
            raise self._translate(exc, method, path) from None
        except HTTPError as exc:
            problem = network_problem(exc, waited)
            if problem.startswith("no response"):
                problem = f"no response within {waited} ({self._where()})"
            else:  # refused or reset: it failed at once, no timeout to name
                problem = f"{problem} ({self._where()})"
            raise UnreachableError(
                f"kubernetes: {problem}",
                "is the API server up? check kube.kubeconfig/kube.context in `somactl config show`",
            ) from None
        raw = resp[0].data if isinstance(resp, tuple) else resp.data
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if path.endswith("/log"):
            return text
        return json.loads(text) if text else None

    def _translate(self, exc: Any, method: str, path: str) -> SomactlError:
        status = int(getattr(exc, "status", 0) or 0)
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (TypeError, ValueError):
            message = str(exc.reason or "")
        message = redact(message or str(exc.reason or ""))
        if status in (401, 403):
            return PermissionDeniedError(
                f"kubernetes: {method} {path} denied ({status}): {message}",
                "use a context whose credentials have this permission",
            )
        if status == 404:
            return NotFoundError(f"kubernetes: {message or path + ' not found'}")
        if status == 409:
            return ConflictError(f"kubernetes: conflict: {message}")
        if status in (0, 502, 503, 504):
            return UnreachableError(f"kubernetes: {self._where()} answered {status}: {message}")
        return ActionFailedError(f"kubernetes: {method} {path} failed ({status}): {message}")

    # -- conveniences ------------------------------------------------------------------------

    def ns_path(self, group_version: str, resource: str, name: str | None = None) -> str:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{base}/namespaces/{self.namespace}/{resource}"
        return f"{path}/{name}" if name else path

    def get(self, group_version: str, resource: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.request("GET", self.ns_path(group_version, resource, name))
        return obj

    def list(
        self,
        group_version: str,
        resource: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """All items, following `continue`."""
        return list(
            self.iter_items(
                group_version,
                resource,
                label_selector=label_selector,
                field_selector=field_selector,
            )
        )

    def iter_items(
        self,
        group_version: str,
        resource: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every item, one page (`limit`) at a time: a caller that summarises each item as it
        comes never holds more than one page of raw objects (5,000 pods stay cheap)."""
        token: str | None = None
        while True:
            data = self.request(
                "GET",
                self.ns_path(group_version, resource),
                query={
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                    "limit": page_size,
                    "continue": token,
                },
            )
            token = (data.get("metadata") or {}).get("continue") or None
            yield from data.get("items") or []
            if not token:
                return

    def iter_table(
        self,
        group_version: str,
        resource: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every item as the server prints it (a meta.k8s.io Table row, as `kubectl get` asks):
        `{"cells": {column: value}, "metadata": {...}}`, a fraction of the full objects' size.
        A server that answers with plain objects instead yields them unchanged."""
        token: str | None = None
        while True:
            data = self.request(
                "GET",
                self.ns_path(group_version, resource),
                query={
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                    "limit": page_size,
                    "continue": token,
                },
                accept=TABLE_ACCEPT,
            )
            token = (data.get("metadata") or {}).get("continue") or None
            if data.get("kind") == "Table":
                names = [c.get("name") for c in data.get("columnDefinitions") or []]
                for row in data.get("rows") or []:
                    obj = row.get("object") or {}
                    yield {
                        "cells": dict(zip(names, row.get("cells") or [], strict=False)),
                        "metadata": obj.get("metadata") or {},
                    }
            else:
                yield from data.get("items") or []
            if not token:
                return

    def pod_log(
        self,
        pod: str,
        *,
        container: str | None = None,
        tail: int | None = None,
        previous: bool = False,
        since_seconds: int | None = None,
    ) -> str:
        text: str = self.request(
            "GET",
            self.ns_path("v1", "pods", pod) + "/log",
            query={
                "container": container,
                "tailLines": tail,
                "previous": "true" if previous else None,
                "sinceSeconds": since_seconds,
            },
        )
        return text


def label_selector(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
