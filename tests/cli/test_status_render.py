"""`somactl status`'s table cells: a value over a threshold shows its last two minutes when
they read otherwise (right after a fix, the runbook's 5-minute window still holds the broken
minutes)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from somactl.commands.status import _cell
from somactl.ui.findings import STYLE


def cell(**row: Any) -> Text:
    text: Text = _cell(row, "error_rate", "ratio", STYLE)
    return text


def test_falling_after_a_fix_shows_the_last_minute_in_its_own_colour() -> None:
    text = cell(
        error_rate=0.32,
        error_rate_status="critical",
        error_rate_recent=0.0,
        error_rate_recent_status="ok",
    )
    assert text.plain == "32% 2m 0.0%"
    assert str(text.style) == "bold red" and [str(s.style) for s in text.spans] == ["green"]


def test_the_last_minute_is_left_out_when_it_says_the_same() -> None:
    same = cell(
        error_rate=0.92,
        error_rate_status="critical",
        error_rate_recent=0.92,
        error_rate_recent_status="critical",
    )
    assert same.plain == "92%"
    assert cell(error_rate=0.001, error_rate_status="ok").plain == "0.1%"
    assert cell().plain == "-"
