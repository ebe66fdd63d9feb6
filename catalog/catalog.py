"""The instrument catalog: lookups by key, token, symbol and iid; chains, futures and search.

Built from the columns of the normalised frame (`catalog.columns`), in iid order. Lookups that
the hot path uses (`resolve_token`, `get`, `by_iid`) are one or two dict or list reads.
`Instrument` objects are made on first use from column arrays and then kept, so a warm load
does not pay for 200k objects that a shard never touches.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, overload

import numpy as np
import polars as pl

from catalog.columns import NO_DATE, NO_STRIKE, ROW_FIELDS, ROW_STRUCT, CatalogColumns
from catalog.instrument import EXCHANGES, Instrument, InstrumentKind
from catalog.search import SearchArrays, SymbolSearch
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from catalog.scrip import LoadReport

_EPOCH = date(1970, 1, 1)
_DERIVATIVE_EXCHANGE_ORDER = ("NFO", "BFO", "MCX", "CDS", "NCDEX")
_INSTRUMENT_FIELDS = tuple(field for field in ROW_FIELDS if field != "kind")  # what it is made of


class OptionChainRow(tuple[int, Instrument | None, Instrument | None]):
    """(strike, call, put) at one strike; either side may be missing from the master."""

    __slots__ = ()

    @property
    def strike(self) -> int:
        return self[0]

    @property
    def call(self) -> Instrument | None:
        return self[1]

    @property
    def put(self) -> Instrument | None:
        return self[2]


class OptionChainRows(Sequence[OptionChainRow]):
    """A chain's rows by ascending strike, each made with its legs when first read and then kept,
    so a caller after the few strikes around the money never pays for the whole chain.

    Pickles as a plain tuple of made rows: it never carries its catalog across processes.
    """

    __slots__ = ("_calls", "_catalog", "_made", "_puts", "_span", "_strikes")

    def __init__(
        self,
        catalog: InstrumentCatalog,
        span: tuple[int, int],
        strikes: tuple[int, ...],
        calls: np.ndarray,
        puts: np.ndarray,
    ) -> None:
        self._catalog = catalog
        self._span = span  # the chain's iids, for making every leg column-wise in one go
        self._strikes = strikes
        self._calls = calls  # the call's iid at each strike, -1 where none is listed
        self._puts = puts
        self._made: list[OptionChainRow | None] = [None] * len(strikes)

    def __len__(self) -> int:
        return len(self._strikes)

    @overload
    def __getitem__(self, index: int) -> OptionChainRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[OptionChainRow]: ...
    def __getitem__(self, index: int | slice) -> OptionChainRow | list[OptionChainRow]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"chain row {index} of {len(self)}")
        return self._row(index)

    def __iter__(self) -> Iterator[OptionChainRow]:
        if any(row is None for row in self._made):
            self._catalog.run(*self._span)  # all legs at once, much cheaper than one by one
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:  # the same rows, made or not, as a tuple of rows
        if isinstance(other, OptionChainRows | tuple):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __reduce__(self) -> tuple[type[tuple[OptionChainRow, ...]], tuple[tuple[OptionChainRow, ...]]]:
        return tuple, (tuple(self),)

    def _row(self, i: int) -> OptionChainRow:
        row = self._made[i]
        if row is None:
            call, put, by_iid = self._calls.item(i), self._puts.item(i), self._catalog.by_iid
            row = OptionChainRow(
                (self._strikes[i], by_iid(call) if call >= 0 else None, by_iid(put) if put >= 0 else None)
            )
            self._made[i] = row
        return row


@dataclass(frozen=True)
class OptionChain:
    """The options of one underlying and expiry on one exchange, by ascending strike."""

    exchange: str
    underlying: str
    expiry: date
    strikes: tuple[int, ...]
    rows: Sequence[OptionChainRow]  # rows[i] is at strikes[i]; made on first read

    def instruments(self) -> list[Instrument]:
        """Every option of the chain: by strike, the call before the put."""
        return [leg for row in self.rows for leg in (row.call, row.put) if leg is not None]

    def nearest_strike_index(self, price: int) -> int:
        """Index of the row whose strike is closest to `price` (the lower one on a tie)."""
        strikes = self.strikes
        if not strikes:
            raise ShardlineError(f"{self.underlying} {self.expiry} chain on {self.exchange} has no strikes")
        above = bisect.bisect_left(strikes, price)  # the first strike at or above the price
        if above == 0:
            return 0
        if above == len(strikes):
            return above - 1
        below = above - 1
        return below if price - strikes[below] <= strikes[above] - price else above


class InstrumentSequence(Sequence[Instrument]):
    """All instruments in iid order, made on access."""

    def __init__(self, catalog: InstrumentCatalog) -> None:
        self._catalog = catalog

    def __len__(self) -> int:
        return len(self._catalog)

    @overload
    def __getitem__(self, index: int) -> Instrument: ...
    @overload
    def __getitem__(self, index: slice) -> list[Instrument]: ...
    def __getitem__(self, index: int | slice) -> Instrument | list[Instrument]:
        if isinstance(index, slice):
            start, stop, stride = index.indices(len(self))
            if stride == 1:
                return self._catalog.run(start, stop) if start < stop else []
            return [self._catalog.by_iid(i) for i in range(start, stop, stride)]
        if index < 0:
            index += len(self)
        return self._catalog.by_iid(index)

    def __iter__(self) -> Iterator[Instrument]:
        step = 4096  # made in column-wise runs, much cheaper than one by one
        for start in range(0, len(self), step):
            yield from self._catalog.run(start, min(start + step, len(self)))


class InstrumentCatalog:
    """Every instrument of one scrip master, indexed.

    Parameters
    ----------
    frame : pl.DataFrame or a function returning it
        Normalised instruments in iid order (see `catalog.scrip.normalise`). A function is
        called on the first use of the frame, which most processes never make.
    report : LoadReport
        What the load read and skipped.
    search_arrays : SearchArrays or a function returning them, optional
        A prebuilt search index for this frame (from the cache); built on first search if absent.
    columns : CatalogColumns, optional
        The frame's columns (from the cache); needed when `frame` is a function, made from the
        frame otherwise.
    """

    def __init__(
        self,
        frame: pl.DataFrame | Callable[[], pl.DataFrame],
        report: LoadReport,
        search_arrays: SearchArrays | Callable[[], SearchArrays] | None = None,
        *,
        columns: CatalogColumns | None = None,
    ) -> None:
        self.report = report
        if isinstance(frame, pl.DataFrame):
            self._frame: pl.DataFrame | None = frame
            self._read_frame: Callable[[], pl.DataFrame] | None = None
            columns = columns or CatalogColumns.from_frame(frame)
        elif columns is None:
            raise TypeError("a catalog over a frame read later needs its columns now")
        else:
            self._frame, self._read_frame = None, frame
        self.columns = columns
        # One Python string per token and per symbol, shared by the lookup dicts and the
        # Instruments; per-exchange dicts need no "EXCH:token" strings of their own.
        self._tokens = columns.tokens
        self._symbols = columns.symbols
        self._exchanges = columns.exchanges
        self._names = columns.names
        self._types = columns.instrument_types
        self._option_types: list[str | None] = [t or None for t in columns.option_types]
        self._call_code = columns.option_types.index("CE") if "CE" in columns.option_types else -1
        # Everything else an Instrument is made of, one packed record per iid: making one on its
        # first look-up reads one cache line, not a line from each of ten column arrays.
        self._rows = rows = columns.records()
        self._row_bytes = columns.rows
        self._unpack_row = ROW_STRUCT.unpack_from
        self._n = n = rows.size
        self._exchange_codes = rows["exchange"]
        self._name_codes = rows["name"]
        self._expiry_days = rows["expiry"]
        self._strikes = rows["strike"]
        self._option_type_codes = rows["option_type"]
        self._kinds = rows["kind"]
        self._by_token: dict[str, dict[str, int]] = {exchange: {} for exchange in self._exchanges}
        self._by_symbol: dict[str, dict[str, int]] = {exchange: {} for exchange in self._exchanges}
        # one int object per iid, shared by both lookup dicts and the Instruments
        self._iids = iids = list(range(n))
        runs = _runs(self._exchange_codes, self._kinds)
        for start, stop in runs:
            exchange = self._exchanges[self._exchange_codes.item(start)]
            self._by_token[exchange].update(zip(self._tokens[start:stop], iids[start:stop], strict=True))
        # last run first, each backwards: of two records repeating a symbol, the lower iid wins
        for start, stop in reversed(runs):
            exchange = self._exchanges[self._exchange_codes.item(start)]
            by_symbol = self._by_symbol[exchange]
            by_symbol.update(
                zip(reversed(self._symbols[start:stop]), reversed(iids[start:stop]), strict=True)
            )
        self._spot_of = columns.spot_of
        self._made: list[Instrument | None] = [None] * n
        self._dates: dict[int, date] = {}
        self._search_arrays: SearchArrays | Callable[[], SearchArrays] | None = search_arrays
        self._searcher: SymbolSearch | None = None
        self._chain_cache: dict[tuple[str, str, date], OptionChain] = {}
        self._index_derivatives()

    def _index_derivatives(self) -> None:
        """Contiguous iid runs of each option chain and futures strip, and expiry lists."""
        self._chains: dict[tuple[str, str, date], tuple[int, int]] = {}
        self._futures: dict[tuple[str, str], tuple[int, int]] = {}
        self._option_expiries: dict[tuple[str, str], list[date]] = {}
        self._future_expiries: dict[tuple[str, str], list[date]] = {}
        self._derivative_exchanges: dict[str, list[str]] = {}
        # rows run by (kind, exchange, name, expiry): each run is one chain or one future
        kinds = self._kinds
        first_derivative = int(np.searchsorted(kinds, int(InstrumentKind.FUTURE)))
        arrays = (kinds, self._exchange_codes, self._name_codes, self._expiry_days)
        for run_start, run_stop in _runs(*(a[first_derivative:] for a in arrays)):
            start, stop = run_start + first_derivative, run_stop + first_derivative
            kind = int(kinds[start])
            exchange = self._exchanges[self._exchange_codes.item(start)]
            name = self._names[self._name_codes.item(start)]
            expiry = self._date(self._expiry_days.item(start))
            if kind == InstrumentKind.OPTION:
                self._chains[(exchange, name, expiry)] = (start, stop)
                self._option_expiries.setdefault((exchange, name), []).append(expiry)
            else:
                lo, hi = self._futures.get((exchange, name), (start, stop))
                self._futures[(exchange, name)] = (min(lo, start), max(hi, stop))
                self._future_expiries.setdefault((exchange, name), []).append(expiry)
            exchanges = self._derivative_exchanges.setdefault(name, [])
            if exchange not in exchanges:
                exchanges.append(exchange)
        for exchanges in self._derivative_exchanges.values():
            exchanges.sort(key=_DERIVATIVE_EXCHANGE_ORDER.index)

    # -- basic lookups --------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.iid_of(key) is not None

    @property
    def instruments(self) -> InstrumentSequence:
        """All instruments in iid order."""
        return InstrumentSequence(self)

    def by_iid(self, iid: int) -> Instrument:
        """The instrument with dense id `iid`; IndexError outside 0..len-1."""
        if iid < 0:
            raise IndexError(f"iid {iid} is negative")
        made = self._made[iid]
        return made if made is not None else self._make(iid)

    def get(self, key: str) -> Instrument | None:
        """The instrument for "EXCH:token", or None."""
        iid = self.iid_of(key)
        return None if iid is None else self.by_iid(iid)

    def iid_of(self, key: str) -> int | None:
        """The dense id for "EXCH:token", or None (no Instrument is made)."""
        exchange, _, token = key.partition(":")
        tokens = self._by_token.get(exchange)
        return None if tokens is None else tokens.get(token)

    def iids(self, keys: Iterable[str]) -> np.ndarray:
        """Dense ids of "EXCH:token" keys as int32, -1 where a key is unknown (for lookup arrays)."""
        iid_of = self.iid_of
        return np.fromiter((-1 if (iid := iid_of(key)) is None else iid for key in keys), dtype=np.int32)

    def resolve_token(self, exchange: str, token: str) -> Instrument | None:
        """The instrument with `token` on `exchange` (tokens repeat across exchanges), or None."""
        tokens = self._by_token.get(exchange)
        iid = None if tokens is None else tokens.get(token)
        return None if iid is None else self.by_iid(iid)

    def resolve_symbol(self, exchange: str, symbol: str) -> Instrument | None:
        """The instrument with trading symbol `symbol` on `exchange`, or None."""
        symbols = self._by_symbol.get(exchange)
        iid = None if symbols is None else symbols.get(symbol)
        return None if iid is None else self.by_iid(iid)

    def resolve(self, spec: str) -> Instrument:
        """An instrument from "EXCH:token" or "EXCH:SYMBOL" (exchange and symbol in any case).

        Raises
        ------
        ShardlineError
            If the spec is malformed or names no instrument.
        """
        exchange, colon, rest = spec.strip().partition(":")
        exchange = exchange.strip().upper()
        rest = rest.strip()
        if not colon or not exchange or not rest:
            raise ShardlineError(
                f"instrument {spec!r}: expected 'EXCH:token' or 'EXCH:SYMBOL', e.g. 'NSE:3045'"
            )
        if exchange not in EXCHANGES:
            raise ShardlineError(
                f"instrument {spec!r}: unknown exchange {exchange}; known: {', '.join(EXCHANGES)}"
            )
        found = (
            self.resolve_token(exchange, rest)
            or self.resolve_symbol(exchange, rest)
            or self.resolve_symbol(exchange, rest.upper())
        )
        if found is None:
            raise ShardlineError(f"instrument {spec!r}: no token or symbol {rest!r} on {exchange}")
        return found

    def _make(self, iid: int) -> Instrument:
        token = self._tokens[iid]  # IndexError past the end
        row = self._unpack_row(self._row_bytes, iid * ROW_STRUCT.size)
        exchange, name, itype, days, strike, option_type, lot, tick, scale, _ = row
        instrument = Instrument(
            iid,
            self._exchanges[exchange],
            token,
            self._symbols[iid],
            self._names[name],
            self._types[itype],
            None if days == NO_DATE else self._date(days),
            None if strike == NO_STRIKE else strike,
            self._option_types[option_type],
            lot,
            tick,
            scale,
        )
        self._made[iid] = instrument
        return instrument

    def _make_run(self, start: int, stop: int) -> None:
        """Make the instruments with iids in [start, stop) that are not made yet, column-wise."""
        names, types, option_types, date_of = self._names, self._types, self._option_types, self._date
        exchanges = self._exchanges
        made = self._made
        rows = self._rows[start:stop]
        columns = zip(
            self._iids[start:stop],
            self._tokens[start:stop],
            self._symbols[start:stop],
            *(rows[field].tolist() for field in _INSTRUMENT_FIELDS),  # a list per field beats a tuple per row
            strict=True,
        )
        for iid, token, symbol, exchange, name, itype, days, strike, right, lot, tick, scale in columns:
            if made[iid] is not None:
                continue
            made[iid] = Instrument(
                iid,
                exchanges[exchange],
                token,
                symbol,
                names[name],
                types[itype],
                None if days == NO_DATE else date_of(days),
                None if strike == NO_STRIKE else strike,
                option_types[right],
                lot,
                tick,
                scale,
            )

    def _date(self, days: int) -> date:
        day = self._dates.get(days)
        if day is None:
            day = self._dates[days] = _EPOCH + timedelta(days=days)
        return day

    def run(self, start: int, stop: int) -> list[Instrument]:
        """Instruments with iids in [start, stop)."""
        made = self._made[start:stop]
        if None not in made:  # the usual case once a chain has been seen
            return made  # type: ignore[return-value]  # no None, as just checked
        self._make_run(start, stop)
        return self._made[start:stop]  # type: ignore[return-value]  # all made just above

    # -- derivatives ----------------------------------------------------------------------------

    def derivative_exchanges(self, underlying: str) -> list[str]:
        """Exchanges listing futures or options on `underlying` (NFO first)."""
        return list(self._derivative_exchanges.get(underlying.upper(), ()))

    def _exchange_for(self, underlying: str, exchange: str | None) -> str:
        if exchange is not None:
            return exchange.upper()
        exchanges = self._derivative_exchanges.get(underlying)
        if not exchanges:
            raise ShardlineError(f"no futures or options on {underlying!r} in the catalog")
        return exchanges[0]

    def expiries(self, underlying: str, exchange: str | None = None, *, options: bool = True) -> list[date]:
        """Listed expiries of `underlying`'s options (or futures), ascending."""
        underlying = underlying.upper()
        exchange = self._exchange_for(underlying, exchange)
        table = self._option_expiries if options else self._future_expiries
        return list(table.get((exchange, underlying), ()))

    def nearest_expiry(
        self,
        underlying: str,
        on: date | None = None,
        exchange: str | None = None,
        *,
        options: bool = True,
    ) -> date | None:
        """First expiry of `underlying`'s options (or futures) on or after `on`.

        Without `on`, the earliest listed one: Angel's daily file lists no expired contract.
        """
        for expiry in self.expiries(underlying, exchange, options=options):
            if on is None or expiry >= on:
                return expiry
        return None

    def option_chain(self, underlying: str, expiry: date, exchange: str | None = None) -> OptionChain:
        """The chain of `underlying` options expiring on `expiry`, by strike with CE/PE pairs.

        Raises
        ------
        ShardlineError
            If the catalog lists no such chain.
        """
        underlying = underlying.upper()
        exchange = self._exchange_for(underlying, exchange)
        cache_key = (exchange, underlying, expiry)
        chain = self._chain_cache.get(cache_key)
        if chain is not None:
            return chain
        span = self._chains.get(cache_key)
        if span is None:
            listed = (
                ", ".join(str(e) for e in self._option_expiries.get((exchange, underlying), ())) or "none"
            )
            raise ShardlineError(
                f"no {underlying} options on {exchange} expiring {expiry}; listed expiries: {listed}"
            )
        start, stop = span
        strikes = self._strikes[start:stop]
        calls = self._option_type_codes[start:stop] == self._call_code
        # iids run by strike, the call before the put: a pair is a call and the put after it
        paired = np.zeros(stop - start, dtype=bool)
        paired[:-1] = (strikes[:-1] == strikes[1:]) & calls[:-1] & ~calls[1:]
        second = np.zeros_like(paired)
        second[1:] = paired[:-1]
        firsts = np.flatnonzero(~second)  # each row's first leg, as an offset into the run
        first_is_call = calls[firsts]
        iids = firsts + start
        call_iids = np.where(first_is_call, iids, -1)
        put_iids = np.where(paired[firsts], iids + 1, np.where(first_is_call, -1, iids))
        row_strikes = tuple(strikes[firsts].tolist())
        rows = OptionChainRows(self, span, row_strikes, call_iids, put_iids)
        chain = OptionChain(exchange, underlying, expiry, row_strikes, rows)
        self._chain_cache[cache_key] = chain
        return chain

    def chain_keys(self) -> list[tuple[str, str, date]]:
        """(exchange, underlying, expiry) of every listed option chain."""
        return list(self._chains)

    def futures(self, underlying: str, exchange: str | None = None) -> list[Instrument]:
        """Futures on `underlying`, nearest expiry first."""
        underlying = underlying.upper()
        span = self._futures.get((self._exchange_for(underlying, exchange), underlying))
        return self.run(*span) if span else []

    def spot(self, underlying: str) -> Instrument | None:
        """The cash instrument or index an underlying name refers to (NSE first), if listed."""
        iid = self._spot_of.get(underlying.upper())
        return None if iid is None else self.by_iid(iid)

    # -- search and selection -------------------------------------------------------------------

    def search_index(self) -> SymbolSearch:
        """The search index, made on first use: most processes (shards) never search, and it
        costs tens of megabytes. A warm load brings its arrays from the cache."""
        if self._searcher is None:
            cash = np.flatnonzero(self._kinds <= int(InstrumentKind.INDEX)).tolist()
            names, name_codes = self._names, self._name_codes
            cash_names = [(names[name_codes.item(iid)].lower(), iid) for iid in cash]
            arrays = self._search_arrays
            if arrays is None:
                arrays = build_search_arrays(self.frame())
            elif callable(arrays):
                arrays = arrays()
            self._searcher = SymbolSearch(arrays, self._symbols, cash_names)
            self._search_arrays = None  # the searcher keeps what it reads; let the rest go
        return self._searcher

    def search(self, text: str, limit: int = 20) -> list[Instrument]:
        """Instruments matching `text`, case-insensitive: exact symbol (or a cash instrument's
        name), then symbol prefix, then substring of symbol or name; cash before derivatives."""
        return [self.by_iid(iid) for iid in self.search_index().search(text, limit)]

    def select(
        self, query: str, limit: int | None = None, atm_prices: Mapping[str, int] | None = None
    ) -> list[Instrument]:
        """A deployment universe from a query such as "NSE equities" or "NIFTY options ±10 strikes".

        See `catalog.universe` for the forms understood.
        """
        from catalog.universe import select_universe

        return select_universe(self, query, limit, atm_prices)

    def keys(self) -> list[str]:
        """Every instrument's "EXCH:token" key, in iid order, without making `Instrument` objects."""
        exchanges = self._exchanges
        return [
            f"{exchanges[code]}:{token}"
            for code, token in zip(self._exchange_codes.tolist(), self._tokens, strict=True)
        ]

    def frame(self) -> pl.DataFrame:
        """The instruments as a polars frame in iid order (columns of `catalog.scrip.FRAME_SCHEMA`).

        A catalog from the cache reads it on the first call: most processes never need it.
        """
        if self._frame is None:
            assert self._read_frame is not None  # one of the two is always set
            self._frame = self._read_frame()
        return self._frame

    def counts(self) -> dict[str, dict[str, int]]:
        """Instrument counts per exchange and instrument type."""
        pairs = collections.Counter(
            zip(self._exchange_codes.tolist(), self._rows["instrument_type"].tolist(), strict=True)
        )
        out: dict[str, dict[str, int]] = {}
        for exchange, itype in sorted(pairs, key=lambda p: (self._exchanges[p[0]], self._types[p[1]])):
            out.setdefault(self._exchanges[exchange], {})[self._types[itype]] = pairs[(exchange, itype)]
        return out


def _runs(*codes: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of rows over which all the code arrays stay the same."""
    n = codes[0].size
    if n == 0:
        return []
    changes = np.zeros(n, dtype=bool)
    for column in codes:
        changes[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(changes).tolist()
    bounds = [0, *starts, n]
    return list(itertools.pairwise(bounds))


def build_search_arrays(frame: pl.DataFrame) -> SearchArrays:
    """The search index arrays for a normalised frame (see `catalog.search`)."""
    lowered = frame.select(symbol=pl.col("symbol").str.to_lowercase(), name=pl.col("name").str.to_lowercase())
    lines = lowered.select(
        pl.when(pl.col("symbol").str.contains(pl.col("name"), literal=True))
        .then(pl.col("symbol"))
        .otherwise(pl.concat_str("symbol", pl.lit("\t"), "name"))
    ).to_series()
    return SearchArrays.build(frame.get_column("symbol"), lowered.get_column("symbol"), lines)
