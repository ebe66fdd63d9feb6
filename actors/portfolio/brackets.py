"""Bracket orders: an entry, then a stop-loss and a target exit that cancel each other.

- The exits exist only once the entry fills, and cover exactly what has filled and not yet exited:
  a partly filled entry protects the filled part, and each further entry fill grows the exits.
- The target is a LIMIT order resting at the venue. The stop-loss is held by the portfolio and,
  when the last price reaches it, becomes a MARKET exit after the target is cancelled in the same
  step. Holding the stop back this way means the two exits can never both fill on one quote.
- A target fill shrinks what the stop covers; when nothing is left covered and the entry is done,
  the bracket is closed.
- A trailing stop moves in steps of ``trail`` paise: each time the price gains another ``trail``
  beyond the anchor (the entry's first fill price to begin with), the stop and the anchor move by
  ``trail`` in the trade's favour. It never moves back.
- Cancelling before any fill cancels the whole bracket; squaring off cancels the remaining leg and
  exits at market.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from actors.orders import OrderType, Product, Side
from actors.portfolio.instruments import InstrumentSpec
from actors.portfolio.money import format_rupees


class BracketStatus(StrEnum):
    PENDING = "PENDING"  # entry working, nothing filled
    ACTIVE = "ACTIVE"  # some entry filled; exits protect it
    CLOSED = "CLOSED"  # everything that entered has exited
    CANCELLED = "CANCELLED"  # cancelled before the entry filled


class BracketSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A bracket as placed."""

    bracket_id: str
    book: str
    instrument: str
    side: Side  # the entry's side; exits take the other
    quantity: int
    product: Product
    entry_type: OrderType  # MARKET or LIMIT
    entry_price: int  # paise; 0 for a MARKET entry
    stop_loss: int  # paise, a trigger on the last price
    target: int  # paise, the exit LIMIT price
    trailing_stop: int = 0  # paise per step; 0 = no trailing
    created_ts_ns: int = 0

    @property
    def exit_side(self) -> Side:
        return Side.SELL if self.side is Side.BUY else Side.BUY


@dataclass(slots=True)
class Bracket:
    """A bracket's live state, rebuilt from the journal's records of its orders."""

    spec: BracketSpec
    stop_loss: int
    target: int
    trailing_stop: int
    status: BracketStatus = BracketStatus.PENDING
    entry_order_id: str = ""
    target_order_id: str | None = None
    stop_order_id: str | None = None
    exit_order_ids: list[str] = field(default_factory=list)  # square-off exits
    entry_filled: int = 0
    exited: int = 0
    anchor: int | None = None
    reason: str = ""

    @classmethod
    def placed(cls, spec: BracketSpec) -> Bracket:
        return cls(spec=spec, stop_loss=spec.stop_loss, target=spec.target, trailing_stop=spec.trailing_stop)

    @property
    def bracket_id(self) -> str:
        return self.spec.bracket_id

    @property
    def protected(self) -> int:
        """Quantity filled by the entry and not yet exited: what the exits cover."""
        return self.entry_filled - self.exited

    @property
    def is_live(self) -> bool:
        return self.status in (BracketStatus.PENDING, BracketStatus.ACTIVE)

    @property
    def stop_fired(self) -> bool:
        return self.stop_order_id is not None

    def stop_reached(self, ltp: int) -> bool:
        if self.spec.side is Side.BUY:
            return ltp <= self.stop_loss
        return ltp >= self.stop_loss

    def trailed_stop(self, ltp: int) -> tuple[int, int] | None:
        """The new (stop, anchor) if `ltp` has gained whole trailing steps beyond the anchor."""
        if not self.trailing_stop or self.anchor is None or self.stop_fired:
            return None
        gain = ltp - self.anchor if self.spec.side is Side.BUY else self.anchor - ltp
        steps = gain // self.trailing_stop
        if steps <= 0:
            return None
        move = steps * self.trailing_stop
        if self.spec.side is Side.BUY:
            return self.stop_loss + move, self.anchor + move
        return self.stop_loss - move, self.anchor - move


class BracketError(ValueError):
    """A bracket that cannot be placed or changed; the message says what to fix."""


def check_levels(
    spec: InstrumentSpec, side: Side, reference: int, stop_loss: int, target: int, trail: int
) -> None:
    """Stop and target on the right sides of `reference` (the entry price, or the last price)."""
    for what, value in (("stop-loss", stop_loss), ("target", target), ("trailing stop", trail)):
        if value < 0 or (value == 0 and what != "trailing stop"):
            raise BracketError(f"{what} must be above zero, got {format_rupees(value)}")
        if value % spec.tick_size:
            raise BracketError(
                f"{what} {format_rupees(value)} is not a multiple of the tick size "
                f"{format_rupees(spec.tick_size)} for {spec.symbol}"
            )
    if side is Side.BUY and not stop_loss < reference < target:
        raise BracketError(
            f"a BUY bracket needs stop-loss < {format_rupees(reference)} < target; got stop-loss "
            f"{format_rupees(stop_loss)} and target {format_rupees(target)}"
        )
    if side is Side.SELL and not target < reference < stop_loss:
        raise BracketError(
            f"a SELL bracket needs target < {format_rupees(reference)} < stop-loss; got target "
            f"{format_rupees(target)} and stop-loss {format_rupees(stop_loss)}"
        )
