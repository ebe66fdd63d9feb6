"""The supervisor: watches every actor of the topology and answers `shardline status`.

Ray restarts crashed actors itself (`max_restarts=-1`); shards re-register with the router when
they come back. The supervisor observes: it polls each actor's `stats()` with a deadline, notices
restarts (a new pid), computes rates, and reports readiness.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray

from actors.restart import start_on_self
from cluster.health import HealthBoard
from cluster.metrics import export_stats, export_status
from cluster.topology import NAMESPACE, TopologyPlan

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
STATS_TIMEOUT_S = 2.0

RATE_KEYS: dict[str, tuple[str, ...]] = {
    "feed": ("ticks_out",),
    "router": ("ticks_in", "ticks_out"),
    "shard": ("ticks_handled", "orders_sent"),
    "execution": ("orders_submitted", "fills"),
    "simulator": ("ticks_sent",),
}


def actor_kinds(plan: TopologyPlan) -> dict[str, str]:
    kinds = {name: name for name in plan.singletons}
    if plan.runs_simulator:
        kinds["sim"] = "simulator"
    for i in range(plan.feeds):
        kinds[f"feed-{i}"] = "feed"
    for deployment in plan.deployments:
        for name in deployment.shard_names:
            kinds[name] = "shard"
    kinds.pop("supervisor", None)
    return kinds


class Supervisor:
    """Async actor body; a plain class so the launcher can wrap it with `ray.remote`."""

    def __init__(self, plan: TopologyPlan, serve_url: str = "") -> None:
        self._plan = plan
        self._serve_url = serve_url
        self._board = HealthBoard(RATE_KEYS)
        self._kinds = actor_kinds(plan)
        for name, kind in self._kinds.items():
            self._board.expect(name, kind)
        self._started_ns = time.time_ns()
        self._export_errors = 0
        self._polls = 0
        self._task: asyncio.Task[None] | None = None
        start_on_self("run")

    async def _poll_once(self) -> None:
        async def ask(name: str) -> None:
            try:
                handle = ray.get_actor(name, namespace=NAMESPACE)
                stats: dict[str, Any] = await asyncio.wait_for(handle.stats.remote(), STATS_TIMEOUT_S)
            except Exception as err:  # a dead, restarting or missing actor is a status, not a crash
                if name in self._kinds:  # it may have been forgotten while we asked
                    self._board.observe_error(name, f"{type(err).__name__}: {err}".splitlines()[0][:200])
                return
            if name not in self._kinds:
                return
            if self._kinds[name] == "feed" and not stats.get("stream"):
                # A restarted feed opens its sockets itself; this is the second line of defence.
                handle.start.remote()
            plain = _plain(stats)
            self._board.observe_ok(name, time.time_ns(), plain, node=str(stats.get("node", "")))
            self._export(lambda: export_stats(self._kinds[name], name, plain))

        await asyncio.gather(*(ask(name) for name in list(self._kinds)))
        self._polls += 1
        self._export(lambda: export_status(self._board.status(time.time_ns())))

    def _export(self, record: Any) -> None:
        """Ray metrics from the answers just polled; a metrics problem never stops the polling."""
        try:
            record()
        except Exception as err:  # counted in the log, never raised into the health loop
            self._export_errors += 1
            if self._export_errors <= 3:
                log.warning("metrics export failed: %s", err)

    async def run(self) -> None:
        """Poll forever; started once by the launcher (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self._poll_once()
            await asyncio.sleep(POLL_INTERVAL_S)  # a poll period, not a wait for a condition

    async def watch(self, names: list[str], kind: str = "shard") -> None:
        """Watch actors started after `up` (a new deployment's, a rescale's or a hot swap's shards)."""
        for name in names:
            self._kinds[name] = kind
            self._board.expect(name, kind)

    async def forget(self, names: list[str]) -> None:
        """Stop watching actors retired on purpose (a stopped deployment's or a swapped-out version's)."""
        for name in names:
            self._kinds.pop(name, None)
            self._board.forget(name)

    async def status(self) -> dict[str, Any]:
        now = time.time_ns()
        doc = self._board.status(now)
        doc["mode"] = self._plan.mode.value
        doc["uptime_s"] = round((now - self._started_ns) / 1e9, 1)
        doc["serve_url"] = self._serve_url
        doc["deployments"] = [
            {
                "name": d.name,
                "strategy": d.strategy,
                "shards": d.shards,
                "flow": d.flow.value,
                "instruments": len(d.instruments),
            }
            for d in self._plan.deployments
        ]
        return doc

    async def ready(self) -> dict[str, Any]:
        """Readiness: a feed connected, router and execution healthy, at least one shard healthy."""
        now = time.time_ns()
        shards = [n for n, k in self._kinds.items() if k == "shard"]
        checks = {
            "feed": any(self._board.healthy(n, now) for n, k in self._kinds.items() if k == "feed")
            or not self._plan.feeds,
            "router": self._board.healthy("router", now),
            "execution": self._board.healthy("execution", now),
            "shard": any(self._board.healthy(n, now) for n in shards) or not shards,
        }
        return {"ready": all(checks.values()), "checks": checks}

    async def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id()[:12],
            "polling": self._task is not None and not self._task.done(),
            "polls": self._polls,
            "metrics_export_errors": self._export_errors,
        }


def _plain(value: Any) -> Any:
    """Stats answers as JSON-able dicts (msgspec structs and numpy scalars included)."""
    import msgspec

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, msgspec.Struct):
        return _plain(msgspec.to_builtins(value))
    return value
