"""Brackets: exits only after the entry fills, OCO exits, partial fills, trailing stops, modify, cancel."""

from __future__ import annotations

import pytest
from test_portfolio_support import SBIN, Desk

from actors.orders import OrderStatus, OrderType, Product, Side
from actors.portfolio.brackets import BracketStatus
from actors.portfolio.portfolio import PortfolioError
from actors.portfolio.views import BracketView

BUY, SELL = Side.BUY, Side.SELL


def place(
    desk: Desk,
    side: Side = BUY,
    *,
    quantity: int = 10,
    entry_price: int = 79_500,
    stop_loss: int = 78_000,
    target: int = 82_000,
    trailing_stop: int = 0,
    entry_type: OrderType = OrderType.LIMIT,
) -> BracketView:
    return desk.portfolio.bracket_place(
        book="manual",
        instrument=SBIN.key,
        side=side,
        quantity=quantity,
        product=Product.INTRADAY,
        stop_loss=stop_loss,
        target=target,
        trailing_stop=trailing_stop,
        entry_type=entry_type,
        entry_price=entry_price if entry_type is OrderType.LIMIT else 0,
        ts_ns=desk.tick(),
    )


def bracket(desk: Desk, view: BracketView) -> BracketView:
    return next(b for b in desk.portfolio.bracket_list() if b.bracket_id == view.bracket_id)


def position(desk: Desk) -> int:
    return sum(p.quantity for p in desk.portfolio.positions())


@pytest.fixture
def desk() -> Desk:
    desk = Desk()
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    return desk


def test_no_exits_until_the_entry_fills(desk: Desk) -> None:
    view = place(desk)
    assert (view.status, view.target_order_id, view.protected) == (BracketStatus.PENDING, None, 0)
    assert [o.client_order_id for o in desk.portfolio.orders(active_only=True)] == [view.entry_order_id]
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    live = bracket(desk, view)
    assert (live.status, live.entry_filled, live.protected) == (BracketStatus.ACTIVE, 10, 10)
    assert live.target_order_id is not None
    target = desk.portfolio.order(live.target_order_id)
    assert (target.status, target.filled_quantity) == (OrderStatus.OPEN, 0)
    request = desk.portfolio._state.orders[live.target_order_id].request
    assert (request.side, request.order_type, request.price, request.quantity) == (
        SELL,
        OrderType.LIMIT,
        82_000,
        10,
    )


def test_target_fill_closes_the_bracket_and_the_stop_never_fires(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    desk.quote(SBIN, ltp=82_000, bid=82_000, ask=82_005)
    done = bracket(desk, view)
    assert (done.status, done.reason, done.exited) == (BracketStatus.CLOSED, "target reached", 10)
    desk.quote(SBIN, ltp=77_000, bid=76_995, ask=77_005)
    assert bracket(desk, view).stop_order_id is None
    assert position(desk) == 0
    assert [t.price for t in desk.portfolio.trades()] == [79_500, 82_000]


def test_stop_cancels_the_target_then_exits_at_market(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    target_id = bracket(desk, view).target_order_id
    assert target_id is not None
    desk.quote(SBIN, ltp=78_000, bid=77_990, ask=78_010)
    done = bracket(desk, view)
    assert (done.status, done.reason) == (BracketStatus.CLOSED, "stop-loss hit")
    target = desk.portfolio.order(target_id)
    assert (target.status, target.reason) == (
        OrderStatus.CANCELLED,
        f"bracket {view.bracket_id}: stop-loss reached",
    )
    assert done.stop_order_id is not None
    assert desk.portfolio.order(done.stop_order_id).avg_price == 77_990
    assert position(desk) == 0


def test_both_exits_can_never_fill_on_one_quote(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    # A quote whose last price is through the stop while the bid is through the target.
    desk.quote(SBIN, ltp=77_500, bid=82_000, ask=82_010)
    done = bracket(desk, view)
    assert (done.status, done.exited, done.stop_order_id) == (BracketStatus.CLOSED, 10, None)
    assert position(desk) == 0


def test_a_partly_filled_entry_protects_what_filled() -> None:
    desk = Desk(partial_fills=True)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005, bid_qty=100, ask_qty=100)
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, bid_qty=100, ask_qty=4)
    live = bracket(desk, view)
    assert (live.entry_filled, live.protected) == (4, 4)
    assert live.target_order_id is not None
    assert desk.portfolio._state.orders[live.target_order_id].request.quantity == 4
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, bid_qty=100, ask_qty=6)
    grown = bracket(desk, view)
    assert (grown.entry_filled, grown.protected) == (10, 10)
    assert grown.target_order_id == live.target_order_id  # the same order grew; no second target
    assert desk.portfolio._state.orders[live.target_order_id].request.quantity == 10


