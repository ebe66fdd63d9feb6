"""Benchmarks of the paper portfolio: order acknowledgement, quote processing, journal replay.

Each function returns a dict of figures; `shardline bench portfolio` prints them as one JSON object.
Orders are journaled to a real file journal (fsync on every record) in a temporary directory.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors.orders import OrderRequest, OrderType, Product, Side
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.portfolio import MarketQuote, PaperPortfolio
from cluster.config import PortfolioConfig, ShardlineConfig, parse_config

# 10:00 IST on a Monday, so no square-off or session roll happens during a run.
SESSION_START_NS = 1_783_312_200 * 10**9


def bench_instruments(count: int) -> list[InstrumentSpec]:
    return [
        InstrumentSpec(key=f"NSE:{10_000 + i}", symbol=f"BENCH{i}-EQ", kind=InstrumentKind.EQUITY)
        for i in range(count)
    ]


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {
        "p50_us": round(float(np.percentile(values, 50)), 1),
        "p95_us": round(float(np.percentile(values, 95)), 1),
        "p99_us": round(float(np.percentile(values, 99)), 1),
        "max_us": round(float(values.max()), 1),
    }


def _portfolio(directory: Path, instruments: list[InstrumentSpec]) -> tuple[PaperPortfolio, Any]:
    from actors.journal.file_journal import FileJournal

    journal = FileJournal(directory / "portfolio-bench.jsonl")
    config = PortfolioConfig(starting_cash_rupees=10**12)
    table = {spec.key: spec for spec in instruments}
    portfolio = PaperPortfolio(
        config, table.get, journal=functools.partial(journal.append, sync=False), journal_sync=journal.sync
    )
    return portfolio, journal


def bench_plain(orders: int, instruments: int = 200, brackets: int = 100, gtts: int = 100) -> dict[str, Any]:
    """The plain class with a file journal: submit latency, quote rate with live rules, replay rate."""
    specs = bench_instruments(instruments)
    clock = iter(range(SESSION_START_NS, SESSION_START_NS + 10**15, 1000))
    with tempfile.TemporaryDirectory() as tmp:
        portfolio, journal = _portfolio(Path(tmp), specs)
        for spec in specs:
            portfolio.on_quote(
                MarketQuote(instrument=spec.key, ltp=100_000, bid=99_995, ask=100_005, ts_ns=next(clock))
            )
        latencies = []
        start = time.perf_counter_ns()
        for n in range(orders):
            spec = specs[n % len(specs)]
            order = OrderRequest(
                client_order_id=f"b{n}",
                book="manual",
                instrument=spec.key,
                side=Side.BUY if n % 2 == 0 else Side.SELL,
                quantity=10,
            )
            before = time.perf_counter_ns()
            portfolio.submit(order, next(clock))
            latencies.append(time.perf_counter_ns() - before)
        submit_s = (time.perf_counter_ns() - start) / 1e9

        for n in range(brackets):
            spec = specs[n % len(specs)]
            portfolio.bracket_place(
                book="manual", instrument=spec.key, side=Side.BUY, quantity=10, product=Product.INTRADAY,
                stop_loss=90_000, target=110_000, trailing_stop=100, entry_type=OrderType.MARKET,
                ts_ns=next(clock),
            )  # fmt: skip
        for n in range(gtts):
            spec = specs[n % len(specs)]
            portfolio.gtt_create(
                book="manual", instrument=spec.key, side=Side.BUY, quantity=10, product=Product.DELIVERY,
                legs=[(120_000, 120_000)], ts_ns=next(clock),
            )  # fmt: skip
        portfolio.drain_events()
        quotes = 20_000
        rng = np.random.default_rng(7)
        moves = rng.integers(-20, 21, size=quotes) * 5
        start = time.perf_counter_ns()
        for n in range(quotes):
            spec = specs[n % len(specs)]
            ltp = 100_000 + int(moves[n])
            portfolio.on_quote(
                MarketQuote(instrument=spec.key, ltp=ltp, bid=ltp - 5, ask=ltp + 5, ts_ns=next(clock))
            )
        quote_s = (time.perf_counter_ns() - start) / 1e9
        records = journal.last_seq
        journal.close()

        replay_start = time.perf_counter_ns()
        fresh, replay_journal = _portfolio(Path(tmp), specs)
        fresh.restore(entry.record for entry in replay_journal.replay())
        replay_s = (time.perf_counter_ns() - replay_start) / 1e9
        same = fresh.snapshot() == portfolio.snapshot()
        replay_journal.close()
    return {
        "orders": orders,
        "submit_to_ack": _percentiles(latencies),
        "orders_per_s": round(orders / submit_s),
        "quotes": quotes,
        "live_brackets": brackets,
        "active_gtts": gtts,
        "quotes_per_s": round(quotes / quote_s),
        "journal_records": records,
        "replay_records_per_s": round(records / replay_s),
        "replay_matches": same,
    }


def bench_actor(orders: int, clock: Callable[[], int] | None = None) -> dict[str, Any]:
    """Submit → acknowledgement through the portfolio actor on a local Ray (journal to files)."""
    import ray

    from actors.portfolio.actor import PaperPortfolioActor, ShiftedClock

    specs = bench_instruments(10)
    with tempfile.TemporaryDirectory() as tmp:
        config: ShardlineConfig = parse_config(
            {"data_dir": tmp, "portfolio": {"starting_cash_rupees": 10**12}}
        )
        actor: Any = (
            ray.remote(PaperPortfolioActor)
            .options(num_cpus=0)
            .remote(
                config,
                journal_stream="portfolio-bench",
                instruments=specs,
                clock=clock or ShiftedClock(SESSION_START_NS),
                publish=False,
            )
        )
        try:
            ray.get(
                actor.on_market.remote(
                    [
                        MarketQuote(instrument=s.key, ltp=100_000, bid=99_995, ask=100_005, ts_ns=0)
                        for s in specs
                    ]
                )
            )
            for n in range(50):  # warm up the path
                ray.get(actor.submit.remote(_order(f"w{n}", specs[0].key, n)))
            latencies = []
            for n in range(orders):
                order = _order(f"a{n}", specs[n % len(specs)].key, n)
                before = time.perf_counter_ns()
                ack = ray.get(actor.submit.remote(order))
                latencies.append(time.perf_counter_ns() - before)
                if not ack.accepted:
                    raise RuntimeError(f"benchmark order refused: {ack.reason}")
        finally:
            ray.kill(actor, no_restart=True)
    return {"orders": orders, "submit_to_ack": _percentiles(latencies)}


def _order(coid: str, instrument: str, n: int) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid,
        book="manual",
        instrument=instrument,
        side=Side.BUY if n % 2 == 0 else Side.SELL,
        quantity=10,
    )
