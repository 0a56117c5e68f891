"""Typer's own completion, for a batch of requests: the reference the fast path must equal.

Run as a script (one process, Typer imported once):

    python tests/completion/typer_reference.py [--patch-inferred] < requests.json > answers.json

requests.json: a list of environments (the protocol variables of one request each); answers:
a list of [stdout, exit status]. This is exactly what `SOMACTL_COMPLETE_SLOW=1 somactl` runs
(typer.completion.shell_complete over somactl.app's tree), batched.

--patch-inferred gives the parameters whose kind the generator inferred from their name (Typer
itself offers nothing there) the matching somactl.complete.callbacks callback, through Typer's
own autocompletion machinery: then the comparison checks how the fast path parses and resolves
the line, against Typer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any

os.environ.setdefault("TERMINAL_WIDTH", "100000")  # read when typer.rich_utils is imported

PROTOCOL = (
    "_SOMACTL_COMPLETE",
    "COMP_WORDS",
    "COMP_CWORD",
    "_TYPER_COMPLETE_ARGS",
    "_TYPER_COMPLETE_FISH_ACTION",
    "_TYPER_COMPLETE_WORD_TO_COMPLETE",
)


def patch_inferred(cmd: Any, ctx: Any, nodes: dict[str, Any], path: str = "") -> int:
    from typer.core import TyperGroup, _typer_param_setup_autocompletion_compat
    from typer.main import get_param_completion

    from somactl.complete.callbacks import BY_KIND

    patched = 0
    node = nodes[path]
    params = cmd.get_params(ctx)
    if [p.name for p in params] != [e["name"] for e in node["params"]]:
        raise SystemExit(f"the table is stale at {ctx.command_path}")
    for p, e in zip(params, node["params"], strict=True):
        if e.get("inferred"):
            cb = get_param_completion(BY_KIND[e["kind"]])
            _typer_param_setup_autocompletion_compat(p, autocompletion=cb)
            patched += 1
    if isinstance(cmd, TyperGroup):
        for name in node.get("cmds", []):
            sub = cmd.get_command(ctx, name)
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            patched += patch_inferred(sub, sub_ctx, nodes, f"{path} {name}".lstrip())
    return patched


def main() -> int:
    import typer
    from typer._completion_classes import completion_init
    from typer.completion import shell_complete

    from somactl.app import app
    from somactl.complete.engine import load_table

    completion_init()
    cli = typer.main.get_command(app)
    if "--patch-inferred" in sys.argv:
        table = load_table()
        if table is None:
            raise SystemExit("no completion table")
        ctx = cli.make_context("somactl", [], resilient_parsing=True)
        patch_inferred(cli, ctx, table["nodes"])
    requests = json.load(sys.stdin)
    answers: list[list[Any]] = []
    for request in requests:
        for var in PROTOCOL:
            os.environ.pop(var, None)
        os.environ.update(request)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                code: Any = shell_complete(
                    cli, {}, "somactl", "_SOMACTL_COMPLETE", request["_SOMACTL_COMPLETE"]
                )
            except SystemExit as exc:
                code = exc.code
        answers.append([out.getvalue(), code if isinstance(code, int) else 0])
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
