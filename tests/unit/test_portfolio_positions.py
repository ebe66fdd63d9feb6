"""Position accounting: averages, partial closes, flips, exact P&L identities."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.orders import Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight
from actors.portfolio.margin import MarginPolicy
from actors.portfolio.positions import Position, PositionBook

B, S = Side.BUY, Side.SELL


def run(fills: list[tuple[Side, int, int]]) -> tuple[Position, list[Fraction]]:
    position = Position("manual", "NSE:3045", Product.INTRADAY)
    realized = [position.apply_fill(side, qty, price) for side, qty, price in fills]
    return position, realized


@pytest.mark.parametrize(
    ("fills", "quantity", "avg", "realized"),
    [
        # Averaging up: 10 @ 100 and 10 @ 110 average 105.
        ([(B, 10, 100), (B, 10, 110)], 20, Fraction(105), [0, 0]),
        # Partial close realizes against the average and leaves it alone: (120 - 105) × 5 = 75.
        ([(B, 10, 100), (B, 10, 110), (S, 5, 120)], 15, Fraction(105), [0, 0, 75]),
        # Full close: flat, average reset.
        ([(B, 10, 100), (S, 10, 90)], 0, Fraction(0), [0, -100]),
        # Flip through zero: close 10 (loss (90 - 100) × 10), open 15 short at the fill price.
        ([(B, 10, 100), (S, 25, 90)], -15, Fraction(90), [0, -100]),
        # Short then cover part: (100 - 90) × 4 = 40 profit.
        ([(S, 10, 100), (B, 4, 90)], -6, Fraction(100), [0, 40]),
        # Short flipped long.
        ([(S, 10, 100), (B, 12, 105)], 2, Fraction(105), [0, -50]),
        # A fraction of a paisa stays exact: average 302/3, realized 102 - 302/3 = 4/3.
        ([(B, 1, 100), (B, 2, 101), (S, 1, 102)], 2, Fraction(302, 3), [0, 0, Fraction(4, 3)]),
    ],
)
def test_worked_examples(
    fills: list[tuple[Side, int, int]], quantity: int, avg: Fraction, realized: list[Fraction]
) -> None:
    position, got = run(fills)
    assert position.quantity == quantity
    assert position.avg_price == avg
    assert got == realized
    assert position.realized_pnl == sum(realized)


def test_day_and_overnight_quantities() -> None:
    position, _ = run([(B, 10, 100), (S, 4, 110)])
    assert (position.day_buy_quantity, position.day_sell_quantity) == (10, 4)
    assert (position.day_buy_value, position.day_sell_value) == (1000, 440)
    position.roll_session()
    assert position.overnight_quantity == 6
    assert (position.day_buy_quantity, position.day_sell_quantity, position.day_buy_value) == (0, 0, 0)
    position.apply_fill(S, 6, 120)
    assert position.overnight_quantity == 6  # carried in; the day's sell closed it
    assert position.quantity == 0


def test_unrealized_against_a_mark() -> None:
    position, _ = run([(S, 10, 100)])
    assert position.unrealized_pnl(95) == 50
    assert position.unrealized_pnl(None) == 0


def test_rejects_non_positive_fill() -> None:
    with pytest.raises(ValueError, match="fill quantity must be positive, got 0"):
        Position("manual", "NSE:3045", Product.INTRADAY).apply_fill(B, 0, 100)


def test_books_never_net() -> None:
    book = PositionBook()
    book.get("manual", "NSE:3045", Product.INTRADAY).apply_fill(B, 10, 100)
    book.get("ema", "NSE:3045", Product.INTRADAY).apply_fill(S, 10, 100)
    assert book.net_quantity("manual", "NSE:3045", Product.INTRADAY) == 10
    assert book.net_quantity("ema", "NSE:3045", Product.INTRADAY) == -10
    assert [p.book for p in book.select(instrument="NSE:3045")] == ["ema", "manual"]
    assert book.books() == ["ema", "manual"]


fill_strategy = st.tuples(
    st.sampled_from([B, S]),
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=1, max_value=10**7),
)


@given(fills=st.lists(fill_strategy, min_size=1, max_size=40), mark=st.integers(min_value=1, max_value=10**7))
def test_pnl_identity(fills: list[tuple[Side, int, int]], mark: int) -> None:
    """realized + unrealized equals the cash the trades moved plus what is held, marked; exactly."""
    position, realized = run(fills)
    signed = [qty if side is B else -qty for side, qty, _ in fills]
    cash_flow = -sum(q * price for q, (_, _, price) in zip(signed, fills, strict=True))
    assert position.quantity == sum(signed)
    assert position.realized_pnl == sum(realized)
    assert position.realized_pnl + position.unrealized_pnl(mark) == cash_flow + position.quantity * mark


@given(fills=st.lists(fill_strategy, min_size=1, max_size=40))
def test_average_stays_within_the_prices_that_built_it(fills: list[tuple[Side, int, int]]) -> None:
    position, _ = run(fills)
    if position.quantity:
        prices = [price for _, _, price in fills]
        assert min(prices) <= position.avg_price <= max(prices)
    else:
        assert position.avg_price == 0


SBIN = InstrumentSpec(key="NSE:3045", symbol="SBIN-EQ", kind=InstrumentKind.EQUITY)
NIFTY_FUT = InstrumentSpec(
    key="NFO:61093",
    symbol="NIFTY28JUL26FUT",
    kind=InstrumentKind.FUTURE,
    lot_size=65,
    expiry=date(2026, 7, 28),
)
NIFTY_CE = InstrumentSpec(
    key="NFO:63915", symbol="NIFTY28JUL2623500CE", kind=InstrumentKind.OPTION, lot_size=65,
    expiry=date(2026, 7, 28), strike=2_350_000, right=OptionRight.CALL,
)  # fmt: skip
POLICY = MarginPolicy.from_fractions(0.2, 0.12)


@pytest.mark.parametrize(
    ("spec", "product", "qty", "price", "margin"),
    [
        (SBIN, Product.DELIVERY, 10, 150_000, 1_500_000),  # 100% of ₹15,000
        (SBIN, Product.INTRADAY, 10, 150_000, 300_000),  # 20%
        (SBIN, Product.INTRADAY, -10, 150_000, 300_000),  # intraday short, same
        (SBIN, Product.MARGIN, 3, 33_335, 20_001),  # 20% of 100,005 = 20,001
        (NIFTY_FUT, Product.CARRYFORWARD, 65, 2_360_000, 18_408_000),  # 12% of ₹15.34 lakh
        (NIFTY_FUT, Product.INTRADAY, -130, 2_360_000, 36_816_000),
        (NIFTY_CE, Product.CARRYFORWARD, 65, 12_050, 783_250),  # long: the premium
        (NIFTY_CE, Product.CARRYFORWARD, -65, 12_050, 18_330_000),  # short: 12% of 23,500 × 65
        (SBIN, Product.INTRADAY, 0, 150_000, 0),
    ],
)
def test_margin_worked_examples(
    spec: InstrumentSpec, product: Product, qty: int, price: int, margin: int
) -> None:
    assert POLICY.requirement(spec, product, qty, price) == margin


def test_margin_rounds_up_a_fraction_of_a_paisa() -> None:
    # 20% of 1 × 101 = 20.2 paise -> 21.
    assert POLICY.requirement(SBIN, Product.INTRADAY, 1, 101) == 21


def test_margin_fractions_are_checked() -> None:
    with pytest.raises(ValueError, match="fno_fraction must be in"):
        MarginPolicy(Fraction(1, 5), Fraction(0))
