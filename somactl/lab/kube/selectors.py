"""Label and field selectors with apimachinery's grammar and error messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from somactl.lab.kube.errors import ApiError, bad_request

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPECIAL = set(" \t\n,()=!<>")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        val = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and val in self.values
        if self.op in ("!=", "notin"):
            return not has or val not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if not has or val is None:
            return False
        try:
            num, bound = int(val), int(self.values[0])
        except ValueError:
            return False
        return num > bound if self.op == "gt" else num < bound

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(sorted(self.values))})"
        if self.op in ("gt", "lt"):
            return f"{self.key}{'>' if self.op == 'gt' else '<'}{self.values[0]}"
        return f"{self.key}{self.op}{self.values[0]}"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _validate_key(key: str) -> None:
    name = key
    if "/" in key:
        prefix, name = key.split("/", 1)
        if not prefix or len(prefix) > 253 or not _DNS_SUB.match(prefix):
            raise bad_request(
                f'unable to parse requirement: <nil>: Invalid value: "{key}": prefix part '
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
            )
    if not name or len(name) > 63 or not _NAME.match(name):
        raise bad_request(
            f'unable to parse requirement: <nil>: Invalid value: "{key}": name part must consist '
            "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )


def _validate_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise bad_request(
            f'unable to parse requirement: values[0][key]: Invalid value: "{value}": a valid '
            "label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character"
        )


def _lex(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\n":
            i += 1
        elif c in ",()":
            tokens.append(c)
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif c in "=!<>":
            tokens.append(c)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `app=web,tier in (a,b),!canary`; raise a 400 ApiError like the apiserver."""
    if text is None or not text.strip():
        return LabelSelector()
    toks = _lex(text)
    reqs: list[Requirement] = []
    pos = 0

    def err(msg: str) -> ApiError:
        return bad_request(f"unable to parse requirement: {msg}")

    def ident(what: str) -> str:
        nonlocal pos
        if pos >= len(toks) or toks[pos] in {",", "(", ")", "=", "==", "!=", "!", "<", ">"}:
            found = toks[pos] if pos < len(toks) else "EOS"
            raise bad_request(f"found '{found}', expected: {what}")
        tok = toks[pos]
        pos += 1
        return tok

    while pos < len(toks):
        if toks[pos] == "!":
            pos += 1
            key = ident("identifier after '!'")
            _validate_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = ident("identifier")
            _validate_key(key)
            op = toks[pos] if pos < len(toks) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                pos += 1
                value = ""
                if pos < len(toks) and toks[pos] not in {",", "(", ")", "=", "==", "!=", "!"}:
                    value = toks[pos]
                    pos += 1
                _validate_value(value)
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in ("in", "notin"):
                pos += 1
                if pos >= len(toks) or toks[pos] != "(":
                    raise bad_request(
                        f"found '{toks[pos] if pos < len(toks) else 'EOS'}', expected: '('"
                    )
                pos += 1
                values: list[str] = []
                while True:
                    if pos >= len(toks):
                        raise bad_request("found 'EOS', expected: ')'")
                    tok = toks[pos]
                    if tok == ")":
                        pos += 1
                        break
                    if tok == ",":
                        pos += 1
                        continue
                    if tok in {"(", "=", "==", "!=", "!"}:
                        raise bad_request(f"found '{tok}', expected: ',', ')' or identifier")
                    _validate_value(tok)
                    values.append(tok)
                    pos += 1
                if not values:
                    values.append("")
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in ("<", ">"):
                pos += 1
                bound = ident("integer")
                if not bound.lstrip("-").isdigit():
                    raise err(f"for 'Gt', 'Lt' operators, the value must be an integer: {bound}")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (bound,)))
            else:
                raise bad_request(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if pos < len(toks):
            if toks[pos] != ",":
                raise bad_request(f"found '{toks[pos]}', expected: ',' or 'end of string'")
            pos += 1
            if pos >= len(toks):
                raise bad_request("found 'EOS', expected: identifier")
    return LabelSelector(tuple(reqs))


def selector_from_label_selector(spec: Any) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: matchLabels plus matchExpressions."""
    if not isinstance(spec, dict):
        return LabelSelector()
    reqs: list[Requirement] = []
    for k, v in sorted((spec.get("matchLabels") or {}).items()):
        reqs.append(Requirement(str(k), "=", (str(v),)))
    for expr in spec.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        key = str(expr.get("key", ""))
        vals = tuple(str(v) for v in expr.get("values") or [])
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op)
        if mapped is None:
            raise bad_request(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(key, mapped, vals))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def format_label_selector(spec: Any) -> str:
    """metav1.FormatLabelSelector: `<none>` when it selects everything."""
    text = str(selector_from_label_selector(spec))
    return text or "<none>"


# ---- field selectors -------------------------------------------------------------------------

FieldGetter = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any], fields: Mapping[str, FieldGetter]) -> bool:
        for r in self.requirements:
            got = fields[r.field](obj)
            if (got == r.value) != (r.op == "="):
                return False
        return True

    def exact_name(self) -> str | None:
        for r in self.requirements:
            if r.field == "metadata.name" and r.op == "=":
                return r.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(
    text: str | None, fields: Mapping[str, FieldGetter], generic_message: bool
) -> FieldSelector:
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        m = re.match(r"^((?:\\.|[^=!\\])*)(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = _unescape(m.group(1)).strip(), m.group(2), _unescape(m.group(3))
        if field not in fields:
            if generic_message:
                raise bad_request(
                    f'"{field}" is not a known field selector: only "metadata.name", '
                    '"metadata.namespace"'
                )
            raise bad_request(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(reqs))
