from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from serve.schemas import BracketRequest, GttCreateRequest, ModifyOrderRequest, PlaceOrderRequest

BASE = {"instrument": "NSE:3045", "side": "BUY", "quantity": 10}


@pytest.mark.parametrize(
    ("extra", "price", "trigger"),
    [
        ({"order_type": "MARKET"}, None, None),
        ({"order_type": "LIMIT", "price": "812.55"}, Decimal("812.55"), None),
        ({"order_type": "LIMIT", "price": 812.55}, Decimal("812.55"), None),
        ({"order_type": "SL", "price": "800", "trigger_price": "801.5"}, Decimal(800), Decimal("801.5")),
        ({"order_type": "SL-M", "trigger_price": 790}, None, Decimal(790)),
    ],
)
def test_valid_orders(extra: dict, price: Decimal | None, trigger: Decimal | None) -> None:
    order = PlaceOrderRequest.model_validate(BASE | extra)
    assert order.price == price
    assert order.trigger_price == trigger
    assert order.book == "manual"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"order_type": "LIMIT"}, "price: a LIMIT order needs a price"),
        ({"order_type": "MARKET", "price": "10"}, "price: a MARKET order takes no price"),
        ({"order_type": "SL", "price": "10"}, "trigger_price: a SL order needs a trigger price"),
        (
            {"order_type": "LIMIT", "price": "10", "trigger_price": "9"},
            "trigger_price: a LIMIT order takes no",
        ),
        ({"order_type": "LIMIT", "price": "10.123456789"}, "more than 7 decimal places"),
        ({"order_type": "LIMIT", "price": "-10"}, "must not be negative"),
        ({"order_type": "LIMIT", "price": "ten"}, "not a number"),
        ({"quantity": 0}, "greater than 0"),
        ({"instrument": "SBIN"}, "should match pattern"),
        ({"side": "HOLD"}, "'BUY' or 'SELL'"),
        ({"order_type": "STOP"}, "'MARKET', 'LIMIT', 'SL' or 'SL-M'"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
        ({"client_order_id": "has space"}, "should match pattern"),
    ],
)
def test_invalid_orders_name_the_reason(extra: dict, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        PlaceOrderRequest.model_validate(BASE | extra)


def test_modify_needs_something() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        ModifyOrderRequest.model_validate({})
    assert ModifyOrderRequest.model_validate({"price": "1.05"}).price == Decimal("1.05")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"side": "BUY", "price": "100", "stop_loss": "101", "target": "110"}, "stop_loss < price < target"),
        ({"side": "SELL", "price": "100", "stop_loss": "99", "target": "90"}, "target < price < stop_loss"),
        ({"side": "BUY", "entry_type": "MARKET", "stop_loss": "110", "target": "100"}, "stop_loss < target"),
        ({"side": "BUY", "entry_type": "LIMIT", "stop_loss": "90", "target": "110"}, "needs a price"),
    ],
)
def test_bracket_levels_must_straddle_the_entry(body: dict, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        BracketRequest.model_validate({"instrument": "NSE:3045", "quantity": 1} | body)


def test_gtt_with_an_oco_leg() -> None:
    gtt = GttCreateRequest.model_validate(
        {
            "instrument": "NSE:3045",
            "side": "SELL",
            "quantity": 5,
            "trigger_price": "900",
            "price": "899.5",
            "other_leg": {"trigger_price": "700", "price": "699.5"},
        }
    )
    assert gtt.other_leg is not None and gtt.other_leg.price == Decimal("699.5")
