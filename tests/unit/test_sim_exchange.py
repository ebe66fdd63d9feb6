"""The simulated account (orders, trades, positions, GTT in Angel's shapes) and the candles."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest

from actors.sim.candles import CandleRequestError, parse_range, synthesize_candles
from actors.sim.exchange import AngelApiError, SimExchange, to_minor
from actors.sim.market import MarketModel
from actors.sim.market_hours import IST
from actors.sim.universe import SimInstrument

EQ = SimInstrument("NSE", "3045", "SBIN-EQ", 5, 1, 80_000)
FUT = SimInstrument("NFO", "61093", "NIFTY28JUL26FUT", 10, 65, 2_350_000, "FUTIDX")
IDX = SimInstrument("NSE", "99926000", "NIFTY 50", 5, 1, 2_350_000, "AMXIDX")
T0 = int(datetime(2026, 7, 6, 10, 0, tzinfo=IST).timestamp()) * 1_000_000_000


def make(is_open: bool = True) -> tuple[SimExchange, list[dict[str, Any]]]:
    market = MarketModel([EQ, FUT, IDX], seed=3)
    exchange = SimExchange(market, "SIM001", lambda ts: is_open)
    updates: list[dict[str, Any]] = []
    exchange.listeners.append(updates.append)
    return exchange, updates


def params(inst: SimInstrument = EQ, **changes: Any) -> dict[str, Any]:
    base = {
        "variety": "NORMAL",
        "tradingsymbol": inst.symbol,
        "symboltoken": inst.token,
        "exchange": inst.exchange,
        "transactiontype": "BUY",
        "ordertype": "LIMIT",
        "producttype": "INTRADAY",
        "duration": "DAY",
        "price": "790.00",
        "quantity": str(inst.lot_size),
    }
    return {**base, **changes}


def move(exchange: SimExchange, inst: SimInstrument, ltp: int, ts_ns: int) -> None:
    """Force one tick at ``ltp`` through the exchange, as the feed would deliver it."""
    market = exchange.market
    i = market.index[inst.key]
    market.ltp[i] = ltp
    market.spread_ticks[i] = 1
    rec = market.replay(np.array([i]), ts_ns // 1_000_000, [ltp], [inst.lot_size], [0], [0], [0])
    exchange.on_ticks(np.array([i]), rec)


@pytest.mark.parametrize(
    ("value", "exchange", "minor"),
    [
        ("194.50", "NSE", 19_450),
        (194.5, "NSE", 19_450),
        ("0", "NSE", 0),
        (None, "NSE", 0),
        ("83.1234567", "CDS", 831_234_567),
    ],
)
def test_rupees_to_minor_units_exactly(value: Any, exchange: str, minor: int) -> None:
    assert to_minor(value, exchange, "price") == minor


@pytest.mark.parametrize(
    ("value", "message"), [("1.001", "more decimals"), ("abc", "not a number"), ("-5", "more decimals")]
)
def test_rupees_refused(value: str, message: str) -> None:
    with pytest.raises(AngelApiError, match=message):
        to_minor(value, "NSE", "price")


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"variety": "FANCY"}, "AB1008", "Invalid order variety"),
        ({"variety": "ROBO"}, "AB2002", "ROBO"),
        ({"symboltoken": "1"}, "AB1009", "no token '1'"),
        ({"tradingsymbol": "INFY-EQ"}, "AB1009", "does not match"),
        ({"transactiontype": "HOLD"}, "AB1007", "Invalid transactiontype"),
        ({"ordertype": "ICEBERG"}, "AB1007", "Invalid ordertype"),
        ({"producttype": "BO"}, "AB1012", "Invalid product type"),
        ({"duration": "GTC"}, "AB1007", "DAY or IOC"),
        ({"ordertag": "t" * 21}, "AB4008", "ordertag"),
        ({"quantity": "ten"}, "AB1007", "not a whole number"),
        ({"ordertype": "STOPLOSS_LIMIT", "triggerprice": "795"}, "AB1008", "variety STOPLOSS"),
    ],
)
def test_malformed_orders_raise_angel_errors(changes: dict[str, str], code: str, message: str) -> None:
    exchange, updates = make()
    with pytest.raises(AngelApiError, match=message) as err:
        exchange.place(params(EQ, **changes), T0)
    assert err.value.code == code
    assert exchange.orders == {} and updates == []


@pytest.mark.parametrize(
    ("inst", "changes", "is_open", "text"),
    [
        (EQ, {"price": "790.03"}, True, "tick size"),
        (FUT, {"quantity": "100", "price": "23500.00"}, True, "lot size 65"),
        (EQ, {"price": "2000.00"}, True, "upper circuit"),
        (EQ, {}, False, "market is closed"),
        (IDX, {"price": "23500.00"}, True, "is an index"),
    ],
)
def test_exchange_refusals_become_rejected_orders(
    inst: SimInstrument, changes: dict[str, str], is_open: bool, text: str
) -> None:
    exchange, updates = make(is_open)
    orderid = exchange.place(params(inst, **changes), T0)
    row = exchange.order_book()[0]
    assert row["orderid"] == orderid and row["status"] == "rejected" and text in row["text"]
    assert [u["order-status"] for u in updates] == ["AB03"] and text in updates[0]["error-message"]


def test_order_ids_are_dated_and_increasing() -> None:
    exchange, _ = make()
    first = exchange.place(params(), T0)
    second = exchange.place(params(), T0)
    assert first.startswith("260706") and len(first) == 15 and int(second) == int(first) + 1


def test_resting_limit_fills_when_the_market_comes_and_books_update() -> None:
    exchange, updates = make()
    orderid = exchange.place(params(price="790.00", quantity="4"), T0)
    assert exchange.order_book()[0]["status"] == "open"
    assert exchange.trade_book() == [] and exchange.position_rows() == []
    move(exchange, EQ, 79_500, T0 + 1_000_000)  # ask 795.05: still above 790
    assert exchange.order_book()[0]["status"] == "open"
    move(exchange, EQ, 78_900, T0 + 2_000_000)  # ask 789.05: crosses
    row = exchange.order_book()[0]
    assert row["status"] == "complete" and row["averageprice"] == 789.05 and row["filledshares"] == "4"
    trade = exchange.trade_book()[0]
    assert trade["orderid"] == orderid and trade["fillprice"] == 789.05 and trade["fillsize"] == "4"
    position = exchange.position_rows()[0]
    assert position["netqty"] == "4" and position["buyavgprice"] == "789.05"
    assert [u["order-status"] for u in updates] == ["AB01", "AB05"]


def test_stop_loss_order_waits_then_triggers() -> None:
    exchange, updates = make()
    exchange.place(
        params(variety="STOPLOSS", ordertype="STOPLOSS_MARKET", price="0", triggerprice="805.00"), T0
    )
    assert exchange.order_book()[0]["status"] == "trigger pending"
    move(exchange, EQ, 80_500, T0 + 1)
    assert exchange.order_book()[0]["status"] == "complete"
    assert [u["order-status"] for u in updates] == ["AB10", "AB01", "AB05"]


def test_modify_and_cancel() -> None:
    exchange, updates = make()
    orderid = exchange.place(params(price="780.00", quantity="2"), T0)
    exchange.modify({"orderid": orderid, "price": "781.00", "quantity": "3", "ordertype": "LIMIT"}, T0 + 1)
    row = exchange.order_book()[0]
    assert (row["price"], row["quantity"]) == (781.0, "3")
    with pytest.raises(AngelApiError, match="tick size"):
        exchange.modify({"orderid": orderid, "price": "781.01"}, T0 + 2)
    exchange.cancel(orderid, T0 + 3)
    assert exchange.order_book()[0]["status"] == "cancelled"
    with pytest.raises(AngelApiError, match="already cancelled"):
        exchange.cancel(orderid, T0 + 4)
    with pytest.raises(AngelApiError) as err:
        exchange.cancel("nope", T0)
    assert err.value.code == "AB1013"
    assert [u["order-status"] for u in updates] == ["AB01", "AB04", "AB02"]


def test_gtt_rule_places_an_order_when_its_trigger_is_reached() -> None:
    exchange, _updates = make()
    rule = {
        "exchange": "NSE",
        "symboltoken": EQ.token,
        "producttype": "DELIVERY",
        "transactiontype": "BUY",
        "price": "785.00",
        "triggerprice": "786.00",
        "qty": "3",
    }
    rule_id = exchange.gtt_create(rule, T0)
    assert exchange.gtt_details(rule_id)["status"] == "NEW"
    move(exchange, EQ, 78_700, T0 + 1)  # above the trigger: nothing yet
    assert exchange.orders == {}
    move(exchange, EQ, 78_600, T0 + 2)  # reaches it: a DELIVERY limit order goes in
    details = exchange.gtt_details(rule_id)
    assert details["status"] == "SENTTOEXCHANGE" and details["orderid"]
    order = exchange.orders[details["orderid"]]
    assert (order.price, order.quantity, order.product, order.tag) == (78_500, 3, "DELIVERY", f"gtt{rule_id}")
    with pytest.raises(AngelApiError, match="can no longer change"):
        exchange.gtt_modify({"id": rule_id, "qty": "5"}, T0 + 3)
    assert exchange.gtt_list(["SENTTOEXCHANGE"], 1, 10)[0]["id"] == str(rule_id)
    assert exchange.gtt_list(["NEW"], 1, 10) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exchange": "NFO", "symboltoken": FUT.token}, "NSE and BSE"),
        ({"producttype": "INTRADAY"}, "DELIVERY or MARGIN"),
        ({"price": "785.01"}, "tick size"),
        ({"qty": "0"}, "must be positive"),
    ],
)
def test_gtt_refusals(changes: dict[str, str], message: str) -> None:
    exchange, _ = make()
    rule = {
        "exchange": "NSE",
        "symboltoken": EQ.token,
        "producttype": "DELIVERY",
        "transactiontype": "SELL",
        "price": "785.00",
        "triggerprice": "786.00",
        "qty": "3",
    }
    with pytest.raises(AngelApiError, match=message):
        exchange.gtt_create({**rule, **changes}, T0)


def test_gtt_cancel_and_paging() -> None:
    exchange, _ = make()
    rule = {"exchange": "NSE", "symboltoken": EQ.token, "producttype": "MARGIN", "transactiontype": "SELL"}
    rule |= {"price": "900.00", "triggerprice": "900.00", "qty": "1"}
    ids = [exchange.gtt_create(rule, T0) for _ in range(5)]
    exchange.gtt_cancel({"id": ids[0]}, T0)
    assert [r["id"] for r in exchange.gtt_list(["NEW"], 2, 2)] == [str(ids[3]), str(ids[4])]
    assert len(exchange.gtt_list(["FORALL"], 1, 10)) == 5
    with pytest.raises(AngelApiError, match="not found"):
        exchange.gtt_details(999)


# ----------------------------------------------------------------------------------------- candles


@pytest.mark.parametrize(
    ("interval", "start", "end", "ok"),
    [
        ("ONE_MINUTE", "2026-06-01 09:15", "2026-07-01 09:15", True),  # exactly 30 days
        ("ONE_MINUTE", "2026-06-01 09:15", "2026-07-01 09:16", False),
        ("FIVE_MINUTE", "2026-01-01 09:15", "2026-04-11 09:15", True),  # 100 days
        ("ONE_HOUR", "2025-01-01 09:15", "2026-03-01 09:15", False),  # 424 days > 400
        ("ONE_DAY", "2021-01-01 00:00", "2026-01-01 00:00", True),
        ("TWO_MINUTE", "2026-06-01 09:15", "2026-06-02 09:15", False),
        ("ONE_DAY", "2026-06-02 00:00", "2026-06-01 00:00", False),
        ("ONE_DAY", "01-06-2026", "2026-06-01 00:00", False),
    ],
)
def test_candle_range_checks(interval: str, start: str, end: str, ok: bool) -> None:
    if ok:
        parse_range(interval, start, end)
    else:
        with pytest.raises(CandleRequestError):
            parse_range(interval, start, end)


def test_candles_are_deterministic_consistent_and_well_formed() -> None:
    start, end = parse_range("FIVE_MINUTE", "2026-07-03 09:00", "2026-07-07 16:00")  # Fri..Tue
    candles = synthesize_candles(EQ, "FIVE_MINUTE", start, end, seed=4)
    assert candles == synthesize_candles(EQ, "FIVE_MINUTE", start, end, seed=4)
    assert candles != synthesize_candles(EQ, "FIVE_MINUTE", start, end, seed=5)
    days = {c[0][:10] for c in candles}
    assert days == {"2026-07-03", "2026-07-06", "2026-07-07"}  # no weekend
    assert len(candles) == 3 * 75 and candles[0][0] == "2026-07-03T09:15:00+05:30"
    assert candles[-1][0] == "2026-07-07T15:25:00+05:30"
    for _, o, h, lo, c, v in candles:
        assert lo <= min(o, c) and h >= max(o, c) and v > 0
        for price in (o, h, lo, c):
            assert round(price * 100) % 5 == 0
    # a narrower request gives the same candles for the same times
    inner_start, inner_end = parse_range("FIVE_MINUTE", "2026-07-06 10:00", "2026-07-06 11:00")
    inner = synthesize_candles(EQ, "FIVE_MINUTE", inner_start, inner_end, seed=4)
    window = ("2026-07-06T10:00:00+05:30", "2026-07-06T11:00:00+05:30")
    assert inner == [c for c in candles if window[0] <= c[0] <= window[1]]
