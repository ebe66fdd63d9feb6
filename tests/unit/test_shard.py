"""StrategyShard without Ray: a real TradingNode on its own thread, fed batches in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
from nautilus_trader.config import PositiveInt, StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.events import OrderEvent, OrderFilled
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.trading.strategy import Strategy

from actors.orders import Fill, OrderRequest, OrderUpdate, Product, Side
from actors.orders import OrderStatus as Status
from actors.orders import OrderType as ShardlineOrderType
from actors.shard.baseline import random_walk_ticks
from actors.shard.instant_fills import InstantFillGateway
from actors.shard.shard import FAILED, RUNNING, STOPPED, ShardSpec, StrategyShard
from actors.shard.universe import ShardInstrument
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.errors import ShardlineError

INSTRUMENTS = tuple(ShardInstrument.equity(i, f"S{i}-EQ", str(1000 + i), lot_size=5) for i in range(3))
SBIN = INSTRUMENTS[0]


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def live_ticks(count: int, seed: int = 1, mode: FeedMode = FeedMode.QUOTE) -> np.ndarray:
    """Random-walk ticks stamped just now, so latencies are real."""
    now = time.time_ns()
    return random_walk_ticks(
        INSTRUMENTS, count, seed=seed, mode=mode, start_ns=now - count * 1_000, step_ns=1_000
    )


def feed(
    shard: StrategyShard, ticks: np.ndarray, gateway: InstantFillGateway | None = None, size: int = 500
) -> int:
    handled = 0
    for start in range(0, len(ticks), size):
        batch = ticks[start : start + size]
        if gateway is not None:
            gateway.mark_batch(shard.keys_by_iid, batch)
        handled += shard.submit_ticks(batch).result(timeout=30)
    return handled


# -- strategies used only here -------------------------------------------------------------------


class RaiseOnTickConfig(StrategyConfig, frozen=True):
    raise_after: PositiveInt = 50


class RaiseOnTick(Strategy):
    """Handles `raise_after` trade ticks, then raises on the next."""

    def __init__(self, config: RaiseOnTickConfig) -> None:
        super().__init__(config)
        self.seen = 0

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.seen += 1
        if self.seen > self.config.raise_after:
            raise ValueError(f"deliberate failure on tick {self.seen}")


class RaiseOnStartConfig(StrategyConfig, frozen=True):
    message: str = "deliberate failure on start"


class RaiseOnStart(Strategy):
    def __init__(self, config: RaiseOnStartConfig) -> None:
        super().__init__(config)

    def on_start(self) -> None:
        raise RuntimeError(self.config.message)


class OneOrderConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    quantity: PositiveInt = 10
    limit_price: str | None = None  # a limit order at this price, else a market order
    raise_on_fill: bool = False
    kind: str = ""  # "stop_market", "stop_limit", "market_if_touched", "market_fok": other orders


class OneOrder(Strategy):
    """Sends one order on the first trade tick and records every order event it receives."""

    def __init__(self, config: OneOrderConfig) -> None:
        super().__init__(config)
        self.events: list[OrderEvent] = []
        self.sent = False

    def on_start(self) -> None:
        self.subscribe_trade_ticks(self.config.instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        if self.sent:
            return
        self.sent = True
        qty = Quantity.from_int(self.config.quantity)
        factory, instrument_id, kind = self.order_factory, self.config.instrument_id, self.config.kind
        trigger = Price.from_str("1001.00")
        if kind:
            order = {
                "stop_market": lambda: factory.stop_market(instrument_id, OrderSide.SELL, qty, trigger),
                "stop_limit": lambda: factory.stop_limit(
                    instrument_id, OrderSide.SELL, qty, Price.from_str("1000.50"), trigger
                ),
                "market_if_touched": lambda: factory.market_if_touched(
                    instrument_id, OrderSide.BUY, qty, trigger
                ),
                "market_fok": lambda: factory.market(instrument_id, OrderSide.BUY, qty, TimeInForce.FOK),
                "fractional_price": lambda: factory.limit(
                    instrument_id, OrderSide.BUY, qty, Price.from_str("1000.005")
                ),
            }[kind]()
        elif self.config.limit_price is None:
            order = self.order_factory.market(
                self.config.instrument_id, OrderSide.BUY, qty, tags=["product:DELIVERY"]
            )
        else:
            order = self.order_factory.limit(
                self.config.instrument_id,
                OrderSide.BUY,
                qty,
                Price.from_str(self.config.limit_price),
                time_in_force=TimeInForce.DAY,
            )
        self.submit_order(order)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)

    def on_order_filled(self, event: OrderFilled) -> None:
        if self.config.raise_on_fill:
            raise RuntimeError("deliberate failure on fill")


class ScriptedGateway:
    """Answers every submit with PENDING and records requests; the test pushes the rest."""

    def __init__(self) -> None:
        self.requests: list[OrderRequest] = []
        self.cancels: list[str] = []

    async def submit(self, order: OrderRequest) -> OrderUpdate:
        self.requests.append(order)
        return update(order.client_order_id, Status.PENDING, venue_order_id=None)

    async def cancel(self, client_order_id: str) -> OrderUpdate | None:
        self.cancels.append(client_order_id)
        return None

    async def modify(self, client_order_id: str, **changes: Any) -> OrderUpdate | None:
        return None


def update(client_order_id: str, status: Status, **fields: Any) -> OrderUpdate:
    values: dict[str, Any] = {
        "venue_order_id": "V1",
        "book": "test",
        "instrument": SBIN.key,
        "ts_ns": time.time_ns(),
    }
    values.update(fields)
    return OrderUpdate(client_order_id=client_order_id, status=status, **values)


def fill(client_order_id: str, trade_id: str, quantity: int, price: int, commission: int = 0) -> Fill:
    return Fill(
        client_order_id=client_order_id,
        venue_order_id="V1",
        trade_id=trade_id,
        book="test",
        instrument=SBIN.key,
        side=Side.BUY,
        quantity=quantity,
        price=price,
        product=Product.INTRADAY,
        ts_ns=time.time_ns(),
        commission=commission,
    )


def spec(strategy: str, config: dict[str, Any], deployment: str = "test") -> ShardSpec:
    return ShardSpec(deployment=deployment, strategy=strategy, config=config, instruments=INSTRUMENTS)


@pytest.fixture
def shards() -> Iterator[list[StrategyShard]]:
    made: list[StrategyShard] = []
    yield made
    for shard in made:
        shard.stop()


def start(shards: list[StrategyShard], shard_spec: ShardSpec, gateway: Any) -> StrategyShard:
    shard = StrategyShard(shard_spec, gateway)
    shards.append(shard)
    return shard


def one_order(shards: list[StrategyShard], **config: Any) -> tuple[StrategyShard, ScriptedGateway]:
    """A `OneOrder` shard on SBIN that has sent its order to a scripted gateway."""
    gateway = ScriptedGateway()
    shard = start(
        shards, spec("test_shard:OneOrder", {"instrument_id": SBIN.instrument_id.value, **config}), gateway
    )
    feed(shard, live_ticks(30))
    wait_for(lambda: len(gateway.requests) == 1, what="the order to reach the gateway")
    return shard, gateway


def order_events(shard: StrategyShard) -> list[str]:
    strategy = shard._strategy
    names = shard.thread.call(lambda: [type(e).__name__ for e in strategy.events]).result(5)
    return [n for n in names if n != "OrderInitialized"]


# -- tests ------------------------------------------------------------------------------------------


def test_sample_strategy_trades_through_the_gateway(shards: list[StrategyShard]) -> None:
    gateway = InstantFillGateway()
    shard = start(
        shards,
        spec(
            "actors.shard.strategies.ema_cross:EMACross",
            {"fast_period": 5, "slow_period": 20, "trade_size": 2},
        ),
        gateway,
    )
    assert shard.state == RUNNING
    ticks = live_ticks(6_000)
    assert feed(shard, ticks, gateway) == len(ticks)
    wait_for(lambda: shard.stats()["fills"] == shard.stats()["orders_sent"] > 0, what="every order filled")
    stats = shard.stats()
    assert stats["rows_handled"] == stats["ticks_handled"] == len(ticks)
    assert stats["latency_recv_to_strategy"]["samples"] == len(ticks)
    latency = stats["latency_recv_to_strategy"]
    assert 0 < latency["p50_us"] <= latency["p99_us"] <= latency["max_us"]
    first = gateway.requests[0]
    assert first.book == "test"
    assert first.tag == "EMACross-000"
    assert first.instrument in {i.key for i in INSTRUMENTS}
    assert first.product is Product.INTRADAY
    assert first.order_type is ShardlineOrderType.MARKET
    assert len({r.client_order_id for r in gateway.requests}) == len(gateway.requests)
    # positions are whole target sizes: 2 lots of 5, long only
    assert set(stats["positions"].values()) <= {"10"}


def test_order_lifecycle_from_updates(shards: list[StrategyShard]) -> None:
    shard, gateway = one_order(shards, quantity=10, limit_price="1000.05")
    request = gateway.requests[0]
    assert (request.order_type, request.price, request.quantity) == (ShardlineOrderType.LIMIT, 100_005, 10)
    coid = request.client_order_id

    def push(u: OrderUpdate) -> bool:
        return shard.on_order_update(u).result(5)

    # the fill arrives before the acknowledgement: accepted is emitted first anyway
    assert push(
        update(coid, Status.PARTIALLY_FILLED, filled_quantity=4, fill=fill(coid, "T1", 4, 100_000, 1_234))
    )
    assert push(update(coid, Status.OPEN))  # late acknowledgement: nothing new
    assert push(
        update(coid, Status.PARTIALLY_FILLED, filled_quantity=4, fill=fill(coid, "T1", 4, 100_000))
    )  # dup
    assert push(update(coid, Status.FILLED, filled_quantity=10, fill=fill(coid, "T2", 6, 100_005)))
    assert not push(update(coid, Status.FILLED, filled_quantity=10))  # closed: ignored
    assert not push(update("O-someone-else", Status.OPEN))
    wait_for(lambda: "OrderFilled" in order_events(shard) and order_events(shard).count("OrderFilled") == 2)
    assert order_events(shard) == ["OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]
    strategy = shard._strategy
    fills = shard.thread.call(lambda: [e for e in strategy.events if isinstance(e, OrderFilled)]).result(5)
    assert [(str(f.last_qty), str(f.last_px)) for f in fills] == [("4", "1000.00"), ("6", "1000.05")]
    assert str(fills[0].commission) == "12.34 INR"
    assert shard.stats()["positions"] == {SBIN.instrument_id.value: "10"}


def test_a_venue_square_off_of_the_books_position_closes_the_strategys(shards: list[StrategyShard]) -> None:
    shard, gateway = one_order(shards, quantity=10, limit_price="1000.05")
    coid = gateway.requests[0].client_order_id
    shard.on_order_update(update(coid, Status.FILLED, filled_quantity=10, fill=fill(coid, "T1", 10, 100_000)))
    wait_for(lambda: shard.stats()["positions"] == {SBIN.instrument_id.value: "10"}, what="the position")

    # 15:20: the venue squares the book off itself, in two fills; one arrives twice.
    def exit_fill(trade_id: str, quantity: int) -> Fill:
        return msgspec.structs.replace(
            fill("exit-7", trade_id, quantity, 99_950, commission=2_000), side=Side.SELL, venue_order_id="PV7"
        )

    other = msgspec.structs.replace(exit_fill("PT3", 5), instrument="NSE:99999")  # not this shard's
    fills = [exit_fill("PT1", 6), exit_fill("PT1", 6), other, exit_fill("PT2", 4)]
    assert shard.on_venue_fills(fills).result(5) == 2
    wait_for(lambda: shard.stats()["positions"] == {}, what="the square-off to close the position")
    strategy = shard._strategy
    fills_seen = shard.thread.call(
        lambda: [(e.client_order_id.value, str(e.last_qty), str(e.commission)) for e in strategy.events
                 if isinstance(e, OrderFilled)]
    ).result(5)  # fmt: skip
    assert fills_seen == [
        (coid, "10", "0.00 INR"),
        ("exit-7.PT1", "6", "20.00 INR"),
        ("exit-7.PT2", "4", "20.00 INR"),
    ]
    assert shard.thread.call(lambda: strategy.portfolio.is_flat(SBIN.instrument_id)).result(5)
    assert shard.stats()["venue_fills"] == 2


@pytest.mark.parametrize(
    ("updates", "events"),
    [
        ([(Status.REJECTED, {"reason": "price band"})], ["OrderSubmitted", "OrderRejected"]),
        ([(Status.OPEN, {}), (Status.CANCELLED, {})], ["OrderSubmitted", "OrderAccepted", "OrderCanceled"]),
        # no per-trade detail: the fill is inferred from the filled quantity and average price
        (
            [(Status.PARTIALLY_FILLED, {"filled_quantity": 5, "avg_price": 100_000}), (Status.CANCELLED, {})],
            ["OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderCanceled"],
        ),
    ],
)
def test_updates_become_nautilus_events(
    shards: list[StrategyShard], updates: list[tuple[Status, dict[str, Any]]], events: list[str]
) -> None:
    shard, gateway = one_order(shards, limit_price="999.95")
    coid = gateway.requests[0].client_order_id
    batch = [update(coid, status, **fields) for status, fields in updates]
    assert shard.on_order_updates(batch).result(5) == len(batch)  # as the execution actor sends them
    wait_for(lambda: len(order_events(shard)) == len(events), what=f"events {events}")
    assert order_events(shard) == events


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("stop_market", (ShardlineOrderType.SL_M, 0, 100_100)),
        ("stop_limit", (ShardlineOrderType.SL, 100_050, 100_100)),
        ("market_if_touched", "order type MARKET_IF_TOUCHED is not supported"),
        ("market_fok", "time in force FOK is not supported"),
        ("fractional_price", "precision 3 > 2"),  # the engine's own risk check denies it first
    ],
)
def test_order_types_map_to_the_broker_or_are_rejected(
    shards: list[StrategyShard], kind: str, expected: tuple[ShardlineOrderType, int, int] | str
) -> None:
    gateway = ScriptedGateway()
    config = {"instrument_id": SBIN.instrument_id.value, "kind": kind}
    shard = start(shards, spec("test_shard:OneOrder", config), gateway)
    feed(shard, live_ticks(30))
    if isinstance(expected, str):
        wait_for(lambda: order_events(shard) in (["OrderRejected"], ["OrderDenied"]), what="the refusal")
        strategy = shard._strategy
        reason = shard.thread.call(lambda: strategy.events[-1].reason).result(5)
        assert expected in reason
        assert gateway.requests == []
    else:
        wait_for(lambda: len(gateway.requests) == 1, what="the order")
        request = gateway.requests[0]
        assert (request.order_type, request.price, request.trigger_price) == expected
        assert request.side is Side.SELL


def test_market_order_product_tag_reaches_the_request(shards: list[StrategyShard]) -> None:
    gateway = ScriptedGateway()
    shard = start(shards, spec("test_shard:OneOrder", {"instrument_id": SBIN.instrument_id.value}), gateway)
    feed(shard, live_ticks(30))
    wait_for(lambda: len(gateway.requests) == 1, what="the order")
    assert gateway.requests[0].product is Product.DELIVERY
    assert gateway.requests[0].validity.value == "DAY"  # Nautilus's GTC default goes out as DAY


def test_strategy_raising_on_a_tick_fails_the_shard_not_the_process(shards: list[StrategyShard]) -> None:
    shard = start(shards, spec("test_shard:RaiseOnTick", {"raise_after": 100}), InstantFillGateway())
    ticks = live_ticks(1_000)
    feed(shard, ticks)
    stats = shard.stats()
    assert stats["state"] == FAILED
    assert "RaiseOnTick" in stats["error"] and "deliberate failure on tick 101" in stats["error"]
    assert "TradeTick" in stats["error"]  # the tick that caused it is named
    assert stats["rows_handled"] < len(ticks)
    assert stats["rows_received"] == stats["rows_handled"] + stats["rows_dropped"]
    # later batches are refused and counted, not crashed on
    assert shard.submit_ticks(live_ticks(10)).result(5) == 0
    assert shard.thread.is_alive


def test_strategy_raising_on_an_order_event_fails_the_shard(shards: list[StrategyShard]) -> None:
    config = {"instrument_id": SBIN.instrument_id.value, "raise_on_fill": True}
    gateway = InstantFillGateway()
    shard = start(shards, spec("test_shard:OneOrder", config), gateway)
    feed(shard, live_ticks(30), gateway)
    wait_for(lambda: shard.state == FAILED, what="the shard to fail")
    assert "deliberate failure on fill" in shard.stats()["error"]


def test_bad_strategy_config_fails_before_any_node(shards: list[StrategyShard]) -> None:
    with pytest.raises(
        ShardlineError, match=r"EMACross.*fast_period \(9\) must be less than slow_period \(3\)"
    ):
        StrategyShard(
            spec("actors.shard.strategies.ema_cross:EMACross", {"fast_period": 9, "slow_period": 3}),
            InstantFillGateway(),
        )


def test_strategy_raising_on_start_fails_construction_clearly(shards: list[StrategyShard]) -> None:
    with pytest.raises(
        ShardlineError, match=r"shard-test-0: failed to start test_shard:RaiseOnStart.*deliberate"
    ):
        StrategyShard(spec("test_shard:RaiseOnStart", {}), InstantFillGateway(), start_timeout_s=20)


def test_bad_batches_are_refused_with_a_clear_error(shards: list[StrategyShard]) -> None:
    shard = start(shards, spec("test_shard:RaiseOnTick", {"raise_after": 10**6}), InstantFillGateway())
    with pytest.raises(ShardlineError, match="TICK_DTYPE"):
        shard.submit_ticks(np.zeros(3, dtype=[("iid", "<i4")]))
    unknown = np.zeros(5, dtype=TICK_DTYPE)
    unknown["iid"] = 99
    unknown["ltp"] = 100
    unknown["mode"] = FeedMode.LTP
    assert shard.submit_ticks(unknown).result(5) == 5
    assert shard.stats()["unknown_rows"] == 5
    assert shard.state == RUNNING


def test_state_saves_and_loads_on_a_running_shard(shards: list[StrategyShard]) -> None:
    path = "actors.shard.strategies.rsi_breakout:RSIBreakout"
    first = start(shards, spec(path, {"period": 10}), InstantFillGateway())
    feed(first, live_ticks(600))
    state = first.save_state()
    assert set(state) == {"prices", "requested"}
    first.stop()
    assert first.state == STOPPED
    second = start(shards, spec(path, {"period": 10}), InstantFillGateway())
    second.load_state(state)
    assert second.save_state()["prices"] == state["prices"]


def test_orders_are_not_starved_by_queued_batches(shards: list[StrategyShard]) -> None:
    """Batches queued back to back still let each batch's orders complete before the next batch."""
    gateway = InstantFillGateway()
    shard = start(
        shards,
        spec("actors.shard.strategies.ema_cross:EMACross", {"fast_period": 3, "slow_period": 8}),
        gateway,
    )
    ticks = live_ticks(6_000, seed=2)
    gateway.mark_batch(shard.keys_by_iid, ticks[:300])  # every instrument has a price to fill at
    futures = [shard.submit_ticks(ticks[k : k + 300]) for k in range(0, len(ticks), 300)]
    assert sum(f.result(timeout=30) for f in futures) == len(ticks)
    stats = shard.stats()
    # one order per instrument would mean no order finished until the queue ran dry
    assert stats["orders_sent"] > 3 * len(INSTRUMENTS)
    assert stats["fills"] == stats["orders_sent"]


def test_spec_from_a_configured_deployment() -> None:
    from cluster.config import DeploymentConfig

    deployment = DeploymentConfig.model_validate(
        {
            "name": "ema-equities",
            "strategy": "actors.shard.strategies.ema_cross:EMACross",
            "config": {"fast_period": 10, "slow_period": 30},
            "universe": {"query": "NSE equities", "limit": 3},
            "shards": 2,
        }
    )
    shard_spec = ShardSpec.from_deployment(deployment, INSTRUMENTS, 1, max_orders_per_s=20)
    assert (shard_spec.name, shard_spec.index, shard_spec.count) == ("shard-ema-equities-1", 1, 2)
    assert shard_spec.config == {"fast_period": 10, "slow_period": 30}
    assert shard_spec.max_orders_per_s == 20
    with pytest.raises(ShardlineError, match=r"shard index 2 outside 0\.\.1"):
        ShardSpec.from_deployment(deployment, INSTRUMENTS, 2)
    with pytest.raises(ShardlineError, match="no instruments"):
        ShardSpec.from_deployment(deployment, (), 0)
