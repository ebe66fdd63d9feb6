"""Catalog instruments as Nautilus instruments: ids, precision, increment, lot, multiplier, expiry, strike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nautilus_trader.model.enums import AssetClass, OptionKind
from nautilus_trader.model.instruments import Equity, FuturesContract, IndexInstrument, OptionContract

from catalog.catalog import InstrumentCatalog
from catalog.nautilus import price_precision, to_nautilus, to_price
from catalog.scrip import read_scrip_master

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "scrip" / "OpenAPIScripMaster.sample.json"


@pytest.fixture(scope="module")
def sample() -> InstrumentCatalog:
    frame, report = read_scrip_master(SAMPLE)
    return InstrumentCatalog(frame, report)


# key, class, id, precision, increment, lot size, multiplier
SHAPES = [
    ("NSE:3045", Equity, "SBIN-EQ.NSE", 2, "0.05", 1, 1),
    ("NSE:2885", Equity, "RELIANCE-EQ.NSE", 1, "0.1", 1, 1),
    ("NSE:14366", Equity, "IDEA-EQ.NSE", 2, "0.01", 1, 1),
    ("BSE:500112", Equity, "SBIN.BSE", 2, "0.05", 1, 1),
    ("NSE:99926000", IndexInstrument, "NIFTY 50.NSE", 2, "0.05", None, 1),
    ("BSE:99919000", IndexInstrument, "SENSEX.BSE", 2, "0.01", None, 1),
    ("NFO:61093", FuturesContract, "NIFTY28JUL26FUT.NFO", 1, "0.1", 65, 1),
    ("NFO:63915", OptionContract, "NIFTY28JUL2623500CE.NFO", 2, "0.05", 65, 1),
    ("NFO:70412", OptionContract, "IDEA28JUL267.5CE.NFO", 2, "0.05", 71475, 1),
    ("BFO:1134", OptionContract, "SENSEX30JUL2677500CE.BFO", 2, "0.05", 20, 1),
    ("MCX:472789", FuturesContract, "CRUDEOIL20JUL26FUT.MCX", 0, "1", 100, 1),
    ("MCX:472790", OptionContract, "CRUDEOIL26JUL5000CE.MCX", 1, "0.1", 100, 1),
    ("CDS:3045", FuturesContract, "USDINR26JULFUT.CDS", 4, "0.0025", 1, 1000),
    ("CDS:2885", OptionContract, "USDINR26JUL8425CE.CDS", 4, "0.0025", 1, 1000),
    ("NCDEX:58453", FuturesContract, "DHANIYA20AUG2026.NCDEX", 0, "2", 5, 1),
]


@pytest.mark.parametrize(("key", "cls", "nautilus_id", "precision", "increment", "lot", "multiplier"), SHAPES)
def test_shape_of_each_kind(
    sample: InstrumentCatalog,
    key: str,
    cls: type[Any],
    nautilus_id: str,
    precision: int,
    increment: str,
    lot: int | None,
    multiplier: int,
) -> None:
    instrument = sample.get(key)
    assert instrument is not None
    converted: Any = to_nautilus(instrument)
    assert converted.__class__ is cls
    assert str(converted.id) == nautilus_id == instrument.nautilus_id
    assert converted.quote_currency.code == "INR"
    assert converted.price_precision == precision
    assert converted.price_increment.as_decimal() == Decimal(increment)
    assert converted.price_increment.precision == precision
    if lot is not None:
        assert converted.lot_size is not None and int(converted.lot_size) == lot
    assert int(converted.multiplier) == multiplier
    assert converted.info["token"] == instrument.token


@pytest.mark.parametrize(
    ("key", "expiry_utc", "asset_class"),
    [
        ("NFO:61093", datetime(2026, 7, 28, 10, 0, tzinfo=UTC), AssetClass.INDEX),  # 15:30 IST
        ("NFO:57020", datetime(2026, 7, 28, 10, 0, tzinfo=UTC), AssetClass.EQUITY),
        ("MCX:472789", datetime(2026, 7, 20, 18, 0, tzinfo=UTC), AssetClass.COMMODITY),  # 23:30 IST
        ("CDS:3045", datetime(2026, 7, 29, 7, 0, tzinfo=UTC), AssetClass.FX),  # 12:30 IST
    ],
)
def test_futures_expire_at_the_segment_close(
    sample: InstrumentCatalog, key: str, expiry_utc: datetime, asset_class: AssetClass
) -> None:
    instrument = sample.get(key)
    assert instrument is not None
    converted = to_nautilus(instrument)
    assert isinstance(converted, FuturesContract)
    assert converted.expiration_ns == int(expiry_utc.timestamp()) * 1_000_000_000
    assert converted.asset_class == asset_class
    assert converted.underlying == instrument.name


@pytest.mark.parametrize(
    ("key", "strike", "kind"),
    [
        ("NFO:63915", "23500", OptionKind.CALL),
        ("NFO:63916", "23500", OptionKind.PUT),
        ("NFO:70412", "7.5", OptionKind.CALL),
        ("MCX:472790", "5000", OptionKind.CALL),
        ("CDS:2885", "84.25", OptionKind.CALL),
    ],
)
def test_option_strikes_are_in_rupees(
    sample: InstrumentCatalog, key: str, strike: str, kind: OptionKind
) -> None:
    instrument = sample.get(key)
    assert instrument is not None
    converted = to_nautilus(instrument)
    assert isinstance(converted, OptionContract)
    assert converted.strike_price.as_decimal() == Decimal(strike)
    assert converted.option_kind == kind


@pytest.mark.parametrize(
    ("tick", "scale", "precision"),
    [(5, 100, 2), (10, 100, 1), (100, 100, 0), (1, 100, 2), (25_000, 10**7, 4), (1, 10**7, 7), (250, 100, 1)],
)
def test_precision_is_the_decimals_of_the_tick(tick: int, scale: int, precision: int) -> None:
    assert price_precision(tick, scale) == precision


def test_feed_prices_convert_exactly(sample: InstrumentCatalog) -> None:
    sbin = sample.get("NSE:3045")
    usdinr = sample.get("CDS:3045")
    assert sbin is not None and usdinr is not None
    assert to_price(sbin, 82_045).as_decimal() == Decimal("820.45")
    assert to_price(usdinr, 842_525_000).as_decimal() == Decimal("84.2525")
    converted = to_nautilus(sbin)
    assert converted.make_price(Decimal("820.45")) == to_price(sbin, 82_045)
