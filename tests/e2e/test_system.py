"""What `make up` promises: the whole topology healthy, ticks flowing, the sample strategy trading."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from cluster import launcher


def _actor(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in doc["actors"] if a["name"] == name)


def test_status_shows_every_actor_healthy_and_ready(system: dict[str, Any], wait_until: Callable) -> None:
    doc = wait_until(
        lambda: (d := launcher.status()) and d["ready"]["ready"] and d["healthy"] and d,
        timeout_s=90,
        what="a ready, healthy system",
    )
    names = {a["name"] for a in doc["actors"]}
    assert {"sim", "feed-0", "router", "execution", "portfolio", "hub"} <= names
    assert {"shard-ema-equities-0", "shard-ema-equities-1"} <= names
    assert doc["mode"] == "sim"
    assert all(a["restarts"] == 0 for a in doc["actors"])


def test_ticks_flow_from_the_simulator_to_both_shards(system: dict[str, Any], wait_until: Callable) -> None:
    def flowing() -> dict[str, Any] | None:
        doc = launcher.status()
        shards = [_actor(doc, f"shard-ema-equities-{k}") for k in (0, 1)]
        handled = [s["stats"].get("ticks_handled", 0) for s in shards]
        return doc if all(h > 100 for h in handled) else None

    doc = wait_until(flowing, timeout_s=90, what="ticks handled by both shards")
    feed = _actor(doc, "feed-0")["stats"]
    assert feed["ticks_out"] > 0 and feed["stream"]["missed_by_sequence"] == 0
    router = _actor(doc, "router")["stats"]
    assert router["ticks_in"] >= router["ticks_out"] > 0


def test_sample_strategy_trades_on_paper(system: dict[str, Any], wait_until: Callable) -> None:
    import ray

    execution = ray.get_actor("execution", namespace="shardline")

    def filled_orders() -> list[Any]:
        orders = ray.get(execution.orders.remote("ema-equities"))
        return [o for o in orders if o.status.value == "FILLED"]

    filled = wait_until(filled_orders, timeout_s=120, what="a filled order of the sample strategy")
    order = filled[0]
    assert order.book == "ema-equities" and order.filled_quantity > 0 and order.avg_price > 0
    portfolio = ray.get_actor("portfolio", namespace="shardline")
    positions = ray.get(portfolio.positions.remote("ema-equities"))
    assert positions, "fills of the strategy's book must show as its positions"


def test_status_command_prints_json(system: dict[str, Any]) -> None:
    address = system.get("gcs_address")
    if address is None:
        import ray

        address = ray.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "status", "--json", "--address", address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ready"]["ready"] is True
    assert any(a["kind"] == "shard" for a in doc["actors"])
