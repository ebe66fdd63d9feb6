from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from serve.candles import Candle, CandleBuilder, bucket_start

IST = timezone(timedelta(hours=5, minutes=30))


def ist(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=IST).timestamp())


@pytest.mark.parametrize(
    ("moment", "interval", "start"),
    [
        (ist(2026, 7, 1, 9, 15, 42), 60, ist(2026, 7, 1, 9, 15)),
        (ist(2026, 7, 1, 9, 29, 59), 900, ist(2026, 7, 1, 9, 15)),
        (ist(2026, 7, 1, 10, 59, 0), 3600, ist(2026, 7, 1, 10, 0)),
        (ist(2026, 7, 1, 15, 29, 0), 86400, ist(2026, 7, 1, 0, 0)),
        (ist(2026, 7, 1, 0, 0, 0), 86400, ist(2026, 7, 1, 0, 0)),
    ],
)
def test_buckets_align_to_ist(moment: int, interval: int, start: int) -> None:
    assert bucket_start(moment, interval) == start


def ns(seconds: int) -> int:
    return seconds * 1_000_000_000


def test_builder_folds_samples_into_ohlcv() -> None:
    t0 = ist(2026, 7, 1, 9, 15)
    builder = CandleBuilder(60)
    builder.update(ns(t0 + 1), 10_000, 500)
    builder.update(ns(t0 + 20), 10_250, 540)
    builder.update(ns(t0 + 30), 9_900, 600)
    candle = builder.update(ns(t0 + 59), 10_100, 610)
    assert candle == Candle(t0, 10_000, 10_250, 9_900, 10_100, 110)


def test_a_new_bucket_starts_a_new_candle_and_old_samples_are_ignored() -> None:
    t0 = ist(2026, 7, 1, 9, 15)
    builder = CandleBuilder(60)
    builder.update(ns(t0 + 5), 100, 10)
    nxt = builder.update(ns(t0 + 65), 105, 15)
    assert nxt == Candle(t0 + 60, 105, 105, 105, 105, 5)
    assert builder.update(ns(t0 + 10), 999, 20) is None
    assert builder.current == Candle(t0 + 60, 105, 105, 105, 105, 5)


def test_a_falling_day_volume_is_a_new_session_not_negative_volume() -> None:
    t0 = ist(2026, 7, 1, 9, 15)
    builder = CandleBuilder(60)
    builder.update(ns(t0), 100, 1_000)
    candle = builder.update(ns(t0 + 1), 100, 10)
    assert candle is not None and candle.volume == 0


def test_seed_continues_the_history() -> None:
    t0 = ist(2026, 7, 1, 9, 15)
    builder = CandleBuilder(60)
    builder.seed(Candle(t0, 100, 120, 90, 110, 1000))
    candle = builder.update(ns(t0 + 30), 125, 0)
    assert candle == Candle(t0, 100, 125, 90, 125, 1000)


def test_zero_price_is_not_a_trade() -> None:
    assert CandleBuilder(60).update(ns(1), 0, 0) is None
