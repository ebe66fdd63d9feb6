"""`shardline bench ticks`: the whole tick path under load, measured from outside.

simulator socket → feed → router → shards running the sample EMA strategy, on a private local
Ray. Counters are read at the start and the end of the measured window (after a warm-up), so the
figures are steady-state rates; latency comes from the shards' own windows (exchange timestamp →
strategy handler). `--inject router` replaces the socket and the feed with an injector actor that
pushes generated batches straight into the router. `--baseline` runs the same strategy on one bare
Nautilus node (no Ray) over the same kind of ticks and prints the ratio.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import ray
import yaml

from cluster.config import DEFAULT_CONFIG_PATH, ShardlineConfig, parse_config
from cluster.topology import NAMESPACE

SAMPLE_STRATEGY = "actors.shard.strategies.ema_cross:EMACross"
DEPLOYMENT = "bench"


def bench_config(rate: int, instruments: int, shards: int, data_dir: str, flow: str) -> ShardlineConfig:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["data_dir"] = data_dir
    data["catalog"]["synth_count"] = max(20_000, instruments * 10)
    data["sim"].update({"tick_rate": rate, "instruments": instruments})
    data["deployments"] = [
        {
            "name": DEPLOYMENT,
            "strategy": SAMPLE_STRATEGY,
            "config": {"fast_period": 10, "slow_period": 30, "trade_size": 1},
            "universe": {"query": "NSE equities", "limit": instruments},
            "shards": shards,
            "flow": flow,
        }
    ]
    return parse_config(data, "bench config")


class TickInjector:
    """Pushes generated tick batches into the router at a set rate (the `--inject router` source)."""

    def __init__(self, iids: list[int], rate: int, batch: int = 2048, seed: int = 7) -> None:
        from actors.ticks import TICK_DTYPE, FeedMode

        self._iids = np.asarray(iids, dtype=np.int32)
        self._rate = rate
        self._batch = max(1, min(batch, rate // 100 or 1))
        self._rng = np.random.default_rng(seed)
        self._price = np.full(len(iids), 100_000, dtype=np.int64)
        self._seq = np.zeros(len(iids), dtype=np.int64)
        self._dtype = TICK_DTYPE
        self._mode = int(FeedMode.QUOTE)
        self._sent = 0
        self._task: asyncio.Task[None] | None = None

    def _make(self, n: int) -> np.ndarray:
        ticks = np.zeros(n, dtype=self._dtype)
        slot = np.arange(self._sent, self._sent + n) % len(self._iids)
        self._price[slot] += self._rng.integers(-1, 2, size=n) * 5  # one ₹0.05 step
        np.maximum(self._price, 500, out=self._price)
        np.add.at(self._seq, slot, 1)
        now = time.time_ns()
        ticks["iid"] = self._iids[slot]
        ticks["ts_exchange_ns"] = now
        ticks["ts_recv_ns"] = now
        ticks["seq"] = self._seq[slot]  # per-instrument order holds: one row per slot per batch
        ticks["ltp"] = self._price[slot]
        ticks["ltq"] = 1
        ticks["mode"] = self._mode
        return ticks

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        router = ray.get_actor("router", namespace=NAMESPACE)
        started = time.perf_counter()
        while True:
            due = int((time.perf_counter() - started) * self._rate)
            if due - self._sent < self._batch:
                await asyncio.sleep(self._batch / self._rate / 2)  # pacing to the offered rate
                continue
            n = min(due - self._sent, len(self._iids), 8 * self._batch)
            await router.push.remote(self._make(n))
            self._sent += n

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "ticks_out": self._sent}


def _snapshot(names: list[str]) -> dict[str, dict[str, Any]]:
    handles = {n: ray.get_actor(n, namespace=NAMESPACE) for n in names}
    answers: list[dict[str, Any]] = ray.get([h.stats.remote() for h in handles.values()], timeout=60)
    return dict(zip(handles, answers, strict=True))


def _process_usage(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    out = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            cpu = proc.cpu_times()
            out[name] = {"cpu_s": cpu.user + cpu.system, "rss_mb": proc.memory_info().rss / 2**20}
        except psutil.Error:
            out[name] = {"cpu_s": 0.0, "rss_mb": 0.0}
    return out


def _ray_tree_rss_mb() -> float:
    """Everything this private cluster runs: the driver, GCS, raylet, workers, agents."""
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def run(
    rate: int,
    seconds: float,
    instruments: int,
    shards: int,
    inject: str | None = None,
    baseline: bool = False,
    flow: str = "block",
    warmup_s: float = 5.0,
) -> dict[str, Any]:
    from cluster import launcher

    with tempfile.TemporaryDirectory(prefix="shardline-bench-") as tmp:
        config = bench_config(rate, instruments, shards, str(Path(tmp) / "data"), flow)
        ray.init(
            address="local",
            num_cpus=2,
            namespace=NAMESPACE,
            resources={config.execution.pin_resource: 1.0},
            include_dashboard=False,
            log_to_driver=False,
        )
        try:
            return _measure(config, launcher, rate, seconds, instruments, shards, inject, baseline, warmup_s)
        finally:
            ray.shutdown()


def _measure(
    config: ShardlineConfig,
    launcher: Any,
    rate: int,
    seconds: float,
    instruments: int,
    shards: int,
    inject: str | None,
    baseline: bool,
    warmup_s: float,
) -> dict[str, Any]:
    launcher.up(config, serve_terminal=False, start_feed=inject is None)
    shard_names = [f"shard-{DEPLOYMENT}-{k}" for k in range(shards)]
    source = "feed-0"
    if inject == "router":
        from catalog.sources import load_default_catalog

        catalog = load_default_catalog(config)
        iids = [i.iid for i in catalog.select("NSE equities", instruments)]
        source = "injector"
        remote: Any = ray.remote
        injector = (
            remote(TickInjector).options(name=source, namespace=NAMESPACE, num_cpus=0).remote(iids, rate)
        )
        ray.get(injector.start.remote())
    else:
        ray.get(ray.get_actor("sim", namespace=NAMESPACE).set_tick_rate.remote(rate))
    names = [source, "router", "execution", "portfolio", *shard_names]
    if inject is None:
        names.append("sim")
    deadline = time.monotonic() + 120
    while True:  # warm-up: every shard has handled ticks
        stats = _snapshot(shard_names)
        if all(s.get("ticks_handled", 0) > 0 for s in stats.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("shards handled no ticks within 120 s")
        time.sleep(0.5)
    time.sleep(warmup_s)  # let queues reach their steady state before the window opens

    before = _snapshot(names)
    pids = {n: int(s["pid"]) for n, s in before.items() if "pid" in s}
    usage_before = _process_usage(pids)
    t0 = time.perf_counter()
    time.sleep(seconds)  # the measured window
    after = _snapshot(names)
    dt = time.perf_counter() - t0
    usage_after = _process_usage(pids)

    def delta(name: str, *path: str) -> float:
        def get(doc: dict[str, Any]) -> float:
            for key in path:
                doc = doc.get(key, {}) if isinstance(doc, dict) else {}
            return float(doc) if isinstance(doc, int | float) else 0.0

        return get(after[name]) - get(before[name])

    processed = sum(delta(n, "ticks_handled") for n in shard_names)
    offered = delta(source, "ticks_out") if inject else delta("sim", "sent")
    router_after = after["router"]
    dep = router_after["deployments"].get(DEPLOYMENT, {})
    per_actor = {}
    for name in pids:
        cpu = usage_after[name]["cpu_s"] - usage_before[name]["cpu_s"]
        per_actor[name] = {
            "cpu_pct": round(100 * cpu / dt, 1),
            "rss_mb": round(usage_after[name]["rss_mb"], 1),
        }
    latency = {n: after[n].get("latency_exchange_to_strategy", {}) for n in shard_names}
    latency_recv = {n: after[n].get("latency_recv_to_strategy", {}) for n in shard_names}
    lost = 0.0
    if inject is None:
        lost = (
            delta("feed-0", "stream", "missed_by_sequence")
            + delta("sim", "dropped")
            + delta("feed-0", "lost_router_restarting")
        )
    result: dict[str, Any] = {
        "bench": "ticks",
        "source": "router-injector" if inject else "simulator-socket",
        "offered_rate": rate,
        "instruments": instruments,
        "shards": shards,
        "flow": config.deployments[0].flow.value,
        "seconds": round(dt, 2),
        "offered_ticks_per_s": round(offered / dt),
        "processed_ticks_per_s": round(processed / dt),
        "lost": int(lost),
        "conflated": int(sum(s.get("conflated", 0) for s in dep.get("shards", []))),
        "dropped": int(sum(s.get("dropped", 0) for s in dep.get("shards", []))),
        "router_balanced": bool(router_after.get("balanced")),
        "latency_exchange_to_strategy_us": {
            "p50": max((v.get("p50_us", 0) for v in latency.values()), default=0),
            "p99": max((v.get("p99_us", 0) for v in latency.values()), default=0),
            "max": max((v.get("max_us", 0) for v in latency.values()), default=0),
        },
        "latency_recv_to_strategy_us": {
            "p50": max((v.get("p50_us", 0) for v in latency_recv.values()), default=0),
            "p99": max((v.get("p99_us", 0) for v in latency_recv.values()), default=0),
        },
        "orders": int(sum(after[n].get("orders_sent", 0) for n in shard_names)),
        "per_actor": per_actor,
        "cpu_pct_total": round(sum(a["cpu_pct"] for a in per_actor.values()), 1),
        "rss_mb_total": round(_ray_tree_rss_mb(), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if baseline:
        result["baseline"] = _baseline(instruments, processed / dt if dt else 0.0)
    return result


def _baseline(instruments: int, processed_per_s: float) -> dict[str, Any]:
    from actors.shard.baseline import random_walk_ticks, run_bare_shard
    from actors.shard.universe import ShardInstrument

    universe = [ShardInstrument.equity(i, f"BENCH{i}-EQ", str(10_000 + i)) for i in range(instruments)]
    ticks = random_walk_ticks(universe, 200_000)
    bare = run_bare_shard(SAMPLE_STRATEGY, {"fast_period": 10, "slow_period": 30}, universe, ticks)
    return {
        "bare_node_ticks_per_s": round(bare.ticks_per_s),
        "ratio": round(processed_per_s / bare.ticks_per_s, 3) if bare.ticks_per_s else None,
    }