def test_a_partial_target_fill_shrinks_what_the_stop_covers() -> None:
    desk = Desk(partial_fills=True)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005, bid_qty=100, ask_qty=100)
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, bid_qty=100, ask_qty=100)
    desk.quote(SBIN, ltp=82_000, bid=82_000, ask=82_005, bid_qty=3, ask_qty=100)
    live = bracket(desk, view)
    assert (live.exited, live.protected) == (3, 7)
    desk.quote(SBIN, ltp=78_000)  # LTP only: depth unknown, the stop's market exit fills in full
    done = bracket(desk, view)
    assert (done.status, done.exited, done.protected) == (BracketStatus.CLOSED, 10, 0)
    assert done.stop_order_id is not None
    assert desk.portfolio.order(done.stop_order_id).filled_quantity == 7
    assert position(desk) == 0


@pytest.mark.parametrize(
    ("side", "path", "stops"),
    [
        # Long from ₹800, stop ₹790, trail ₹5: each ₹5 gained past the anchor lifts the stop ₹5.
        (BUY, [80_400, 80_500, 81_700, 81_000], [79_000, 79_500, 80_500, 80_500]),
        # Short from ₹800, stop ₹810: the stop comes down as the price falls.
        (SELL, [79_600, 79_500, 78_300, 79_000], [81_000, 80_500, 79_500, 79_500]),
    ],
)
def test_trailing_stop_moves_in_whole_steps_and_never_back(
    side: Side, path: list[int], stops: list[int]
) -> None:
    desk = Desk()
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    stop, target = (79_000, 90_000) if side is BUY else (81_000, 70_000)
    view = place(desk, side, entry_type=OrderType.MARKET, stop_loss=stop, target=target, trailing_stop=500)
    assert bracket(desk, view).entry_filled == 10
    seen = []
    for ltp in path:
        desk.quote(SBIN, ltp=ltp, bid=ltp, ask=ltp)
        seen.append(bracket(desk, view).stop_loss)
    assert seen == stops
    exit_at = stops[-1]
    desk.quote(SBIN, ltp=exit_at, bid=exit_at, ask=exit_at)
    done = bracket(desk, view)
    assert (done.status, done.reason) == (BracketStatus.CLOSED, "stop-loss hit")
    assert desk.portfolio.positions()[0].realized_pnl == 5_000  # ₹5 × 10 locked in by the trail


def test_modify_moves_the_stop_and_reprices_the_target(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    moved = desk.portfolio.bracket_modify(view.bracket_id, desk.tick(), stop_loss=79_000, target=81_000)
    assert (moved.stop_loss, moved.target) == (79_000, 81_000)
    assert moved.target_order_id is not None
    assert desk.portfolio._state.orders[moved.target_order_id].request.price == 81_000
    with pytest.raises(PortfolioError, match=r"a BUY bracket needs stop-loss < ₹795\.00 < target"):
        desk.portfolio.bracket_modify(view.bracket_id, desk.tick(), stop_loss=79_600)
    desk.quote(SBIN, ltp=79_000, bid=78_995, ask=79_005)
    assert bracket(desk, view).reason == "stop-loss hit"


def test_cancel_before_the_entry_fills_cancels_everything(desk: Desk) -> None:
    view = place(desk)
    done = desk.portfolio.bracket_cancel(view.bracket_id, desk.tick())
    assert done.status is BracketStatus.CANCELLED
    assert done.reason == f"entry cancelled: bracket {view.bracket_id} cancelled by the user"
    assert desk.portfolio.orders(active_only=True) == []
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    assert desk.portfolio.trades() == []
    with pytest.raises(PortfolioError, match="it is cancelled"):
        desk.portfolio.bracket_cancel(view.bracket_id, desk.tick())


def test_cancel_after_a_partial_fill_keeps_the_filled_part_protected() -> None:
    desk = Desk(partial_fills=True)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005, bid_qty=100, ask_qty=100)
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, bid_qty=100, ask_qty=6)
    kept = desk.portfolio.bracket_cancel(view.bracket_id, desk.tick())
    assert (kept.status, kept.entry_filled, kept.protected) == (BracketStatus.ACTIVE, 6, 6)
    assert desk.portfolio.order(kept.entry_order_id).status is OrderStatus.CANCELLED
    with pytest.raises(PortfolioError, match="its entry has filled; square off the position to exit it"):
        desk.portfolio.bracket_cancel(view.bracket_id, desk.tick())
    desk.quote(SBIN, ltp=82_000, bid=82_000, ask=82_005, bid_qty=100, ask_qty=100)
    assert bracket(desk, view).status is BracketStatus.CLOSED
    assert position(desk) == 0


