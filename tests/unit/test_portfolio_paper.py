"""The paper venue: order types through the matching engine, rejections, margin, books, square-off, expiry."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import msgspec
import pytest
from test_portfolio_support import INFY, NIFTY, NIFTY_CE, NIFTY_FUT, NIFTY_PE, SBIN, Desk, at

from actors.orders import Fill, OrderStatus, OrderType, Product, Side, Validity
from actors.portfolio.portfolio import PortfolioError, UnknownId
from actors.portfolio.records import OrderRole

BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture
def desk() -> Desk:
    return Desk()


# --------------------------------------------------------------------------------- order types


def test_market_order_fills_at_the_touch_not_the_last_price(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    assert desk.order(SBIN, BUY, 10).avg_price == 80_010
    assert desk.order(SBIN, SELL, 10).avg_price == 79_990


@pytest.mark.parametrize(
    ("ticks", "buy", "sell"), [(0, 80_000, 80_000), (1, 80_005, 79_995), (3, 80_015, 79_985)]
)
def test_ltp_only_quotes_fill_with_the_slippage_model(ticks: int, buy: int, sell: int) -> None:
    desk = Desk(config={"slippage_ticks": ticks})
    desk.quote(SBIN, ltp=80_000)  # no bid/ask: an LTP-mode feed
    assert desk.order(SBIN, BUY, 10).avg_price == buy
    assert desk.order(SBIN, SELL, 10).avg_price == sell


def test_limit_rests_until_crossed_and_takes_the_better_touch(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    ack = desk.order(SBIN, BUY, 10, order_type=OrderType.LIMIT, price=79_900)
    assert ack.status is OrderStatus.OPEN
    desk.quote(SBIN, ltp=79_950, bid=79_940, ask=79_955)
    assert desk.portfolio.order(ack.client_order_id).status is OrderStatus.OPEN
    desk.quote(SBIN, ltp=79_860, bid=79_850, ask=79_870)  # ask now below the limit
    filled = desk.portfolio.order(ack.client_order_id)
    assert (filled.status, filled.avg_price) == (OrderStatus.FILLED, 79_870)


def test_stop_market_triggers_on_the_last_price(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    desk.order(SBIN, BUY, 10)
    stop = desk.order(SBIN, SELL, 10, order_type=OrderType.SL_M, trigger_price=79_000)
    assert stop.status is OrderStatus.TRIGGER_PENDING
    desk.quote(SBIN, ltp=79_100, bid=78_900, ask=79_110)  # bid below the trigger, LTP not: no trigger
    assert desk.portfolio.order(stop.client_order_id).status is OrderStatus.TRIGGER_PENDING
    desk.quote(SBIN, ltp=79_000, bid=78_995, ask=79_005)
    done = desk.portfolio.order(stop.client_order_id)
    assert (done.status, done.avg_price) == (OrderStatus.FILLED, 78_995)
    assert desk.portfolio.positions()[0].quantity == 0


def test_stop_limit_triggers_then_waits_for_its_limit(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    stop = desk.order(SBIN, BUY, 10, order_type=OrderType.SL, trigger_price=81_000, price=81_050)
    desk.quote(SBIN, ltp=81_000, bid=81_090, ask=81_100)  # triggered; the ask is above the limit
    assert desk.portfolio.order(stop.client_order_id).status is OrderStatus.OPEN
    desk.quote(SBIN, ltp=81_040, bid=81_030, ask=81_045)
    assert desk.portfolio.order(stop.client_order_id).avg_price == 81_045


def test_ioc_cancels_what_does_not_fill_at_once(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    ack = desk.order(SBIN, BUY, 10, order_type=OrderType.LIMIT, price=79_000, validity=Validity.IOC)
    assert ack.status is OrderStatus.CANCELLED
    assert "IOC" in ack.reason
    assert desk.portfolio.margin_blocked == 0


def test_modify_reprices_and_matches_again(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    ack = desk.order(SBIN, BUY, 10, order_type=OrderType.LIMIT, price=79_000)
    moved = desk.portfolio.modify(ack.client_order_id, desk.tick(), price=80_010)
    assert (moved.status, moved.avg_price) == (OrderStatus.FILLED, 80_010)


def test_cancel_releases_the_blocked_margin(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    ack = desk.order(SBIN, BUY, 100, order_type=OrderType.LIMIT, price=79_000)
    assert desk.portfolio.margin_blocked == 1_580_000  # 20% of 100 × ₹790
    assert desk.portfolio.available == 100_000_000 - 1_580_000
    done = desk.portfolio.cancel(ack.client_order_id, desk.tick())
    assert done.status is OrderStatus.CANCELLED
    assert desk.portfolio.margin_blocked == 0
    with pytest.raises(PortfolioError, match="cannot cancel c1: it is already cancelled"):
        desk.portfolio.cancel(ack.client_order_id, desk.tick())


def test_partial_fills_take_what_the_touch_shows() -> None:
    desk = Desk(partial_fills=True)
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010, bid_qty=500, ask_qty=30)
    ack = desk.order(SBIN, BUY, 100)
    assert (ack.status, ack.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 30)
    desk.quote(SBIN, ltp=80_010, bid=80_000, ask=80_020, bid_qty=500, ask_qty=50)
    desk.quote(SBIN, ltp=80_020, bid=80_010, ask=80_030, bid_qty=500, ask_qty=400)
    done = desk.portfolio.order(ack.client_order_id)
    assert (done.status, done.filled_quantity) == (OrderStatus.FILLED, 100)
    # (30 × 80,010 + 50 × 80,020 + 20 × 80,030) / 100 = 8,001,900 / 100
    assert done.avg_price == 80_019
    trades = desk.portfolio.trades()
    assert [t.quantity for t in trades] == [30, 50, 20]
    # The ₹20 brokerage cap is paid once for the order: 720 + 1200 + 80 paise.
    assert [t.charge_breakdown["brokerage"] for t in trades] == [720, 1200, 80]


def test_events_report_each_state_with_its_fill(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    desk.portfolio.drain_events()
    desk.order(SBIN, BUY, 10)
    events = desk.portfolio.drain_events()
    assert [e.status for e in events] == [OrderStatus.OPEN, OrderStatus.FILLED]
    fill = events[1].fill
    assert fill is not None
    assert (fill.quantity, fill.price, fill.commission) == (10, 80_010, desk.portfolio.trades()[0].charges)
    assert desk.portfolio.drain_events() == []


def test_resending_an_order_id_is_idempotent(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    first = desk.order(SBIN, BUY, 10)
    request = desk.portfolio._state.orders[first.client_order_id].request
    again = desk.portfolio.submit(request, desk.tick())
    assert again.filled_quantity == 10
    assert len(desk.portfolio.trades()) == 1
    other = type(request)(**{**{f: getattr(request, f) for f in request.__struct_fields__}, "side": SELL})
    with pytest.raises(PortfolioError, match="already used by a different order"):
        desk.portfolio.submit(other, desk.tick())


# --------------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("spec", "side", "quantity", "kwargs", "reason"),
    [
        (SBIN, BUY, 10, {"order_type": OrderType.LIMIT, "price": 80_003},
         "price ₹800.03 is not a multiple of the tick size ₹0.05 for SBIN-EQ"),
        (NIFTY_FUT, BUY, 10, {"product": Product.CARRYFORWARD},
         "quantity 10 is not a multiple of the lot size 65 for NIFTY28JUL26FUT"),
        (SBIN, BUY, 10, {"order_type": OrderType.LIMIT, "price": 88_500},
         "price ₹885.00 is above the upper circuit ₹880.00 for SBIN-EQ"),
        (SBIN, SELL, 10, {"order_type": OrderType.LIMIT, "price": 71_500},
         "price ₹715.00 is below the lower circuit ₹720.00 for SBIN-EQ"),
        (SBIN, BUY, 10_000, {"order_type": OrderType.LIMIT, "price": 80_000},
         "insufficient funds: BUY 10000 SBIN-EQ INTRADAY needs ₹1,600,000.00 margin "
         "(20% of ₹8,000,000.00), available ₹1,000,000.00"),
        (SBIN, BUY, 1_500, {"order_type": OrderType.LIMIT, "price": 80_000, "product": Product.DELIVERY},
         "insufficient funds: BUY 1500 SBIN-EQ DELIVERY needs ₹1,200,000.00 margin (₹1,200,000.00), "
         "available ₹1,000,000.00"),
        (SBIN, SELL, 5, {"product": Product.DELIVERY},
         "cannot sell 5 SBIN-EQ for DELIVERY: book manual holds 0, and short selling in delivery is not "
         "allowed"),
        (SBIN, BUY, 10, {"product": Product.CARRYFORWARD},
         "SBIN-EQ is a cash-market instrument: use DELIVERY, INTRADAY or MARGIN, not CARRYFORWARD"),
        (NIFTY_FUT, BUY, 65, {"product": Product.DELIVERY},
         "NIFTY28JUL26FUT is a derivative: use CARRYFORWARD or INTRADAY, not DELIVERY"),
        (NIFTY, BUY, 1, {}, "NIFTY 50 is an index and cannot be traded"),
        (INFY, BUY, 1, {},
         "no price yet for INFY-EQ: a MARKET order needs a quote; wait for one or place a LIMIT order"),
        (SBIN, BUY, 0, {}, "quantity must be positive, got 0"),
    ],
)  # fmt: skip
def test_rejections_say_what_and_why(
    desk: Desk, spec: object, side: Side, quantity: int, kwargs: dict[str, object], reason: str
) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010, upper_circuit=88_000, lower_circuit=72_000)
    desk.quote(NIFTY_FUT, ltp=2_360_000, bid=2_359_990, ask=2_360_000)
    ack = desk.order(spec, side, quantity, **kwargs)  # type: ignore[arg-type]
    assert ack.status is OrderStatus.REJECTED
    assert ack.reason == reason
    assert desk.portfolio.margin_blocked == 0
    assert desk.portfolio.positions() == []


def test_unknown_instrument_is_named(desk: Desk) -> None:
    from actors.orders import OrderRequest

    request = OrderRequest(client_order_id="x", book="manual", instrument="NSE:1", side=BUY, quantity=1)
    assert desk.portfolio.submit(request, desk.tick()).reason == "unknown instrument 'NSE:1'"
    with pytest.raises(UnknownId, match="no order with id 'nope'"):
        desk.portfolio.cancel("nope", desk.tick())


def test_delivery_sell_is_limited_to_the_holding_net_of_other_sells(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    desk.order(SBIN, BUY, 10, product=Product.DELIVERY)
    resting = desk.order(SBIN, SELL, 6, order_type=OrderType.LIMIT, price=85_000, product=Product.DELIVERY)
    assert resting.status is OrderStatus.OPEN
    refused = desk.order(SBIN, SELL, 5, product=Product.DELIVERY)
    assert refused.reason == (
        "cannot sell 5 SBIN-EQ for DELIVERY: book manual holds 10 (6 already on sell orders), "
        "and short selling in delivery is not allowed"
    )
    assert desk.order(SBIN, SELL, 4, product=Product.DELIVERY).status is OrderStatus.FILLED


def test_short_delivery_allowed_when_configured() -> None:
    desk = Desk(allow_short_delivery=True)
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    assert desk.order(SBIN, SELL, 5, product=Product.DELIVERY).status is OrderStatus.FILLED
    assert desk.portfolio.positions()[0].quantity == -5


def test_closing_orders_need_no_margin() -> None:
    desk = Desk(config={"starting_cash_rupees": 20_000})  # ₹20,000: a 20% intraday margin on ₹1 lakh
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    assert desk.order(SBIN, BUY, 124).status is OrderStatus.FILLED  # ₹99,200 notional, ₹19,840 margin
    assert desk.order(SBIN, BUY, 5).status is OrderStatus.REJECTED
    assert desk.order(SBIN, SELL, 124).status is OrderStatus.FILLED


# --------------------------------------------------------------------------------- accounting


def test_cash_margin_and_pnl_through_a_round_trip(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 100)
    position = desk.portfolio.positions()[0]
    assert (position.quantity, position.avg_price, position.margin) == (100, 80_000, 1_600_000)
    assert desk.portfolio.summary().margin_used == 1_600_000
    desk.quote(SBIN, ltp=81_000, bid=81_000, ask=81_000)
    view = desk.portfolio.positions()[0]
    assert (view.unrealized_pnl, view.value) == (100_000, 8_100_000)
    desk.order(SBIN, SELL, 100)
    summary = desk.portfolio.summary()
    # Charges from the worked example in test_charges: 2890 on the buy, 4679 on the sell.
    assert (summary.realized_pnl, summary.charges, summary.net_pnl) == (100_000, 7569, 92_431)
    assert summary.cash == 100_000_000 + 100_000 - 7569
    assert summary.margin_used == 0
    assert summary.margin_available == summary.cash


def test_intraday_mtm_losses_come_out_of_available_margin(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 100)
    before = desk.portfolio.available
    desk.quote(SBIN, ltp=79_000, bid=79_000, ask=79_000)
    assert before - desk.portfolio.available == 100_000  # ₹1,000 MTM loss
    desk.quote(SBIN, ltp=82_000, bid=82_000, ask=82_000)
    assert desk.portfolio.available == before  # gains are not lent against


def test_delivery_holding_blocks_its_full_cost(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10, product=Product.DELIVERY)
    assert desk.portfolio.margin_used == 800_000
    desk.quote(SBIN, ltp=70_000, bid=70_000, ask=70_000)
    assert desk.portfolio.available == desk.portfolio.cash - 800_000  # paid for: no MTM call


def test_books_never_net_and_the_global_view_adds_them(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10)
    desk.order(SBIN, SELL, 10, book="ema-equities")
    positions = {p.book: p.quantity for p in desk.portfolio.positions()}
    assert positions == {"manual": 10, "ema-equities": -10}
    summary = desk.portfolio.summary()
    assert [b.book for b in summary.books] == ["ema-equities", "manual"]
    assert (summary.gross_exposure, summary.net_exposure) == (1_600_000, 0)
    assert summary.margin_used == 2 * 160_000  # each book margined on its own


def test_flatten_one_book_then_all(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10)
    desk.order(SBIN, SELL, 10, book="ema-equities")
    resting = desk.order(SBIN, BUY, 5, order_type=OrderType.LIMIT, price=70_000, book="ema-equities")
    exits = desk.portfolio.flatten("ema-equities", desk.tick())
    assert [(e.book, e.status) for e in exits] == [("ema-equities", OrderStatus.FILLED)]
    assert desk.portfolio.order(resting.client_order_id).reason == "flattened"
    assert {p.book: p.quantity for p in desk.portfolio.positions()} == {"manual": 10, "ema-equities": 0}
    desk.portfolio.flatten(None, desk.tick())
    assert all(p.quantity == 0 for p in desk.portfolio.positions())


def test_square_off_one_instrument(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.quote(INFY, ltp=150_000, bid=150_000, ask=150_000)
    desk.order(SBIN, BUY, 10)
    desk.order(INFY, SELL, 4)
    exits = desk.portfolio.square_off("manual", desk.tick(), instrument=INFY.key)
    assert [(e.instrument, e.filled_quantity) for e in exits] == [(INFY.key, 4)]
    assert {p.instrument: p.quantity for p in desk.portfolio.positions()} == {SBIN.key: 10, INFY.key: 0}


# ------------------------------------------------------------------------- sessions and expiry


def test_intraday_auto_square_off_at_the_configured_time(desk: Desk) -> None:
    desk.now = at(15, 10)
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10)
    desk.order(SBIN, BUY, 3, product=Product.DELIVERY)
    waiting = desk.order(SBIN, BUY, 10, order_type=OrderType.LIMIT, price=70_000)
    desk.now = at(15, 19, 58)
    desk.quote(SBIN, ltp=80_100, bid=80_100, ask=80_100)
    assert desk.portfolio.order(waiting.client_order_id).status is OrderStatus.OPEN
    desk.quote(SBIN, ltp=80_200, bid=80_200, ask=80_200)  # 15:20:00
    positions = {p.product: p for p in desk.portfolio.positions()}
    assert positions[Product.INTRADAY].quantity == 0
    assert positions[Product.INTRADAY].realized_pnl == 10 * 100  # closed at the 15:19:59 touch
    assert positions[Product.DELIVERY].quantity == 3
    assert desk.portfolio.order(waiting.client_order_id).reason == "intraday auto square-off at 15:20 IST"


def test_a_new_session_carries_positions_overnight(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10, product=Product.DELIVERY)
    resting = desk.order(SBIN, BUY, 1, order_type=OrderType.LIMIT, price=70_000, product=Product.DELIVERY)
    desk.now = at(9, 15, day=date(2026, 7, 7))
    desk.quote(SBIN, ltp=80_500, bid=80_500, ask=80_500)
    view = desk.portfolio.positions()[0]
    assert (view.quantity, view.overnight_quantity, view.day_buy_quantity) == (10, 10, 0)
    assert desk.portfolio.order(resting.client_order_id).reason == "the trading day ended"


def test_an_intraday_position_left_open_closes_at_the_session_end() -> None:
    desk = Desk(config={"square_off_time_ist": "23:59"})
    desk.quote(SBIN, ltp=80_000, bid=80_000, ask=80_000)
    desk.order(SBIN, BUY, 10)
    desk.quote(SBIN, ltp=80_300)
    desk.now = at(9, 15, day=date(2026, 7, 7))
    desk.quote(SBIN, ltp=79_000)
    trade = desk.portfolio.trades()[-1]
    assert (trade.side, trade.quantity, trade.price) == (SELL, 10, 80_300)
    assert trade.reason == "intraday position closed at the session's end"
    assert desk.portfolio.positions()[0].quantity == 0


def test_derivatives_settle_at_expiry(desk: Desk) -> None:
    cf = Product.CARRYFORWARD
    desk.quote(NIFTY, ltp=2_360_000)
    desk.quote(NIFTY_FUT, ltp=2_360_000, bid=2_359_990, ask=2_360_000)
    desk.quote(NIFTY_CE, ltp=12_050, bid=12_045, ask=12_050)
    desk.quote(NIFTY_PE, ltp=5_000, bid=5_000, ask=5_005)
    desk.order(NIFTY_FUT, BUY, 65, product=cf)
    desk.order(NIFTY_CE, BUY, 65, product=cf)
    desk.order(NIFTY_PE, SELL, 65, product=cf)
    expiry = date(2026, 7, 28)
    desk.now = at(15, 0, day=expiry)
    desk.quote(NIFTY, ltp=2_365_000)
    desk.quote(NIFTY_FUT, ltp=2_364_000, bid=2_363_990, ask=2_364_000)
    desk.now = at(15, 29, 50, day=expiry)
    desk.quote(NIFTY, ltp=2_365_000)
    assert all(p.quantity for p in desk.portfolio.positions())  # not before the close
    desk.now = at(15, 30, day=expiry)
    desk.portfolio.advance_clock(desk.tick())
    settled = {t.instrument: t for t in desk.portfolio.trades() if t.reason}
    assert {k: (t.price, t.realized_pnl) for k, t in settled.items()} == {
        NIFTY_FUT.key: (2_364_000, (2_364_000 - 2_360_000) * 65),  # futures at their last price
        NIFTY_CE.key: (15_000, (15_000 - 12_050) * 65),  # ₹23,650 - ₹23,500 intrinsic
        NIFTY_PE.key: (0, 5_000 * 65),  # out of the money: the writer keeps the premium
    }
    assert settled[NIFTY_CE.key].charges == 1463  # STT 0.15% on 65 × ₹150 exercised
    assert settled[NIFTY_PE.key].charges == 0
    assert all(t.reason == "expired 2026-07-28" for t in settled.values())
    assert all(p.quantity == 0 for p in desk.portfolio.positions())
    assert desk.portfolio.margin_used == 0


def test_summary_fractions_stay_exact(desk: Desk) -> None:
    desk.quote(SBIN, ltp=10_000, bid=10_000, ask=10_000)
    desk.order(SBIN, BUY, 1)
    desk.quote(SBIN, ltp=10_100, bid=10_100, ask=10_100)
    desk.order(SBIN, BUY, 2)
    desk.quote(SBIN, ltp=10_200, bid=10_200, ask=10_200)
    desk.order(SBIN, SELL, 1)
    view = desk.portfolio.positions()[0]
    assert view.avg_price == Fraction(30_200, 3)
    assert view.realized_pnl == Fraction(400, 3)
    assert view.realized_pnl + view.unrealized_pnl == -10_000 - 20_200 + 10_200 + 2 * 10_200


def test_each_call_syncs_the_journal_once_after_its_records() -> None:
    from test_portfolio_support import INSTRUMENTS, config

    from actors.orders import OrderRequest
    from actors.portfolio.portfolio import MarketQuote, PaperPortfolio

    written: list[str] = []
    portfolio = PaperPortfolio(
        config(),
        INSTRUMENTS,
        journal=lambda record: written.append(type(record).__name__),
        journal_sync=lambda: written.append("sync"),
    )
    portfolio.on_quote(MarketQuote(instrument=SBIN.key, ltp=80_000, bid=79_990, ask=80_010, ts_ns=at(10)))
    assert written == ["SessionStarted", "sync"]
    written.clear()
    request = OrderRequest(client_order_id="g1", book="manual", instrument=SBIN.key, side=BUY, quantity=1)
    portfolio.submit(request, at(10, 1))
    assert written == ["OrderAccepted", "OrderWorking", "OrderFilled", "sync"]
    written.clear()
    portfolio.on_quote(MarketQuote(instrument=SBIN.key, ltp=80_100, ts_ns=at(10, 2)))
    assert written == []  # nothing changed, nothing to sync


def test_watched_instruments_include_what_settles_an_option(desk: Desk) -> None:
    desk.quote(NIFTY_CE, ltp=12_050, bid=12_045, ask=12_050)
    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    assert desk.portfolio.watched_instruments() == set()
    desk.order(NIFTY_CE, BUY, 65, product=Product.CARRYFORWARD)
    desk.order(SBIN, BUY, 1, order_type=OrderType.LIMIT, price=70_000)
    assert desk.portfolio.watched_instruments() == {NIFTY_CE.key, NIFTY.key, SBIN.key}


def test_restore_needs_a_fresh_portfolio_and_readable_records(desk: Desk) -> None:
    from test_portfolio_support import INSTRUMENTS

    from actors.portfolio.portfolio import PaperPortfolio
    from actors.portfolio.records import decode_record

    desk.quote(SBIN, ltp=80_000, bid=79_990, ask=80_010)
    with pytest.raises(PortfolioError, match="restore needs a fresh portfolio"):
        desk.portfolio.restore([])
    with pytest.raises(ValueError, match="unreadable portfolio journal record"):
        decode_record({"kind": "order_filled", "ts_ns": 1})
    fresh = PaperPortfolio(desk.config, INSTRUMENTS)
    assert fresh.restore(desk.journal) == len(desk.journal)


def test_fills_made_elsewhere_are_booked_once(desk: Desk) -> None:
    from actors.orders import Fill

    def fill(trade_id: str, side: Side, quantity: int, price: int) -> Fill:
        return Fill(
            client_order_id="live-1", venue_order_id="AB123", trade_id=trade_id, book="manual",
            instrument=SBIN.key, side=side, quantity=quantity, price=price, product=Product.INTRADAY,
            ts_ns=desk.tick(),
        )  # fmt: skip

    first = desk.portfolio.apply_fill(fill("x1", BUY, 50, 80_000))
    assert first is not None
    # Half of the worked example's 100-share buy: brokerage 0.03% of ₹40,000 = 1200 paise.
    assert first.charge_breakdown["brokerage"] == 1200
    second = desk.portfolio.apply_fill(fill("x2", BUY, 50, 80_000))
    assert second is not None and second.charge_breakdown["brokerage"] == 800  # the ₹20 cap, once per order
    assert desk.portfolio.apply_fill(fill("x2", BUY, 50, 80_000)) is None  # delivered twice, booked once
    assert desk.portfolio.positions()[0].quantity == 100
    assert desk.portfolio.drain_events() == []  # the fill's owner already knows
    with pytest.raises(PortfolioError, match="unknown instrument 'NSE:1'"):
        desk.portfolio.apply_fill(msgspec.structs.replace(fill("x3", SELL, 1, 80_000), instrument="NSE:1"))
    assert desk.restarted().snapshot() == desk.portfolio.snapshot()


def test_own_fills_are_the_fills_of_what_the_venue_placed_itself_as_it_delivered_them(desk: Desk) -> None:
    desk.quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
    desk.order(SBIN, BUY, 10)  # a client order: the execution actor has its fill already
    desk.portfolio.gtt_create(
        book="manual", instrument=SBIN.key, side=BUY, quantity=5, product=Product.INTRADAY,
        legs=[(81_000, 81_100)], ts_ns=desk.tick(),
    )  # fmt: skip
    desk.quote(SBIN, ltp=81_000, bid=80_995, ask=81_005)  # the GTT fires and fills
    desk.portfolio.apply_fill(
        Fill(
            client_order_id="live-1", venue_order_id="AB1", trade_id="x1", book="other", instrument=SBIN.key,
            side=BUY, quantity=1, price=81_000, product=Product.INTRADAY, ts_ns=desk.tick(),
        )
    )  # fmt: skip
    desk.portfolio.square_off("manual", desk.tick())  # an exit the venue places itself
    delivered = [
        event.fill
        for event in desk.portfolio.drain_events()
        if event.fill is not None and desk.portfolio.order_role(event.client_order_id) is not OrderRole.CLIENT
    ]
    own = desk.portfolio.own_fills()
    assert own == delivered
    assert [(f.side, f.quantity) for f in own] == [(BUY, 5), (SELL, 15)]
    assert all(f.commission > 0 for f in own)
    assert desk.restarted().own_fills() == own
