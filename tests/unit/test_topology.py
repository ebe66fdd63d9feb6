from __future__ import annotations

import pytest

from cluster.config import parse_config
from cluster.topology import TopologyError, plan_topology


def _config(mode: str = "sim", shards: int = 2, max_connections: int = 3) -> dict:
    return {
        "mode": mode,
        "feed": {"max_connections": max_connections},
        "deployments": [
            {"name": "ema", "strategy": "m:EMA", "universe": {"query": "q"}, "shards": shards},
            {"name": "rsi", "strategy": "m:RSI", "universe": {"query": "q"}, "shards": 1, "flow": "conflate"},
            {"name": "off", "strategy": "m:X", "universe": {"query": "q"}, "enabled": False},
        ],
    }


def _keys(n: int, start: int = 0) -> list[str]:
    return [f"NSE:{t}" for t in range(start, start + n)]


def test_plan_names_every_actor_and_unions_the_universes() -> None:
    plan = plan_topology(parse_config(_config()), {"ema": _keys(10), "rsi": _keys(10, start=5)})
    assert [d.name for d in plan.deployments] == ["ema", "rsi"]
    assert len(plan.subscriptions) == 15
    assert plan.feeds == 1
    assert plan.runs_simulator and plan.paper_fills
    assert {"shard-ema-0", "shard-ema-1", "shard-rsi-0", "feed-0", "router", "execution", "sim"} <= set(
        plan.actor_names
    )
    assert "shard-off-0" not in plan.actor_names


@pytest.mark.parametrize(
    ("mode", "simulator", "paper"),
    [("sim", True, True), ("sim-live", True, False), ("paper", False, True), ("live", False, False)],
)
def test_mode_decides_simulator_and_fills(mode: str, simulator: bool, paper: bool) -> None:
    plan = plan_topology(parse_config(_config(mode)), {"ema": _keys(3), "rsi": _keys(3)})
    assert (plan.runs_simulator, plan.paper_fills) == (simulator, paper)


def test_feeds_split_subscriptions_by_the_per_connection_limit() -> None:
    plan = plan_topology(parse_config(_config()), {"ema": _keys(2500), "rsi": _keys(1)})
    assert plan.feeds == 3
    slices = [plan.feed_subscriptions(i) for i in range(plan.feeds)]
    assert all(len(s) <= 1000 for s in slices)
    assert sorted(k for s in slices for k in s) == sorted(plan.subscriptions)


def test_more_instruments_than_one_login_can_stream_is_refused() -> None:
    with pytest.raises(TopologyError, match="3001 instruments exceed one login's 3 connections"):
        plan_topology(parse_config(_config()), {"ema": _keys(3001), "rsi": _keys(1)})


def test_empty_universe_is_refused_with_the_deployment_name() -> None:
    with pytest.raises(TopologyError, match="deployment 'rsi': its universe resolved to no instruments"):
        plan_topology(parse_config(_config()), {"ema": _keys(3)})
