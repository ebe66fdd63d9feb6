"""One tradable (or index) instrument from Angel's scrip master, in the units the system uses.

Prices are integers in the exchange's minor unit: paise (1/100 rupee), or 1e-7 rupee for
currency derivatives (CDS), exactly as Angel's market-data packets carry them. The catalog
gives every instrument a dense `iid` (0..n-1) for array lookups in the hot path; `key`
("EXCH:token") is the identity that is stable across days.
"""

from __future__ import annotations

from datetime import date
from enum import IntEnum
from typing import Final

import msgspec


class InstrumentKind(IntEnum):
    """Broad kind; the order also ranks search results and orders iids (cash first)."""

    EQUITY = 0
    INDEX = 1
    FUTURE = 2
    OPTION = 3


# Exchange segments Angel's scrip master uses, in the order the catalog ranks them.
EXCHANGES: Final = ("NSE", "BSE", "NFO", "BFO", "MCX", "CDS", "NCDEX")
CASH_EXCHANGES: Final = frozenset({"NSE", "BSE"})
DERIVATIVE_EXCHANGES: Final = frozenset({"NFO", "BFO", "MCX", "CDS", "NCDEX"})

# Angel leaves a cash equity's instrumenttype empty; the catalog calls it EQ.
EQUITY_TYPE: Final = "EQ"

# instrumenttype -> kind. Anything else (interest-rate futures, auction series, ...) is skipped
# at load and counted as an unknown type.
INSTRUMENT_KINDS: Final[dict[str, InstrumentKind]] = {
    EQUITY_TYPE: InstrumentKind.EQUITY,
    "AMXIDX": InstrumentKind.INDEX,
    "FUTIDX": InstrumentKind.FUTURE,
    "FUTSTK": InstrumentKind.FUTURE,
    "FUTCOM": InstrumentKind.FUTURE,
    "FUTCUR": InstrumentKind.FUTURE,
    "OPTIDX": InstrumentKind.OPTION,
    "OPTSTK": InstrumentKind.OPTION,
    "OPTFUT": InstrumentKind.OPTION,
    "OPTCOM": InstrumentKind.OPTION,
    "OPTCUR": InstrumentKind.OPTION,
}

RUPEE_SCALE: Final = 100  # paise per rupee
CURRENCY_DERIVATIVE_SCALE: Final = 10**7  # CDS prices and strikes are in 1e-7 rupee


def price_scale_for(exchange: str) -> int:
    """Minor units per rupee for prices on `exchange`."""
    return CURRENCY_DERIVATIVE_SCALE if exchange == "CDS" else RUPEE_SCALE


class Instrument(msgspec.Struct, frozen=True, gc=False):
    """An instrument of the day's scrip master.

    Parameters
    ----------
    iid : int
        Dense index (0..n-1) for the day; the same file always gives the same iids.
    exchange : str
        Angel's exchange segment (`exch_seg`): NSE, BSE, NFO, BFO, MCX, CDS, NCDEX.
    token : str
        Angel's token, unique within `exchange` only.
    symbol : str
        Angel's trading symbol (`SBIN-EQ`, `NIFTY28JUL2623500CE`).
    name : str
        Angel's name field: the company or the underlying (`SBIN`, `NIFTY`).
    instrument_type : str
        Angel's `instrumenttype`, with an empty one (cash equity) given as `EQ`.
    expiry : date | None
        Expiry date of a future or option.
    strike : int | None
        Option strike in minor units (paise, or 1e-7 rupee on CDS).
    option_type : str | None
        "CE" or "PE" for options.
    lot_size : int
        Units per lot (the order quantity step).
    tick_size : int
        Price increment in minor units.
    price_scale : int
        Minor units per rupee: 100, or 10**7 on CDS.
    """

    iid: int
    exchange: str
    token: str
    symbol: str
    name: str
    instrument_type: str
    expiry: date | None
    strike: int | None
    option_type: str | None
    lot_size: int
    tick_size: int
    price_scale: int

    @property
    def key(self) -> str:
        """Stable identity across days and processes: "EXCH:token"."""
        return f"{self.exchange}:{self.token}"

    @property
    def nautilus_id(self) -> str:
        """The Nautilus instrument id string, "SYMBOL.VENUE" (venue = exchange segment)."""
        return f"{self.symbol}.{self.exchange}"

    @property
    def kind(self) -> InstrumentKind:
        return INSTRUMENT_KINDS[self.instrument_type]

    @property
    def is_derivative(self) -> bool:
        return self.expiry is not None

    @property
    def underlying(self) -> str | None:
        """The underlying's name for a future or option (`NIFTY`, `SBIN`); None for cash and indices."""
        return self.name if self.expiry is not None else None

    @property
    def series(self) -> str | None:
        """NSE cash series from the symbol suffix (`EQ`, `BE`, ...); None elsewhere."""
        if self.exchange != "NSE" or self.instrument_type != EQUITY_TYPE:
            return None
        _, dash, suffix = self.symbol.rpartition("-")
        return suffix if dash else None

    def to_rupees(self, minor_units: int) -> str:
        """Format a price in minor units as an exact decimal rupee string (for display and logs)."""
        digits = 7 if self.price_scale == CURRENCY_DERIVATIVE_SCALE else 2
        sign = "-" if minor_units < 0 else ""
        whole, frac = divmod(abs(minor_units), self.price_scale)
        return f"{sign}{whole}.{frac:0{digits}d}"
