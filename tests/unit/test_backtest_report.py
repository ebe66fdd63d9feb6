"""Report statistics on equity curves and trades worked out by hand, and the files the report writes."""

from __future__ import annotations

import csv
import itertools
import json
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.backtest_report import (
    MONEY_UNITS,
    TRADING_SECONDS_PER_YEAR,
    BacktestReport,
    FillRecord,
    MarkSeries,
    ReportError,
    choose_period_s,
    drawdown,
    equity_curve,
    max_drawdown,
    performance,
    round_trips,
    sample_times,
    sharpe_ratio,
    to_units,
    write_report,
)

S = 1_000_000_000  # one second in ns
SBIN = "SBIN-EQ.NSE"


def fill(
    t: int, side: str, qty: int, price: str, commission: str = "0", instrument: str = SBIN
) -> FillRecord:
    return FillRecord(t * S, instrument, side, qty, Decimal(price), Decimal(commission), f"O-{t}", f"T-{t}")


# A long round trip that wins, then a short one that loses (see the equity worked out below).
FILLS = [
    fill(1, "BUY", 10, "100.00", "1.00"),
    fill(3, "SELL", 10, "110.00", "1.50"),
    fill(4, "SELL", 5, "120.00", "0.50"),
    fill(6, "BUY", 5, "125.00", "0.50"),
]
MARKS = {
    SBIN: MarkSeries.from_prices(
        [t * S for t in range(1, 7)], [Decimal(p) for p in (100, 105, 110, 120, 130, 125)]
    )
}
CASH = Decimal(100_000)
# t1: cash 100000 - 1000 - 1 = 98999, +10 × 100        -> 99999
# t2: mark 105                                          -> 98999 + 1050 = 100049
# t3: sell 10 @ 110 (1.50): cash 100097.50, flat         -> 100097.50
# t4: short 5 @ 120 (0.50): cash 100697, -5 × 120        -> 100097
# t5: mark 130                                          -> 100697 - 650 = 100047
# t6: buy 5 @ 125 (0.50): cash 100071.50, flat           -> 100071.50
EXPECTED = ["99999", "100049", "100097.5", "100097", "100047", "100071.5"]


def test_equity_curve_matches_the_hand_computation() -> None:
    at = np.array([t * S for t in range(1, 7)], dtype=np.int64)
    equity = equity_curve(FILLS, MARKS, CASH, at)
    assert [Decimal(int(e)) / MONEY_UNITS for e in equity] == [Decimal(x) for x in EXPECTED]


def test_statistics_of_the_hand_computed_curve() -> None:
    stats, at, _, trades = performance(FILLS, MARKS, CASH, period_s=1)
    assert at.tolist() == [t * S for t in range(1, 7)]
    assert stats.final_equity == Decimal("100071.50")
    assert stats.net_pnl == Decimal("71.50")
    assert stats.total_return == pytest.approx(71.5 / 100_000)
    # peak 100097.50 at t3, trough 100047 at t5
    assert stats.max_drawdown == Decimal("50.50")
    assert stats.max_drawdown_pct == pytest.approx(50.5 / 100_097.5)
    assert stats.charges == Decimal("3.50")
    assert (stats.trades, stats.wins, stats.win_rate, stats.open_trades) == (2, 1, 0.5, 0)
    values = [float(x) for x in EXPECTED]
    returns = [b / a - 1 for a, b in itertools.pairwise(values)]
    mean = sum(returns) / len(returns)
    spread = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
    assert stats.sharpe == pytest.approx(mean / spread * math.sqrt(TRADING_SECONDS_PER_YEAR))
    long, short = trades
    assert (long.direction, long.quantity, long.entry_price, long.exit_price) == (
        "LONG",
        10,
        Decimal("100.00"),
        Decimal("110.00"),
    )
    assert (long.gross_pnl, long.charges, long.net_pnl) == (
        Decimal("100.00"),
        Decimal("2.50"),
        Decimal("97.50"),
    )
    assert (short.direction, short.gross_pnl, short.charges, short.net_pnl) == (
        "SHORT", Decimal("-25.00"), Decimal("1.00"), Decimal("-26.00")
    )  # fmt: skip
    assert sum(t.net_pnl for t in trades) == stats.net_pnl


