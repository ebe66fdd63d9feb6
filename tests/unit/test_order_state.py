from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.execution.order_state import LEGAL_TRANSITIONS, IllegalTransition, OrderStateMachine
from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, Product, Side

S = OrderStatus


def request(quantity: int = 100, side: Side = Side.BUY, **kw: object) -> OrderRequest:
    return OrderRequest(
        client_order_id="c1",
        book="manual",
        instrument="NSE:3045",
        side=side,
        quantity=quantity,
        order_type=kw.pop("order_type", OrderType.LIMIT),  # type: ignore[arg-type]
        price=kw.pop("price", 50_000),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def fill(quantity: int = 10, trade: str = "t1", price: int = 50_000, **kw: object) -> Fill:
    fields = {
        "client_order_id": "c1",
        "venue_order_id": "V1",
        "trade_id": trade,
        "book": "manual",
        "instrument": "NSE:3045",
        "side": Side.BUY,
        "quantity": quantity,
        "price": price,
        "product": Product.INTRADAY,
        "ts_ns": 5,
    }
    fields.update(kw)
    return Fill(**fields)  # type: ignore[arg-type]


def machine(status: OrderStatus) -> OrderStateMachine:
    """An order brought to `status` through legal steps."""
    order = OrderStateMachine(request(), ts_ns=1)
    if status is S.PENDING:
        return order
    if status is S.TRIGGER_PENDING:
        order.acknowledge("V1", S.TRIGGER_PENDING, 2)
        return order
    order.acknowledge("V1", S.OPEN, 2)
    if status is S.PARTIALLY_FILLED:
        order.apply_fill(fill(40))
    elif status is S.FILLED:
        order.apply_fill(fill(100))
    elif status is S.CANCELLED:
        order.cancel("by request", 3)
    elif status is S.REJECTED:
        order.reject("exchange said no", 3)
    assert order.status is status
    return order


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("target", [S.OPEN, S.CANCELLED, S.REJECTED])
def test_moves_follow_the_table(start: OrderStatus, target: OrderStatus) -> None:
    order = machine(start)
    legal = target in LEGAL_TRANSITIONS[start] or target is start
    action = {
        S.OPEN: lambda: order.trigger(9) if start is not S.PENDING else order.acknowledge("V1", S.OPEN, 9),
        S.CANCELLED: lambda: order.cancel("x", 9),
        S.REJECTED: lambda: order.reject("x", 9),
    }[target]
    if start is S.OPEN and target is S.OPEN:
        assert order.trigger(9) is False
        return
    if legal:
        action()
        assert order.status is target
    else:
        with pytest.raises(IllegalTransition, match=r"cannot go from|only a stop order"):
            action()
        assert order.status is start


def test_terminal_states_go_nowhere() -> None:
    for status in (S.FILLED, S.CANCELLED, S.REJECTED):
        assert LEGAL_TRANSITIONS[status] == frozenset()


def test_partial_then_full_fill_with_exact_average_price() -> None:
    order = machine(S.OPEN)
    assert order.apply_fill(fill(30, "t1", 50_000))
    assert order.status is S.PARTIALLY_FILLED and order.remaining == 70
    assert order.apply_fill(fill(70, "t2", 50_005))
    assert order.status is S.FILLED and order.remaining == 0
    update = order.update()
    assert update.filled_quantity == 100
    assert update.avg_price == round((30 * 50_000 + 70 * 50_005) / 100)  # 50003.5 -> banker's 50004
    assert order.avg_price * 100 == 30 * 50_000 + 70 * 50_005  # exact internally


def test_a_repeated_trade_is_ignored_and_an_overfill_refused() -> None:
    order = machine(S.OPEN)
    order.apply_fill(fill(60, "t1"))
    assert order.apply_fill(fill(60, "t1")) is False
    assert order.filled_quantity == 60
    with pytest.raises(IllegalTransition, match="would make 110 filled"):
        order.apply_fill(fill(50, "t2"))
    assert order.filled_quantity == 60 and order.status is S.PARTIALLY_FILLED


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"client_order_id": "other"}, "is for other"),
        ({"side": Side.SELL}, "is a SELL"),
        ({"instrument": "BSE:3045"}, "of BSE:3045"),
        ({"quantity": 0}, "quantity 0"),
        ({"venue_order_id": "V9"}, "venue order V9"),
    ],
)
def test_fills_that_do_not_belong_are_refused(bad: dict[str, object], message: str) -> None:
    order = machine(S.OPEN)
    f = fill(**{"quantity": 10, **bad})  # type: ignore[arg-type]
    assert order.fill_problem(f) is not None
    with pytest.raises(IllegalTransition, match=message):
        order.apply_fill(f)


