"""The supervisor's view of the cluster: who answered, who restarted, how fast counters move.

Plain and clock-free: the supervisor feeds it each actor's `stats()` answer (or the error) with
the time it asked, and reads back a status document for `shardline status` and `/ready`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# An actor that has not answered for this long is unhealthy even if its last answer was good.
STALE_AFTER_NS = 5_000_000_000


@dataclass
class ActorHealth:
    name: str
    kind: str
    node: str = ""
    pid: int | None = None
    restarts: int = 0
    last_ok_ns: int | None = None
    last_error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    _prev: tuple[int, dict[str, float]] | None = None

    def healthy(self, now_ns: int) -> bool:
        if self.last_ok_ns is None or now_ns - self.last_ok_ns > STALE_AFTER_NS:
            return False
        return str(self.stats.get("state", "running")) not in ("failed", "stopped")


def numeric_counters(stats: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every int/float leaf of a nested stats dict, keyed by its dotted path."""
    out: dict[str, float] = {}
    for key, value in stats.items():
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[path] = float(value)
        elif isinstance(value, dict):
            out.update(numeric_counters(value, f"{path}."))
    return out


class HealthBoard:
    """Health and rates per named actor, from successive `stats()` observations."""

    def __init__(self, rate_keys: dict[str, tuple[str, ...]]) -> None:
        # kind -> counter paths whose per-second rate is worth showing (e.g. "ticks_in").
        self._rate_keys = rate_keys
        self._actors: dict[str, ActorHealth] = {}

    def expect(self, name: str, kind: str) -> None:
        self._actors.setdefault(name, ActorHealth(name=name, kind=kind))

    def forget(self, name: str) -> None:
        self._actors.pop(name, None)

    def observe_ok(self, name: str, now_ns: int, stats: dict[str, Any], node: str = "") -> None:
        actor = self._actors[name]
        pid = stats.get("pid")
        if isinstance(pid, int):
            if actor.pid is not None and pid != actor.pid:
                actor.restarts += 1
            actor.pid = pid
        actor.node = node or actor.node
        actor.stats = stats
        actor.last_ok_ns = now_ns
        actor.last_error = ""
        counters = numeric_counters(stats)
        wanted = self._rate_keys.get(actor.kind, ())
        if actor._prev is not None:
            then, before = actor._prev
            dt = (now_ns - then) / 1e9
            if dt > 0:
                actor.rates = {
                    k: max(0.0, (counters[k] - before.get(k, 0.0)) / dt) for k in wanted if k in counters
                }
        actor._prev = (now_ns, counters)

    def observe_error(self, name: str, error: str) -> None:
        self._actors[name].last_error = error

    def status(self, now_ns: int) -> dict[str, Any]:
        actors = []
        for a in sorted(self._actors.values(), key=lambda a: (a.kind, a.name)):
            actors.append(
                {
                    "name": a.name,
                    "kind": a.kind,
                    "healthy": a.healthy(now_ns),
                    "node": a.node,
                    "pid": a.pid,
                    "restarts": a.restarts,
                    "last_seen_s": None if a.last_ok_ns is None else round((now_ns - a.last_ok_ns) / 1e9, 3),
                    "error": a.last_error,
                    "rates": {k: round(v, 1) for k, v in a.rates.items()},
                    "stats": a.stats,
                }
            )
        return {"healthy": all(a["healthy"] for a in actors) and bool(actors), "actors": actors}

    def healthy(self, name: str, now_ns: int) -> bool:
        actor = self._actors.get(name)
        return actor is not None and actor.healthy(now_ns)
