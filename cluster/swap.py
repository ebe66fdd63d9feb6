"""Changing a running deployment's shards without losing or repeating a tick: hot swap and rescale.

Both rest on one router primitive, the hold (`RouterActor.hold`): at a batch boundary the router
stops delivering to the deployment's shards and returns once nothing is in flight; ticks keep
arriving and wait in the shards' buffers (`block` back-pressures the feed meanwhile, `conflate`
keeps the latest per instrument, as always). Registering a shard index with an actor
(`register_shard`) releases it, to the same actor or a replacement. Until the release every tick
is either handled by the old shards or waiting for whoever is attached next, so each tick reaches
exactly one version, in feed order per instrument, and a failure before the release just
re-attaches the old shards.

`HotSwap` (a new strategy version):

1. start the new version's shards beside the old ones, not attached (warm-up: the node starts,
   the strategy's `on_start` runs); a failure here leaves the old version untouched;
2. hold the route, drain the old shards (every batch they were given is handled);
3. move strategy state: old shard k's `save_state` (Nautilus `on_save`) into new shard k's
   `load_state` (`on_load`); the ring and the shard count are unchanged, so shard k of both
   versions owns the same instruments. A new version that raises here rolls back;
4. attach the new shards (the switch); the held ticks go to them;
5. retire the old shards: wait until the execution actor has every order they sent, stop them
   (their strategy's `on_stop` runs), then cancel the orders of theirs still working there (the
   new version cannot adopt them). Positions stay with the book.

`Rescale` (N → M shards of the same version): start the new shards (M > N), hold, drain, resize
the ring (about |M−N|/max(M,N) of the instruments move; buffered ticks move with them), attach
all M, then retire the removed shards (M < N) as above. Each shard keeps its own strategy state:
an instrument that moves starts cold on its new shard.

`SequenceCheck` is a strategy that checks exactly-once delivery itself, from the feed sequence
numbers the shard puts in each trade id; `audit_sequences` totals what it saw, for the tests and
`shardline bench swap`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from nautilus_trader.config import NonNegativeInt, StrategyConfig
from nautilus_trader.model.data import TradeTick
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.trading.strategy import Strategy

from cluster.deployments import (
    ClusterControl,
    DeploymentRecord,
    RuntimeEnv,
    launch_spares,
    order_trader_tag,
    shard_specs,
    start_shards,
    trader_tag,
    working,
)
from cluster.errors import ShardlineError

if TYPE_CHECKING:
    from actors.shard.universe import ShardInstrument
    from cluster.config import DeploymentConfig

log = logging.getLogger(__name__)

# How long retiring shards may take for the execution actor to have all their orders.
ORDERS_SETTLE_TIMEOUT_S = 5.0


class SwapFailed(ShardlineError):
    """A hot swap or rescale that did not happen; the old shards run on with every tick."""


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


async def _attach_all(control: ClusterControl, route: str, names: Sequence[str]) -> None:
    for index, name in enumerate(names):
        await control.attach_shard(route, index, name)


async def _roll_back(control: ClusterControl, route: str, keep: Sequence[str], drop: Sequence[str]) -> None:
    """Give the held ticks back to the shards in `keep` and stop those in `drop`."""
    try:
        await _attach_all(control, route, keep)
    finally:
        await asyncio.gather(*(control.stop_shard(n, graceful=False) for n in drop), return_exceptions=True)


async def retire_shards(
    control: ClusterControl,
    book: str,
    shards: Mapping[str, str],
    *,
    cancel_orders: bool = True,
    settle_timeout_s: float = ORDERS_SETTLE_TIMEOUT_S,
) -> dict[str, Any]:
    """Stop shards (actor name -> trader tag) that no longer get ticks, leaving no order behind.

    First waits (bounded) until the execution actor knows every order they sent, so stopping them
    cannot lose one in flight; then stops them (graceful: `on_stop` runs); then cancels their
    orders still working, which no running strategy tracks any more.
    """
    tags = set(shards.values())
    stats = await asyncio.gather(*(control.shard_stats(n) for n in shards))
    expected = sum(int(s.get("orders_sent", 0)) - int(s.get("gateway_errors", 0)) for s in stats if s)
    known = 0
    deadline = time.monotonic() + settle_timeout_s
    delay = 0.01
    while True:
        orders = await control.book_orders(book)
        known = sum(1 for o in orders if order_trader_tag(o.client_order_id) in tags)
        if known >= expected or time.monotonic() >= deadline:
            break
        await asyncio.sleep(delay)  # polling the execution actor until the orders in flight land
        delay = min(delay * 2, 0.2)
    if known < expected:
        log.warning("%s: execution knows %d of the %d orders of %s", book, known, expected, sorted(shards))
    final = await asyncio.gather(*(control.stop_shard(n, graceful=True) for n in shards))
    cancelled: list[str] = []
    if cancel_orders:
        orders = await control.book_orders(book)
        doomed = [
            o.client_order_id for o in orders if working(o) and order_trader_tag(o.client_order_id) in tags
        ]
        results = await asyncio.gather(*(control.cancel_order(c) for c in doomed))
        cancelled = [c for c, ok in zip(doomed, results, strict=True) if ok]
    return {
        "orders_sent": expected,
        "orders_in_execution": known,
        "orders_cancelled": cancelled,
        "final": {name: _final_counts(s) for name, s in zip(shards, final, strict=True)},
    }


def _final_counts(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    stats = stats or {}
    return {k: stats.get(k) for k in ("state", "rows_handled", "ticks_handled", "orders_sent", "error")}


class HotSwap:
    """Replace a running deployment's strategy version with another, shard by shard state.

    Parameters
    ----------
    control : ClusterControl
        The running cluster.
    record : DeploymentRecord
        The deployment as it runs (its generation and shard count).
    spec : DeploymentConfig
        The new version (same name, universe, flow and shard count; checked by the manager).
    runtime_env : dict, optional
        Where the new version's code comes from.
    instruments : tuple[ShardInstrument, ...]
        The deployment's universe.
    cancel_old_orders : bool, default True
        Cancel the old version's orders still working after it stopped.
    use_spares : bool, default False
        Launch the new version in the deployment's warm spares (which run `runtime_env` already)
        instead of starting new processes.
    """

    def __init__(
        self,
        control: ClusterControl,
        record: DeploymentRecord,
        spec: DeploymentConfig,
        runtime_env: RuntimeEnv | None,
        instruments: tuple[ShardInstrument, ...],
        *,
        cancel_old_orders: bool = True,
        use_spares: bool = False,
    ) -> None:
        self._control = control
        self._record = record
        self._spec = spec
        self._env = runtime_env
        self._instruments = instruments
        self._cancel_old_orders = cancel_old_orders
        self._use_spares = use_spares

    async def run(self) -> dict[str, Any]:
        control, record = self._control, self._record
        route = record.name
        old_generation, new_generation = record.generation, record.generation + 1
        old = record.shard_names()
        specs = shard_specs(
            self._spec, self._instruments, new_generation, record.shards, range(record.shards)
        )
        new = [s.name for s in specs]
        began = time.perf_counter()
        try:
            if self._use_spares:
                await launch_spares(control, specs)
            else:
                await start_shards(control, specs, self._env, attach=False)
        except ShardlineError as err:
            raise SwapFailed(f"{route}: the new version did not start, the old one runs on: {err}") from None
        warmed = time.perf_counter()
        held = await control.hold_route(route)
        try:
            held_at = time.perf_counter()
            await asyncio.gather(*(control.drain_shard(n) for n in old))
            drained = time.perf_counter()
            moved = await self._move_state(old, new)
            loaded = time.perf_counter()
            await self._check_running(new)
        except BaseException as err:
            await _roll_back(control, route, old, new)
            if isinstance(err, ShardlineError):
                raise SwapFailed(f"{route}: swap rolled back, the old version runs on: {err}") from None
            raise
        at_switch = await control.route_stats(route)
        await _attach_all(control, route, new)
        switched = time.perf_counter()
        retired = await retire_shards(
            control,
            route,
            {name: trader_tag(old_generation, k) for k, name in enumerate(old)},
            cancel_orders=self._cancel_old_orders,
        )
        done = time.perf_counter()
        return {
            "name": route,
            "from_strategy": record.strategy,
            "to_strategy": self._spec.strategy,
            "generation": new_generation,
            "shards": new,
            "warm_spares": self._use_spares,
            "state_moved": moved,
            "ticks_held_at_switch": int((at_switch or {}).get("buffered", 0)),
            "in_flight_at_hold": int(held.get("in_flight", 0)),
            "timings_ms": {
                "warm_up": _ms(began, warmed),
                "hold": _ms(warmed, held_at),
                "drain": _ms(held_at, drained),
                "state": _ms(drained, loaded),
                "paused": _ms(held_at, switched),
                "to_switch": _ms(began, switched),
                "retire": _ms(switched, done),
            },
            "retired": retired,
        }

    async def _move_state(self, old: Sequence[str], new: Sequence[str]) -> dict[str, int]:
        """Old shard k's state into new shard k; a failed old shard's state is not carried."""
        control = self._control
        stats = await asyncio.gather(*(control.shard_stats(n) for n in old))
        carry = [s is not None and s.get("state") == "running" for s in stats]
        states = await asyncio.gather(
            *(control.save_shard_state(n) for n, ok in zip(old, carry, strict=True) if ok)
        )
        loads = []
        it = iter(states)
        moved: dict[str, int] = {}
        for name_old, name_new, ok in zip(old, new, carry, strict=True):
            if not ok:
                log.warning("%s is not running; %s starts without its state", name_old, name_new)
                moved[name_new] = -1
                continue
            state = next(it)
            moved[name_new] = sum(len(v) for v in state.values())
            loads.append(control.load_shard_state(name_new, state))
        await asyncio.gather(*loads)
        return moved

    async def _check_running(self, names: Sequence[str]) -> None:
        stats = await asyncio.gather(*(self._control.shard_stats(n) for n in names))
        for name, s in zip(names, stats, strict=True):
            if s is None or s.get("state") != "running":
                reason = (s or {}).get("error") or ("no answer" if s is None else s.get("state"))
                raise SwapFailed(f"{name} is not running after loading the state: {reason}")


class Rescale:
    """Change a running deployment's shard count, moving about 1/N of its instruments.

    Parameters
    ----------
    control : ClusterControl
        The running cluster.
    record : DeploymentRecord
        The deployment as it runs.
    instruments : tuple[ShardInstrument, ...]
        The deployment's universe.
    shards : int
        The new shard count.
    """

    def __init__(
        self,
        control: ClusterControl,
        record: DeploymentRecord,
        instruments: tuple[ShardInstrument, ...],
        shards: int,
    ) -> None:
        self._control = control
        self._record = record
        self._instruments = instruments
        self._shards = shards

    async def run(self) -> dict[str, Any]:
        control, record, target = self._control, self._record, self._shards
        route, before = record.name, record.shards
        current = record.shard_names()
        wanted = record.shard_names(shards=target)
        added = [n for n in wanted if n not in current]
        removed = [n for n in current if n not in wanted]
        began = time.perf_counter()
        if added:
            specs = shard_specs(
                record.config, self._instruments, record.generation, target, range(before, target)
            )
            try:
                await start_shards(control, specs, record.runtime_env, attach=False)
            except ShardlineError as err:
                raise SwapFailed(f"{route}: the new shards did not start, nothing changed: {err}") from None
        started = time.perf_counter()
        await control.hold_route(route)
        held_at = time.perf_counter()
        try:
            await asyncio.gather(*(control.drain_shard(n) for n in current))
            resized = await control.resize_route(route, target)
        except BaseException as err:
            await _roll_back(control, route, current, added)
            if isinstance(err, ShardlineError):
                raise SwapFailed(f"{route}: rescale rolled back: {err}") from None
            raise
        await _attach_all(control, route, wanted)
        switched = time.perf_counter()
        await control.watch(added)
        retired: dict[str, Any] = {}
        if removed:
            retired = await retire_shards(
                control, route, {n: trader_tag(record.generation, current.index(n)) for n in removed}
            )
            await control.forget(removed)
        return {
            "name": route,
            "from_shards": before,
            "to_shards": target,
            "added": added,
            "removed": removed,
            "instruments_per_shard": [int(s.get("instruments", 0)) for s in resized.get("shards", ())],
            "ticks_moved": sum(int(s.get("moved_in", 0)) for s in resized.get("shards", ())),
            "timings_ms": {
                "start": _ms(began, started),
                "paused": _ms(held_at, switched),
                "total": _ms(began, time.perf_counter()),
            },
            "retired": retired,
        }


def moved_instruments(keys: Sequence[str], before: int, after: int, virtual_nodes: int = 128) -> int:
    """How many of `keys` change shard when a ring of `before` shards becomes `after` shards."""
    from actors.router.ring import ConsistentHashRing, hash_keys

    hashes = hash_keys(keys)
    old = ConsistentHashRing(range(before), virtual_nodes).assign_hashes(hashes)
    new = ConsistentHashRing(range(after), virtual_nodes).assign_hashes(hashes)
    return int((old != new).sum())


# ----------------------------------------------------------------------------------- checking


class SequenceCheckConfig(StrategyConfig, frozen=True):
    """Configuration for `SequenceCheck`.

    Parameters
    ----------
    order_every : NonNegativeInt, default 0
        Send a one-lot market order (alternating buy and sell) every this many trade ticks the
        shard handles, to keep orders in flight across a swap; 0 never orders.
    """

    order_every: NonNegativeInt = 0


class SequenceCheck(Strategy):
    """Records, per instrument, the feed sequence numbers it saw as runs of consecutive numbers.

    *** NO EDGE — a test and benchmark tool: it trades only to exercise the order path. ***

    A shard makes each trade tick's trade id from the feed sequence number, so the runs show
    every tick missed (a gap) and every tick seen twice or out of order (`out_of_order`). The
    state (`on_save` / `on_load`) carries the runs to the next version in a hot swap.
    """

    def __init__(self, config: SequenceCheckConfig) -> None:
        super().__init__(config)
        self._order_every = config.order_every
        self._runs: dict[str, list[list[int]]] = {}
        self._out_of_order = 0
        self._ticks = 0
        self._buy = True

    def on_start(self) -> None:
        for instrument in self.cache.instruments():
            self.subscribe_trade_ticks(instrument.id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        seq = int(tick.trade_id.value)
        runs = self._runs.setdefault(tick.instrument_id.value, [])
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        elif not runs or seq > runs[-1][1] + 1:
            runs.append([seq, seq])
        else:
            self._out_of_order += 1
        self._ticks += 1
        if self._order_every and self._ticks % self._order_every == 0:
            instrument = self.cache.instrument(tick.instrument_id)
            if instrument is not None:
                lot = instrument.lot_size.as_decimal() if instrument.lot_size is not None else Decimal(1)
                order = self.order_factory.market(
                    instrument_id=tick.instrument_id,
                    order_side=OrderSide.BUY if self._buy else OrderSide.SELL,
                    quantity=instrument.make_qty(lot),
                    time_in_force=TimeInForce.DAY,
                )
                self._buy = not self._buy
                self.submit_order(order)

    def on_save(self) -> dict[str, bytes]:
        return {
            "runs": json.dumps(self._runs).encode(),
            "out_of_order": str(self._out_of_order).encode(),
            "ticks": str(self._ticks).encode(),
        }

    def on_load(self, state: dict[str, bytes]) -> None:
        for key, runs in json.loads(state.get("runs", b"{}")).items():
            self._runs[key] = [list(r) for r in runs] + self._runs.get(key, [])
        self._out_of_order += int(state.get("out_of_order", b"0"))
        self._ticks += int(state.get("ticks", b"0"))


class TickStream:
    """A steady tick stream for swap checks: each instrument in turn, a random walk, sequence numbers
    continuing per instrument from 1, handed to `push(batch)` at `rate` ticks a second.

    `run` is a thread's target until `stop`; a `push` that blocks (router back-pressure) slows the
    stream down rather than dropping anything. `sent` and `last_seq_by_instrument` say what went,
    and are final once `stop` returns: it waits for a push in flight to finish.
    """

    def __init__(
        self,
        push: Callable[[np.ndarray], Any],
        universe: Sequence[ShardInstrument],
        rate: int,
        batches_per_s: int = 100,
    ) -> None:
        if rate <= 0 or not universe:
            raise ShardlineError("a tick stream needs a positive rate and at least one instrument")
        self._push = push
        self._universe = list(universe)
        self._per_batch = max(1, rate // batches_per_s // len(universe)) * len(universe)
        self._interval = self._per_batch / rate
        self._stopping = threading.Event()
        self._running = threading.Lock()  # held by `run`, so that `stop` can wait for it to end
        self._rounds = 0  # rounds over the universe sent: the last sequence number of each instrument
        self._seed = 0
        self.sent = 0

    def next_batch(self) -> np.ndarray:
        from actors.shard.baseline import random_walk_ticks

        self._seed += 1
        ticks = random_walk_ticks(
            self._universe, self._per_batch, seed=self._seed, start_ns=time.time_ns(), step_ns=1_000
        )
        ticks["seq"] += self._rounds  # random_walk_ticks numbers each instrument's rows from 1
        self._rounds += self._per_batch // len(self._universe)
        return ticks

    def run(self) -> None:
        with self._running:
            next_at = time.perf_counter()
            while not self._stopping.is_set():
                batch = self.next_batch()
                self._push(batch)
                self.sent += len(batch)
                next_at += self._interval
                self._stopping.wait(max(0.0, next_at - time.perf_counter()))  # the pace, or the stop

    def wait_for(self, ticks: int, timeout_s: float = 120.0) -> None:
        """Block until `ticks` more have been sent."""
        target = self.sent + ticks
        deadline = time.monotonic() + timeout_s
        while self.sent < target:
            if self._stopping.is_set() or time.monotonic() > deadline:
                raise ShardlineError(f"the tick stream sent {self.sent} of {target} ticks")
            self._stopping.wait(0.01)  # the stream thread advances `sent`

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop sending, and wait until a push in flight has landed and been counted in `sent`."""
        self._stopping.set()
        if not self._running.acquire(timeout=timeout_s):
            raise ShardlineError(f"the tick stream's last push did not return within {timeout_s:.0f} s")
        self._running.release()

    def last_seq_by_instrument(self) -> dict[str, int]:
        """The last sequence number sent, per Nautilus instrument id ("SYMBOL.VENUE")."""
        return {i.instrument.id.value: self._rounds for i in self._universe}


