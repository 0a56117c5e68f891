from __future__ import annotations

from somactl.ops.verify import with_window


def test_with_window_replaces_every_range_selector() -> None:
    q = (
        'sum(rate(http_requests_total{job="gw",status=~"5.."}[5m])) '
        '/ sum(rate(http_requests_total{job="gw"}[5m]))'
    )
    assert with_window(q, 42.7) == (
        'sum(rate(http_requests_total{job="gw",status=~"5.."}[42s])) '
        '/ sum(rate(http_requests_total{job="gw"}[42s]))'
    )
    assert with_window('up{job="x"}', 10) == 'up{job="x"}'
    assert with_window("rate(x[1h])", 0.2) == "rate(x[1s])"