@pytest.mark.parametrize(
    ("fills", "expected"),
    [
        # buy 10, sell 4, sell 6: one long trip; P&L = 4×2 + 6×3 = 26
        ([fill(1, "BUY", 10, "100"), fill(2, "SELL", 4, "102"), fill(3, "SELL", 6, "103")],
         [("LONG", 10, "100.00", "102.60", "26.00", 3)]),
        # scale in: buy 5 @ 100, buy 5 @ 110 (avg 105), sell 10 @ 108 -> +30
        ([fill(1, "BUY", 5, "100"), fill(2, "BUY", 5, "110"), fill(3, "SELL", 10, "108")],
         [("LONG", 10, "105.00", "108.00", "30.00", 3)]),
        # a sell of 15 through a long of 10 closes it and opens a short of 5, closed by a buy of 5
        ([fill(1, "BUY", 10, "100"), fill(2, "SELL", 15, "101"), fill(3, "BUY", 5, "99")],
         [("LONG", 10, "100.00", "101.00", "10.00", 2), ("SHORT", 5, "101.00", "99.00", "10.00", 2)]),
    ],
)  # fmt: skip
def test_round_trips_under_netting(fills: list[FillRecord], expected: list[tuple[object, ...]]) -> None:
    got = [
        (t.direction, t.quantity, str(t.entry_price), str(t.exit_price), str(t.gross_pnl), t.fills)
        for t in round_trips(fills)
    ]
    assert got == [tuple(str(x) if not isinstance(x, int) else x for x in row) for row in expected]


def test_a_flip_splits_its_charges_by_quantity_and_keeps_the_total() -> None:
    trips = round_trips(
        [
            fill(1, "BUY", 10, "100", "2.00"),
            fill(2, "SELL", 15, "101", "3.00"),
            fill(3, "BUY", 5, "99", "1.00"),
        ]
    )
    # the 15-lot sell's ₹3 splits 10:5 -> ₹2 to the long, ₹1 to the short
    assert [t.charges for t in trips] == [Decimal("4.00"), Decimal("2.00")]
    assert sum(t.charges for t in trips) == Decimal("6.00")


def test_an_open_position_is_marked_and_not_counted_as_a_win() -> None:
    fills = [
        fill(1, "BUY", 2, "100", "0.10"),
        fill(2, "SELL", 2, "90", "0.10"),
        fill(3, "BUY", 3, "50", "0.20"),
    ]
    marks = {SBIN: MarkSeries.from_prices([4 * S], [Decimal("60")])}
    stats, _, _, trades = performance(fills, marks, Decimal(10_000), period_s=1)
    assert [t.is_closed for t in trades] == [True, False]
    assert trades[1].gross_pnl == Decimal("30.00")  # 3 × (60 - 50)
    assert (stats.trades, stats.wins, stats.win_rate, stats.open_trades) == (1, 0, 0.0, 1)
    # final equity: 10000 - 200 + 180 - 150 - 0.40 charges + 3 × 60
    assert stats.final_equity == Decimal("10009.60")


def test_positions_without_marks_are_valued_at_their_last_fill() -> None:
    fills = [fill(1, "BUY", 4, "250"), fill(2, "BUY", 1, "260", instrument="X.NSE")]
    equity = equity_curve(fills, {}, Decimal(1000), np.array([1 * S, 2 * S]))
    assert equity.tolist() == [1000 * MONEY_UNITS, 1000 * MONEY_UNITS]


