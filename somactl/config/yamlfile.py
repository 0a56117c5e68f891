"""YAML with line numbers: load a file and point errors at `file:line: key.path: message`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somactl.core.errors import ConfigError


@dataclass
class YamlDocument:
    path: Path
    data: Any
    root: Any  # the yaml node tree, for line lookups

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node on `loc` that exists."""
        import yaml

        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part or key_node.value == str(part).replace("_", "-"):
                        line = key_node.start_mark.line + 1
                        node = value_node
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def error(self, loc: Sequence[str | int], message: str, hint: str | None = None) -> ConfigError:
        line = self.line_of(loc)
        where = f"{self.path.name}:{line}" if line else self.path.name
        key = ".".join(str(p) for p in loc)
        return ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}", hint)


def load_yaml(path: Path, *, what: str) -> YamlDocument:
    """Read and parse `path`; ConfigError (exit 3) naming the file and line on any problem."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: {what} not found", "create it, or point to one with the right option"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{path.name}{line}: YAML syntax error: {problem}", f"fix the syntax in {path}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: YAML error: {exc}") from None
    return YamlDocument(path=path, data=data, root=root)


def pydantic_error(doc: YamlDocument, exc: Any, hint: str | None = None) -> ConfigError:
    """The first pydantic validation error of `exc` as one located line."""
    first = exc.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = len(exc.errors()) - 1
    if extra:
        msg += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return doc.error(loc, msg, hint)
