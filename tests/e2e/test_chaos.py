"""Chaos, short: faults on the order path (and the feed) under a steady tick and order load on the
running system, then the audit. Runs last in the session (see conftest): it restarts actors.

Recovery times are figures for `shardline chaos` and docs/benchmarks.md; here every fault must
be recovered from (within the harness's deadline), no order lost or doubled, positions equal to
the trades, and the router's tick accounts balanced across its incarnations.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cluster.chaos import ChaosConfig, ChaosRun, CounterTotals, tick_balance

pytestmark = pytest.mark.faults


def router_reading(pid: int, ticks_in: int, out: int, held: int, dropped: int = 0) -> dict[str, Any]:
    deployment = {
        "ticks_in": ticks_in,
        "ticks_out": out,
        "conflated": 0,
        "dropped": dropped,
        "buffered": held,
        "in_flight": 0,
    }
    return {
        "pid": pid,
        "ticks_in": ticks_in,
        "unrouted": 0,
        "rejected_iids": 0,
        "deployments": {"d": deployment},
    }


def test_counters_add_up_over_incarnations() -> None:
    totals = CounterTotals()
    assert totals.observe("feed-0", {"pid": 1, "ticks_out": 10})
    assert not totals.observe("feed-0", {"pid": 1, "ticks_out": 15})
    assert totals.observe("feed-0", {"pid": 2, "ticks_out": 4})
    assert (totals.total("feed-0", "ticks_out"), totals.incarnations("feed-0")) == (19, 2)


def test_tick_balance_counts_what_a_killed_router_held_and_catches_a_gap() -> None:
    killed = router_reading(1, ticks_in=100, out=90, held=10)
    alive = router_reading(2, ticks_in=50, out=50, held=0)
    balance = tick_balance(
        [killed, alive], feed_pushed=150, shard_received=140, simulator_sent=150, feed_frames=150
    )
    assert balance["balanced"] and balance["in_flight_at_kill"] == 10
    leaky = router_reading(2, ticks_in=50, out=45, held=0)  # five ticks nowhere
    assert not tick_balance([killed, leaky], 150, 135, 150, 150)["balanced"]


def test_faults_under_load_lose_nothing(system: dict[str, Any], wait_until: Any) -> None:
    base = system["serve_url"]
    wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, timeout_s=90, what="the terminal")
    config = ChaosConfig(
        seconds=30,
        faults=("feed", "execution", "portfolio"),
        order_rate_per_s=10,
        tick_rate=system["config"].sim.tick_rate,
        recovery_deadline_s=90,
    )
    result = ChaosRun(system["config"], base, config).run()
    faults = {f["fault"]: f for f in result["faults"]}
    assert all(f["recovered"] for f in faults.values()), result["faults"]
    assert all(f["new_pid"] != f["old_pid"] for f in faults.values())
    verdict = result["verdict"]
    reconciliation = result["orders"]["reconciliation"]
    assert (verdict["orders_lost"], verdict["orders_duplicated"]) == (0, 0), reconciliation
    assert verdict["positions_exact"], reconciliation["position_mismatches"]
    assert verdict["ticks_balanced"], result["ticks"]
    assert result["restarts"]["execution"] >= 1 and result["restarts"]["portfolio"] >= 1
    assert reconciliation["acknowledged"] == reconciliation["ordered"], result["orders"]["refused_by_api"]
