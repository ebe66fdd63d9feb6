"""What the paper venue needs to know about an instrument: segment, lot, tick, expiry, strike.

Built from the scrip master by the caller (the actor), so the accounting never parses it.
Prices are paise, quantities are units (a NIFTY lot of 65 is quantity 65).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

import msgspec

from actors.orders import Product

# Exchange codes as the scrip master spells `exch_seg`.
CASH_EXCHANGES = frozenset({"NSE", "BSE"})
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO"})
COMMODITY_EXCHANGES = frozenset({"MCX", "NCDEX"})
SUPPORTED_EXCHANGES = CASH_EXCHANGES | DERIVATIVE_EXCHANGES | COMMODITY_EXCHANGES


class InstrumentKind(StrEnum):
    EQUITY = "EQUITY"
    FUTURE = "FUTURE"
    OPTION = "OPTION"
    INDEX = "INDEX"  # quoted, never traded


class OptionRight(StrEnum):
    CALL = "CE"
    PUT = "PE"


class InstrumentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One tradable instrument as the paper venue sees it.

    Parameters
    ----------
    key
        The stable key `EXCH:token`.
    symbol
        The trading symbol, for messages (`SBIN-EQ`, `NIFTY28JUL2623500CE`).
    kind
        Equity, future, option or index.
    lot_size
        Order quantities must be a multiple of this.
    tick_size
        Prices must be a multiple of this, in paise.
    expiry
        Last trading day of a future or option.
    strike
        Option strike in paise.
    right
        Call or put, for options.
    underlying
        Key of the underlying (`NSE:99926000` for NIFTY), whose last price settles options at expiry.
    """

    key: str
    symbol: str
    kind: InstrumentKind
    lot_size: int = 1
    tick_size: int = 5
    expiry: date | None = None
    strike: int = 0
    right: OptionRight | None = None
    underlying: str | None = None

    def __post_init__(self) -> None:
        exchange, _, token = self.key.partition(":")
        if not exchange or not token:
            raise ValueError(f"instrument key {self.key!r} is not EXCH:token")
        if exchange not in SUPPORTED_EXCHANGES:
            raise ValueError(f"{self.key}: exchange {exchange} is not supported by the paper venue")
        if self.lot_size <= 0:
            raise ValueError(f"{self.key}: lot size must be positive, got {self.lot_size}")
        if self.tick_size <= 0:
            raise ValueError(f"{self.key}: tick size must be positive, got {self.tick_size}")
        if self.kind in (InstrumentKind.FUTURE, InstrumentKind.OPTION) and self.expiry is None:
            raise ValueError(f"{self.key}: a {self.kind.value.lower()} needs an expiry date")
        if self.kind is InstrumentKind.OPTION and (self.right is None or self.strike <= 0):
            raise ValueError(f"{self.key}: an option needs a right (CE/PE) and a positive strike")
        if self.kind is InstrumentKind.EQUITY and exchange not in CASH_EXCHANGES:
            raise ValueError(f"{self.key}: equity trades on NSE or BSE, not {exchange}")

    @property
    def exchange(self) -> str:
        return self.key.partition(":")[0]

    @property
    def is_derivative(self) -> bool:
        return self.kind in (InstrumentKind.FUTURE, InstrumentKind.OPTION)

    @property
    def is_commodity(self) -> bool:
        return self.exchange in COMMODITY_EXCHANGES

    def intrinsic_value(self, underlying_price: int) -> int:
        """An option's value at expiry against the underlying's price, in paise."""
        if self.right is OptionRight.CALL:
            return max(0, underlying_price - self.strike)
        if self.right is OptionRight.PUT:
            return max(0, self.strike - underlying_price)
        raise ValueError(f"{self.key} is not an option")

    def product_error(self, product: Product) -> str | None:
        """Why `product` cannot be used on this instrument, or None when it can."""
        if self.kind is InstrumentKind.INDEX:
            return f"{self.symbol} is an index and cannot be traded"
        if self.is_derivative and product is Product.DELIVERY:
            return f"{self.symbol} is a derivative: use CARRYFORWARD or INTRADAY, not DELIVERY"
        if not self.is_derivative and product is Product.CARRYFORWARD:
            return (
                f"{self.symbol} is a cash-market instrument: use DELIVERY, INTRADAY or MARGIN, "
                "not CARRYFORWARD"
            )
        return None
