"""Entry halts: the execution actor's kill switches applied to the orders the paper venue places itself."""

from __future__ import annotations

import pytest
from test_portfolio_support import SBIN, Desk, at

from actors.orders import OrderStatus, OrderType, Product, Side
from actors.portfolio.brackets import BracketStatus
from actors.portfolio.gtt import GttStatus
from actors.portfolio.records import EntryHaltSet
from actors.portfolio.views import BracketView, GttView

BUY, SELL = Side.BUY, Side.SELL
DELIVERY, INTRADAY = Product.DELIVERY, Product.INTRADAY
LOSS = "daily loss ₹5,000.00 reached the limit ₹5,000.00"
MANUAL_HALTED = (
    f"the kill switch for book manual is engaged ({LOSS}); only orders that reduce a position are placed"
)


@pytest.fixture
def desk() -> Desk:
    desk = Desk()
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    return desk


def gtt(
    desk: Desk, side: Side, legs: list[tuple[int, int]], quantity: int = 10, book: str = "manual"
) -> GttView:
    return desk.portfolio.gtt_create(
        book=book, instrument=SBIN.key, side=side, quantity=quantity, product=DELIVERY, legs=legs,
        ts_ns=desk.tick(),
    )  # fmt: skip


def bracket(desk: Desk) -> BracketView:
    return desk.portfolio.bracket_place(
        book="manual", instrument=SBIN.key, side=BUY, quantity=10, product=INTRADAY, stop_loss=78_000,
        target=82_000, entry_type=OrderType.LIMIT, entry_price=79_500, ts_ns=desk.tick(),
    )  # fmt: skip


def halt(desk: Desk, halts: dict[str | None, str]) -> None:
    desk.portfolio.set_entry_halts(halts, desk.tick())


def fired_order_status(desk: Desk, rule: GttView) -> tuple[GttStatus, OrderStatus, str]:
    state = next(g for g in desk.portfolio.gtt_list() if g.gtt_id == rule.gtt_id)
    assert state.order_id is not None
    order = desk.portfolio.order(state.order_id)
    return state.status, order.status, order.reason


def position(desk: Desk, product: Product = DELIVERY) -> int:
    return sum(p.quantity for p in desk.portfolio.positions() if p.product is product)


@pytest.mark.parametrize(
    ("halts", "reason"),
    [
        ({"manual": LOSS}, MANUAL_HALTED),
        (
            {None: "engaged by an operator"},
            "the global kill switch is engaged (engaged by an operator); "
            "only orders that reduce a position are placed",
        ),
    ],
)
def test_a_gtt_that_fires_in_a_halted_book_is_rejected_with_the_reason(
    desk: Desk, halts: dict[str | None, str], reason: str
) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    halt(desk, halts)
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    assert fired_order_status(desk, rule) == (GttStatus.TRIGGERED, OrderStatus.REJECTED, reason)
    assert desk.portfolio.positions() == [] and desk.portfolio.trades() == []
    desk.quote(SBIN, ltp=82_500, bid=82_495, ask=82_505)  # the rule is done: it never fires again
    assert len(desk.portfolio.orders()) == 1


def test_another_books_halt_does_not_stop_a_rule(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    halt(desk, {"ema-equities": LOSS})
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    assert fired_order_status(desk, rule) == (GttStatus.TRIGGERED, OrderStatus.FILLED, "")
    assert position(desk) == 10


@pytest.mark.parametrize(
    ("held", "sold", "status", "left"),
    [
        (10, 10, OrderStatus.FILLED, 0),  # closes the holding
        (10, 4, OrderStatus.FILLED, 6),  # shrinks it
        (10, 15, OrderStatus.REJECTED, 10),  # would turn it into a short of 5
    ],
)
def test_a_gtt_leg_that_only_reduces_a_position_still_fills(
    desk: Desk, held: int, sold: int, status: OrderStatus, left: int
) -> None:
    desk.order(SBIN, BUY, held, product=DELIVERY)
    rule = gtt(desk, SELL, [(78_000, 77_900)], quantity=sold)
    halt(desk, {"manual": LOSS})
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005)
    assert fired_order_status(desk, rule)[:2] == (GttStatus.TRIGGERED, status)
    assert position(desk) == left


def test_an_oco_on_a_holding_still_protects_it(desk: Desk) -> None:
    desk.order(SBIN, BUY, 10, product=DELIVERY)
    rule = gtt(desk, SELL, [(85_000, 84_900), (78_000, 77_900)])
    halt(desk, {None: "engaged by an operator"})
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005)
    assert fired_order_status(desk, rule) == (GttStatus.TRIGGERED, OrderStatus.FILLED, "")
    assert position(desk) == 0


def test_a_gtt_order_resting_when_the_halt_engages_is_cancelled_unless_it_reduces(desk: Desk) -> None:
    desk.order(SBIN, BUY, 10, product=DELIVERY)
    opening = gtt(desk, BUY, [(82_000, 81_000)])  # its LIMIT at ₹810 rests below the market
    reducing = gtt(desk, SELL, [(85_000, 86_000)])  # its LIMIT at ₹860 rests above the market
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    desk.quote(SBIN, ltp=85_000, bid=84_995, ask=85_005)
    assert fired_order_status(desk, opening)[1] is OrderStatus.OPEN
    assert fired_order_status(desk, reducing)[1] is OrderStatus.OPEN
    halt(desk, {"manual": LOSS})
    assert fired_order_status(desk, opening) == (GttStatus.TRIGGERED, OrderStatus.CANCELLED, MANUAL_HALTED)
    assert fired_order_status(desk, reducing) == (GttStatus.TRIGGERED, OrderStatus.OPEN, "")


