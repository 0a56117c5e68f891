"""Load runbooks.yaml: YAML with line marks -> strict models -> resolved references.

Every problem becomes one ConfigError line: `<file>:<line>: <key.path>: <message>`. The YAML is
composed once into a node tree (which keeps each node's line) and constructed into Python data
from that same tree; a pydantic error location or a dangling reference's key path is walked down
the node tree to find its line.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import somactl
from somactl.core.errors import ConfigError
from somactl.runbook.references import Problem, reference_problems
from somactl.runbook.schema import Runbook

ENV_VAR = "SOMACTL_RUNBOOKS"
Loc = tuple[str | int, ...]

# libyaml's parser keeps marks too and is several times faster than the pure-Python one
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shipped_path() -> Path:
    """The runbooks.yaml inside the installed package (a link to the repo root's file)."""
    return Path(somactl.__file__).resolve().parent / "runbooks.yaml"


def default_path() -> Path:
    """`$SOMACTL_RUNBOOKS` if set, else the shipped runbooks.yaml."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else shipped_path()


@dataclass(frozen=True)
class LocatedError:
    line: int
    path: str
    message: str

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


_cache: dict[tuple[str, int, int], Runbook] = {}


def load_runbook(path: str | os.PathLike[str] | None = None) -> Runbook:
    """The runbook at `path` (default: `default_path()`), validated and cross-checked.

    Raises ConfigError (exit 3) with one `file:line: key.path: message` line.
    """
    target = Path(path) if path is not None else default_path()
    try:
        stat = target.stat()
        key = (str(target.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _cache:
            return _cache[key]
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{target}: runbooks file not found",
            f"pass --runbooks PATH or set {ENV_VAR} to an existing runbooks.yaml",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{target}: is a directory, not a runbooks.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{target}: cannot read: {reason}") from None
    runbook = parse_runbook(text, source=str(target))
    _cache[key] = runbook
    _remember_for_completion(key, runbook)
    return runbook


def _remember_for_completion(key: tuple[str, int, int], runbook: Runbook) -> None:
    """Shell completion offers a user's own runbook's names from a cache it need not parse.

    The shipped file's names are in the generated completion table already. Silent, and a no-op
    write when the cache already has this version of the file.
    """
    if key[0] == str(shipped_path().resolve()):
        return
    from somactl.complete.cache import remember_runbook

    services = runbook.services
    remember_runbook(
        key[0],
        key[1],
        key[2],
        {
            "services": list(services),
            "scenarios": list(runbook.scenarios),
            "tools": [name for name, s in services.items() if s.kind == "tool-adapter"],
        },
    )


def names_for_completion(section: str, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Keys of a runbook section (services, scenarios...) for shell completion; [] if unloadable."""
    try:
        data = load_runbook(path).dump(section)
    except (ConfigError, KeyError):
        return []
    return list(data) if isinstance(data, dict) else []


def parse_runbook(text: str, source: str = "runbooks.yaml") -> Runbook:
    """Validate runbooks.yaml `text`; `source` names it in error messages."""
    root, data = _compose(text, source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:{_line(root)}: expected a mapping with `version: 1` at the top level"
        )
    errors = _duplicate_keys(root)
    if errors:
        raise _config_error(source, errors)
    try:
        runbook = Runbook.model_validate(data)
    except Exception as exc:
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        raise _config_error(source, _pydantic_errors(root, exc)) from None
    problems = reference_problems(runbook)
    if problems:
        raise _config_error(source, [_locate(root, p.loc, p.message) for p in problems])
    return runbook


def format_errors(errors: Sequence[LocatedError], source: str) -> list[str]:
    return [e.format(source) for e in sorted(errors, key=lambda e: e.line)]


def _config_error(source: str, errors: list[LocatedError]) -> ConfigError:
    lines = format_errors(errors, source)
    more = len(lines) - 1
    message = lines[0] + (f" (and {more} more)" if more else "")
    hint = "fix the line named above, then `somactl runbook validate`"
    if more:
        hint = "also: " + "; ".join(lines[1:4]) + ("; ..." if more > 3 else "")
    return ConfigError(message, hint)


# -- YAML with marks ---------------------------------------------------------------------------


def _compose(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or "invalid YAML"
        if exc.context:
            what += f" ({exc.context})"
        raise ConfigError(f"{source}:{line}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:1: YAML syntax error: {exc}") from None
    finally:
        loader.dispose()
    return node, data


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _duplicate_keys(
    node: yaml.Node | None, loc: Loc = (), seen_nodes: set[int] | None = None
) -> list[LocatedError]:
    errors: list[LocatedError] = []
    # aliases share nodes: visit each once, or `&a [*b, *b, ...]` chains take exponential time
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return errors
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                errors.append(
                    LocatedError(_line(key), _dotted((*loc, name)), f"duplicate key {name!r}")
                )
            seen.add(name)
            errors.extend(_duplicate_keys(value, (*loc, name), seen_nodes))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            errors.extend(_duplicate_keys(item, (*loc, i), seen_nodes))
    return errors


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk(root: yaml.Node | None, loc: Loc) -> tuple[int, Loc, bool]:
    """Follow `loc` down the node tree: (line, the part of loc found, whether all was found).

    The line is the key's line for a mapping entry (where the reader looks), the item's line for
    a sequence entry.
    """
    node = root
    line = _line(root)
    found: list[str | int] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if str(key.value) == part:
                    line = _line(key) if not isinstance(value, yaml.ScalarNode) else _line(value)
                    node = value
                    break
            else:
                return line, tuple(found), False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line, tuple(found), False
            node = node.value[part]
            line = _line(node)
        else:
            return line, tuple(found), False
        found.append(part)
    return line, tuple(found), True


def _locate(root: yaml.Node | None, loc: Loc, message: str) -> LocatedError:
    line, found, _ = _walk(root, loc)
    shown = loc if len(found) >= len(loc) - 1 else found
    return LocatedError(line, _dotted(shown), message)


def _pydantic_errors(root: yaml.Node | None, exc: Any) -> list[LocatedError]:
    errors: list[LocatedError] = []
    seen: set[tuple[int, str]] = set()
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        message = str(err["msg"]).removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            message = f"invalid key: {message}"
        line, found, complete = _walk(root, loc)
        if kind == "extra_forbidden":
            allowed = _known_keys(loc[:-1])
            message = f"unknown key {loc[-1]!r}" + (
                f" (expected one of: {', '.join(allowed)})" if allowed else ""
            )
            shown = loc
        elif kind == "missing":
            message = "required key missing"
            shown = loc
        else:
            # union members and model validators add loc parts with no YAML behind them
            shown = loc if complete else found
        entry = LocatedError(line, _dotted(shown), message)
        if (entry.line, entry.path) in seen:
            continue
        seen.add((entry.line, entry.path))
        errors.append(entry)
    return errors


def _known_keys(loc: Loc) -> list[str]:
    """The keys the model at `loc` accepts (best effort, for unknown-key messages)."""
    from pydantic import BaseModel

    tp: Any = Runbook
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            tp = field.annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif typing.get_origin(tp) is tuple:
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _strip(tp: Any) -> Any:
    """Unwrap Annotated[...] and Optional[...] down to the model/collection type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


__all__ = [
    "ENV_VAR",
    "LocatedError",
    "Problem",
    "default_path",
    "load_runbook",
    "names_for_completion",
    "parse_runbook",
    "shipped_path",
]
