"""Margin: what a position or an order blocks out of the paper account's cash, in whole paise.

=====================================  ===========================================================
what                                   margin
=====================================  ===========================================================
equity DELIVERY (long, or short when   100% of the value (the shares are paid for in full)
allowed)
equity INTRADAY or MARGIN              ``intraday_margin_fraction`` of the value
futures (any product)                  ``fno_margin_fraction`` of the value: a flat SPAN-like share
                                       of the notional, the same for every lot
long options                           100% of the premium
short options                          ``fno_margin_fraction`` of strike × quantity, the notional
                                       the writer is exposed to
=====================================  ===========================================================

Positions are margined at their average entry price and orders at their reference price (the limit,
or the touch for a market order), so the figure is a function of the trades alone: the same journal
rebuilds the same margins. Fractions round up to the paisa, in the exchange's favour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from actors.orders import Product
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec


@dataclass(frozen=True)
class MarginPolicy:
    intraday_fraction: Fraction
    fno_fraction: Fraction

    def __post_init__(self) -> None:
        for name in ("intraday_fraction", "fno_fraction"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")

    @classmethod
    def from_fractions(cls, intraday: float | str, fno: float | str) -> MarginPolicy:
        """From config floats, through their decimal text so 0.2 is exactly 1/5."""
        return cls(Fraction(str(intraday)), Fraction(str(fno)))

    def rate(self, spec: InstrumentSpec, product: Product, long: bool) -> Fraction:
        """The share of notional blocked, and what notional means, for one direction."""
        if spec.kind is InstrumentKind.OPTION:
            return Fraction(1) if long else self.fno_fraction
        if spec.kind is InstrumentKind.FUTURE:
            return self.fno_fraction
        if product is Product.DELIVERY:
            return Fraction(1)
        return self.intraday_fraction

    def requirement(
        self, spec: InstrumentSpec, product: Product, quantity: int, price: Fraction | int
    ) -> int:
        """Margin for a signed `quantity` at `price` paise per unit."""
        if quantity == 0:
            return 0
        long = quantity > 0
        per_unit = (
            Fraction(spec.strike) if spec.kind is InstrumentKind.OPTION and not long else Fraction(price)
        )
        return math.ceil(self.rate(spec, product, long) * abs(quantity) * per_unit)

    def is_leveraged(self, spec: InstrumentSpec, product: Product, quantity: int) -> bool:
        """Whether a position is carried on margin, so its mark-to-market losses come out of cash."""
        return self.rate(spec, product, quantity > 0) < 1
