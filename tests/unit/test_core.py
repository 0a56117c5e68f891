from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from somactl.core.durations import human_duration, parse_duration
from somactl.core.errors import UsageError
from somactl.core.redact import MASK, redact, redact_obj, register_secret


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "-3", "1e400", "nan", "5m garbage"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text, option="--older-than")


@given(st.text(max_size=20))
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        assert parse_duration(text) >= 0
    except UsageError as exc:
        assert exc.code == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (119, "119s"), (330, "5m30s"), (5700, "95m"), (11100, "3h5m"), (183600, "2d3h")],
)
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_redact_known_shapes() -> None:
    assert redact("postgresql://bob:hunter2@db:5432/x") == f"postgresql://bob:{MASK}@db:5432/x"
    assert "hunter2" not in redact("host=db password=hunter2 user=bob")
    assert "abcdefghijkl" not in redact("Authorization: Bearer abcdefghijkl")
    assert "T000/B000/XXXX" not in redact("https://hooks.slack.com/services/T000/B000/XXXX")
    assert "ghp_" not in redact("token ghp_abcdefghijklmnop1234")


def test_redact_registered_secret_everywhere() -> None:
    register_secret("zq-sentinel-77")
    assert redact_obj({"a": ["x zq-sentinel-77 y"], "b": 3}) == {"a": [f"x {MASK} y"], "b": 3}
