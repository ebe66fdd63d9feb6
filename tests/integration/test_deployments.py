"""Deployments on a real local Ray: start, show, a failing strategy, refusals, rescale, stop.

`Desk` brings up what a deployment needs: the real router, the real execution actor (paper fills
in process) and the "deployments" actor, each under its usual name, with the journals in a temp
dir. Ticks come from a `TickStream` pushed into the router, as a feed would.

The strategies below are deliberately broken (or odd) ones the shards import from this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray
from nautilus_trader.config import NonNegativeInt, StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.trading.strategy import Strategy

from actors.execution.actor import start_execution
from actors.router.actor import start_router
from actors.shard.actor import start_shard_actor
from actors.shard.shard import ShardSpec
from actors.shard.universe import ShardInstrument
from catalog.sources import load_default_catalog
from cluster import jobs
from cluster.config import parse_config
from cluster.deployments import DeploymentBusy, DeploymentError, ShardStartError, UnknownDeployment
from cluster.swap import SequenceCheck, TickStream, audit_sequences
from cluster.topology import NAMESPACE

pytestmark = pytest.mark.slow

# ----------------------------------------------------------------------------------- strategies


class FailsOnTickConfig(StrategyConfig, frozen=True):
    after: NonNegativeInt = 10


class FailsOnTick(Strategy):
    """Raises on its `after`-th trade tick."""

    def __init__(self, config: FailsOnTickConfig) -> None:
        super().__init__(config)
        self._left = config.after

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError(f"boom on {tick.instrument_id}")


class FailsOnStartConfig(StrategyConfig, frozen=True):
    pass


class FailsOnStart(Strategy):
    def __init__(self, config: FailsOnStartConfig) -> None:
        super().__init__(config)

    def on_start(self) -> None:
        raise RuntimeError("cannot warm up: no model file")


class FailsOnLoad(SequenceCheck):
    """Starts fine, then refuses the state it is handed (a hot swap's last chance to fail)."""

    def on_load(self, state: dict[str, bytes]) -> None:
        raise ValueError("state from an incompatible version")


class SequenceCheckV2(SequenceCheck):
    """The "next version" of the check strategy: another class, same behaviour."""


class RestingOrdersConfig(StrategyConfig, frozen=True):
    below_pct: NonNegativeInt = 5  # inside the 10% price band, far enough never to fill here


class RestingOrders(Strategy):
    """On each instrument's first tick, a buy limit far below the market that stays working."""

    def __init__(self, config: RestingOrdersConfig) -> None:
        super().__init__(config)
        self._done: set[str] = set()

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        key = tick.instrument_id.value
        if key in self._done:
            return
        self._done.add(key)
        instrument = self.cache.instrument(tick.instrument_id)
        assert instrument is not None
        price = tick.price.as_decimal() * (Decimal(100 - self.config.below_pct) / 100)
        self.submit_order(
            self.order_factory.limit(
                instrument_id=tick.instrument_id,
                order_side=OrderSide.BUY,
                quantity=instrument.make_qty(instrument.lot_size.as_decimal() if instrument.lot_size else 1),
                price=instrument.make_price(price),
                time_in_force=TimeInForce.DAY,
            )
        )


# ----------------------------------------------------------------------------------- the desk


class Desk:
    """Router, execution and deployments actors on the session's Ray, plus a tick stream."""

    def __init__(self, data_dir: Path) -> None:
        self.config = parse_config({"data_dir": str(data_dir), "catalog": {"synth_count": 2000}})
        self.catalog = load_default_catalog(self.config)
        self.router = start_router(self.config, options={"num_cpus": 0})
        self.execution = start_execution(self.config, options={"num_cpus": 0}, venue="local", redis_url="")
        ray.get([self.router.stats.remote(), self.execution.stats.remote()], timeout=120)
        self.deployments = jobs.start_deployments_actor(self.config, redis_url="")
        self._streams: list[tuple[TickStream, threading.Thread]] = []

    def universe(self, count: int, skip: int = 0) -> list[ShardInstrument]:
        chosen = self.catalog.select("NSE equities", skip + count)[skip:]
        instruments = [ShardInstrument.from_catalog(i) for i in chosen]
        ray.get(self.execution.update_marks.remote({i.key: 100_000 for i in instruments}))
        return instruments

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return jobs.call(method, *args, **kwargs)

    def stream(self, universe: list[ShardInstrument], rate: int) -> TickStream:
        stream = TickStream(lambda ticks: ray.get(self.router.push.remote(ticks)), universe, rate)
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        self._streams.append((stream, thread))
        return stream

    def stop_streams(self) -> None:
        for stream, thread in self._streams:
            stream.stop()
            thread.join(timeout=60)
        self._streams.clear()

    def shard(self, name: str) -> Any:
        return ray.get_actor(name, namespace=NAMESPACE)

    def shard_exists(self, name: str) -> bool:
        try:
            self.shard(name)
        except ValueError:
            return False
        return True

    def states(self, name: str) -> list[dict[str, bytes]]:
        """Every current shard's `SequenceCheck` state, after it handled all it was given."""
        shards = [self.shard(s["name"]) for s in self.call("show", name)["shard_detail"]]
        ray.get([s.drain.remote() for s in shards])
        return list(ray.get([s.save_state.remote() for s in shards]))

    def route(self, name: str) -> dict[str, Any] | None:
        return ray.get(self.router.stats.remote())["deployments"].get(name)

    def drained(self, name: str) -> bool:
        route = self.route(name)
        return route is not None and route["buffered"] == 0 and route["in_flight"] == 0

    def close(self) -> None:
        self.stop_streams()
        from ray.util import list_named_actors

        for entry in list_named_actors(all_namespaces=True):
            if entry.get("namespace") == NAMESPACE and str(entry["name"]).startswith("shard-"):
                ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE), no_restart=True)
        for handle in (self.deployments, self.execution, self.router):
            ray.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def desk(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    d = Desk(tmp_path_factory.mktemp("deployments"))
    yield d
    d.close()


@pytest.fixture(autouse=True)
def _quiet_streams(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "desk" in request.fixturenames:
        request.getfixturevalue("desk").stop_streams()


def check_spec(name: str, instruments: list[ShardInstrument], /, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "strategy": "cluster.swap:SequenceCheck",
        "config": {"order_every": 50},
        "universe": {"instruments": [i.key for i in instruments]},
        "shards": 2,
    }
    spec.update(changes)
    return spec


def last_seqs(stream: TickStream) -> dict[str, int]:
    return stream.last_seq_by_instrument()


# ----------------------------------------------------------------------------------- tests


def test_a_deployment_starts_trades_shows_and_stops(desk: Desk, wait_until: Callable[..., Any]) -> None:
    universe = desk.universe(6)
    doc = desk.call("start", check_spec("life", universe))
    assert (doc["state"], doc["generation"], doc["shards"], doc["instruments"]) == ("running", 0, 2, 6)
    assert [s["name"] for s in doc["shard_detail"]] == ["shard-life-0", "shard-life-1"]
    assert sum(s["instruments_routed"] for s in doc["shard_detail"]) == 6

    stream = desk.stream(universe, rate=2_000)
    stream.wait_for(3_000)
    stream.stop()
    wait_until(lambda: desk.drained("life"), 60, "the router to deliver every tick")
    doc = wait_until(
        lambda: (d := desk.call("show", "life"))["ticks_handled"] == stream.sent and d,
        60,
        "the shards to handle every tick",
    )
    assert doc["router"]["ticks_in"] == doc["router"]["ticks_out"] == stream.sent
    assert doc["router"]["dropped"] == 0
    assert doc["orders"]["total"] == sum(s["orders_sent"] for s in doc["shard_detail"]) > 0
    assert "pnl" in doc and "realized_pnl" in doc["pnl"]
    audit = audit_sequences(desk.states("life"), last_seqs(stream))
    assert (audit.lost, audit.duplicated) == (0, 0)
    assert [d["name"] for d in desk.call("summaries")] == ["life"]

    stopped = desk.call("stop", "life")
    assert (stopped["state"], stopped["changed"]) == ("stopped", True)
    assert desk.route("life") is None
    assert not desk.shard_exists("shard-life-0") and not desk.shard_exists("shard-life-1")
    assert desk.call("show", "life")["state"] == "stopped"
    assert desk.call("stop", "life")["changed"] is False

    again = desk.call("start", check_spec("life", universe, shards=1))
    # a restarted deployment gets a new generation: new actor names, new client order ids
    assert (again["generation"], [s["name"] for s in again["shard_detail"]]) == (1, ["shard-life.1-0"])
    desk.call("stop", "life")


def test_a_strategy_that_raises_fails_its_own_deployment_only(
    desk: Desk, wait_until: Callable[..., Any]
) -> None:
    universe = desk.universe(4, skip=10)
    desk.call("start", check_spec("steady", universe, shards=1))
    desk.call(
        "start",
        check_spec("brittle", universe, strategy="test_deployments:FailsOnTick", config={"after": 30}),
    )
    stream = desk.stream(universe, rate=1_000)
    failed = wait_until(
        lambda: (d := desk.call("show", "brittle"))["state"] == "failed" and d,
        60,
        "the brittle deployment to fail",
    )
    assert "boom on" in failed["error"] and "failed" in failed["error"]
    assert [s["state"] for s in failed["shard_detail"]].count("failed") >= 1
    logs = desk.call("logs", "brittle", 100)
    assert any("error:" in line and "boom on" in line for line in logs)

    stream.wait_for(2_000)
    stream.stop()
    wait_until(lambda: desk.drained("steady"), 60, "the steady deployment to take every tick")
    steady = wait_until(
        lambda: (d := desk.call("show", "steady"))["ticks_handled"] == stream.sent and d,
        60,
        "the steady deployment to handle every tick",
    )
    assert steady["state"] == "running" and steady["error"] == ""
    for name in ("steady", "brittle"):
        desk.call("stop", name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy": "no_such_module:Thing"}, "cannot import module 'no_such_module'"),
        ({"strategy": "cluster.swap:NoSuchClass"}, "has no class 'NoSuchClass'"),
        ({"config": {"order_evry": 5}}, "unknown config key(s) for SequenceCheckConfig: order_evry"),
        ({"config": {"order_every": -1}}, "invalid config for SequenceCheckConfig"),
        (
            {"strategy": "actors.shard.strategies.ema_cross:EMACross", "config": {"fast_period": 30}},
            "fast_period (30) must be less than slow_period (30)",
        ),
        ({"mode": "live"}, "meant for mode live, but the cluster runs in mode sim"),
        ({"universe": {"instruments": ["NSE:NOSUCH"]}}, "no token or symbol 'NOSUCH' on NSE"),
    ],
)
def test_a_bad_deployment_is_refused_before_anything_starts(
    desk: Desk, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeploymentError) as err:
        desk.call("start", check_spec("refused", desk.universe(2), **changes))
    assert message in str(err.value)
    assert desk.route("refused") is None
    assert not desk.shard_exists("shard-refused-0")
    with pytest.raises(UnknownDeployment):
        desk.call("show", "refused")


def test_a_strategy_failing_at_start_leaves_nothing_running(desk: Desk) -> None:
    universe = desk.universe(2, skip=20)
    spec = check_spec("no-start", universe, strategy="test_deployments:FailsOnStart", config={})
    with pytest.raises(ShardStartError, match="cannot warm up: no model file"):
        desk.call("start", spec)
    assert desk.route("no-start") is None
    assert not desk.shard_exists("shard-no-start-0") and not desk.shard_exists("shard-no-start-1")
    doc = desk.call("show", "no-start")
    assert doc["state"] == "failed" and "cannot warm up" in doc["error"]
    with pytest.raises(DeploymentBusy, match="is failed; stop it before starting it again"):
        desk.call("start", check_spec("no-start", universe))
    desk.call("stop", "no-start")
    fixed = desk.call("start", check_spec("no-start", universe))
    assert fixed["state"] == "running"
    desk.call("stop", "no-start")


def test_rescaling_under_a_stream_moves_instruments_and_loses_no_tick(
    desk: Desk, wait_until: Callable[..., Any]
) -> None:
    universe = desk.universe(12, skip=30)
    desk.call("start", check_spec("elastic", universe, shards=2))
    stream = desk.stream(universe, rate=2_000)
    stream.wait_for(1_000)

    up = desk.call("scale", "elastic", 3)
    assert (up["from_shards"], up["to_shards"], up["added"], up["removed"]) == (2, 3, ["shard-elastic-2"], [])
    assert sum(up["instruments_per_shard"]) == 12 and len(up["instruments_per_shard"]) == 3
    assert desk.call("scale", "elastic", 3) == {"name": "elastic", "shards": 3, "changed": False}
    stream.wait_for(1_000)

    down = desk.call("scale", "elastic", 1)
    assert down["removed"] == ["shard-elastic-1", "shard-elastic-2"]
    assert down["instruments_per_shard"] == [12]
    retired_rows = sum(int(f["rows_handled"]) for f in down["retired"]["final"].values())
    assert not desk.shard_exists("shard-elastic-1") and not desk.shard_exists("shard-elastic-2")
    stream.wait_for(1_000)
    stream.stop()

    wait_until(lambda: desk.drained("elastic"), 60, "the router to deliver every tick")
    route = desk.route("elastic")
    assert route is not None
    assert route["ticks_in"] == route["ticks_out"] == stream.sent
    assert route["dropped"] == route["conflated"] == 0
    survivor = desk.shard("shard-elastic-0")
    ray.get(survivor.drain.remote())
    stats = ray.get(survivor.stats.remote())
    assert stats["rows_handled"] + retired_rows == stream.sent  # nothing handled twice, nothing missed
    (state,) = desk.states("elastic")
    assert int(state["out_of_order"]) == 0  # no instrument's ticks arrived out of order or again
    doc = desk.call("show", "elastic")
    assert (doc["shards"], [s["name"] for s in doc["shard_detail"]]) == (1, ["shard-elastic-0"])
    desk.call("stop", "elastic")


@pytest.mark.parametrize("shards", [0, 65])
def test_a_rescale_to_an_impossible_count_is_refused(desk: Desk, shards: int) -> None:
    with pytest.raises(DeploymentError, match="shards must be between 1 and 64"):
        desk.call("scale", "anything", shards)


def test_stopping_cancels_the_working_orders_of_the_book(desk: Desk, wait_until: Callable[..., Any]) -> None:
    universe = desk.universe(3, skip=50)
    desk.call(
        "start",
        check_spec("resting", universe, strategy="test_deployments:RestingOrders", config={}, shards=1),
    )
    stream = desk.stream(universe, rate=300)
    orders = wait_until(
        lambda: len(o := ray.get(desk.execution.orders.remote("resting"))) == 3 and o,
        60,
        "three resting orders",
    )
    stream.stop()
    assert {o.status.value for o in orders} == {"OPEN"}
    stopped = desk.call("stop", "resting")
    assert sorted(stopped["orders_cancelled"]) == sorted(o.client_order_id for o in orders)
    after = ray.get(desk.execution.orders.remote("resting"))
    assert {o.status.value for o in after} == {"CANCELLED"}


def test_a_deployment_started_by_up_is_adopted_and_can_be_swapped(
    desk: Desk, tmp_path: Path, wait_until: Callable[..., Any]
) -> None:
    """`shardline up` routes and starts the configured deployments itself; the deployments actor
    it starts afterwards finds them running and manages them like any other."""
    universe = desk.universe(4, skip=90)
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "catalog": {"synth_count": 2000},
            "deployments": [check_spec("configured", universe)],
        }
    )
    spec = config.deployments[0]
    ray.get(desk.router.add_deployment.remote("configured", {i.iid: i.key for i in universe}, 2, "block"))
    shards = [
        start_shard_actor(ShardSpec.from_deployment(spec, universe, k), lifetime="detached", num_cpus=0)
        for k in range(2)
    ]
    assert ray.get([s.ready.remote() for s in shards], timeout=300) == ["running", "running"]
    # a deployments actor with this config, as `up` starts it
    ray.kill(desk.deployments, no_restart=True)
    wait_until(lambda: not _named("deployments"), 60, "the old deployments actor to be gone")
    desk.deployments = jobs.start_deployments_actor(config, redis_url="")

    doc = desk.call("show", "configured")
    assert (doc["state"], doc["source"], doc["shards"], doc["generation"]) == ("running", "config", 2, 0)
    assert any("adopted" in h for h in doc["history"])
    stream = desk.stream(universe, rate=1_000)
    stream.wait_for(1_000)
    report = desk.call("swap", "configured", strategy="test_deployments:SequenceCheckV2", config={})
    assert report["shards"] == ["shard-configured.1-0", "shard-configured.1-1"]
    stream.wait_for(500)
    stream.stop()
    wait_until(lambda: desk.drained("configured"), 60, "the router to deliver every tick")
    audit = audit_sequences(desk.states("configured"), stream.last_seq_by_instrument())
    assert (audit.seen, audit.lost, audit.duplicated) == (stream.sent, 0, 0)
    desk.call("stop", "configured")


def _named(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True
