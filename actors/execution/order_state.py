"""One order's life: PENDING → OPEN / TRIGGER_PENDING → PARTIALLY_FILLED → FILLED, or CANCELLED / REJECTED.

`OrderStateMachine` only moves along the legal edges and never lets fills exceed the quantity.
Venue reports can arrive out of order (a fill before the acknowledgement, a late fill after a
cancel confirmation), so the machine accepts those that are consistent with the exchange's own
rules and refuses the rest with `IllegalTransition`.
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from actors.orders import TERMINAL_STATUSES, Fill, OrderRequest, OrderStatus, OrderUpdate, Side

S = OrderStatus

LEGAL_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.OPEN, S.TRIGGER_PENDING, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.TRIGGER_PENDING: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}


class IllegalTransition(ValueError):
    """A report that does not fit the order's state (e.g. a fill after FILLED, or too much filled)."""


class OrderStateMachine:
    """The state of one order as the execution actor knows it; prices in paise.

    Parameters
    ----------
    request
        The order as accepted (modifications replace its quantity and prices).
    ts_ns
        When it was accepted.
    """

    def __init__(self, request: OrderRequest, ts_ns: int) -> None:
        self.request = request
        self.original_request = request  # as first accepted: what a retried submit must match
        self.status = S.PENDING
        self.venue_order_id: str | None = None
        self.filled_quantity = 0
        self.filled_value = 0  # sum of quantity × price over fills, paise
        self.trade_ids: set[str] = set()
        self.reason = ""
        self.created_ns = ts_ns
        self.updated_ns = ts_ns
        self.sent = False  # handed to the venue (journaled), answer or not

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def remaining(self) -> int:
        return 0 if self.is_terminal else self.request.quantity - self.filled_quantity

    @property
    def avg_price(self) -> Fraction:
        return Fraction(self.filled_value, self.filled_quantity) if self.filled_quantity else Fraction(0)

    def acknowledge(self, venue_order_id: str, status: OrderStatus, ts_ns: int) -> bool:
        """The venue took the order and said it is `status` (OPEN or TRIGGER_PENDING).

        An acknowledgement that arrives after fills or a cancel only records the venue id.
        Returns whether the status changed.
        """
        if status not in (S.OPEN, S.TRIGGER_PENDING):
            raise IllegalTransition(f"an acknowledgement says OPEN or TRIGGER_PENDING, not {status}")
        self._set_venue_id(venue_order_id)
        if self.status is not S.PENDING:
            return False
        return self._move(status, ts_ns)

    def trigger(self, ts_ns: int) -> bool:
        """A stop order's trigger was reached: it now works as an open order."""
        if self.status is S.OPEN:
            return False
        if self.status not in (S.TRIGGER_PENDING, S.PENDING):
            raise IllegalTransition(
                f"order {self.client_order_id} is {self.status}; only a stop order triggers"
            )
        return self._move(S.OPEN, ts_ns)

    def fill_problem(self, fill: Fill) -> str | None:
        """Why `fill` cannot be added (a repeated trade id is not a problem: it is ignored), or None."""
        if fill.trade_id in self.trade_ids:
            return None
        if fill.client_order_id != self.client_order_id:
            return f"fill {fill.trade_id} is for {fill.client_order_id}, not {self.client_order_id}"
        if fill.quantity <= 0 or fill.price < 0:
            return f"fill {fill.trade_id} has quantity {fill.quantity} and price {fill.price}"
        if fill.side is not self.request.side or fill.instrument != self.request.instrument:
            return (
                f"fill {fill.trade_id} is a {fill.side} of {fill.instrument}; the order is a "
                f"{self.request.side} of {self.request.instrument}"
            )
        if self.venue_order_id and fill.venue_order_id and fill.venue_order_id != self.venue_order_id:
            return f"fill {fill.trade_id} is for venue order {fill.venue_order_id}, not {self.venue_order_id}"
        total = self.filled_quantity + fill.quantity
        if total > self.request.quantity:
            return (
                f"fill {fill.trade_id} of {fill.quantity} would make {total} filled of "
                f"order {self.client_order_id}'s {self.request.quantity}"
            )
        if self.status in (S.FILLED, S.REJECTED):
            return f"order {self.client_order_id} is {self.status}; it takes no more fills"
        return None

    def apply_fill(self, fill: Fill) -> bool:
        """Add a fill. Returns False for a trade already counted (venues repeat themselves).

        A fill reported after the cancel confirmation is accepted (reports cross on the wire) as
        long as the total stays within the quantity; the order stays CANCELLED.
        """
        if fill.trade_id in self.trade_ids:
            return False
        problem = self.fill_problem(fill)
        if problem:
            raise IllegalTransition(problem)
        self.trade_ids.add(fill.trade_id)
        self.filled_quantity += fill.quantity
        self.filled_value += fill.quantity * fill.price
        self._set_venue_id(fill.venue_order_id)
        if self.status is S.CANCELLED:
            self.updated_ns = fill.ts_ns
            return True
        filled = self.filled_quantity == self.request.quantity
        self._move(S.FILLED if filled else S.PARTIALLY_FILLED, fill.ts_ns)
        return True

    def can_move(self, status: OrderStatus) -> bool:
        return status in LEGAL_TRANSITIONS[self.status]

    def cancel(self, reason: str, ts_ns: int) -> bool:
        if self.status is S.CANCELLED:
            return False
        changed = self._move(S.CANCELLED, ts_ns)
        self.reason = reason
        return changed

    def reject(self, reason: str, ts_ns: int) -> bool:
        if self.status is S.REJECTED:
            return False
        changed = self._move(S.REJECTED, ts_ns)
        self.reason = reason
        return changed

    def check_modify(self, quantity: int | None, price: int | None, trigger_price: int | None) -> str | None:
        """Why these new terms cannot apply, or None."""
        if self.is_terminal:
            return f"order {self.client_order_id} is {self.status}; it cannot be modified"
        if quantity is not None and quantity <= self.filled_quantity:
            return (
                f"new quantity {quantity} must exceed the {self.filled_quantity} already filled "
                f"of order {self.client_order_id}"
            )
        if (price is not None and price < 0) or (trigger_price is not None and trigger_price < 0):
            return "prices cannot be negative"
        return None

    def modify(self, quantity: int | None, price: int | None, trigger_price: int | None, ts_ns: int) -> None:
        """Apply new terms the venue accepted."""
        problem = self.check_modify(quantity, price, trigger_price)
        if problem:
            raise IllegalTransition(problem)
        changes = {
            name: value
            for name, value in (("quantity", quantity), ("price", price), ("trigger_price", trigger_price))
            if value is not None
        }
        self.request = _replace(self.request, **changes)
        self.updated_ns = ts_ns

    def update(
        self, fill: Fill | None = None, reason: str | None = None, ts_ns: int | None = None
    ) -> OrderUpdate:
        """The order's state as an `OrderUpdate` (with `fill` when reporting one)."""
        return OrderUpdate(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            book=self.request.book,
            instrument=self.request.instrument,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_price=round(self.avg_price),
            reason=self.reason if reason is None else reason,
            ts_ns=self.updated_ns if ts_ns is None else ts_ns,
            fill=fill,
        )

    def signed_remaining(self) -> int:
        """Open quantity, positive for a buy and negative for a sell."""
        return self.remaining if self.request.side is Side.BUY else -self.remaining

    def _move(self, status: OrderStatus, ts_ns: int) -> bool:
        if status not in LEGAL_TRANSITIONS[self.status]:
            raise IllegalTransition(f"order {self.client_order_id} cannot go from {self.status} to {status}")
        changed = status is not self.status
        self.status = status
        self.updated_ns = ts_ns
        return changed

    def _set_venue_id(self, venue_order_id: str | None) -> None:
        if not venue_order_id:
            return
        if self.venue_order_id and self.venue_order_id != venue_order_id:
            raise IllegalTransition(
                f"order {self.client_order_id} is venue order {self.venue_order_id}, not {venue_order_id}"
            )
        self.venue_order_id = venue_order_id


def _replace(request: OrderRequest, **changes: int) -> OrderRequest:
    return msgspec.structs.replace(request, **changes)
