"""Live candles from the quote stream: OHLCV buckets aligned to Indian Standard Time.

Each replica folds the quote updates it already receives from the hub into the candles its
clients watch, so a live candle costs no extra traffic. Quotes reach a replica conflated (the
router's UI snapshot rate), so a live candle's high and low are those of the snapshots; the
history API gives exchange candles.
"""

from __future__ import annotations

from dataclasses import dataclass

IST_OFFSET_S = 19_800  # +05:30; buckets start at IST boundaries (09:15, 10:00, midnight IST)


def bucket_start(ts_s: int, interval_s: int) -> int:
    """The epoch second at which the IST-aligned bucket holding ``ts_s`` starts."""
    return (ts_s + IST_OFFSET_S) // interval_s * interval_s - IST_OFFSET_S


@dataclass
class Candle:
    time: int  # bucket start, epoch seconds
    open: int  # paise
    high: int
    low: int
    close: int
    volume: int

    def as_dict(self) -> dict[str, int]:
        return {
            "time": self.time,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }


class CandleBuilder:
    """Folds (timestamp, last price, day volume) samples into the current candle of one interval."""

    def __init__(self, interval_s: int) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self.current: Candle | None = None
        self._last_day_volume: int | None = None

    def seed(self, candle: Candle) -> None:
        """Continue from the last candle of the history, so the live one extends it."""
        if self.current is None or candle.time >= self.current.time:
            self.current = Candle(**candle.as_dict())

    def update(self, ts_ns: int, price: int, day_volume: int) -> Candle | None:
        """Apply one sample; return the candle it changed, or None for a sample too old to use."""
        if price <= 0:
            return None
        start = bucket_start(ts_ns // 1_000_000_000, self.interval_s)
        traded = 0
        if self._last_day_volume is not None and day_volume >= self._last_day_volume:
            traded = day_volume - self._last_day_volume
        self._last_day_volume = day_volume  # a lower volume means a new session: start again
        candle = self.current
        if candle is not None and start < candle.time:
            return None
        if candle is None or start > candle.time:
            self.current = Candle(start, price, price, price, price, traded)
            return self.current
        candle.high = max(candle.high, price)
        candle.low = min(candle.low, price)
        candle.close = price
        candle.volume += traded
        return candle
