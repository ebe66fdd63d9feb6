"""`shardline candles fetch`: historical candles from Angel One (or the simulator) into the data catalog.

A date range is cut into request windows no longer than Angel allows for the interval
(`actors.angel.rest.candle_windows`: 30 days of 1-minute candles, 100 of 5-minute, ...), fetched
one request per window through `AngelRestClient.candles`, which waits on the shared `RateLimiter`
(getCandleData: 3 a second, 500 a minute, 5000 an hour, all at once) and retries what the broker
refuses for rate. Each window's candles become Nautilus `Bar`s written to the ParquetDataCatalog
as soon as they arrive, and then the window is noted as done in a small manifest beside the data
(`<catalog>/fetches/<bar type>.json`), so a fetch that stops part way resumes where it left off:

- a window the manifest covers is skipped without a request;
- bars already in the catalog (an interval of its files) are not written again, so a window
  fetched but not yet noted (a crash between the two) costs one request and no duplicate;
- a window that reaches into the present is fetched but not noted: its later candles do not
  exist yet, and the next fetch asks again; a bar still forming (closing after the present) is
  not written, so it is written complete later.

Bars: type `SYMBOL.VENUE-<n>-<MINUTE|HOUR|DAY>-LAST-EXTERNAL`; `ts_event` and `ts_init` are the
bar's close (its open time, as Angel stamps it, plus the interval), the Nautilus convention, so a
backtest sees a bar only once it is complete. Prices are exact (Angel's rupees → paise → raw).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.objects import FIXED_PRECISION, Price, Quantity
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.angel.common import CANDLE_TIME_FORMAT, CandleInterval
from actors.angel.rest import candle_windows
from actors.angel.schemas import Candle
from actors.shard.universe import ShardInstrument
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30), "IST")
MANIFEST_DIR = "fetches"

# Bar length and its Nautilus spelling, per Angel interval.
INTERVAL_BARS: dict[CandleInterval, tuple[timedelta, str]] = {
    CandleInterval.ONE_MINUTE: (timedelta(minutes=1), "1-MINUTE"),
    CandleInterval.THREE_MINUTE: (timedelta(minutes=3), "3-MINUTE"),
    CandleInterval.FIVE_MINUTE: (timedelta(minutes=5), "5-MINUTE"),
    CandleInterval.TEN_MINUTE: (timedelta(minutes=10), "10-MINUTE"),
    CandleInterval.FIFTEEN_MINUTE: (timedelta(minutes=15), "15-MINUTE"),
    CandleInterval.THIRTY_MINUTE: (timedelta(minutes=30), "30-MINUTE"),
    CandleInterval.ONE_HOUR: (timedelta(hours=1), "1-HOUR"),
    CandleInterval.ONE_DAY: (timedelta(days=1), "1-DAY"),
}

Window = tuple[datetime, datetime]  # exchange-local (IST) naive times, both ends included


class CandleFetchError(ShardlineError):
    """A fetch that cannot be done as asked; the message says which input and why."""


class CandleSource(Protocol):
    """Where candles come from: `AngelRestClient` (against Angel One or the simulator)."""

    async def candles(
        self, instrument: str, interval: CandleInterval, start: datetime, end: datetime
    ) -> list[Candle]: ...


def parse_interval(text: str) -> CandleInterval:
    try:
        return CandleInterval(text.upper())
    except ValueError:
        raise CandleFetchError(
            f"interval {text!r}: expected one of {', '.join(i.value for i in CandleInterval)}"
        ) from None


def parse_day(text: str, end: bool = False) -> datetime:
    """A date ("2026-01-31") or date and time ("2026-01-31 09:15") as a naive IST datetime; a bare
    date means its first minute, or with `end` its last."""
    value = text.strip()
    try:
        if len(value) == 10:
            moment = datetime.strptime(value, "%Y-%m-%d")
            return moment.replace(hour=23, minute=59) if end else moment
        return datetime.strptime(value.replace("T", " ")[:16], CANDLE_TIME_FORMAT)
    except ValueError:
        raise CandleFetchError(
            f"{text!r} is not a date (2026-01-31) or date and time (2026-01-31 09:15)"
        ) from None


def bar_type_for(instrument: ShardInstrument, interval: CandleInterval) -> BarType:
    return BarType.from_str(f"{instrument.instrument_id}-{INTERVAL_BARS[interval][1]}-LAST-EXTERNAL")


def candles_to_bars(
    candles: Sequence[Candle], instrument: ShardInstrument, interval: CandleInterval
) -> list[Bar]:
    """Angel candles (minor units, open-time stamps) as Nautilus bars stamped at their close."""
    bar_type = bar_type_for(instrument, interval)
    step_ns = int(INTERVAL_BARS[interval][0].total_seconds()) * 1_000_000_000
    nautilus = instrument.instrument
    precision = nautilus.price_precision
    raw_per_minor = 10**FIXED_PRECISION // instrument.price_scale
    grid = instrument.price_scale // 10**precision  # minor units per price step the instrument shows
    bars = []
    for candle in candles:
        prices = (candle.open, candle.high, candle.low, candle.close)
        if any(p <= 0 or p % grid for p in prices):
            raise CandleFetchError(
                f"{instrument.key}: candle at {_local(candle.ts_ns)} has a price off the instrument's "
                f"{precision}-decimal grid or not positive: {prices}"
            )
        if (
            candle.volume < 0
            or not candle.low
            <= min(candle.open, candle.close)
            <= max(candle.open, candle.close)
            <= candle.high
        ):
            raise CandleFetchError(
                f"{instrument.key}: candle at {_local(candle.ts_ns)} is inconsistent: {candle}"
            )
        close_ns = candle.ts_ns + step_ns
        bars.append(
            Bar(
                bar_type,
                *(Price.from_raw(p * raw_per_minor, precision) for p in prices),
                Quantity(candle.volume, nautilus.size_precision),
                close_ns,
                close_ns,
            )
        )
    bars.sort(key=lambda b: b.ts_init)
    return bars


def _local(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, IST).strftime(CANDLE_TIME_FORMAT)


# ----------------------------------------------------------------------------------- the manifest


def _merge(windows: Sequence[Window]) -> list[Window]:
    """Windows joined where they overlap or meet (one minute apart), ascending."""
    merged: list[Window] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1] + timedelta(minutes=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def is_covered(window: Window, done: Sequence[Window]) -> bool:
    """Whether `window` lies inside the union of the `done` windows."""
    return any(start <= window[0] and window[1] <= end for start, end in _merge(done))


class FetchManifest:
    """The windows of one bar type already fetched in full, kept as JSON beside the catalog data."""

    def __init__(self, catalog_path: Path, bar_type: BarType) -> None:
        self.path = catalog_path / MANIFEST_DIR / f"{bar_type}.json"
        self.windows: list[Window] = []
        if self.path.exists():
            try:
                rows = json.loads(self.path.read_text())
                self.windows = [
                    (datetime.strptime(a, CANDLE_TIME_FORMAT), datetime.strptime(b, CANDLE_TIME_FORMAT))
                    for a, b in rows
                ]
            except (ValueError, TypeError) as err:
                raise CandleFetchError(
                    f"{self.path}: not a fetch manifest ({err}); delete it to fetch every window again"
                ) from None

    def covers(self, window: Window) -> bool:
        return is_covered(window, self.windows)

    def add(self, window: Window) -> None:
        self.windows = _merge([*self.windows, window])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = [[a.strftime(CANDLE_TIME_FORMAT), b.strftime(CANDLE_TIME_FORMAT)] for a, b in self.windows]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(rows, indent=1))
        os.replace(temporary, self.path)  # a reader never sees half a manifest


# ----------------------------------------------------------------------------------- writing


def write_new_bars(catalog: ParquetDataCatalog, bars: Sequence[Bar]) -> int:
    """Write the bars the catalog does not hold yet; returns how many were written.

    A bar inside an interval of an existing file is already there. The rest are written one file
    per gap between existing files, so the catalog's files never overlap.
    """
    if not bars:
        return 0
    identifier = str(bars[0].bar_type)
    existing = sorted(catalog.get_intervals(Bar, identifier))
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        ts = bar.ts_init
        if any(a <= ts <= b for a, b in existing):
            continue
        gap = sum(1 for _, b in existing if b < ts)  # the gap after that many existing files
        groups.setdefault(gap, []).append(bar)
    written = 0
    for gap in sorted(groups):
        chunk = groups[gap]
        catalog.write_data(chunk)
        written += len(chunk)
    return written


@dataclass
class FetchSummary:
    instrument: str
    bar_type: str
    interval: str
    windows: int = 0
    skipped: int = 0  # covered by the manifest: no request
    fetched: int = 0  # requests made
    candles: int = 0  # candles received
    bars_written: int = 0
    incomplete: int = 0  # fetched but reaching into the present: not noted as done

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


ProgressCallback = Callable[[int, int, Window, str], None]  # done, total, window, what happened


async def fetch_candles(
    source: CandleSource,
    catalog_path: Path,
    instrument: ShardInstrument,
    interval: CandleInterval,
    start: datetime,
    end: datetime,
    now: datetime,
    progress: ProgressCallback | None = None,
) -> FetchSummary:
    """Fetch [start, end] (naive IST) of `instrument`'s `interval` candles into the catalog.

    Parameters
    ----------
    source : CandleSource
        Angel's REST client (its rate limiter paces the requests).
    catalog_path : Path
        The ParquetDataCatalog (created if missing).
    now : datetime
        The present, naive IST: windows ending at or after it are fetched but not noted as done.
    progress : ProgressCallback, optional
        Called after each window with (windows done, windows in all, the window, "fetched" or "skipped").
    """
    if end < start:
        raise CandleFetchError(
            f"the range ends ({end:%Y-%m-%d %H:%M}) before it starts ({start:%Y-%m-%d %H:%M})"
        )
    if start > now:
        raise CandleFetchError(f"{start:%Y-%m-%d %H:%M} is in the future: there are no candles yet")
    catalog_path.mkdir(parents=True, exist_ok=True)
    catalog = ParquetDataCatalog(str(catalog_path))
    catalog.write_data([instrument.instrument])  # the same id always overwrites the same file
    bar_type = bar_type_for(instrument, interval)
    manifest = FetchManifest(catalog_path, bar_type)
    windows = candle_windows(start, min(end, now), interval)
    now_ns = int(now.replace(tzinfo=IST).timestamp()) * 1_000_000_000
    summary = FetchSummary(instrument.key, str(bar_type), interval.value, windows=len(windows))
    for done, window in enumerate(windows, start=1):
        if manifest.covers(window):
            summary.skipped += 1
            if progress is not None:
                progress(done, len(windows), window, "skipped")
            continue
        candles = await source.candles(instrument.key, interval, window[0], window[1])
        summary.fetched += 1
        summary.candles += len(candles)
        # A bar still forming (closing after now) is left for a later fetch to write complete.
        bars = [b for b in candles_to_bars(candles, instrument, interval) if b.ts_init <= now_ns]
        summary.bars_written += write_new_bars(catalog, bars)  # the data first, then the note
        if window[1] < now:
            manifest.add(window)
        else:
            summary.incomplete += 1
        if progress is not None:
            progress(done, len(windows), window, "fetched")
    log.info("candles %s %s: %s", instrument.key, interval.value, summary.as_dict())
    return summary
