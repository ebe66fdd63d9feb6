"""GTT rules: single triggers, OCO pairs on a holding, validity, modify, cancel, restart."""

from __future__ import annotations

import pytest
from test_portfolio_support import SBIN, Desk

from actors.orders import OrderStatus, OrderType, Product, Side
from actors.portfolio.gtt import MAX_VALIDITY_NS, NS_PER_DAY, GttStatus, LegRole
from actors.portfolio.portfolio import PortfolioError, UnknownId
from actors.portfolio.records import GttTriggered
from actors.portfolio.views import GttView

BUY, SELL = Side.BUY, Side.SELL
DELIVERY = Product.DELIVERY


@pytest.fixture
def desk() -> Desk:
    desk = Desk()
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    return desk


def holding(desk: Desk, quantity: int = 10) -> None:
    desk.order(SBIN, BUY, quantity, product=DELIVERY)


def gtt(desk: Desk, side: Side, legs: list[tuple[int, int]], quantity: int = 10, **kwargs: int) -> GttView:
    return desk.portfolio.gtt_create(
        book="manual", instrument=SBIN.key, side=side, quantity=quantity, product=DELIVERY, legs=legs,
        ts_ns=desk.tick(), **kwargs,
    )  # fmt: skip


def test_single_rule_fires_on_a_rise_and_places_a_limit_at_its_price(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    assert (rule.kind, rule.legs[0].role, rule.status) == ("single", "TRIGGER", GttStatus.ACTIVE)
    desk.quote(SBIN, ltp=81_995, bid=81_990, ask=82_000)
    assert desk.portfolio.gtt_list()[0].status is GttStatus.ACTIVE
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    fired = desk.portfolio.gtt_list()[0]
    assert (fired.status, fired.triggered_leg) == (GttStatus.TRIGGERED, "TRIGGER")
    assert fired.order_id is not None
    order = desk.portfolio.order(fired.order_id)
    assert (order.status, order.avg_price, order.filled_quantity) == (OrderStatus.FILLED, 82_005, 10)


def test_a_gap_past_the_limit_leaves_the_order_resting(desk: Desk) -> None:
    holding(desk)
    rule = gtt(desk, SELL, [(78_000, 77_900)])
    desk.quote(SBIN, ltp=77_000, bid=76_995, ask=77_005)  # gapped straight through
    fired = desk.portfolio.gtt_list()[0]
    assert fired.gtt_id == rule.gtt_id
    assert fired.order_id is not None
    order = desk.portfolio.order(fired.order_id)
    assert order.status is OrderStatus.OPEN  # a LIMIT sell at ₹779 waits above the bid
    desk.quote(SBIN, ltp=77_900, bid=77_905, ask=77_910)
    assert desk.portfolio.order(fired.order_id).avg_price == 77_905


def test_oco_on_a_long_holding_fires_one_leg_and_retires_the_other(desk: Desk) -> None:
    holding(desk)
    rule = gtt(desk, SELL, [(85_000, 84_900), (78_000, 77_900)])
    assert rule.kind == "oco"
    assert [(leg.role, leg.trigger_price) for leg in rule.legs] == [("STOP_LOSS", 78_000), ("TARGET", 85_000)]
    desk.quote(SBIN, ltp=85_000, bid=84_995, ask=85_005)
    fired = desk.portfolio.gtt_list()[0]
    assert (fired.status, fired.triggered_leg) == (GttStatus.TRIGGERED, "TARGET")
    assert fired.order_id is not None
    assert desk.portfolio.order(fired.order_id).avg_price == 84_995
    desk.quote(SBIN, ltp=77_000, bid=76_995, ask=77_005)  # the stop's trigger: nothing more happens
    triggers = [r for r in desk.journal if isinstance(r, GttTriggered)]
    assert [(r.gtt_id, r.leg) for r in triggers] == [(rule.gtt_id, LegRole.TARGET)]
    assert desk.portfolio.positions()[0].quantity == 0
    assert len(desk.portfolio.trades()) == 2


def test_oco_covering_a_short_has_its_stop_above(desk: Desk) -> None:
    desk.order(SBIN, SELL, 10, product=Product.INTRADAY)
    rule = desk.portfolio.gtt_create(
        book="manual", instrument=SBIN.key, side=BUY, quantity=10, product=Product.INTRADAY,
        legs=[(78_000, 78_100), (82_000, 82_100)], ts_ns=desk.tick(),
    )  # fmt: skip
    assert [(leg.role, leg.trigger_price) for leg in rule.legs] == [("STOP_LOSS", 82_000), ("TARGET", 78_000)]
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    assert desk.portfolio.gtt_list()[0].triggered_leg == "STOP_LOSS"
    assert desk.portfolio.positions()[0].quantity == 0


@pytest.mark.parametrize(
    ("side", "legs", "quantity", "message"),
    [
        (SELL, [(85_000, 84_900), (78_000, 77_900)], 20,
         "GTT refused: an OCO SELL of 20 SBIN-EQ needs a long DELIVERY position of at least 20 in book "
         "manual; it holds 10"),
        (BUY, [(85_000, 84_900), (78_000, 77_900)], 10,
         "GTT refused: an OCO BUY of 10 SBIN-EQ needs a short DELIVERY position of at least 10 in book "
         "manual; it holds 10"),
        (SELL, [(81_000, 80_900), (82_000, 81_900)], 10,
         "GTT refused: an OCO's triggers must straddle the last price ₹800.00 of SBIN-EQ; "
         "got ₹810.00 and ₹820.00"),
        (BUY, [(80_000, 80_100)], 10,
         "GTT refused: trigger price ₹800.00 equals the last price of SBIN-EQ: it would fire at once; "
         "place an order instead"),
        (BUY, [(82_001, 82_100)], 10,
         "GTT refused: trigger price ₹820.01 is not a multiple of the tick size ₹0.05 for SBIN-EQ"),
        (BUY, [(82_000, 0)], 10, "GTT refused: price must be above zero, got ₹0.00"),
        (BUY, [(82_000, 82_100)], 0, "GTT refused: quantity must be positive, got 0"),
        (BUY, [], 10, "GTT refused: a GTT has one leg (single) or two (OCO), got 0"),
    ],
)  # fmt: skip
def test_rules_that_cannot_be_made(
    desk: Desk, side: Side, legs: list[tuple[int, int]], quantity: int, message: str
) -> None:
    holding(desk)
    with pytest.raises(PortfolioError) as err:
        gtt(desk, side, legs, quantity)
    assert str(err.value) == message
    assert desk.portfolio.gtt_list() == []


def test_rules_need_a_price_to_know_their_direction() -> None:
    desk = Desk()
    with pytest.raises(PortfolioError, match="no price yet for SBIN-EQ; wait for a quote"):
        gtt(desk, BUY, [(82_000, 82_100)])


def test_valid_for_a_year_at_most_and_expires(desk: Desk) -> None:
    with pytest.raises(PortfolioError, match=r"valid for at most one year \(365 days\)"):
        gtt(desk, BUY, [(82_000, 82_100)], expires_ts_ns=desk.now + MAX_VALIDITY_NS + 10**9 + 1)
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    assert rule.expires_ts_ns - rule.created_ts_ns == 365 * NS_PER_DAY
    short = gtt(desk, BUY, [(83_000, 83_100)], expires_ts_ns=desk.now + 2 * NS_PER_DAY)
    desk.now += 3 * NS_PER_DAY
    desk.quote(SBIN, ltp=80_100)
    states = {g.gtt_id: g.status for g in desk.portfolio.gtt_list()}
    assert states == {rule.gtt_id: GttStatus.ACTIVE, short.gtt_id: GttStatus.EXPIRED}


def test_modify_moves_a_leg_and_rechecks_it_against_the_price(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    desk.quote(SBIN, ltp=83_000, bid=82_995, ask=83_005)  # fires
    with pytest.raises(PortfolioError, match=f"cannot modify {rule.gtt_id}: it is triggered"):
        desk.portfolio.gtt_modify(rule.gtt_id, desk.tick(), legs=[(84_000, 84_100)])
    second = gtt(desk, BUY, [(85_000, 85_100)])
    moved = desk.portfolio.gtt_modify(second.gtt_id, desk.tick(), legs=[(82_000, 81_900)], quantity=5)
    # The price is ₹830 now: a trigger at ₹820 is below it, so it fires on a fall.
    assert (moved.legs[0].trigger_price, moved.quantity) == (82_000, 5)
    desk.quote(SBIN, ltp=82_000, bid=81_895, ask=81_900)
    fired = desk.portfolio.gtt_list()[1]
    assert fired.status is GttStatus.TRIGGERED
    assert fired.order_id is not None
    assert desk.portfolio.order(fired.order_id).avg_price == 81_900


def test_cancel(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    assert desk.portfolio.gtt_cancel(rule.gtt_id, desk.tick()).status is GttStatus.CANCELLED
    desk.quote(SBIN, ltp=83_000, bid=82_995, ask=83_005)
    assert desk.portfolio.trades() == []
    with pytest.raises(PortfolioError, match="it is cancelled"):
        desk.portfolio.gtt_cancel(rule.gtt_id, desk.tick())
    with pytest.raises(UnknownId, match="no GTT rule with id 'GTT-99'"):
        desk.portfolio.gtt_cancel("GTT-99", desk.tick())


def test_a_triggered_order_can_still_be_refused(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)], quantity=2000)  # ₹16.4 lakh: more than the cash
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    fired = desk.portfolio.gtt_list()[0]
    assert (fired.gtt_id, fired.status) == (rule.gtt_id, GttStatus.TRIGGERED)
    assert fired.order_id is not None
    order = desk.portfolio.order(fired.order_id)
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("insufficient funds: BUY 2000 SBIN-EQ DELIVERY needs ₹1,642,000.00 margin")


def test_rules_survive_a_restart(desk: Desk) -> None:
    holding(desk)
    rule = gtt(desk, SELL, [(85_000, 84_900), (78_000, 77_900)])
    restored = desk.restarted()
    assert restored.gtt_list() == desk.portfolio.gtt_list()
    desk.portfolio = restored
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005)
    fired = restored.gtt_list()[0]
    assert (fired.gtt_id, fired.triggered_leg) == (rule.gtt_id, "STOP_LOSS")
    assert fired.order_id is not None
    assert restored.order(fired.order_id).avg_price == 77_995
    assert restored.positions()[0].quantity == 0


def test_gtt_orders_are_limit_orders_tagged_with_the_rule(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    desk.quote(SBIN, ltp=82_000, bid=82_100, ask=82_200)
    order_id = desk.portfolio.gtt_list()[0].order_id
    assert order_id is not None
    request = desk.portfolio._state.orders[order_id].request
    assert (request.order_type, request.price, request.tag) == (OrderType.LIMIT, 82_100, rule.gtt_id)


def test_rule_orders_keep_to_the_order_size_limits() -> None:
    desk = Desk(max_order_qty=1000, max_order_value=50_000_000)  # ₹5 lakh
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    with pytest.raises(
        PortfolioError, match="GTT refused: quantity 1500 exceeds the maximum order quantity 1000"
    ):
        gtt(desk, BUY, [(82_000, 82_100)], quantity=1500)
    with pytest.raises(
        PortfolioError, match=r"GTT refused: order value ₹820,500.00 exceeds the maximum ₹500,000.00"
    ):
        gtt(desk, BUY, [(82_000, 82_050)], quantity=1000)
    assert gtt(desk, BUY, [(82_000, 82_050)], quantity=600).status is GttStatus.ACTIVE
