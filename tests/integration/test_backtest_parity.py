"""Parity on a real local Ray: a sim topology's live shard and a backtest of its recorded ticks
make the same order decisions, and their fills agree within 1%.

The topology is what `shardline up` starts (simulator, portfolio as the paper venue, execution,
router, hub, a shard, supervisor) with the feed held back until a recorder is on the router, so
the recording holds every tick the shard sees.

A backtest fills at once; live, a fill reaches the shard some time later, and a strategy that
decides from its position can only decide the same when the fill came before that instrument's
next tick. The simulator runs slowly (one tick every two seconds per instrument) so that is the
rule, and the comparison of an instrument's orders stops after a fill that came later than that
(on a loaded machine one can): everything up to it must be equal, and enough orders must have
been compared for the test to mean something.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import yaml
from nautilus_trader.model.data import TradeTick
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.orders import OrderStatus, OrderUpdate
from cluster.backtest import build_report, parse_window, run_backtest
from cluster.config import ShardlineConfig, load_config
from cluster.record import RecordingHandle, record, start_recording, stop_recording
from cluster.topology import NAMESPACE, ROUTER, SIMULATOR, feed_name

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]

IST = timezone(timedelta(hours=5, minutes=30))
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "parity-ema"
INSTRUMENTS = 4
TICK_RATE = 2  # ticks/s over all instruments: one every two seconds each
ORDERS_WANTED = 4  # per instrument, before the stream is paused
FILL_MARGIN_NS = 200_000_000  # a fill this close before the next tick may still reach the shard after it
MIN_COMPARED = 10  # orders compared in all, or the test says the fills were too slow to tell


def _config(tmp: Path) -> Path:
    data = yaml.safe_load((PROJECT_ROOT / "config" / "shardline.yaml").read_text())
    data["data_dir"] = str(tmp / "data")
    data["catalog"]["synth_count"] = 2_000
    data["sim"].update({"tick_rate": TICK_RATE, "instruments": 20})
    data["deployments"] = [
        {
            "name": DEPLOYMENT,
            "strategy": "actors.shard.strategies.ema_cross:EMACross",
            "config": {"fast_period": 2, "slow_period": 5, "trade_size": 1},
            "universe": {"query": "NSE equities", "limit": INSTRUMENTS},
            "shards": 1,
        }
    ]
    data["users"] = []
    path = tmp / "shardline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start_feed(config: ShardlineConfig) -> Any:
    """The feed as `shardline up` starts it (held back there so the recorder sees the first tick)."""
    from actors.angel.auth import AngelCredentials
    from actors.angel.factories import AngelEndpoints
    from actors.feed.actor import FeedActor
    from cluster.launcher import plan_only

    urls = ray.get(ray.get_actor(SIMULATOR, namespace=NAMESPACE).urls.remote())
    plan = plan_only(config)
    remote: Any = ray.remote
    feed = (
        remote(FeedActor)
        .options(name=feed_name(0), namespace=NAMESPACE, lifetime="detached", num_cpus=0)
        .remote(
            config,
            list(plan.feed_subscriptions(0)),
            AngelEndpoints(urls["rest_url"], urls["stream_url"], urls["order_url"]),
            AngelCredentials.for_simulator(config.sim),
        )
    )
    ray.get(feed.start.remote(), timeout=120)
    return feed


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from cluster import launcher

    tmp = tmp_path_factory.mktemp("parity")
    config = load_config(_config(tmp))
    state = launcher.up(config, dashboard=False, serve_terminal=False, start_feed=False)
    try:
        yield {"config": config, "tmp": tmp, "state": state}
    finally:
        for name in [*state["actors"], "hub"]:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)


def _order_number(update: OrderUpdate) -> int:
    return int(update.client_order_id.rsplit("-", 1)[-1])


def _live_orders(book: str) -> list[OrderUpdate]:
    execution = ray.get_actor("execution", namespace=NAMESPACE)
    return sorted(ray.get(execution.orders.remote(book), timeout=30), key=_order_number)


def _quiet(handle: RecordingHandle, wait_until: Callable[..., Any]) -> dict[str, Any]:
    """Pause the simulator and wait until every tick it sent has reached the shard and the recorder,
    and every order of the book is done; returns the router's counts."""
    sim = ray.get_actor(SIMULATOR, namespace=NAMESPACE)
    router = ray.get_actor(ROUTER, namespace=NAMESPACE)
    ray.get(sim.set_tick_rate.remote(0), timeout=30)
    last_sent = [-1]

    def settled() -> dict[str, Any] | None:
        # Settled: what the simulator has sent stopped growing, and all of it went through.
        sent = int(ray.get(sim.stats.remote(), timeout=30)["sent"])
        stats = ray.get(router.stats.remote(), timeout=30)
        routes = [stats["deployments"][DEPLOYMENT], stats["deployments"][handle.route]]
        steady = sent == last_sent[0]
        last_sent[0] = sent
        if not steady or stats["ticks_in"] != sent or any(r["buffered"] or r["in_flight"] for r in routes):
            return None
        return dict(stats)

    stats = wait_until(settled, 120, "every sent tick routed")
    shard = ray.get_actor(f"shard-{DEPLOYMENT}-0", namespace=NAMESPACE)
    ray.get(shard.drain.remote(), timeout=60)

    def orders_done() -> bool:
        # The shard does not wait for the execution actor's answers: an order it sent may still be
        # on its way there once the ticks are handled.
        sent = int(ray.get(shard.stats.remote(), timeout=30)["orders_sent"])
        live = _live_orders(DEPLOYMENT)
        return len(live) == sent and all(o.status in (OrderStatus.FILLED, OrderStatus.REJECTED) for o in live)

    wait_until(orders_done, 60, "every order the shard sent done")
    return stats


