"""Failure behaviour of the running system: crashes recover, bad input fails fast by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import ray

from cluster import launcher
from cluster.config import parse_config
from cluster.errors import ShardlineError

pytestmark = pytest.mark.faults


def _stats(name: str) -> dict[str, Any]:
    return ray.get(ray.get_actor(name, namespace="shardline").stats.remote(), timeout=30)


def test_cut_simulator_sockets_feed_reconnects_without_duplicates(
    system: dict[str, Any], wait_until: Callable
) -> None:
    before = _stats("feed-0")
    assert ray.get(ray.get_actor("sim", namespace="shardline").drop_connections.remote()) >= 1

    def resumed() -> dict[str, Any] | None:
        now = _stats("feed-0")
        stream = now["stream"]
        moved = now["ticks_out"] > before["ticks_out"] + 200
        return now if stream["reconnects"] > before["stream"]["reconnects"] and moved else None

    after = wait_until(resumed, timeout_s=60, what="the feed to reconnect and deliver again")
    assert after["stream"]["open_connections"] >= 1
    # Replayed or repeated sequence numbers are dropped by the client, never passed on.
    router = _stats("router")
    assert router["balanced"] is True


def test_killed_shard_restarts_and_ticks_resume(system: dict[str, Any], wait_until: Callable) -> None:
    name = "shard-ema-equities-1"
    old = _stats(name)
    ray.kill(ray.get_actor(name, namespace="shardline"), no_restart=False)

    def back() -> dict[str, Any] | None:
        try:
            now = _stats(name)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None
        return now if now["pid"] != old["pid"] and now.get("ticks_handled", 0) > 50 else None

    new = wait_until(back, timeout_s=120, what="the shard to restart and handle ticks")
    assert new["state"] == "running"
    router = _stats("router")
    shards = router["deployments"]["ema-equities"]["shards"]
    assert all(s["registered"] for s in shards)
    doc = wait_until(
        lambda: (
            (d := launcher.status())
            and any(a["name"] == name and a["restarts"] >= 1 for a in d["actors"])
            and d
        ),
        timeout_s=30,
        what="the supervisor to count the restart",
    )
    assert doc["ready"]["ready"]


def _config_with(system: dict[str, Any], **deployment: Any) -> Any:
    data = system["config"].model_dump(mode="json")
    base = {"name": "bad", "strategy": "actors.shard.strategies.ema_cross:EMACross", "shards": 1}
    base.update(deployment)
    data["deployments"] = [base]
    return parse_config(data)


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        ({"universe": {"instruments": ["NSE:999999999"]}}, "deployment 'bad': "),
        (
            {"strategy": "no_such_module:Strategy", "universe": {"query": "NSE equities", "limit": 2}},
            "cannot import module 'no_such_module'",
        ),
        (
            {
                "strategy": "actors.shard.strategies.ema_cross:EMACross",
                "config": {"fast_period": "not a number"},
                "universe": {"query": "NSE equities", "limit": 2},
            },
            "deployment 'bad'",
        ),
    ],
)
def test_bad_deployments_fail_fast_by_name_and_the_cluster_keeps_running(
    system: dict[str, Any], deployment: dict[str, Any], message: str
) -> None:
    with pytest.raises(ShardlineError, match=message):
        launcher.up(_config_with(system, **deployment), serve_terminal=False)
    assert "shard-bad-0" not in {a["name"] for a in launcher.status()["actors"]}
    assert launcher.status()["ready"]["ready"]


def test_killed_router_restores_its_table_and_ticks_flow_again(
    system: dict[str, Any], wait_until: Callable
) -> None:
    old = _stats("router")
    ray.kill(ray.get_actor("router", namespace="shardline"), no_restart=False)

    def flowing() -> dict[str, Any] | None:
        try:
            now = _stats("router")
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None
        deployment = now["deployments"].get("ema-equities")
        return now if now["pid"] != old["pid"] and deployment and deployment["ticks_out"] > 100 else None

    new = wait_until(flowing, timeout_s=120, what="the restarted router to route ticks again")
    shards = new["deployments"]["ema-equities"]["shards"]
    assert all(s["registered"] for s in shards)
    assert new["balanced"] is True
