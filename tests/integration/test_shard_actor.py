"""A shard actor on a real local Ray: tick batches in, orders to an execution stand-in, fills back.

The stand-ins are small Ray actors with the execution actor's and router's method names:
`StandInExecution` acknowledges each order in its `submit` answer and pushes the fill to the
shard registered for the book, as the real execution actor does; `StandInRouter` keeps the
handles shards register.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import ray
from nautilus_trader.config import PositiveInt, StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.trading.strategy import Strategy

from actors.orders import Fill, OrderRequest, OrderStatus, OrderUpdate
from actors.shard.actor import start_shard_actor
from actors.shard.baseline import random_walk_ticks
from actors.shard.shard import ShardSpec
from actors.shard.universe import ShardInstrument

INSTRUMENTS = tuple(ShardInstrument.equity(i, f"S{i}-EQ", str(2000 + i), lot_size=10) for i in range(4))
FILL_PRICE = 100_025  # paise


class RaiseAfterConfig(StrategyConfig, frozen=True):
    ticks: PositiveInt = 100


class RaiseAfter(Strategy):
    """Raises on the trade tick after `ticks` of them (for the failure test)."""

    def __init__(self, config: RaiseAfterConfig) -> None:
        super().__init__(config)
        self.seen = 0

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.seen += 1
        if self.seen > self.config.ticks:
            raise ValueError("deliberate failure")


@ray.remote
class StandInExecution:
    def __init__(self) -> None:
        self.requests: list[OrderRequest] = []
        self.books: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def register_book(self, book: str, actor_name: str) -> None:
        self.books.append((book, actor_name))

    async def submit(self, order: OrderRequest) -> OrderUpdate:
        self.requests.append(order)
        venue_id = f"V{len(self.requests)}"
        task = asyncio.get_running_loop().create_task(self._fill_later(order, venue_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return OrderUpdate(
            client_order_id=order.client_order_id,
            venue_order_id=venue_id,
            book=order.book,
            instrument=order.instrument,
            status=OrderStatus.OPEN,
            ts_ns=time.time_ns(),
        )

    async def _fill_later(self, order: OrderRequest, venue_id: str) -> None:
        actor_name = dict(self.books)[order.book]
        shard = ray.get_actor(actor_name, namespace="shardline")
        fill = Fill(
            client_order_id=order.client_order_id,
            venue_order_id=venue_id,
            trade_id=f"T{venue_id}",
            book=order.book,
            instrument=order.instrument,
            side=order.side,
            quantity=order.quantity,
            price=FILL_PRICE,
            product=order.product,
            ts_ns=time.time_ns(),
            commission=2_000,
        )
        await shard.on_order_update.remote(
            OrderUpdate(
                client_order_id=order.client_order_id,
                venue_order_id=venue_id,
                book=order.book,
                instrument=order.instrument,
                status=OrderStatus.FILLED,
                filled_quantity=order.quantity,
                avg_price=FILL_PRICE,
                ts_ns=fill.ts_ns,
                fill=fill,
            )
        )

    async def cancel(self, client_order_id: str) -> None:
        return None

    async def seen(self) -> tuple[list[OrderRequest], list[tuple[str, str]]]:
        return self.requests, self.books


@ray.remote
class StandInRouter:
    def __init__(self) -> None:
        self.shards: dict[tuple[str, int], Any] = {}

    def register_shard(self, deployment: str, index: int, handle: Any) -> None:
        self.shards[(deployment, index)] = handle

    def shard(self, deployment: str, index: int) -> Any:
        return self.shards.get((deployment, index))

    def registrations(self) -> list[tuple[str, int]]:
        return sorted(self.shards)


@pytest.fixture
def stand_ins(ray_session: Any) -> Iterator[tuple[Any, Any]]:
    execution = StandInExecution.options(name="execution", namespace="shardline").remote()
    router = StandInRouter.options(name="router", namespace="shardline").remote()
    yield execution, router
    ray.kill(execution)
    ray.kill(router)


def batches(count: int, size: int, seed: int = 4) -> list[np.ndarray]:
    now = time.time_ns()
    ticks = random_walk_ticks(INSTRUMENTS, count, seed=seed, start_ns=now - count * 1_000, step_ns=1_000)
    return [ticks[k : k + size] for k in range(0, count, size)]


def test_shard_actor_trades_with_the_execution_actor(
    stand_ins: tuple[Any, Any], wait_until: Callable[..., Any]
) -> None:
    execution, router = stand_ins
    spec = ShardSpec(
        deployment="ema-test",
        strategy="actors.shard.strategies.ema_cross:EMACross",
        config={"fast_period": 5, "slow_period": 20, "trade_size": 1},
        instruments=INSTRUMENTS,
        index=1,
        count=2,
    )
    shard = start_shard_actor(spec)
    try:
        assert ray.get(shard.ready.remote(), timeout=60) == "running"
        # the shard announced itself: its book to execution, its handle to the router
        _, books = ray.get(execution.seen.remote())
        assert books == [("ema-test", "shard-ema-test-1")]
        assert ray.get(router.registrations.remote()) == [("ema-test", 1)]
        via_router = ray.get(router.shard.remote("ema-test", 1))

        sent = 0
        for batch in batches(8_000, 400):
            sent += ray.get(via_router.on_ticks.remote(batch), timeout=30)
        assert sent == 8_000
        ray.get(shard.drain.remote(), timeout=30)

        def settled() -> dict[str, Any] | None:
            stats = ray.get(shard.stats.remote())
            return stats if stats["orders_sent"] > 0 and stats["fills"] == stats["orders_sent"] else None

        stats = wait_until(settled, timeout_s=30, what="every order filled")
        assert stats["state"] == "running"
        assert stats["rows_handled"] == 8_000
        assert stats["latency_recv_to_strategy"]["samples"] == 8_000
        requests, _ = ray.get(execution.seen.remote())
        assert len(requests) == stats["orders_sent"]
        assert {r.book for r in requests} == {"ema-test"}
        assert {r.tag for r in requests} == {"EMACross-001"}
        assert {r.instrument for r in requests} <= {i.key for i in INSTRUMENTS}
        assert all(r.quantity == 10 for r in requests)  # one lot of 10
        # fills became positions: long one lot, or flat
        assert stats["positions"], "a filled buy opens a position"
        assert set(stats["positions"].values()) <= {"10"}
    finally:
        ray.kill(shard, no_restart=True)


def test_restarted_shard_announces_itself_again(
    stand_ins: tuple[Any, Any], wait_until: Callable[..., Any]
) -> None:
    execution, _ = stand_ins
    spec = ShardSpec(
        deployment="rsi-test",
        strategy="actors.shard.strategies.rsi_breakout:RSIBreakout",
        config={"period": 10},
        instruments=INSTRUMENTS,
    )
    shard = start_shard_actor(spec)
    try:
        assert ray.get(shard.ready.remote(), timeout=60) == "running"
        ray.kill(shard, no_restart=False)  # a crash: Ray runs the constructor again

        def registered_twice() -> bool:
            _, books = ray.get(execution.seen.remote())
            return books.count(("rsi-test", "shard-rsi-test-0")) == 2

        wait_until(registered_twice, timeout_s=60, what="the restarted shard to register again")
        assert ray.get(shard.ready.remote(), timeout=60) == "running"
        assert ray.get(shard.on_ticks.remote(batches(200, 200)[0]), timeout=30) == 200
    finally:
        ray.kill(shard, no_restart=True)


def test_router_feeds_two_shards_each_instrument_to_one(
    ray_session: Any, wait_until: Callable[..., Any]
) -> None:
    """The real router actor splits the stream over two shard actors that registered themselves."""
    from actors.router.actor import start_router
    from cluster.config import RouterConfig

    execution = StandInExecution.options(name="execution", namespace="shardline").remote()
    router = start_router(RouterConfig(virtual_nodes=64, buffer_ticks=20_000))
    universe = tuple(ShardInstrument.equity(i, f"R{i}-EQ", str(3000 + i)) for i in range(12))
    ray.get(router.add_deployment.remote("ema-split", {i.iid: i.key for i in universe}, 2), timeout=30)
    shards = [
        start_shard_actor(
            ShardSpec(
                deployment="ema-split",
                strategy="actors.shard.strategies.ema_cross:EMACross",
                config={"fast_period": 5, "slow_period": 20},
                instruments=universe,
                index=k,
                count=2,
            )
        )
        for k in range(2)
    ]
    try:
        assert ray.get([s.ready.remote() for s in shards], timeout=60) == ["running", "running"]
        now = time.time_ns()
        ticks = random_walk_ticks(universe, 12_000, seed=8, start_ns=now - 12_000_000, step_ns=1_000)
        for start in range(0, len(ticks), 1_000):
            assert ray.get(router.push.remote(ticks[start : start + 1_000]), timeout=30) == 1_000

        def all_handled() -> list[dict[str, Any]] | None:
            stats = ray.get([s.stats.remote() for s in shards])
            return stats if sum(s["rows_handled"] for s in stats) == len(ticks) else None

        stats = wait_until(all_handled, timeout_s=60, what="every tick handled by a shard")
        assert all(s["rows_handled"] > 0 for s in stats), "both shards get a share"
        assert all(s["unknown_rows"] == 0 and s["rows_dropped"] == 0 for s in stats)
        traded = [set(s["positions"]) for s in stats]
        assert not traded[0] & traded[1], "an instrument's ticks, and so its positions, live on one shard"
        assert ray.get(router.stats.remote())["balanced"]
    finally:
        for shard in shards:
            ray.kill(shard, no_restart=True)
        ray.kill(router)
        ray.kill(execution)


def test_shard_trades_through_the_real_execution_actor(
    ray_session: Any, wait_until: Callable[..., Any], tmp_path: Any
) -> None:
    """The shard's orders go through the execution actor (risk, journal) to a paper venue and back."""
    from actors.execution.actor import PaperVenueActor, start_execution
    from cluster.config import parse_config

    config = parse_config({"data_dir": str(tmp_path / "data")})
    venue = (
        ray.remote(PaperVenueActor)
        .options(name="paper-venue-shard-it", namespace="shardline", num_cpus=0)
        .remote("execution-shard-it")
    )
    marks = {i.key: 100_000 for i in INSTRUMENTS}  # ₹1000, where the random walk starts
    for key, price in marks.items():
        ray.get(venue.set_quote.remote(key, price, price - 5, price + 5))
    execution = start_execution(
        config,
        options={"name": "execution-shard-it", "num_cpus": 0},
        venue="paper-venue-shard-it",
        journal_stream="execution-shard-it",
        redis_url="",
        load_catalog=False,
    )
    ray.get(execution.update_marks.remote(marks))
    spec = ShardSpec(
        deployment="ema-real",
        strategy="actors.shard.strategies.ema_cross:EMACross",
        config={"fast_period": 5, "slow_period": 20},
        instruments=INSTRUMENTS,
    )
    shard = start_shard_actor(spec, execution="execution-shard-it", router=None)
    try:
        assert ray.get(shard.ready.remote(), timeout=60) == "running"
        for batch in batches(4_000, 200, seed=6):
            assert ray.get(shard.on_ticks.remote(batch), timeout=30) == len(batch)
        ray.get(shard.drain.remote(), timeout=30)

        def settled() -> dict[str, Any] | None:
            stats = ray.get(shard.stats.remote())
            return stats if stats["orders_sent"] > 0 and stats["fills"] == stats["orders_sent"] else None

        stats = wait_until(settled, timeout_s=60, what="the paper venue's fills to reach the shard")
        assert stats["orders_rejected"] == 0
        assert stats["positions"] and set(stats["positions"].values()) <= {"10"}
        orders = ray.get(execution.orders.remote("ema-real"))
        assert len(orders) == stats["orders_sent"]
        assert all(o.status is OrderStatus.FILLED for o in orders)
    finally:
        for handle in (shard, execution, venue):
            ray.kill(handle, no_restart=True)


def test_failing_strategy_leaves_the_actor_alive_and_answering(stand_ins: tuple[Any, Any]) -> None:
    spec = ShardSpec(
        deployment="raise-test",
        strategy="test_shard_actor:RaiseAfter",
        config={"ticks": 300},
        instruments=INSTRUMENTS,
    )
    shard = start_shard_actor(spec)
    try:
        pid = ray.get(shard.stats.remote())["pid"]
        for batch in batches(1_000, 250):
            ray.get(shard.on_ticks.remote(batch), timeout=30)
        ray.get(shard.drain.remote(), timeout=30)
        stats = ray.get(shard.stats.remote())
        assert stats["state"] == "failed"
        assert "RaiseAfter" in stats["error"] and "deliberate failure" in stats["error"]
        assert stats["pid"] == pid, "the same process: the error did not end it"
        assert ray.get(shard.on_ticks.remote(batches(100, 100)[0]), timeout=30) == 0
        assert ray.get(shard.stats.remote())["rows_dropped"] >= 100
    finally:
        ray.kill(shard, no_restart=True)