def comparable(decided_ns: list[int], filled_ns: list[int], ticks_ns: np.ndarray) -> int:
    """How many of an instrument's orders can be compared: up to and including the first whose live
    fill came later than the instrument's next tick after the decision (minus a margin)."""
    for k, (decided, filled) in enumerate(zip(decided_ns, filled_ns, strict=False)):
        later = ticks_ns[ticks_ns > decided]
        if len(later) and filled >= later[0] - FILL_MARGIN_NS:
            return k + 1
    return min(len(decided_ns), len(filled_ns))


def test_a_backtest_of_the_recording_orders_and_fills_as_the_live_shard_did(
    topology: dict[str, Any], wait_until: Callable[..., Any]
) -> None:
    config: ShardlineConfig = topology["config"]
    catalog_path = topology["tmp"] / "catalog"
    handle = start_recording(config, catalog_path)  # before the first tick
    assert len(handle.keys) == INSTRUMENTS
    _start_feed(config)

    def enough_orders() -> bool:
        per_instrument: dict[str, int] = {}
        for order in _live_orders(DEPLOYMENT):
            per_instrument[order.instrument] = per_instrument.get(order.instrument, 0) + 1
        return len(per_instrument) == INSTRUMENTS and min(per_instrument.values()) >= ORDERS_WANTED

    wait_until(enough_orders, 600, f"{ORDERS_WANTED} live orders per instrument")
    router_stats = _quiet(handle, wait_until)
    summary = stop_recording(handle)

    # The recording holds exactly what the shard was given.
    shard_route = router_stats["deployments"][DEPLOYMENT]
    assert summary.rows == shard_route["ticks_out"] == summary.route["ticks_in"] > 0
    assert summary.route["dropped"] == summary.route["conflated"] == 0
    shard = ray.get(ray.get_actor(f"shard-{DEPLOYMENT}-0", namespace=NAMESPACE).stats.remote(), timeout=30)
    assert summary.trade_ticks == shard["trade_ticks"]

    # The same strategy on the recording, over today's window.
    today = datetime.now(IST).date().isoformat()
    spec = next(d for d in config.deployments if d.name == DEPLOYMENT)
    run = run_backtest(spec, config, catalog_path, *parse_window(today, today))

    from catalog.sources import load_default_catalog

    catalog = load_default_catalog(config)
    nautilus_id = {k: catalog.get(k).nautilus_id for k in handle.keys}
    live = _live_orders(DEPLOYMENT)
    assert all(o.status is OrderStatus.FILLED for o in live), [
        o for o in live if o.status is not OrderStatus.FILLED
    ]
    # The paper venue's trades say the side and price of each live fill (one per order here).
    trades = ray.get(ray.get_actor("portfolio", namespace=NAMESPACE).trades.remote(DEPLOYMENT), timeout=30)
    by_order = {t.client_order_id: t for t in trades}
    assert len(by_order) == len(trades) == len(live)
    live_trail: dict[str, list[tuple[str, int]]] = {}
    live_prices: dict[str, list[Decimal]] = {}
    for order in live:
        trade = by_order[order.client_order_id]
        instrument = nautilus_id[order.instrument]
        live_trail.setdefault(instrument, []).append((trade.side.value, trade.quantity))
        live_prices.setdefault(instrument, []).append(Decimal(trade.price) / 100)
    backtest_ns: dict[str, list[int]] = {}
    backtest_prices: dict[str, list[Decimal]] = {}
    for order in run.orders:
        assert order["status"] == "FILLED"
        backtest_ns.setdefault(order["instrument"], []).append(int(order["ts_init"]))
        backtest_prices.setdefault(order["instrument"], []).append(Decimal(order["avg_price"]))
    trail = run.order_trail()
    store = ParquetDataCatalog(str(catalog_path))
    compared = 0
    delays_ms: dict[str, list[float]] = {}  # fill after decision, for the message
    for instrument, orders in live_trail.items():
        fills_ns = [
            by_order[o.client_order_id].ts_ns for o in live if nautilus_id[o.instrument] == instrument
        ]
        ticks_ns = np.array([t.ts_init for t in store.query(TradeTick, identifiers=[instrument])])
        n = comparable(backtest_ns[instrument], fills_ns, ticks_ns)
        delays_ms[instrument] = [
            round((f - d) / 1e6) for d, f in zip(backtest_ns[instrument], fills_ns, strict=False)
        ]
        assert trail[instrument][:n] == orders[:n], (instrument, n, trail[instrument][:n], orders[:n])
        if n == len(orders):  # every fill was on time: the backtest made no more orders than that
            assert trail[instrument] == orders, (instrument, trail[instrument], orders)
        for live_price, backtest_price in zip(
            live_prices[instrument][:n], backtest_prices[instrument][:n], strict=True
        ):
            assert abs(backtest_price - live_price) / live_price < Decimal("0.01"), (instrument, live_price)
        compared += n
    assert compared >= MIN_COMPARED, f"only {compared} orders compared, live fills too late: {delays_ms}"

    report = build_report(run, DEPLOYMENT)
    assert report.stats.fills == len(run.fills) == len(run.orders)
    assert report.stats.charges > 0


def test_record_for_a_number_of_seconds_while_the_market_runs(
    topology: dict[str, Any], wait_until: Callable[..., Any]
) -> None:
    config: ShardlineConfig = topology["config"]
    sim = ray.get_actor(SIMULATOR, namespace=NAMESPACE)
    ray.get(sim.set_tick_rate.remote(400), timeout=30)
    seen: list[tuple[float, int]] = []
    summary = record(
        config,
        3.0,
        topology["tmp"] / "seconds",
        on_progress=lambda elapsed, rows: seen.append((elapsed, rows)),
    )
    assert summary.rows > 0 and summary.trade_ticks > 0 and summary.quote_ticks > 0
    assert summary.route["dropped"] == summary.route["conflated"] == 0
    assert summary.route["ticks_in"] == summary.rows
    assert seen and seen[-1][0] < 3.0
    assert Path(summary.raw_path).exists()
    router_stats = ray.get(ray.get_actor(ROUTER, namespace=NAMESPACE).stats.remote(), timeout=30)
    assert not any(name.startswith("record-") for name in router_stats["deployments"])  # removed again
    ray.get(sim.set_tick_rate.remote(0), timeout=30)
