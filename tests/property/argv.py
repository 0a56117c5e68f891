"""Random command lines for every somactl command, built from the real Typer tree.

`leaves()` walks `typer.main.get_command(somactl.app.app)` through the lazy registry (every group
is loaded the way a user's command line loads it), so a new command or option is covered without
touching this file. `argv_for(path, command)` draws a command line from the command's own
parameters: each value is either plausible (a runbook service, a duration, an incident id, so the
run gets past parsing) or hostile (unicode, `--`, huge and negative numbers, empty strings,
`web;rm -rf /`, `../../`, NUL bytes, bogus durations), the options in any order and form
(`--opt value`, `--opt=value`), global options before or after the subcommand, and sometimes
junk tokens at the end.

Never generated: the consent flags (`--yes`/`-y`: the property is what happens *without*
consent), and `--help` (a fast path with nothing to check). `--watch` comes only with a
`--count` that ends the loop.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from hypothesis import strategies as st
from typer import _click

# Commands that start long-lived processes by design; run with random arguments they would
# start a whole lab (Postgres, Redis, Prometheus) or serve until Ctrl-C. Each is still walked
# (so the list below must name real commands) and run with `--help`.
EXCLUDED: dict[tuple[str, ...], str] = {
    ("lab", "up"): "starts a whole lab",
    ("lab", "reset"): "stops, wipes and starts a whole lab",
    ("lab", "kube-api"): "serves a simulated API server until Ctrl-C",
    ("lab", "drill"): "starts a lab and waits for a person to fix it",
}
CONSENT = {"yes"}

HOSTILE = [
    "",
    " ",
    "--",
    "-",
    "-1",
    "0",
    "99999999999999999999999999",
    "-99999999999999999999999999",
    "1e400",
    "nan",
    "inf",
    "web;rm -rf /",
    "gateway-api; kubectl delete ns somagent-production",
    "$(id)",
    "`id`",
    "'; DROP TABLE incidents; --",
    "../../",
    "../../etc/passwd",
    "a/../../b",
    "\x00",
    "gateway\x00-api",
    "gateway-api\n",
    "ｇａｔｅｗａｙ",
    "💥",
    "\u202egateway",
    "%s%n%x",
    "{{7*7}}",
    "GATEWAY-API",
    "x" * 300,
    "INC-0",
    "INC-99999999999999999999",
    "P9",
    "-5m",
    "0s",
    "10xs",
    "5 m",
    "1h30",
    "∞s",
    "1e999s",
]
DURATIONS = ["1s", "5m", "30s", "0.5s", "2h", "1m30s", "0s", "-1s", "1e9s", "abc", "5", "nan s"]

PLAUSIBLE: dict[str, list[str]] = {
    "service": ["gateway-api", "orchestrator", "kamachiq-service", "postgres", "redis"],
    "tool": ["github", "slack", "notion"],
    "provider": ["github", "slack"],
    "scenario": ["gateway-api-down", "database-performance", "memory-leak", "high-load"],
    "incident": ["INC-1", "1", "INC-2"],
    "level": ["P0", "P1", "P2", "P3", "P4"],
    "severity": ["P0", "P1", "P2", "P3", "P4"],
    "shell": ["bash", "zsh", "fish"],
    "name": ["prop", "lab"],
    "section": ["services", "severities", "scenarios", "escalation"],
    "verb": ["enable", "disable", "status"],
    "state": ["active", "idle-in-transaction"],
    "dry_run_mode": ["client", "server"],
    "kind": ["note", "declared", "action_applied"],
    "fmt": ["markdown", "json"],
    "database": ["somagent", "postgres"],
    "user": ["app", "somagent"],
    "status": ["investigating", "identified", "monitoring"],
    "commander": ["@alice"],
    "responder": ["@bob"],
    "text": ["looking at the gateway"],
    "title": ["gateway down"],
    "impact": ["all users"],
    "signal": ["error_rate=1.0", "p95=6"],
    "service_down": ["gateway-api"],
}
DURATION_PARAMS = {"older_than", "grace", "verify", "long_running", "give_up"}

hostile = st.sampled_from(HOSTILE)
small_text = st.text(max_size=12)


def leaves() -> Iterator[tuple[tuple[str, ...], _click.Command]]:
    """Every runnable command of the real tree (groups expanded), as (path, command)."""
    from somactl.app import app

    root = typer.main.get_command(app)
    ctx = _click.Context(root)

    def walk(cmd: _click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
                assert sub is not None, f"{' '.join((*path, name))} is listed but does not load"
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    yield from walk(root, ())


def _base(annotation: Any) -> Any:
    """The runtime type under Optional/Annotated/list."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base(args[0]) if args else str
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return _base(args[0]) if args else str
    return annotation