def test_a_mark_newer_than_the_fill_values_the_position() -> None:
    fills = [fill(2, "BUY", 1, "100")]
    marks = {SBIN: MarkSeries.from_prices([1 * S, 3 * S], [Decimal("90"), Decimal("120")])}
    equity = equity_curve(fills, marks, Decimal(1000), np.array([1 * S, 2 * S, 3 * S]))
    # t1: flat; t2: the fill at 100 is later than the mark at 90; t3: the mark at 120
    assert (equity // MONEY_UNITS).tolist() == [1000, 1000, 1020]


@pytest.mark.parametrize(
    ("equity", "amount", "fraction"),
    [
        ([100, 110, 99, 120], 11, 0.1),
        ([100, 90, 80, 70], 30, 0.3),
        ([100, 101, 102], 0, 0.0),
        ([100, 50, 200, 100, 150], 100, 0.5),
    ],
)
def test_max_drawdown(equity: list[int], amount: int, fraction: float) -> None:
    got_amount, got_fraction = max_drawdown(np.array(equity))
    assert got_amount == amount
    assert got_fraction == pytest.approx(fraction)
    fall, _ = drawdown(np.array(equity))
    assert (fall <= 0).all()


def test_sharpe_is_undefined_without_spread_or_enough_returns() -> None:
    assert sharpe_ratio(np.array([100, 101]), 60) is None
    assert sharpe_ratio(np.array([100, 100, 100, 100]), 60) is None
    # doubling the sampling period at the same per-sample returns divides the ratio by √2
    curve = np.array([100, 103, 101, 104, 102, 106])
    assert sharpe_ratio(curve, 60) == pytest.approx(sharpe_ratio(curve, 120) * math.sqrt(2))  # type: ignore[operator]


def test_samples_are_the_last_event_of_each_busy_period() -> None:
    ts = np.array([0, 1, 59, 60, 61, 3600 + 5, 3600 + 7]) * S
    assert (sample_times(ts, 60 * S) // S).tolist() == [0, 59, 61, 3607]
    with pytest.raises(ReportError, match="positive"):
        sample_times(ts, 0)


def _sessions(days: int, step_s: int) -> np.ndarray:
    """Event times through 09:15-15:30 IST (03:45-10:00 UTC) on `days` consecutive days."""
    day = np.arange(days, dtype=np.int64)[:, None] * 86_400
    within = np.arange(0, 22_500, step_s, dtype=np.int64)[None, :]
    return ((day + 13_500 + within).ravel() + 1_772_323_200) * S


@pytest.mark.parametrize(
    ("events", "period"),
    [
        (np.zeros(0, dtype=np.int64), 1),
        (np.arange(2_000) * S, 1),
        (np.arange(2_001) * S, 5),
        (_sessions(1, 1), 15),  # one session, every second: 22,500 s in 15 s periods is 1,500
        (_sessions(60, 60), 900),  # 60 sessions of minute bars: 25 busy quarter hours a day is 1,500
        (_sessions(400, 300), 86_400),  # 400 sessions: 2,800 busy hours, so daily
    ],
)
def test_the_chosen_period_keeps_the_curve_small_counting_busy_periods_only(
    events: np.ndarray, period: int
) -> None:
    assert choose_period_s(events) == period


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fill(1, "HOLD", 1, "10"), "side must be BUY or SELL"),
        (lambda: fill(1, "BUY", 0, "10"), "quantity must be positive"),
        (lambda: fill(1, "BUY", 1, "-1"), "price must be positive"),
        (lambda: to_units(Decimal("1.00001")), "finer than"),
        (lambda: MarkSeries(np.array([2, 1]), np.array([1, 1])), "must not go backwards"),
        (lambda: performance([], {}, Decimal(0)), "starting cash must be positive"),
    ],
)
def test_bad_input_is_refused_with_a_reason(make: object, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        make()  # type: ignore[operator]


@settings(deadline=None)  # a shared machine's pauses are not the code's
@given(
    st.lists(
        st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(1, 50), st.integers(1, 2_000)),
        min_size=1,
        max_size=40,
    )
)
def test_round_trip_pnl_adds_up_to_the_equity_change(moves: list[tuple[str, int, int]]) -> None:
    """Closed and open trips together account for every rupee the curve gained or lost."""
    fills = [
        fill(k + 1, side, qty, f"{paise // 100}.{paise % 100:02d}", "0.05")
        for k, (side, qty, paise) in enumerate(moves)
    ]
    last = fills[-1]
    marks = {SBIN: MarkSeries.from_prices([last.ts_ns], [last.price])}
    stats, _, _, trades = performance(fills, marks, Decimal(1_000_000), period_s=1)
    assert sum((t.net_pnl for t in trades), Decimal(0)) == stats.net_pnl
    assert sum((t.charges for t in trades), Decimal(0)) == stats.charges


def test_the_report_files(tmp_path: Path) -> None:
    stats, at, equity, trades = performance(FILLS, MARKS, CASH, period_s=1)
    report = BacktestReport(
        name="hand",
        strategy="actors.shard.strategies.ema_cross:EMACross",
        config={"fast_period": 3},
        start_ns=0,
        end_ns=7 * S,
        stats=stats,
        sample_ts_ns=at,
        equity=equity,
        trades=trades,
        fills=FILLS,
        orders=[{"client_order_id": f.order_id, "side": f.side} for f in FILLS],
        data={"trade_ticks": 6},
        notes=["a note <with markup>"],
    )
    paths = write_report(report, tmp_path / "out")
    for path in paths.values():
        assert path.stat().st_size > 0
    assert paths["equity_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "a note &lt;with markup&gt;" in page
    assert "₹71.50" in page and "50.00%" in page  # net P&L and win rate
    with paths["trades_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["net_pnl"] for r in rows] == ["97.50", "-26.00"]
    with paths["equity_csv"].open() as handle:
        assert [r["equity"] for r in csv.DictReader(handle)] == [
            "99999.00",
            "100049.00",
            "100097.50",
            "100097.00",
            "100047.00",
            "100071.50",
        ]
    summary = json.loads(paths["stats_json"].read_text())
    assert summary["stats"]["net_pnl"] == "71.50" and summary["stats"]["trades"] == 2