def test_a_fill_before_the_acknowledgement_and_the_late_acknowledgement() -> None:
    order = machine(S.PENDING)
    order.apply_fill(fill(100))
    assert order.status is S.FILLED and order.venue_order_id == "V1"
    assert order.acknowledge("V1", S.OPEN, 9) is False
    assert order.status is S.FILLED
    with pytest.raises(IllegalTransition, match="venue order V1, not V2"):
        order.acknowledge("V2", S.OPEN, 9)


def test_a_late_fill_after_the_cancel_confirmation_counts_but_keeps_it_cancelled() -> None:
    order = machine(S.OPEN)
    order.cancel("by request", 3)
    assert order.apply_fill(fill(25))
    assert order.status is S.CANCELLED and order.filled_quantity == 25 and order.remaining == 0


@pytest.mark.parametrize("status", [S.FILLED, S.REJECTED])
def test_no_fill_after_filled_or_rejected(status: OrderStatus) -> None:
    order = machine(status)
    with pytest.raises(IllegalTransition, match=r"takes no more fills|would make"):
        order.apply_fill(fill(1, "t9"))


def test_modify_rules() -> None:
    order = machine(S.OPEN)
    order.apply_fill(fill(40))
    assert order.check_modify(40, None, None) is not None  # must exceed what is filled
    order.modify(60, 50_010, None, ts_ns=7)
    assert (order.request.quantity, order.request.price) == (60, 50_010)
    assert order.original_request.quantity == 100  # what a retried submit must match
    order.apply_fill(fill(20, "t2"))
    assert order.status is S.FILLED
    with pytest.raises(IllegalTransition, match="cannot be modified"):
        order.modify(80, None, None, ts_ns=8)


def test_stop_order_triggers_then_fills() -> None:
    order = OrderStateMachine(request(order_type=OrderType.SL, trigger_price=49_900), ts_ns=1)
    order.acknowledge("V1", S.TRIGGER_PENDING, 2)
    assert order.trigger(3) and order.status is S.OPEN
    assert order.trigger(4) is False
    order.apply_fill(fill(100))
    assert order.status is S.FILLED


@given(st.lists(st.tuples(st.integers(1, 60), st.booleans()), max_size=12), st.booleans())
def test_fills_never_exceed_the_quantity_and_status_matches_filled(
    steps: list[tuple[int, bool]], cancel: bool
) -> None:
    order = machine(S.OPEN)
    for n, (quantity, repeat) in enumerate(steps):
        if cancel and n == 3:
            if order.status is S.FILLED:  # nothing left to cancel
                with pytest.raises(IllegalTransition):
                    order.cancel("x", 9)
            else:
                order.cancel("x", 9)
        trade = "t0" if repeat else f"t{n + 1}"
        with contextlib.suppress(IllegalTransition):
            order.apply_fill(fill(quantity, trade))
        assert 0 <= order.filled_quantity <= order.request.quantity
        if order.status is not S.CANCELLED:
            expected = (
                S.OPEN
                if order.filled_quantity == 0
                else S.FILLED
                if order.filled_quantity == 100
                else S.PARTIALLY_FILLED
            )
            assert order.status is expected
        assert order.filled_value == sum(50_000 * q for q in [order.filled_quantity])
