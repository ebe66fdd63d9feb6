"""What a backtest made, in numbers and pictures: equity curve, drawdown, returns, trades.

Everything here is a function of the fills, the marks (each instrument's last price over time)
and the starting cash, with no Nautilus or Ray import, so it is tested on curves worked out by
hand. Money is exact: prices and charges are `Decimal` rupees at the edges and integer units of
₹0.0001 (`MONEY_UNITS` per rupee, enough for every tick size Angel lists) inside.

- **Equity** at a moment is cash (starting cash − what buys cost + what sells brought − charges)
  plus each position at its instrument's last price then (its last fill price before any mark).
- **Samples**: the equity is read at the last event of each `period` that has events (a fill or a
  price), so nights, weekends and idle stretches add no flat points that would flatter volatility.
- **Returns** are simple returns between consecutive samples; the **Sharpe ratio** is their mean
  over their standard deviation (risk-free rate 0), times the square root of the periods in a
  trading year of 252 sessions of 6 h 15 min (09:15-15:30 IST).
- **Drawdown** is the fall from the highest equity so far; the maximum is reported in rupees and
  as a fraction of that peak.
- **Trades** are round trips per instrument under netting: one opens when the position leaves
  zero and closes when it is back at zero (a fill through zero closes one and opens the next, its
  charges split by quantity). The **win rate** counts closed round trips whose P&L after charges
  is positive; a position still open at the end is listed, marked to its last price, not counted.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

MONEY_UNITS = 10_000  # integer units per rupee in the curve arithmetic (₹0.0001)
PAISA = Decimal("0.01")
TRADING_SECONDS_PER_YEAR = 252 * (6 * 3600 + 15 * 60)
IST = timezone(timedelta(hours=5, minutes=30), "IST")

# Sampling periods chosen from when none is given: the first that keeps the curve within
# MAX_SAMPLES points.
NICE_PERIODS_S = (1, 5, 15, 60, 300, 900, 3600, 86_400)
MAX_SAMPLES = 2_000


class ReportError(ValueError):
    """Input the statistics cannot be computed from; the message says what is wrong."""


@dataclass(frozen=True)
class FillRecord:
    """One execution, as the report needs it.

    Parameters
    ----------
    ts_ns : int
        When it filled (UNIX ns).
    instrument : str
        The instrument id ("SBIN-EQ.NSE").
    side : str
        "BUY" or "SELL".
    quantity : int
        Units filled (not lots).
    price : Decimal
        The fill price in rupees.
    commission : Decimal
        Charges on this fill in rupees (brokerage, taxes and fees).
    order_id : str
        The client order id.
    trade_id : str
        The venue's trade id.
    """

    ts_ns: int
    instrument: str
    side: str
    quantity: int
    price: Decimal
    commission: Decimal = Decimal(0)
    order_id: str = ""
    trade_id: str = ""

    def __post_init__(self) -> None:
        if self.side not in ("BUY", "SELL"):
            raise ReportError(
                f"fill {self.trade_id or self.order_id}: side must be BUY or SELL, not {self.side!r}"
            )
        if self.quantity <= 0:
            raise ReportError(
                f"fill {self.trade_id or self.order_id}: quantity must be positive, not {self.quantity}"
            )
        if self.price <= 0:
            raise ReportError(
                f"fill {self.trade_id or self.order_id}: price must be positive, not {self.price}"
            )

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "BUY" else -self.quantity


@dataclass(frozen=True)
class MarkSeries:
    """An instrument's last price over time: `ts_ns` ascending, `price` in `MONEY_UNITS`."""

    ts_ns: np.ndarray
    price: np.ndarray

    def __post_init__(self) -> None:
        if len(self.ts_ns) != len(self.price):
            raise ReportError("a mark series needs as many prices as timestamps")
        if len(self.ts_ns) > 1 and bool(np.any(np.diff(self.ts_ns) < 0)):
            raise ReportError("mark timestamps must not go backwards")

    @classmethod
    def from_prices(cls, ts_ns: Sequence[int], prices: Sequence[Decimal]) -> MarkSeries:
        return cls(np.asarray(ts_ns, dtype=np.int64), np.array([to_units(p) for p in prices], dtype=np.int64))


