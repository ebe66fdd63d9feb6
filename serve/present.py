"""What actors return, shaped for the API edge: money fields become exact rupee strings.

The actors speak integer paise; the API speaks rupees. Money fields are recognised by name (one
list, below) so a field an actor adds later is still converted if it is money, and left alone if
not. A `Fraction` (the portfolio's exact P&L) is rounded half-even to the minor unit here, once; a
`Decimal` is taken as rupees already and written out exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from enum import Enum
from fractions import Fraction
from typing import Any

import msgspec

from serve.prices import PAISE_PER_RUPEE, minor_to_rupees

MONEY_FIELDS = frozenset(
    {
        "price",
        "trigger_price",
        "avg_price",
        "average_price",
        "buy_avg",
        "sell_avg",
        "buy_value",
        "sell_value",
        "ltp",
        "last_price",
        "mark",
        "bid",
        "ask",
        "open",
        "high",
        "low",
        "close",
        "prev_close",
        "change",
        "upper_circuit",
        "lower_circuit",
        "strike",
        "tick_size",
        "value",
        "turnover",
        "margin",
        "margin_used",
        "margin_available",
        "cash",
        "available_cash",
        "starting_cash",
        "equity",
        "charges",
        "pnl",
        "realised_pnl",
        "realized_pnl",
        "unrealised_pnl",
        "unrealized_pnl",
        "day_pnl",
        "total_pnl",
        "net_pnl",
        "gross_pnl",
        "stop_loss",
        "target",
        "trailing_stop",
        "entry_price",
        "exit_price",
        "limit_price",
        "daily_loss",
        "max_order_value",
        "daily_loss_limit",
        "global_daily_loss_limit",
        "max_drawdown",
        "gross_exposure",
        "net_exposure",
        "margin_blocked",
        "commission",
    }
)
# Fields whose every value is an amount (a breakdown of charges by kind, marks by instrument).
MONEY_MAPS = frozenset({"charge_breakdown", "marks"})


def to_builtins(value: Any) -> Any:
    """Structs, dataclasses and enums as plain dicts, lists and scalars (Fractions kept)."""
    if isinstance(value, msgspec.Struct):
        return {f: to_builtins(getattr(value, f)) for f in value.__struct_fields__}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_builtins(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_builtins(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Fraction | Decimal | int | float | str | bool) or value is None:
        return value
    return str(value)


def money(value: Any, scale: int = PAISE_PER_RUPEE) -> Any:
    """One amount in minor units as a rupee string; anything that is not an amount is returned as is.

    A `Decimal` is already rupees (actors use it for amounts they report in rupees): it is only
    written out, exactly.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int):
        return minor_to_rupees(value, scale)
    if isinstance(value, Fraction):
        rounded = (Decimal(value.numerator) / Decimal(value.denominator)).quantize(0, ROUND_HALF_EVEN)
        return minor_to_rupees(int(rounded), scale)
    return value


def present(value: Any, scale: int = PAISE_PER_RUPEE) -> Any:
    """Convert every money field of a (nested) actor result to rupee strings."""
    value = to_builtins(value)
    return _present(value, scale)


def _present(value: Any, scale: int) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                money(v, scale)
                if k in MONEY_FIELDS
                else {n: money(a, scale) for n, a in v.items()}
                if k in MONEY_MAPS and isinstance(v, dict)
                else _present(v, scale)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_present(v, scale) for v in value]
    if isinstance(value, Fraction | Decimal):
        return str(value)
    return value
