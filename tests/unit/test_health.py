from __future__ import annotations

from cluster.health import STALE_AFTER_NS, HealthBoard, numeric_counters

S = 1_000_000_000


def test_rates_restarts_and_staleness() -> None:
    board = HealthBoard({"router": ("ticks_in",)})
    board.expect("router", "router")
    assert not board.status(0)["healthy"]  # never answered
    board.observe_ok("router", 10 * S, {"pid": 11, "ticks_in": 1_000})
    board.observe_ok("router", 12 * S, {"pid": 11, "ticks_in": 5_000})
    status = board.status(12 * S)
    (router,) = status["actors"]
    assert status["healthy"] and router["rates"] == {"ticks_in": 2000.0}
    assert router["restarts"] == 0
    # A new pid means Ray restarted it; its counters start again, rates never go negative.
    board.observe_ok("router", 13 * S, {"pid": 12, "ticks_in": 10})
    (router,) = board.status(13 * S)["actors"]
    assert router["restarts"] == 1 and router["rates"] == {"ticks_in": 0.0}
    assert not board.healthy("router", 13 * S + STALE_AFTER_NS + 1)


def test_failed_state_and_errors_are_unhealthy() -> None:
    board = HealthBoard({})
    board.expect("shard-ema-0", "shard")
    board.observe_ok("shard-ema-0", S, {"state": "failed"})
    board.observe_error("shard-ema-0", "RayActorError: died")
    (shard,) = board.status(S)["actors"]
    assert shard["healthy"] is False and shard["error"] == "RayActorError: died"


def test_numeric_counters_flatten_nested_stats() -> None:
    assert numeric_counters({"a": 1, "b": {"c": 2.5, "d": "x", "e": True}}) == {"a": 1.0, "b.c": 2.5}
