"""The instruments the simulator quotes: taken from the catalog, or made up when there is none.

The simulator needs only a little of each catalog row (exchange, token, symbol, tick size, lot size,
instrument type) plus a starting price, which no scrip master carries; that price is drawn
deterministically from the seed and the instrument key, so the same seed gives the same market.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from actors.angel.packets import EXCHANGE_TYPE

log = logging.getLogger(__name__)

DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "MCX", "CDS", "NCDEX"})


@dataclass(frozen=True, slots=True)
class SimInstrument:
    """One simulated instrument. Prices in paise, quantities in units."""

    exchange: str
    token: str
    symbol: str
    tick_size: int
    lot_size: int
    base_price: int  # the previous close: the circuit band and the walk start from it
    instrument_type: str = ""  # "" for cash equity, AMXIDX, FUTIDX, OPTSTK, ...

    def __post_init__(self) -> None:
        if self.exchange not in EXCHANGE_TYPE:
            known = ", ".join(sorted(EXCHANGE_TYPE))
            raise ValueError(f"{self.symbol}: unknown exchange {self.exchange!r}; expected one of {known}")
        if not self.token or len(self.token) > 24 or not self.token.isascii():
            raise ValueError(f"{self.symbol}: token {self.token!r} must be 1-24 ASCII characters")
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise ValueError(f"{self.key}: tick size and lot size must be positive")
        if self.base_price <= 0 or self.base_price % self.tick_size:
            raise ValueError(f"{self.key}: base price {self.base_price} is off the tick grid or not positive")

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.token}"

    @property
    def is_derivative(self) -> bool:
        return self.exchange in DERIVATIVE_EXCHANGES

    @property
    def is_index(self) -> bool:
        return self.instrument_type == "AMXIDX"


class CatalogRow(Protocol):
    """What the simulator reads from a catalog instrument (``catalog.Instrument`` has these)."""

    @property
    def exchange(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def tick_size(self) -> int: ...
    @property
    def lot_size(self) -> int: ...
    @property
    def instrument_type(self) -> str: ...


# Starting-price ranges in rupees, by instrument type.
_PRICE_RANGE_RUPEES = {
    "": (20, 4_000),
    "EQ": (20, 4_000),
    "AMXIDX": (10_000, 80_000),
    "FUTIDX": (10_000, 80_000),
    "FUTSTK": (100, 4_000),
    "OPTIDX": (5, 800),
    "OPTSTK": (2, 300),
    "FUTCOM": (100, 90_000),
    "OPTFUT": (10, 2_000),
    "FUTCUR": (50, 120),
    "OPTCUR": (1, 5),
}


def starting_price(key: str, instrument_type: str, tick_size: int, seed: int) -> int:
    """A deterministic previous close in paise, on the tick grid, for a key and seed."""
    low, high = _PRICE_RANGE_RUPEES.get(instrument_type, (50, 2_000))
    unit = zlib.crc32(f"{seed}:{key}".encode()) / 0xFFFFFFFF
    paise = int((low + unit * (high - low)) * 100)
    return max(tick_size, paise - paise % tick_size)


def universe_from_catalog(rows: Iterable[CatalogRow], count: int, seed: int) -> list[SimInstrument]:
    """The first ``count`` tradable rows of a catalog (indices included), with starting prices."""
    out: list[SimInstrument] = []
    for row in rows:
        if len(out) >= count:
            break
        if row.exchange not in EXCHANGE_TYPE or not row.token or len(row.token) > 24:
            continue
        tick = max(1, int(row.tick_size))
        key = f"{row.exchange}:{row.token}"
        out.append(
            SimInstrument(
                exchange=row.exchange,
                token=row.token,
                symbol=row.symbol,
                tick_size=tick,
                lot_size=max(1, int(row.lot_size)),
                base_price=starting_price(key, row.instrument_type, tick, seed),
                instrument_type=row.instrument_type,
            )
        )
    return out


def synthetic_universe(count: int, seed: int) -> list[SimInstrument]:
    """A small made-up market for when no catalog is at hand: mostly NSE equities, some F&O and MCX.

    Tokens and symbols are stable for a given count; prices depend on the seed.
    """
    # (exchange, token offset, symbol pattern, instrument type, tick size, lot size) by slot of ten
    shapes = [("NSE", 1_000, "SIM{:05d}-EQ", "", 5, 1)] * 7 + [
        ("NFO", 50_000, "SIMIDX{:05d}FUT", "FUTIDX", 10, 65),
        ("NFO", 50_000, "SIMIDX{:05d}CE", "OPTIDX", 5, 65),
        ("MCX", 400_000, "SIMCOM{:05d}FUT", "FUTCOM", 100, 1),
    ]
    out: list[SimInstrument] = []
    for i in range(count):
        exch, offset, pattern, kind, tick, lot = shapes[i % 10]
        token = str(offset + i)
        price = starting_price(f"{exch}:{token}", kind, tick, seed)
        out.append(SimInstrument(exch, token, pattern.format(i), tick, lot, price, kind))
    return out


def load_universe(count: int, seed: int, config: object | None = None) -> list[SimInstrument]:
    """Instruments from the project's catalog when it loads, else a synthetic universe.

    ``config`` is the whole project config the catalog loader takes; without it, or if the catalog
    cannot load, the simulator still starts on made-up instruments (and says so in the log).
    """
    if config is not None:
        try:
            import catalog

            load = getattr(catalog, "load_default_catalog", None)
            if load is not None:
                loaded = load(config)
                instruments = getattr(loaded, "instruments", loaded)
                rows = instruments() if callable(instruments) else instruments
                found = universe_from_catalog(rows, count, seed)
                if found:
                    return found
        except Exception as err:  # the simulator must start even when the catalog cannot
            log.warning("sim: catalog unavailable (%s); using %d synthetic instruments", err, count)
    return synthetic_universe(count, seed)
