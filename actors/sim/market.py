"""The simulated market: per-instrument prices, depth, volume and open interest, in numpy arrays.

Every call that moves the market takes the instrument indices of the ticks to make (one entry per
tick, in order) and the timestamp, and returns those ticks as SmartStream SNAP_QUOTE records, filled
column by column without a Python loop per tick. LTP and QUOTE packets are prefixes of the same
records, so one fill serves every subscription mode.

Prices stay on each instrument's tick grid and inside its circuit band: ±20% of the previous
close for cash equities, ±40% for derivatives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import ArrayLike

from actors.angel.packets import EXCHANGE_TYPE, SNAP_QUOTE_DTYPE, TOKEN_BYTES
from actors.sim.universe import SimInstrument
from actors.ticks import TICK_FIELDS, FeedMode

log = logging.getLogger(__name__)

EQUITY_BAND = 0.20
DERIVATIVE_BAND = 0.40
DEPTH_LEVELS = 5
REPLAY_COLUMNS = ("exchange", "token", *(name for name, _ in TICK_FIELDS))


def grouped_cumsum(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` within each group, in the original order of the entries.

    ``grouped_cumsum([3, 1, 3, 3], [1, 2, 3, 4]) -> [1, 2, 4, 8]``
    """
    if len(groups) == 0:
        return values.copy()
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    sorted_values = values[order]
    running = np.cumsum(sorted_values)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    lengths = np.diff(np.r_[starts, len(groups)])
    offset = np.repeat(running[starts] - sorted_values[starts], lengths)
    out = np.empty_like(running)
    out[order] = running - offset
    return out