def test_square_off_cancels_the_remaining_leg_and_exits(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    target_id = bracket(desk, view).target_order_id
    assert target_id is not None
    done = desk.portfolio.bracket_square_off(view.bracket_id, desk.tick())
    assert (done.status, done.reason, done.exited) == (BracketStatus.CLOSED, "squared off", 10)
    assert desk.portfolio.order(target_id).status is OrderStatus.CANCELLED
    assert position(desk) == 0
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005)
    assert len(desk.portfolio.trades()) == 2


def test_squaring_off_the_position_closes_its_bracket(desk: Desk) -> None:
    view = place(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    desk.portfolio.square_off("manual", desk.tick(), instrument=SBIN.key)
    assert bracket(desk, view).status is BracketStatus.CLOSED
    assert desk.portfolio.orders(active_only=True) == []
    assert position(desk) == 0


def test_a_rejected_entry_cancels_the_bracket(desk: Desk) -> None:
    view = place(desk, quantity=10_000)  # ₹79.5 lakh at 20%: more margin than the cash
    assert view.status is BracketStatus.CANCELLED
    assert view.reason.startswith("entry rejected: insufficient funds: BUY 10000 SBIN-EQ INTRADAY")


@pytest.mark.parametrize(
    ("side", "stop", "target", "message"),
    [
        (BUY, 80_000, 82_000,
         "a BUY bracket needs stop-loss < ₹795.00 < target; got stop-loss ₹800.00 and target ₹820.00"),
        (SELL, 78_000, 82_000,
         "a SELL bracket needs target < ₹795.00 < stop-loss; got target ₹820.00 and stop-loss ₹780.00"),
        (BUY, 78_001, 82_000, "stop-loss ₹780.01 is not a multiple of the tick size ₹0.05 for SBIN-EQ"),
    ],
)  # fmt: skip
def test_levels_on_the_wrong_side_are_refused(
    desk: Desk, side: Side, stop: int, target: int, message: str
) -> None:
    with pytest.raises(PortfolioError) as err:
        place(desk, side, stop_loss=stop, target=target)
    assert str(err.value) == f"bracket refused: {message}"
    assert desk.portfolio.bracket_list() == []


def test_a_live_bracket_survives_a_restart(desk: Desk) -> None:
    view = place(desk, trailing_stop=500)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)  # trail: stop ₹780 -> ₹785
    restored = desk.restarted()
    assert restored.snapshot() == desk.portfolio.snapshot()
    assert restored.bracket_list() == desk.portfolio.bracket_list()
    desk.portfolio = restored
    desk.quote(SBIN, ltp=82_000, bid=82_000, ask=82_005)  # the target rests in the rebuilt engine
    done = bracket(desk, view)
    assert (done.status, done.reason) == (BracketStatus.CLOSED, "target reached")
    assert position(desk) == 0


def test_a_refused_target_is_not_retried_and_the_stop_still_protects(desk: Desk) -> None:
    view = place(desk, target=90_000)
    # The entry fills on a quote whose upper circuit (₹880) refuses a target at ₹900.
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, upper_circuit=88_000, lower_circuit=72_000)
    live = bracket(desk, view)
    assert live.target_order_id is not None
    target = desk.portfolio.order(live.target_order_id)
    assert (target.status, target.reason) == (
        OrderStatus.REJECTED,
        "price ₹900.00 is above the upper circuit ₹880.00 for SBIN-EQ",
    )
    assert len([o for o in desk.portfolio.orders() if o.status is OrderStatus.REJECTED]) == 1
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005, upper_circuit=88_000, lower_circuit=72_000)
    assert bracket(desk, view).reason == "stop-loss hit"
    assert position(desk) == 0


def test_a_quantity_that_cannot_trade_is_refused_up_front(desk: Desk) -> None:
    with pytest.raises(PortfolioError, match="bracket refused: quantity must be positive, got 0"):
        place(desk, quantity=0)
    assert desk.portfolio.bracket_list() == []


def test_brackets_keep_to_the_order_size_limits() -> None:
    desk = Desk(max_order_qty=100)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    with pytest.raises(
        PortfolioError, match="bracket refused: quantity 200 exceeds the maximum order quantity 100"
    ):
        place(desk, quantity=200)
