"""Catalog instruments as Nautilus Trader instruments (Equity, FuturesContract, OptionContract,
IndexInstrument), for the shards' engines and the backtest catalog.

- id: `SYMBOL.VENUE` with the exchange segment as venue (`SBIN-EQ.NSE`, `NIFTY28JUL2623500CE.NFO`);
- currency INR; price precision is the number of decimals the tick needs in rupees (₹0.05 → 2,
  ₹1 → 0, CDS ₹0.0025 → 4) and the increment is the tick itself, as Nautilus requires them equal;
- lot size is Angel's lot size (quantities are in units); multiplier 1, except CDS contracts,
  which are 1,000 units of the base currency quoted per unit (JPYINR per 100 yen on 100,000);
- expiry is the contract's last trading moment: 15:30 IST on NSE/BSE segments, 23:30 IST on
  MCX/NCDEX, 12:30 IST on CDS; strikes are in rupees.

The parts that repeat across instruments (venues, increments, quantities) are made once, so a
shard converting its whole universe pays a few microseconds per instrument.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cache, lru_cache
from typing import Final

from nautilus_trader.model.currencies import INR
from nautilus_trader.model.enums import AssetClass, OptionKind
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import Equity, FuturesContract, IndexInstrument, OptionContract
from nautilus_trader.model.instruments import Instrument as NautilusInstrument
from nautilus_trader.model.objects import Price, Quantity

from catalog.instrument import Instrument, InstrumentKind

_IST: Final = timezone(timedelta(hours=5, minutes=30))
_CLOSE_IST: Final = {"MCX": time(23, 30), "NCDEX": time(23, 30), "CDS": time(12, 30)}
_DEFAULT_CLOSE_IST: Final = time(15, 30)
_MULTIPLIER: Final = {"CDS": 1000}
_ASSET_CLASS: Final = {
    "FUTIDX": AssetClass.INDEX,
    "OPTIDX": AssetClass.INDEX,
    "FUTSTK": AssetClass.EQUITY,
    "OPTSTK": AssetClass.EQUITY,
    "FUTCUR": AssetClass.FX,
    "OPTCUR": AssetClass.FX,
}


def rupees(minor_units: int, price_scale: int) -> Decimal:
    """Exact rupee value of an amount in minor units."""
    return Decimal(minor_units) / Decimal(price_scale)


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite values only
    return max(0, -exponent)


@cache
def price_precision(tick_size: int, price_scale: int) -> int:
    """Decimals needed to write the tick in rupees."""
    return _decimals(rupees(tick_size, price_scale))


@cache
def _increment(tick_size: int, price_scale: int) -> Price:
    return Price(rupees(tick_size, price_scale), price_precision(tick_size, price_scale))


@cache
def _venue(exchange: str) -> Venue:
    return Venue(exchange)


@lru_cache(maxsize=4096)
def _quantity(units: int) -> Quantity:
    return Quantity.from_int(units)


@lru_cache(maxsize=4096)
def _expiration_ns(expiry: date, exchange: str) -> int:
    close = _CLOSE_IST.get(exchange, _DEFAULT_CLOSE_IST)
    moment = datetime.combine(expiry, close, tzinfo=_IST)
    return int(moment.astimezone(UTC).timestamp()) * 1_000_000_000


def to_price(instrument: Instrument, minor_units: int) -> Price:
    """A price in the instrument's minor units (as the feed sends it) as a Nautilus Price."""
    precision = price_precision(instrument.tick_size, instrument.price_scale)
    return Price(rupees(minor_units, instrument.price_scale), precision)


def to_nautilus(instrument: Instrument, ts_init: int = 0) -> NautilusInstrument:
    """The Nautilus instrument for a catalog instrument (see the module docstring).

    Parameters
    ----------
    instrument : Instrument
        The catalog instrument.
    ts_init : int, optional
        UNIX nanoseconds to stamp as `ts_event` and `ts_init`.
    """
    instrument_id = InstrumentId(Symbol(instrument.symbol), _venue(instrument.exchange))
    raw_symbol = Symbol(instrument.symbol)
    precision = price_precision(instrument.tick_size, instrument.price_scale)
    increment = _increment(instrument.tick_size, instrument.price_scale)
    info = {"token": instrument.token, "key": instrument.key}
    kind = instrument.kind
    if kind is InstrumentKind.EQUITY:
        return Equity(
            instrument_id=instrument_id,
            raw_symbol=raw_symbol,
            currency=INR,
            price_precision=precision,
            price_increment=increment,
            lot_size=_quantity(instrument.lot_size),
            ts_event=ts_init,
            ts_init=ts_init,
            info=info,
        )
    if kind is InstrumentKind.INDEX:
        return IndexInstrument(
            instrument_id=instrument_id,
            raw_symbol=raw_symbol,
            currency=INR,
            price_precision=precision,
            size_precision=0,
            price_increment=increment,
            size_increment=_quantity(1),
            ts_event=ts_init,
            ts_init=ts_init,
            info=info,
        )
    assert instrument.expiry is not None  # futures and options always carry one (see scrip.py)
    asset_class = _ASSET_CLASS.get(instrument.instrument_type, AssetClass.COMMODITY)
    common = {
        "instrument_id": instrument_id,
        "raw_symbol": raw_symbol,
        "asset_class": asset_class,
        "currency": INR,
        "price_precision": precision,
        "price_increment": increment,
        "multiplier": _quantity(_MULTIPLIER.get(instrument.exchange, 1)),
        "lot_size": _quantity(instrument.lot_size),
        "underlying": instrument.name,
        "activation_ns": 0,
        "expiration_ns": _expiration_ns(instrument.expiry, instrument.exchange),
        "ts_event": ts_init,
        "ts_init": ts_init,
        "info": info,
    }
    if kind is InstrumentKind.FUTURE:
        return FuturesContract(**common)
    assert instrument.strike is not None
    strike = rupees(instrument.strike, instrument.price_scale)
    return OptionContract(
        **common,
        option_kind=OptionKind.CALL if instrument.option_type == "CE" else OptionKind.PUT,
        strike_price=Price(strike, max(precision, _decimals(strike))),
    )
