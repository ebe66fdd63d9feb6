"""Tick batches (`actors.ticks.TICK_DTYPE`) to Nautilus `TradeTick` and `QuoteTick` objects.

Which rows become which ticks:

- LTP and QUOTE rows with a positive last price become a `TradeTick`. An LTP packet carries no
  traded quantity, so its tick has size 1 (Nautilus requires a positive size); strategies that
  need volume should run on a QUOTE or SNAP_QUOTE feed.
- SNAP_QUOTE rows become a `QuoteTick` when both best bid and best ask are non-zero, and also a
  `TradeTick` when the day's volume moved since the instrument's previous SNAP_QUOTE row (a new
  trade; a packet that only changed the book is not a trade).
- Only what is subscribed is built: trade ticks for instruments with a trade-tick subscription,
  quote ticks for those with a quote-tick subscription (`subscribe_trades` / `subscribe_quotes`).

Prices stay integers end to end: a transport price `p` (minor units, `scale` per rupee) becomes
the Nautilus raw fixed-point value `p * 10**FIXED_PRECISION // scale`, with the instrument's own
precision, so no float ever touches a price. The selection work is vectorised over the batch;
only the object construction is per tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from nautilus_trader.core.data import Data
from nautilus_trader.model.data import QuoteTick, TradeTick
from nautilus_trader.model.enums import AggressorSide
from nautilus_trader.model.identifiers import InstrumentId, TradeId
from nautilus_trader.model.objects import FIXED_PRECISION

from actors.shard.universe import ShardInstrument
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.errors import ShardlineError

_RAW_UNIT = 10**FIXED_PRECISION


@dataclass
class ConvertedBatch:
    """The Nautilus data built from one tick batch, in feed order (a row's quote before its trade)."""

    data: list[Data]
    ts_exchange_ns: np.ndarray  # per item of `data`
    ts_recv_ns: np.ndarray  # per item of `data`
    trades: int = 0
    quotes: int = 0
    unknown_rows: int = 0  # rows whose iid is not in this shard's universe
    invalid_rows: int = 0  # price finer than the instrument's precision, negative size or timestamp
    rows: int = 0
    skipped_rows: int = 0  # unsubscribed, or nothing to build (no price, no book)


class TickConverter:
    """Converts tick batches for a fixed universe; keeps the little state SNAP_QUOTE trades need.

    Parameters
    ----------
    instruments : Sequence[ShardInstrument]
        The universe, indexed by `iid`.
    """

    def __init__(self, instruments: Sequence[ShardInstrument]) -> None:
        if not instruments:
            raise ShardlineError("a tick converter needs at least one instrument")
        size = max(i.iid for i in instruments) + 1
        if min(i.iid for i in instruments) < 0:
            raise ShardlineError("instrument iids must be non-negative")
        self._known = np.zeros(size, dtype=bool)
        self._ids: list[InstrumentId | None] = [None] * size
        self._raw_mult: list[int] = [0] * size
        self._price_prec: list[int] = [0] * size
        self._size_prec: list[int] = [0] * size
        # Transport units per smallest price step the instrument can express.
        self._grid = np.ones(size, dtype=np.int64)
        for inst in instruments:
            if self._known[inst.iid]:
                raise ShardlineError(f"iid {inst.iid} appears twice in the universe ({inst.key})")
            self._known[inst.iid] = True
            self._ids[inst.iid] = inst.instrument_id
            self._raw_mult[inst.iid] = _RAW_UNIT // inst.price_scale
            self._price_prec[inst.iid] = inst.instrument.price_precision
            self._size_prec[inst.iid] = inst.instrument.size_precision
            self._grid[inst.iid] = inst.price_scale // 10**inst.instrument.price_precision
        self._last_volume = np.full(size, -1, dtype=np.int64)
        self._want_trades = np.zeros(size, dtype=bool)
        self._want_quotes = np.zeros(size, dtype=bool)
        self._iid_by_id = {inst.instrument_id: inst.iid for inst in instruments}

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe_trades(self, instrument_ids: Iterable[InstrumentId], on: bool = True) -> None:
        self._set(self._want_trades, instrument_ids, on)

    def subscribe_quotes(self, instrument_ids: Iterable[InstrumentId], on: bool = True) -> None:
        self._set(self._want_quotes, instrument_ids, on)

    def _set(self, flags: np.ndarray, instrument_ids: Iterable[InstrumentId], on: bool) -> None:
        for instrument_id in instrument_ids:
            iid = self._iid_by_id.get(instrument_id)
            if iid is not None:
                flags[iid] = on

    def is_subscribed(self, instrument_id: InstrumentId) -> tuple[bool, bool]:
        """(trades, quotes) subscription flags for one instrument."""
        iid = self._iid_by_id.get(instrument_id)
        if iid is None:
            return False, False
        return bool(self._want_trades[iid]), bool(self._want_quotes[iid])

    # -- conversion ---------------------------------------------------------------------------

    def convert(self, ticks: np.ndarray) -> ConvertedBatch:
        """Build the subscribed Nautilus ticks of one batch.

        Parameters
        ----------
        ticks : np.ndarray
            A structured array of `TICK_DTYPE`, in feed order.

        Returns
        -------
        ConvertedBatch
        """
        if ticks.dtype != TICK_DTYPE:
            raise ShardlineError(f"tick batch has dtype {ticks.dtype}, expected actors.ticks.TICK_DTYPE")
        n = len(ticks)
        iid = ticks["iid"].astype(np.int64)
        in_range = (iid >= 0) & (iid < len(self._known))
        safe_iid = np.where(in_range, iid, 0)
        known = in_range & self._known[safe_iid]
        mode = ticks["mode"]
        ltp = ticks["ltp"]
        bid = ticks["bid"]
        ask = ticks["ask"]
        grid = self._grid[safe_iid]

        is_snap = mode == FeedMode.SNAP_QUOTE
        trade = known & self._want_trades[safe_iid] & (ltp > 0)
        snap_trade = is_snap & self._new_volume(ticks, known & is_snap)
        trade &= (mode == FeedMode.LTP) | (mode == FeedMode.QUOTE) | snap_trade
        quote = known & self._want_quotes[safe_iid] & is_snap & (bid > 0) & (ask > 0)

        bad_time = (ticks["ts_exchange_ns"] < 0) | (ticks["ts_recv_ns"] < 0)
        bad_trade = trade & ((ltp % grid != 0) | bad_time)
        bad_quote = quote & (
            (bid % grid != 0) | (ask % grid != 0) | (ticks["bid_qty"] < 0) | (ticks["ask_qty"] < 0) | bad_time
        )
        invalid = bad_trade | bad_quote
        trade &= ~invalid
        quote &= ~invalid

        rows = np.flatnonzero(trade | quote)
        per_row = quote[rows].astype(np.int64) + trade[rows].astype(np.int64)
        sel = ticks[rows]
        size = np.where(sel["ltq"] > 0, sel["ltq"], 1)
        data = self._build(
            sel["iid"].tolist(),
            quote[rows].tolist(),
            trade[rows].tolist(),
            sel["ltp"].tolist(),
            size.tolist(),
            sel["bid"].tolist(),
            sel["ask"].tolist(),
            sel["bid_qty"].tolist(),
            sel["ask_qty"].tolist(),
            sel["seq"].tolist(),
            sel["ts_exchange_ns"].tolist(),
            sel["ts_recv_ns"].tolist(),
        )
        return ConvertedBatch(
            data=data,
            ts_exchange_ns=np.repeat(sel["ts_exchange_ns"], per_row),
            ts_recv_ns=np.repeat(sel["ts_recv_ns"], per_row),
            trades=int(trade.sum()),
            quotes=int(quote.sum()),
            unknown_rows=int(n - known.sum()),
            invalid_rows=int(invalid.sum()),
            rows=n,
            skipped_rows=int(known.sum() - len(rows) - invalid.sum()),
        )

    def _new_volume(self, ticks: np.ndarray, snap: np.ndarray) -> np.ndarray:
        """Rows (of `snap`) whose day volume differs from the instrument's previous SNAP_QUOTE row."""
        out = np.zeros(len(ticks), dtype=bool)
        idx = np.flatnonzero(snap)
        if not len(idx):
            return out
        iids = ticks["iid"][idx].astype(np.int64)
        volumes = ticks["volume"][idx]
        order = np.argsort(iids, kind="stable")  # groups per instrument, feed order kept inside
        s_iid = iids[order]
        s_vol = volumes[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = s_iid[1:] != s_iid[:-1]
        prev = np.empty_like(s_vol)
        prev[1:] = s_vol[:-1]
        prev[first] = self._last_volume[s_iid[first]]
        # A lower volume than before is the next session's count starting over: still a trade.
        out[idx[order]] = (s_vol != prev) & (s_vol > 0)
        last = np.ones(len(order), dtype=bool)
        last[:-1] = first[1:]
        self._last_volume[s_iid[last]] = s_vol[last]
        return out

    def _build(
        self,
        iids: list[int],
        quotes: list[bool],
        trades: list[bool],
        ltps: list[int],
        sizes: list[int],
        bids: list[int],
        asks: list[int],
        bid_qtys: list[int],
        ask_qtys: list[int],
        seqs: list[int],
        ts_exchange: list[int],
        ts_recv: list[int],
    ) -> list[Data]:
        ids = self._ids
        mults = self._raw_mult
        precs = self._price_prec
        size_precs = self._size_prec
        unit = _RAW_UNIT
        no_aggressor = AggressorSide.NO_AGGRESSOR
        out: list[Data] = []
        append = out.append
        for i, iid in enumerate(iids):
            instrument_id = ids[iid]
            mult = mults[iid]
            prec = precs[iid]
            size_prec = size_precs[iid]
            if quotes[i]:
                append(
                    QuoteTick.from_raw(
                        instrument_id,
                        bids[i] * mult,
                        asks[i] * mult,
                        prec,
                        prec,
                        bid_qtys[i] * unit,
                        ask_qtys[i] * unit,
                        size_prec,
                        size_prec,
                        ts_exchange[i],
                        ts_recv[i],
                    )
                )
            if trades[i]:
                append(
                    TradeTick.from_raw(
                        instrument_id,
                        ltps[i] * mult,
                        prec,
                        sizes[i] * unit,
                        size_prec,
                        no_aggressor,
                        TradeId(str(seqs[i])),
                        ts_exchange[i],
                        ts_recv[i],
                    )
                )
        return out
