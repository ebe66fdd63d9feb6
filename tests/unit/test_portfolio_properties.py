"""Properties over random order, quote and clock sequences: exact P&L identities and journal replay."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_portfolio_support import INFY, NIFTY_FUT, SBIN, Desk

from actors.orders import OrderType, OrderUpdate, Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.portfolio import PortfolioError

BASE = {SBIN.key: 80_000, INFY.key: 150_000, NIFTY_FUT.key: 2_360_000}
SPECS = [SBIN, INFY, NIFTY_FUT]
BOOKS = ["manual", "algo"]

spec_st = st.sampled_from(SPECS)
quote_st = st.tuples(
    st.just("quote"), spec_st, st.integers(-40, 40), st.integers(0, 3), st.booleans()
)  # offset ticks, half-spread ticks, LTP only
order_st = st.tuples(
    st.just("order"),
    spec_st,
    st.sampled_from(list(Side)),
    st.integers(1, 3),  # lots (or tens of shares)
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.SL_M]),
    st.sampled_from([Product.INTRADAY, Product.DELIVERY, Product.CARRYFORWARD]),
    st.sampled_from(BOOKS),
    st.integers(-10, 10),  # limit/trigger offset in ticks from the last price
)
cancel_st = st.tuples(st.just("cancel"), st.integers(0, 50))
modify_st = st.tuples(st.just("modify"), st.integers(0, 50), st.integers(-10, 10))
gtt_st = st.tuples(
    st.just("gtt"), spec_st, st.sampled_from(list(Side)), st.integers(1, 15), st.integers(1, 3)
)
bracket_st = st.tuples(
    st.just("bracket"), spec_st, st.sampled_from(list(Side)), st.integers(1, 3), st.integers(0, 4),
    st.booleans(),
)  # fmt: skip
flatten_st = st.tuples(st.just("flatten"), st.sampled_from([*BOOKS, None]))
clock_st = st.tuples(st.just("clock"), st.integers(60, 4 * 3600))
action_st = st.one_of(
    quote_st,
    quote_st,
    quote_st,
    order_st,
    order_st,
    cancel_st,
    modify_st,
    gtt_st,
    bracket_st,
    flatten_st,
    clock_st,
)


def lot(spec: InstrumentSpec) -> int:
    return spec.lot_size if spec.lot_size > 1 else 10


def run(actions: list[tuple[Any, ...]], partial_fills: bool) -> tuple[Desk, list[OrderUpdate]]:
    desk = Desk(partial_fills=partial_fills, config={"slippage_ticks": 1})
    for spec in SPECS:  # every instrument has a price before anything happens
        desk.quote(spec, ltp=BASE[spec.key], bid=BASE[spec.key], ask=BASE[spec.key] + spec.tick_size)
    events: list[OrderUpdate] = []
    last = dict(BASE)
    for action in actions:
        kind = action[0]
        portfolio = desk.portfolio
        try:
            if kind == "quote":
                _, spec, offset, half_spread, ltp_only = action
                ltp = BASE[spec.key] + offset * spec.tick_size
                last[spec.key] = ltp
                spread = half_spread * spec.tick_size
                bid, ask = (0, 0) if ltp_only else (ltp - spread, ltp + spread)
                desk.quote(spec, ltp=ltp, bid=bid, ask=ask, bid_qty=30, ask_qty=30)
            elif kind == "order":
                _, spec, side, lots, order_type, product, book, offset = action
                if spec.is_derivative and product is Product.DELIVERY:
                    product = Product.CARRYFORWARD
                if not spec.is_derivative and product is Product.CARRYFORWARD:
                    product = Product.INTRADAY
                level = last[spec.key] + offset * spec.tick_size
                if order_type is OrderType.SL_M:  # a stop sits on the far side of the price
                    level = (
                        last[spec.key] + (1 if side is Side.BUY else -1) * (abs(offset) + 1) * spec.tick_size
                    )
                desk.order(
                    spec, side, lots * lot(spec), order_type=order_type, product=product, book=book,
                    price=level if order_type is OrderType.LIMIT else 0,
                    trigger_price=level if order_type is OrderType.SL_M else 0,
                )  # fmt: skip
            elif kind in ("cancel", "modify"):
                active = portfolio.orders(active_only=True)
                if active:
                    order = active[action[1] % len(active)]
                    if kind == "cancel":
                        portfolio.cancel(order.client_order_id, desk.tick())
                    else:
                        spec = next(s for s in SPECS if s.key == order.instrument)
                        price = last[spec.key] + action[2] * spec.tick_size
                        portfolio.modify(order.client_order_id, desk.tick(), price=price)
            elif kind == "gtt":
                _, spec, side, away, lots = action
                product = Product.CARRYFORWARD if spec.is_derivative else Product.DELIVERY
                trigger = last[spec.key] + (1 if side is Side.BUY else -1) * away * spec.tick_size
                portfolio.gtt_create(
                    book="manual", instrument=spec.key, side=side, quantity=lots * lot(spec), product=product,
                    legs=[(trigger, trigger)], ts_ns=desk.tick(),
                )  # fmt: skip
            elif kind == "bracket":
                _, spec, side, lots, trail, market = action
                ref = last[spec.key] - (0 if market else 2 * spec.tick_size * (1 if side is Side.BUY else -1))
                sign = 1 if side is Side.BUY else -1
                portfolio.bracket_place(
                    book="manual", instrument=spec.key, side=side, quantity=lots * lot(spec),
                    product=Product.INTRADAY, stop_loss=ref - sign * 6 * spec.tick_size,
                    target=ref + sign * 6 * spec.tick_size, trailing_stop=trail * spec.tick_size,
                    entry_type=OrderType.MARKET if market else OrderType.LIMIT,
                    entry_price=0 if market else ref, ts_ns=desk.tick(),
                )  # fmt: skip
            elif kind == "flatten":
                portfolio.flatten(action[1], desk.tick())
            elif kind == "clock":
                desk.now += action[1] * 10**9
                portfolio.advance_clock(desk.now)
        except PortfolioError:
            pass  # refusals are part of the game; they must leave no trace (checked by replay)
        events += portfolio.drain_events()
    return desk, events


def check_invariants(desk: Desk, events: list[OrderUpdate]) -> None:
    portfolio = desk.portfolio
    trades = portfolio.trades()
    positions = portfolio.positions()
    summary = portfolio.summary()
    marks = {p.instrument: p.last_price for p in positions}

    # Every fill reported is a trade booked, once.
    fills = [e.fill.trade_id for e in events if e.fill is not None]
    assert sorted(fills) == sorted(t.trade_id for t in trades)
    assert len(set(fills)) == len(fills)

    # Positions are the sum of their trades; P&L is cash moved plus what is held, marked.
    flows: dict[tuple[str, str, Product], int] = defaultdict(int)
    held: dict[tuple[str, str, Product], int] = defaultdict(int)
    for t in trades:
        signed = t.quantity if t.side is Side.BUY else -t.quantity
        flows[t.book, t.instrument, t.product] -= signed * t.price
        held[t.book, t.instrument, t.product] += signed
    for p in positions:
        key = (p.book, p.instrument, p.product)
        assert p.quantity == held[key]
        mark = p.last_price or 0
        assert p.realized_pnl + p.unrealized_pnl == flows[key] + p.quantity * mark
        assert p.net_pnl == p.realized_pnl + p.unrealized_pnl - p.charges
        spec = next(s for s in SPECS if s.key == p.instrument)
        if spec.kind is InstrumentKind.EQUITY and p.product is Product.DELIVERY:
            assert p.quantity >= 0, "short delivery must be refused"

    # The account reconciles with the trade list.
    charges = sum(t.charges for t in trades)
    assert summary.charges == charges
    assert summary.realized_pnl == sum((t.realized_pnl for t in trades), Fraction(0))
    assert summary.cash == portfolio.starting_cash + summary.realized_pnl - charges
    cash_moved = sum(flows.values())
    position_value = sum(p.quantity * (marks[p.instrument] or 0) for p in positions)
    assert summary.equity == portfolio.starting_cash - charges + cash_moved + position_value
    assert summary.net_pnl == summary.realized_pnl + summary.unrealized_pnl - charges
    assert summary.margin_blocked >= 0 and summary.margin_used >= 0

    for order in portfolio.orders():
        assert order.filled_quantity >= 0
    for b in portfolio.bracket_list():
        assert 0 <= b.exited <= b.entry_filled <= b.quantity


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(action_st, min_size=10, max_size=60), partial_fills=st.booleans())
def test_identities_hold_and_the_journal_rebuilds_the_same_state(
    actions: list[tuple[Any, ...]], partial_fills: bool
) -> None:
    desk, events = run(actions, partial_fills)
    check_invariants(desk, events)
    restored = desk.restarted()
    assert restored.snapshot() == desk.portfolio.snapshot()
    assert restored.gtt_list() == desk.portfolio.gtt_list()
    assert restored.bracket_list() == desk.portfolio.bracket_list()
    assert restored.orders() == desk.portfolio.orders()
