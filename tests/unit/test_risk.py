from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.execution.risk import Exposure, PositionState, PreTradeRisk, RiskLimits
from actors.orders import Fill, OrderRequest, OrderType, Product, Side
from cluster.config import DeploymentConfig, RiskConfig

SBIN = "NSE:3045"
NIFTY_OPT = "NFO:63915"


class Spec(msgspec.Struct, frozen=True):
    exchange: str
    symbol: str
    instrument_type: str
    lot_size: int
    tick_size: int


SPECS = {
    SBIN: Spec("NSE", "SBIN-EQ", "EQ", 1, 5),
    NIFTY_OPT: Spec("NFO", "NIFTY28JUL2623500CE", "OPTIDX", 65, 5),
    "NSE:99926000": Spec("NSE", "NIFTY 50", "AMXIDX", 1, 5),
}

LIMITS = RiskConfig(
    max_order_qty=1_000,
    max_order_value_rupees=1_000_000,
    price_band_pct=10,
    max_position_qty=2_000,
    daily_loss_limit_rupees=10_000,
    global_daily_loss_limit_rupees=15_000,
    max_drawdown_rupees=8_000,
)


def risk(**overrides: object) -> PreTradeRisk:
    config = LIMITS.model_copy(update=overrides)
    deployments = [
        DeploymentConfig(
            name="ema",
            strategy="m:S",
            universe={"instruments": [SBIN]},  # type: ignore[arg-type]
            risk=config.model_copy(update={"max_order_qty": 100}),
        )
    ]
    r = PreTradeRisk.from_config(config, deployments, instruments=SPECS.get)
    r.mark(SBIN, 80_000)  # ₹800.00
    return r


def order(**kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_order_id": "c",
        "book": "manual",
        "instrument": SBIN,
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.LIMIT,
        "price": 80_000,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def fill(side: Side, quantity: int, price: int, book: str = "manual", **kw: object) -> Fill:
    return Fill(
        client_order_id="c",
        venue_order_id="v",
        trade_id=f"t{side}{quantity}{price}",
        book=book,
        instrument=kw.pop("instrument", SBIN),  # type: ignore[arg-type]
        side=side,
        quantity=quantity,
        price=price,
        product=kw.pop("product", Product.INTRADAY),  # type: ignore[arg-type]
        ts_ns=1,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantity": 0}, "quantity must be positive, got 0"),
        ({"instrument": "3045"}, "not an 'EXCH:token' key"),
        ({"instrument": "NSE:1"}, "unknown instrument NSE:1"),
        ({"instrument": "NSE:99926000"}, "NIFTY 50 is an index"),
        ({"price": 0}, "a LIMIT order needs a positive price"),
        ({"order_type": OrderType.MARKET}, "a MARKET order takes no price (got ₹800.00)"),
        ({"order_type": OrderType.SL, "trigger_price": 0}, "a SL order needs a positive trigger price"),
        ({"trigger_price": 79_000}, "a LIMIT order takes no trigger price"),
        (
            {"order_type": OrderType.SL, "trigger_price": 81_000},
            "trigger ₹810.00 must not be above its limit",
        ),
        ({"product": Product.CARRYFORWARD}, "CARRYFORWARD is not available in cash"),
        (
            {"instrument": NIFTY_OPT, "product": Product.DELIVERY, "price": 10_000},
            "not available in NFO derivatives",
        ),
        (
            {"instrument": NIFTY_OPT, "quantity": 100, "price": 10_000},
            "not a multiple of NIFTY28JUL2623500CE's lot",
        ),
        ({"price": 80_003}, "price ₹800.03 is not a multiple of SBIN-EQ's tick size ₹0.05"),
        ({"quantity": 1_001, "price": 800}, "quantity 1001 exceeds the global maximum order quantity 1000"),
        (
            {"book": "ema", "quantity": 101, "price": 800},
            "quantity 101 exceeds the book ema maximum order quantity 100",
        ),
        (
            {"price": 90_000},
            "limit price ₹900.00 is 12.50% from the last price ₹800.00; the global band is ±10%",
        ),
        (
            {"quantity": 1_000, "price": 80_000},
            "order value ₹800,000.00 (1000 × ₹800.00) exceeds the global maximum",
        ),
        (
            {"instrument": NIFTY_OPT, "order_type": OrderType.MARKET, "price": 0, "quantity": 65},
            "no last price for",
        ),
    ],
)
def test_each_rule_refuses_with_the_numbers(changes: dict[str, object], message: str) -> None:
    r = risk(max_order_value_rupees=500_000)
    assert r.check(order()) is None
    problem = r.check(order(**changes))
    assert problem is not None and message in problem, problem


def test_market_order_value_uses_the_last_price() -> None:
    r = risk(max_order_value_rupees=7_999)
    problem = r.check(order(order_type=OrderType.MARKET, price=0, quantity=10))
    assert problem is not None and "₹8,000.00 (10 × ₹800.00)" in problem


def test_position_limit_counts_working_orders_and_lets_exits_through() -> None:
    r = risk()
    r.on_fill(fill(Side.BUY, 1_500, 80_000))
    problem = r.check(order(quantity=400), Exposure(open_buy=200))
    assert problem is not None
    assert "would reach 2100 (now 1500, open buys 200, this order 400); the global limit is ±2000" in problem
    assert r.check(order(quantity=300), Exposure(open_buy=200)) is None
    assert r.check(order(side=Side.SELL, quantity=1_000)) is None  # reduces the long
    assert r.reduces_position(order(side=Side.SELL, quantity=1_000))
    assert not r.reduces_position(order(side=Side.SELL, quantity=1_000), Exposure(open_sell=600))


