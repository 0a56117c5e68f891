"""Hand-decoding the Kubernetes protobuf wire format for the few objects clients POST/PUT.

kubectl 1.32's typed clientset sends `application/vnd.kubernetes.protobuf` for `autoscale`
(an autoscaling/v1 HorizontalPodAutoscaler; 1.33 tries autoscaling/v2 first). The body is the
magic `k8s\\0` followed by a `runtime.Unknown` envelope whose `raw` is the object. We decode only
the fields that matter and drop protobuf's empty-string defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from somactl.lab.kube.errors import ApiError, bad_request
from somactl.lab.kube.util import rfc3339

MAGIC = b"k8s\x00"

Fields = list[tuple[int, int, Any]]  # (field number, wire type, value: int or bytes)


class DecodeError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def parse_fields(buf: bytes) -> Fields:
    out: Fields = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            val, pos = _varint(buf, pos)
            out.append((field, wire, val))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("truncated length-delimited field")
            out.append((field, wire, buf[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
            out.append((field, wire, 0))
        elif wire == 5:
            pos += 4
            out.append((field, wire, 0))
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise DecodeError("truncated field")
    return out


def _str(v: Any) -> str:
    if not isinstance(v, bytes):
        raise DecodeError("expected a string")
    return v.decode("utf-8")


def _int32(v: Any) -> int:
    if not isinstance(v, int):
        raise DecodeError("expected a varint")
    v &= 0xFFFFFFFFFFFFFFFF
    n = int(v)
    return n - (1 << 64) if n >= 1 << 63 else n


def _msg(v: Any) -> Fields:
    if not isinstance(v, bytes):
        raise DecodeError("expected a message")
    return parse_fields(v)


def _map_entry(v: Any) -> tuple[str, str]:
    key = value = ""
    for f, _, x in _msg(v):
        if f == 1:
            key = _str(x)
        elif f == 2:
            value = _str(x)
    return key, value


def decode_object_meta(buf: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for f, _, v in _msg(buf):
        if f in strings:
            s = _str(v)
            if s:
                meta[strings[f]] = s
        elif f == 7:
            meta["generation"] = _int32(v)
        elif f == 8:
            secs = next((_int32(x) for ff, _, x in _msg(v) if ff == 1), 0)
            if secs:
                meta["creationTimestamp"] = rfc3339(secs)
        elif f in (11, 12):
            k, val = _map_entry(v)
            meta.setdefault("labels" if f == 11 else "annotations", {})[k] = val
        elif f == 14:
            meta.setdefault("finalizers", []).append(_str(v))
    return meta


def _cross_ref(buf: Any) -> dict[str, Any]:
    ref: dict[str, Any] = {}
    names = {1: "kind", 2: "name", 3: "apiVersion"}
    for f, _, v in _msg(buf):
        if f in names and _str(v):
            ref[names[f]] = _str(v)
    return ref


def _hpa_v1(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {}, "spec": {}}
    for f, _, v in parse_fields(raw):
        if f == 1:
            obj["metadata"] = decode_object_meta(v)
        elif f == 2:
            for sf, _, sv in _msg(v):
                if sf == 1:
                    obj["spec"]["scaleTargetRef"] = _cross_ref(sv)
                elif sf == 2:
                    obj["spec"]["minReplicas"] = _int32(sv)
                elif sf == 3:
                    obj["spec"]["maxReplicas"] = _int32(sv)
                elif sf == 4:
                    obj["spec"]["targetCPUUtilizationPercentage"] = _int32(sv)
    return obj


def _quantity(buf: Any) -> str:
    return next((_str(v) for f, _, v in _msg(buf) if f == 1), "")


def _metric_target(buf: Any) -> dict[str, Any]:
    t: dict[str, Any] = {}
    for f, _, v in _msg(buf):
        if f == 1:
            t["type"] = _str(v)
        elif f == 2:
            t["value"] = _quantity(v)
        elif f == 3:
            t["averageValue"] = _quantity(v)
        elif f == 4:
            t["averageUtilization"] = _int32(v)
    return t


def _hpa_v2(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {}, "spec": {}}
    for f, _, v in parse_fields(raw):
        if f == 1:
            obj["metadata"] = decode_object_meta(v)
        elif f == 2:
            spec = obj["spec"]
            for sf, _, sv in _msg(v):
                if sf == 1:
                    spec["scaleTargetRef"] = _cross_ref(sv)
                elif sf == 2:
                    spec["minReplicas"] = _int32(sv)
                elif sf == 3:
                    spec["maxReplicas"] = _int32(sv)
                elif sf == 4:
                    metric: dict[str, Any] = {}
                    for mf, _, mv in _msg(sv):
                        if mf == 1:
                            metric["type"] = _str(mv)
                        elif mf == 4:
                            res: dict[str, Any] = {}
                            for rf, _, rv in _msg(mv):
                                if rf == 1:
                                    res["name"] = _str(rv)
                                elif rf == 2:
                                    res["target"] = _metric_target(rv)
                            metric["resource"] = res
                    spec.setdefault("metrics", []).append(metric)
    return obj


def _scale(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {}, "spec": {}}
    for f, _, v in parse_fields(raw):
        if f == 1:
            obj["metadata"] = decode_object_meta(v)
        elif f == 2:
            for sf, _, sv in _msg(v):
                if sf == 1:
                    obj["spec"]["replicas"] = _int32(sv)
    return obj


DECODERS: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
    ("autoscaling/v1", "HorizontalPodAutoscaler"): _hpa_v1,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): _hpa_v2,
    ("autoscaling/v1", "Scale"): _scale,
}


def decode(body: bytes) -> dict[str, Any]:
    """Decode a `k8s\\0`-framed protobuf object into its JSON form. Raises ApiError 400/415."""
    if not body.startswith(MAGIC):
        raise bad_request("provided protobuf body does not start with the k8s magic number")
    try:
        api_version = kind = ""
        raw = b""
        for f, _, v in parse_fields(body[len(MAGIC) :]):
            if f == 1:
                for tf, _, tv in _msg(v):
                    if tf == 1:
                        api_version = _str(tv)
                    elif tf == 2:
                        kind = _str(tv)
            elif f == 2 and isinstance(v, bytes):
                raw = v
        decoder = DECODERS.get((api_version, kind))
        if decoder is None:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the simulator cannot decode protobuf {kind or '<none>'} "
                f"({api_version or '<none>'}); send application/json",
                {},
            )
        obj = decoder(raw)
    except (DecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"unable to decode protobuf body: {exc}") from None
    obj = {"kind": kind, "apiVersion": api_version, **obj}
    return obj
