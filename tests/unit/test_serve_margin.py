from __future__ import annotations

from decimal import Decimal

import pytest

from actors.orders import Product, Side
from cluster.config import load_config
from serve.errors import InvalidRequest
from serve.service import CatalogLookup, InstrumentView, margin_estimate, to_minor

CONFIG = load_config()


@pytest.fixture(scope="module")
def catalog() -> CatalogLookup:
    return CatalogLookup.load(CONFIG)


@pytest.fixture(scope="module")
def nifty_option(catalog: CatalogLookup) -> InstrumentView:
    chain = catalog.option_chain("NIFTY", None)
    return catalog.get(chain["rows"][len(chain["rows"]) // 2]["call"]["key"])


@pytest.mark.parametrize(
    ("product", "side", "expected"),
    [
        (Product.INTRADAY, Side.BUY, 10 * 81_255 // 5),  # 20% of the value
        (Product.DELIVERY, Side.BUY, 10 * 81_255),  # paid in full
        (Product.MARGIN, Side.SELL, 10 * 81_255 // 5),
    ],
)
def test_equity_margin_follows_the_paper_policy(
    catalog: CatalogLookup, product: Product, side: Side, expected: int
) -> None:
    sbin = catalog.get("NSE:3045")
    assert margin_estimate(CONFIG, sbin, side, 10, product, 81_255) == expected


def test_options_long_pay_premium_short_pay_on_the_strike(nifty_option: InstrumentView) -> None:
    lot = nifty_option.lot_size
    assert margin_estimate(CONFIG, nifty_option, Side.BUY, lot, Product.CARRYFORWARD, 12_000) == lot * 12_000
    assert nifty_option.strike is not None
    short = margin_estimate(CONFIG, nifty_option, Side.SELL, lot, Product.CARRYFORWARD, 12_000)
    assert short == -(-lot * nifty_option.strike * 12 // 100)  # 12% of strike × quantity, rounded up


@pytest.mark.parametrize(
    ("key", "product", "reason"),
    [
        ("NSE:99926000", Product.INTRADAY, "is an index and cannot be traded"),
        ("NSE:3045", Product.CARRYFORWARD, "use DELIVERY, INTRADAY or MARGIN"),
    ],
)
def test_products_the_instrument_cannot_take_are_refused(
    catalog: CatalogLookup, key: str, product: Product, reason: str
) -> None:
    with pytest.raises(InvalidRequest, match=reason) as err:
        margin_estimate(CONFIG, catalog.get(key), Side.BUY, 1, product, 100)
    assert err.value.field == "product"


@pytest.mark.parametrize(
    ("rupees", "paise", "reason"),
    [
        ("812.55", 81_255, None),
        ("812.5", 81_250, None),
        ("812.52", None, "not a multiple of the tick size 0.05"),
        ("812.555", None, "more than 2 decimal places"),
    ],
)
def test_prices_are_checked_against_the_instrument(
    catalog: CatalogLookup, rupees: str, paise: int | None, reason: str | None
) -> None:
    sbin = catalog.get("NSE:3045")
    if reason is None:
        assert to_minor(Decimal(rupees), sbin, "price") == paise
    else:
        with pytest.raises(InvalidRequest, match=reason):
            to_minor(Decimal(rupees), sbin, "price")
