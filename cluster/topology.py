"""What actors the configuration asks for: a pure plan, built before anything starts.

`plan_topology` is a function of the config and the resolved universes only, so the same plan is
computed (and tested) without Ray; `cluster.launcher` turns it into named Ray actors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.config import FlowPolicy, Mode, ShardlineConfig

NAMESPACE = "shardline"
ROUTER = "router"
EXECUTION = "execution"
PORTFOLIO = "portfolio"
SIMULATOR = "sim"
HUB = "hub"
SUPERVISOR = "supervisor"
SERVE_APP = "terminal"


def shard_name(deployment: str, index: int) -> str:
    return f"shard-{deployment}-{index}"


def feed_name(index: int) -> str:
    return f"feed-{index}"


@dataclass(frozen=True)
class DeploymentPlan:
    name: str
    strategy: str
    shards: int
    flow: FlowPolicy
    instruments: tuple[str, ...]  # "EXCH:token" keys

    @property
    def shard_names(self) -> list[str]:
        return [shard_name(self.name, k) for k in range(self.shards)]


@dataclass(frozen=True)
class TopologyPlan:
    mode: Mode
    deployments: tuple[DeploymentPlan, ...]
    feeds: int
    subscriptions: tuple[str, ...]  # union of every universe, sorted
    runs_simulator: bool
    paper_fills: bool
    singletons: tuple[str, ...] = field(default=(ROUTER, EXECUTION, PORTFOLIO, HUB, SUPERVISOR))

    def feed_subscriptions(self, index: int) -> tuple[str, ...]:
        """The instruments feed `index` subscribes: contiguous, near-equal slices of the union."""
        per_feed = math.ceil(len(self.subscriptions) / self.feeds)
        return self.subscriptions[index * per_feed : (index + 1) * per_feed]

    @property
    def actor_names(self) -> list[str]:
        names = list(self.singletons)
        if self.runs_simulator:
            names.append(SIMULATOR)
        names += [feed_name(i) for i in range(self.feeds)]
        for deployment in self.deployments:
            names += deployment.shard_names
        return names


class TopologyError(ValueError):
    """The configuration asks for something the broker's limits or the catalog cannot give."""


def plan_topology(config: ShardlineConfig, universes: Mapping[str, Sequence[str]]) -> TopologyPlan:
    """Plan the actors for `config`, given each enabled deployment's resolved instrument keys."""
    deployments = []
    for spec in config.deployments:
        if not spec.enabled:
            continue
        keys = tuple(universes.get(spec.name, ()))
        if not keys:
            raise TopologyError(f"deployment {spec.name!r}: its universe resolved to no instruments")
        deployments.append(DeploymentPlan(spec.name, spec.strategy, spec.shards, spec.flow, keys))
    subscriptions = tuple(sorted({key for d in deployments for key in d.instruments}))
    per_connection = config.feed.max_subscriptions_per_connection
    capacity = per_connection * config.feed.max_connections
    # One feed actor per SmartStream connection, all on one login (Angel allows 3 per login).
    if len(subscriptions) > capacity:
        raise TopologyError(
            f"{len(subscriptions)} instruments exceed one login's {config.feed.max_connections} "
            f"connections × {per_connection} subscriptions = {capacity}"
        )
    feeds = connections_needed(len(subscriptions), per_connection)
    return TopologyPlan(
        mode=config.mode,
        deployments=tuple(deployments),
        feeds=feeds,
        subscriptions=subscriptions,
        runs_simulator=config.mode in (Mode.SIM, Mode.SIM_LIVE),
        paper_fills=config.mode in (Mode.SIM, Mode.PAPER),
    )


def connections_needed(subscriptions: int, per_connection: int) -> int:
    return max(1, math.ceil(subscriptions / per_connection)) if subscriptions else 0
