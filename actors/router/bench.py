"""Router benchmarks: the plain `TickRouter` on one core, and the router actor feeding shard sinks on Ray.

Numbers, never pass/fail: `shardline bench router` prints them as JSON.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np

from actors.router.router import TickRouter
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.config import RouterConfig


def synthetic_ticks(count: int, instruments: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ticks = np.zeros(count, dtype=TICK_DTYPE)
    ticks["iid"] = rng.integers(0, instruments, count)
    ticks["seq"] = np.arange(count)
    ticks["ltp"] = 100_000 + rng.integers(-500, 500, count)
    ticks["bid"] = ticks["ltp"] - 5
    ticks["ask"] = ticks["ltp"] + 5
    ticks["mode"] = FeedMode.SNAP_QUOTE
    return ticks


def universe(instruments: int) -> dict[int, str]:
    return {iid: f"NSE:{10_000 + iid}" for iid in range(instruments)}


def percentiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    p50, p95, p99, top = np.percentile(values, [50, 95, 99, 100])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "max": round(float(top), 3),
    }


def bench_plain(ticks: int, instruments: int, batch: int, shards: int) -> dict[str, Any]:
    """Push and drain through two deployments (block and conflate) in one process."""
    router = TickRouter(RouterConfig(), max_batch=65_536)
    names = {"block": shards, "conflate": max(1, shards // 2)}
    for policy, count in names.items():
        router.add_deployment(policy, universe(instruments), count, policy)
        for k in range(count):
            router.shard_up(policy, k)
    data = synthetic_ticks(ticks, instruments)
    started = time.perf_counter()
    for start in range(0, ticks, batch):
        router.push(data[start : start + batch])
        for policy, count in names.items():
            for k in range(count):
                while (delivery := router.take(policy, k)) is not None:
                    router.complete(delivery)
    elapsed = time.perf_counter() - started
    stats = router.stats()
    return {
        "ticks": ticks,
        "batch": batch,
        "deployments": {p: n for p, n in names.items()},
        "seconds": round(elapsed, 3),
        "ticks_per_s": round(ticks / elapsed),
        "balanced": all(d.balanced for d in stats.deployments.values()),
        "delivered": {name: d.ticks_out for name, d in stats.deployments.items()},
    }


class LatencySink:
    """A shard stand-in for the benchmark: counts ticks and samples feed-stamp to arrival latency."""

    def __init__(self) -> None:
        self.ticks = 0
        self.samples: list[np.ndarray] = []

    async def on_ticks(self, ticks: np.ndarray) -> int:
        now = time.time_ns()
        self.ticks += len(ticks)
        self.samples.append((now - ticks["ts_recv_ns"][:: max(1, len(ticks) // 64)]) / 1e6)
        return len(ticks)

    def report(self) -> tuple[int, np.ndarray]:
        return self.ticks, np.concatenate(self.samples) if self.samples else np.empty(0)


def bench_actor(
    ticks_per_s: float | None, seconds: float, instruments: int, batch: int, shards: int
) -> dict[str, Any]:
    """A driver stamps and pushes batches to the router actor, which feeds `shards` sink actors."""
    import ray

    from actors.router.actor import start_router

    router = start_router(RouterConfig(), options={"name": f"router-bench-{os.getpid()}"})
    sink_class: Any = ray.remote(num_cpus=0)(LatencySink)
    sinks: list[Any] = [sink_class.remote() for _ in range(shards)]
    ray.get(router.add_deployment.remote("bench", universe(instruments), shards, "block", sinks))
    data = synthetic_ticks(max(batch * 64, batch), instruments)

    async def drive() -> tuple[int, float]:
        sent = 0
        started = time.perf_counter()
        pending: list[Any] = []
        while (elapsed := time.perf_counter() - started) < seconds:
            if ticks_per_s is not None and sent > elapsed * ticks_per_s:
                await asyncio.sleep(min(0.001, sent / ticks_per_s - elapsed))  # pacing the feed
                continue
            start = (sent // batch * batch) % len(data)
            chunk = data[start : start + batch].copy()
            chunk["ts_recv_ns"] = time.time_ns()
            pending.append(router.push.remote(chunk))
            sent += len(chunk)
            if len(pending) >= 4:  # a feed keeps a few pushes in flight, then feels back-pressure
                await pending.pop(0)
        for ref in pending:
            await ref
        return sent, time.perf_counter() - started

    sent, elapsed = asyncio.run(drive())
    pushed_at = time.perf_counter()
    deadline = time.monotonic() + 60
    while ray.get(router.stats.remote())["ticks_out"] < sent and time.monotonic() < deadline:
        time.sleep(0.05)  # draining the buffers before reading the sinks
    drain_s = time.perf_counter() - pushed_at
    stats = ray.get(router.stats.remote())
    reports = ray.get([s.report.remote() for s in sinks])
    latencies = np.concatenate([r[1] for r in reports])
    result = {
        "ticks_sent": sent,
        "seconds": round(elapsed, 3),
        "target_ticks_per_s": ticks_per_s,
        "pushed_ticks_per_s": round(sent / elapsed),
        "delivered": sum(r[0] for r in reports),
        "lost": sent - sum(r[0] for r in reports),
        "drain_s": round(drain_s, 3),
        "balanced": stats["balanced"],
        "latency_ms": percentiles(latencies),
        "shards": shards,
        "batch": batch,
    }
    for handle in (router, *sinks):
        ray.kill(handle, no_restart=True)
    return result
