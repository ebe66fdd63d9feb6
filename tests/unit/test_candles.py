"""Candle fetches: windows no longer than Angel allows, resuming after a failure, no duplicate bars,
and candles as Nautilus bars stamped at their close.

The candles come from the simulator's own candle function and go through Angel's own row parser
(`parse_to_candles`); the HTTP hop is exercised in tests/integration/test_candles_fetch.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from nautilus_trader.model.data import Bar
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.angel.common import CANDLE_TIME_FORMAT, CandleInterval
from actors.angel.schemas import Candle, parse_to_candles
from actors.shard.universe import ShardInstrument
from actors.sim.candles import parse_range, synthesize_candles
from actors.sim.universe import SimInstrument
from catalog.catalog import InstrumentCatalog
from catalog.scrip import read_scrip_master
from cluster.candles import (
    CandleFetchError,
    FetchManifest,
    bar_type_for,
    candles_to_bars,
    fetch_candles,
    is_covered,
    parse_day,
    parse_interval,
    write_new_bars,
)

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "scrip" / "OpenAPIScripMaster.sample.json"
SBIN = ShardInstrument.equity(0, "SBIN-EQ", "3045")
SIM_SBIN = SimInstrument("NSE", "3045", "SBIN-EQ", tick_size=5, lot_size=1, base_price=80_000)
NOW = datetime(2026, 11, 26, 12, 0)


class SimulatedCandles:
    """Answers getCandleData as the simulator does (same checks, same candles), counting requests;
    raises on the request numbered `fail_on`, as a broker outage would."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.requests: list[tuple[datetime, datetime]] = []
        self.fail_on = fail_on

    async def candles(
        self, instrument: str, interval: CandleInterval, start: datetime, end: datetime
    ) -> list[Candle]:
        assert instrument == SIM_SBIN.key
        self.requests.append((start, end))
        if self.fail_on is not None and len(self.requests) == self.fail_on:
            raise ConnectionError("the broker went away")
        first, last = parse_range(
            interval.value, start.strftime(CANDLE_TIME_FORMAT), end.strftime(CANDLE_TIME_FORMAT)
        )
        return parse_to_candles(synthesize_candles(SIM_SBIN, interval.value, first, last, seed=7), "NSE")


def bars_in(catalog: Path) -> list[Bar]:
    return ParquetDataCatalog(str(catalog)).query(Bar)


async def fetch(
    source: SimulatedCandles,
    catalog: Path,
    start: str,
    end: str,
    interval: CandleInterval = CandleInterval.ONE_MINUTE,
    now: datetime = NOW,
) -> object:
    return await fetch_candles(
        source, catalog, SBIN, interval, parse_day(start), parse_day(end, end=True), now
    )


@pytest.mark.parametrize(
    ("interval", "start", "end", "windows"),
    [
        (CandleInterval.ONE_MINUTE, "2026-01-01", "2026-01-30", 1),  # 29 days 23:59: one request
        (CandleInterval.ONE_MINUTE, "2026-01-01", "2026-03-15", 3),  # 30 days each
        (CandleInterval.FIVE_MINUTE, "2026-01-01", "2026-03-15", 1),  # 100 days each
        (CandleInterval.ONE_HOUR, "2025-01-01", "2026-03-15", 2),  # 400 days each
        (CandleInterval.ONE_DAY, "2020-01-01", "2026-03-15", 2),  # 2000 days each
    ],
)
async def test_a_range_is_asked_for_in_windows_the_broker_accepts(
    tmp_path: Path, interval: CandleInterval, start: str, end: str, windows: int
) -> None:
    source = SimulatedCandles()
    summary = await fetch(source, tmp_path, start, end, interval)
    assert len(source.requests) == windows  # and the simulator's own range check passed for each
    assert (summary.windows, summary.fetched, summary.skipped) == (windows, windows, 0)  # type: ignore[attr-defined]
    for (_, previous_end), (next_start, _) in zip(source.requests, source.requests[1:], strict=False):
        assert (next_start - previous_end).total_seconds() == 60  # no minute asked twice, none missed
    # adjacent windows may both return the candle stamped at their boundary: it is written once
    assert summary.candles >= summary.bars_written == len(bars_in(tmp_path)) > 0  # type: ignore[attr-defined]


