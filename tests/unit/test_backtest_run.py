"""Backtests over recorded catalogs: the same orders as the bare engine on the same ticks, paper
fill prices, the charges model on every fill, time windows, and refusals that say why."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.persistence.catalog import ParquetDataCatalog
from nautilus_trader.trading.strategy import Strategy

from actors.angel.common import CandleInterval
from actors.angel.schemas import Candle
from actors.orders import Product, Side
from actors.portfolio.charges import ChargeModel
from actors.shard.baseline import random_walk_ticks
from actors.shard.baseline import run_backtest as bare_engine_backtest
from actors.shard.loading import StrategyLoadError
from actors.shard.universe import ShardInstrument
from actors.ticks import FeedMode
from cluster.backtest import (
    BacktestError,
    build_report,
    instrument_spec,
    parse_when,
    parse_window,
    run_backtest,
)
from cluster.config import DeploymentConfig, parse_config
from cluster.record import TickRecording

INSTRUMENTS = [ShardInstrument.equity(i, f"B{i}-EQ", str(4000 + i), lot_size=1 + i) for i in range(3)]
EMA = ("actors.shard.strategies.ema_cross:EMACross", {"fast_period": 4, "slow_period": 15, "trade_size": 2})
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    EMA,
    ("actors.shard.strategies.rsi_breakout:RSIBreakout", {"period": 8, "allow_short": True}),
    ("actors.shard.strategies.bollinger_reversion:BollingerReversion", {"period": 12}),
]


def deployment(strategy: str, config: dict[str, Any]) -> DeploymentConfig:
    return DeploymentConfig(
        name="unit", strategy=strategy, config=config, universe={"instruments": [i.key for i in INSTRUMENTS]}
    )


def settings(tmp_path: Path, **portfolio: Any) -> Any:
    return parse_config({"data_dir": str(tmp_path / "data"), "portfolio": portfolio})


def recorded(tmp_path: Path, ticks: np.ndarray, batch: int = 50) -> Path:
    """Record `ticks` as the feed would deliver them: batches sharing one receive time."""
    feed = ticks.copy()
    starts = (np.arange(len(feed)) // batch) * batch
    feed["ts_recv_ns"] = feed["ts_recv_ns"][starts]
    catalog = tmp_path / "catalog"
    recording = TickRecording(INSTRUMENTS, catalog, "unit")
    for start in range(0, len(feed), batch):
        recording.write(feed[start : start + batch])
    recording.close()
    return catalog


def everything(spec: DeploymentConfig, tmp_path: Path, catalog: Path, **portfolio: Any) -> Any:
    return run_backtest(
        spec,
        settings(tmp_path, **portfolio),
        catalog,
        0,
        2**62,
        instruments=[i.instrument for i in INSTRUMENTS],
    )


@pytest.mark.parametrize(("path", "config"), SAMPLES)
@pytest.mark.parametrize("mode", [FeedMode.SNAP_QUOTE, FeedMode.QUOTE])
def test_the_catalog_backtest_orders_what_the_bare_engine_does_on_the_same_ticks(
    tmp_path: Path, path: str, config: dict[str, Any], mode: FeedMode
) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 2_400, seed=31, mode=mode)
    run = everything(deployment(path, config), tmp_path, recorded(tmp_path, ticks))
    _, bare = bare_engine_backtest(path, config, INSTRUMENTS, ticks)
    assert len(bare) > 10
    assert [(o["instrument"], o["side"], str(o["quantity"])) for o in run.orders] == [t[:3] for t in bare]
    assert all(o["status"] == "FILLED" for o in run.orders)


def _rows_by_time(ticks: np.ndarray) -> dict[tuple[int, int], np.void]:
    return {(int(r["iid"]), int(r["ts_recv_ns"])): r for r in ticks}


def test_with_a_book_buys_fill_at_the_ask_and_sells_at_the_bid(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 1_500, seed=32, mode=FeedMode.SNAP_QUOTE)
    run = everything(deployment(*EMA), tmp_path, recorded(tmp_path, ticks, batch=1))
    rows = _rows_by_time(ticks)
    iid = {i.instrument_id.value: i.iid for i in INSTRUMENTS}
    assert len(run.fills) > 10
    for fill in run.fills:
        row = rows[(iid[fill.instrument], fill.ts_ns)]  # the tick that made the order
        touch = row["ask"] if fill.side == "BUY" else row["bid"]
        assert fill.price == Decimal(int(touch)) / 100
    by_order = {f.order_id: f.price for f in run.fills}
    assert all(Decimal(o["avg_price"]) == by_order[o["client_order_id"]] for o in run.orders)


@pytest.mark.parametrize("slippage_ticks", [0, 1, 3])
def test_without_a_book_fills_are_the_last_price_plus_or_minus_the_slippage(
    tmp_path: Path, slippage_ticks: int
) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 1_500, seed=33, mode=FeedMode.QUOTE)
    run = everything(
        deployment(*EMA), tmp_path, recorded(tmp_path, ticks, batch=1), slippage_ticks=slippage_ticks
    )
    rows = _rows_by_time(ticks)
    iid = {i.instrument_id.value: i.iid for i in INSTRUMENTS}
    assert len(run.fills) > 10
    for fill in run.fills:
        ltp = int(rows[(iid[fill.instrument], fill.ts_ns)]["ltp"])
        slip = slippage_ticks * 5  # the instruments' tick is 5 paise
        assert fill.price == Decimal(ltp + slip if fill.side == "BUY" else ltp - slip) / 100


def test_every_fill_pays_the_paper_charges_model(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 1_500, seed=34, mode=FeedMode.SNAP_QUOTE)
    run = everything(deployment(*EMA), tmp_path, recorded(tmp_path, ticks), broker_plan="discount")
    model = ChargeModel.for_plan("discount")
    specs = {i.instrument_id.value: instrument_spec(i.instrument) for i in INSTRUMENTS}
    assert run.fills
    for fill in run.fills:  # market orders fill in one part here, so no cap carries over
        expected = model.for_fill(
            specs[fill.instrument],
            Product.INTRADAY,
            Side(fill.side),
            fill.quantity,
            int(fill.price * 100),
        )
        assert fill.commission == Decimal(expected.total) / 100
        assert run.charges[fill.order_id] == expected
    report = build_report(run, "unit")
    assert report.stats.charges == sum(f.commission for f in run.fills)
    assert report.stats.fills == len(run.fills)
    assert sum(t.net_pnl for t in report.trades) == report.stats.net_pnl


def test_only_the_window_is_replayed(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 1_200, seed=35, mode=FeedMode.SNAP_QUOTE)
    catalog = recorded(tmp_path, ticks, batch=1)
    spec = deployment(*EMA)
    middle = int(ticks["ts_recv_ns"][600])
    run = run_backtest(
        spec, settings(tmp_path), catalog, middle, 2**62, instruments=[i.instrument for i in INSTRUMENTS]
    )
    assert run.counts["trade_ticks"] == 600
    assert all(f.ts_ns >= middle for f in run.fills)


def test_no_catalog_and_no_data_are_refused_with_what_to_do(tmp_path: Path) -> None:
    spec = deployment(*EMA)
    instruments = [i.instrument for i in INSTRUMENTS]
    with pytest.raises(BacktestError, match=r"no data catalog at .*shardline record"):
        run_backtest(spec, settings(tmp_path), tmp_path / "missing", 0, 1, instruments=instruments)
    catalog = recorded(tmp_path, random_walk_ticks(INSTRUMENTS, 30, seed=36))
    with pytest.raises(
        BacktestError, match=r"no market data in .* for unit's 3 instrument\(s\) between 1970"
    ):
        run_backtest(spec, settings(tmp_path), catalog, 0, 10**9, instruments=instruments)


def test_a_strategy_that_refuses_its_config_is_reported(tmp_path: Path) -> None:
    catalog = recorded(tmp_path, random_walk_ticks(INSTRUMENTS, 30, seed=37))
    spec = deployment(EMA[0], {"fast_period": 30, "slow_period": 10})
    with pytest.raises(StrategyLoadError, match=r"fast_period .30. must be less than slow_period"):
        everything(spec, tmp_path, catalog)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-03-02", False, "2026-03-02T00:00:00+05:30"),
        ("2026-03-02", True, "2026-03-02T23:59:59.999999999+05:30"),
        ("2026-03-02 09:15", False, "2026-03-02T09:15:00+05:30"),
        ("2026-03-02T09:15:30", False, "2026-03-02T09:15:30+05:30"),
        ("2026-03-02T09:15:00+00:00", False, "2026-03-02T14:45:00+05:30"),
    ],
)
def test_dates_and_times_are_read_in_ist(text: str, end: bool, expected: str) -> None:
    from datetime import datetime

    ns = parse_when(text, end=end)
    moment, _, fraction = expected.partition(".")
    if fraction:
        digits = fraction.split("+")[0]
        assert ns % 1_000_000_000 == int(digits)
        moment += "+05:30"
    assert ns // 1_000_000_000 == int(datetime.fromisoformat(moment).timestamp())


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [("2026-03-05", "2026-03-02", "is before --from"), ("last week", "2026-03-02", "is not a date")],
)
def test_bad_windows_are_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        parse_window(start, end)


@pytest.mark.parametrize(
    ("word", "day"), [("today", "2026-03-02"), ("yesterday", "2026-03-01"), ("TODAY", "2026-03-02")]
)
def test_today_and_yesterday_are_ist_days(word: str, day: str) -> None:
    from datetime import date

    assert parse_when(word, today=date(2026, 3, 2)) == parse_when(day)
    assert parse_when(word, end=True, today=date(2026, 3, 2)) == parse_when(day, end=True)


class AlternateOnBarsConfig(StrategyConfig, frozen=True):
    bar_type: str


class AlternateOnBars(Strategy):
    """Buys one lot on a bar, sells it on the next: a fill on every bar close (test only)."""

    def __init__(self, config: AlternateOnBarsConfig) -> None:
        super().__init__(config)
        self.bar_type = BarType.from_str(config.bar_type)

    def on_start(self) -> None:
        self.subscribe_bars(self.bar_type)

    def on_bar(self, bar: Bar) -> None:
        instrument = self.cache.instrument(bar.bar_type.instrument_id)
        side = OrderSide.SELL if self.portfolio.net_position(instrument.id) > 0 else OrderSide.BUY
        self.submit_order(self.order_factory.market(instrument.id, side, instrument.make_qty(1)))


@pytest.mark.parametrize("slippage_ticks", [0, 2])
def test_on_candles_alone_orders_fill_at_the_bar_close_plus_or_minus_the_slippage(
    tmp_path: Path, slippage_ticks: int
) -> None:
    from cluster.candles import bar_type_for, candles_to_bars, write_new_bars

    sbin = INSTRUMENTS[0]
    candles = [
        Candle(
            ts_ns=1_772_423_100_000_000_000 + k * 60_000_000_000,
            open=p,
            high=p + 50,
            low=p - 50,
            close=p + 5,
            volume=100,
        )
        for k, p in enumerate(range(80_000, 80_000 + 40 * 15, 15))
    ]
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    store = ParquetDataCatalog(str(catalog))
    store.write_data([sbin.instrument])
    write_new_bars(store, candles_to_bars(candles, sbin, CandleInterval.ONE_MINUTE))
    bar_type = str(bar_type_for(sbin, CandleInterval.ONE_MINUTE))
    spec = DeploymentConfig(
        name="bars", strategy="test_backtest_run:AlternateOnBars", config={"bar_type": bar_type},
        universe={"instruments": [sbin.key]},
    )  # fmt: skip
    run = run_backtest(
        spec,
        settings(tmp_path, slippage_ticks=slippage_ticks),
        catalog,
        0,
        2**62,
        instruments=[sbin.instrument],
    )
    assert run.counts == {"quote_ticks": 0, "trade_ticks": 0, "bars": 40}
    assert len(run.fills) == 40
    closes = {c.ts_ns + 60_000_000_000: c.close for c in candles}  # bars are stamped at their close
    for fill in run.fills:
        slip = slippage_ticks * 5
        expected = closes[fill.ts_ns] + (slip if fill.side == "BUY" else -slip)
        assert fill.price == Decimal(expected) / 100
