"""`StrategyShard`: one strategy deployment's shard — one Nautilus TradingNode — as a plain class.

The Ray actor (`actors.shard.actor`) is a thin shell around this; tests drive it directly.

Flow of a tick batch: the caller's thread calls `submit_ticks` → the batch is queued onto the
node's loop (`NodeThread.call`) → `ShardDataClient.feed` converts it and pushes each tick through
the data engine synchronously → strategies' handlers run → the returned future completes with the
number of rows handled. The engine's own per-message queue is bypassed on purpose: the batch is
already the unit of hand-over, the future completing means the batch is done (exact back-pressure
for the router), and an exception from a strategy surfaces here with the tick that caused it,
instead of ending the process (what LiveDataEngine does with an unexpected error).

After each batch the node lets the order commands and events the batch caused run (risk engine →
execution engine → client → events: a loop turn or two each) before it takes the next batch, so
under a full load orders are not starved behind queued ticks. It does not wait for the execution
actor's answers: an order in flight to it does not hold the ticks back.

A strategy that raises — on a tick, on an order event, at start — turns the shard `failed`: the
error is logged with its context and kept in `stats()`, the node is stopped, the process lives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from nautilus_trader.common.messages import ShutdownSystem
from nautilus_trader.config import (
    CacheConfig,
    LiveDataEngineConfig,
    LiveExecEngineConfig,
    LiveRiskEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.data.engine import DataEngine
from nautilus_trader.model.identifiers import TraderId, Venue

from actors.orders import Fill, OrderUpdate, Product
from actors.shard.conversion import TickConverter
from actors.shard.data import BROKER, ShardDataClient, TickHandlingError
from actors.shard.execution import OrderGateway, ShardExecutionClient
from actors.shard.latency import LatencyWindow
from actors.shard.loading import build_strategy
from actors.shard.node import NodeThread, ShardNode
from actors.shard.universe import ShardInstrument
from actors.ticks import TICK_DTYPE
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from nautilus_trader.trading.strategy import Strategy

    from cluster.config import DeploymentConfig

log = logging.getLogger(__name__)

# Loop turns a batch may wait for its orders' commands and events to be handled (each hop is one).
SETTLE_TURNS = 32

STARTING = "starting"
RUNNING = "running"
FAILED = "failed"
STOPPED = "stopped"


@dataclass(frozen=True)
class ShardSpec:
    """What one shard runs: a deployment's strategy and config, its universe, and its place.

    Parameters
    ----------
    deployment : str
        The deployment name (also the execution actor's book).
    strategy : str
        "module.path:ClassName" of a Nautilus `Strategy`.
    config : dict[str, Any]
        The strategy's config values.
    instruments : tuple[ShardInstrument, ...]
        The deployment's universe (every shard loads all of it; the router decides which ticks
        reach which shard).
    index, count : int
        This shard's position among the deployment's shards.
    starting_balance_rupees : int
        The INR balance of the shard's account as the engine sees it.
    product : Product
        The product of orders that carry no "product:<NAME>" tag.
    log_level : str
        Nautilus's own log level (its logs go to the process's stdout).
    cache_ticks : int
        Ticks (and bars) the node's cache keeps per instrument for strategies to look back on;
        Nautilus's default of 10,000 costs memory a shard of hundreds of instruments feels.
    max_orders_per_s : int
        The node's own order-rate throttle (submits, and separately modifies); orders beyond it
        wait in the engine. The broker's limits are the execution actor's to enforce.
    generation : int
        Bumped by each hot swap of the deployment: a new generation's actors run beside the old
        ones under their own names, and its client order ids never repeat an older one's.
    """

    deployment: str
    strategy: str
    config: dict[str, Any]
    instruments: tuple[ShardInstrument, ...]
    index: int = 0
    count: int = 1
    starting_balance_rupees: int = 10_000_000
    product: Product = Product.INTRADAY
    log_level: str = "WARNING"
    max_orders_per_s: int = 100
    cache_ticks: int = 1_000
    generation: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ShardlineError(f"shard index {self.index} outside 0..{self.count - 1}")
        if not self.instruments:
            raise ShardlineError(f"deployment {self.deployment!r}: shard has no instruments")
        if self.cache_ticks <= 0:
            raise ShardlineError(f"cache_ticks must be positive, was {self.cache_ticks}")
        if self.max_orders_per_s <= 0:
            raise ShardlineError(f"max_orders_per_s must be positive, was {self.max_orders_per_s}")

    @classmethod
    def from_deployment(
        cls, deployment: DeploymentConfig, instruments: Sequence[ShardInstrument], index: int, **options: Any
    ) -> ShardSpec:
        """The spec of shard `index` of a configured deployment, given its resolved universe."""
        return cls(
            deployment=deployment.name,
            strategy=deployment.strategy,
            config=dict(deployment.config),
            instruments=tuple(instruments),
            index=index,
            count=deployment.shards,
            **options,
        )

    @property
    def name(self) -> str:
        if self.generation:
            return f"shard-{self.deployment}.{self.generation}-{self.index}"
        return f"shard-{self.deployment}-{self.index}"

    @property
    def trader_tag(self) -> str:
        """The Nautilus trader id's tag, part of every client order id the shard makes."""
        return f"{self.generation}G{self.index:03d}" if self.generation else f"{self.index:03d}"


