"""Charges against worked examples computed by hand from the published rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.orders import Product, Side
from actors.portfolio.charges import (
    DISCOUNT_PLAN,
    ZERO_PLAN,
    ChargeModel,
    Charges,
    ChargeSegment,
    charge_segment,
)
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec, OptionRight

SBIN = InstrumentSpec(key="NSE:3045", symbol="SBIN-EQ", kind=InstrumentKind.EQUITY)
SBIN_BSE = InstrumentSpec(key="BSE:500112", symbol="SBIN", kind=InstrumentKind.EQUITY)
NIFTY_FUT = InstrumentSpec(
    key="NFO:61093", symbol="NIFTY28JUL26FUT", kind=InstrumentKind.FUTURE, lot_size=65, tick_size=10,
    expiry=date(2026, 7, 28), underlying="NSE:99926000",
)  # fmt: skip
NIFTY_CE = InstrumentSpec(
    key="NFO:63915", symbol="NIFTY28JUL2623500CE", kind=InstrumentKind.OPTION, lot_size=65,
    expiry=date(2026, 7, 28), strike=2_350_000, right=OptionRight.CALL, underlying="NSE:99926000",
)  # fmt: skip
CRUDE_FUT = InstrumentSpec(
    key="MCX:4001", symbol="CRUDEOIL19AUG26FUT", kind=InstrumentKind.FUTURE, lot_size=100, tick_size=100,
    expiry=date(2026, 8, 19),
)  # fmt: skip

DISCOUNT = ChargeModel(DISCOUNT_PLAN)
ZERO = ChargeModel(ZERO_PLAN)


@pytest.mark.parametrize(
    ("model", "spec", "product", "side", "qty", "price", "expected"),
    [
        # Intraday buy 100 SBIN @ ₹800: turnover ₹80,000 = 8,000,000 paise.
        # brokerage min(₹20, 0.03% = ₹24) = 2000; exchange 0.00297% = 237.6 -> 238; SEBI 8;
        # stamp 0.003% = 240; GST 18% of (2000 + 238 + 8) = 404.28 -> 404; no STT on an intraday buy.
        (DISCOUNT, SBIN, Product.INTRADAY, Side.BUY, 100, 80_000,
         Charges(brokerage=2000, stt=0, exchange=238, sebi=8, stamp=240, gst=404)),
        # Intraday sell 100 @ ₹810: turnover 8,100,000; STT 0.025% = 2025; exchange 240.57 -> 241;
        # SEBI 8.1 -> 8; GST 18% of 2249 = 404.82 -> 405; no stamp on a sell.
        (DISCOUNT, SBIN, Product.INTRADAY, Side.SELL, 100, 81_000,
         Charges(brokerage=2000, stt=2025, exchange=241, sebi=8, stamp=0, gst=405)),
        # Delivery buy 10 @ ₹1,500: turnover 1,500,000; brokerage free; STT 0.1% = 1500;
        # exchange 44.55 -> 45; SEBI 1.5 -> 2 (half up); stamp 0.015% = 225; GST 18% of 47 = 8.46 -> 8.
        (DISCOUNT, SBIN, Product.DELIVERY, Side.BUY, 10, 150_000,
         Charges(brokerage=0, stt=1500, exchange=45, sebi=2, stamp=225, gst=8)),
        # Delivery sell on BSE, 10 @ ₹1,500: STT both sides; BSE exchange 0.00375% = 56.25 -> 56.
        (DISCOUNT, SBIN_BSE, Product.DELIVERY, Side.SELL, 10, 150_000,
         Charges(brokerage=0, stt=1500, exchange=56, sebi=2, stamp=0, gst=10)),
        # MARGIN (MTF) on equity is charged as delivery.
        (DISCOUNT, SBIN, Product.MARGIN, Side.BUY, 10, 150_000,
         Charges(brokerage=0, stt=1500, exchange=45, sebi=2, stamp=225, gst=8)),
        # Sell 1 lot (65) NIFTY 23500 CE @ ₹120.50: premium turnover 783,250 paise.
        # brokerage 0.03% = 234.975 -> 235 (under ₹20); STT 0.15% = 1174.875 -> 1175;
        # exchange 0.03503% = 274.37 -> 274; SEBI 0.78 -> 1; GST 18% of 510 = 91.8 -> 92.
        (DISCOUNT, NIFTY_CE, Product.CARRYFORWARD, Side.SELL, 65, 12_050,
         Charges(brokerage=235, stt=1175, exchange=274, sebi=1, stamp=0, gst=92)),
        # Buy the same option: no STT; stamp 0.003% = 23.4975 -> 23.
        (DISCOUNT, NIFTY_CE, Product.CARRYFORWARD, Side.BUY, 65, 12_050,
         Charges(brokerage=235, stt=0, exchange=274, sebi=1, stamp=23, gst=92)),
        # Buy 1 lot NIFTY future @ ₹23,600: turnover 153,400,000 paise; brokerage capped at 2000;
        # exchange 0.00173% = 2653.82 -> 2654; SEBI 153.4 -> 153; stamp 0.002% = 3068;
        # GST 18% of 4807 = 865.26 -> 865.
        (DISCOUNT, NIFTY_FUT, Product.CARRYFORWARD, Side.BUY, 65, 2_360_000,
         Charges(brokerage=2000, stt=0, exchange=2654, sebi=153, stamp=3068, gst=865)),
        # Sell it: STT 0.05% = 76,700; no stamp.
        (DISCOUNT, NIFTY_FUT, Product.INTRADAY, Side.SELL, 65, 2_360_000,
         Charges(brokerage=2000, stt=76_700, exchange=2654, sebi=153, stamp=0, gst=865)),
        # MCX crude, sell 100 @ ₹6,000: turnover 60,000,000; CTT 0.01% = 6000; MCX 0.0021% = 1260;
        # SEBI 60; GST 18% of (2000 + 1260 + 60) = 597.6 -> 598.
        (DISCOUNT, CRUDE_FUT, Product.CARRYFORWARD, Side.SELL, 100, 600_000,
         Charges(brokerage=2000, stt=6000, exchange=1260, sebi=60, stamp=0, gst=598)),
        # Zero plan: the statutory part of the first example, GST only on exchange + SEBI: 18% of 246.
        (ZERO, SBIN, Product.INTRADAY, Side.BUY, 100, 80_000,
         Charges(brokerage=0, stt=0, exchange=238, sebi=8, stamp=240, gst=44)),
    ],
)  # fmt: skip
def test_worked_examples(
    model: ChargeModel,
    spec: InstrumentSpec,
    product: Product,
    side: Side,
    qty: int,
    price: int,
    expected: Charges,
) -> None:
    assert model.for_fill(spec, product, side, qty, price) == expected


def test_round_trip_total_for_an_intraday_trade() -> None:
    buy = DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.BUY, 100, 80_000)
    sell = DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.SELL, 100, 81_000)
    # 2890 + 4679 paise, from the two rows above: ₹75.69 on a ₹1,000 gross profit.
    assert (buy + sell).total == 7569


def test_small_intraday_order_pays_the_percentage_not_the_cap() -> None:
    # 10 @ ₹100 = ₹1,000 turnover: 0.03% is 30 paise, far under ₹20.
    assert DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.BUY, 10, 10_000).brokerage == 30


def test_partial_fills_of_one_order_pay_the_cap_once() -> None:
    first = DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.BUY, 50, 80_000)
    second = DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.BUY, 50, 80_000, order_turnover_before=4_000_000)
    assert (first.brokerage, second.brokerage) == (1200, 800)
    whole = DISCOUNT.for_fill(SBIN, Product.INTRADAY, Side.BUY, 100, 80_000)
    assert first.brokerage + second.brokerage == whole.brokerage


@given(
    parts=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=12),
    price=st.integers(min_value=5, max_value=5_000_000),
)
def test_order_brokerage_does_not_depend_on_how_it_fills(parts: list[int], price: int) -> None:
    before = 0
    paid = 0
    for qty in parts:
        paid += DISCOUNT.for_fill(NIFTY_CE, Product.INTRADAY, Side.BUY, qty, price, before).brokerage
        before += qty * price
    assert paid == DISCOUNT.plan.order_brokerage(ChargeSegment.OPTIONS, before)
    assert 0 <= paid <= 2000


@given(qty=st.integers(min_value=1, max_value=10_000), price=st.integers(min_value=1, max_value=10_000_000))
def test_components_are_non_negative_and_sell_never_pays_stamp(qty: int, price: int) -> None:
    for side in Side:
        charges = DISCOUNT.for_fill(SBIN, Product.INTRADAY, side, qty, price)
        assert min(charges.brokerage, charges.stt, charges.exchange, charges.sebi, charges.gst) >= 0
        assert (charges.stamp == 0) == (
            side is Side.SELL or qty * price * Decimal("0.00003") < Decimal("0.5")
        )


def test_exercised_long_option_pays_stt_on_intrinsic_value() -> None:
    # 65 units settled at ₹150 intrinsic = 975,000 paise; 0.15% = 1462.5 -> 1463.
    assert DISCOUNT.for_exercise(NIFTY_CE, 65, 15_000) == Charges(stt=1463)
    assert DISCOUNT.for_exercise(NIFTY_CE, 65, 0) == Charges()
    assert DISCOUNT.for_exercise(NIFTY_FUT, 65, 15_000) == Charges()


@pytest.mark.parametrize(
    ("spec", "product", "segment"),
    [
        (SBIN, Product.DELIVERY, ChargeSegment.EQUITY_DELIVERY),
        (SBIN, Product.MARGIN, ChargeSegment.EQUITY_DELIVERY),
        (SBIN, Product.INTRADAY, ChargeSegment.EQUITY_INTRADAY),
        (NIFTY_FUT, Product.INTRADAY, ChargeSegment.FUTURES),
        (NIFTY_FUT, Product.CARRYFORWARD, ChargeSegment.FUTURES),
        (NIFTY_CE, Product.CARRYFORWARD, ChargeSegment.OPTIONS),
        (CRUDE_FUT, Product.CARRYFORWARD, ChargeSegment.COMMODITY_FUTURES),
    ],
)
def test_segment_rules(spec: InstrumentSpec, product: Product, segment: ChargeSegment) -> None:
    assert charge_segment(spec, product) is segment


def test_unknown_plan_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown broker plan 'premium'; known: discount, zero"):
        ChargeModel.for_plan("premium")
