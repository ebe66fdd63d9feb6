"""The matching engine's rules, one table row per case."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.orders import OrderRequest, OrderStatus, OrderType, Side, Validity
from actors.sim.matching import (
    InstrumentRules,
    MatchingEngine,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderTriggered,
    format_rupees,
)

EQ = "NSE:3045"
FUT = "NFO:61093"
RULES = {
    EQ: InstrumentRules(
        EQ, tick_size=5, lot_size=1, lower_circuit=80_000, upper_circuit=120_000, symbol="SBIN-EQ"
    ),
    FUT: InstrumentRules(FUT, tick_size=10, lot_size=65, symbol="NIFTY28JUL26FUT"),
}
T0 = 1_700_000_000_000_000_000


def make_engine(partial_fills: bool = False, is_open: bool = True) -> MatchingEngine:
    return MatchingEngine(RULES.get, partial_fills=partial_fills, is_open=lambda ts: is_open)


def order(
    oid: str = "o1",
    side: Side = Side.BUY,
    qty: int = 10,
    kind: OrderType = OrderType.MARKET,
    price: int = 0,
    trigger: int = 0,
    validity: Validity = Validity.DAY,
    key: str = EQ,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=oid,
        book="manual",
        instrument=key,
        side=side,
        quantity=qty,
        order_type=kind,
        price=price,
        trigger_price=trigger,
        validity=validity,
    )


def fills(events: list) -> list[tuple[int, int]]:
    return [(e.quantity, e.price) for e in events if isinstance(e, OrderFilled)]


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


# bid 99_990, ask 100_010, ltp 100_000 (₹999.90 / ₹1,000.10 / ₹1,000.00)
QUOTE = {"bid": 99_990, "ask": 100_010, "ltp": 100_000}


@pytest.mark.parametrize(
    ("side", "kind", "price", "filled_at"),
    [
        (Side.BUY, OrderType.MARKET, 0, 100_010),  # market buy at the ask
        (Side.SELL, OrderType.MARKET, 0, 99_990),  # market sell at the bid
        (Side.BUY, OrderType.LIMIT, 100_500, 100_010),  # marketable limit: the touch, not the limit
        (Side.SELL, OrderType.LIMIT, 99_500, 99_990),
        (Side.BUY, OrderType.LIMIT, 100_010, 100_010),  # exactly at the touch
        (Side.SELL, OrderType.LIMIT, 99_990, 99_990),
    ],
)
def test_marketable_orders_fill_at_the_touch(side: Side, kind: OrderType, price: int, filled_at: int) -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    events = engine.submit(order(side=side, kind=kind, price=price), T0 + 1)
    assert kinds(events) == ["OrderAccepted", "OrderFilled"]
    assert fills(events) == [(10, filled_at)]
    resting = engine.order("o1")
    assert resting is not None and resting.status is OrderStatus.FILLED and resting.avg_price == filled_at
    assert engine.active_keys() == set()


@pytest.mark.parametrize(
    ("side", "limit", "next_quote", "filled_at"),
    [
        # buy limit below the ask rests, then the ask falls through it: fills at the new ask
        (Side.BUY, 99_900, {"bid": 99_800, "ask": 99_850, "ltp": 99_850}, 99_850),
        # sell limit above the bid rests, then the bid rises through it
        (Side.SELL, 100_100, {"bid": 100_150, "ask": 100_200, "ltp": 100_150}, 100_150),
    ],
)
def test_resting_limit_fills_when_the_market_moves_through(
    side: Side, limit: int, next_quote: dict[str, int], filled_at: int
) -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    events = engine.submit(order(side=side, kind=OrderType.LIMIT, price=limit), T0)
    assert kinds(events) == ["OrderAccepted"]
    assert engine.order("o1").status is OrderStatus.OPEN  # type: ignore[union-attr]
    assert engine.active_keys() == {EQ}
    assert engine.on_quote(EQ, ts_ns=T0 + 5, **QUOTE) == []  # unchanged market: still resting
    events = engine.on_quote(EQ, ts_ns=T0 + 10, **next_quote)
    assert fills(events) == [(10, filled_at)]
    assert events[0].ts_ns == T0 + 10


@pytest.mark.parametrize(
    ("side", "kind", "trigger", "limit", "moves", "expected"),
    [
        # SL-M buy: LTP reaches the trigger, fills at the ask of that quote
        (Side.BUY, OrderType.SL_M, 100_200, 0, [(100_150, 100_200, 100_200)], [(10, 100_200)]),
        # SL-M sell: LTP falls to the trigger, fills at the bid
        (Side.SELL, OrderType.SL_M, 99_800, 0, [(99_750, 99_800, 99_800)], [(10, 99_750)]),
        # SL buy: triggered, but the ask is above the limit: rests as a limit, fills when the ask comes back
        (
            Side.BUY,
            OrderType.SL,
            100_200,
            100_250,
            [(100_290, 100_300, 100_200), (100_240, 100_250, 100_250)],
            [(10, 100_250)],
        ),
        # SL sell: triggered and the bid is still above the limit: fills at once
        (Side.SELL, OrderType.SL, 99_800, 99_700, [(99_790, 99_810, 99_800)], [(10, 99_790)]),
        # LTP never reaches the trigger: nothing happens
        (Side.BUY, OrderType.SL_M, 100_500, 0, [(100_300, 100_400, 100_400)], []),
    ],
)
def test_stop_orders_trigger_on_the_last_traded_price(
    side: Side,
    kind: OrderType,
    trigger: int,
    limit: int,
    moves: list[tuple[int, int, int]],
    expected: list[tuple[int, int]],
) -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    events = engine.submit(order(side=side, kind=kind, trigger=trigger, price=limit), T0)
    assert events == [OrderAccepted("o1", EQ, OrderStatus.TRIGGER_PENDING, T0)]
    seen = []
    for i, (bid, ask, ltp) in enumerate(moves):
        seen += engine.on_quote(EQ, bid, ask, ltp, T0 + i + 1)
    assert fills(seen) == expected
    triggered = [e for e in seen if isinstance(e, OrderTriggered)]
    assert len(triggered) == (1 if expected or kind is OrderType.SL else 0)


def test_a_triggered_stop_limit_rests_as_open() -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    engine.submit(order(kind=OrderType.SL, trigger=100_200, price=100_250), T0)
    events = engine.on_quote(EQ, 100_290, 100_300, 100_200, T0 + 1)
    assert kinds(events) == ["OrderTriggered"]
    assert engine.order("o1").status is OrderStatus.OPEN  # type: ignore[union-attr]


def test_market_order_without_a_quote_waits_for_the_first_one() -> None:
    engine = make_engine()
    assert kinds(engine.submit(order(), T0)) == ["OrderAccepted"]
    assert fills(engine.on_quote(EQ, ts_ns=T0 + 1, **QUOTE)) == [(10, 100_010)]


def test_ltp_only_quote_trades_at_the_last_price() -> None:
    engine = make_engine()
    engine.on_quote(EQ, 0, 0, 100_000, T0)
    assert fills(engine.submit(order(side=Side.SELL), T0)) == [(10, 100_000)]


# ----------------------------------------------------------------------------- partial fills, IOC


def test_partial_fills_take_only_the_shown_quantity_in_whole_lots() -> None:
    engine = make_engine(partial_fills=True)
    engine.on_quote(FUT, 2_350_000, 2_350_100, 2_350_050, T0, bid_qty=650, ask_qty=200)
    events = engine.submit(order(key=FUT, qty=650), T0)  # 10 lots; the ask shows 200 = 3 lots + 5
    assert fills(events) == [(195, 2_350_100)]
    resting = engine.order("o1")
    assert resting is not None and resting.status is OrderStatus.PARTIALLY_FILLED
    assert resting.leaves_quantity == 455
    # a second order at the same quote finds the touch used up
    assert fills(engine.submit(order(oid="o2", key=FUT, qty=65), T0)) == []
    events = engine.on_quote(FUT, 2_350_000, 2_350_200, 2_350_100, T0 + 1, bid_qty=650, ask_qty=1000)
    assert fills(events) == [(455, 2_350_200), (65, 2_350_200)]  # oldest first
    assert resting.status is OrderStatus.FILLED
    assert resting.avg_price == (195 * 2_350_100 + 455 * 2_350_200 + 325) // 650


def test_ioc_cancels_the_unfilled_remainder() -> None:
    engine = make_engine(partial_fills=True)
    engine.on_quote(EQ, 99_990, 100_010, 100_000, T0, bid_qty=50, ask_qty=30)
    events = engine.submit(order(qty=100, kind=OrderType.LIMIT, price=100_010, validity=Validity.IOC), T0)
    assert kinds(events) == ["OrderAccepted", "OrderFilled", "OrderCancelled"]
    assert fills(events) == [(30, 100_010)]
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.filled_quantity == 30 and "IOC" in cancelled.reason
    assert engine.active_keys() == set()


def test_ioc_that_does_not_cross_is_cancelled_unfilled() -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    events = engine.submit(order(kind=OrderType.LIMIT, price=99_000, validity=Validity.IOC), T0)
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert engine.order("o1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("request_", "is_open", "reason_has"),
    [
        (order(kind=OrderType.LIMIT, price=100_003), True, "not a multiple of the tick size ₹0.05"),
        (order(kind=OrderType.SL_M, trigger=100_201), True, "trigger price ₹1,002.01 is not a multiple"),
        (order(key=FUT, qty=100), True, "not a multiple of the lot size 65"),
        (order(kind=OrderType.LIMIT, price=120_005), True, "above the upper circuit ₹1,200.00"),
        (order(side=Side.SELL, kind=OrderType.LIMIT, price=79_995), True, "below the lower circuit ₹800.00"),
        (order(kind=OrderType.SL_M, trigger=125_000), True, "above the upper circuit"),
        (order(key="NSE:999999"), True, "unknown instrument 'NSE:999999'"),
        (order(), False, "the market is closed for SBIN-EQ"),
        (order(qty=0), True, "quantity must be positive"),
        (order(kind=OrderType.LIMIT), True, "needs a positive limit price"),
        (order(kind=OrderType.SL_M), True, "needs a positive trigger price"),
        (order(kind=OrderType.SL_M, trigger=99_500), True, "must be above the last traded price ₹1,000.00"),
        (order(side=Side.SELL, kind=OrderType.SL_M, trigger=100_500), True, "must be below the last traded"),
        (order(kind=OrderType.SL, trigger=100_300, price=100_200), True, "trigger ≤ limit price"),
        (order(side=Side.SELL, kind=OrderType.SL, trigger=99_700, price=99_800), True, "trigger ≥ limit"),
        (order(kind=OrderType.SL_M, trigger=100_500, validity=Validity.IOC), True, "cannot be IOC"),
        (order(trigger=100_500), True, "MARKET order takes no trigger"),
    ],
)
def test_rejections_say_what_and_why(request_: OrderRequest, is_open: bool, reason_has: str) -> None:
    engine = make_engine(is_open=is_open)
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    events = engine.submit(request_, T0)
    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert reason_has in events[0].reason
    resting = engine.order(request_.client_order_id)
    assert resting is not None and resting.status is OrderStatus.REJECTED
    assert resting.reason == events[0].reason
    assert engine.active_keys() == set()


def test_duplicate_order_id_is_rejected_without_touching_the_first() -> None:
    engine = make_engine()
    engine.submit(order(kind=OrderType.LIMIT, price=99_000), T0)
    events = engine.submit(order(kind=OrderType.LIMIT, price=99_500), T0)
    assert isinstance(events[0], OrderRejected) and "already in use" in events[0].reason
    assert engine.order("o1").price == 99_000  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- modify, cancel, expiry


def test_modify_price_to_cross_fills_at_once() -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    engine.submit(order(kind=OrderType.LIMIT, price=99_000), T0)
    events = engine.modify("o1", T0 + 1, price=100_100)
    assert kinds(events) == ["OrderModified", "OrderFilled"]
    assert events[0] == OrderModified("o1", EQ, 10, 100_100, 0, OrderType.LIMIT, T0 + 1)
    assert fills(events) == [(10, 100_010)]


def test_modify_stop_to_limit_drops_the_trigger_wait() -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    engine.submit(order(kind=OrderType.SL_M, trigger=100_500), T0)
    events = engine.modify("o1", T0 + 1, order_type=OrderType.LIMIT, price=99_000, trigger_price=0)
    assert kinds(events) == ["OrderModified"]
    assert engine.order("o1").status is OrderStatus.OPEN  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "reason_has"),
    [
        ({"price": 99_001}, "tick size"),
        ({"quantity": 20}, "must exceed the 20 already filled"),
        ({"price": 130_000}, "upper circuit"),
    ],
)
def test_modify_refusals(change: dict[str, Any], reason_has: str) -> None:
    engine = make_engine(partial_fills=True)
    engine.on_quote(EQ, 99_990, 100_010, 100_000, T0, bid_qty=20, ask_qty=20)
    engine.submit(order(qty=50, kind=OrderType.LIMIT, price=100_010), T0)  # 20 fill, 30 rest
    events = engine.modify("o1", T0 + 1, **change)
    assert len(events) == 1 and isinstance(events[0], OrderRejected)
    assert events[0].reason.startswith("modify refused") and reason_has in events[0].reason
    assert engine.order("o1").quantity == 50  # type: ignore[union-attr]


def test_cancel_then_cancel_again_and_modify_after_cancel() -> None:
    engine = make_engine()
    engine.submit(order(kind=OrderType.LIMIT, price=99_000), T0)
    events = engine.cancel("o1", T0 + 1)
    assert events == [OrderCancelled("o1", EQ, "cancelled by the user", 0, T0 + 1)]
    again = engine.cancel("o1", T0 + 2)
    assert isinstance(again[0], OrderRejected) and "already cancelled" in again[0].reason
    modified = engine.modify("o1", T0 + 2, price=99_500)
    assert isinstance(modified[0], OrderRejected) and "already cancelled" in modified[0].reason
    unknown = engine.cancel("nope", T0)
    assert isinstance(unknown[0], OrderRejected) and "no order with id 'nope'" in unknown[0].reason


def test_expire_day_cancels_every_working_order() -> None:
    engine = make_engine()
    engine.on_quote(EQ, ts_ns=T0, **QUOTE)
    engine.submit(order("a", kind=OrderType.LIMIT, price=99_000), T0)
    engine.submit(order("b", kind=OrderType.SL_M, trigger=101_000), T0)
    engine.submit(order("c"), T0)  # fills, so not expired
    events = engine.expire_day(T0 + 1)
    assert sorted(e.order_id for e in events) == ["a", "b"]
    assert all(isinstance(e, OrderCancelled) for e in events)
    assert engine.active_keys() == set()


@pytest.mark.parametrize(
    ("paise", "text"), [(0, "₹0.00"), (5, "₹0.05"), (123_456, "₹1,234.56"), (-250, "-₹2.50")]
)
def test_format_rupees(paise: int, text: str) -> None:
    assert format_rupees(paise) == text


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="tick_size must be positive"):
        InstrumentRules("NSE:1", tick_size=0, lot_size=1)
    with pytest.raises(ValueError, match="lower circuit above upper"):
        InstrumentRules("NSE:1", tick_size=5, lot_size=1, lower_circuit=10, upper_circuit=5)


# ----------------------------------------------------------------------------- properties

quotes = st.lists(
    st.tuples(st.integers(-40, 40), st.integers(1, 6), st.integers(0, 300), st.integers(0, 300)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    moves=quotes,
    side=st.sampled_from(list(Side)),
    limit_ticks=st.integers(-20, 20),
    qty=st.integers(1, 400),
    partial=st.booleans(),
)
def test_limit_fills_respect_the_limit_and_the_quantity(
    moves: list[tuple[int, int, int, int]], side: Side, limit_ticks: int, qty: int, partial: bool
) -> None:
    engine = make_engine(partial_fills=partial)
    mid = 100_000
    engine.on_quote(EQ, mid - 5, mid + 5, mid, T0, bid_qty=100, ask_qty=100)
    limit = mid + 5 * limit_ticks
    events = engine.submit(order(side=side, qty=qty, kind=OrderType.LIMIT, price=limit), T0)
    for i, (step, half_spread, bq, aq) in enumerate(moves):
        mid += 5 * step
        bid, ask = mid - 5 * half_spread, mid + 5 * half_spread
        new = engine.on_quote(EQ, bid, ask, mid, T0 + i + 1, bid_qty=bq, ask_qty=aq)
        for event in new:
            if isinstance(event, OrderFilled):
                assert event.price == (ask if side is Side.BUY else bid)
        events += new
    filled = [e for e in events if isinstance(e, OrderFilled)]
    assert sum(f.quantity for f in filled) <= qty
    for f in filled:
        assert f.price <= limit if side is Side.BUY else f.price >= limit
    resting = engine.order("o1")
    assert resting is not None
    assert resting.filled_quantity == sum(f.quantity for f in filled)
    assert (resting.status is OrderStatus.FILLED) == (resting.filled_quantity == qty)
