"""The three patch dialects the apiserver accepts from kubectl and the Python client.

* JSON merge patch (RFC 7386), `application/merge-patch+json`;
* JSON patch (RFC 6902), `application/json-patch+json`;
* strategic merge patch, `application/strategic-merge-patch+json`: a merge patch whose lists of
  objects merge by their patchMergeKey, with the `$patch`, `$setElementOrder`, `$retainKeys` and
  `$deleteFromPrimitiveList` directives (the subset kubectl and the Python client send).
"""

from __future__ import annotations

from typing import Any

from somactl.lab.kube.errors import ApiError, bad_request, unprocessable
from somactl.lab.kube.util import clone

# Field name -> merge key, for lists of objects (k8s.io/api patchMergeKey tags that matter here).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of primitives with patchStrategy "merge" (union instead of replace).
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 --------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise bad_request(f"invalid JSON patch path: {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f'JSON pointer must be empty or start with a "/": {path}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(token: str, size: int, allow_end: bool, path: str) -> int:
    if allow_end and token == "-":  # noqa: S105 (a JSON pointer token, not a secret)
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise unprocessable(f"invalid array index {token!r} in {path}")
    idx = int(token)
    if idx > size or (idx == size and not allow_end):
        raise unprocessable(f"array index out of bounds: {idx} in {path}")
    return idx


def _parent(doc: Any, parts: list[str], path: str, op: str) -> Any:
    cur = doc
    for token in parts[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(token, len(cur), False, path)]
        else:
            raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return cur


def _get(doc: Any, parts: list[str], path: str, op: str) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(
                f"{op} operation does not apply: doc is missing key: {path}: missing value"
            )
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), False, path)]
    raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")


def _remove(doc: Any, parts: list[str], path: str, op: str) -> Any:
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(
                f"{op} operation does not apply: doc is missing key: {path}: missing value"
            )
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), False, path))
    raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")


def _add(doc: Any, parts: list[str], value: Any, path: str, op: str, replace: bool) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise unprocessable(
                f"replace operation does not apply: doc is missing key: {path}: missing value"
            )
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(last, len(parent), False, path)] = value
        else:
            parent.insert(_index(last, len(parent), True, path), value)
    else:
        raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902. Malformed operations are 400, operations that do not apply are 422."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(target)
    for raw in ops:
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
            raise bad_request(f"invalid JSON patch operation: {raw!r}")
        op = raw["op"]
        path = raw.get("path")
        parts = _pointer(path)
        if op in ("add", "replace", "test") and "value" not in raw:
            raise bad_request(f"{op} operation missing value")
        if op == "add":
            doc = _add(doc, parts, clone(raw["value"]), str(path), op, replace=False)
        elif op == "replace":
            if not parts:
                doc = clone(raw["value"])
            else:
                doc = _add(doc, parts, clone(raw["value"]), str(path), op, replace=True)
        elif op == "remove":
            if not parts:
                raise unprocessable("remove operation does not apply: cannot remove root")
            _remove(doc, parts, str(path), op)
        elif op in ("move", "copy"):
            src_path = raw.get("from")
            src = _pointer(src_path)
            value = (
                _remove(doc, src, str(src_path), op)
                if op == "move"
                else clone(_get(doc, src, str(src_path), op))
            )
            doc = _add(doc, parts, value, str(path), op, replace=False)
        elif op == "test":
            if _get(doc, parts, str(path), op) != raw["value"]:
                raise unprocessable(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return doc


# ---- strategic merge patch --------------------------------------------------------------------


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    result = clone(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        cur = result.get(key)
        if isinstance(value, dict):
            if isinstance(value.get("$patch"), str) and value["$patch"] == "delete":
                result.pop(key, None)
            else:
                result[key] = _smp_map(cur if isinstance(cur, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, cur if isinstance(cur, list) else [], value)
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return dict(result)


def _smp_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    merge_key = MERGE_KEYS.get(field)
    if field in MERGE_PRIMITIVE_LISTS:
        out = list(target)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    if merge_key is None or not all(isinstance(p, dict) for p in patch):
        return list(clone(patch))
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [
            clone({k: v for k, v in p.items() if k != "$patch"})
            for p in patch
            if not (isinstance(p, dict) and p.get("$patch") == "replace")
        ]
    out = [clone(t) for t in target]
    for item in patch:
        if merge_key not in item:
            raise ApiError(
                422, "Invalid", f"map: {item} does not contain declared merge key: {merge_key}", {}
            )
        key_value = item[merge_key]
        idx = next(
            (i for i, t in enumerate(out) if isinstance(t, dict) and t.get(merge_key) == key_value),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, item))
        else:
            out[idx] = _smp_map(out[idx], item)
    return out


CONTENT_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


def apply_patch(kind: str, target: Any, patch: Any) -> Any:
    if kind == "json":
        return json_patch(target, patch)
    if kind == "merge":
        if not isinstance(patch, dict):
            raise bad_request("merge patch must be a JSON object")
        return merge_patch(target, patch)
    return strategic_merge_patch(target, patch)
