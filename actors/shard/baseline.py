"""The yardsticks a shard is measured against: the same strategy on the same ticks, without Ray.

- `run_backtest`: a Nautilus `BacktestEngine` (the bare engine; also the parity reference, since the
  sample strategies are deterministic on a tick sequence).
- `run_bare_shard`: the shard's own plain class (`StrategyShard`, one live `TradingNode` on its own
  thread) fed in-process, with orders filled by `InstantFillGateway` — the shard minus Ray.
- `run_ray_shard`: the same shard as a Ray actor, fed through `on_ticks` from this process — the
  figure to compare with the bare shard (Ray's overhead).

Both convert the ticks with the shard's `TickConverter` and report throughput as ticks per second
of wall time. `random_walk_ticks` makes a reproducible tick sequence for either.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig
from nautilus_trader.model.currencies import INR
from nautilus_trader.model.enums import AccountType, OmsType, OrderStatus
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money

from actors.shard.conversion import TickConverter
from actors.shard.instant_fills import InstantFillGateway
from actors.shard.loading import build_strategy
from actors.shard.universe import ShardInstrument
from actors.ticks import TICK_DTYPE, FeedMode

STARTING_BALANCE_RUPEES = 10_000_000


def random_walk_ticks(
    instruments: Sequence[ShardInstrument],
    count: int,
    seed: int = 7,
    mode: FeedMode = FeedMode.QUOTE,
    start_ns: int = 1_767_000_000_000_000_000,
    step_ns: int = 10_000_000,
) -> np.ndarray:
    """A reproducible tick sequence: a random walk in whole ticks per instrument, round-robin.

    Parameters
    ----------
    instruments : Sequence[ShardInstrument]
        The instruments, each quoted in turn.
    count : int
        The number of rows.
    seed : int, default 7
        The random seed; the same seed gives the same ticks.
    mode : FeedMode, default QUOTE
        The feed mode of every row; SNAP_QUOTE rows get a best bid/ask one tick either side.
    """
    rng = np.random.default_rng(seed)
    ticks = np.zeros(count, dtype=TICK_DTYPE)
    n = len(instruments)
    which = np.arange(count) % n
    iids = np.array([i.iid for i in instruments], dtype=np.int32)
    # One price step of each instrument in transport units.
    steps = np.array(
        [int(i.instrument.price_increment.as_decimal() * i.price_scale) for i in instruments], dtype=np.int64
    )
    start = np.array([1000 * i.price_scale for i in instruments], dtype=np.int64)  # ₹1000
    moves = rng.integers(-1, 2, size=count).astype(np.int64)
    paths = np.zeros(count, dtype=np.int64)
    for k in range(n):  # cumulative walk per instrument, kept ≥ 100 steps above zero
        rows = which == k
        paths[rows] = np.maximum(start[k] + np.cumsum(moves[rows]) * steps[k], 100 * steps[k])
    ticks["iid"] = iids[which]
    ticks["ts_exchange_ns"] = start_ns + np.arange(count, dtype=np.int64) * step_ns
    ticks["ts_recv_ns"] = ticks["ts_exchange_ns"] + 200_000
    ticks["seq"] = np.arange(count, dtype=np.int64) // n + 1
    ticks["ltp"] = paths
    ticks["ltq"] = rng.integers(1, 50, size=count)
    ticks["volume"] = np.zeros(count, dtype=np.int64)
    for k in range(n):
        rows = which == k
        ticks["volume"][rows] = np.cumsum(ticks["ltq"][rows])
    ticks["mode"] = int(mode)
    if mode == FeedMode.SNAP_QUOTE:
        step = steps[which]
        ticks["bid"] = paths - step
        ticks["ask"] = paths + step
        ticks["bid_qty"] = rng.integers(1, 500, size=count)
        ticks["ask_qty"] = rng.integers(1, 500, size=count)
    return ticks


@dataclass(frozen=True)
class BaselineResult:
    """What one baseline run measured."""

    engine: str
    strategy: str
    rows: int
    ticks: int  # Nautilus data objects handed to the engine
    seconds: float
    ticks_per_s: float
    orders: int
    filled: int
    latency_us: dict[str, float] = field(default_factory=dict)  # hand-over to strategy, shards only
    ticks_per_cpu_s: float = 0.0  # per CPU-second of the engine's thread (steadier on a busy machine)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_backtest(
    strategy: str,
    config: dict[str, Any],
    instruments: Sequence[ShardInstrument],
    ticks: np.ndarray,
    log_level: str = "ERROR",
) -> tuple[BaselineResult, list[tuple[str, str, str, int]]]:
    """Run `strategy` on a Nautilus BacktestEngine over `ticks`.

    Returns
    -------
    tuple[BaselineResult, list[tuple[str, str, str, int]]]
        The measurement, and the orders as (instrument, side, quantity, ts_init) in submit order.
    """
    converter = TickConverter(instruments)
    converter.subscribe_trades(i.instrument_id for i in instruments)
    converter.subscribe_quotes(i.instrument_id for i in instruments)
    data = converter.convert(ticks).data
    engine = BacktestEngine(
        BacktestEngineConfig(trader_id="BASELINE-001", logging=LoggingConfig(log_level=log_level))
    )
    try:
        for venue in sorted({i.instrument_id.venue.value for i in instruments}):
            engine.add_venue(
                venue=Venue(venue),
                oms_type=OmsType.NETTING,
                account_type=AccountType.MARGIN,
                base_currency=INR,
                starting_balances=[Money(STARTING_BALANCE_RUPEES, INR)],
                default_leverage=Decimal(1),
                trade_execution=True,
            )
        for inst in instruments:
            engine.add_instrument(inst.instrument)
        engine.add_data(data, sort=False)
        engine.add_strategy(build_strategy(strategy, config, "000"))
        started, cpu = time.perf_counter(), time.thread_time()
        engine.run()
        seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
        orders = sorted(engine.cache.orders(), key=lambda o: (o.ts_init, o.client_order_id.value))
        trail = [(o.instrument_id.value, o.side_string(), str(o.quantity), o.ts_init) for o in orders]
        result = BaselineResult(
            engine="backtest",
            strategy=strategy,
            rows=len(ticks),
            ticks=len(data),
            seconds=seconds,
            ticks_per_s=len(data) / seconds if seconds > 0 else 0.0,
            orders=len(orders),
            filled=sum(1 for o in orders if o.status == OrderStatus.FILLED),
            ticks_per_cpu_s=len(data) / cpu if cpu > 0 else 0.0,
        )
        return result, trail
    finally:
        engine.dispose()


def run_bare_shard(
    strategy: str,
    config: dict[str, Any],
    instruments: Sequence[ShardInstrument],
    ticks: np.ndarray,
    batch_size: int = 4096,
    max_pending_batches: int = 4,
    log_level: str = "ERROR",
    rate: float | None = None,
) -> BaselineResult:
    """Run `strategy` in a `StrategyShard` (live TradingNode, own thread) fed in-process, no Ray.

    Batches are handed over the way the Ray shell does: up to `max_pending_batches` in flight.
    Timestamps are restamped to the hand-over time, so the shard's latency figures are real.
    With `rate` (ticks/s) batches are paced to it — latency at a load; without, as fast as the
    shard takes them — throughput (and latency mostly queueing).
    """
    from actors.shard.shard import ShardSpec, StrategyShard  # the live node is only needed here

    gateway = InstantFillGateway()
    spec = ShardSpec(
        deployment="baseline",
        strategy=strategy,
        config=config,
        instruments=tuple(instruments),
        log_level=log_level,
    )
    shard = StrategyShard(spec, gateway)
    try:
        keys = shard.keys_by_iid
        pending: deque[concurrent.futures.Future[int]] = deque()
        started = time.perf_counter()
        for start in range(0, len(ticks), batch_size):
            _pace(started, start, rate)
            batch = ticks[start : start + batch_size].copy()
            now = time.time_ns()
            batch["ts_recv_ns"] = now
            batch["ts_exchange_ns"] = now
            gateway.mark_batch(keys, batch)
            while len(pending) >= max_pending_batches:
                pending.popleft().result(timeout=60)
            pending.append(shard.submit_ticks(batch))
        while pending:
            pending.popleft().result(timeout=60)
        seconds = time.perf_counter() - started
        stats = shard.stats()
    finally:
        shard.stop()
    handled = int(stats["ticks_handled"])
    return BaselineResult(
        engine="bare-shard",
        strategy=strategy,
        rows=len(ticks),
        ticks=handled,
        seconds=seconds,
        ticks_per_s=handled / seconds if seconds > 0 else 0.0,
        orders=int(stats["orders_sent"]),
        filled=int(stats["fills"]),
        latency_us=stats["latency_recv_to_strategy"],
        ticks_per_cpu_s=float(stats["ticks_per_cpu_s"]),
    )


def run_ray_shard(
    strategy: str,
    config: dict[str, Any],
    instruments: Sequence[ShardInstrument],
    ticks: np.ndarray,
    batch_size: int = 4096,
    in_flight: int = 2,
    log_level: str = "ERROR",
    rate: float | None = None,
) -> BaselineResult:
    """Run `strategy` in a shard actor on the connected Ray cluster, orders filled in the actor.

    Batches go through `on_ticks` with at most `in_flight` calls outstanding, as a router would;
    `rate` paces them as in `run_bare_shard`.
    """
    import ray

    from actors.shard.actor import start_shard_actor
    from actors.shard.shard import ShardSpec

    spec = ShardSpec(
        deployment=f"bench-{time.time_ns() % 10**8}",
        strategy=strategy,
        config=config,
        instruments=tuple(instruments),
        log_level=log_level,
    )
    actor = start_shard_actor(spec, router=None, instant_fills=True)
    try:
        ray.get(actor.ready.remote(), timeout=120)
        refs: deque[Any] = deque()
        started = time.perf_counter()
        for start in range(0, len(ticks), batch_size):
            _pace(started, start, rate)
            batch = ticks[start : start + batch_size].copy()
            now = time.time_ns()
            batch["ts_recv_ns"] = now
            batch["ts_exchange_ns"] = now
            if len(refs) >= in_flight:
                ray.get(refs.popleft(), timeout=120)
            refs.append(actor.on_ticks.remote(batch))
        ray.get(list(refs), timeout=120)
        ray.get(actor.drain.remote(), timeout=120)
        seconds = time.perf_counter() - started
        stats = ray.get(actor.stats.remote(), timeout=60)
    finally:
        ray.kill(actor, no_restart=True)
    handled = int(stats["ticks_handled"])
    return BaselineResult(
        engine="ray-shard",
        strategy=strategy,
        rows=len(ticks),
        ticks=handled,
        seconds=seconds,
        ticks_per_s=handled / seconds if seconds > 0 else 0.0,
        orders=int(stats["orders_sent"]),
        filled=int(stats["fills"]),
        latency_us=stats["latency_recv_to_strategy"],
        ticks_per_cpu_s=float(stats["ticks_per_cpu_s"]),
    )


def _pace(started: float, sent: int, rate: float | None) -> None:
    """Wait until `sent` ticks are due at `rate` ticks/s since `started` (perf_counter seconds)."""
    if rate is None:
        return
    delay = started + sent / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)  # a benchmark's load generator, not a test waiting on a race
