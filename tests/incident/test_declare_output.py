"""What a person sees after declaring: the id, and a loud line when a page could not be sent."""

from __future__ import annotations

import pytest

from somactl.app import run


def test_declare_names_the_incident_and_says_no_page_was_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = run(
        [
            "incident",
            "declare",
            "--severity",
            "P0",
            "--title",
            "Gateway API Down",
            "--impact",
            "All API requests failing",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0] == "INC-1 (declared)"
    assert "PAGE NOT SENT" in out
    rc = run(
        ["incident", "declare", "--dry-run", "--severity", "P3", "--title", "x", "--impact", "y"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0] == "INC-2 (dry run: nothing recorded, nothing sent)"
    assert "PAGE NOT SENT" not in out
    assert "recorded locally" not in out