def _annotation(param: Any) -> Any:
    td = getattr(param, "type_descriptor", None)
    return _base(td.annotation) if td is not None else str


def paths() -> st.SearchStrategy[str]:
    """Relative paths (the test runs in a deep temp dir, so `../../` stays inside it), a missing
    absolute path, NUL bytes, and files that exist."""
    return st.one_of(
        st.sampled_from(
            [
                "",
                ".",
                "../../",
                "../../x.md",
                "out/report.md",
                "/nonexistent/somactl/x",
                "a\x00b",
                "runbooks.yaml",
                "empty.yaml",
                "bad.yaml",
                "💥.md",
            ]
        ),
        small_text.map(lambda s: "p-" + s.replace("/", "_")),
    )


def value_for(param: Any, mode: str = "mixed") -> st.SearchStrategy[str]:
    """A value for `param`: plausible (gets the run past parsing), typed, or hostile."""
    name = param.name or ""
    kind = _annotation(param)
    plausible: list[str] = list(PLAUSIBLE.get(name, []))
    if name in DURATION_PARAMS:
        plausible += DURATIONS[:5]
    choices = getattr(getattr(param, "type", None), "choices", None)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        plausible += [str(m.value) for m in kind]
    elif choices:
        plausible += [str(c) for c in choices]
    if isinstance(kind, type) and issubclass(kind, bool):
        sane: st.SearchStrategy[str] = st.sampled_from(["true", "false"])
        typed: st.SearchStrategy[str] = st.sampled_from(["true", "false", "1", "yes", "maybe"])
    elif isinstance(kind, type) and issubclass(kind, int):
        sane = st.integers(0, 12).map(str)
        typed = st.one_of(
            st.integers(-3, 20).map(str),
            st.integers(-(2**80), 2**80).map(str),
            st.sampled_from(["0x10", "1_000", "1.5", "abc", "", "٣"]),
        )
    elif isinstance(kind, type) and issubclass(kind, float):
        sane = st.sampled_from(["0.5", "1", "6", "0.99"])
        typed = st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["1e308", "-0.0", "0.95", "abc", ""]),
        )
    elif isinstance(kind, type) and issubclass(kind, Path):
        sane = st.sampled_from(["runbooks.yaml", "out/report.md", "snap"])
        typed = paths()
    else:
        sane = st.sampled_from(["gateway-api", "x", "note"])
        typed = small_text
    if mode == "plausible":
        return st.sampled_from(plausible) if plausible else sane
    if mode == "hostile":
        return st.one_of(hostile, typed)
    options = [typed, hostile]
    if plausible:
        options.insert(0, st.sampled_from(plausible))
    return st.one_of(*options)


