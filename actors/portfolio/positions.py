"""Positions per (book, instrument, product): average price, realized P&L, day and overnight quantities.

A position is signed (short is negative). Adding to it moves the average price; reducing it
realizes P&L against the average and leaves the average alone; a fill larger than the position
closes it and opens the remainder on the other side at the fill price. Books never net: the
manual book and each strategy deployment hold their own positions in the same instrument.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from actors.orders import Product, Side
from actors.portfolio.charges import NO_CHARGES, Charges

MANUAL_BOOK = "manual"


class PositionKey(NamedTuple):
    book: str
    instrument: str
    product: Product


@dataclass(slots=True)
class Position:
    """One book's holding of one instrument under one product; money in paise.

    ``avg_price`` and ``realized_pnl`` are exact fractions of a paisa; ``charges`` are whole paise
    and are not part of ``realized_pnl`` (the summary shows both and their difference).
    """

    book: str
    instrument: str
    product: Product
    quantity: int = 0
    avg_price: Fraction = field(default_factory=Fraction)
    realized_pnl: Fraction = field(default_factory=Fraction)
    charges: Charges = NO_CHARGES
    overnight_quantity: int = 0  # signed, carried in at the start of the session
    day_buy_quantity: int = 0
    day_sell_quantity: int = 0
    day_buy_value: int = 0
    day_sell_value: int = 0

    @property
    def key(self) -> PositionKey:
        return PositionKey(self.book, self.instrument, self.product)

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    def apply_fill(self, side: Side, quantity: int, price: int) -> Fraction:
        """Book a fill of `quantity` units at `price` paise; returns the P&L it realized."""
        if quantity <= 0:
            raise ValueError(f"fill quantity must be positive, got {quantity}")
        signed = quantity if side is Side.BUY else -quantity
        if side is Side.BUY:
            self.day_buy_quantity += quantity
            self.day_buy_value += quantity * price
        else:
            self.day_sell_quantity += quantity
            self.day_sell_value += quantity * price
        held = self.quantity
        if held == 0 or (held > 0) == (signed > 0):
            total = abs(held) + quantity
            self.avg_price = (self.avg_price * abs(held) + price * quantity) / total
            self.quantity = held + signed
            return Fraction(0)
        closing = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        realized = (price - self.avg_price) * closing * direction
        self.realized_pnl += realized
        self.quantity = held + signed
        if self.quantity == 0:
            self.avg_price = Fraction(0)
        elif closing < quantity:  # flipped through zero: the rest opens at the fill price
            self.avg_price = Fraction(price)
        return realized

    def add_charges(self, charges: Charges) -> None:
        self.charges = self.charges + charges

    def unrealized_pnl(self, mark: int | None) -> Fraction:
        """P&L of the open quantity against `mark` paise (zero with no mark)."""
        if mark is None or self.quantity == 0:
            return Fraction(0)
        return (mark - self.avg_price) * self.quantity

    def roll_session(self) -> None:
        """The day ends: what is held becomes the overnight quantity, day counters restart."""
        self.overnight_quantity = self.quantity
        self.day_buy_quantity = self.day_sell_quantity = 0
        self.day_buy_value = self.day_sell_value = 0


class PositionBook:
    """All positions across books, keyed by (book, instrument, product)."""

    def __init__(self) -> None:
        self._positions: dict[PositionKey, Position] = {}

    def get(self, book: str, instrument: str, product: Product) -> Position:
        key = PositionKey(book, instrument, product)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = Position(book, instrument, product)
        return position

    def find(self, book: str, instrument: str, product: Product) -> Position | None:
        return self._positions.get(PositionKey(book, instrument, product))

    def net_quantity(self, book: str, instrument: str, product: Product) -> int:
        position = self.find(book, instrument, product)
        return position.quantity if position else 0

    def __iter__(self) -> Iterator[Position]:
        return iter(self._positions.values())

    def select(
        self, book: str | None = None, instrument: str | None = None, *, open_only: bool = False
    ) -> list[Position]:
        """Positions filtered by book and instrument, in a stable order."""
        chosen = [
            p
            for p in self._positions.values()
            if (book is None or p.book == book)
            and (instrument is None or p.instrument == instrument)
            and (not open_only or p.quantity != 0)
        ]
        return sorted(chosen, key=lambda p: (p.book, p.instrument, p.product.value))

    def books(self) -> list[str]:
        return sorted({p.book for p in self._positions.values()})