@dataclass(frozen=True)
class SequenceAudit:
    instruments: int
    seen: int  # distinct sequence numbers seen
    expected: int
    lost: int
    duplicated: int

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def audit_sequences(
    states: Iterable[Mapping[str, bytes]], expected_last: Mapping[str, int], first: int = 1
) -> SequenceAudit:
    """Total the `SequenceCheck` states of every shard against the numbers sent per instrument.

    Parameters
    ----------
    states : iterable of dict[str, bytes]
        `save_state` of each shard that saw ticks (runs of different shards may overlap).
    expected_last : Mapping[str, int]
        Per instrument id ("SYMBOL.VENUE"), the last sequence number sent; `first`..last were sent.
    """
    runs: dict[str, list[tuple[int, int]]] = {}
    duplicated = 0
    for state in states:
        duplicated += int(state.get("out_of_order", b"0"))
        for key, pairs in json.loads(state.get("runs", b"{}")).items():
            runs.setdefault(key, []).extend((int(a), int(b)) for a, b in pairs)
    seen = lost = expected = 0
    for key in set(expected_last) | set(runs):
        last = expected_last.get(key, first - 1)
        want = max(0, last - first + 1)
        expected += want
        covered = 0
        end = first - 1  # highest number covered so far
        for a, b in sorted(runs.get(key, ())):
            if a <= end:  # overlaps what an earlier run (another shard, or version) saw
                duplicated += min(b, end) - a + 1
            lo, hi = max(a, end + 1, first), min(b, last)
            if hi >= lo:
                covered += hi - lo + 1
            end = max(end, b)
        seen += covered
        lost += want - covered
    return SequenceAudit(len(runs), seen, expected, lost, duplicated)
