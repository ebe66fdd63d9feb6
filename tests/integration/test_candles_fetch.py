"""Candle fetches through the real smartapi-python SDK against the simulator over real sockets:
Angel's windows and rate limits held, bars as the simulator makes them, a rerun asks for nothing,
and `shardline candles fetch` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from nautilus_trader.model.data import Bar
from nautilus_trader.persistence.catalog import ParquetDataCatalog

from actors.angel.auth import AngelCredentials
from actors.angel.common import CandleInterval
from actors.angel.factories import AngelEndpoints, connect
from actors.shard.universe import ShardInstrument
from actors.sim.candles import synthesize_candles
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.candles import IST, fetch_candles, parse_day
from cluster.config import SimConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNIVERSE = synthetic_universe(20, seed=5)
EQUITY = UNIVERSE[0]
NOW = datetime(2026, 11, 26, 12, 0)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    config = SimConfig(tick_rate=10, seed=5, enforce_rate_limits=True)
    with SimServer(config, UNIVERSE).run_in_thread() as server:
        yield server


def _instrument() -> ShardInstrument:
    return ShardInstrument.equity(
        0, EQUITY.symbol, EQUITY.token, EQUITY.exchange, EQUITY.tick_size, EQUITY.lot_size
    )


async def test_fetch_through_the_sdk_keeps_angels_limits_and_resumes_without_requests(
    sim: SimServer, tmp_path: Path
) -> None:
    connection = connect(
        AngelCredentials.for_simulator(sim.config),
        AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url),
        tmp_path,
    )
    catalog = tmp_path / "catalog"
    start, end = parse_day("2026-01-01"), parse_day("2026-06-30", end=True)
    try:
        await connection.auth.ensure_session()  # log in first, so the calls below are candles only
        calls = sim.rest.calls
        summary = await fetch_candles(
            connection.rest, catalog, _instrument(), CandleInterval.ONE_MINUTE, start, end, NOW
        )
        assert summary.windows == summary.fetched == 7  # 181 days in windows of 30
        # one getCandleData per window, every one inside Angel's 3/s (the simulator refuses faster
        # callers, and the client would have had to retry)
        assert sim.rest.calls - calls == 7
        assert connection.rest.retries["rate_limit"] == 0
        expected = synthesize_candles(
            EQUITY, "ONE_MINUTE", start.replace(tzinfo=IST), end.replace(tzinfo=IST), sim.config.seed
        )
        bars = ParquetDataCatalog(str(catalog)).query(Bar)
        assert len(bars) == len(expected) == summary.bars_written
        first = expected[0]
        assert str(bars[0].open) == f"{first[1]:.2f}" and str(bars[0].close) == f"{first[4]:.2f}"
        calls = sim.rest.calls
        again = await fetch_candles(
            connection.rest, catalog, _instrument(), CandleInterval.ONE_MINUTE, start, end, NOW
        )
        assert (again.skipped, again.fetched, sim.rest.calls - calls) == (7, 0, 0)
    finally:
        await connection.close()


def test_the_command_line_fetches_then_resumes(tmp_path: Path) -> None:
    data = yaml.safe_load((PROJECT_ROOT / "config" / "shardline.yaml").read_text())
    data["data_dir"] = str(tmp_path / "data")
    data["catalog"]["synth_count"] = 2_000
    config = tmp_path / "shardline.yaml"
    config.write_text(yaml.safe_dump(data))
    command = [
        sys.executable, "-m", "cluster.cli", "candles", "fetch",
        "--instrument", "NSE:SBIN-EQ", "--interval", "FIVE_MINUTE",
        "--from", "2025-06-01", "--to", "2025-12-31",
        "--config", str(config),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    first = subprocess.run(
        command, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "SBIN-EQ.NSE-5-MINUTE-LAST-EXTERNAL: 3 window(s), 3 fetched, 0 already there" in first.stdout
    second = subprocess.run(
        [*command, "--json"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (summary["fetched"], summary["skipped"], summary["bars_written"]) == (0, 3, 0)
    bars = ParquetDataCatalog(summary["catalog"]).query(Bar)
    assert len(bars) == 153 * 75  # the 153 weekdays from June to December 2025, 75 five-minute bars each
    bad = subprocess.run(
        [*command[:-2], "--interval", "ONE_WEEK", "--config", str(config)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: interval 'ONE_WEEK': expected one of ONE_MINUTE, THREE_MINUTE, FIVE_MINUTE, TEN_MINUTE, "
        "FIFTEEN_MINUTE, THIRTY_MINUTE, ONE_HOUR, ONE_DAY"
    )
