"""The execution actor (named "execution", exactly one): a thin async shell around `ExecutionEngine`.

It is the only path to a venue. It is pinned by the custom resource `execution.pin_resource` to
the node that holds the broker-registered static IP, and Ray restarts it forever
(`max_restarts=-1`): on every start it replays its journal (one stream per trading day,
`execution-YYYYMMDD`, in files or Redis Streams) and then asks the venue about orders the last
incarnation left in doubt, before it answers any call.

When the venue is the paper portfolio actor, it is told the engaged kill switches at start and on
every change (`set_entry_halts`): the GTT legs and bracket entries it places itself, which never
pass through here, are then held to the same switches.

Order updates go to the actors registered for the order's book (`register_book`, which shards
call on every start) through their `on_order_updates(updates)`, and to actors registered for every
book (`register_listener(name)`, e.g. the terminal's hub). The updates made in one turn of the
event loop go to each subscriber in one call, in the order they were made: a Ray call costs the
sender far more than an update does.

`PaperVenueActor` is a stand-in paper venue (fills against quotes it is given) with the venue
protocol `ActorVenue` speaks; it pushes its reports to the execution actor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import ray

from actors.execution.engine import ExecutionEngine
from actors.execution.risk import KillSwitch, PreTradeRisk, RiskState
from actors.execution.venue import (
    ActorVenue,
    LocalPaperVenue,
    Venue,
    VenueAck,
    VenueEvent,
    VenueOrderState,
    event_from_update,
)
from actors.journal.journal import open_journal
from actors.orders import Fill, OrderRequest, OrderUpdate
from cluster.config import Mode, Secrets, ShardlineConfig
from cluster.metrics import classify_reject_reason, rate_limit_counters
from cluster.topology import EXECUTION, NAMESPACE, PORTFOLIO

log = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30))
LOCAL_VENUE = "local"
OUTBOX_LIMIT = 10_000  # updates held per subscriber that cannot be reached yet
ANGEL_VENUE = "angel"


def session_stream(now: datetime | None = None) -> str:
    """Today's journal stream: one per IST trading day, so day orders and daily loss start afresh."""
    return f"execution-{(now or datetime.now(IST)).astimezone(IST):%Y%m%d}"


