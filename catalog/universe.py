"""Deployment universes from short queries: "NSE equities", "NIFTY weekly options ±10 strikes".

Forms understood (case-insensitive; `±N` may also be written `+-N` or `+/-N`):

=========================================  ===================================================
"NSE equities" / "BSE equities"            cash equities (NSE: the EQ and BE series), by name;
                                           "... top N" keeps the first N
"NSE indices" / "BSE indices"              the exchange's index rows
"NIFTY 50 constituents"                    the fixed list `catalog.synth.NIFTY_50` on NSE
"<UNDERLYING> futures"                     its futures, nearest expiry first
"<UNDERLYING> options ±N strikes"          the nearest expiry's chain, N strikes either side
                                           of the ATM strike (all strikes without "±N")
"<UNDERLYING> weekly options ±N strikes"   the same, for an underlying with weekly expiries
"<UNDERLYING> monthly options ±N strikes"  the nearest monthly (last of its month) expiry
=========================================  ===================================================

ATM is the strike nearest to `atm_prices[<UNDERLYING>]` (or `atm_prices["EXCH:token"]` of the
underlying's cash instrument), in the chain's minor units; without it, the underlying's base
price (`catalog.synth.base_price_paise`). `limit` keeps the first `limit` of the result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING

import polars as pl

from catalog.instrument import EQUITY_TYPE, InstrumentKind
from catalog.synth import NIFTY_50, base_price_paise, underlying_price
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.catalog import InstrumentCatalog, OptionChain
    from catalog.instrument import Instrument

log = logging.getLogger(__name__)

FORMS = (
    '"NSE equities"',
    '"BSE equities"',
    '"NSE equities top N"',
    '"NSE indices"',
    '"NIFTY 50 constituents"',
    '"<UNDERLYING> futures"',
    '"<UNDERLYING> options ±N strikes"',
    '"<UNDERLYING> weekly options ±N strikes"',
    '"<UNDERLYING> monthly options ±N strikes"',
)

_CASH = re.compile(r"^(?P<exchange>nse|bse) (?P<what>equities|indices)(?: top (?P<top>\d+))?$")
_CONSTITUENTS = re.compile(r"^nifty ?50 constituents$")
_FUTURES = re.compile(r"^(?P<underlying>\S+) futures$")
_OPTIONS = re.compile(
    r"^(?P<underlying>\S+) (?:(?P<cycle>weekly|monthly) )?options"
    r"(?: (?:±|\+-|\+/-) ?(?P<width>\d+) strikes?)?$"
)
# NSE's cash series that are shares (others are bonds, gold bonds, T-bills and the like)
_EQUITY_SERIES = ("-EQ", "-BE")


def _unknown(query: str) -> ShardlineError:
    return ShardlineError(f"unknown universe query {query!r}; understood forms: {', '.join(FORMS)}")


def select_universe(
    catalog: InstrumentCatalog,
    query: str,
    limit: int | None = None,
    atm_prices: Mapping[str, int] | None = None,
) -> list[Instrument]:
    """The instruments a universe query names (see the module docstring).

    Raises
    ------
    ShardlineError
        If the query has none of the understood forms, or names an underlying, expiry cycle
        or list that the catalog does not have.
    """
    if limit is not None and limit < 1:
        raise ShardlineError(f"universe query {query!r}: limit must be at least 1, got {limit}")
    text = " ".join(query.strip().lower().split())
    if match := _CASH.match(text):
        if match["top"] is not None:
            top = int(match["top"])
            if top < 1:
                raise ShardlineError(f"universe query {query!r}: top must be at least 1")
            limit = top if limit is None else min(limit, top)
        found = _cash(catalog, match["exchange"].upper(), match["what"] == "indices")
    elif _CONSTITUENTS.match(text):
        found = _nifty_50(catalog)
    elif match := _FUTURES.match(text):
        underlying = match["underlying"].upper()
        found = catalog.futures(underlying)
        if not found:
            raise ShardlineError(f"universe query {query!r}: no {underlying} futures in the catalog")
    elif match := _OPTIONS.match(text):
        width = int(match["width"]) if match["width"] else None
        found = _options(catalog, match["underlying"].upper(), match["cycle"], width, atm_prices or {})
    else:
        raise _unknown(query)
    return found[:limit] if limit is not None else found


def _cash(catalog: InstrumentCatalog, exchange: str, indices: bool) -> list[Instrument]:
    frame = catalog.frame().with_row_index("iid").filter(pl.col("exchange") == exchange)
    if indices:
        frame = frame.filter(pl.col("kind") == int(InstrumentKind.INDEX))
    else:
        frame = frame.filter(pl.col("instrument_type") == EQUITY_TYPE)
        if exchange == "NSE":
            frame = frame.filter(
                pl.col("symbol").str.ends_with(_EQUITY_SERIES[0])
                | pl.col("symbol").str.ends_with(_EQUITY_SERIES[1])
            )
    return [catalog.by_iid(iid) for iid in frame.get_column("iid").to_list()]


def _nifty_50(catalog: InstrumentCatalog) -> list[Instrument]:
    found: list[Instrument] = []
    missing: list[str] = []
    for name in NIFTY_50:
        instrument = catalog.resolve_symbol("NSE", f"{name}-EQ")
        if instrument is None:
            missing.append(name)
        else:
            found.append(instrument)
    if not found:
        raise ShardlineError("universe query 'NIFTY 50 constituents': none of the 50 is listed on NSE")
    if missing:
        log.warning("NIFTY 50 constituents not in the catalog: %s", ", ".join(missing))
    return found


def _monthly(expiries: list[date]) -> list[date]:
    """Expiries that are the last listed one of their calendar month."""
    return [
        e
        for i, e in enumerate(expiries)
        if i + 1 == len(expiries) or (expiries[i + 1].year, expiries[i + 1].month) != (e.year, e.month)
    ]


def _options(
    catalog: InstrumentCatalog,
    underlying: str,
    cycle: str | None,
    width: int | None,
    atm_prices: Mapping[str, int],
) -> list[Instrument]:
    if not catalog.derivative_exchanges(underlying):
        raise ShardlineError(f"no futures or options on {underlying!r} in the catalog")
    expiries = catalog.expiries(underlying)
    if not expiries:
        raise ShardlineError(f"no {underlying} options in the catalog (it has futures only)")
    monthly = _monthly(expiries)
    if cycle == "weekly" and len(monthly) == len(expiries):
        listed = ", ".join(str(e) for e in expiries)
        raise ShardlineError(f"{underlying} has no weekly options; its expiries are all monthly: {listed}")
    expiry = monthly[0] if cycle == "monthly" else expiries[0]
    chain = catalog.option_chain(underlying, expiry)
    if width is None:
        return chain.instruments()
    atm = _atm_price(catalog, underlying, chain, atm_prices)
    centre = chain.nearest_strike_index(atm)
    rows = chain.rows[max(0, centre - width) : centre + width + 1]
    return [leg for row in rows for leg in (row.call, row.put) if leg is not None]


def _atm_price(
    catalog: InstrumentCatalog, underlying: str, chain: OptionChain, atm_prices: Mapping[str, int]
) -> int:
    if underlying in atm_prices:
        return int(atm_prices[underlying])
    spot = catalog.spot(underlying)
    if spot is not None and spot.key in atm_prices:
        return int(atm_prices[spot.key])
    if spot is not None and chain.rows and spot.price_scale == _scale_of(chain):
        return base_price_paise(spot)
    futures = catalog.futures(underlying, chain.exchange)
    if futures:
        return base_price_paise(futures[0])
    return underlying_price(underlying, _scale_of(chain))


def _scale_of(chain: OptionChain) -> int:
    leg = chain.rows[0].call or chain.rows[0].put
    assert leg is not None  # a chain row always has at least one leg
    return leg.price_scale
