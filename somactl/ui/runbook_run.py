"""The terminal side of `somactl runbook run`: walk the steps, show findings, ask the person.

- A check step runs and shows its findings.
- An action step goes through the one executor (`ui.actions.execute_embedded`): the plan is
  shown, then the person types `yes` (or the target's name for high-impact actions) to approve,
  `skip` (and a reason) or `stop`. `--yes` approves every action. Without a terminal (or with
  -o json|yaml) and without `--yes` the action is refused and the run stops there (exit 4):
  an action is never skipped silently.
- A manual step shows its instructions and asks `done`, `skip` (and a reason) or `stop`; with
  nobody to ask (no terminal, or -o json|yaml) it is left pending.

Step progress goes to stdout in table mode (it is what the command shows) and to stderr with
-o json|yaml (stdout then carries only the envelope); questions go to the terminal (stderr).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from somactl.core.errors import NotConfirmedError, SomactlError
from somactl.core.options import GlobalOptions
from somactl.core.redact import redact
from somactl.core.result import Result
from somactl.ops import runbook_run as rr
from somactl.ui.consent import require_consent
from somactl.ui.output import say, warn, write_stdout

if TYPE_CHECKING:
    from rich.console import RenderableType

ATTEMPTS = 3


def _tty() -> tuple[TextIO, TextIO] | None:
    if sys.stdin is not None and sys.stdin.isatty():
        return sys.stdin, sys.stderr
    return None


def _ask(question: str) -> str | None:
    """One line from the terminal (None at end of input)."""
    streams = _tty()
    if streams is None:
        return None
    stdin, stderr = streams
    stderr.write(question)
    stderr.flush()
    try:
        answer = stdin.readline()
    except EOFError:
        return None
    return answer.strip() if answer else None


def _reason() -> str:
    for _ in range(ATTEMPTS):
        answer = _ask("Why skip it? (recorded on the incident timeline): ")
        if answer is None:
            raise rr.RunStopped("stopped: no reason given for the skip")
        if answer:
            return answer
    raise rr.RunStopped("stopped: no reason given for the skip")


def ask_action(opts: GlobalOptions, *, yes: bool, what: str, typed_name: str | None = None) -> str:
    """Consent for an action step: `require_consent`'s rules, plus `skip` and `stop`."""
    if yes or opts.machine_output or _tty() is None:
        return require_consent(opts, yes=yes, what=what, typed_name=typed_name)
    expected = typed_name or "yes"
    question = (
        f"Type the name '{typed_name}' to {what}" if typed_name else f"Type 'yes' to {what}"
    ) + ", 'skip' to skip this step, 'stop' to end the runbook: "
    for _ in range(ATTEMPTS):
        answer = _ask(question)
        if answer is None:
            raise NotConfirmedError("aborted: no answer", "nothing was changed")
        if answer == expected:
            return "typed name" if typed_name else "typed yes"
        if answer == "skip":
            raise rr.StepSkipped(_reason())
        if answer == "stop":
            raise rr.RunStopped()
        if typed_name:
            sys.stderr.write(f"the name did not match '{typed_name}'\n")
        else:
            sys.stderr.write("answer 'yes', 'skip' or 'stop'\n")
    raise NotConfirmedError(
        "aborted: no valid answer" if typed_name is None else "aborted: the name did not match",
        "nothing was changed",
    )