class ExecutionActor:
    """Ray actor body; create it with `start_execution`.

    Parameters
    ----------
    config
        The whole configuration (risk limits, deployments' own limits, data_dir, mode).
    endpoints, credentials
        Angel One endpoints and login, for the broker venue (`sim-live` and `live`).
    venue
        "local" (in-process paper fills), "angel", or the name of a venue actor. Default: the
        broker in `sim-live`/`live`, else the "portfolio" actor.
    journal_stream
        Default: `execution-<IST date>`.
    redis_url
        Journal in Redis Streams; default from REDIS_URL, else files under data_dir/journal.
    load_catalog
        Check orders against the instrument catalog (lot and tick sizes, unknown keys).
    """

    def __init__(
        self,
        config: ShardlineConfig,
        *,
        endpoints: Any = None,
        credentials: Any = None,
        venue: str | None = None,
        journal_stream: str | None = None,
        redis_url: str | None = None,
        load_catalog: bool = True,
    ) -> None:
        self._config = config
        stream = journal_stream or session_stream()
        redis_url = redis_url if redis_url is not None else Secrets().redis_url
        journal = open_journal(stream, config.data_path, redis_url)
        lookup = None
        self._keys_by_iid: list[str] = []
        if load_catalog:
            from catalog.sources import load_default_catalog

            catalog = load_default_catalog(config)
            lookup = catalog.get
            self._keys_by_iid = catalog.keys()
        risk = PreTradeRisk.from_config(config.risk, config.deployments, lookup)
        self._venue, self._venue_name = self._open_venue(venue, config, endpoints, credentials)
        self._engine = ExecutionEngine(journal, self._venue, risk, classify_reason=classify_reject_reason)
        self._engine.add_listener(self._forward_update)
        self._handles: dict[str, Any] = {}
        # Updates waiting for their subscriber to be found (e.g. a shard still starting).
        self._outboxes: dict[str, deque[OrderUpdate]] = {}
        self._retrying: set[str] = set()
        self._flush_due: set[str] = set()  # subscribers with a send queued for this loop turn
        self._outbox_dropped = 0
        replayed = self._engine.restore()
        self._halting_venue = self._entry_halting_venue(self._venue)
        if self._halting_venue is not None:
            self._engine.add_kill_switch_listener(self._halt_venue_entries)
            # Once at start too: the venue may have missed changes while this actor was down.
            self._halt_venue_entries(self._engine.risk.engaged_kill_switches())
        self._ready: asyncio.Task[int] | None = None
        log.info(
            "execution: mode=%s venue=%s journal=%s replayed=%d pid=%d",
            config.mode.value,
            self._venue_name,
            journal.stats().location,
            replayed,
            os.getpid(),
        )

    # -- orders ------------------------------------------------------------------------------

    async def submit(self, order: OrderRequest) -> OrderUpdate:
        await self._reconciled()
        return await self._engine.submit(order)

    async def vet(self, order: OrderRequest, deferred: bool = False) -> None:
        """Raise `RiskRefusal` (with `submit`'s reason) if pre-trade risk would refuse `order` now.

        Nothing is journaled or sent: the terminal vets a GTT leg (`deferred`) or a bracket entry
        this way before the portfolio makes the rule or bracket.
        """
        self._engine.vet(order, deferred=deferred)

    async def cancel(self, client_order_id: str) -> OrderUpdate | None:
        await self._reconciled()
        return await self._engine.cancel(client_order_id)

    async def modify(
        self,
        client_order_id: str,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
    ) -> OrderUpdate | None:
        await self._reconciled()
        return await self._engine.modify(client_order_id, quantity, price, trigger_price)

    async def orders(self, book: str | None = None) -> list[OrderUpdate]:
        return self._engine.orders(book)

    async def order(self, client_order_id: str) -> OrderUpdate | None:
        return self._engine.order(client_order_id)

    # -- who hears about orders --------------------------------------------------------------

    async def register_book(self, book: str, actor_name: str) -> bool:
        """Push `book`'s order updates to `actor_name.on_order_updates(updates)` (kept across restarts)."""
        self._handles.pop(actor_name, None)  # look it up afresh
        return self._engine.subscribe(actor_name, book)

    async def register_listener(self, actor_name: str) -> bool:
        """Push every book's order updates to `actor_name.on_order_updates(updates)` (the terminal's hook)."""
        self._handles.pop(actor_name, None)
        return self._engine.subscribe(actor_name, None)

    # -- risk --------------------------------------------------------------------------------

    async def kill_switch(self, book: str | None, engaged: bool, reason: str = "") -> KillSwitch:
        """Engage (cancelling working entries) or release a book's kill switch; None: all books."""
        await self._reconciled()
        return await self._engine.set_kill_switch(book, engaged, reason)

    async def update_marks(self, marks: Mapping[str, int]) -> None:
        """Last prices by "EXCH:token" (minor units): price bands, market order values, P&L."""
        self._engine.update_marks(marks)
        if isinstance(self._venue, LocalPaperVenue):
            for instrument, price in marks.items():
                self._venue.set_quote(instrument, int(price))

    async def on_quotes(self, quotes: Any) -> None:
        """The router's quote board (iid, ltp, bid, ask, ...) as marks; the router pushes it."""
        keys = self._keys_by_iid
        marks = {
            keys[iid]: int(ltp)
            for iid, ltp in zip(quotes["iid"].tolist(), quotes["ltp"].tolist(), strict=True)
            if ltp > 0 and 0 <= iid < len(keys)
        }
        if marks:
            await self.update_marks(marks)

    async def set_holdings(self, book: str, instrument: str, quantity: int) -> None:
        self._engine.set_holdings(book, instrument, quantity)

    async def risk_state(self) -> RiskState:
        return self._engine.risk_state()

    # -- the venue's reports -----------------------------------------------------------------

    async def on_venue_event(self, event: VenueEvent | OrderUpdate) -> None:
        """A fill or status change pushed by a venue actor (a bare `OrderUpdate` is accepted too)."""
        await self.on_venue_events([event])

    async def on_venue_events(self, events: list[VenueEvent | OrderUpdate]) -> None:
        """Fills and status changes a venue actor pushes together, in the order they happened."""
        for event in events:
            converted = event_from_update(event) if isinstance(event, OrderUpdate) else event
            if converted is not None:
                self._engine.on_venue_event(converted)

    async def on_venue_own_fills(self, fills: list[Fill]) -> int:
        """Fills of orders the venue placed itself (GTT and bracket legs, square-offs), for risk
        and for the strategies trading those books; returns how many were new."""
        new = [fill for fill in fills if self._engine.on_venue_own_fill(fill)]
        self._send_venue_fills(new)
        return len(new)

    async def reconcile(self) -> int:
        """Ask the venue about every working order now; returns how many were settled."""
        return await self._engine.reconcile()

    # -- health ------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        stats = self._engine.stats_dict()
        limiter = self._engine.limiter or getattr(getattr(self._venue, "rest", None), "limiter", None)
        return {
            "refusals": dict(self._engine.rejections["risk"]),
            "venue_rejections": dict(self._engine.rejections["venue"]),
            "rate_limits": rate_limit_counters(limiter) if limiter is not None else {},
            "risk": msgspec.to_builtins(self._engine.risk_state()),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "orders_submitted": stats["submitted"],
            "subscribers": {str(k): sorted(v) for k, v in self._engine.subscribers.items()},
            "updates_waiting": sum(len(q) for q in self._outboxes.values()),
            "updates_dropped": self._outbox_dropped,
            **stats,
        }

    # -- internals ---------------------------------------------------------------------------

    async def _reconciled(self) -> None:
        """Before the first command of an incarnation: open the venue's feeds, settle what is in doubt."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._start_venue())
        await asyncio.shield(self._ready)

    async def _start_venue(self) -> int:
        start = getattr(self._venue, "start", None)
        if start is not None:
            await start()
        settled = await self._engine.reconcile()
        await self._catch_up_own_fills()
        return settled

    async def _catch_up_own_fills(self) -> None:
        """Book the fills of the venue actor's own orders that did not reach this actor (it was
        down, or restarting, when they were sent), so risk judges the whole position."""
        if not isinstance(self._venue, ActorVenue) or not hasattr(self._venue.handle, "own_fills"):
            return
        try:
            fills = await self._venue.handle.own_fills.remote()
        except Exception as err:  # the venue restarting: its next deliveries still come
            log.warning("execution: could not ask %s for its own fills: %s", self._venue_name, err)
            return
        booked = self._engine.catch_up_venue_own_fills(fills)
        self._send_venue_fills(booked)
        if booked:
            log.info(
                "execution: booked %d fills of %s's own orders made while it was away",
                len(booked),
                self._venue_name,
            )

    @staticmethod
    def _entry_halting_venue(venue: Venue) -> Any:
        """The venue actor's handle if it places orders of its own that kill switches must halt."""
        if isinstance(venue, ActorVenue) and hasattr(venue.handle, "set_entry_halts"):
            return venue.handle
        return None

    def _halt_venue_entries(self, engaged: dict[str | None, str]) -> None:
        # Fire and forget; the time stamp lets the venue drop a state that arrives after a newer one.
        self._halting_venue.set_entry_halts.remote(engaged, time.time_ns())

    def _forward_update(self, update: OrderUpdate) -> None:
        for name in self._engine.subscribers_of(update.book):
            outbox = self._outboxes.get(name)
            if outbox is None:
                outbox = self._outboxes[name] = deque(maxlen=OUTBOX_LIMIT)
            if len(outbox) == outbox.maxlen:
                self._outbox_dropped += 1
            outbox.append(update)
            if name not in self._flush_due:
                self._flush_due.add(name)
                asyncio.get_running_loop().call_soon(self._flush, name)

    def _flush(self, name: str) -> None:
        """Send `name` its queued updates in one call, in order; if it cannot be found yet, try
        again shortly."""
        self._flush_due.discard(name)
        outbox = self._outboxes[name]
        handle = self._subscriber(name)
        if handle is None:  # still starting (a shard registers from its __init__), or gone
            if name not in self._retrying:
                self._retrying.add(name)
                asyncio.get_running_loop().call_later(0.2, self._retry_flush, name)
            return
        if outbox:
            handle.on_order_updates.remote(list(outbox))  # fire and forget: a slow book never holds us
            outbox.clear()

    def _send_venue_fills(self, fills: list[Fill]) -> None:
        """Fills of the venue's own orders to the shards subscribed to their books, so that the
        strategies' positions follow the books' (each shard takes those on its instruments).
        Fire and forget: a shard that is down misses them, as it misses its own order updates."""
        by_book: dict[str, list[Fill]] = {}
        for fill in fills:
            by_book.setdefault(fill.book, []).append(fill)
        for book, book_fills in by_book.items():
            for name in self._engine.subscribers.get(book, ()):
                handle = self._subscriber(name)  # None: gone (an old generation of a swapped deployment)
                if handle is not None and hasattr(handle, "on_venue_fills"):
                    handle.on_venue_fills.remote(book_fills)

    def _subscriber(self, name: str) -> Any:
        """The named subscriber's handle, looked up once and kept; None while Ray cannot find it."""
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = self._handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                return None
        return handle

    def _retry_flush(self, name: str) -> None:
        self._retrying.discard(name)
        if self._outboxes.get(name):
            self._flush(name)

    @staticmethod
    def _open_venue(
        name: str | None, config: ShardlineConfig, endpoints: Any, credentials: Any
    ) -> tuple[Venue, str]:
        if name is None:
            name = ANGEL_VENUE if config.mode in (Mode.SIM_LIVE, Mode.LIVE) else PORTFOLIO
        if name == LOCAL_VENUE:
            return LocalPaperVenue(), LOCAL_VENUE
        if name == ANGEL_VENUE:
            from actors.execution.angel_venue import AngelVenue

            return AngelVenue.connect(config, endpoints, credentials), ANGEL_VENUE
        handle = ray.get_actor(name, namespace=NAMESPACE)
        if not all(hasattr(handle, method) for method in ("submit", "modify", "cancel", "find")):
            # Keep trading possible, loudly: fills then happen here, not in that actor's books.
            log.error(
                "execution: actor %r lacks the venue methods submit/modify/cancel/find; "
                "paper fills happen in process instead",
                name,
            )
            return LocalPaperVenue(), LOCAL_VENUE
        return ActorVenue(handle, name), name