@dataclass(frozen=True)
class RoundTrip:
    """One trade: from a flat position back to flat in one instrument (or still open at the end)."""

    instrument: str
    direction: str  # LONG or SHORT
    quantity: int  # the largest position held, in units
    entry_ts_ns: int
    exit_ts_ns: int | None
    entry_price: Decimal  # average, rupees
    exit_price: Decimal | None
    gross_pnl: Decimal
    charges: Decimal
    fills: int

    @property
    def net_pnl(self) -> Decimal:
        return self.gross_pnl - self.charges

    @property
    def is_closed(self) -> bool:
        return self.exit_ts_ns is not None


@dataclass(frozen=True)
class PerformanceStats:
    """The headline figures of a run (fractions, not percent)."""

    starting_equity: Decimal
    final_equity: Decimal
    net_pnl: Decimal
    total_return: float
    sharpe: float | None
    max_drawdown: Decimal
    max_drawdown_pct: float
    charges: Decimal
    fills: int
    trades: int  # closed round trips
    wins: int
    win_rate: float | None
    open_trades: int
    period_s: float
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


@dataclass
class BacktestReport:
    """Everything `write_report` renders; built by `cluster.backtest` from an engine run."""

    name: str
    strategy: str
    config: dict[str, Any]
    start_ns: int
    end_ns: int
    stats: PerformanceStats
    sample_ts_ns: np.ndarray
    equity: np.ndarray  # MONEY_UNITS
    trades: list[RoundTrip]
    fills: list[FillRecord]
    orders: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, int] = field(default_factory=dict)  # what the engine was fed, by kind
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- money


def to_units(rupees: Decimal) -> int:
    """Rupees as integer `MONEY_UNITS`; refuses a value finer than ₹0.0001 rather than round it."""
    scaled = Decimal(rupees) * MONEY_UNITS
    if scaled != scaled.to_integral_value():
        raise ReportError(f"₹{rupees} is finer than ₹{Decimal(1) / MONEY_UNITS}")
    return int(scaled)


def from_units(units: int | np.integer) -> Decimal:
    """Integer `MONEY_UNITS` as rupees, to the paisa when that is exact (it is for all but CDS)."""
    value = Decimal(int(units)) / MONEY_UNITS
    exact = value.quantize(PAISA)
    return exact if exact == value else value.quantize(Decimal(1) / MONEY_UNITS)


def _paisa(value: Decimal | Fraction) -> Decimal:
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)


# ----------------------------------------------------------------------------------- the curve