def test_a_bracket_placed_while_halted_never_places_its_entry(desk: Desk) -> None:
    halt(desk, {"manual": LOSS})
    view = bracket(desk)
    assert (view.status, view.reason) == (BracketStatus.CANCELLED, f"entry rejected: {MANUAL_HALTED}")
    assert desk.portfolio.orders(active_only=True) == []
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    assert desk.portfolio.trades() == []


def test_a_working_bracket_entry_is_cancelled_when_the_halt_engages(desk: Desk) -> None:
    view = bracket(desk)
    assert view.status is BracketStatus.PENDING
    halt(desk, {"manual": LOSS})
    entry = desk.portfolio.order(view.entry_order_id)
    assert (entry.status, entry.reason) == (OrderStatus.CANCELLED, MANUAL_HALTED)
    closed = desk.portfolio.bracket_list()[0]
    assert (closed.status, closed.reason) == (BracketStatus.CANCELLED, f"entry cancelled: {MANUAL_HALTED}")
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)
    assert desk.portfolio.trades() == []


def test_a_partly_filled_entry_keeps_protecting_what_filled_when_the_rest_is_cancelled() -> None:
    desk = Desk(partial_fills=True)
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005, bid_qty=100, ask_qty=100)
    view = bracket(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500, bid_qty=100, ask_qty=4)
    halt(desk, {"manual": LOSS})
    entry = desk.portfolio.order(view.entry_order_id)
    assert (entry.status, entry.filled_quantity, entry.reason) == (OrderStatus.CANCELLED, 4, MANUAL_HALTED)
    live = desk.portfolio.bracket_list()[0]
    assert (live.status, live.protected) == (BracketStatus.ACTIVE, 4)
    desk.quote(SBIN, ltp=78_000, bid=77_995, ask=78_005, bid_qty=100, ask_qty=100)
    done = desk.portfolio.bracket_list()[0]
    assert (done.status, done.reason, done.exited) == (BracketStatus.CLOSED, "stop-loss hit", 4)
    assert position(desk, INTRADAY) == 0


@pytest.mark.parametrize(("ltp", "reason"), [(78_000, "stop-loss hit"), (82_000, "target reached")])
def test_a_filled_brackets_exits_still_go(desk: Desk, ltp: int, reason: str) -> None:
    view = bracket(desk)
    desk.quote(SBIN, ltp=79_500, bid=79_495, ask=79_500)  # the entry fills
    assert position(desk, INTRADAY) == 10
    halt(desk, {"manual": LOSS})
    assert desk.portfolio.bracket_list()[0].status is BracketStatus.ACTIVE  # the exits stay
    desk.quote(SBIN, ltp=ltp, bid=ltp, ask=ltp + 5)
    done = desk.portfolio.bracket_list()[0]
    assert (done.bracket_id, done.status, done.reason) == (view.bracket_id, BracketStatus.CLOSED, reason)
    assert position(desk, INTRADAY) == 0


def test_square_off_flatten_and_the_intraday_square_off_still_go(desk: Desk) -> None:
    desk.order(SBIN, BUY, 10, product=INTRADAY)
    desk.order(SBIN, BUY, 10, product=DELIVERY, book="ema-equities")
    desk.order(SBIN, BUY, 5, product=INTRADAY, book="ema-equities")
    halt(desk, {None: "engaged by an operator"})
    exits = desk.portfolio.square_off("manual", desk.tick())
    assert [e.status for e in exits] == [OrderStatus.FILLED]
    exits = desk.portfolio.flatten("ema-equities", desk.tick())
    assert sorted(e.status for e in exits) == [OrderStatus.FILLED, OrderStatus.FILLED]
    assert all(p.quantity == 0 for p in desk.portfolio.positions())
    desk.order(SBIN, BUY, 10, product=INTRADAY)  # a client order: the execution actor vets those
    desk.portfolio.advance_clock(at(15, 20))
    assert position(desk, INTRADAY) == 0


def test_the_halt_survives_a_restart(desk: Desk) -> None:
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    halt(desk, {"manual": LOSS, None: "engaged by an operator"})
    restored = desk.restarted()
    assert restored.entry_halts() == {"manual": LOSS, None: "engaged by an operator"}
    assert restored.snapshot() == desk.portfolio.snapshot()
    desk.portfolio = restored
    halt(desk, {"manual": LOSS})  # the global switch released while the venue was restarting
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    assert fired_order_status(desk, rule) == (GttStatus.TRIGGERED, OrderStatus.REJECTED, MANUAL_HALTED)


def test_releasing_the_switch_lifts_the_halt(desk: Desk) -> None:
    halt(desk, {"manual": LOSS})
    rule = gtt(desk, BUY, [(82_000, 82_100)])
    halt(desk, {})
    assert desk.portfolio.entry_halts() == {}
    desk.quote(SBIN, ltp=82_000, bid=81_995, ask=82_005)
    assert fired_order_status(desk, rule) == (GttStatus.TRIGGERED, OrderStatus.FILLED, "")
    view = bracket(desk)
    assert view.status is BracketStatus.PENDING
    assert desk.portfolio.order(view.entry_order_id).status is OrderStatus.OPEN


def test_only_changes_are_journaled(desk: Desk) -> None:
    halt(desk, {"manual": LOSS})
    halt(desk, {"manual": LOSS})  # the execution actor says it again at its start
    halt(desk, {"manual": LOSS, None: "engaged by an operator"})
    halt(desk, {None: "engaged by an operator"})
    records = [(r.book, r.engaged, r.reason) for r in desk.journal if isinstance(r, EntryHaltSet)]
    assert records == [
        ("manual", True, LOSS),
        (None, True, "engaged by an operator"),
        ("manual", False, ""),
    ]