@dataclass
class _Counters:
    rows_received: int = 0
    rows_handled: int = 0
    rows_dropped: int = 0  # arrived while the shard was not running
    batches: int = 0
    trade_ticks: int = 0
    quote_ticks: int = 0
    unknown_rows: int = 0
    invalid_rows: int = 0
    skipped_rows: int = 0
    batch_cpu_ns: int = 0  # node-thread CPU time spent converting and handling batches
    errors: list[str] = field(default_factory=list)


class StrategyShard:
    """One Nautilus TradingNode running one strategy over a universe, fed tick batches.

    Parameters
    ----------
    spec : ShardSpec
        What to run.
    gateway : OrderGateway
        Where the shard's orders go (the execution actor, or an in-process stand-in).
    start_timeout_s : float, default 30
        How long the node may take to start its strategy.

    Raises
    ------
    StrategyLoadError
        If the strategy cannot be imported or its config is invalid (raised before any thread).
    ShardlineError
        If the node does not start in time, or the strategy fails while starting.
    """

    def __init__(self, spec: ShardSpec, gateway: OrderGateway, start_timeout_s: float = 30.0) -> None:
        self.spec = spec
        self._gateway = gateway
        # Import and validate first, on the caller's thread: a bad strategy fails fast and clearly.
        # The strategy claims the orders the venue places on its book for its instruments, so
        # that a square-off or a GTT leg moves its positions as it moves the book's.
        self._strategy: Strategy = build_strategy(
            spec.strategy,
            spec.config,
            f"{spec.index:03d}",
            claims=[i.instrument_id.value for i in spec.instruments],
        )
        self._converter = TickConverter(spec.instruments)
        self._keys_by_iid = {i.iid: i.key for i in spec.instruments}
        self._state = STARTING
        self._error: str | None = None
        self._counters = _Counters()
        self._latency_recv = LatencyWindow()
        self._latency_exchange = LatencyWindow()
        self._started_ns = time.time_ns()
        self._node: ShardNode | None = None
        self._data_client: ShardDataClient | None = None
        self._exec_client: ShardExecutionClient | None = None
        self._run_task: asyncio.Task | None = None
        self._batch_lock: asyncio.Lock | None = None
        self._thread = NodeThread(name=f"nautilus-{spec.name}")
        try:
            self._thread.submit(self._start()).result(timeout=start_timeout_s)
        except concurrent.futures.TimeoutError:
            self._thread.submit(self._shutdown()).result(timeout=start_timeout_s)
            self._thread.stop()
            raise ShardlineError(
                f"{spec.name}: the node did not start within {start_timeout_s:.0f}s"
            ) from None
        except Exception as err:
            try:
                self._thread.submit(self._shutdown()).result(timeout=start_timeout_s)
            except Exception as cleanup:  # the start already failed; report that, log this
                log.warning("%s: cleaning up after a failed start: %r", spec.name, cleanup)
            self._thread.stop()
            self._state = STOPPED
            raise ShardlineError(f"{spec.name}: failed to start {spec.strategy}: {err}") from err
        log.info(
            "%s running %s on %d instruments (shard %d of %d)",
            spec.name,
            spec.strategy,
            len(spec.instruments),
            spec.index + 1,
            spec.count,
        )

    # -- start and stop (on the node's loop) ------------------------------------------------------

    def _node_config(self) -> TradingNodeConfig:
        spec = self.spec
        return TradingNodeConfig(
            trader_id=TraderId(f"{spec.deployment.upper()}-{spec.trader_tag}"),
            logging=LoggingConfig(log_level=spec.log_level, log_colors=False),
            cache=CacheConfig(tick_capacity=spec.cache_ticks, bar_capacity=spec.cache_ticks),
            # A strategy error on an order event must not end the process (the default is os._exit).
            data_engine=LiveDataEngineConfig(graceful_shutdown_on_exception=True),
            risk_engine=LiveRiskEngineConfig(
                graceful_shutdown_on_exception=True,
                max_order_submit_rate=f"{spec.max_orders_per_s}/00:00:01",
                max_order_modify_rate=f"{spec.max_orders_per_s}/00:00:01",
            ),
            exec_engine=LiveExecEngineConfig(
                reconciliation=False,  # the execution actor's journal is the record of orders
                inflight_check_interval_ms=0,
                graceful_shutdown_on_exception=True,
            ),
            timeout_connection=10.0,
            timeout_portfolio=10.0,
            timeout_disconnection=2.0,
            timeout_post_stop=0.1,
        )

    async def _start(self) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        node = ShardNode(self._node_config(), loop)
        self._node = node
        kernel = node.kernel
        for inst in spec.instruments:
            kernel.cache.add_instrument(inst.instrument)
        # One broker account for every exchange segment.
        kernel.cache.set_specific_venue(Venue(BROKER))
        engine = kernel.data_engine
        self._data_client = ShardDataClient(
            loop=loop,
            msgbus=kernel.msgbus,
            cache=kernel.cache,
            clock=kernel.clock,
            converter=self._converter,
            deliver=lambda data: DataEngine.process(engine, data),  # the synchronous path; see module doc
        )
        engine.register_client(self._data_client)
        engine.register_default_client(self._data_client)
        self._exec_client = ShardExecutionClient(
            loop=loop,
            msgbus=kernel.msgbus,
            cache=kernel.cache,
            clock=kernel.clock,
            gateway=self._gateway,
            book=spec.deployment,
            account_number=f"{spec.deployment}-{spec.index}",
            instruments=spec.instruments,
            starting_balance_rupees=spec.starting_balance_rupees,
            default_product=spec.product,
        )
        kernel.exec_engine.register_client(self._exec_client)
        kernel.exec_engine.register_default_client(self._exec_client)
        kernel.msgbus.subscribe("commands.system.shutdown", self._on_shutdown_command)
        self._batch_lock = asyncio.Lock()
        node.trader.add_strategy(self._strategy)
        node.build()
        self._run_task = loop.create_task(node.run_async(), name=f"{spec.name}-run")
        self._run_task.add_done_callback(self._on_run_done)
        while not self._strategy.is_running:
            if self._run_task.done() or self._state == FAILED:
                raise ShardlineError(self._error or "the node stopped while starting")
            await asyncio.sleep(0.01)  # the kernel's start sequence has no completion event to await
        # The strategy's subscriptions (made in on_start) reach the data client through the data
        # engine's command queue and a task each: let them land before the first batch does.
        data_engine, idle = kernel.data_engine, 0
        while idle < 2:
            idle = 0 if data_engine.cmd_qsize() else idle + 1
            await asyncio.sleep(0)
        self._state = RUNNING

    def _on_run_done(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self._fail(f"node stopped: {err!r}")

    def _on_shutdown_command(self, command: ShutdownSystem) -> None:
        # The engines publish this when a handler raised outside the tick path (order events).
        self._fail(f"engine shut down: {command.reason}")

    def _fail(self, reason: str) -> None:
        if self._state in (FAILED, STOPPED):
            return
        log.error("%s (%s) failed: %s", self.spec.name, self.spec.strategy, reason)
        self._state = FAILED
        self._error = reason
        self._counters.errors.append(reason)
        node = self._node
        if node is not None and node.kernel.is_running():
            node.kernel.loop.create_task(node.stop_async())

    async def _shutdown(self) -> None:
        node = self._node
        if node is None:
            return
        if node.kernel.is_running():
            await node.stop_async()
        if self._run_task is not None and not self._run_task.done():
            # Stopped engines end their queues with a sentinel, which ends the run task.
            done, _ = await asyncio.wait({self._run_task}, timeout=5.0)
            if not done:
                self._run_task.cancel()
        node.kernel.dispose()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the node (strategy `on_stop` runs), dispose it and end its thread."""
        if self._state == STOPPED:
            return
        if self._thread.is_alive:
            try:
                self._thread.submit(self._shutdown()).result(timeout=timeout_s)
            except Exception as err:
                log.warning("%s: stopping the node: %r", self.spec.name, err)
            self._thread.stop(timeout_s)
        self._state = STOPPED

    # -- ticks ----------------------------------------------------------------------------------

    def submit_ticks(self, ticks: np.ndarray) -> concurrent.futures.Future[int]:
        """Hand a tick batch to the node; the future gives the rows handled once the batch is done.

        Safe to call from any thread. Rows that arrive while the shard is not running are counted
        as dropped and the future gives 0.
        """
        if ticks.dtype != TICK_DTYPE:
            raise ShardlineError(f"tick batch has dtype {ticks.dtype}, expected actors.ticks.TICK_DTYPE")
        self._counters.rows_received += len(ticks)
        if self._state != RUNNING:
            self._counters.rows_dropped += len(ticks)
            done: concurrent.futures.Future[int] = concurrent.futures.Future()
            done.set_result(0)
            return done
        return self._thread.submit(self._handle_batch_in_turn(ticks))

    async def _handle_batch_in_turn(self, ticks: np.ndarray) -> int:
        assert self._batch_lock is not None
        async with self._batch_lock:  # FIFO: batches are handled in the order they were submitted
            cpu = time.thread_time_ns()
            handled = self._handle_batch(ticks)
            self._counters.batch_cpu_ns += time.thread_time_ns() - cpu
            await self._settle()
            return handled

    async def _settle(self) -> None:
        node, client = self._node, self._exec_client
        if node is None or client is None:
            return
        risk, execution = node.kernel.risk_engine, node.kernel.exec_engine
        idle = 0
        for _ in range(SETTLE_TURNS):
            # O(1) checks only: this runs after every batch.
            busy = (
                risk.cmd_qsize()
                or risk.evt_qsize()
                or execution.cmd_qsize()
                or execution.evt_qsize()
                or client.has_unsent_commands
            )
            # The engines enqueue with call_soon, so a message is out of every queue for one turn:
            # only two idle turns in a row mean idle.
            idle = 0 if busy else idle + 1
            if idle == 2:
                return
            await asyncio.sleep(0)  # one loop turn for the engines' queue tasks

    def _handle_batch(self, ticks: np.ndarray) -> int:
        counters = self._counters
        if self._state != RUNNING or self._data_client is None:
            counters.rows_dropped += len(ticks)
            return 0
        try:
            result = self._data_client.feed(ticks)
        except TickHandlingError as err:
            counters.rows_dropped += len(ticks)
            self._fail(f"{self._strategy.id} raised on {err.item!r}: {err.cause!r}")
            return 0
        except Exception as err:  # a malformed batch: say so, keep running
            counters.rows_dropped += len(ticks)
            counters.errors.append(f"batch refused: {err!r}")
            log.warning("%s: batch of %d rows refused: %r", self.spec.name, len(ticks), err)
            return 0
        batch = result.batch
        counters.batches += 1
        counters.rows_handled += batch.rows
        counters.trade_ticks += batch.trades
        counters.quote_ticks += batch.quotes
        counters.unknown_rows += batch.unknown_rows
        counters.invalid_rows += batch.invalid_rows
        counters.skipped_rows += batch.skipped_rows
        if len(result.done_ns):
            self._latency_recv.record(result.done_ns - batch.ts_recv_ns)
            self._latency_exchange.record(result.done_ns - batch.ts_exchange_ns)
        return batch.rows

    # -- orders ---------------------------------------------------------------------------------

    def on_order_update(self, update: OrderUpdate) -> concurrent.futures.Future[bool]:
        """Apply an update pushed by the execution actor; the future gives whether it was ours."""
        return self._thread.call(self._apply_update, update)

    def on_order_updates(self, updates: list[OrderUpdate]) -> concurrent.futures.Future[int]:
        """Apply updates in order, in one call on the node's loop; the future gives how many were ours."""
        return self._thread.call(lambda: sum(self._apply_update(u) for u in updates))

    def on_venue_fills(self, fills: list[Fill]) -> concurrent.futures.Future[int]:
        """Fills of orders the venue placed on this book itself, in order, in one call on the node's
        loop; the future gives how many were on this shard's instruments and new."""
        return self._thread.call(lambda: sum(self._apply_venue_fill(f) for f in fills))

    def _apply_venue_fill(self, fill: Fill) -> bool:
        if self._exec_client is None or self._state == STOPPED:
            return False
        return self._exec_client.apply_venue_fill(fill)

    def _apply_update(self, update: OrderUpdate) -> bool:
        if self._exec_client is None or self._state == STOPPED:
            return False
        return self._exec_client.apply_update(update)

    # -- state (hot swap) -----------------------------------------------------------------------

    def save_state_future(self) -> concurrent.futures.Future[dict[str, bytes]]:
        """The strategy's `on_save` state, taken on the node's loop."""
        return self._thread.call(self._strategy.save)

    def load_state_future(self, state: dict[str, bytes]) -> concurrent.futures.Future[None]:
        """Give the strategy a saved state (`on_load`), on the node's loop."""
        return self._thread.call(self._strategy.load, state)

    def save_state(self, timeout_s: float = 10.0) -> dict[str, bytes]:
        return self.save_state_future().result(timeout=timeout_s)

    def load_state(self, state: dict[str, bytes], timeout_s: float = 10.0) -> None:
        self.load_state_future(state).result(timeout=timeout_s)

    # -- introspection --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def thread(self) -> NodeThread:
        return self._thread

    @property
    def keys_by_iid(self) -> dict[int, str]:
        return dict(self._keys_by_iid)

    def stats_future(self) -> concurrent.futures.Future[dict[str, Any]]:
        """Counters, latencies and positions, read on the node's loop (consistent with it)."""
        if not self._thread.is_alive:
            done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
            done.set_result(self._stats())
            return done
        return self._thread.call(self._stats)

    def stats(self, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.stats_future().result(timeout=timeout_s)

    def _stats(self) -> dict[str, Any]:
        c = self._counters
        exec_counters = self._exec_client.counters if self._exec_client else None
        positions: dict[str, str] = {}
        node = self._node
        if node is not None and self._state != STOPPED:
            for position in node.kernel.cache.positions_open():
                positions[position.instrument_id.value] = str(position.signed_decimal_qty())
        return {
            "name": self.spec.name,
            "deployment": self.spec.deployment,
            "index": self.spec.index,
            "generation": self.spec.generation,
            "strategy": self.spec.strategy,
            "strategy_id": self._strategy.id.value,
            "state": self._state,
            "error": self._error,
            "errors": list(c.errors[-10:]),
            "uptime_s": round((time.time_ns() - self._started_ns) / 1e9, 3),
            "instruments": len(self.spec.instruments),
            "batches": c.batches,
            "rows_received": c.rows_received,
            "rows_handled": c.rows_handled,
            "rows_dropped": c.rows_dropped,
            "ticks_handled": c.trade_ticks + c.quote_ticks,
            # CPU time, unlike wall time, is not inflated by other processes on a shared machine.
            "batch_cpu_s": round(c.batch_cpu_ns / 1e9, 6),
            "ticks_per_cpu_s": round((c.trade_ticks + c.quote_ticks) / (c.batch_cpu_ns / 1e9))
            if c.batch_cpu_ns
            else 0,
            "trade_ticks": c.trade_ticks,
            "quote_ticks": c.quote_ticks,
            "unknown_rows": c.unknown_rows,
            "invalid_rows": c.invalid_rows,
            "skipped_rows": c.skipped_rows,
            "latency_recv_to_strategy": self._latency_recv.summary_us(),
            "latency_exchange_to_strategy": self._latency_exchange.summary_us(),
            "orders_sent": exec_counters.orders_sent if exec_counters else 0,
            "orders_rejected": exec_counters.orders_rejected if exec_counters else 0,
            "fills": exec_counters.fills if exec_counters else 0,
            "order_updates": exec_counters.updates if exec_counters else 0,
            "venue_fills": exec_counters.venue_fills if exec_counters else 0,
            "gateway_errors": exec_counters.gateway_errors if exec_counters else 0,
            "positions": positions,
        }
