from __future__ import annotations

from fractions import Fraction

import pytest

from actors.orders import OrderStatus, OrderUpdate
from serve.present import money, present


def test_money_fields_become_rupee_strings_and_others_stay() -> None:
    data = {
        "instrument": "NSE:3045",
        "ltp": 81_255,
        "volume": 1200,
        "bid": 81_250,
        "seq": 9,
        "is_exit": False,
    }
    assert present(data) == {
        "instrument": "NSE:3045",
        "ltp": "812.55",
        "volume": 1200,
        "bid": "812.50",
        "seq": 9,
        "is_exit": False,
    }


def test_structs_and_nesting() -> None:
    update = OrderUpdate(
        client_order_id="c1",
        venue_order_id="v1",
        book="manual",
        instrument="NSE:3045",
        status=OrderStatus.FILLED,
        filled_quantity=10,
        avg_price=81_260,
    )
    out = present({"orders": [update]})
    order = out["orders"][0]
    assert order["avg_price"] == "812.60"
    assert order["status"] == "FILLED"
    assert order["fill"] is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(5, 2), "0.02"),  # 2.5 paise rounds half to even
        (Fraction(7, 2), "0.04"),
        (Fraction(-5, 2), "-0.02"),
        (Fraction(1001, 10), "1.00"),
        (12345, "123.45"),
        (True, True),
        (None, None),
        ("already", "already"),
    ],
)
def test_money_rounding(value: object, text: object) -> None:
    assert money(value) == text


def test_scale_for_currency_derivatives() -> None:
    assert present({"ltp": 831_234_567}, scale=10**7) == {"ltp": "83.1234567"}


def test_portfolio_views_convert_fractions_and_breakdowns() -> None:
    position = {
        "instrument": "NSE:3045",
        "quantity": 3,
        "avg_price": Fraction(243_761, 3),  # 81253.67 paise
        "net_pnl": Fraction(-7, 2),
        "charge_breakdown": {"brokerage": 2000, "stt": 13, "total": 2013},
        "legs": [{"role": "TARGET", "trigger_price": 90_000, "price": 89_950}],
    }
    assert present(position) == {
        "instrument": "NSE:3045",
        "quantity": 3,
        "avg_price": "812.54",
        "net_pnl": "-0.04",
        "charge_breakdown": {"brokerage": "20.00", "stt": "0.13", "total": "20.13"},
        "legs": [{"role": "TARGET", "trigger_price": "900.00", "price": "899.50"}],
    }


def test_decimals_are_rupees_already_and_marks_are_paise() -> None:
    from decimal import Decimal

    state = {
        "pnl": Decimal("-1234.50"),
        "marks": {"NSE:3045": 81_255},
        "books": {"manual": {"pnl": Decimal("0")}},
    }
    assert present(state) == {
        "pnl": "-1234.50",
        "marks": {"NSE:3045": "812.55"},
        "books": {"manual": {"pnl": "0"}},
    }
