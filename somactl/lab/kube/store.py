"""In-memory object storage with resourceVersions, a watch history and owner indexes.

Stored objects are never mutated in place: writers build a new dict (`util.clone`) and hand it
to the store, so watch history entries and list results stay valid snapshots.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somactl.lab.kube import resources as R
from somactl.lab.kube.util import rfc3339

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Ref = tuple[str, str, str]  # (resource key, namespace, name)

# Resources whose spec changes bump metadata.generation.
GENERATION_KINDS = {
    R.DEPLOYMENTS.key,
    R.REPLICASETS.key,
    R.STATEFULSETS.key,
    R.HPAS.key,
    R.NETWORKPOLICIES.key,
}


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str
    rkey: str
    namespace: str
    obj: dict[str, Any]


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


class Store:
    def __init__(self, history: int = 20000) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.objects: dict[str, dict[Key, dict[str, Any]]] = {rt.key: {} for rt in R.ALL}
        self.history: deque[WatchEvent] = deque(maxlen=history)
        self.compacted_rv = 0
        self.owned: dict[str, set[Ref]] = {}
        self.by_uid: dict[str, Ref] = {}

    # ---- reads -------------------------------------------------------------------------------

    def get(self, rkey: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[rkey].get((namespace, name))

    def select(self, rkey: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects in etcd key order (namespace, then name)."""
        bucket = self.objects[rkey]
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def children(self, owner_uid: str, rkey: str | None = None) -> list[dict[str, Any]]:
        out = []
        for rk, ns, name in sorted(self.owned.get(owner_uid, ())):
            if rkey is None or rk == rkey:
                obj = self.objects[rk].get((ns, name))
                if obj is not None:
                    out.append(obj)
        return out

    def exists_uid(self, uid: str) -> bool:
        return uid in self.by_uid

    # ---- writes ------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, etype: str, rkey: str, obj: dict[str, Any]) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        ns = str(obj["metadata"].get("namespace") or "")
        self.history.append(WatchEvent(self.rv, etype, rkey, ns, obj))
        self.cond.notify_all()

    def _index(self, rkey: str, obj: dict[str, Any], add: bool) -> None:
        meta = obj["metadata"]
        ref: Ref = (rkey, str(meta.get("namespace") or ""), str(meta["name"]))
        uid = str(meta.get("uid") or "")
        owner = controller_uid(obj)
        if add:
            if uid:
                self.by_uid[uid] = ref
            if owner:
                self.owned.setdefault(owner, set()).add(ref)
        else:
            if uid:
                self.by_uid.pop(uid, None)
            if owner and owner in self.owned:
                self.owned[owner].discard(ref)
                if not self.owned[owner]:
                    del self.owned[owner]

    def create(self, rkey: str, obj: dict[str, Any], now: float) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(now))
        if rkey in GENERATION_KINDS:
            meta["generation"] = 1
        meta["resourceVersion"] = str(self._next_rv())
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        self.objects[rkey][key] = obj
        self._index(rkey, obj, True)
        self._record("ADDED", rkey, obj)
        return obj

    def replace(self, rkey: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of an existing object; bumps generation on spec changes."""
        meta = obj["metadata"]
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        old = self.objects[rkey][key]
        old_meta = old["metadata"]
        meta["uid"] = old_meta.get("uid")
        meta["creationTimestamp"] = old_meta.get("creationTimestamp")
        if rkey in GENERATION_KINDS:
            gen = int(old_meta.get("generation") or 1)
            meta["generation"] = gen + 1 if obj.get("spec") != old.get("spec") else gen
        meta["resourceVersion"] = str(self._next_rv())
        self._index(rkey, old, False)
        self.objects[rkey][key] = obj
        self._index(rkey, obj, True)
        self._record("MODIFIED", rkey, obj)
        return obj

    def remove(self, rkey: str, namespace: str, name: str) -> dict[str, Any] | None:
        old = self.objects[rkey].pop((namespace, name), None)
        if old is None:
            return None
        self._index(rkey, old, False)
        gone = dict(old)
        gone["metadata"] = dict(old["metadata"], resourceVersion=str(self._next_rv()))
        self._record("DELETED", rkey, gone)
        return gone

    def events_since(self, rv: int) -> list[WatchEvent]:
        if not self.history or self.history[-1].rv <= rv:
            return []
        # History is ordered by rv; walk from the end (watchers are usually close to the head).
        out: list[WatchEvent] = []
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            out.append(ev)
        out.reverse()
        return out

    def clear(self) -> None:
        for bucket in self.objects.values():
            bucket.clear()
        self.owned.clear()
        self.by_uid.clear()
        self.history.clear()
        self.compacted_rv = self.rv
        self.cond.notify_all()

    # ---- snapshots ---------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "rv": self.rv,
            "objects": {rk: list(bucket.values()) for rk, bucket in self.objects.items()},
        }

    def load(self, data: dict[str, Any]) -> None:
        self.clear()
        self.rv = int(data.get("rv", 100))
        self.compacted_rv = self.rv
        for rk, items in (data.get("objects") or {}).items():
            if rk not in self.objects:
                continue
            for obj in items:
                meta = obj["metadata"]
                self.objects[rk][(str(meta.get("namespace") or ""), str(meta["name"]))] = obj
                self._index(rk, obj, True)


def write_snapshot(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
