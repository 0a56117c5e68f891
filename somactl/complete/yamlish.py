"""Just enough YAML to read context names, without a YAML library.

Two shapes, as the tools write them: the keys of somactl config's `contexts:` mapping, and the
`name:` of each item of a kubeconfig's `contexts:` list (block style, as kubectl writes; flow
style and JSON are read too). Anything these readers do not understand gives None, and the
caller offers no candidates: completion must never guess loudly.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: completion imports nothing it does not need
if TYPE_CHECKING:
    from typing import Any


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _strip_comment(text: str) -> str:
    """Drop a trailing ` # comment` outside quotes."""
    quote = ""
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _scalar(text: str) -> str | None:
    """A plain or quoted scalar; None for anything else (anchors, tags, collections)."""
    text = _strip_comment(text).strip()
    if not text:
        return None
    if text[0] == '"':
        import json  # a double-quoted YAML scalar reads like a JSON string

        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, str) else None
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'":
            return None
        return text[1:-1].replace("''", "'")
    if text[0] in "&*!|>{}[]%@`,?-" and not (text[0] == "-" and text[1:2] not in ("", " ")):
        return None
    return text


def _key_value(item: str) -> tuple[str, str] | None:
    """`key: value` -> (key, value); None when `item` is not a mapping entry."""
    if not item or item[0] in "-?[{&*!|>%@`#":
        return None
    if item[0] in "'\"":
        quote = item[0]
        i = 1
        while i < len(item):
            if item[i] == "\\" and quote == '"':
                i += 2
                continue
            if item[i] == quote:
                if quote == "'" and item[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                break
            i += 1
        else:
            return None
        key = _scalar(item[: i + 1])
        rest = item[i + 1 :].lstrip()
        if key is None or not rest.startswith(":"):
            return None
        return key, rest[1:].strip()
    i = item.find(": ")
    if i < 0:
        if not item.rstrip().endswith(":"):
            return None
        i = len(item.rstrip()) - 1
    key = item[:i].rstrip()
    return (key, item[i + 1 :].strip()) if key else None


def _top_level(text: str, key: str) -> tuple[list[str], str] | None:
    """(the lines after `key:`, what follows the colon on its line); None if `key` is absent."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith(key) and line[len(key) :].lstrip(" ").startswith(":"):
            after = line[len(key) :].lstrip(" ")[1:]
            if after[:1] not in ("", " ", "\t"):
                continue
            return lines[n + 1 :], _strip_comment(after).strip()
    return None


def _flow_keys(text: str) -> list[str] | None:
    """Top-level keys of a flow mapping `{a: 1, "b": {c: 2}}`."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    keys: list[str] = []
    depth = 0
    quote = ""
    token = ""
    expecting_key = True
    for c in text:
        if quote:
            token += c
            if c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
            token += c
        elif c in "{[":
            depth += 1
            if depth == 1:
                token = ""
                continue
            token += c
        elif c in "}]":
            depth -= 1
            if depth == 0:
                break
            token += c
        elif c == ":" and depth == 1 and expecting_key:
            key = _scalar(token)
            if key is None:
                return None
            keys.append(key)
            expecting_key = False
            token = ""
        elif c == "," and depth == 1:
            expecting_key = True
            token = ""
        else:
            token += c
    return keys if depth == 0 and not quote else None


def _json(text: str) -> Any:
    if not text.lstrip().startswith("{"):
        return None
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _dedupe(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def mapping_keys(text: str, key: str) -> list[str] | None:
    """Keys of the top-level mapping `key:` (somactl config's contexts); [] if absent."""
    data = _json(text)
    if isinstance(data, dict):
        value = data.get(key)
        return _dedupe([str(k) for k in value]) if isinstance(value, dict) else []
    found = _top_level(text, key)
    if found is None:
        return []
    lines, inline = found
    if inline:
        if inline in ("{}", "~", "null"):
            return []
        if inline.startswith("{"):
            # a flow mapping may go on over the next lines
            flow = inline
            for line in lines:
                if _flow_keys(flow) is not None:
                    break
                flow += " " + _strip_comment(line).strip()
            flow_keys = _flow_keys(flow)
            return None if flow_keys is None else _dedupe(flow_keys)
        return None
    keys: list[str] = []
    level: int | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[:1] == "\t" or "\t" in line[: _indent(line) + 1]:
            return None  # YAML forbids tabs in indentation
        ind = _indent(line)
        if ind == 0:
            break
        if level is None:
            level = ind
        if ind < level:
            return None
        if ind == level:
            kv = _key_value(stripped)
            if kv is None:
                return None
            keys.append(kv[0])
    return _dedupe(keys)


def list_item_names(text: str, key: str) -> list[str] | None:
    """The `name:` of each item of the top-level list `key:` (a kubeconfig's contexts)."""
    data = _json(text)
    if isinstance(data, dict):
        items = data.get(key)
        if not isinstance(items, list):
            return []
        return _dedupe(
            [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)]
        )
    found = _top_level(text, key)
    if found is None:
        return []
    lines, inline = found
    if inline:
        return [] if inline in ("[]", "~", "null") else None
    names: list[str] = []
    dash: int | None = None
    item_level: int | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        ind = _indent(line)
        is_item = stripped == "-" or stripped.startswith("- ")
        if ind == 0 and not is_item:
            break
        if dash is None:
            if not is_item:
                return None
            dash = ind
        if ind < dash:
            break
        if ind == dash and is_item:
            body = stripped[1:].lstrip(" ")
            item_level = ind + len(stripped) - len(body)
            if not body:
                item_level = None  # the item's keys start on the next line
                continue
        elif item_level is None and ind > dash:
            item_level = ind
            body = stripped
        elif ind == item_level:
            body = stripped
        else:
            continue
        kv = _key_value(body)
        if kv is not None and kv[0] == "name":
            name = _scalar(kv[1])
            if name is not None:
                names.append(name)
    return _dedupe(names)