@pytest.mark.parametrize(
    ("held", "bought", "open_sells", "sell", "ok"),
    [
        (0, 0, 0, 1, False),
        (50, 0, 0, 50, True),
        (50, 0, 10, 50, False),
        (0, 30, 0, 30, True),
        (20, 30, 0, 51, False),
    ],
)
def test_no_naked_short_selling_in_delivery(
    held: int, bought: int, open_sells: int, sell: int, ok: bool
) -> None:
    r = risk()
    if held:
        r.set_holdings("manual", SBIN, held)
    if bought:
        r.on_fill(fill(Side.BUY, bought, 80_000, product=Product.DELIVERY))
    problem = r.check(
        order(side=Side.SELL, quantity=sell, product=Product.DELIVERY),
        Exposure(open_sell=open_sells, open_delivery_sell=open_sells),
    )
    assert (problem is None) is ok, problem
    if not ok:
        assert problem is not None and "short selling in delivery is not allowed" in problem
    # Intraday shorts are the broker's business (squared off the same day), not refused here.
    assert r.check(order(side=Side.SELL, quantity=sell, product=Product.INTRADAY)) is None


def test_short_delivery_allowed_when_configured() -> None:
    assert risk(allow_short_delivery=True).check(order(side=Side.SELL, product=Product.DELIVERY)) is None


def test_daily_loss_trips_the_book_switch_once_and_blocks_entries_but_not_exits() -> None:
    r = risk()
    r.on_fill(fill(Side.BUY, 100, 80_000))
    r.mark(SBIN, 72_000)  # -₹8,000: within the ₹10,000 limit, but the drawdown limit is ₹8,000
    trips = r.evaluate()
    assert [t.book for t in trips] == ["manual"]
    assert "drawdown ₹8,000.00 from the day's best ₹0.00 reached the limit ₹8,000.00" in trips[0].reason
    r.set_kill_switch("manual", True, trips[0].reason, ts_ns=5)
    assert r.evaluate() == []  # already engaged: no second trip
    entry = r.check(order(price=72_000))
    assert entry is not None and "kill switch for book manual is engaged" in entry
    assert r.check(order(side=Side.SELL, quantity=100, price=72_000)) is None  # the exit goes
    r.set_kill_switch("manual", False, "", ts_ns=6)
    assert r.check(order(price=72_000)) is None
    assert r.evaluate() == []  # released while still breached: no re-trip until it recovers and crosses again
    r.mark(SBIN, 80_000)
    assert r.evaluate() == []
    r.mark(SBIN, 69_000)
    assert [t.book for t in r.evaluate()] == ["manual"]


def test_global_loss_limit_across_books() -> None:
    r = risk(max_drawdown_rupees=None, daily_loss_limit_rupees=100_000)
    r.on_fill(fill(Side.BUY, 100, 80_000, book="a"))
    r.on_fill(fill(Side.BUY, 100, 80_000, book="b"))
    r.mark(SBIN, 72_000)  # -₹8,000 each, -₹16,000 in all; global limit ₹15,000
    trips = r.evaluate()
    assert [t.book for t in trips] == [None]
    assert "loss across all books ₹16,000.00 reached the global limit ₹15,000.00" in trips[0].reason
    r.set_kill_switch(None, True, trips[0].reason, 1)
    problem = r.check(order(book="c"))
    assert problem is not None and "global kill switch is engaged" in problem


def test_charges_count_against_the_loss_limit() -> None:
    r = risk(max_drawdown_rupees=None)
    r.on_fill(fill(Side.BUY, 100, 80_000, commission=600_000))
    r.on_fill(fill(Side.SELL, 100, 80_000, commission=400_000))
    state = r.state().books["manual"]
    assert state.realized_pnl == Decimal("0.00") and state.charges == Decimal("10000.00")
    assert [t.book for t in r.evaluate()] == ["manual"]


def test_limits_from_config_are_exact_paise() -> None:
    limits = RiskLimits.from_config(RiskConfig(max_order_value_rupees=1234.56, price_band_pct=2.5))
    assert limits.max_order_value == 123_456
    assert limits.price_band_pct == Decimal("2.5")


def test_state_reports_positions_pnl_and_switches() -> None:
    r = risk()
    r.on_fill(fill(Side.BUY, 10, 80_000))
    r.on_fill(fill(Side.SELL, 4, 81_000))
    r.mark(SBIN, 82_000)
    state = r.state()
    book = state.books["manual"]
    assert book.positions == {f"{SBIN}|INTRADAY": 6}
    assert book.realized_pnl == Decimal("40.00") and book.unrealized_pnl == Decimal("120.00")
    assert state.pnl == Decimal("160.00") and not state.global_kill_switch.engaged


@given(
    st.lists(
        st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 50), st.integers(1, 10_000)),
        max_size=30,
    ),
    st.integers(1, 10_000),
)
def test_realized_plus_unrealized_equals_the_cash_flows(
    fills: list[tuple[Side, int, int]], mark: int
) -> None:
    position = PositionState()
    cash = Fraction(0)
    for side, quantity, price in fills:
        position.apply(side, quantity, price)
        cash += -quantity * price if side is Side.BUY else quantity * price
    assert position.realized + position.unrealized(mark) == cash + position.quantity * mark
    assert position.quantity == sum(q if s is Side.BUY else -q for s, q, _ in fills)