def last_of_each(groups: np.ndarray) -> np.ndarray:
    """Positions of the last entry of each distinct group (so state takes the newest value)."""
    reversed_unique = np.unique(groups[::-1], return_index=True)[1]
    return np.asarray(len(groups) - 1 - reversed_unique, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class QuoteView:
    """The current top of book of one instrument, in paise and units."""

    bid: int
    ask: int
    ltp: int
    bid_qty: int
    ask_qty: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    oi: int
    avg_price: int
    lower_circuit: int
    upper_circuit: int
    ts_ms: int


class MarketModel:
    """Seeded random-walk market over a fixed list of instruments.

    Parameters
    ----------
    instruments : sequence of SimInstrument
        The universe; an instrument's position in it is its index everywhere here.
    seed : int
        Same seed and same calls give the same ticks.
    """

    def __init__(self, instruments: Sequence[SimInstrument], seed: int) -> None:
        if not instruments:
            raise ValueError("the simulated market needs at least one instrument")
        keys = [i.key for i in instruments]
        if len(set(keys)) != len(keys):
            raise ValueError("instrument keys repeat; each exchange:token must appear once")
        self.instruments = list(instruments)
        self.index = {key: n for n, key in enumerate(keys)}
        n = len(instruments)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.tick = np.array([i.tick_size for i in instruments], dtype=np.int64)
        self.lot = np.array([i.lot_size for i in instruments], dtype=np.int64)
        self.prev_close = np.array([i.base_price for i in instruments], dtype=np.int64)
        self.is_derivative = np.array([i.is_derivative for i in instruments], dtype=bool)
        self.tradable = np.array([not i.is_index for i in instruments], dtype=bool)
        self.exchange_type = np.array([EXCHANGE_TYPE[i.exchange] for i in instruments], dtype=np.uint8)
        self.token_bytes = np.array([i.token.encode() for i in instruments], dtype=f"S{TOKEN_BYTES}")
        band = np.where(self.is_derivative, DERIVATIVE_BAND, EQUITY_BAND)
        lower = np.ceil(self.prev_close * (1 - band) / self.tick).astype(np.int64) * self.tick
        self.lower_circuit = np.maximum(lower, self.tick)
        self.upper_circuit = np.floor(self.prev_close * (1 + band) / self.tick).astype(np.int64) * self.tick
        self.high_52w = np.floor(self.prev_close * 1.45 / self.tick).astype(np.int64) * self.tick
        self.low_52w = np.maximum(np.ceil(self.prev_close * 0.6 / self.tick).astype(np.int64), 1) * self.tick
        self.spread_ticks = rng.integers(1, 3, n).astype(np.int64)
        self.ltp = self.prev_close.copy()
        self.open = self.prev_close.copy()
        self.high = self.prev_close.copy()
        self.low = self.prev_close.copy()
        self.volume = np.zeros(n, dtype=np.int64)
        self.turnover = np.zeros(n, dtype=np.int64)  # sum of qty * price, for the average price
        open_interest = self.lot * rng.integers(1_000, 50_000, n)
        self.oi_open = np.where(self.is_derivative, open_interest, 0).astype(np.int64)
        self.oi = self.oi_open.copy()
        self.seq = np.zeros(n, dtype=np.int64)
        self.last_ts_ms = np.zeros(n, dtype=np.int64)
        self.bid = np.maximum(self.ltp - self.spread_ticks * self.tick, self.lower_circuit)
        self.ask = np.minimum(self.ltp + self.spread_ticks * self.tick, self.upper_circuit)
        self.bid_qty = self.lot * rng.integers(1, 50, n)
        self.ask_qty = self.lot * rng.integers(1, 50, n)
        self.ticks_made = 0

    def __len__(self) -> int:
        return len(self.instruments)

    # --------------------------------------------------------------------------------- moving

    def step(self, indices: np.ndarray, ts_ms: int) -> np.ndarray:
        """Make one tick per entry of ``indices`` (a random walk on the grid); return SNAP records."""
        indices = np.asarray(indices, dtype=np.int64)
        n = len(indices)
        rng = self._rng
        moves = rng.integers(-1, 2, n).astype(np.int64)  # -1, 0 or +1 tick per trade
        walk = grouped_cumsum(indices, moves)
        ltp = np.clip(
            self.ltp[indices] + walk * self.tick[indices],
            self.lower_circuit[indices],
            self.upper_circuit[indices],
        )
        ltq = self.lot[indices] * rng.integers(1, 20, n)
        oi_moves = np.where(self.is_derivative[indices], self.lot[indices] * rng.integers(-5, 6, n), 0)
        oi = np.maximum(self.oi[indices] + grouped_cumsum(indices, oi_moves), 0)
        half = self.spread_ticks[indices] * self.tick[indices]
        bid = np.maximum(ltp - half, self.lower_circuit[indices])
        ask = np.minimum(ltp + half, self.upper_circuit[indices])
        return self._emit(indices, ts_ms, ltp, ltq, bid, ask, oi)

    def replay(
        self,
        indices: ArrayLike,
        ts_ms: ArrayLike,
        ltp: ArrayLike,
        ltq: ArrayLike,
        bid: ArrayLike,
        ask: ArrayLike,
        oi: ArrayLike,
    ) -> np.ndarray:
        """Recorded ticks instead of the walk: same records, same state updates."""
        indices = np.asarray(indices, dtype=np.int64)
        ltp = np.asarray(ltp, dtype=np.int64)
        # Recorded LTP/QUOTE ticks carry no bid/ask: quote around the trade price.
        half = self.spread_ticks[indices] * self.tick[indices]
        bid = np.where(np.asarray(bid) > 0, bid, ltp - half).astype(np.int64)
        ask = np.where(np.asarray(ask) > 0, ask, ltp + half).astype(np.int64)
        ltq = np.asarray(ltq, dtype=np.int64)
        return self._emit(indices, np.asarray(ts_ms), ltp, ltq, bid, ask, np.asarray(oi, dtype=np.int64))

    def _emit(
        self,
        indices: np.ndarray,
        ts_ms: np.ndarray | int,
        ltp: np.ndarray,
        ltq: np.ndarray,
        bid: np.ndarray,
        ask: np.ndarray,
        oi: np.ndarray,
    ) -> np.ndarray:
        n = len(indices)
        rng = self._rng
        seq = self.seq[indices] + grouped_cumsum(indices, np.ones(n, dtype=np.int64))
        volume = self.volume[indices] + grouped_cumsum(indices, ltq)
        turnover = self.turnover[indices] + grouped_cumsum(indices, ltq * ltp)
        high = np.maximum(self.high[indices], ltp)
        low = np.minimum(self.low[indices], ltp)

        rec = np.zeros(n, dtype=SNAP_QUOTE_DTYPE)
        rec["mode"] = FeedMode.SNAP_QUOTE
        rec["exchange_type"] = self.exchange_type[indices]
        rec["token"] = self.token_bytes[indices]
        rec["seq"] = seq
        rec["ts_exchange_ms"] = ts_ms
        rec["ltp"] = ltp
        rec["ltq"] = ltq
        rec["avg_price"] = turnover // np.maximum(volume, 1)
        rec["volume"] = volume
        rec["open"] = self.open[indices]
        rec["high"] = high
        rec["low"] = low
        rec["close"] = self.prev_close[indices]
        rec["ts_last_trade_ms"] = ts_ms
        rec["oi"] = oi
        oi_open = self.oi_open[indices]
        rec["oi_change_pct"] = np.where(oi_open > 0, (oi - oi_open) * 100 // np.maximum(oi_open, 1), 0)
        rec["upper_circuit"] = self.upper_circuit[indices]
        rec["lower_circuit"] = self.lower_circuit[indices]
        rec["high_52w"] = np.maximum(self.high_52w[indices], high)
        rec["low_52w"] = np.minimum(self.low_52w[indices], low)

        # Five levels a side: buys (flag 1) first, best first, then sells (flag 0).
        tick = self.tick[indices][:, None]
        steps = np.arange(DEPTH_LEVELS, dtype=np.int64)[None, :]
        lots = self.lot[indices][:, None]
        depth = rec["depth"]
        depth["flag"][:, :DEPTH_LEVELS] = 1
        depth["price"][:, :DEPTH_LEVELS] = np.maximum(bid[:, None] - steps * tick, tick)
        depth["price"][:, DEPTH_LEVELS:] = ask[:, None] + steps * tick
        depth["qty"] = lots * rng.integers(1, 50, (n, 2 * DEPTH_LEVELS))
        depth["orders"] = rng.integers(1, 30, (n, 2 * DEPTH_LEVELS))
        rec["total_buy_qty"] = depth["qty"][:, :DEPTH_LEVELS].sum(axis=1) * 8
        rec["total_sell_qty"] = depth["qty"][:, DEPTH_LEVELS:].sum(axis=1) * 8

        last = last_of_each(indices)
        at = indices[last]
        self.seq[at] = seq[last]
        self.ltp[at] = ltp[last]
        self.volume[at] = volume[last]
        self.turnover[at] = turnover[last]
        self.oi[at] = oi[last]
        self.bid[at] = bid[last]
        self.ask[at] = ask[last]
        self.bid_qty[at] = depth["qty"][last, 0]
        self.ask_qty[at] = depth["qty"][last, DEPTH_LEVELS]
        self.last_ts_ms[at] = rec["ts_exchange_ms"][last]
        np.maximum.at(self.high, indices, ltp)
        np.minimum.at(self.low, indices, ltp)
        self.ticks_made += n
        return rec

    # --------------------------------------------------------------------------------- reading

    def quote(self, index: int) -> QuoteView:
        i = index
        volume = int(self.volume[i])
        return QuoteView(
            bid=int(self.bid[i]),
            ask=int(self.ask[i]),
            ltp=int(self.ltp[i]),
            bid_qty=int(self.bid_qty[i]),
            ask_qty=int(self.ask_qty[i]),
            open=int(self.open[i]),
            high=int(self.high[i]),
            low=int(self.low[i]),
            close=int(self.prev_close[i]),
            volume=volume,
            oi=int(self.oi[i]),
            avg_price=int(self.turnover[i] // volume) if volume else int(self.ltp[i]),
            lower_circuit=int(self.lower_circuit[i]),
            upper_circuit=int(self.upper_circuit[i]),
            ts_ms=int(self.last_ts_ms[i]),
        )


class RoundRobin:
    """Spreads ticks evenly over a set of instrument indices, in a fixed rotation."""

    def __init__(self) -> None:
        self._cursor = 0

    def take(self, active: np.ndarray, count: int) -> np.ndarray:
        if len(active) == 0 or count <= 0:
            return np.empty(0, dtype=np.int64)
        positions = (self._cursor + np.arange(count)) % len(active)
        self._cursor = (self._cursor + count) % len(active)
        return np.asarray(active[positions], dtype=np.int64)


class ReplaySource:
    """Recorded ticks from Parquet (the tick batch columns plus ``exchange`` and ``token``).

    Rows play in file order; the simulator numbers them again per token so the sequence stays
    gap-free whatever the recording held.
    """

    def __init__(self, path: str) -> None:
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"replay file {path}: cannot read it as Parquet: {err}") from None
        needed = ("exchange", "token", "ltp", "ltq", "bid", "ask", "oi", "ts_exchange_ns")
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise ValueError(f"replay file {path}: missing columns {', '.join(missing)}")
        if table.num_rows == 0:
            raise ValueError(f"replay file {path}: no rows")
        self.path = path
        exchanges = table.column("exchange").to_pylist()
        tokens = [str(t) for t in table.column("token").to_pylist()]
        self.keys = [f"{e}:{t}" for e, t in zip(exchanges, tokens, strict=True)]
        self.ltp = table.column("ltp").to_numpy().astype(np.int64)
        self.ltq = table.column("ltq").to_numpy().astype(np.int64)
        self.bid = table.column("bid").to_numpy().astype(np.int64)
        self.ask = table.column("ask").to_numpy().astype(np.int64)
        self.oi = table.column("oi").to_numpy().astype(np.int64)
        self.ts_ms = table.column("ts_exchange_ns").to_numpy().astype(np.int64) // 1_000_000
        self.position = 0
        self.indices: np.ndarray | None = None
        log.info("replay %s: %d ticks over %d instruments", path, len(self.keys), len(set(self.keys)))

    def __len__(self) -> int:
        return len(self.keys)

    def first_prices(self) -> dict[str, int]:
        """Each instrument's first recorded price: its starting price in the simulated market."""
        first: dict[str, int] = {}
        for key, price in zip(self.keys, self.ltp.tolist(), strict=True):
            first.setdefault(key, int(price))
        return first

    def bind(self, market: MarketModel) -> None:
        unknown = sorted({k for k in self.keys if k not in market.index})
        if unknown:
            listed = ", ".join(unknown[:5])
            raise ValueError(f"replay file {self.path}: instruments not in the market: {listed}")
        self.indices = np.array([market.index[k] for k in self.keys], dtype=np.int64)

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.keys)

    def play(self, market: MarketModel, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``count`` recorded ticks as (instrument indices, SNAP records)."""
        if self.indices is None:
            self.bind(market)
        assert self.indices is not None
        start, stop = self.position, min(self.position + count, len(self.keys))
        self.position = stop
        rows = slice(start, stop)
        idx = self.indices[rows]
        rec = market.replay(
            idx,
            self.ts_ms[rows],
            self.ltp[rows],
            self.ltq[rows],
            self.bid[rows],
            self.ask[rows],
            self.oi[rows],
        )
        return idx, rec
