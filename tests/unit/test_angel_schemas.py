"""SmartAPI wire structs: exact money, order states from books and socket messages, GTT and candles."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.angel.order_updates import parse_order_update
from actors.angel.schemas import (
    GttCreateParams,
    GttRuleRow,
    GttRuleSpec,
    OrderRow,
    PlaceOrderParams,
    PositionRow,
    QuoteRow,
    TradeRow,
    WireFormatError,
    convert,
    convert_rows,
    parse_to_candles,
    to_int,
    to_minor,
    to_rupees,
)
from actors.orders import OrderRequest, OrderStatus, OrderType, Product, Side, Validity

MESSAGES = Path(__file__).parent.parent / "resources" / "ws_messages" / "order_updates.jsonl"


@given(st.integers(0, 10**15), st.sampled_from(["NSE", "NFO", "MCX", "CDS"]))
def test_minor_units_round_trip_through_rupee_strings(minor: int, exchange: str) -> None:
    assert to_minor(to_rupees(minor, exchange), exchange, "price") == minor


@pytest.mark.parametrize(
    ("value", "exchange", "minor"),
    [
        (1234.55, "NSE", 123455),
        ("1234.55", "NSE", 123455),
        ("1234.5", "NSE", 123450),
        (1234, "NSE", 123400),
        (0.05, "NSE", 5),
        (0.1 + 0.2, "NSE", None),  # 0.30000000000000004: not a paise amount
        ("", "NSE", 0),
        (None, "NSE", 0),
        ("83.1234567", "CDS", 831234567),
        ("83.12345675", "CDS", None),
        ("12.345", "NSE", None),
        ("abc", "NSE", None),
        ("NaN", "NSE", None),
    ],
)
def test_rupee_amounts_become_exact_minor_units(value: object, exchange: str, minor: int | None) -> None:
    if minor is None:
        with pytest.raises(WireFormatError, match="price"):
            to_minor(value, exchange, "price")  # type: ignore[arg-type]
    else:
        assert to_minor(value, exchange, "price") == minor  # type: ignore[arg-type]


def test_averages_round_half_even_instead_of_failing() -> None:
    assert to_minor("551.025", "NSE", "avg", exact=False) == 55102
    assert to_minor("551.035", "NSE", "avg", exact=False) == 55104


@pytest.mark.parametrize(("value", "number"), [("10", 10), (10, 10), ("10.0", 10), ("", 0), (None, 0)])
def test_quantities(value: object, number: int) -> None:
    assert to_int(value, "qty") == number  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1.5", "x", 2.5])
def test_fractional_quantities_are_refused(value: object) -> None:
    with pytest.raises(WireFormatError, match="qty"):
        to_int(value, "qty")  # type: ignore[arg-type]


def order(**overrides: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_order_id": "c1",
        "book": "manual",
        "instrument": "NSE:3045",
        "side": Side.BUY,
        "quantity": 10,
    }
    fields.update(overrides)
    return OrderRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            order(),
            {"variety": "NORMAL", "ordertype": "MARKET", "price": "0", "triggerprice": "0", "quantity": "10"},
        ),
        (
            order(order_type=OrderType.LIMIT, price=55105, validity=Validity.IOC),
            {"variety": "NORMAL", "ordertype": "LIMIT", "price": "551.05", "duration": "IOC"},
        ),
        (
            order(order_type=OrderType.SL, price=55000, trigger_price=55050, side=Side.SELL),
            {
                "variety": "STOPLOSS",
                "ordertype": "STOPLOSS_LIMIT",
                "price": "550.00",
                "triggerprice": "550.50",
            },
        ),
        (
            order(order_type=OrderType.SL_M, trigger_price=55050, product=Product.DELIVERY),
            {"variety": "STOPLOSS", "ordertype": "STOPLOSS_MARKET", "price": "0", "producttype": "DELIVERY"},
        ),
        (
            order(instrument="CDS:1234", order_type=OrderType.LIMIT, price=831234567, tag="fx-1"),
            {"exchange": "CDS", "symboltoken": "1234", "price": "83.1234567", "ordertag": "fx-1"},
        ),
    ],
)
def test_place_order_body(request_: OrderRequest, expected: dict[str, str]) -> None:
    body = msgspec.to_builtins(PlaceOrderParams.from_order(request_, "SBIN-EQ"))
    assert body["tradingsymbol"] == "SBIN-EQ"
    for key, value in expected.items():
        assert body[key] == value, key


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (order(tag="x" * 21), "longer than Angel's 20"),
        (order(order_type=OrderType.LIMIT), "needs a price"),
        (order(order_type=OrderType.SL_M), "needs a trigger price"),
        (order(quantity=0), "quantity must be positive"),
        (order(instrument="SBIN"), "not 'EXCH:token'"),
    ],
)
def test_place_order_refuses_what_the_broker_would(request_: OrderRequest, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlaceOrderParams.from_order(request_, "SBIN-EQ")


def recorded_updates() -> list[str]:
    return MESSAGES.read_text().splitlines()


@pytest.mark.parametrize(
    ("line", "status", "filled", "avg_price", "reason"),
    [
        (1, OrderStatus.PENDING, 0, 0, ""),
        (2, OrderStatus.OPEN, 0, 0, ""),
        (3, OrderStatus.PARTIALLY_FILLED, 4, 55100, ""),
        (4, OrderStatus.FILLED, 10, 55102, ""),
        (5, OrderStatus.TRIGGER_PENDING, 0, 0, ""),
        (6, OrderStatus.OPEN, 0, 0, ""),
        (7, OrderStatus.CANCELLED, 0, 0, "Cancelled by user"),
        (8, OrderStatus.REJECTED, 0, 0, "RMS:Margin Exceeds"),
        (9, OrderStatus.OPEN, 0, 0, ""),
    ],
)
def test_recorded_order_updates(
    line: int, status: OrderStatus, filled: int, avg_price: int, reason: str
) -> None:
    text = recorded_updates()[line]
    update = parse_order_update(text)
    assert update is not None
    raw = json.loads(text)["orderData"]
    assert update.status is status
    assert update.venue_order_id == raw["orderid"]
    assert update.instrument == f"{raw['exchange']}:{raw['symboltoken']}"
    assert update.filled_quantity == filled
    assert update.avg_price == avg_price
    assert update.reason == reason
    assert update.quantity == int(raw["quantity"])


def test_recorded_prices_are_exact() -> None:
    lines = recorded_updates()
    assert parse_order_update(lines[1]).price == 55105  # type: ignore[union-attr]
    assert parse_order_update(lines[5]).trigger_price == 2489050  # type: ignore[union-attr]
    assert parse_order_update(lines[9]).price == 342510  # type: ignore[union-attr]


def test_greeting_is_no_order() -> None:
    assert parse_order_update(recorded_updates()[0]) is None


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"order-status": "AB01", "orderData": "x"}', '{"orderData": {"orderid": 5}}'],
)
def test_malformed_updates_say_what_is_wrong(text: str) -> None:
    with pytest.raises(WireFormatError, match="order update"):
        parse_order_update(text)


@pytest.mark.parametrize(
    ("status_text", "filled", "expected"),
    [
        ("open", "0", OrderStatus.OPEN),
        ("open", "3", OrderStatus.PARTIALLY_FILLED),
        ("complete", "10", OrderStatus.FILLED),
        ("cancelled", "3", OrderStatus.CANCELLED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("trigger pending", "0", OrderStatus.TRIGGER_PENDING),
        ("open pending", "0", OrderStatus.PENDING),
        ("validation pending", "0", OrderStatus.PENDING),
        ("modify pending", "0", OrderStatus.OPEN),
        ("after market order req received", "0", OrderStatus.OPEN),
        ("Complete", "10", OrderStatus.FILLED),
    ],
)
def test_order_book_status_text(status_text: str, filled: str, expected: OrderStatus) -> None:
    row = convert(
        {
            "orderid": "1",
            "transactiontype": "BUY",
            "ordertype": "LIMIT",
            "exchange": "NSE",
            "symboltoken": "3045",
            "status": status_text,
            "orderstatus": status_text,
            "filledshares": filled,
            "quantity": "10",
            "price": 100,
        },
        OrderRow,
        "row",
    )
    assert row.parse_to_order().status is expected


def test_unknown_order_type_is_a_wire_error() -> None:
    row = convert({"orderid": "9", "transactiontype": "BUY", "ordertype": "ICEBERG"}, OrderRow, "row")
    with pytest.raises(WireFormatError, match="order 9"):
        row.parse_to_order()


def test_empty_books_arrive_as_null() -> None:
    assert convert_rows(None, TradeRow, "trade") == []
    with pytest.raises(WireFormatError, match="expected a list"):
        convert_rows({"a": 1}, TradeRow, "trade")


def test_trade_and_position_rows() -> None:
    trade = convert(
        {
            "orderid": "1",
            "fillid": "T1",
            "exchange": "NSE",
            "tradingsymbol": "SBIN-EQ",
            "transactiontype": "SELL",
            "fillsize": "5",
            "fillprice": 551.05,
            "producttype": "INTRADAY",
            "filltime": "09:15:04",
        },
        TradeRow,
        "trade",
    ).parse_to_trade()
    assert (trade.side, trade.quantity, trade.price) == (Side.SELL, 5, 55105)
    position = convert(
        {
            "exchange": "NFO",
            "symboltoken": "61093",
            "producttype": "CARRYFORWARD",
            "netqty": "-65",
            "buyqty": "0",
            "sellqty": "65",
            "sellavgprice": "24890.50",
            "ltp": "24880.00",
            "pnl": "682.50",
        },
        PositionRow,
        "position",
    ).parse_to_position()
    assert position.instrument == "NFO:61093"
    assert (position.net_quantity, position.sell_avg_price, position.ltp, position.pnl) == (
        -65,
        2489050,
        2488000,
        68250,
    )


def test_full_quote_with_depth() -> None:
    quote = convert(
        {
            "exchange": "NSE",
            "symbolToken": "3045",
            "tradingSymbol": "SBIN-EQ",
            "ltp": 551.05,
            "open": 549,
            "high": 553.4,
            "low": 548.1,
            "close": 550,
            "tradeVolume": 120034,
            "opnInterest": 0,
            "upperCircuit": 605,
            "lowerCircuit": 495,
            "depth": {
                "buy": [{"price": 551.0, "quantity": 100, "orders": 3}],
                "sell": [
                    {"price": 551.1, "quantity": 40, "orders": 1},
                    {"price": 551.15, "quantity": 5, "orders": 1},
                ],
            },
        },
        QuoteRow,
        "quote",
    ).parse_to_quote()
    assert quote.ltp == 55105 and quote.high == 55340 and quote.volume == 120034
    assert quote.bids == [(55100, 100, 3)]
    assert quote.asks == [(55110, 40, 1), (55115, 5, 1)]


def test_candles_parse_with_their_offset() -> None:
    candles = parse_to_candles(
        [
            ["2026-11-26T09:15:00+05:30", 551, 552.5, 550.05, 552, 1200],
            ["2026-11-26T09:16:00+05:30", 552, 552, 551, 551.5, 300],
        ],
        "NSE",
    )
    assert candles[0].ts_ns == int(datetime(2026, 11, 26, 3, 45, tzinfo=UTC).timestamp()) * 10**9
    assert (candles[0].open, candles[0].high, candles[0].low, candles[0].close, candles[0].volume) == (
        55100,
        55250,
        55005,
        55200,
        1200,
    )
    assert candles[1].ts_ns - candles[0].ts_ns == 60 * 10**9


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"x": 1}, "expected a list"),
        ([["2026-11-26T09:15:00+05:30", 1, 2, 3]], "is not \\[time"),
        ([["yesterday", 1, 2, 3, 4, 5]], "not an ISO timestamp"),
        ([["2026-11-26T09:15:00", 1, 2, 3, 4, 5]], "no UTC offset"),
        ([["2026-11-26T09:15:00+05:30", 1, 2, 3, "x", 5]], "not a number"),
    ],
)
def test_bad_candles_say_what_is_wrong(rows: object, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        parse_to_candles(rows, "NSE")


def test_gtt_spec_and_rule() -> None:
    spec = GttRuleSpec(
        instrument="NSE:3045",
        tradingsymbol="SBIN-EQ",
        side=Side.SELL,
        product=Product.DELIVERY,
        quantity=10,
        price=60000,
        trigger_price=60050,
    )
    body = msgspec.to_builtins(GttCreateParams.from_spec(spec))
    assert body == {
        "tradingsymbol": "SBIN-EQ",
        "symboltoken": "3045",
        "exchange": "NSE",
        "transactiontype": "SELL",
        "producttype": "DELIVERY",
        "price": "600.00",
        "qty": "10",
        "triggerprice": "600.50",
        "disclosedqty": "0",
        "timeperiod": "365",
    }
    rule = convert(
        {"id": 17, **body, "price": 600.0, "status": "NEW", "createddate": "26-Nov-2026 09:15:00"},
        GttRuleRow,
        "gtt",
    ).parse_to_rule()
    assert (rule.rule_id, rule.instrument, rule.price, rule.trigger_price, rule.quantity) == (
        "17",
        "NSE:3045",
        60000,
        60050,
        10,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instrument": "NFO:61093"}, "NSE and BSE cash only"),
        ({"product": Product.INTRADAY}, "DELIVERY or MARGIN"),
        ({"quantity": 0}, "must be positive"),
        ({"trigger_price": 0}, "must be positive"),
    ],
)
def test_gtt_rules_the_broker_would_refuse_are_refused_here(
    overrides: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "instrument": "NSE:3045",
        "tradingsymbol": "SBIN-EQ",
        "side": Side.SELL,
        "product": Product.DELIVERY,
        "quantity": 10,
        "price": 60000,
        "trigger_price": 60050,
    }
    with pytest.raises(ValueError, match=message):
        GttRuleSpec(**{**fields, **overrides})  # type: ignore[arg-type]


def test_decimal_not_float_is_used_for_money() -> None:
    # 0.1 + 0.2 as text is exactly 0.3 rupees = 30 paise.
    assert to_minor(str(Decimal("0.1") + Decimal("0.2")), "NSE", "price") == 30