async def test_a_fetch_that_fails_resumes_where_it_stopped(tmp_path: Path) -> None:
    broken = SimulatedCandles(fail_on=3)
    with pytest.raises(ConnectionError):
        await fetch(broken, tmp_path / "resumed", "2026-01-01", "2026-05-31")
    assert len(bars_in(tmp_path / "resumed")) > 0  # the first two windows are kept
    again = SimulatedCandles()
    summary = await fetch(again, tmp_path / "resumed", "2026-01-01", "2026-05-31")
    windows = summary.windows  # type: ignore[attr-defined]
    assert windows == 6  # 2026-01-01 00:00 + 30 days, again and again, to 2026-05-31 23:59
    assert (summary.skipped, summary.fetched) == (2, windows - 2)  # type: ignore[attr-defined]
    assert again.requests[0] == broken.requests[2]  # starting with the window that failed
    whole = tmp_path / "whole"
    await fetch(SimulatedCandles(), whole, "2026-01-01", "2026-05-31")
    resumed = [(b.ts_init, b.open, b.high, b.low, b.close, b.volume) for b in bars_in(tmp_path / "resumed")]
    assert resumed == [(b.ts_init, b.open, b.high, b.low, b.close, b.volume) for b in bars_in(whole)]
    # nothing left to ask for
    last = SimulatedCandles()
    summary = await fetch(last, tmp_path / "resumed", "2026-01-01", "2026-05-31")
    assert last.requests == [] and summary.skipped == windows  # type: ignore[attr-defined]


async def test_bars_written_but_not_noted_are_asked_for_again_and_not_duplicated(tmp_path: Path) -> None:
    # As if the process stopped between writing a window's bars and noting the window done.
    source = SimulatedCandles()
    candles = await source.candles(
        SIM_SBIN.key, CandleInterval.ONE_MINUTE, datetime(2026, 1, 1), datetime(2026, 1, 30, 23, 59)
    )
    catalog = ParquetDataCatalog(str(tmp_path))
    assert write_new_bars(catalog, candles_to_bars(candles, SBIN, CandleInterval.ONE_MINUTE)) == len(candles)
    summary = await fetch(SimulatedCandles(), tmp_path, "2026-01-01", "2026-01-30")
    assert (summary.fetched, summary.bars_written) == (1, 0)  # type: ignore[attr-defined]
    assert len(bars_in(tmp_path)) == len(candles)


async def test_an_overlapping_range_adds_only_the_new_bars(tmp_path: Path) -> None:
    first = await fetch(SimulatedCandles(), tmp_path, "2026-02-02", "2026-02-13")
    second = await fetch(SimulatedCandles(), tmp_path, "2026-01-26", "2026-02-20")
    days = 10 + 5 + 5  # weekdays: the first fetch's 10, and 5 before and 5 after it
    assert first.bars_written == 10 * 375  # type: ignore[attr-defined]
    assert second.bars_written == 10 * 375  # type: ignore[attr-defined]
    stamps = [b.ts_init for b in bars_in(tmp_path)]
    assert len(stamps) == len(set(stamps)) == days * 375
    assert stamps == sorted(stamps)


async def test_a_window_reaching_into_the_present_is_fetched_again_next_time(tmp_path: Path) -> None:
    morning = datetime(2026, 3, 2, 10, 0)
    summary = await fetch(SimulatedCandles(), tmp_path, "2026-03-02", "2026-03-02", now=morning)
    assert (summary.fetched, summary.incomplete) == (1, 1)  # type: ignore[attr-defined]
    # the bars that closed by 10:00 (09:15 ... 09:59); the 10:00 one is still forming
    assert len(bars_in(tmp_path)) == 45
    evening = datetime(2026, 3, 2, 18, 0)
    later = SimulatedCandles()
    summary = await fetch(later, tmp_path, "2026-03-02", "2026-03-02", now=evening)
    assert (len(later.requests), summary.incomplete) == (1, 1)  # type: ignore[attr-defined]
    assert len(bars_in(tmp_path)) == 375  # the rest of the session, the 10:00 bar complete
    next_day = datetime(2026, 3, 3, 9, 0)
    settled = SimulatedCandles()
    summary = await fetch(settled, tmp_path, "2026-03-02", "2026-03-02", now=next_day)
    assert (len(settled.requests), summary.incomplete, summary.bars_written) == (1, 0, 0)  # type: ignore[attr-defined]
    again = SimulatedCandles()
    await fetch(again, tmp_path, "2026-03-02", "2026-03-02", now=next_day)
    assert again.requests == []
    bars = bars_in(tmp_path)
    assert len(bars) == 375 and bars[45].ts_init == bars[44].ts_init + 60_000_000_000


