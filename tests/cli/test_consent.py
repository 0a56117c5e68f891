"""Consent comes only from a terminal (reliability cases 1-4)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

PROGRAM = """
import sys
from somactl.core.options import GlobalOptions, OutputFormat
from somactl.core.errors import NotConfirmedError
from somactl.ui.consent import require_consent
opts = GlobalOptions(output=OutputFormat(sys.argv[1]))
try:
    how = require_consent(opts, yes=sys.argv[2] == "yes", what="restart gateway-api",
                          typed_name=sys.argv[3] or None)
except NotConfirmedError as exc:
    print("REFUSED:" + exc.message, flush=True)
    sys.exit(int(exc.code))
print("CONSENT:" + how, flush=True)
"""


def _run_pipe(stdin_data: bytes | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        input=stdin_data.decode() if stdin_data is not None else None,
        stdin=None if stdin_data is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _run_tty(answer: bytes, *args: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    # wait for the prompt, with a deadline
    seen = b""
    deadline = time.monotonic() + 20
    while b": " not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(master, 1024)
        except OSError:
            break
    assert b"Type " in seen, seen
    os.write(master, answer)
    out, _ = proc.communicate(timeout=20)
    os.close(master)
    return proc.returncode, out


@pytest.mark.parametrize("data", [None, b"y\n", b"yes\n"])
def test_piped_input_or_no_terminal_is_never_consent(data: bytes | None) -> None:
    proc = _run_pipe(data, "table", "no", "")
    assert proc.returncode == 4
    assert (
        "REFUSED:confirmation required: stdin is not a terminal; re-run with --yes" in proc.stdout
    )


def test_yes_flag_is_consent_without_terminal() -> None:
    proc = _run_pipe(None, "table", "yes", "")
    assert (proc.returncode, proc.stdout.strip()) == (0, "CONSENT:--yes")


def test_json_output_never_prompts() -> None:
    proc = _run_pipe(b"yes\n", "json", "no", "")
    assert proc.returncode == 4
    assert "--output json never prompts" in proc.stdout


def test_typed_yes_at_a_terminal() -> None:
    rc, out = _run_tty(b"yes\n", "table", "no", "")
    assert (rc, out.strip()) == (0, "CONSENT:typed yes")


@pytest.mark.parametrize("answer", [b"n\n", b"\n", b"yes please\n", b"y\n"])
def test_anything_but_yes_aborts(answer: bytes) -> None:
    rc, out = _run_tty(answer, "table", "no", "")
    assert rc == 4
    assert out.strip() == "REFUSED:aborted by user"


def test_high_impact_needs_the_typed_name() -> None:
    rc, out = _run_tty(b"yes\n", "table", "no", "redis-main")
    assert rc == 4
    assert "the name did not match 'redis-main'" in out
    rc, out = _run_tty(b"redis-main\n", "table", "no", "redis-main")
    assert (rc, out.strip()) == (0, "CONSENT:typed name")