class PaperVenueActor:
    """A paper venue actor around `LocalPaperVenue`: fills against the quotes it is given.

    Parameters
    ----------
    execution
        The execution actor's name; fills and status changes are pushed to its `on_venue_event`.
    """

    def __init__(self, execution: str = EXECUTION) -> None:
        self._execution = execution
        self._venue = LocalPaperVenue()
        self._venue.attach(self._forward)
        self._undelivered = 0

    async def submit(self, order: OrderRequest) -> VenueAck:
        return await self._venue.submit(order)

    async def modify(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        return await self._venue.modify(order, venue_order_id)

    async def cancel(self, order: OrderRequest, venue_order_id: str) -> VenueAck:
        return await self._venue.cancel(order, venue_order_id)

    async def find(self, order: OrderRequest, venue_order_id: str | None = None) -> VenueOrderState | None:
        return await self._venue.find(order, venue_order_id)

    async def set_quote(self, instrument: str, ltp: int, bid: int = 0, ask: int = 0) -> None:
        self._venue.set_quote(instrument, ltp, bid, ask)

    async def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "submissions": self._venue.submissions, "undelivered": self._undelivered}

    def _forward(self, event: VenueEvent) -> None:
        try:
            ray.get_actor(self._execution, namespace=NAMESPACE).on_venue_event.remote(event)
        except ValueError:  # the execution actor is not there: its reconcile asks us later
            self._undelivered += 1


def execution_actor_options(config: ShardlineConfig, **overrides: Any) -> dict[str, Any]:
    """Ray options of the execution actor: named, pinned to the broker-IP node, restarted forever.

    Tasks are not retried by Ray: a caller retries a submit with the same client order id, which
    the journal makes idempotent.
    """
    options: dict[str, Any] = {
        "name": EXECUTION,
        "namespace": NAMESPACE,
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": 1000,
        "resources": {config.execution.pin_resource: 0.001},
    }
    options.update(overrides)
    return options


def start_execution(config: ShardlineConfig, *, options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Create the execution actor; `kwargs` go to `ExecutionActor`."""
    actor_options = execution_actor_options(config, **(options or {}))
    return ray.remote(ExecutionActor).options(**actor_options).remote(config, **kwargs)