def choose_period_s(event_ts_ns: np.ndarray) -> int:
    """The shortest of `NICE_PERIODS_S` whose busy periods (those with events) number at most
    `MAX_SAMPLES`, so a curve over months of sessions is hourly, not daily."""
    ts = np.asarray(event_ts_ns, dtype=np.int64)
    for period in NICE_PERIODS_S:
        if len(np.unique(ts // (period * 1_000_000_000))) <= MAX_SAMPLES:
            return period
    return NICE_PERIODS_S[-1]


def sample_times(event_ts_ns: np.ndarray, period_ns: int) -> np.ndarray:
    """The last event time in each `period_ns` bucket that has events, ascending.

    The first event time leads, so the curve starts where the data does.
    """
    if period_ns <= 0:
        raise ReportError(f"the sampling period must be positive, not {period_ns} ns")
    ts = np.unique(np.asarray(event_ts_ns, dtype=np.int64))
    if not len(ts):
        return ts
    bucket = ts // period_ns
    last = np.ones(len(ts), dtype=bool)
    last[:-1] = bucket[1:] != bucket[:-1]
    return np.unique(np.concatenate([ts[:1], ts[last]]))


def equity_curve(
    fills: Sequence[FillRecord],
    marks: Mapping[str, MarkSeries],
    starting_cash: Decimal,
    at_ts_ns: np.ndarray,
) -> np.ndarray:
    """Equity (in `MONEY_UNITS`) at each of `at_ts_ns`, counting events at that very nanosecond.

    An instrument with no mark yet at a sample is valued at its latest fill price.
    """
    at = np.asarray(at_ts_ns, dtype=np.int64)
    ordered = sorted(fills, key=lambda f: f.ts_ns)
    fill_ts = np.array([f.ts_ns for f in ordered], dtype=np.int64)
    qty = np.array([f.signed_quantity for f in ordered], dtype=np.int64)
    price = np.array([to_units(f.price) for f in ordered], dtype=np.int64)
    commission = np.array([to_units(f.commission) for f in ordered], dtype=np.int64)
    cash_flow = -qty * price - commission
    done = np.searchsorted(fill_ts, at, side="right")  # fills at or before each sample
    cash = to_units(starting_cash) + np.concatenate([[0], np.cumsum(cash_flow)])[done]
    equity = cash.astype(np.int64)
    names = np.array([f.instrument for f in ordered], dtype=object)
    for instrument in sorted(set(names.tolist())):
        mine = names == instrument
        its_ts = fill_ts[mine]
        position = np.concatenate([[0], np.cumsum(qty[mine])])[np.searchsorted(its_ts, at, side="right")]
        last_fill = np.concatenate([[0], price[mine]])[np.searchsorted(its_ts, at, side="right")]
        value_price = last_fill
        series = marks.get(instrument)
        if series is not None and len(series.ts_ns):
            k = np.searchsorted(series.ts_ns, at, side="right") - 1
            has_mark = k >= 0
            marked = series.price[np.maximum(k, 0)]
            # The mark or the fill, whichever is later, is the instrument's price at the sample.
            mark_ts = np.where(has_mark, series.ts_ns[np.maximum(k, 0)], np.iinfo(np.int64).min)
            fill_idx = np.searchsorted(its_ts, at, side="right") - 1
            latest_fill_ts = np.where(fill_idx >= 0, its_ts[np.maximum(fill_idx, 0)], np.iinfo(np.int64).min)
            value_price = np.where(has_mark & (mark_ts >= latest_fill_ts), marked, last_fill)
        equity = equity + position * value_price
    return equity


def drawdown(equity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fall from the running peak in the equity's units, as a fraction of that peak), both ≤ 0."""
    values = np.asarray(equity, dtype=np.int64)
    if not len(values):
        return values, np.zeros(0)
    peak = np.maximum.accumulate(values)
    fall = values - peak
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(peak > 0, fall / peak, 0.0)
    return fall, fraction


def max_drawdown(equity: np.ndarray) -> tuple[int, float]:
    """The deepest fall from a peak: (amount in the equity's units ≥ 0, fraction of that peak ≥ 0)."""
    fall, fraction = drawdown(equity)
    if not len(fall):
        return 0, 0.0
    return int(-fall.min()), max(0.0, float(-fraction.min()))  # never -0.0


def period_returns(equity: np.ndarray) -> np.ndarray:
    values = np.asarray(equity, dtype=np.float64)
    if len(values) < 2:
        return np.zeros(0)
    if bool(np.any(values[:-1] <= 0)):
        raise ReportError("returns are undefined once equity reaches zero")
    return np.diff(values) / values[:-1]


def sharpe_ratio(equity: np.ndarray, period_s: float) -> float | None:
    """Annualised Sharpe ratio of the per-sample returns (None with under two returns or no spread)."""
    returns = period_returns(equity)
    if len(returns) < 2:
        return None
    spread = float(np.std(returns, ddof=1))
    if spread == 0 or not math.isfinite(spread):
        return None
    periods_per_year = TRADING_SECONDS_PER_YEAR / period_s
    return float(np.mean(returns)) / spread * math.sqrt(periods_per_year)


# ----------------------------------------------------------------------------------- trades


@dataclass
class _OpenTrade:
    instrument: str
    sign: int  # +1 long, -1 short
    entry_ts_ns: int
    position: int = 0
    peak: int = 0
    entry_qty: int = 0
    entry_value: Decimal = Decimal(0)
    exit_qty: int = 0
    exit_value: Decimal = Decimal(0)
    exit_ts_ns: int = 0
    charges: Decimal = Decimal(0)
    fills: int = 0

    def add(self, quantity: int, price: Decimal, charges: Decimal) -> None:
        self.position += self.sign * quantity
        self.peak = max(self.peak, abs(self.position))
        self.entry_qty += quantity
        self.entry_value += price * quantity
        self.charges += charges
        self.fills += 1

    def reduce(self, quantity: int, price: Decimal, charges: Decimal, ts_ns: int) -> None:
        self.position -= self.sign * quantity
        self.exit_qty += quantity
        self.exit_value += price * quantity
        self.exit_ts_ns = ts_ns
        self.charges += charges
        self.fills += 1

    def result(self, mark: Decimal | None) -> RoundTrip:
        closed = self.position == 0
        # Long: what the exits brought less what the entries cost; short: the other way round.
        gross = self.sign * (self.exit_value - self.entry_value)
        if not closed:
            value = (mark if mark is not None else self.entry_value / self.entry_qty) * abs(self.position)
            gross = self.sign * (self.exit_value + value - self.entry_value)
        return RoundTrip(
            instrument=self.instrument,
            direction="LONG" if self.sign > 0 else "SHORT",
            quantity=self.peak,
            entry_ts_ns=self.entry_ts_ns,
            exit_ts_ns=self.exit_ts_ns if closed else None,
            entry_price=_paisa(self.entry_value / self.entry_qty),
            exit_price=_paisa(self.exit_value / self.exit_qty) if closed else None,
            gross_pnl=_paisa(gross),
            charges=self.charges,
            fills=self.fills,
        )


def round_trips(
    fills: Sequence[FillRecord], last_prices: Mapping[str, Decimal] | None = None
) -> list[RoundTrip]:
    """The round trips the fills make per instrument, in the order they opened (see module doc).

    Parameters
    ----------
    fills : Sequence[FillRecord]
        Every fill of the run (sorted by time here; ties keep their given order).
    last_prices : Mapping[str, Decimal], optional
        Each instrument's last price, to value a position still open at the end.
    """
    trades: list[tuple[int, RoundTrip]] = []
    open_trades: dict[str, tuple[int, _OpenTrade]] = {}
    opened = 0
    for fill in sorted(fills, key=lambda f: f.ts_ns):
        sign = 1 if fill.side == "BUY" else -1
        remaining = fill.quantity
        charges_left = fill.commission
        while remaining:
            current = open_trades.get(fill.instrument)
            if current is None or current[1].sign == sign:
                if current is None:
                    current = (opened, _OpenTrade(fill.instrument, sign, fill.ts_ns))
                    opened += 1
                    open_trades[fill.instrument] = current
                current[1].add(remaining, fill.price, charges_left)
                remaining = 0
                continue
            trade = current[1]
            closing = min(remaining, abs(trade.position))
            # Charges split by quantity when one fill closes a trade and opens the next.
            share = (
                charges_left if closing == remaining else _paisa(fill.commission * closing / fill.quantity)
            )
            trade.reduce(closing, fill.price, share, fill.ts_ns)
            charges_left -= share
            remaining -= closing
            if trade.position == 0:
                trades.append((current[0], trade.result(None)))
                del open_trades[fill.instrument]
    prices = last_prices or {}
    for order, trade in open_trades.values():
        trades.append((order, trade.result(prices.get(trade.instrument))))
    return [t for _, t in sorted(trades, key=lambda pair: pair[0])]


# ----------------------------------------------------------------------------------- statistics


def performance(
    fills: Sequence[FillRecord],
    marks: Mapping[str, MarkSeries],
    starting_cash: Decimal,
    period_s: float | None = None,
) -> tuple[PerformanceStats, np.ndarray, np.ndarray, list[RoundTrip]]:
    """The statistics, the sampled curve (times, equity in `MONEY_UNITS`) and the round trips."""
    if starting_cash <= 0:
        raise ReportError(f"starting cash must be positive, not {starting_cash}")
    events = [np.array([f.ts_ns for f in fills], dtype=np.int64)]
    events += [series.ts_ns for series in marks.values()]
    all_ts = np.concatenate(events) if events else np.zeros(0, dtype=np.int64)
    if period_s is None:
        period_s = choose_period_s(all_ts)
    if period_s <= 0:
        raise ReportError(f"the sampling period must be positive, not {period_s} s")
    at = sample_times(all_ts, int(period_s * 1e9))
    equity = equity_curve(fills, marks, starting_cash, at)
    last_prices = {k: from_units(s.price[-1]) for k, s in marks.items() if len(s.price)}
    trades = round_trips(fills, last_prices)
    closed = [t for t in trades if t.is_closed]
    wins = sum(1 for t in closed if t.net_pnl > 0)
    start_units = to_units(starting_cash)
    final_units = int(equity[-1]) if len(equity) else start_units
    dd_units, dd_fraction = max_drawdown(np.concatenate([[start_units], equity]))
    stats = PerformanceStats(
        starting_equity=from_units(start_units),
        final_equity=from_units(final_units),
        net_pnl=from_units(final_units - start_units),
        total_return=(final_units - start_units) / start_units,
        sharpe=sharpe_ratio(equity, period_s),
        max_drawdown=from_units(dd_units),
        max_drawdown_pct=dd_fraction,
        charges=sum((f.commission for f in fills), Decimal(0)),
        fills=len(fills),
        trades=len(closed),
        wins=wins,
        win_rate=wins / len(closed) if closed else None,
        open_trades=len(trades) - len(closed),
        period_s=float(period_s),
        samples=len(equity),
    )
    return stats, at, equity, trades


# ----------------------------------------------------------------------------------- rendering


def _when(ts_ns: int | None) -> str:
    """IST time to the millisecond, truncated (never rounded into the next second or day)."""
    if ts_ns is None:
        return ""
    seconds, ns = divmod(int(ts_ns), 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).astimezone(IST)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ns // 1_000_000:03d}"


TRADE_COLUMNS = (
    "instrument", "direction", "quantity", "entry_time", "entry_price", "exit_time", "exit_price",
    "gross_pnl", "charges", "net_pnl", "fills",
)  # fmt: skip
FILL_COLUMNS = ("time", "instrument", "side", "quantity", "price", "commission", "order_id", "trade_id")


def trade_rows(trades: Sequence[RoundTrip]) -> list[dict[str, str]]:
    return [
        {
            "instrument": t.instrument,
            "direction": t.direction,
            "quantity": str(t.quantity),
            "entry_time": _when(t.entry_ts_ns),
            "entry_price": str(t.entry_price),
            "exit_time": _when(t.exit_ts_ns),
            "exit_price": "" if t.exit_price is None else str(t.exit_price),
            "gross_pnl": str(t.gross_pnl),
            "charges": str(t.charges),
            "net_pnl": str(t.net_pnl),
            "fills": str(t.fills),
        }
        for t in trades
    ]


def fill_rows(fills: Sequence[FillRecord]) -> list[dict[str, str]]:
    return [
        {
            "time": _when(f.ts_ns),
            "instrument": f.instrument,
            "side": f.side,
            "quantity": str(f.quantity),
            "price": str(f.price),
            "commission": str(f.commission),
            "order_id": f.order_id,
            "trade_id": f.trade_id,
        }
        for f in sorted(fills, key=lambda f: f.ts_ns)
    ]


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _plots(report: BacktestReport) -> tuple[bytes, bytes]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    times = mdates.date2num(
        [datetime.fromtimestamp(t / 1e9, UTC).astimezone(IST) for t in report.sample_ts_ns.tolist()]
    )
    equity = report.equity.astype(np.float64) / MONEY_UNITS
    _, fraction = drawdown(report.equity)
    images = []
    for kind in ("equity", "drawdown"):
        figure = Figure(figsize=(10, 3.6), dpi=100)
        axes = figure.subplots()
        if kind == "equity":
            axes.plot(times, equity, color="#1f6feb", linewidth=1.2, drawstyle="steps-post")
            axes.axhline(float(report.stats.starting_equity), color="#888888", linewidth=0.8, linestyle="--")
            axes.set_ylabel("equity (₹)")
            axes.set_title(f"{report.name}: equity")
        else:
            axes.fill_between(times, fraction * 100, 0, color="#d1242f", alpha=0.35, step="post")
            axes.plot(times, fraction * 100, color="#d1242f", linewidth=0.8, drawstyle="steps-post")
            axes.set_ylabel("drawdown (%)")
            axes.set_title(f"{report.name}: drawdown from the running peak")
        axes.grid(True, alpha=0.3)
        locator = mdates.AutoDateLocator(tz=IST)  # seconds to months, whatever the run spans
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=IST))
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        images.append(buffer.getvalue())
    return images[0], images[1]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _html_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], limit: int | None = None) -> str:
    shown = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in shown
    )
    more = ""
    if limit is not None and len(rows) > limit:
        more = f"<p>{len(rows) - limit} more rows in the CSV file.</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def render_html(report: BacktestReport, equity_png: bytes, drawdown_png: bytes) -> str:
    """The report page; the plots are embedded, so the one file is the whole report."""
    s = report.stats
    headline = [
        ("strategy", report.strategy),
        ("period", f"{_when(report.start_ns)} → {_when(report.end_ns)} IST"),
        ("starting equity", f"₹{s.starting_equity:,}"),
        ("final equity", f"₹{s.final_equity:,}"),
        ("net P&L (after charges)", f"₹{s.net_pnl:,}"),
        ("total return", _percent(s.total_return)),
        ("Sharpe ratio (annualised)", "n/a" if s.sharpe is None else f"{s.sharpe:.2f}"),
        ("max drawdown", f"₹{s.max_drawdown:,} ({_percent(s.max_drawdown_pct)})"),
        ("charges", f"₹{s.charges:,}"),
        ("round trips (closed)", str(s.trades)),
        ("win rate", _percent(s.win_rate)),
        ("open at the end", str(s.open_trades)),
        ("fills", str(s.fills)),
        ("equity samples", f"{s.samples} (every {s.period_s:g} s with data)"),
    ]
    headline += [(f"data: {kind}", f"{count:,}") for kind, count in report.data.items()]
    stats_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in headline)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    config = html.escape(json.dumps(report.config, indent=2, sort_keys=True, default=str))
    equity_src = "data:image/png;base64," + base64.b64encode(equity_png).decode()
    drawdown_src = "data:image/png;base64," + base64.b64encode(drawdown_png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(report.name)} — backtest</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }}
