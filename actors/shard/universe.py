"""The instruments a shard trades: each catalog instrument's dense id, stable key and Nautilus form.

The catalog (`catalog.nautilus.to_nautilus`) is the one place that maps a scrip-master row to a
Nautilus instrument; `ShardInstrument.from_catalog` uses it. `ShardInstrument.equity` builds a
cash-equity instrument directly, for tests and benchmarks that run without a catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from nautilus_trader.model.currencies import INR
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import FIXED_PRECISION, Price, Quantity

from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from nautilus_trader.model.instruments import Instrument

# Angel's exchange segments, which are also the Nautilus venues of our instrument ids.
VENUES = ("NSE", "BSE", "NFO", "BFO", "MCX", "CDS", "NCDEX")

# Minor units per rupee in transport: paise, except currency derivatives (1e-7 rupee).
PAISE = 100
CURRENCY_DERIVATIVE_SCALE = 10**7


@dataclass(frozen=True)
class ShardInstrument:
    """One instrument of a shard's universe.

    Parameters
    ----------
    iid : int
        The catalog's dense id for the day (the tick batch's `iid` column).
    key : str
        The stable key "EXCH:token" used by the router and the execution actor.
    instrument : Instrument
        The Nautilus instrument (id "SYMBOL.VENUE", precision, lot size).
    price_scale : int
        Minor units per rupee of the transport prices (100, or 10**7 for CDS).
    """

    iid: int
    key: str
    instrument: Instrument
    price_scale: int = PAISE

    def __post_init__(self) -> None:
        precision = self.instrument.price_precision
        scale_digits = len(str(self.price_scale)) - 1
        if self.price_scale != 10**scale_digits or scale_digits > FIXED_PRECISION:
            raise ShardlineError(f"{self.key}: price scale {self.price_scale} is not a power of ten ≤ 1e16")
        if precision > scale_digits:
            # A Price finer than the transport unit could never be produced from a tick.
            raise ShardlineError(
                f"{self.key}: instrument precision {precision} is finer than "
                f"the transport unit 1/{self.price_scale}"
            )

    @property
    def instrument_id(self) -> InstrumentId:
        return self.instrument.id

    @classmethod
    def from_catalog(cls, entry: Any) -> ShardInstrument:
        """Build from a `catalog.Instrument` (iid, key, price_scale) with the catalog's own mapping."""
        from catalog.nautilus import to_nautilus  # the catalog is the one mapping

        return cls(
            iid=int(entry.iid),
            key=str(entry.key),
            instrument=to_nautilus(entry),
            price_scale=int(entry.price_scale),
        )

    @classmethod
    def equity(
        cls,
        iid: int,
        symbol: str,
        token: str,
        venue: str = "NSE",
        tick_paise: int = 5,
        lot_size: int = 1,
    ) -> ShardInstrument:
        """A cash-equity instrument priced in paise (tick 5 paise = ₹0.05), for tests and benchmarks."""
        if venue not in VENUES:
            raise ShardlineError(f"unknown venue {venue!r}; expected one of {', '.join(VENUES)}")
        if tick_paise <= 0 or lot_size <= 0:
            raise ShardlineError(f"{symbol}: tick size and lot size must be positive")
        increment = Price(Decimal(tick_paise) / PAISE, 2)
        instrument = Equity(
            instrument_id=InstrumentId(Symbol(symbol), Venue(venue)),
            raw_symbol=Symbol(symbol),
            currency=INR,
            price_precision=2,
            price_increment=increment,
            lot_size=Quantity.from_int(lot_size),
            ts_event=0,
            ts_init=0,
        )
        return cls(iid=iid, key=f"{venue}:{token}", instrument=instrument, price_scale=PAISE)
