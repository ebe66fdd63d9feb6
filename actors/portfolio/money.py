"""Exact money: integer paise inside, Decimal at the edges, never float.

Cash flows, charges and margins are whole paise (`int`). An average price, and so a realized or
unrealized P&L measured against it, can be a fraction of a paisa (buy 1 @ 100, 2 @ 101: the
average is 302/3); those stay `Fraction` until shown, so every identity between them holds exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

PAISE_PER_RUPEE = 100
_CENT = Decimal("0.01")


def rupees_to_paise(rupees: Decimal | int | float | str) -> int:
    """Whole paise for a rupee amount; refuses amounts with a fraction of a paisa.

    Floats (from YAML config) go through their shortest decimal form, so 1e7 is exact.
    """
    value = Decimal(str(rupees)) if isinstance(rupees, float) else Decimal(rupees)
    paise = value * PAISE_PER_RUPEE
    if paise != paise.to_integral_value():
        raise ValueError(f"{rupees} rupees is not a whole number of paise")
    return int(paise)


def paise_to_rupees(paise: int) -> Decimal:
    """Rupees, exact, for a whole number of paise."""
    return (Decimal(paise) / PAISE_PER_RUPEE).quantize(_CENT)


def round_paise(amount: Decimal) -> int:
    """Whole paise for a computed charge: half a paisa rounds up, as contract notes do."""
    return int(amount.to_integral_value(rounding=ROUND_HALF_UP))


def fraction_to_decimal(value: Fraction | int, places: int = 2) -> Decimal:
    """A fraction of paise shown to `places` decimals (banker's rounding, so no drift upward)."""
    quantum = Decimal(1).scaleb(-places)
    exact = (
        Decimal(value.numerator) / Decimal(value.denominator)
        if isinstance(value, Fraction)
        else Decimal(value)
    )
    return exact.quantize(quantum, rounding=ROUND_HALF_EVEN)


def format_rupees(paise: int | Fraction) -> str:
    """`₹1,234.50` for messages a trader reads."""
    rupees = fraction_to_decimal(Fraction(paise) / PAISE_PER_RUPEE)
    sign = "-" if rupees < 0 else ""
    return f"{sign}₹{abs(rupees):,.2f}"
