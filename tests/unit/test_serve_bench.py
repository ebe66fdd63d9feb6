"""`shardline bench ui`: what it accepts, and the percentiles it reports."""

from __future__ import annotations

import math

import pytest

from cluster.errors import ShardlineError
from serve.bench import UiBenchConfig, _quantile


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"symbols": 0}, "--symbols must be between 1 and 500"),
        ({"rate_hz": 0}, r"--rate must be in \(0, 100\]"),
        ({"seconds": 0}, "--seconds must be positive"),
        ({"clients": -1}, "--clients must be between 0 and 1000"),
        ({"clients": 1001}, "--clients must be between 0 and 1000"),
        ({"symbols": 5, "client_symbols": 6}, "--client-symbols must be between 1 and --symbols"),
        ({"client_symbols": 0}, "--client-symbols must be between 1 and --symbols"),
    ],
)
def test_a_bad_setting_is_refused_by_name(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ShardlineError, match=message):
        UiBenchConfig(**fields)  # type: ignore[arg-type]


def test_no_clients_is_a_browser_only_run() -> None:
    assert UiBenchConfig(clients=0).clients == 0


def test_quantiles_pick_the_sample_at_or_above_the_rank() -> None:
    ordered = [float(v) for v in range(1, 101)]
    assert [_quantile(ordered, q) for q in (0.5, 0.99, 1.0)] == [51.0, 100.0, 100.0]
    assert math.isnan(_quantile([], 0.99))  # nothing was measured
