"""Typer's shell-completion protocol, answered from the generated table.

This is a faithful re-implementation of what Typer 0.29 (its vendored Click) does when a shell
asks for completions: split the words the way Typer does, parse them down the command tree
with resilient parsing (`_resolve_context`), find what the incomplete word completes
(`_resolve_incomplete`), list candidates and format them for the shell. Each step names the
Typer/Click function it mirrors; tests/completion checks the answers against Typer's own.

Deliberate differences (pinned in tests/completion/test_snapshot.py):
- global options are accepted anywhere on a somactl command line (app.hoist_global_options moves
  them in front before Click parses); completion does the same, so `somactl incident show INC-1
  -o <TAB>` offers the output formats;
- parameters whose kind scripts/gen-completions.py infers from their name (`--context`, `lab
  break SCENARIO`) complete names where Typer, lacking a callback, offers nothing;
- help strings are never wrapped (Typer renders zsh/fish help through rich at the terminal's
  width, which puts newlines into long descriptions);
- no parameter callback runs (Click runs `--version`'s while parsing, which prints the version
  into Typer's answer), and `-h` always comes before `--help` (Click's order comes from a set);
- file parameters (typer.FileText...) get no candidates, so the shell completes file names
  (Typer echoes the word being typed back).
"""

from __future__ import annotations

import marshal
import os
import sys

# `typing` alone costs a tenth of the whole answer: annotations only (they are strings here)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, TypeAlias

    Item: TypeAlias = tuple[str, str | None]  # (value, help)
    Node: TypeAlias = dict[str, Any]
    Param: TypeAlias = dict[str, Any]
    _Spec: TypeAlias = tuple[Param, str, int, Any]  # (param, action, nargs, const)

TABLE_NAME = "somactl-table.json"
TABLE_FORMAT = 1


class _Usage(Exception):
    """Click's UsageError during resilient parsing: parsing stops where it is."""


def table_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), TABLE_NAME)


def _cache_file(env: Mapping[str, str]) -> str:
    home = os.path.expanduser(env.get("HOME", "~"))
    base = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(base, "somactl", "completion-table.marshal")


