"""Recent commits: `git log --since="1 hour ago" --oneline` of the configured repository."""

from __future__ import annotations

import os
import subprocess

from somactl.checks.base import CheckResult, Status
from somactl.core.deadline import Deadline
from somactl.core.errors import ConfigError, UnreachableError

MAX_COMMITS = 50


def git_log(repo: str, since: str, deadline: Deadline) -> list[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    argv = [
        "git",
        "-C",
        repo,
        "log",
        f"--since={since}",
        "--oneline",
        "--no-decorate",
        "--no-color",
        "-n",
        str(MAX_COMMITS),
    ]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=deadline.timeout(),
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError("git: the git binary is not installed", "install git") from None
    except subprocess.TimeoutExpired:
        raise UnreachableError(f"git: no answer within {deadline.seconds:g}s ({repo})") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["git log failed"])[0]
        raise ConfigError(
            f"git: cannot read the log of {repo}: {first}",
            "set git.repo (SOMACTL_GIT_REPO) to a local clone of the deployed repository",
        )
    return [ln for ln in proc.stdout.splitlines() if ln.strip()]


def recent_commits_check(
    repo: str,
    deadline: Deadline,
    *,
    since: str = "1 hour ago",
    check_id: str = "git.recent-commits",
) -> CheckResult:
    commits = git_log(repo, since, deadline)
    if commits:
        summary = f"{len(commits)} commit{'s' if len(commits) != 1 else ''} since {since}: " + (
            "; ".join(commits[:3])
        )
    else:
        summary = f"no commits since {since} in {repo}"
    return CheckResult(
        check_id,
        "Recent commits",
        "git",
        Status.ok,
        summary,
        evidence={"repo": repo, "since": since, "commits": commits},
        facts={"recent_commits": len(commits)},
        raw={"git-log.txt": "\n".join(commits) + ("\n" if commits else "")},
    )