def test_candles_become_bars_stamped_at_their_close_with_exact_prices() -> None:
    candle = Candle(
        ts_ns=1_772_423_100_000_000_000, open=80_005, high=80_100, low=79_950, close=80_050, volume=1_234
    )
    (bar,) = candles_to_bars([candle], SBIN, CandleInterval.FIVE_MINUTE)
    assert (
        str(bar.bar_type)
        == "SBIN-EQ.NSE-5-MINUTE-LAST-EXTERNAL"
        == str(bar_type_for(SBIN, CandleInterval.FIVE_MINUTE))
    )
    assert bar.ts_event == bar.ts_init == candle.ts_ns + 5 * 60 * 1_000_000_000
    assert (str(bar.open), str(bar.high), str(bar.low), str(bar.close)) == (
        "800.05",
        "801.00",
        "799.50",
        "800.50",
    )
    assert int(bar.volume) == 1_234


@pytest.mark.parametrize(
    ("candle", "message"),
    [
        # RELIANCE ticks in ₹0.10: a price in 5 paise is finer than it can show
        (Candle(0, 250_005, 250_100, 249_950, 250_050, 10), "off the instrument's 1-decimal grid"),
        (Candle(0, 250_000, 249_000, 249_900, 250_000, 10), "inconsistent"),
        (Candle(0, 0, 250_100, 0, 250_000, 10), "not positive"),
        (Candle(0, 250_000, 250_100, 249_900, 250_000, -1), "inconsistent"),
    ],
)
def test_impossible_candles_are_refused_by_instrument_and_time(candle: Candle, message: str) -> None:
    frame, report = read_scrip_master(SAMPLE)
    reliance = ShardInstrument.from_catalog(InstrumentCatalog(frame, report).get("NSE:2885"))
    with pytest.raises(CandleFetchError, match=message) as err:
        candles_to_bars([candle], reliance, CandleInterval.ONE_MINUTE)
    assert "NSE:2885" in str(err.value)


@pytest.mark.parametrize(
    ("window", "done", "covered"),
    [
        (("2026-01-05 00:00", "2026-01-10 00:00"), [("2026-01-01 00:00", "2026-01-31 23:59")], True),
        # two done windows that meet (one minute apart) cover what spans both
        (("2026-01-20 00:00", "2026-02-05 00:00"),
         [("2026-01-01 00:00", "2026-01-31 23:59"), ("2026-02-01 00:00", "2026-02-28 23:59")], True),
        # a gap of a day does not
        (("2026-01-20 00:00", "2026-02-05 00:00"),
         [("2026-01-01 00:00", "2026-01-30 23:59"), ("2026-02-01 00:00", "2026-02-28 23:59")], False),
        (("2026-01-01 00:00", "2026-01-02 00:00"), [], False),
    ],
)  # fmt: skip
def test_coverage_by_done_windows(
    window: tuple[str, str], done: list[tuple[str, str]], covered: bool
) -> None:
    def when(text: str) -> datetime:
        return datetime.strptime(text, CANDLE_TIME_FORMAT)

    assert is_covered((when(window[0]), when(window[1])), [(when(a), when(b)) for a, b in done]) is covered


async def test_bad_requests_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(CandleFetchError, match="expected one of ONE_MINUTE"):
        parse_interval("ONE_WEEK")
    with pytest.raises(CandleFetchError, match="is not a date"):
        parse_day("31/01/2026")
    with pytest.raises(CandleFetchError, match=r"ends .* before it starts"):
        await fetch(SimulatedCandles(), tmp_path, "2026-02-01", "2026-01-01")
    with pytest.raises(CandleFetchError, match="in the future"):
        await fetch(SimulatedCandles(), tmp_path, "2027-01-01", "2027-01-31")
    manifest = FetchManifest(tmp_path, bar_type_for(SBIN, CandleInterval.ONE_MINUTE))
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    manifest.path.write_text("{not json")
    with pytest.raises(CandleFetchError, match=r"not a fetch manifest.*delete it"):
        await fetch(SimulatedCandles(), tmp_path, "2026-01-01", "2026-01-02")
    assert parse_interval("one_minute") is CandleInterval.ONE_MINUTE
    assert parse_day("2026-01-31 09:15") == datetime(2026, 1, 31, 9, 15)
