"""The backtest's Nautilus fee model against charges worked out by hand from the published rates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.identifiers import ClientOrderId, StrategyId, TraderId
from nautilus_trader.model.instruments import Instrument as NautilusInstrument
from nautilus_trader.model.objects import Price, Quantity
from nautilus_trader.model.orders import MarketOrder

from actors.orders import Product
from actors.portfolio.charges import DISCOUNT_PLAN, ZERO_PLAN, ChargeModel, Charges
from actors.portfolio.instruments import InstrumentKind, OptionRight
from catalog.catalog import InstrumentCatalog
from catalog.nautilus import to_nautilus
from catalog.scrip import read_scrip_master
from cluster.backtest import BacktestError, IndianChargesFeeModel, instrument_spec, order_product

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "scrip" / "OpenAPIScripMaster.sample.json"


@pytest.fixture(scope="module")
def instruments() -> dict[str, NautilusInstrument]:
    frame, report = read_scrip_master(SAMPLE)
    catalog = InstrumentCatalog(frame, report)
    keys = {"SBIN": "NSE:3045", "NIFTY_FUT": "NFO:61093", "NIFTY_CE": "NFO:63915", "CRUDE": "MCX:472789"}
    keys["USDINR"] = "CDS:3045"
    keys["INDEX"] = "NSE:99926000"
    return {name: to_nautilus(catalog.get(key)) for name, key in keys.items()}


def market_order(
    instrument: NautilusInstrument, side: OrderSide, quantity: int, tags: list[str] | None, number: int = 1
) -> MarketOrder:
    return MarketOrder(
        trader_id=TraderId("BACKTESTER-001"),
        strategy_id=StrategyId("S-001"),
        instrument_id=instrument.id,
        client_order_id=ClientOrderId(f"O-{number}"),
        order_side=side,
        quantity=Quantity.from_int(quantity),
        init_id=UUID4(),
        ts_init=0,
        time_in_force=TimeInForce.DAY,
        tags=tags,
    )


@pytest.mark.parametrize(
    ("name", "tags", "side", "qty", "price", "expected"),
    [
        # Intraday buy 100 SBIN @ ₹800 (turnover ₹80,000): brokerage min(₹20, ₹24) 2000; exchange
        # 0.00297% 237.6 -> 238; SEBI 8; stamp 0.003% 240; GST 18% of 2246 = 404.28 -> 404.
        ("SBIN", ["product:INTRADAY"], OrderSide.BUY, 100, "800.00",
         Charges(brokerage=2000, stt=0, exchange=238, sebi=8, stamp=240, gst=404)),
        # Intraday sell 100 @ ₹810: STT 0.025% of 8,100,000 = 2025; exchange 240.57 -> 241; GST 405.
        ("SBIN", ["product:INTRADAY"], OrderSide.SELL, 100, "810.00",
         Charges(brokerage=2000, stt=2025, exchange=241, sebi=8, stamp=0, gst=405)),
        # No tag: intraday, as in the shards.
        ("SBIN", None, OrderSide.BUY, 100, "800.00",
         Charges(brokerage=2000, stt=0, exchange=238, sebi=8, stamp=240, gst=404)),
        # Delivery buy 10 @ ₹1,500: no brokerage; STT 0.1% 1500; exchange 44.55 -> 45; SEBI 1.5 -> 2;
        # stamp 0.015% 225; GST 18% of 47 = 8.46 -> 8.
        ("SBIN", ["product:DELIVERY"], OrderSide.BUY, 10, "1500.00",
         Charges(brokerage=0, stt=1500, exchange=45, sebi=2, stamp=225, gst=8)),
        # Sell 65 NIFTY 23500 CE @ ₹120.50 (premium 783,250 paise): brokerage 234.975 -> 235;
        # STT 0.15% 1174.875 -> 1175; exchange 0.03503% 274.37 -> 274; SEBI 1; GST 18% of 510 = 92.
        ("NIFTY_CE", ["product:CARRYFORWARD"], OrderSide.SELL, 65, "120.50",
         Charges(brokerage=235, stt=1175, exchange=274, sebi=1, stamp=0, gst=92)),
        # Buy 65 NIFTY futures @ ₹23,600 (153,400,000 paise): brokerage capped 2000; exchange
        # 0.00173% 2653.82 -> 2654; SEBI 153; stamp 0.002% 3068; GST 18% of 4807 = 865.
        ("NIFTY_FUT", ["product:CARRYFORWARD"], OrderSide.BUY, 65, "23600.0",
         Charges(brokerage=2000, stt=0, exchange=2654, sebi=153, stamp=3068, gst=865)),
        # MCX crude, sell 100 @ ₹6,000 (60,000,000 paise): CTT 0.01% 6000; MCX 0.0021% 1260;
        # SEBI 60; GST 18% of (2000 + 1260 + 60) = 597.6 -> 598.
        ("CRUDE", ["product:CARRYFORWARD"], OrderSide.SELL, 100, "6000",
         Charges(brokerage=2000, stt=6000, exchange=1260, sebi=60, stamp=0, gst=598)),
    ],
)  # fmt: skip
def test_a_fill_is_charged_as_worked_out_by_hand(
    instruments: dict[str, NautilusInstrument],
    name: str,
    tags: list[str] | None,
    side: OrderSide,
    qty: int,
    price: str,
    expected: Charges,
) -> None:
    instrument = instruments[name]
    model = IndianChargesFeeModel(ChargeModel(DISCOUNT_PLAN))
    order = market_order(instrument, side, qty, tags)
    money = model.get_commission(order, Quantity.from_int(qty), Price.from_str(price), instrument)
    assert money.currency.code == "INR"
    assert money.as_decimal() == Decimal(expected.total) / 100
    assert model.breakdown[order.client_order_id.value] == expected


def test_the_zero_plan_charges_only_statutory_fees(instruments: dict[str, NautilusInstrument]) -> None:
    model = IndianChargesFeeModel(ChargeModel(ZERO_PLAN))
    order = market_order(instruments["SBIN"], OrderSide.BUY, 100, ["product:INTRADAY"])
    model.get_commission(order, Quantity.from_int(100), Price.from_str("800.00"), instruments["SBIN"])
    assert model.breakdown["O-1"] == Charges(brokerage=0, stt=0, exchange=238, sebi=8, stamp=240, gst=44)


def test_the_brokerage_cap_is_paid_once_per_order_across_partial_fills(
    instruments: dict[str, NautilusInstrument],
) -> None:
    """Two fills of 50 @ ₹800: brokerage ₹12 then ₹8 (cap ₹20 for the order), not ₹12 twice."""
    sbin = instruments["SBIN"]
    model = IndianChargesFeeModel(ChargeModel(DISCOUNT_PLAN))
    order = market_order(sbin, OrderSide.BUY, 100, ["product:INTRADAY"])
    first = model.get_commission(order, Quantity.from_int(50), Price.from_str("800.00"), sbin)
    after_first = model.breakdown["O-1"]
    second = model.get_commission(order, Quantity.from_int(50), Price.from_str("800.00"), sbin)
    assert after_first.brokerage == 1200
    assert model.breakdown["O-1"].brokerage == 2000
    # another order starts its own cap
    other = market_order(sbin, OrderSide.BUY, 50, ["product:INTRADAY"], number=2)
    model.get_commission(other, Quantity.from_int(50), Price.from_str("800.00"), sbin)
    assert model.breakdown["O-2"].brokerage == 1200
    assert first.as_decimal() + second.as_decimal() == Decimal(model.breakdown["O-1"].total) / 100


@pytest.mark.parametrize(
    ("name", "kind", "lot", "tick", "strike", "right"),
    [
        ("SBIN", InstrumentKind.EQUITY, 1, 5, 0, None),
        ("NIFTY_FUT", InstrumentKind.FUTURE, 65, 10, 0, None),
        ("NIFTY_CE", InstrumentKind.OPTION, 65, 5, 2_350_000, OptionRight.CALL),
        ("CRUDE", InstrumentKind.FUTURE, 100, 100, 0, None),
        ("INDEX", InstrumentKind.INDEX, 1, 5, 0, None),
    ],
)
def test_instrument_specs_from_nautilus_instruments(
    instruments: dict[str, NautilusInstrument],
    name: str,
    kind: InstrumentKind,
    lot: int,
    tick: int,
    strike: int,
    right: OptionRight | None,
) -> None:
    spec = instrument_spec(instruments[name])
    assert (spec.kind, spec.lot_size, spec.tick_size, spec.strike, spec.right) == (
        kind,
        lot,
        tick,
        strike,
        right,
    )
    assert spec.exchange == instruments[name].id.venue.value
    if kind in (InstrumentKind.FUTURE, InstrumentKind.OPTION):
        assert spec.expiry is not None and spec.expiry.isoformat().startswith("2026-")


def test_segments_without_charges_are_refused_by_name(instruments: dict[str, NautilusInstrument]) -> None:
    with pytest.raises(BacktestError, match=r"USDINR26JULFUT\.CDS: the charges model covers .*not CDS"):
        instrument_spec(instruments["USDINR"])


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, Product.INTRADAY),
        ([], Product.INTRADAY),
        (["desk:alpha", "product:DELIVERY"], Product.DELIVERY),
        (["product:CARRYFORWARD"], Product.CARRYFORWARD),
    ],
)
def test_the_product_comes_from_the_order_tag(tags: list[str] | None, expected: Product) -> None:
    assert order_product(tags) is expected


def test_an_unknown_product_tag_is_refused() -> None:
    with pytest.raises(BacktestError, match="product must be one of"):
        order_product(["product:BO"])
