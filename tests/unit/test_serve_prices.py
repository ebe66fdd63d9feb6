from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve.prices import PriceError, minor_to_rupees, paise_to_rupees, rupees_to_minor, rupees_to_paise


@pytest.mark.parametrize(
    ("value", "paise"),
    [
        ("101.05", 10105),
        (101.05, 10105),  # read through its shortest repr, not the binary expansion
        (0.07, 7),
        ("2345.6", 234560),
        (Decimal("2345.60"), 234560),
        (17, 1700),
        ("1e2", 10000),
        ("0", 0),
        ("-12.50", -1250),
        ("19999999.99", 1999999999),
    ],
)
def test_rupees_to_paise_is_exact(value: object, paise: int) -> None:
    assert rupees_to_paise(value) == paise  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("101.055", "more than 2 decimal places"),
        (0.1 + 0.2, "more than 2 decimal places"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        (float("inf"), "not a finite number"),
        (True, "not a boolean"),
        (None, "not a number"),
    ],
)
def test_inexact_or_malformed_prices_are_refused(value: object, reason: str) -> None:
    with pytest.raises(PriceError, match=reason):
        rupees_to_paise(value)  # type: ignore[arg-type]


def test_currency_derivative_scale() -> None:
    assert rupees_to_minor("83.1234567", 10**7) == 831234567
    assert minor_to_rupees(831234567, 10**7) == "83.1234567"
    with pytest.raises(PriceError, match="more than 7 decimal places"):
        rupees_to_minor("83.12345678", 10**7)


def test_scale_must_be_a_power_of_ten() -> None:
    with pytest.raises(PriceError, match="power of ten"):
        rupees_to_minor("1", 250)


@pytest.mark.parametrize(
    ("paise", "text"), [(0, "0.00"), (5, "0.05"), (234560, "2345.60"), (-1250, "-12.50"), (-5, "-0.05")]
)
def test_paise_to_rupees(paise: int, text: str) -> None:
    assert paise_to_rupees(paise) == text


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from([1, 100, 10**4, 10**7]))
def test_round_trip_through_rupee_strings(minor: int, scale: int) -> None:
    assert rupees_to_minor(minor_to_rupees(minor, scale), scale) == minor


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_any_two_place_decimal_converts_exactly(amount: Decimal) -> None:
    assert Decimal(rupees_to_paise(amount)) == amount * 100