class Walker:
    def __init__(self, ctx: rr.RunContext, *, yes: bool) -> None:
        self.ctx = ctx
        self.opts = ctx.opts
        self.yes = yes

    def show(self, text: str) -> None:
        if self.opts.machine_output:
            say(text)
        else:
            write_stdout(redact(text))

    # --- the walk ----------------------------------------------------------------------------

    def run(self) -> Result:
        ctx = self.ctx
        self.intro()
        stopped: rr.StepRecord | None = None
        for step in ctx.steps:
            if stopped is not None:
                rr.record(
                    ctx,
                    rr.StepRecord(
                        step, "not-run", reason=f"the run ended at step {stopped.step.n}"
                    ),
                )
                continue
            self.header(step)
            try:
                rec = self.step(step)
            except KeyboardInterrupt:
                rr.record(ctx, rr.StepRecord(step, "stopped", reason="interrupted (Ctrl-C)"))
                raise
            rr.record(ctx, rec)
            self.outcome(rec)
            if rec.outcome in ("stopped", "refused"):
                stopped = rec
        self.show("")
        self.show(f"checking the state of {ctx.service}...")
        state = rr.final_state(ctx)
        return rr.finish(ctx, state)

    def intro(self) -> None:
        ctx = self.ctx
        self.show(
            f"Runbook {ctx.scenario.title} ({ctx.scenario_id}) for {ctx.service}: "
            f"{len(ctx.steps)} steps (typically {ctx.scenario.severity})"
        )
        if ctx.incident is not None:
            self.show(f"recording each step on {ctx.incident}'s timeline")
        else:
            warn(
                "no open incident: the steps are not recorded on a timeline (actions still go "
                "to the audit journal); to record them, declare one first: somactl incident "
                f"declare -s {ctx.scenario.severity} -t '{ctx.scenario.title}' --impact '...' "
                f"--service {ctx.service}"
            )
        if ctx.skips:
            self.show("skipping (--skip): " + ", ".join(str(n) for n in sorted(ctx.skips)))

    def header(self, step: rr.RunStep) -> None:
        n = len(self.ctx.steps)
        what = {"check": "check", "action": "action", "manual": "manual step"}[step.kind]
        ref = f" {step.ref}" if step.kind != "manual" else ""
        self.show("")
        self.show(f"[{step.n}/{n}] {step.title}  ({what}{ref})")
        for cmd in step.commands:
            self.show(f"  $ {cmd}")
        if step.when:
            self.show(f"  only when: {step.when}")

    def step(self, step: rr.RunStep) -> rr.StepRecord:
        ctx = self.ctx
        if step.n in ctx.skips:
            return rr.StepRecord(step, "skipped", reason=ctx.skips[step.n])
        why = rr.not_applicable(ctx, step)
        if why is not None:
            return rr.StepRecord(step, "not-applicable", reason=why)
        why = rr.not_needed(ctx, step)
        if why is not None:
            return rr.StepRecord(step, "not-needed", reason=why)
        why = rr.unchecked_condition(ctx, step) if self.yes else None
        if why is not None:
            return rr.StepRecord(step, "pending", reason=why)
        t0 = time.monotonic()
        if step.kind == "check":
            results = rr.run_check_step(ctx, step)
            for r in results:
                self.show(f"  {str(r.status).upper():<8} {r.id}: {r.summary}")
                if r.hint and r.status.value == "unknown":
                    self.show(f"           hint: {r.hint}")
            if step.instructions:
                self.show(f"  note: {step.instructions}")
            return rr.check_record(step, results, time.monotonic() - t0)
        if step.kind == "action":
            return self.action(step, t0)
        return self.manual(step)

    def action(self, step: rr.RunStep, t0: float) -> rr.StepRecord:
        from somactl.ui.actions import execute_embedded

        ctx = self.ctx
        if not step.mutates:
            try:
                res = rr.run_readonly_action(ctx, step)
            except SomactlError as exc:
                return rr.error_record(step, exc, time.monotonic() - t0)
            saved = res.data.get("saved") if isinstance(res.data, dict) else None
            pods = len(res.data.get("logs") or []) if isinstance(res.data, dict) else 0
            return rr.StepRecord(
                step,
                "executed",
                reason=f"logs of {pods} pods saved to {saved}" if saved else None,
                action={"result": res.data} if isinstance(res.data, dict) else None,
                seconds=time.monotonic() - t0,
            )
        try:
            prepared = rr.prepare_action(ctx, step)
        except SomactlError as exc:
            return rr.error_record(step, exc, time.monotonic() - t0)
        ex = execute_embedded(self.opts, prepared, yes=self.yes, ask=ask_action)
        return rr.action_record(step, ex, time.monotonic() - t0)

    def manual(self, step: rr.RunStep) -> rr.StepRecord:
        for text in [step.instructions, *step.notes]:
            if text:
                self.show(f"  {text}")
        if self.opts.machine_output or _tty() is None:
            why = (
                f"-o {self.opts.output} never prompts"
                if self.opts.machine_output
                else "no terminal to confirm it"
            )
            return rr.StepRecord(
                step, "pending", reason=f"manual step: {why}; do it by hand (or --skip it)"
            )
        question = "Type 'done' when it is done, 'skip' to skip it, 'stop' to end the runbook: "
        for _ in range(ATTEMPTS):
            answer = _ask(question)
            if answer is None:
                return rr.StepRecord(step, "stopped", reason="stopped: no answer")
            if answer == "done":
                return rr.StepRecord(step, "executed", reason="done (confirmed by the responder)")
            if answer == "skip":
                try:
                    return rr.StepRecord(step, "skipped", reason=_reason())
                except rr.RunStopped as exc:
                    return rr.StepRecord(step, "stopped", reason=exc.reason)
            if answer == "stop":
                return rr.StepRecord(step, "stopped", reason="stopped by the responder")
            sys.stderr.write("answer 'done', 'skip' or 'stop'\n")
        return rr.StepRecord(step, "stopped", reason="stopped: no valid answer")

    def outcome(self, rec: rr.StepRecord) -> None:
        text = rec.reason or rec.error
        if rec.step.kind == "check" and rec.outcome == "executed":
            return  # the findings above say it
        self.show(f"  -> {rec.outcome}" + (f": {text}" if text else ""))