def global_options(mode: str = "mixed") -> st.SearchStrategy[list[str]]:
    if mode == "plausible":
        sane = st.sampled_from(
            [
                ["-o", "json"],
                ["-o", "yaml"],
                ["--timeout", "3s"],
                ["--debug"],
                ["--context", "prop"],
            ]
        )
        return st.lists(sane, max_size=2).map(lambda chunks: [w for c in chunks for w in c])
    one = st.one_of(
        st.sampled_from(["json", "yaml", "table", "xml", ""]).map(lambda v: ["-o", v]),
        st.sampled_from(["json", "yaml"]).map(lambda v: [f"--output={v}"]),
        st.sampled_from(["3s", "0.001s", "1e9s", "-1s", "abc", "0s", ""]).map(
            lambda v: ["--timeout", v]
        ),
        st.just(["--debug"]),
        st.one_of(st.sampled_from(["prop", "nope", "../../"]), hostile).map(
            lambda v: ["--context", v]
        ),
        st.one_of(st.just("somagent-production"), hostile).map(lambda v: ["-n", v]),
        paths().map(lambda v: ["--runbooks", v]),
    )
    return st.lists(one, max_size=3).map(lambda chunks: [w for c in chunks for w in c])


@st.composite
def argv_for(draw: st.DrawFn, path: tuple[str, ...], command: _click.Command) -> list[str]:
    """A command line for `path`: its own parameters with random values, globals anywhere.

    A third of the examples are plausible throughout (they get past parsing and reach the
    backends, the plan and the consent question), a third mixed, a third hostile."""
    mode = draw(st.sampled_from(["plausible", "mixed", "hostile"]))
    argument_values: list[list[str]] = []
    option_chunks: list[list[str]] = []
    names = {p.name for p in command.params}
    for p in command.params:
        if p.name in CONSENT or p.name in {"help", "count"}:
            continue
        opts = list(getattr(p, "opts", []))
        if not opts or not opts[0].startswith("-"):  # an argument
            nargs = getattr(p, "nargs", 1)
            if nargs == -1:
                argument_values.append(draw(st.lists(value_for(p, mode), max_size=3)))
            elif mode == "plausible" or draw(st.integers(0, 9)) > 0:  # sometimes missing
                argument_values.append([draw(value_for(p, mode))])
            continue
        if getattr(p, "is_flag", False):
            if draw(st.booleans()):
                secondary = list(getattr(p, "secondary_opts", []))
                option_chunks.append([draw(st.sampled_from(opts + secondary))])
            continue
        required = bool(getattr(p, "required", False))
        low = 1 if required and mode == "plausible" else 0
        times = draw(st.integers(low, 2 if getattr(p, "multiple", False) else 1))
        for _ in range(times):
            opt = draw(st.sampled_from(opts))
            if p.name == "watch":
                sane = mode == "plausible"
                value = draw(st.sampled_from(["0.01s"] if sane else ["0.01s", "0s", "-1s", "abc"]))
                count = draw(st.sampled_from(["1", "2"] if sane else ["1", "2", "-1", "abc"]))
                option_chunks.append([opt, value, "--count", count])
                continue
            value = draw(value_for(p, mode))
            if opt.startswith("--") and draw(st.integers(0, 4)) == 0:
                option_chunks.append([f"{opt}={value}"])
            else:
                option_chunks.append([opt, value])
    if "count" in names and "watch" not in names:
        option_chunks.append(
            ["--count", draw(value_for(next(p for p in command.params if p.name == "count")))]
        )
    if "dry_run" in names and draw(st.integers(0, 5)) == 0:
        option_chunks.append(["--dry-run=server"])
    # options anywhere between the arguments, arguments in their order
    slots = draw(st.permutations(option_chunks + [[]] * len(argument_values)))
    words: list[str] = []
    args = iter(argument_values)
    for chunk in slots:
        words.extend(chunk if chunk else next(args))
    front = draw(global_options(mode))
    back = draw(global_options(mode))
    junk: list[str] = []
    if mode != "plausible":
        extra = st.one_of(st.sampled_from(["--", "--bogus", "-z"]), hostile)
        junk = draw(st.lists(extra, max_size=2))
    return [*front, *path, *words, *back, *junk]
