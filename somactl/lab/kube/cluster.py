"""The simulated cluster: object operations (what the HTTP API calls) plus the controllers.

Every public method takes the one lock. Mutations run the controllers once, without moving the
clock, so a ReplicaSet appears right after a Deployment changes; time-driven progress (pods
starting, crashing, becoming ready, rollouts advancing) happens in `tick()`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from somactl.lab.kube import defaults
from somactl.lab.kube import resources as R
from somactl.lab.kube.clock import Clock
from somactl.lab.kube.errors import ApiError, bad_request, conflict, invalid, not_found
from somactl.lab.kube.patch import apply_patch
from somactl.lab.kube.selectors import (
    FieldSelector,
    LabelSelector,
    selector_from_label_selector,
)
from somactl.lab.kube.store import Store, read_snapshot, write_snapshot
from somactl.lab.kube.util import clone, rfc3339

JSON = dict[str, Any]
EVENT_TTL = 3600.0


class Cluster:
    def __init__(self, clock: Clock | None = None, seed: int = 1) -> None:
        self.clock = clock or Clock()
        self.store = Store()
        self.lock = self.store.lock
        self.rng = random.Random(seed)
        self._event_index: dict[tuple[str, ...], tuple[str, str]] = {}
        self._event_seq = 0
        self._pod_due: dict[tuple[str, str], float] = {}
        self._last_event_gc = 0.0
        self.ip_seq = 1
        self.on_change: list[Callable[[], None]] = []

    def now(self) -> float:
        return self.clock.now()

    # ---- reads ---------------------------------------------------------------------------------

    def get(self, rt: R.ResourceType, ns: str, name: str) -> JSON:
        with self.lock:
            obj = self.store.get(rt.key, ns if rt.namespaced else "", name)
            if obj is None:
                raise not_found(rt.plural, rt.group, name)
            return obj

    def list(
        self,
        rt: R.ResourceType,
        ns: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[JSON], int]:
        with self.lock:
            items = self.store.select(rt.key, ns if rt.namespaced else None)
            rv = self.store.rv
        if labels is not None and not labels.empty():
            items = [o for o in items if labels.matches(o["metadata"].get("labels") or {})]
        if fields is not None and fields.requirements:
            getters = rt.fields()
            items = [o for o in items if fields.matches(o, getters)]
        return items, rv

    # ---- writes (the API's code path) ----------------------------------------------------------

    def _require_namespace(self, rt: R.ResourceType, ns: str) -> None:
        if rt.namespaced and self.store.get(R.NAMESPACES.key, "", ns) is None:
            raise not_found("namespaces", "", ns)

    def create(self, rt: R.ResourceType, ns: str, body: Any, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj = clone(body)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + "".join(
                    self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
                )
            obj["kind"] = rt.kind
            obj["apiVersion"] = rt.api_version()
            for k in (
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "managedFields",
                "selfLink",
            ):
                meta.pop(k, None)
            obj.pop("status", None)
            defaults.apply_defaults(rt, obj)
            defaults.validate(rt, obj)
            self._require_namespace(rt, ns)
            key_ns = ns if rt.namespaced else ""
            if self.store.get(rt.key, key_ns, meta["name"]) is not None:
                from somactl.lab.kube.errors import already_exists

                raise already_exists(rt.plural, rt.group, meta["name"])
            if dry_run:
                meta["creationTimestamp"] = rfc3339(self.now())
                meta["uid"] = "00000000-0000-0000-0000-000000000000"
                return dict(obj)
            created = self.store.create(rt.key, obj, self.now())
            self._after_write()
            return created

    def _check_rv(self, rt: R.ResourceType, current: JSON, wanted: Any, name: str) -> None:
        if wanted not in (None, "") and str(wanted) != current["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)

    def _merge_update(self, rt: R.ResourceType, current: JSON, new: JSON, sub: str | None) -> JSON:
        """What a PUT/PATCH of the main resource or /status stores."""
        if sub == "status":
            out = clone(current)
            out["status"] = new.get("status", {})
            return dict(out)
        out = new
        out["kind"] = rt.kind
        out["apiVersion"] = rt.api_version()
        meta = out.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        cur_meta = current["metadata"]
        if meta.get("name") not in (None, cur_meta["name"]):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({cur_meta['name']})"
            )
        meta["name"] = cur_meta["name"]
        if rt.namespaced:
            meta["namespace"] = cur_meta["namespace"]
        for k in ("uid", "creationTimestamp", "ownerReferences", "deletionTimestamp"):
            if k in cur_meta and k not in meta:
                meta[k] = cur_meta[k]
        if rt is not R.PODS and rt is not R.EVENTS:
            if "status" in current:
                out["status"] = current["status"]
            else:
                out.pop("status", None)
        defaults.apply_defaults(rt, out)
        defaults.validate(rt, out)
        return out

    def update(
        self,
        rt: R.ResourceType,
        ns: str,
        name: str,
        body: Any,
        dry_run: bool = False,
        sub: str | None = None,
    ) -> JSON:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        with self.lock:
            current = self.get(rt, ns, name)
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            self._check_rv(rt, current, wanted_rv, name)
            new = self._merge_update(rt, current, clone(body), sub)
            return self._store_update(rt, current, new, dry_run)

    def _store_update(self, rt: R.ResourceType, current: JSON, new: JSON, dry_run: bool) -> JSON:
        new["metadata"].pop("resourceVersion", None)
        if dry_run:
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return new
        stored = self.store.replace(rt.key, new)
        self._pod_due.pop(
            (stored["metadata"].get("namespace", ""), stored["metadata"]["name"]), None
        )
        self._after_write()
        return stored

    def patch(
        self,
        rt: R.ResourceType,
        ns: str,
        name: str,
        patch_type: str,
        patch: Any,
        dry_run: bool = False,
        sub: str | None = None,
    ) -> JSON:
        with self.lock:
            current = self.get(rt, ns, name)
            patched = apply_patch(patch_type, current, patch)
            if not isinstance(patched, dict):
                raise bad_request("the patch produced something that is not an object")
            wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
            self._check_rv(rt, current, wanted_rv, name)
            new = self._merge_update(rt, current, patched, sub)
            return self._store_update(rt, current, new, dry_run)

    def delete(
        self,
        rt: R.ResourceType,
        ns: str,
        name: str,
        dry_run: bool = False,
        precondition_rv: str | None = None,
    ) -> JSON:
        with self.lock:
            current = self.get(rt, ns, name)
            self._check_rv(rt, current, precondition_rv, name)
            if dry_run:
                return current
            gone = self._delete_tree(rt.key, current)
            self._after_write()
            return gone

    def _delete_tree(self, rkey: str, obj: JSON) -> JSON:
        meta = obj["metadata"]
        uid = str(meta.get("uid", ""))
        for child_rkey, cns, cname in sorted(self.store.owned.get(uid, set())):
            child = self.store.get(child_rkey, cns, cname)
            if child is not None:
                self._delete_tree(child_rkey, child)
        if rkey == R.NAMESPACES.key:
            ns = meta["name"]
            for rt in R.ALL:
                if rt.namespaced:
                    for child in self.store.select(rt.key, ns):
                        self.store.remove(rt.key, ns, child["metadata"]["name"])
        ns = str(meta.get("namespace") or "")
        self._pod_due.pop((ns, meta["name"]), None)
        gone = self.store.remove(rkey, ns, meta["name"])
        return gone if gone is not None else obj

    # ---- scale subresource ---------------------------------------------------------------------

    def scale_view(self, rt: R.ResourceType, obj: JSON) -> JSON:
        meta = obj["metadata"]
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {
                "replicas": status.get("replicas", 0),
                "selector": str(selector_from_label_selector(spec.get("selector"))),
            },
        }

    def set_scale(
        self, rt: R.ResourceType, ns: str, name: str, scale: Any, dry_run: bool = False
    ) -> JSON:
        if not isinstance(scale, dict):
            raise bad_request("the request body must be a Scale object")
        with self.lock:
            current = self.get(rt, ns, name)
            self._check_rv(rt, current, (scale.get("metadata") or {}).get("resourceVersion"), name)
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [
                        (
                            "spec.replicas",
                            "FieldValueInvalid",
                            f"Invalid value: {replicas}: must be greater than or equal to 0",
                        )
                    ],
                )
            new = clone(current)
            new["spec"]["replicas"] = replicas
            stored = self._store_update(rt, current, new, dry_run)
            return self.scale_view(rt, stored)

    def patch_scale(
        self,
        rt: R.ResourceType,
        ns: str,
        name: str,
        patch_type: str,
        patch: Any,
        dry_run: bool = False,
    ) -> JSON:
        with self.lock:
            view = self.scale_view(rt, self.get(rt, ns, name))
            return self.set_scale(rt, ns, name, apply_patch(patch_type, view, patch), dry_run)

    # ---- events --------------------------------------------------------------------------------

    def record_event(
        self,
        involved: JSON,
        etype: str,
        reason: str,
        message: str,
        component: str,
        host: str = "",
        field_path: str = "",
    ) -> None:
        meta = involved["metadata"]
        ns = str(meta.get("namespace") or "default")
        key = (str(meta.get("uid")), etype, reason, message, component, field_path)
        now = self.now()
        ts = rfc3339(now)
        existing = self._event_index.get(key)
        if existing is not None:
            ev = self.store.get(R.EVENTS.key, *existing)
            if ev is not None:
                ev = clone(ev)
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = ts
                self.store.replace(R.EVENTS.key, ev)
                return
        self._event_seq += 1
        name = f"{meta['name']}.{int(now * 1e9) + self._event_seq:x}"
        inv: JSON = {
            "kind": involved.get("kind", ""),
            "namespace": ns,
            "name": meta["name"],
            "uid": meta.get("uid"),
            "apiVersion": involved.get("apiVersion", ""),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            inv["fieldPath"] = field_path
        source: JSON = {"component": component}
        if host:
            source["host"] = host
        ev = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": inv,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": host,
        }
        self.store.create(R.EVENTS.key, ev, now)
        self._event_index[key] = (ns, name)

    def _gc_events(self) -> None:
        now = self.now()
        if now - self._last_event_gc < 60:
            return
        self._last_event_gc = now
        from somactl.lab.kube.util import parse_time

        for ev in self.store.select(R.EVENTS.key):
            last = parse_time(ev.get("lastTimestamp")) or now
            if now - last > EVENT_TTL:
                self.store.remove(R.EVENTS.key, ev["metadata"]["namespace"], ev["metadata"]["name"])
        live = {
            (e["metadata"]["namespace"], e["metadata"]["name"])
            for e in self.store.select(R.EVENTS.key)
        }
        self._event_index = {k: v for k, v in self._event_index.items() if v in live}

    def _rebuild_event_index(self) -> None:
        self._event_index.clear()
        for ev in self.store.select(R.EVENTS.key):
            inv = ev.get("involvedObject") or {}
            key = (
                str(inv.get("uid")),
                str(ev.get("type")),
                str(ev.get("reason")),
                str(ev.get("message")),
                str((ev.get("source") or {}).get("component", "")),
                str(inv.get("fieldPath", "")),
            )
            self._event_index[key] = (ev["metadata"]["namespace"], ev["metadata"]["name"])

    # ---- time ----------------------------------------------------------------------------------

    def _after_write(self) -> None:
        self.reconcile()
        for fn in self.on_change:
            fn()

    def reconcile(self) -> None:
        from somactl.lab.kube import controllers

        with self.lock:
            controllers.reconcile(self)
            self._gc_events()

    def tick(self, seconds: float, step: float = 1.0) -> None:
        """Advance the clock by `seconds`, running the controllers every `step` seconds."""
        remaining = max(0.0, seconds)
        step = max(0.01, step)
        while remaining > 1e-9:
            dt = min(step, remaining)
            with self.lock:
                self.clock.advance(dt)
                self.reconcile()
            remaining -= dt

    def jump(self, seconds: float) -> None:
        """Advance the clock in one go (time travel for seeding history)."""
        with self.lock:
            self.clock.advance(seconds)
            self.reconcile()

    # ---- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> JSON:
        with self.lock:
            data = self.store.dump()
            data["clock"] = self.now()
            return data

    def save(self, path: Path) -> None:
        write_snapshot(path, self.snapshot())

    def restore(self, data: JSON) -> None:
        with self.lock:
            self.store.load(data)
            if "clock" in data:
                self.clock.set(max(self.now(), float(data["clock"])))
            self._pod_due.clear()
            self._rebuild_event_index()

    def load(self, path: Path) -> bool:
        data = read_snapshot(path)
        if data is None:
            return False
        self.restore(data)
        return True

    def reset(self) -> None:
        with self.lock:
            self.store.clear()
            self._pod_due.clear()
            self._event_index.clear()


def apierror_status(exc: ApiError) -> JSON:
    return exc.status()