def walk(ctx: rr.RunContext, *, yes: bool) -> Result:
    return Walker(ctx, yes=yes).run()


# --- rendering (pure) ---------------------------------------------------------------------------


def render_run(data: dict[str, Any]) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    from somactl.ui.output import simple_table

    rows: list[Sequence[Any]] = []
    for s in data["steps"]:
        detail = s["reason"] or s["error"] or ""
        if s["outcome"] == "executed" and s["findings"]:
            detail = "; ".join(f"{f['status']}: {f['summary']}" for f in s["findings"])
        rows.append([s["n"], s["kind"], s["title"], s["outcome"], detail])
    parts: list[RenderableType] = [
        Text(""),
        Text(f"Runbook {data['title']} ({data['scenario']}) for {data['service']}:"),
        simple_table(["STEP", "KIND", "TITLE", "OUTCOME", "DETAIL"], rows),
    ]
    state = data.get("state")
    if state:
        parts.append(Text(f"\nState of {data['service']} now: {state['summary']}"))
    if data.get("incident"):
        parts.append(Text(f"Recorded on {data['incident']}'s timeline."))
    for err in data.get("timeline_errors") or []:
        parts.append(Text(f"warning: the timeline could not be written: {err}"))
    return Group(*parts)


def render_plan(data: dict[str, Any]) -> str:
    return "\n".join(rr.plan_lines(data))


def render_list(rows: list[dict[str, Any]]) -> RenderableType:
    from somactl.ui.output import simple_table

    return simple_table(
        ["ID", "TITLE", "SEVERITY", "SERVICE", "STEPS", "SIGNALS"],
        [
            [
                r["id"],
                r["title"],
                r["severity"],
                r["service"] or "-",
                f"{r['steps']} ({r['checks']} checks, {r['actions']} actions, "
                f"{r['manual']} manual)",
                ", ".join(r["signals"]) or "-",
            ]
            for r in rows
        ],
    )


def run_runbook(
    opts: GlobalOptions,
    scenario: str,
    service: str | None,
    *,
    yes: bool,
    skips: Sequence[str],
    verify: float,
) -> Result:
    """Validate (exit 2 before any network call), then walk the steps."""
    ctx = rr.start(opts, scenario, service, skips=skips, verify_seconds=verify)
    return walk(ctx, yes=yes)
