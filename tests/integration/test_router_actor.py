"""The router actor on a real local Ray: ordering, balance, shard failure and return, back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import ray

from actors.router.actor import start_router
from actors.router.ring import ConsistentHashRing
from actors.ticks import TICK_DTYPE
from cluster.config import RouterConfig
from cluster.topology import NAMESPACE

pytestmark = pytest.mark.usefixtures("ray_session")

UNIVERSE = {iid: f"NSE:{20_000 + iid}" for iid in range(60)}
_names = itertools.count()


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class Consumer:
    """A stand-in strategy shard: records what it gets, optionally slowly; registers on (re)start."""

    def __init__(
        self, router: str, deployment: str, index: int, delay_s: float = 0.0, restart_s: float = 0.0
    ) -> None:
        self.delay_s = delay_s
        self.chunks: list[np.ndarray] = []
        if ray.get_runtime_context().was_current_actor_reconstructed:
            time.sleep(restart_s)  # a restart as slow as a Nautilus node's start
        handle = ray.get_actor(router, namespace=NAMESPACE)
        me = ray.get_runtime_context().current_actor
        ray.get(handle.register_shard.remote(deployment, index, me))

    async def on_ticks(self, ticks: np.ndarray) -> int:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a deliberately slow strategy
        self.chunks.append(ticks[["iid", "seq"]].copy())
        return len(ticks)

    def seen(self) -> np.ndarray:
        if not self.chunks:
            return np.empty(0, dtype=TICK_DTYPE[["iid", "seq"]])
        return np.concatenate(self.chunks)

    def pid(self) -> int:
        import os

        return os.getpid()


def ticks(iids: np.ndarray, seq_start: int) -> np.ndarray:
    out = np.zeros(len(iids), dtype=TICK_DTYPE)
    out["iid"] = iids
    out["seq"] = np.arange(seq_start, seq_start + len(iids))
    out["ltp"] = 100_000 + out["seq"] % 1000
    return out


def stream(batches: int, size: int, seed: int = 3, iids: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [ticks(rng.integers(0, iids, size), n * size) for n in range(batches)]


def owner_of() -> dict[int, int]:
    ring = ConsistentHashRing(range(2), virtual_nodes=32)
    return {iid: ring.assign(key) for iid, key in UNIVERSE.items()}


def assert_in_feed_order(seen: np.ndarray) -> None:
    for iid in np.unique(seen["iid"]):
        seqs = seen["seq"][seen["iid"] == iid]
        assert np.all(np.diff(seqs) > 0), f"iid {iid} out of order or repeated"


def settled(router: Any, name: str) -> bool:
    """Nothing buffered and nothing in flight: every tick pushed so far is accounted for."""
    stats = deployment_stats(router, name)
    return stats["buffered"] == 0 and stats["in_flight"] == 0


def deployment_stats(router: Any, name: str) -> dict[str, Any]:
    stats: dict[str, Any] = ray.get(router.stats.remote())
    assert stats["balanced"], stats
    return stats["deployments"][name]


@pytest.fixture
def router_name() -> Any:
    name = f"router-test-{next(_names)}"
    yield name
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)


def make_router(name: str, buffer_ticks: int = 65_536, **kwargs: Any) -> Any:
    config = RouterConfig(virtual_nodes=32, buffer_ticks=buffer_ticks, ui_snapshot_hz=50)
    return start_router(config, options={"name": name}, **kwargs)


def test_ticks_reach_two_shards_in_feed_order_and_the_counts_balance(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name)
    ray.get(router.add_deployment.remote("ema", UNIVERSE, 2, "block"))
    consumers = [Consumer.remote(router_name, "ema", k) for k in range(2)]
    batches = stream(40, 2_000)
    for batch in batches:
        assert ray.get(router.push.remote(batch)) == len(batch)
    total = sum(len(b) for b in batches)
    wait_until(lambda: deployment_stats(router, "ema")["ticks_out"] == total, 60, "every tick delivered")
    stats = deployment_stats(router, "ema")
    assert (stats["ticks_in"], stats["dropped"], stats["conflated"], stats["buffered"]) == (total, 0, 0, 0)
    owners = owner_of()
    seen = [ray.get(c.seen.remote()) for c in consumers]
    assert sum(len(s) for s in seen) == total
    for index, got in enumerate(seen):
        assert {owners[int(i)] for i in np.unique(got["iid"])} == {index}
        assert_in_feed_order(got)
    everything = np.sort(np.concatenate([s["seq"] for s in seen]))
    assert np.array_equal(everything, np.arange(total))  # none lost, none twice
    quotes = ray.get(router.latest_quotes.remote([0, 1, 999]))
    assert quotes["iid"].tolist() == [0, 1]
    for c in consumers:
        ray.kill(c, no_restart=True)


def test_a_killed_shard_is_restarted_re_registers_and_only_its_in_flight_ticks_are_lost(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name, failover_after_s=None, max_batch=500)
    ray.get(router.add_deployment.remote("ema", UNIVERSE, 2, "block"))
    slow, steady = Consumer.remote(router_name, "ema", 0, 0.05), Consumer.remote(router_name, "ema", 1)
    first_pid = ray.get(slow.pid.remote())
    batches = stream(20, 1_000)
    for batch in batches[:10]:
        ray.get(router.push.remote(batch))
    wait_until(lambda: deployment_stats(router, "ema")["shards"][0]["in_flight"] > 0, 30, "a batch in flight")
    before = ray.get(slow.seen.remote())
    ray.kill(slow, no_restart=False)  # Ray restarts it; its __init__ registers again
    wait_until(
        lambda: (s := deployment_stats(router, "ema")["shards"][0])["generation"] >= 2 and s["up"],
        60,
        "return",
    )
    assert ray.get(slow.pid.remote()) != first_pid
    for batch in batches[10:]:
        ray.get(router.push.remote(batch))
    total = sum(len(b) for b in batches)
    wait_until(
        lambda: (s := deployment_stats(router, "ema"))["ticks_out"] + s["dropped"] == total, 60, "all settled"
    )
    stats = deployment_stats(router, "ema")
    dead = stats["shards"][0]
    assert dead["dropped_at_failure"] == dead["dropped"] > 0  # exactly what was in flight at the kill
    assert stats["shards"][1]["dropped"] == 0
    after = ray.get(slow.seen.remote())
    assert_in_feed_order(after)
    assert not set(before["seq"].tolist()) & set(after["seq"].tolist())  # nothing seen twice
    owners = owner_of()
    assert {owners[int(i)] for i in np.unique(after["iid"])} == {0}  # the ring is as before
    steady_seen = ray.get(steady.seen.remote())
    assert len(steady_seen) == stats["shards"][1]["ticks_in"]  # the live shard lost nothing
    for c in (slow, steady):
        ray.kill(c, no_restart=True)


def test_a_shard_slow_to_restart_hands_its_instruments_over_and_takes_them_back(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name, failover_after_s=0.5)
    ray.get(router.add_deployment.remote("ema", UNIVERSE, 2, "block"))
    slow = Consumer.remote(router_name, "ema", 0, 0.0, 4.0)
    other = Consumer.remote(router_name, "ema", 1)
    share_of_0 = {i for i, k in owner_of().items() if k == 0}
    seq = itertools.count(0, 120)

    def push() -> int:
        return int(ray.get(router.push.remote(ticks(np.arange(120) % 60, next(seq)))))

    push()
    wait_until(lambda: settled(router, "ema"), 30, "first delivery")
    ray.kill(slow, no_restart=False)
    wait_until(
        lambda: push() and not deployment_stats(router, "ema")["shards"][0]["on_ring"], 30, "fail-over"
    )
    wait_until(lambda: settled(router, "ema"), 30, "the held share delivered elsewhere")
    assert share_of_0 <= set(ray.get(other.seen.remote())["iid"].tolist())
    wait_until(
        lambda: (s := deployment_stats(router, "ema")["shards"][0])["on_ring"] and s["up"], 60, "return"
    )
    push()
    wait_until(lambda: settled(router, "ema"), 30, "delivered after the return")
    back = ray.get(slow.seen.remote())  # the restarted incarnation's view
    assert set(back["iid"].tolist()) == share_of_0
    assert_in_feed_order(back)
    assert_in_feed_order(ray.get(other.seen.remote()))
    stats = deployment_stats(router, "ema")
    assert stats["ticks_in"] == stats["ticks_out"] + stats["dropped"]
    for c in (slow, other):
        ray.kill(c, no_restart=True)


def test_a_shard_that_stays_away_hands_its_instruments_over_and_gets_them_back(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name, failover_after_s=0.5)
    ray.get(router.add_deployment.remote("ema", UNIVERSE, 2, "block"))
    gone, other = Consumer.remote(router_name, "ema", 0), Consumer.remote(router_name, "ema", 1)
    owners = owner_of()
    share_of_0 = {i for i, k in owners.items() if k == 0}
    ray.get(router.push.remote(stream(1, 1_000, seed=1)[0]))
    wait_until(lambda: deployment_stats(router, "ema")["ticks_out"] == 1_000, 30, "first batch delivered")
    ray.kill(gone, no_restart=True)  # gone for good: Ray will not bring it back
    # The router only learns of the death from a failed delivery: keep pushing.
    seq = itertools.count(1_000, 200)
    wait_until(
        lambda: (
            ray.get(router.push.remote(ticks(np.arange(60).repeat(2)[:200] % 60, next(seq))))
            and not deployment_stats(router, "ema")["shards"][0]["on_ring"]
        ),
        30,
        "fail-over",
    )
    wait_until(lambda: settled(router, "ema"), 30, "held ticks moved and delivered")
    got = ray.get(other.seen.remote())
    assert share_of_0 <= set(got["iid"].tolist())  # shard 1 now trades shard 0's instruments
    assert_in_feed_order(got)
    newcomer = Consumer.remote(router_name, "ema", 0)  # a replacement registers as shard 0
    wait_until(lambda: deployment_stats(router, "ema")["shards"][0]["on_ring"], 30, "ring restored")
    ray.get(router.push.remote(ticks(np.arange(60), 100_000)))
    wait_until(lambda: settled(router, "ema"), 30, "delivered after restore")
    assert set(ray.get(newcomer.seen.remote())["iid"].tolist()) == share_of_0
    stats = deployment_stats(router, "ema")
    assert stats["ticks_in"] == stats["ticks_out"] + stats["dropped"]
    for c in (other, newcomer):
        ray.kill(c, no_restart=True)


def test_block_policy_pushes_back_on_the_feed_and_loses_nothing(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name, buffer_ticks=1_000, max_batch=250)
    ray.get(router.add_deployment.remote("blk", UNIVERSE, 1, "block"))
    slow = Consumer.remote(router_name, "blk", 0, 0.05)  # ~5,000 ticks/s at most
    batches = stream(20, 500)
    accepted = [ray.get(router.push.remote(b, timeout_s=0.01)) for b in batches]
    assert accepted[0] == 500 and min(accepted) < 500  # the buffer filled: pushes came back short
    stats = deployment_stats(router, "blk")
    assert stats["buffered"] <= 1_000
    # A feed re-sends what was not taken; a push without a deadline waits for room.
    for batch, taken in zip(batches, accepted, strict=True):
        if taken < len(batch):
            assert ray.get(router.push.remote(batch[taken:])) == len(batch) - taken
    wait_until(lambda: deployment_stats(router, "blk")["ticks_out"] == 10_000, 60, "all delivered")
    stats = deployment_stats(router, "blk")
    assert (stats["dropped"], stats["conflated"]) == (0, 0)
    seen = ray.get(slow.seen.remote())
    assert len(seen) == 10_000
    assert_in_feed_order(seen)
    ray.kill(slow, no_restart=True)


def test_conflate_policy_never_pushes_back_and_delivers_the_latest_per_instrument(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name, buffer_ticks=100, max_batch=50)
    ray.get(router.add_deployment.remote("cfl", UNIVERSE, 1, "conflate"))
    slow = Consumer.remote(router_name, "cfl", 0, 0.05)
    batches = stream(20, 500, iids=10)
    for batch in batches:
        assert ray.get(router.push.remote(batch, timeout_s=0)) == 500  # never waits
    wait_until(lambda: settled(router, "cfl"), 60, "drained")
    stats = deployment_stats(router, "cfl")
    assert stats["conflated"] > 0 and stats["dropped"] == 0
    assert stats["ticks_in"] == 10_000 == stats["ticks_out"] + stats["conflated"]
    seen = ray.get(slow.seen.remote())
    assert len(seen) == stats["ticks_out"]
    assert_in_feed_order(seen)
    last = np.concatenate(batches)
    for iid in range(10):  # every instrument's final tick got through
        assert seen["seq"][seen["iid"] == iid][-1] == last["seq"][last["iid"] == iid][-1]
    ray.kill(slow, no_restart=True)


def test_a_hot_swap_switches_between_batches_without_loss_or_duplicates(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name)
    ray.get(router.add_deployment.remote("v1", UNIVERSE, 1, "block"))
    ray.get(router.add_deployment.remote("v2", UNIVERSE, 1, "block", None, False))
    old, new = Consumer.remote(router_name, "v1", 0), Consumer.remote(router_name, "v2", 0)
    batches = stream(10, 1_000)
    for n, batch in enumerate(batches):
        if n == 5:
            ray.get(router.swap.remote("v1", "v2"))
        ray.get(router.push.remote(batch))
    wait_until(lambda: ray.get(router.stats.remote())["ticks_out"] == 10_000, 60, "delivered")
    a, b = ray.get(old.seen.remote()), ray.get(new.seen.remote())
    assert a["seq"].max() < b["seq"].min()
    assert np.array_equal(np.sort(np.concatenate([a["seq"], b["seq"]])), np.arange(10_000))
    for c in (old, new):
        ray.kill(c, no_restart=True)


def test_a_deployment_universe_must_carry_the_keys(router_name: str) -> None:
    router = make_router(router_name)
    with pytest.raises(ray.exceptions.RayTaskError, match="map each iid to its 'EXCH:token' key"):
        ray.get(router.add_deployment.remote("ema", [1, 2, 3], 1, "block"))


@ray.remote(num_cpus=0)
class QuoteWatcher:
    """Stands in for the terminal's hub: keeps the latest quote pushed for each instrument."""

    def __init__(self) -> None:
        self.latest: dict[int, int] = {}
        self.pushes = 0

    async def on_quotes(self, quotes: np.ndarray) -> None:
        self.pushes += 1
        self.latest.update(zip(quotes["iid"].tolist(), quotes["ltp"].tolist(), strict=True))

    def seen(self) -> tuple[int, dict[int, int]]:
        return self.pushes, self.latest


def test_quote_listeners_get_the_latest_quote_of_each_instrument(
    router_name: str, wait_until: Callable[..., Any]
) -> None:
    router = make_router(router_name)
    watcher = QuoteWatcher.options(name=f"{router_name}-hub", namespace=NAMESPACE).remote()
    ray.get(watcher.seen.remote())
    ray.get(router.register_quote_listener.remote(f"{router_name}-hub"))
    batches = stream(30, 500, iids=20)
    for batch in batches:
        ray.get(router.push.remote(batch))  # no deployment trades these: quotes still count
    final = np.concatenate(batches)
    expected = {iid: int(final["ltp"][final["iid"] == iid][-1]) for iid in range(20)}
    wait_until(lambda: ray.get(watcher.seen.remote())[1] == expected, 30, "the latest quotes")
    pushes, _ = ray.get(watcher.seen.remote())
    assert 1 <= pushes <= 30  # changes are batched into snapshots, not sent per tick
    assert ray.get(router.stats.remote())["unrouted"] == len(final)
    ray.kill(watcher, no_restart=True)
