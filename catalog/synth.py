"""A synthetic scrip master in Angel's exact format, and plausible base prices for the simulator.

`synthesize(count, seed)` returns exactly `count` records shaped like Angel's
`OpenAPIScripMaster.json` (every value a string): NSE/BSE cash equities (NSE symbols carry the
series, `-EQ` or `-BE`; BSE symbols are the bare name, as in Angel's file), indices (`NIFTY 50`,
token 99926000, ...), NFO/BFO index and stock futures, weekly and monthly option chains with
strikes around each underlying's base price, MCX FUTCOM/OPTFUT and CDS FUTCUR/OPTCUR.

The output depends only on `(count, seed, as_of)`; `as_of` (the trading day the expiries are
counted from) defaults to `SYNTH_REFERENCE_DATE` so that `synthesize(count, seed)` is the same
file forever. The day's simulated master passes today's date instead.

`base_price_paise(instrument)` gives every instrument, synthetic or from Angel's real file, a
plausible price in its minor unit. It depends only on the instrument, so the simulator, the
paper portfolio and the option ladders written here agree with each other.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import math
import os
import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from catalog.instrument import CURRENCY_DERIVATIVE_SCALE, RUPEE_SCALE, InstrumentKind
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.instrument import Instrument

SYNTH_REFERENCE_DATE: Final = date(2026, 11, 26)

SCRIP_FIELDS: Final = (
    "token",
    "symbol",
    "name",
    "expiry",
    "strike",
    "lotsize",
    "instrumenttype",
    "exch_seg",
    "tick_size",
)

MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# NSE's weekly-contract month code: 1..9, then O, N, D.
_WEEKLY_MONTH_CODE: Final = "123456789OND"
_TUESDAY, _WEDNESDAY, _THURSDAY, _FRIDAY = 1, 2, 3, 4

# The fixed set that `select("NIFTY 50 constituents")` resolves (NSE `<name>-EQ`). The
# synthetic master always lists all of them; the index's real membership changes twice a year.
NIFTY_50: Final = (
    "ADANIENT", "ADANIPORTS", "APOLLOHOSP", "ASIANPAINT", "AXISBANK", "BAJAJ-AUTO", "BAJAJFINSV",
    "BAJFINANCE", "BEL", "BHARTIARTL", "CIPLA", "COALINDIA", "DRREDDY", "EICHERMOT", "ETERNAL",
    "GRASIM", "HCLTECH", "HDFCBANK", "HDFCLIFE", "HEROMOTOCO", "HINDALCO", "HINDUNILVR", "ICICIBANK",
    "INDUSINDBK", "INFY", "ITC", "JIOFIN", "JSWSTEEL", "KOTAKBANK", "LT", "M&M", "MARUTI",
    "NESTLEIND", "NTPC", "ONGC", "POWERGRID", "RELIANCE", "SBILIFE", "SBIN", "SHRIRAMFIN",
    "SUNPHARMA", "TATACONSUM", "TATAMOTORS", "TATASTEEL", "TCS", "TECHM", "TITAN", "TRENT",
    "ULTRACEMCO", "WIPRO",
)  # fmt: skip

# Reference levels in rupees for names whose price a reader would recognise. Every other name
# gets a stable price from a hash of the name (see `underlying_price`).
_KNOWN_PRICES_RUPEES: Final[dict[str, float]] = {
    "NIFTY": 23_500, "BANKNIFTY": 51_000, "FINNIFTY": 23_800, "MIDCPNIFTY": 12_400,
    "NIFTYNXT50": 68_000, "SENSEX": 77_500, "BANKEX": 58_000, "INDIA VIX": 14.5,
    "SBIN": 820, "RELIANCE": 1_290, "INFY": 1_850, "TCS": 4_100, "HDFCBANK": 1_720,
    "ICICIBANK": 1_280, "ITC": 470, "LT": 3_600,
    "GOLD": 76_000, "GOLDM": 76_000, "SILVER": 91_000, "SILVERM": 91_000, "CRUDEOIL": 6_000,
    "CRUDEOILM": 6_000, "NATURALGAS": 280, "COPPER": 820, "ZINC": 270, "ALUMINIUM": 240, "LEAD": 185,
    "USDINR": 84.25, "EURINR": 91.5, "GBPINR": 107.25, "JPYINR": 55.75,
}  # fmt: skip

# Cash tokens everyone knows; other tokens come from per-segment counters.
_KNOWN_NSE_TOKENS: Final = {"SBIN": "3045", "RELIANCE": "2885"}

# (symbol, name, token, tick_size field) — Angel lists index rows as AMXIDX with lot 1.
# BSE index rows carry a zero tick size in Angel's file; the loader copes with that.
_INDICES: Final = (
    ("NSE", "NIFTY 50", "NIFTY", "99926000", "5.000000"),
    ("NSE", "Nifty Bank", "BANKNIFTY", "99926009", "5.000000"),
    ("NSE", "Nifty Fin Service", "FINNIFTY", "99926037", "5.000000"),
    ("NSE", "NIFTY MID SELECT", "MIDCPNIFTY", "99926074", "5.000000"),
    ("NSE", "Nifty Next 50", "NIFTYNXT50", "99926013", "5.000000"),
    ("NSE", "India VIX", "INDIA VIX", "99926017", "5.000000"),
    ("NSE", "Nifty IT", "NIFTY IT", "99926008", "5.000000"),
    ("NSE", "Nifty Pharma", "NIFTY PHARMA", "99926023", "5.000000"),
    ("NSE", "Nifty FMCG", "NIFTY FMCG", "99926021", "5.000000"),
    ("NSE", "Nifty Metal", "NIFTY METAL", "99926030", "5.000000"),
    ("NSE", "Nifty Auto", "NIFTY AUTO", "99926029", "5.000000"),
    ("NSE", "Nifty Realty", "NIFTY REALTY", "99926018", "5.000000"),
    ("BSE", "SENSEX", "SENSEX", "99919000", "0.000000"),
    ("BSE", "BANKEX", "BANKEX", "99919012", "0.000000"),
    ("BSE", "BSE 100", "BSE100", "99919001", "0.000000"),
    ("MCX", "MCXBULLDEX", "MCXBULLDEX", "99920000", "5.000000"),
)

_ETFS: Final = ("NIFTYBEES", "BANKBEES", "GOLDBEES")


@dataclass(frozen=True)
class _IndexDerivatives:
    exchange: str
    name: str
    strike_step_rupees: float
    lot: int
    weekly: bool
    expiry_weekday: int


_INDEX_DERIVATIVES: Final = (
    _IndexDerivatives("NFO", "NIFTY", 50, 65, True, _TUESDAY),
    _IndexDerivatives("NFO", "BANKNIFTY", 100, 30, False, _TUESDAY),
    _IndexDerivatives("NFO", "FINNIFTY", 50, 65, False, _TUESDAY),
    _IndexDerivatives("NFO", "MIDCPNIFTY", 25, 120, False, _TUESDAY),
    _IndexDerivatives("NFO", "NIFTYNXT50", 100, 25, False, _TUESDAY),
    _IndexDerivatives("BFO", "SENSEX", 100, 20, True, _THURSDAY),
    _IndexDerivatives("BFO", "BANKEX", 100, 30, False, _THURSDAY),
)


@dataclass(frozen=True)
class _Commodity:
    name: str
    tick_paise: int
    lot: int
    strike_step_rupees: float | None  # None: futures only


_COMMODITIES: Final = (
    _Commodity("GOLD", 100, 100, 100),
    _Commodity("GOLDM", 100, 10, None),
    _Commodity("SILVER", 100, 30, 250),
    _Commodity("SILVERM", 100, 5, None),
    _Commodity("CRUDEOIL", 100, 100, 50),
    _Commodity("CRUDEOILM", 100, 10, None),
    _Commodity("NATURALGAS", 10, 1250, 5),
    _Commodity("COPPER", 5, 2500, 5),
    _Commodity("ZINC", 5, 5000, 2.5),
    _Commodity("ALUMINIUM", 5, 5000, None),
    _Commodity("LEAD", 5, 5000, None),
)

_CURRENCIES: Final = (("USDINR", True), ("EURINR", False), ("GBPINR", False), ("JPYINR", False))

_SYLLABLES: Final = (
    "AR", "BHA", "CHE", "DEV", "GAN", "HIN", "IND", "JAI", "KAV", "LAK", "MAH", "NAV", "OM", "PRA",
    "RAJ", "SAR", "TAR", "UMA", "VIK", "YAS", "ZEN", "ADI", "BAL", "DHA", "GAR", "KRI", "MAN", "NIR",
    "PAR", "RAM", "SHI", "SUR", "TRI", "VAR", "VEN", "ANU", "KES", "LAX", "MUR", "SAN",
)  # fmt: skip
_SECTORS: Final = (
    "TEX", "FIN", "PHARMA", "STEEL", "POWER", "INFRA", "CHEM", "AUTO", "LABS", "TECH", "AGRO", "CEM",
    "SOFT", "MOTORS", "FOODS", "PAPER", "GLASS", "ENERGY", "HOTELS", "LOGIS", "METAL", "POLY",
)  # fmt: skip

# Share of the rows after the fixed core that each block may use; what a block leaves unused
# (its ladders are capped) flows to the next, and NFO stock options absorb the rest.
_SHARE_NSE_EQUITY = 0.04
_SHARE_BSE_EQUITY = 0.06
_SHARE_NFO_FUTURES = 0.02
_SHARE_NFO_INDEX_OPTIONS = 0.25
_SHARE_BFO = 0.10
_SHARE_MCX = 0.08
_SHARE_CDS = 0.06
_MAX_STRIKES_PER_SIDE = {"index": 100, "commodity": 60, "currency": 30, "stock": 80}
_ROWS_PER_FNO_STOCK = 650  # about 300 F&O stocks in a 200k master (NSE lists ~220)


# ---------------------------------------------------------------------------------------------
# Prices


def _hashed_unit(text: str) -> float:
    """A stable number in [0, 1) from `text` (Python's own hash() changes per process)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def underlying_price(name: str, price_scale: int = RUPEE_SCALE) -> int:
    """Plausible price of the underlying called `name`, in minor units of `price_scale`.

    Known names use a reference level; any other name gets a stable, log-uniform price between
    ₹20 and ₹6,000 derived from the name alone.
    """
    rupees = _KNOWN_PRICES_RUPEES.get(name)
    if rupees is None:
        u = _hashed_unit(name)
        rupees = math.exp(math.log(20) + u * (math.log(6_000) - math.log(20)))
        rupees = round(rupees * 20) / 20  # whole 5 paise
    return round(rupees * price_scale)


def _round_to_tick(value: float, tick: int) -> int:
    return max(tick, round(value / tick) * tick)


def base_price_paise(instrument: Instrument) -> int:
    """Plausible price of `instrument` in its minor unit (paise; 1e-7 rupee on CDS).

    Cash and index rows trade at the underlying's price, futures at a small premium, options
    at intrinsic value plus a time value that decays away from the money. The result is a
    whole number of ticks and at least one tick.
    """
    tick = max(instrument.tick_size, 1)
    spot = underlying_price(instrument.name, instrument.price_scale)
    kind = instrument.kind
    if kind in (InstrumentKind.EQUITY, InstrumentKind.INDEX):
        return _round_to_tick(spot, tick)
    if kind is InstrumentKind.FUTURE:
        return _round_to_tick(spot * 1.004, tick)
    strike = instrument.strike or spot
    intrinsic = max(0, spot - strike) if instrument.option_type == "CE" else max(0, strike - spot)
    time_value = spot * 0.015 * math.exp(-abs(spot - strike) / (0.03 * spot))
    return _round_to_tick(intrinsic + time_value, tick)


# ---------------------------------------------------------------------------------------------
# Calendars


def _last_weekday_of_month(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _next_weekdays(start: date, weekday: int, count: int) -> list[date]:
    first = start + timedelta(days=(weekday - start.weekday()) % 7)
    return [first + timedelta(weeks=i) for i in range(count)]


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


def _monthly_expiries(as_of: date, weekday: int, count: int) -> list[date]:
    out: list[date] = []
    offset = 0
    while len(out) < count:
        year, month = _add_months(as_of.year, as_of.month, offset)
        expiry = _last_weekday_of_month(year, month, weekday)
        if expiry >= as_of:
            out.append(expiry)
        offset += 1
    return out


def _weekday_on_or_before(day: date) -> date:
    return day - timedelta(days=max(0, day.weekday() - 4))


def _mcx_expiries(as_of: date, count: int) -> list[date]:
    """MCX-like monthly futures expiries: around the 20th, moved back off weekends."""
    out: list[date] = []
    offset = 0
    while len(out) < count:
        year, month = _add_months(as_of.year, as_of.month, offset)
        expiry = _weekday_on_or_before(date(year, month, 20))
        if expiry >= as_of:
            out.append(expiry)
        offset += 1
    return out


# ---------------------------------------------------------------------------------------------
# Formatting in Angel's conventions


def _expiry_field(day: date) -> str:
    return f"{day.day:02d}{MONTHS[day.month - 1]}{day.year}"


def _ddmmmyy(day: date) -> str:
    return f"{day.day:02d}{MONTHS[day.month - 1]}{day.year % 100:02d}"


def _yymmm(day: date) -> str:
    return f"{day.year % 100:02d}{MONTHS[day.month - 1]}"


def _strike_text(strike_minor: int, price_scale: int) -> str:
    """Strike in rupees as it appears inside a symbol: 23500, 7.5."""
    whole, frac = divmod(strike_minor, price_scale)
    if frac == 0:
        return str(whole)
    digits = len(str(price_scale)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _record(
    token: str,
    symbol: str,
    name: str,
    instrument_type: str,
    exchange: str,
    *,
    expiry: date | None = None,
    strike: int | None = None,
    lot: int = 1,
    tick: str = "5.000000",
) -> dict[str, str]:
    return {
        "token": token,
        "symbol": symbol,
        "name": name,
        "expiry": _expiry_field(expiry) if expiry else "",
        "strike": f"{strike}.000000" if strike is not None else "-1.000000",
        "lotsize": str(lot),
        "instrumenttype": instrument_type,
        "exch_seg": exchange,
        "tick_size": tick,
    }


# ---------------------------------------------------------------------------------------------
# Generation


class _Tokens:
    """Unique, increasing tokens per segment with small random gaps (Angel's are sparse)."""

    def __init__(self, rng: random.Random, start: int, reserved: set[str] | None = None) -> None:
        self._rng = rng
        self._next = start
        self._reserved = reserved or set()

    def take(self) -> str:
        while True:
            self._next += self._rng.randint(1, 3)
            token = str(self._next)
            if token not in self._reserved:
                return token


class _Names:
    """Distinct invented company names (never one of the recognisable ones)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set(NIFTY_50) | set(_KNOWN_PRICES_RUPEES) | set(_ETFS)
        self._parts = 1

    def take(self) -> str:
        misses = 0
        while True:
            stem = "".join(self._rng.choice(_SYLLABLES) for _ in range(self._parts))
            name = stem + self._rng.choice(_SECTORS)
            if name not in self._used:
                self._used.add(name)
                return name
            misses += 1
            if misses == 50:  # the shorter combinations are nearly used up
                self._parts += 1
                misses = 0


def _ladder(atm: int, step: int, per_side: int) -> list[int]:
    """2 * per_side + 1 strikes centred on ATM, shifted up when the low end would reach zero."""
    low = max(step, atm - per_side * step)
    return [low + i * step for i in range(2 * per_side + 1)]


def _strikes_per_side(budget: int, chains: int, cap: int) -> int:
    """Strikes each side of ATM so that `chains` CE/PE ladders fit in `budget` rows (-1: none fit)."""
    if chains <= 0:
        return -1
    return min(cap, (budget // chains // 2 - 1) // 2)


@dataclass
class _Chain:
    exchange: str
    name: str
    expiry: date
    instrument_type: str
    lot: int
    tick: str
    step: int  # minor units
    price_scale: int
    symbol_of: str  # "ddmmmyy" | "yymmm" | "cds"
    weekly_code: bool = False


def _option_symbol(chain: _Chain, strike: int, right: str) -> str:
    if chain.symbol_of == "ddmmmyy":
        return f"{chain.name}{_ddmmmyy(chain.expiry)}{_strike_text(strike, chain.price_scale)}{right}"
    if chain.symbol_of == "yymmm":
        return f"{chain.name}{_yymmm(chain.expiry)}{_strike_text(strike, chain.price_scale)}{right}"
    # CDS: strike in paise-like hundredths (83.25 -> 8325); weeklies use NSE's YYMDD form.
    hundredths = strike * 100 // chain.price_scale
    if chain.weekly_code:
        day = chain.expiry
        code = f"{day.year % 100:02d}{_WEEKLY_MONTH_CODE[day.month - 1]}{day.day:02d}"
        return f"{chain.name}{code}{hundredths}{right}"
    return f"{chain.name}{_yymmm(chain.expiry)}{hundredths}{right}"


def _emit_chains(chains: list[_Chain], budget: int, cap: int, tokens: _Tokens) -> list[dict[str, str]]:
    """CE/PE ladders around each chain's ATM, as wide as the budget allows (up to `cap`)."""
    per_side = _strikes_per_side(budget, len(chains), cap)
    if per_side < 0:
        chains = chains[: budget // 2]  # not even one strike each: keep the first chains at ATM
        per_side = 0
    rows: list[dict[str, str]] = []
    for chain in chains:
        spot = underlying_price(chain.name, chain.price_scale)
        atm = round(spot / chain.step) * chain.step
        for strike in _ladder(atm, chain.step, per_side):
            for right in ("CE", "PE"):
                rows.append(
                    _record(
                        tokens.take(),
                        _option_symbol(chain, strike, right),
                        chain.name,
                        chain.instrument_type,
                        chain.exchange,
                        expiry=chain.expiry,
                        strike=strike,  # Angel's strike field is in minor units already
                        lot=chain.lot,
                        tick=chain.tick,
                    )
                )
    return rows[:budget]


def _stock_strike_step(price_minor: int) -> int:
    rupees = price_minor / RUPEE_SCALE
    for limit, step in ((100, 2.5), (250, 5), (500, 10), (1000, 20), (2500, 50), (5000, 100)):
        if rupees < limit:
            return round(step * RUPEE_SCALE)
    return 200 * RUPEE_SCALE


def _stock_lot(price_minor: int) -> int:
    raw = 600_000 * RUPEE_SCALE / price_minor  # about six lakh rupees a contract
    for size, unit in ((1000, 250), (100, 25), (10, 5)):
        if raw >= size:
            return int(round(raw / unit) * unit)
    return max(1, round(raw))


def _equity_tick(price_minor: int) -> str:
    return "5.000000" if price_minor >= 50 * RUPEE_SCALE else "1.000000"


class _Synthesizer:
    def __init__(self, count: int, seed: int, as_of: date) -> None:
        self.count = count
        self.as_of = as_of
        self.rng = random.Random(seed)
        self.names = _Names(self.rng)
        self.nse_tokens = _Tokens(self.rng, 10, set(_KNOWN_NSE_TOKENS.values()))
        self.bse_tokens = _Tokens(self.rng, 500_000)
        self.nfo_tokens = _Tokens(self.rng, 35_000)
        self.bfo_tokens = _Tokens(self.rng, 800_000)
        self.mcx_tokens = _Tokens(self.rng, 400_000)
        self.cds_tokens = _Tokens(self.rng, 1_000)  # overlaps NSE's range, as Angel's do
        self.nse_names: list[str] = []
        self.fno_stocks: list[str] = []

    # -- cash ------------------------------------------------------------------------------

    def _nse_equity(self, name: str, series: str = "EQ") -> dict[str, str]:
        token = _KNOWN_NSE_TOKENS.get(name) or self.nse_tokens.take()
        price = underlying_price(name)
        self.nse_names.append(name)
        return _record(token, f"{name}-{series}", name, "", "NSE", tick=_equity_tick(price))

    def _bse_equity(self, name: str) -> dict[str, str]:
        return _record(
            self.bse_tokens.take(), name, name, "", "BSE", tick=_equity_tick(underlying_price(name))
        )

    def core(self) -> list[dict[str, str]]:
        rows = [
            _record(token, symbol, name, "AMXIDX", exchange, tick=tick)
            for exchange, symbol, name, token, tick in _INDICES
        ]
        rows += [self._nse_equity(name) for name in NIFTY_50]
        rows += [self._nse_equity(name) for name in _ETFS]
        return rows

    def new_nse_equities(self, count: int) -> list[dict[str, str]]:
        return [
            self._nse_equity(self.names.take(), "BE" if self.rng.random() < 0.04 else "EQ")
            for _ in range(count)
        ]

    def bse_equities(self, count: int) -> list[dict[str, str]]:
        # Most large NSE names are dual-listed; the rest of BSE's list is its own.
        mirrored = self.nse_names[: int(count * 0.6)]
        rows = [self._bse_equity(name) for name in mirrored]
        rows += [self._bse_equity(self.names.take()) for _ in range(count - len(rows))]
        return rows

    # -- derivatives -----------------------------------------------------------------------

    def choose_fno_stocks(self) -> None:
        generated = [n for n in self.nse_names if n not in NIFTY_50 and n not in _ETFS]
        extra = max(0, self.count // _ROWS_PER_FNO_STOCK - len(NIFTY_50))
        self.fno_stocks = list(NIFTY_50) + generated[:extra]

    @staticmethod
    def _future(
        tokens: _Tokens,
        exchange: str,
        name: str,
        expiry: date,
        itype: str,
        lot: int = 1,
        tick: str = "5.000000",
    ) -> dict[str, str]:
        symbol = f"{name}{_yymmm(expiry)}FUT" if exchange == "CDS" else f"{name}{_ddmmmyy(expiry)}FUT"
        return _record(tokens.take(), symbol, name, itype, exchange, expiry=expiry, lot=lot, tick=tick)

    def nfo_futures(self, budget: int) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for spec in _INDEX_DERIVATIVES:
            if spec.exchange != "NFO":
                continue
            for expiry in _monthly_expiries(self.as_of, spec.expiry_weekday, 3):
                rows.append(
                    self._future(
                        self.nfo_tokens, "NFO", spec.name, expiry, "FUTIDX", lot=spec.lot, tick="10.000000"
                    )
                )
        for name in self.fno_stocks:
            lot = _stock_lot(underlying_price(name))
            for expiry in _monthly_expiries(self.as_of, _TUESDAY, 3):
                rows.append(
                    self._future(self.nfo_tokens, "NFO", name, expiry, "FUTSTK", lot=lot, tick="10.000000")
                )
        return rows[:budget]

    def _index_chains(self, exchange: str) -> list[_Chain]:
        chains: list[_Chain] = []
        for spec in _INDEX_DERIVATIVES:
            if spec.exchange != exchange:
                continue
            expiries = set(_monthly_expiries(self.as_of, spec.expiry_weekday, 3))
            if spec.weekly:
                expiries |= set(_next_weekdays(self.as_of, spec.expiry_weekday, 4))
                # Long-dated quarterly contracts (Mar, Jun, Sep, Dec) for the year after.
                monthly = _monthly_expiries(self.as_of, spec.expiry_weekday, 15)[3:]
                expiries |= {e for e in monthly if e.month % 3 == 0}
            step = round(spec.strike_step_rupees * RUPEE_SCALE)
            itype = "OPTIDX"
            chains += [
                _Chain(exchange, spec.name, e, itype, spec.lot, "5.000000", step, RUPEE_SCALE, "ddmmmyy")
                for e in sorted(expiries)
            ]
        return chains

    def index_options(self, exchange: str, budget: int) -> list[dict[str, str]]:
        tokens = self.nfo_tokens if exchange == "NFO" else self.bfo_tokens
        return _emit_chains(self._index_chains(exchange), budget, _MAX_STRIKES_PER_SIDE["index"], tokens)

    def bfo(self, budget: int) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        for spec in _INDEX_DERIVATIVES:
            if spec.exchange == "BFO":
                for expiry in _monthly_expiries(self.as_of, spec.expiry_weekday, 3):
                    rows.append(
                        self._future(
                            self.bfo_tokens, "BFO", spec.name, expiry, "FUTIDX", lot=spec.lot, tick="5.000000"
                        )
                    )
        rows = rows[:budget]
        return rows + self.index_options("BFO", budget - len(rows))

    def mcx(self, budget: int) -> list[dict[str, str]]:
        rows: list[dict[str, str]] = []
        future_expiries = _mcx_expiries(self.as_of, 4)
        for c in _COMMODITIES:
            tick = f"{c.tick_paise}.000000"
            for expiry in future_expiries:
                rows.append(
                    self._future(self.mcx_tokens, "MCX", c.name, expiry, "FUTCOM", lot=c.lot, tick=tick)
                )
        rows = rows[:budget]
        chains = [
            _Chain("MCX", c.name, e - timedelta(days=3 if e.weekday() >= 3 else 5), "OPTFUT", c.lot,
                   f"{c.tick_paise}.000000", round(c.strike_step_rupees * RUPEE_SCALE), RUPEE_SCALE, "yymmm")
            for c in _COMMODITIES if c.strike_step_rupees is not None
            for e in future_expiries[:2]
        ]  # fmt: skip
        return rows + _emit_chains(
            chains, budget - len(rows), _MAX_STRIKES_PER_SIDE["commodity"], self.mcx_tokens
        )

    def cds(self, budget: int) -> list[dict[str, str]]:
        scale = CURRENCY_DERIVATIVE_SCALE
        tick = "0.250000"  # paise: ₹0.0025
        rows: list[dict[str, str]] = []
        monthly = _monthly_expiries(self.as_of, _WEDNESDAY, 4)
        for name, _ in _CURRENCIES:
            for expiry in monthly:
                rows.append(self._future(self.cds_tokens, "CDS", name, expiry, "FUTCUR", tick=tick))
        rows = rows[:budget]
        step = scale // 4  # ₹0.25
        chains: list[_Chain] = []
        for name, weekly in _CURRENCIES:
            chains += [_Chain("CDS", name, e, "OPTCUR", 1, tick, step, scale, "cds") for e in monthly[:2]]
            if weekly:
                weeklies = [d for d in _next_weekdays(self.as_of, _FRIDAY, 3) if d not in monthly]
                chains += [
                    _Chain("CDS", name, e, "OPTCUR", 1, tick, step, scale, "cds", True) for e in weeklies
                ]
        return rows + _emit_chains(
            chains, budget - len(rows), _MAX_STRIKES_PER_SIDE["currency"], self.cds_tokens
        )

    def stock_options(self, budget: int) -> list[dict[str, str]]:
        chains: list[_Chain] = []
        expiries = _monthly_expiries(self.as_of, _TUESDAY, 3)
        for name in self.fno_stocks:
            price = underlying_price(name)
            lot = _stock_lot(price)
            step = _stock_strike_step(price)
            chains += [
                _Chain("NFO", name, e, "OPTSTK", lot, "5.000000", step, RUPEE_SCALE, "ddmmmyy")
                for e in expiries
            ]
        return _emit_chains(chains, budget, _MAX_STRIKES_PER_SIDE["stock"], self.nfo_tokens)

    def run(self) -> list[dict[str, str]]:
        rows = self.core()
        rest = self.count - len(rows)
        if rest > 0:
            rows += self.new_nse_equities(int(rest * _SHARE_NSE_EQUITY))
            rows += self.bse_equities(int(rest * _SHARE_BSE_EQUITY))
            self.choose_fno_stocks()
            carry = 0
            for block, share in (
                (self.nfo_futures, _SHARE_NFO_FUTURES),
                (lambda b: self.index_options("NFO", b), _SHARE_NFO_INDEX_OPTIONS),
                (self.bfo, _SHARE_BFO),
                (self.mcx, _SHARE_MCX),
                (self.cds, _SHARE_CDS),
            ):
                budget = int(rest * share) + carry
                made = block(budget)
                carry = budget - len(made)
                rows += made
            rows += self.stock_options(self.count - len(rows))
            # Ladders are capped, so what is still missing becomes more cash listings.
            while len(rows) < self.count:
                missing = self.count - len(rows)
                rows += self.new_nse_equities((missing + 1) // 2)
                rows += [self._bse_equity(self.names.take()) for _ in range(missing // 2)]
        rows = rows[: self.count]
        self.rng.shuffle(rows)  # Angel's file has no useful order; nothing may depend on one
        _check_unique(rows)
        return rows


def _check_unique(rows: list[dict[str, str]]) -> None:
    tokens = {(r["exch_seg"], r["token"]) for r in rows}
    symbols = {(r["exch_seg"], r["symbol"]) for r in rows}
    if len(tokens) != len(rows) or len(symbols) != len(rows):
        raise AssertionError("synthetic master has a repeated token or symbol within a segment")


def synthesize(count: int, seed: int, as_of: date | None = None) -> list[dict[str, str]]:
    """Exactly `count` scrip-master records in Angel's format, the same for the same arguments.

    Parameters
    ----------
    count : int
        Number of records (at least 1).
    seed : int
        Seed for the invented names, tokens and the file order.
    as_of : date, optional
        The trading day expiries are counted from (all expiries fall on or after it);
        `SYNTH_REFERENCE_DATE` when not given.
    """
    if count < 1:
        raise ShardlineError(f"synthetic scrip master: count must be at least 1, got {count}")
    return _Synthesizer(count, seed, as_of or SYNTH_REFERENCE_DATE).run()


def write_scrip_master(rows: list[dict[str, str]], path: Path, *, replace: bool = True) -> None:
    """Write records as Angel's JSON array (or CSV when `path` ends in .csv), atomically.

    With `replace=False` an existing file is left as it is (processes starting together may all
    generate the same master; the first one's file, and its modification time, stay).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # unique per writer; renamed into place
    try:
        if path.suffix.lower() == ".csv":
            import polars as pl

            frame = pl.DataFrame({field: [r[field] for r in rows] for field in SCRIP_FIELDS})
            frame.write_csv(tmp)
        else:
            tmp.write_bytes(msgspec.json.encode(rows))
        if replace:
            tmp.replace(path)
        else:
            with contextlib.suppress(FileExistsError):  # another writer was first: keep theirs
                os.link(tmp, path)  # creates without overwriting
    finally:
        tmp.unlink(missing_ok=True)
