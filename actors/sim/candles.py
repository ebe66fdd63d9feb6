"""Historical candles for the simulator: a pure function of (seed, instrument, interval, time).

Each candle is computed from a hash of its bucket number, so any date range gives the same candles
as any overlapping range, with no stored history. Intraday candles cover 09:15-15:30 IST on
weekdays; daily candles one per weekday. Prices are on the instrument's tick grid.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from actors.angel.common import CANDLE_MAX_DAYS, CANDLE_TIME_FORMAT, CandleInterval
from actors.sim.market_hours import CLOSE, IST, OPEN
from actors.sim.universe import SimInstrument

INTERVAL_MINUTES: dict[str, int] = {
    CandleInterval.ONE_MINUTE: 1,
    CandleInterval.THREE_MINUTE: 3,
    CandleInterval.FIVE_MINUTE: 5,
    CandleInterval.TEN_MINUTE: 10,
    CandleInterval.FIFTEEN_MINUTE: 15,
    CandleInterval.THIRTY_MINUTE: 30,
    CandleInterval.ONE_HOUR: 60,
    CandleInterval.ONE_DAY: 24 * 60,
}
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class CandleRequestError(ValueError):
    """A candle request that cannot be answered; the message says which field and why."""


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each element (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _unit(x: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) from a hash of x and a salt."""
    return (_mix(x ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)) >> np.uint64(11)).astype(np.float64) / float(
        1 << 53
    )


def parse_range(interval: str, from_text: str, to_text: str) -> tuple[datetime, datetime]:
    """Check interval and dates (``yyyy-MM-dd HH:mm``, IST) against Angel's per-interval cap."""
    if interval not in INTERVAL_MINUTES:
        raise CandleRequestError(
            f"Invalid interval {interval!r}: expected one of {', '.join(INTERVAL_MINUTES)}"
        )
    try:
        start = datetime.strptime(str(from_text), CANDLE_TIME_FORMAT).replace(tzinfo=IST)
        end = datetime.strptime(str(to_text), CANDLE_TIME_FORMAT).replace(tzinfo=IST)
    except ValueError:
        raise CandleRequestError(
            f"fromdate and todate must look like '2024-01-31 09:15'; got {from_text!r} and {to_text!r}"
        ) from None
    if end < start:
        raise CandleRequestError(f"todate {to_text} is before fromdate {from_text}")
    if end - start > timedelta(days=CANDLE_MAX_DAYS[CandleInterval(interval)]):
        raise CandleRequestError(
            f"{interval} candles cover at most {CANDLE_MAX_DAYS[CandleInterval(interval)]} days per request; "
            f"asked for {(end - start).days} days"
        )
    return start, end


def _bucket_starts(interval: str, start: datetime, end: datetime) -> list[datetime]:
    minutes = INTERVAL_MINUTES[interval]
    out: list[datetime] = []
    day: date = start.date()
    while day <= end.date():
        if day.weekday() < 5:
            if interval == "ONE_DAY":
                out.append(datetime(day.year, day.month, day.day, tzinfo=IST))
            else:
                t = datetime(day.year, day.month, day.day, OPEN.hour, OPEN.minute, tzinfo=IST)
                close = datetime(day.year, day.month, day.day, CLOSE.hour, CLOSE.minute, tzinfo=IST)
                while t < close:
                    if start <= t <= end:
                        out.append(t)
                    t += timedelta(minutes=minutes)
        day += timedelta(days=1)
    return out


def synthesize_candles(
    inst: SimInstrument, interval: str, start: datetime, end: datetime, seed: int
) -> list[list[Any]]:
    """Candles as Angel returns them: ``[timestamp, open, high, low, close, volume]``, rupees as floats."""
    starts = _bucket_starts(interval, start, end)
    if not starts:
        return []
    minutes = INTERVAL_MINUTES[interval]
    epoch_minutes = np.array([int(t.timestamp()) // 60 for t in starts], dtype=np.int64)
    bucket = (epoch_minutes // minutes).astype(np.uint64)
    salt = (seed * 1_000_003) ^ hash_key(inst.key)
    tick = inst.tick_size
    base = float(inst.base_price)

    def close_of(b: np.ndarray) -> np.ndarray:
        k = b.astype(np.float64) * minutes
        path = base * (1 + 0.08 * np.sin(k / 9_973) + 0.03 * np.sin(k / 613))
        noise = (_unit(b, salt) - 0.5) * 0.004 * np.sqrt(minutes)
        return np.maximum(np.round(path * (1 + noise) / tick), 1).astype(np.int64) * tick

    close = close_of(bucket)
    open_ = close_of(bucket - np.uint64(1))
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    wiggle = np.maximum(1, (base * 0.0008 * np.sqrt(minutes)) // tick).astype(np.int64)
    high = top + (_unit(bucket, salt + 1) * wiggle).astype(np.int64) * tick
    low = np.maximum(bottom - (_unit(bucket, salt + 2) * wiggle).astype(np.int64) * tick, tick)
    volume = inst.lot_size * (100 + (_unit(bucket, salt + 3) * 5_000 * minutes).astype(np.int64))
    scale = 1e7 if inst.exchange == "CDS" else 100.0
    return [
        [t.isoformat(), o / scale, h / scale, lo / scale, c / scale, int(v)]
        for t, o, h, lo, c, v in zip(
            starts, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), volume.tolist(), strict=True
        )
    ]


def hash_key(key: str) -> int:
    """A stable 63-bit number for an instrument key (Python's hash() changes per process)."""
    value = 1469598103934665603
    for byte in key.encode():
        value = ((value ^ byte) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return value
