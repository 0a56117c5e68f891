"""The Kubernetes REST surface, independent of the HTTP server: Request in, Response out."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from somactl.lab.kube import printers, protobuf
from somactl.lab.kube import resources as R
from somactl.lab.kube.behaviors import behavior_for, format_logs, render_logs
from somactl.lab.kube.cluster import Cluster
from somactl.lab.kube.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    no_route,
    not_found,
    unsupported_media_type,
)
from somactl.lab.kube.patch import CONTENT_TYPES
from somactl.lab.kube.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from somactl.lab.kube.util import annotations_of, labels_of, parse_time

JSON_CT = "application/json"
TABLE_CT = "application/json;as=Table;v=v1;g=meta.k8s.io"
AGG_CT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
BODY_TYPES = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/cbor",
]
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/strategic-merge-patch+json",
]
MAX_BODY = 8 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        vals = self.query.get(name)
        return vals[0] if vals else None

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")


@dataclass
class WatchSpec:
    rt: R.ResourceType
    version: str
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    resource_version: int | None
    timeout: float
    bookmarks: bool
    table: bool
    include_object: str


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_CT
    watch: WatchSpec | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, content_type: str = JSON_CT) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), content_type)


def error_response(exc: ApiError) -> Response:
    return json_response(exc.status(), exc.code)


def parse_bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise bad_request(
        f'invalid value for "{name}": strconv.ParseBool: parsing "{value}": invalid syntax'
    )


def parse_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(
            f'invalid value for "{name}": strconv.ParseInt: parsing "{value}": invalid syntax'
        ) from None


@dataclass
class Route:
    rt: R.ResourceType
    version: str
    namespace: str | None
    name: str | None
    sub: str | None


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class Api:
    def __init__(self, cluster: Cluster, server_address: str = "127.0.0.1:0") -> None:
        self.cluster = cluster
        self.server_address = server_address

    # ---- routing -----------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        try:
            return self._handle(req)
        except ApiError as exc:
            return error_response(exc)

    def _handle(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        accept = req.header("Accept")
        if parts == ["version"]:
            return json_response(R.VERSION_INFO)
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if not parts or parts[0] not in ("api", "apis"):
            raise no_route()
        aggregated = "as=APIGroupDiscoveryList" in accept.replace(" ", "")
        if parts == ["api"]:
            if aggregated:
                return json_response(R.aggregated_discovery(True), content_type=AGG_CT)
            return json_response(R.legacy_api_versions(self.server_address))
        if parts == ["apis"]:
            if aggregated:
                return json_response(R.aggregated_discovery(False), content_type=AGG_CT)
            return json_response(R.legacy_group_list())
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 2:
                g = R.legacy_group(parts[1])
                if g is None:
                    raise no_route()
                return json_response(g)
            group, version, rest = parts[1], parts[2], parts[3:]
        if not R.group_versions(group) or version not in R.group_versions(group):
            raise no_route()
        if not rest:
            listing = R.legacy_resource_list(group, version)
            if listing is None:
                raise no_route()
            return json_response(listing)
        route = self._route(group, version, rest)
        return self._dispatch(req, route)

    def _route(self, group: str, version: str, rest: list[str]) -> Route:
        ns: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (group == "" and rest[2] in ("status", "finalize"))
        ):
            ns = rest[1]
            rest = rest[2:]
        rt = R.lookup(group, version, rest[0])
        if rt is None or (ns is not None and not rt.namespaced) or len(rest) > 3:
            raise no_route()
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in {s.name for s in rt.subresources}:
            raise no_route()
        if name is not None and rt.namespaced and ns is None:
            raise no_route()
        return Route(rt, version, ns, name, sub)

    def _dispatch(self, req: Request, route: Route) -> Response:
        m = req.method
        if route.name is None:
            if m == "GET":
                return self._list(req, route)
            if m == "POST":
                if route.namespace is None and route.rt.namespaced:
                    raise method_not_allowed(m)
                return self._create(req, route)
            raise method_not_allowed(m)
        if route.sub == "log":
            if m != "GET":
                raise method_not_allowed(m)
            return self._logs(req, route)
        if route.sub == "scale":
            return self._scale(req, route)
        if m == "GET":
            obj = self.cluster.get(route.rt, route.namespace or "", route.name)
            if self._wants_table(req):
                return self._table(req, route, [obj], {"resourceVersion": ""})
            return json_response(self._out(route, obj))
        if m == "PUT":
            body = self._decode_body(req, route)
            obj = self.cluster.update(
                route.rt, route.namespace or "", route.name, body, self._dry_run(req), route.sub
            )
            return json_response(self._out(route, obj))
        if m == "PATCH":
            ptype, patch = self._decode_patch(req)
            obj = self.cluster.patch(
                route.rt,
                route.namespace or "",
                route.name,
                ptype,
                patch,
                self._dry_run(req),
                route.sub,
            )
            return json_response(self._out(route, obj))
        if m == "DELETE" and route.sub is None:
            precondition = None
            if req.body.strip():
                try:
                    opts = json.loads(req.body)
                except ValueError:
                    raise bad_request("invalid DeleteOptions body") from None
                if isinstance(opts, dict):
                    precondition = (opts.get("preconditions") or {}).get("resourceVersion")
            obj = self.cluster.delete(
                route.rt, route.namespace or "", route.name, self._dry_run(req), precondition
            )
            return json_response(self._out(route, obj))
        raise method_not_allowed(m)

    # ---- helpers -------------------------------------------------------------------------------

    def _out(self, route: Route, obj: dict[str, Any]) -> dict[str, Any]:
        return R.to_version(route.rt, obj, route.version)

    def out_version(self, rt: R.ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        return R.to_version(rt, obj, version)

    def _dry_run(self, req: Request) -> bool:
        vals = req.query.get("dryRun") or []
        for v in vals:
            if v != "All":
                raise bad_request(f'Invalid dry run value: [{v}]: supported values: "All"')
        return bool(vals)

    def _wants_table(self, req: Request) -> bool:
        return "as=Table" in req.header("Accept").replace(" ", "")

    def _decode_body(self, req: Request, route: Route) -> Any:
        if len(req.body) > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "Request entity too large", {})
        ctype = _media_type(req.header("Content-Type"))
        if ctype == "application/vnd.kubernetes.protobuf" or req.body.startswith(protobuf.MAGIC):
            obj: Any = protobuf.decode(req.body)
        elif ctype in ("", "application/json", "*/*"):
            try:
                obj = json.loads(req.body or b"null")
            except (ValueError, UnicodeDecodeError) as exc:
                raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
        else:
            raise unsupported_media_type(ctype, BODY_TYPES)
        if not isinstance(obj, dict):
            raise bad_request(
                "couldn't get version/kind; json parse error: json: cannot "
                "unmarshal into Go value of type struct"
            )
        kind = obj.get("kind")
        expected = "Scale" if route.sub == "scale" else route.rt.kind
        if kind not in (None, "", expected):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {expected}): {kind}"
            )
        if route.sub != "scale":
            obj = R.from_version(route.rt, obj, route.version)
        return obj

    def _decode_patch(self, req: Request) -> tuple[str, Any]:
        ctype = _media_type(req.header("Content-Type"))
        ptype = CONTENT_TYPES.get(ctype)
        if ptype is None:
            raise unsupported_media_type(ctype, PATCH_TYPES)
        try:
            patch = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        return ptype, patch

    # ---- verbs ---------------------------------------------------------------------------------

    def _selectors(self, req: Request, rt: R.ResourceType) -> tuple[LabelSelector, FieldSelector]:
        labels = parse_label_selector(req.param("labelSelector"))
        generic = rt not in (R.PODS, R.EVENTS, R.NAMESPACES)
        fields = parse_field_selector(req.param("fieldSelector"), rt.fields(), generic)
        return labels, fields

    def _list(self, req: Request, route: Route) -> Response:
        rt = route.rt
        labels, fields = self._selectors(req, rt)
        if parse_bool(req.param("watch"), "watch"):
            rv = parse_int(req.param("resourceVersion"), "resourceVersion")
            timeout = parse_int(req.param("timeoutSeconds"), "timeoutSeconds")
            return Response(
                200,
                watch=WatchSpec(
                    rt=rt,
                    version=route.version,
                    namespace=route.namespace,
                    labels=labels,
                    fields=fields,
                    resource_version=rv,
                    timeout=float(timeout) if timeout is not None else 1800.0,
                    bookmarks=parse_bool(req.param("allowWatchBookmarks"), "allowWatchBookmarks"),
                    table=self._wants_table(req),
                    include_object=req.param("includeObject") or "Metadata",
                ),
            )
        items, rv = self.cluster.list(rt, route.namespace, labels, fields)
        limit = parse_int(req.param("limit"), "limit")
        cont = req.param("continue")
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                start = str(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise bad_request(
                    "continue key is not valid: incorrect encoded start "
                    "resourceVersion (version meta.k8s.io/v1)"
                ) from None
            items = [o for o in items if self._sort_key(o) > start]
        if limit is not None and limit > 0 and len(items) > limit:
            last = self._sort_key(items[limit - 1])
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "start": last}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if self._wants_table(req):
            return self._table(req, route, items, meta)
        out = [self._out(route, o) for o in items]
        body = {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version(route.version),
            "metadata": meta,
            "items": out,
        }
        return json_response(body)

    @staticmethod
    def _sort_key(obj: dict[str, Any]) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    def _table(
        self, req: Request, route: Route, items: list[dict[str, Any]], meta: dict[str, Any]
    ) -> Response:
        include = req.param("includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise bad_request(f'includeObject: Unsupported value: "{include}"')
        items = [self._out(route, o) for o in items]
        tbl = printers.table(route.rt, items, self.cluster.now(), meta, include)
        return json_response(tbl, content_type=TABLE_CT)

    def _create(self, req: Request, route: Route) -> Response:
        body = self._decode_body(req, route)
        obj = self.cluster.create(route.rt, route.namespace or "", body, self._dry_run(req))
        return json_response(self._out(route, obj), 201)

    def _scale(self, req: Request, route: Route) -> Response:
        c = self.cluster
        ns, name = route.namespace or "", route.name or ""
        if req.method == "GET":
            return json_response(c.scale_view(route.rt, c.get(route.rt, ns, name)))
        if req.method == "PUT":
            body = self._decode_body(req, route)
            return json_response(c.set_scale(route.rt, ns, name, body, self._dry_run(req)))
        if req.method == "PATCH":
            ptype, patch = self._decode_patch(req)
            return json_response(
                c.patch_scale(route.rt, ns, name, ptype, patch, self._dry_run(req))
            )
        raise method_not_allowed(req.method)

    def _logs(self, req: Request, route: Route) -> Response:
        c = self.cluster
        pod = c.get(R.PODS, route.namespace or "", route.name or "")
        pod_name = pod["metadata"]["name"]
        containers = [x for x in pod["spec"].get("containers") or []]
        names = [x["name"] for x in containers]
        cname = req.param("container")
        if not cname:
            if len(names) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {pod_name}, "
                    f"choose one of: [{' '.join(names)}]"
                )
            cname = names[0]
        if cname not in names:
            raise bad_request(f"container {cname} is not valid for pod {pod_name}")
        container = containers[names.index(cname)]
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        cs = statuses.get(cname) or {}
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        previous = parse_bool(req.param("previous"), "previous")
        now = c.now()
        if previous:
            if not last:
                raise bad_request(
                    f'previous terminated container "{cname}" in pod "{pod_name}" not found'
                )
            window = (parse_time(last.get("startedAt")), parse_time(last.get("finishedAt")))
        elif "running" in state:
            window = (parse_time(state["running"].get("startedAt")), now)
        elif "terminated" in state:
            term = state["terminated"]
            window = (parse_time(term.get("startedAt")), parse_time(term.get("finishedAt")))
        elif last:
            window = (parse_time(last.get("startedAt")), parse_time(last.get("finishedAt")))
        else:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            raise bad_request(
                f'container "{cname}" in pod "{pod_name}" is waiting to start: {reason}'
            )
        start, end = window
        if start is None or end is None:
            raise bad_request(f'container "{cname}" in pod "{pod_name}" has no logs yet')
        behavior = behavior_for(annotations_of(pod), str(container.get("image", "")))
        service = labels_of(pod).get("app") or cname
        lines = render_logs(pod_name, service, behavior, start, end)
        since_seconds = parse_int(req.param("sinceSeconds"), "sinceSeconds")
        since_time = parse_time(req.param("sinceTime"))
        since = now - since_seconds if since_seconds is not None else since_time
        tail = parse_int(req.param("tailLines"), "tailLines")
        limit = parse_int(req.param("limitBytes"), "limitBytes")
        text = format_logs(
            lines,
            timestamps=parse_bool(req.param("timestamps"), "timestamps"),
            tail=tail,
            since=since,
            limit_bytes=limit,
        )
        return Response(200, text.encode(), "text/plain")

    # for tests and tools: what a table row would look like
    def not_found(self, rt: R.ResourceType, name: str) -> ApiError:
        return not_found(rt.plural, rt.group, name)
