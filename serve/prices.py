"""Rupees at the API edge, integer minor units (paise) everywhere behind it.

The terminal speaks rupees as decimal strings (``"2345.60"``); the actors speak int64 paise, exactly
as Angel sends them. Currency derivatives use a 1e-7 rupee minor unit, so the scale is a parameter.
Conversions are exact: a price with more decimal places than the minor unit allows is refused, never
rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PAISE_PER_RUPEE = 100


class PriceError(ValueError):
    """A price that cannot be represented exactly in the instrument's minor unit."""


def _decimal_places(scale: int) -> int:
    places = len(str(scale)) - 1
    if scale <= 0 or 10**places != scale:
        raise PriceError(f"price scale must be a power of ten, got {scale}")
    return places


def rupees_to_minor(value: Decimal | str | int | float, scale: int = PAISE_PER_RUPEE) -> int:
    """Convert a rupee amount to integer minor units, refusing anything inexact.

    Parameters
    ----------
    value
        Rupees as a decimal string, ``Decimal``, ``int`` or ``float``. Floats are read through their
        shortest repr (``101.05`` is ``Decimal("101.05")``, not its binary expansion).
    scale
        Minor units per rupee: 100 for paise, 10**7 for currency derivatives.

    Raises
    ------
    PriceError
        When the value is not a finite number, or has more decimal places than ``scale`` allows.
    """
    places = _decimal_places(scale)
    if isinstance(value, bool):
        raise PriceError("a price must be a number, not a boolean")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise PriceError(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise PriceError(f"{value!r} is not a finite number")
    minor = amount.scaleb(places)
    if minor != minor.to_integral_value():
        raise PriceError(f"{value} has more than {places} decimal places")
    return int(minor)


def rupees_to_paise(value: Decimal | str | int | float) -> int:
    return rupees_to_minor(value, PAISE_PER_RUPEE)


def minor_to_rupees(minor: int, scale: int = PAISE_PER_RUPEE) -> str:
    """Format integer minor units as an exact rupee string (``234560`` → ``"2345.60"``)."""
    places = _decimal_places(scale)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(int(minor)), scale)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{places}d}"


def paise_to_rupees(paise: int) -> str:
    return minor_to_rupees(paise, PAISE_PER_RUPEE)