def load_table(
    path: str | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The generated table, or None when it is missing or not ours.

    `import json` pulls in `re`, which costs more than the rest of a TAB on an interpreter
    whose site did not import it already: the table is read through a marshal copy in
    ~/.cache/somactl, rebuilt from the JSON whenever that file changes.
    """
    path = path or table_path()
    env = os.environ if env is None else env
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, tuple(sys.version_info[:2]))
    cache = _cache_file(env)
    try:
        with open(cache, "rb") as fh:
            # our own cache in the user's ~/.cache, trusted as much as the __pycache__ files
            # Python itself loads with marshal
            cached_key, table = marshal.loads(fh.read())  # noqa: S302
        if cached_key == key and isinstance(table, dict):
            return table
    except (OSError, ValueError, EOFError, TypeError):
        pass
    import json

    try:
        with open(path, "rb") as fh:
            table = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
        return None
    try:
        os.makedirs(os.path.dirname(cache), mode=0o700, exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(marshal.dumps((key, table)))
        os.replace(tmp, cache)
    except (OSError, ValueError):
        pass
    return table


# --- word splitting (click.shell_completion.split_arg_string) ----------------------------------

_SHLEX_PLAIN_WS = frozenset(" \t\r\n")


def split_arg_string(string: str) -> list[str]:
    """Split like `shlex.split` without failing on an unfinished quote (Click's helper).

    Without quotes, backslashes or unusual whitespace this is `str.split()`, which spares the
    shlex import on the hot path.
    """
    if not any(c in "'\"\\" or (c.isspace() and c not in _SHLEX_PLAIN_WS) for c in string):
        return string.split()
    import shlex

    lex = shlex.shlex(string, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out: list[str] = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


# --- global options anywhere (app.hoist_global_options) ----------------------------------------


def hoist_global_options(
    argv: Sequence[str], globals_: Mapping[str, int]
) -> tuple[list[str], list[str], str | None]:
    """(front, rest, pending): app.hoist_global_options, split for completion.

    `pending` is a global option that still waits for its value at the end of the line (its
    value is what is being completed); it is left out of `front`.
    """
    shorts = tuple(k for k, n in globals_.items() if n == 1 and len(k) == 2 and k[1] != "-")
    front: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest.extend(args[i:])
            break
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok
        if name in globals_:
            arity = globals_[name] if "=" not in tok else 0
            if arity and i + arity >= len(args):
                return front, rest, tok
            front.extend(args[i : i + 1 + arity])
            i += 1 + arity
            continue
        if len(tok) > 2 and tok[:2] in shorts and not tok.startswith("--"):
            front.extend([tok[:2], tok[2:]])
            i += 1
            continue
        rest.append(tok)
        i += 1
    return front, rest, None


def completion_args(args: list[str], incomplete: str, globals_: Mapping[str, int]) -> list[str]:
    """The words Typer's resolution sees: the line as `somactl` would parse it when run."""
    front, rest, pending = hoist_global_options(args, globals_)
    if pending is not None:
        # `somactl incident show -o <TAB>`: the value of a global option, completed at the root
        return [*front, pending]
    if "--" not in args and incomplete.startswith("--") and "=" in incomplete:
        name = incomplete.split("=", 1)[0]
        if globals_.get(name) == 1:
            return front  # `--output=<TAB>` anywhere: the root completes it
    return front + rest


# --- resilient parsing (click.parser._OptionParser + Command.parse_args) -----------------------


def _split_opt(opt: str) -> tuple[str, str]:
    first = opt[:1]
    if first.isalnum():
        return "", opt
    if opt[1:2] == first:
        return opt[:2], opt[2:]
    return first, opt[1:]


class Ctx:
    """What Click's Context holds that completion looks at."""

    __slots__ = ("args", "cmdline", "node", "params", "parent", "path", "prefixes", "protected")

    def __init__(self, node: Node, parent: Ctx | None, path: str = "") -> None:
        self.node = node
        self.parent = parent
        self.path = path  # "incident show": the node's key in the table
        self.params: dict[str, Any] = {}
        self.cmdline: set[str] = set()  # parameters whose source is the command line
        self.protected: list[str] = []
        self.args: list[str] = []
        self.prefixes: set[str] = set(parent.prefixes) if parent is not None else set()

    def root(self) -> Ctx:
        ctx = self
        while ctx.parent is not None:
            ctx = ctx.parent
        return ctx


class _Parser:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.short: dict[str, _Spec] = {}
        self.long: dict[str, _Spec] = {}
        self.prefixes: set[str] = {"-", "--"}
        self.arguments: list[Param] = []
        self.interspersed = bool(node.get("interspersed", not node.get("group")))
        self.ignore_unknown = bool(node.get("ignore_unknown"))
        for p in node["params"]:
            if p.get("arg"):
                self.arguments.append(p)
                continue
            action = "append" if p.get("multiple") else "count" if p.get("count") else "store"
            if p.get("flag"):
                if action != "count":
                    action += "_const"
                if p.get("sec") and not p.get("count"):
                    self._add(p, p["opts"], action, 1, True)
                    self._add(p, p["sec"], action, 1, False)
                else:
                    self._add(p, p["opts"], action, 1, True)
            else:
                self._add(p, p["opts"], action, int(p.get("nargs", 1)), None)
        self.opts: dict[str, Any] = {}
        self.largs: list[str] = []
        self.rargs: list[str] = []

    def _add(self, p: Param, opts: Sequence[str], action: str, nargs: int, const: Any) -> None:
        spec: _Spec = (p, action, nargs, const)
        for opt in opts:
            prefix, value = _split_opt(opt)
            if not prefix:
                continue
            self.prefixes.add(prefix[0])
            if len(prefix) == 1 and len(value) == 1:
                self.short[opt] = spec
            else:
                self.long[opt] = spec
                self.prefixes.add(prefix)

    def parse(self, args: list[str]) -> None:
        self.rargs = list(args)
        try:
            self._options()
            self._arguments()
        except _Usage:
            pass  # resilient parsing: keep what was parsed so far

    def _options(self) -> None:
        while self.rargs:
            arg = self.rargs.pop(0)
            if arg == "--":
                return
            if arg[:1] in self.prefixes and len(arg) > 1:
                self._process_opts(arg)
            elif self.interspersed:
                self.largs.append(arg)
            else:
                self.rargs.insert(0, arg)
                return

    def _arguments(self) -> None:
        pargs, rest = _unpack_args(
            self.largs + self.rargs, [p.get("nargs", 1) for p in self.arguments]
        )
        for idx, p in enumerate(self.arguments):
            value: Any = pargs[idx]
            nargs = p.get("nargs", 1)
            if nargs > 1:
                holes = sum(1 for x in value if x is None)
                if holes == len(value):
                    value = None
                elif holes:
                    raise _Usage
            if nargs == -1 and value == ():
                value = None
            self.opts[p["name"]] = value
        self.largs = rest
        self.rargs = []

    def _process_opts(self, arg: str) -> None:
        explicit: str | None = None
        if "=" in arg:
            long_opt, explicit = arg.split("=", 1)
        else:
            long_opt = arg
        if long_opt in self.long:
            self._match_long(long_opt, explicit)
            return
        if arg[:2] not in self.prefixes:
            self._match_short(arg)
            return
        if not self.ignore_unknown:
            raise _Usage
        self.largs.append(arg)

    def _match_long(self, opt: str, explicit: str | None) -> None:
        spec = self.long[opt]
        if spec[1] in ("store", "append"):
            if explicit is not None:
                self.rargs.insert(0, explicit)
            value = self._value(spec[2])
        elif explicit is not None:
            raise _Usage
        else:
            value = None
        self._store(spec, value)

    def _match_short(self, arg: str) -> None:
        stop = False
        i = 1
        prefix = arg[0]
        unknown: list[str] = []
        for ch in arg[1:]:
            spec = self.short.get(f"{prefix}{ch}")
            i += 1
            if spec is None:
                if self.ignore_unknown:
                    unknown.append(ch)
                    continue
                raise _Usage
            if spec[1] in ("store", "append"):
                if i < len(arg):
                    self.rargs.insert(0, arg[i:])
                    stop = True
                value = self._value(spec[2])
            else:
                value = None
            self._store(spec, value)
            if stop:
                break
        if self.ignore_unknown and unknown:
            self.largs.append(f"{prefix}{''.join(unknown)}")

    def _value(self, nargs: int) -> Any:
        if len(self.rargs) < nargs:
            raise _Usage
        if nargs == 1:
            return self.rargs.pop(0)
        value = tuple(self.rargs[:nargs])
        del self.rargs[:nargs]
        return value

    def _store(self, spec: _Spec, value: Any) -> None:
        p, action, _nargs, const = spec
        name = p["name"]
        if action == "store":
            self.opts[name] = value
        elif action == "store_const":
            self.opts[name] = const
        elif action == "append":
            self.opts.setdefault(name, []).append(value)
        elif action == "append_const":
            self.opts.setdefault(name, []).append(const)
        else:  # count
            self.opts[name] = self.opts.get(name, 0) + 1


def _unpack_args(args: Sequence[str], nargs_spec: Sequence[int]) -> tuple[list[Any], list[str]]:
    """click.parser._unpack_args (with lists: `collections` is not imported yet here)."""
    rest: list[Any] = list(args)
    spec: list[Any] = list(nargs_spec)
    rv: list[Any] = []
    spos: int | None = None

    def fetch(c: list[Any]) -> Any:
        if not c:
            return None
        return c.pop(0) if spos is None else c.pop()

    while spec:
        nargs = fetch(spec)
        if nargs == 1:
            rv.append(fetch(rest))
        elif nargs > 1:
            x = [fetch(rest) for _ in range(nargs)]
            if spos is not None:
                x.reverse()
            rv.append(tuple(x))
        elif nargs < 0:
            spos = len(rv)
            rv.append(None)
    if spos is not None:
        rv[spos] = tuple(rest)
        rest = []
        rv[spos + 1 :] = reversed(rv[spos + 1 :])
    return rv, list(rest)


def make_context(node: Node, args: list[str], parent: Ctx | None, path: str = "") -> Ctx:
    """Command.make_context with resilient_parsing=True."""
    ctx = Ctx(node, parent, path)
    parser = _Parser(node)
    parser.parse(args)
    for p in node["params"]:
        name = p["name"]
        value = parser.opts.get(name)
        if value is not None:
            ctx.cmdline.add(name)
        ctx.params[name] = value
    ctx.prefixes.update(parser.prefixes)
    if node.get("group"):
        if parser.largs:
            ctx.protected, ctx.args = parser.largs[:1], parser.largs[1:]
    else:
        ctx.args = parser.largs
    return ctx


def resolve_context(nodes: Mapping[str, Node], args: list[str]) -> Ctx:
    """click.shell_completion._resolve_context (TyperGroup.resolve_command by name)."""
    ctx = make_context(nodes[""], list(args), None)
    rest = ctx.protected + ctx.args
    while rest and ctx.node.get("group"):
        if rest[0] not in ctx.node.get("cmds", ()):
            return ctx
        path = f"{ctx.path} {rest[0]}".lstrip()
        ctx = make_context(nodes[path], rest[1:], ctx, path)
        rest = ctx.protected + ctx.args
    return ctx


def _start_of_option(ctx: Ctx, value: str) -> bool:
    return bool(value) and value[0] in ctx.prefixes


def _incomplete_option(ctx: Ctx, args: list[str], p: Param) -> bool:
    if p.get("arg") or p.get("flag") or p.get("count"):
        return False
    last: str | None = None
    nargs = int(p.get("nargs", 1))
    for index, arg in enumerate(reversed(args)):
        if index + 1 > nargs:
            break
        if _start_of_option(ctx, arg):
            last = arg
            break
    return last is not None and last in p["opts"]


def _incomplete_argument(ctx: Ctx, p: Param) -> bool:
    if not p.get("arg"):
        return False
    nargs = int(p.get("nargs", 1))
    value = ctx.params.get(p["name"])
    return (
        nargs == -1
        or p["name"] not in ctx.cmdline
        or (nargs > 1 and isinstance(value, tuple | list) and len(value) < nargs)
    )


def resolve_incomplete(ctx: Ctx, args: list[str], incomplete: str) -> tuple[Param | None, str]:
    """click.shell_completion._resolve_incomplete: (the parameter or None for the command, word)."""
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and _start_of_option(ctx, incomplete):
        name, _, incomplete = incomplete.partition("=")
        args.append(name)
    if "--" not in args and _start_of_option(ctx, incomplete):
        return None, incomplete
    params = ctx.node["params"]
    for p in params:
        if _incomplete_option(ctx, args, p):
            return p, incomplete
    for p in params:
        if _incomplete_argument(ctx, p):
            return p, incomplete
    return None, incomplete


# --- candidates ---------------------------------------------------------------------------------


def command_items(ctx: Ctx, incomplete: str) -> list[Item]:
    """TyperGroup.shell_complete / Command.shell_complete: subcommands, then option names."""
    node = ctx.node
    items: list[Item] = []
    if node.get("group"):
        items.extend((n, h) for n, h in node.get("list", ()) if n.startswith(incomplete))
    if incomplete and not incomplete[0].isalnum():
        for p in node["params"]:
            if p.get("arg") or p.get("hidden"):
                continue
            if not p.get("multiple") and p["name"] in ctx.cmdline:
                continue
            names = [*p["opts"], *p.get("sec", ())]
            items.extend((n, p.get("help")) for n in names if n.startswith(incomplete))
    return items


def param_items(
    table: Mapping[str, Any], ctx: Ctx, p: Param, incomplete: str, env: Mapping[str, str]
) -> list[Item]:
    """TyperArgument/TyperOption.shell_complete: custom values, then choices; files: none."""
    kind = p.get("kind")
    if kind is not None:
        from somactl.complete.sources import values

        found = values(kind, table, ctx.root().params, env)
        return [(v, None) for v in found if v.startswith(incomplete)]
    if "values" in p:
        return [(v, h) for v, h in p["values"] if v.startswith(incomplete)]
    choices = p.get("choices")
    if choices is not None:
        if p.get("ci"):
            low = incomplete.lower()
            return [(c, None) for c in choices if c.lower().startswith(low)]
        return [(c, None) for c in choices if c.startswith(incomplete)]
    return []


def completions(
    table: Mapping[str, Any], args: list[str], incomplete: str, env: Mapping[str, str]
) -> list[Item]:
    """ShellComplete.get_completions over the table."""
    words = completion_args(args, incomplete, table.get("globals", {}))
    ctx = resolve_context(table["nodes"], words)
    param, incomplete = resolve_incomplete(ctx, words, incomplete)
    if param is None:
        return command_items(ctx, incomplete)
    return param_items(table, ctx, param, incomplete, env)


# --- shells (typer._completion_classes) ---------------------------------------------------------


def _zsh_escape(s: str) -> str:
    return (
        s.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def _help_form(table: Mapping[str, Any], text: str, form: str, default: str) -> str:
    """Typer passes help through rich (markup, emoji codes): the generator stored any change."""
    override = table.get("help", {}).get(text)
    if override is not None and form in override:
        return str(override[form])
    return default


def format_items(table: Mapping[str, Any], shell: str, items: list[Item]) -> str:
    if shell == "bash":
        return "\n".join(v for v, _ in items)
    if shell == "zsh":
        if not items:
            return "_files"
        lines = []
        for value, help_ in items:
            if help_:
                shown = _help_form(table, help_, "z", _zsh_escape(help_))
                lines.append(f'"{_zsh_escape(value)}":"{shown}"')
            else:
                lines.append(f'"{_zsh_escape(value)}"')
        body = "\n".join(lines)
        return f"_arguments '*: :(({body}))'"
    if shell == "fish":
        out = []
        for value, help_ in items:
            if help_:
                out.append(f"{value}\t{_help_form(table, help_, 'f', help_)}")
            else:
                out.append(value)
        return "\n".join(out)
    # powershell / pwsh
    return "\n".join(f"{v}:::{_help_form(table, h, 'p', h) if h else ' '}" for v, h in items)


def shell_request(env: Mapping[str, str], shell: str) -> tuple[list[str], str]:
    """(args, incomplete) from the environment, as each Typer shell class reads them."""
    if shell == "bash":
        cwords = split_arg_string(env["COMP_WORDS"])
        cword = int(env["COMP_CWORD"])
        args = cwords[1:cword]
        try:
            incomplete = cwords[cword]
        except IndexError:
            incomplete = ""
        return args, incomplete
    line = env.get("_TYPER_COMPLETE_ARGS", "")
    cwords = split_arg_string(line)
    if shell in ("powershell", "pwsh"):
        incomplete = env.get("_TYPER_COMPLETE_WORD_TO_COMPLETE", "")
        return (cwords[1:-1] if incomplete else cwords[1:]), incomplete
    args = cwords[1:]
    if args and not line.endswith(" "):
        return args[:-1], args[-1]
    return args, ""


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def answer(table: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str | None, int]:
    """(text to print or None, exit status) for the request in `env`."""
    instruction, _, shell = env.get("_SOMACTL_COMPLETE", "").partition("_")
    if shell not in SHELLS:
        return None, 0
    if instruction == "source":
        from somactl.complete.scripts import script

        return (script(shell) if shell in ("bash", "zsh", "fish") else None), 0
    if instruction != "complete":
        return None, 0
    args, incomplete = shell_request(env, shell)
    items = completions(table, args, incomplete, env)
    if shell == "fish":
        action = env.get("_TYPER_COMPLETE_FISH_ACTION", "")
        if action == "is-args":
            return None, 0 if items else 1
        if action != "get-args":
            return "", 0
    return format_items(table, shell, items), 0


def respond(environ: Mapping[str, str] | None = None) -> None:
    """Print the answer and end the process; return only if the table is unreadable."""
    env = os.environ if environ is None else environ
    table = load_table(env=env)
    if table is None:
        return
    code = 0
    try:
        text, code = answer(table, env)
    except Exception:  # noqa: BLE001 - completion never fails loudly: no candidates instead
        text, code = "", 0
    try:
        if text is not None:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    # nothing to clean up: skip interpreter shutdown (a measurable share of a TAB)
    os._exit(code)