th {{ background: #f6f8fa; text-align: left; }}
img {{ max-width: 100%; }}
pre {{ background: #f6f8fa; padding: 0.8em; }}
</style></head><body>
<h1>{html.escape(report.name)}</h1>
<p>No strategy here is expected to make money: a backtest shows what the code does, not an edge.</p>
<table>{stats_rows}</table>
<h2>Equity</h2><img alt="equity curve" src="{equity_src}">
<h2>Drawdown</h2><img alt="drawdown" src="{drawdown_src}">
<h2>Trades</h2>{_html_table(TRADE_COLUMNS, trade_rows(report.trades), limit=500)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Configuration</h2><pre>{config}</pre>
</body></html>
"""


def write_report(report: BacktestReport, out_dir: Path) -> dict[str, Path]:
    """Write the report files into `out_dir` (created); returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    equity_png, drawdown_png = _plots(report)
    paths = {
        "html": out_dir / "report.html",
        "equity_png": out_dir / "equity.png",
        "drawdown_png": out_dir / "drawdown.png",
        "trades_csv": out_dir / "trades.csv",
        "fills_csv": out_dir / "fills.csv",
        "equity_csv": out_dir / "equity.csv",
        "orders_csv": out_dir / "orders.csv",
        "stats_json": out_dir / "stats.json",
    }
    paths["equity_png"].write_bytes(equity_png)
    paths["drawdown_png"].write_bytes(drawdown_png)
    paths["html"].write_text(render_html(report, equity_png, drawdown_png))
    _write_csv(paths["trades_csv"], TRADE_COLUMNS, trade_rows(report.trades))
    _write_csv(paths["fills_csv"], FILL_COLUMNS, fill_rows(report.fills))
    fall, fraction = drawdown(report.equity)
    _write_csv(
        paths["equity_csv"],
        ("time", "ts_ns", "equity", "drawdown", "drawdown_pct"),
        [
            {
                "time": _when(int(t)),
                "ts_ns": int(t),
                "equity": str(from_units(e)),
                "drawdown": str(from_units(d)),
                "drawdown_pct": f"{f * 100:.4f}",
            }
            for t, e, d, f in zip(report.sample_ts_ns, report.equity, fall, fraction, strict=True)
        ],
    )
    order_columns = list(report.orders[0]) if report.orders else ["client_order_id"]
    _write_csv(paths["orders_csv"], order_columns, report.orders)
    summary = {
        "name": report.name,
        "strategy": report.strategy,
        "config": report.config,
        "from": _when(report.start_ns),
        "to": _when(report.end_ns),
        "stats": report.stats.as_dict(),
        "data": report.data,
        "notes": report.notes,
    }
    paths["stats_json"].write_text(json.dumps(summary, indent=2, default=str))
    return paths
