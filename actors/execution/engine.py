"""`ExecutionEngine`: risk, journal, order state and a venue, the only path an order takes to market.

Every state change is a record (`actors.execution.records`) that is journaled first and then
applied, so `restore` replays the journal into exactly the state that wrote it. An order is on
disk (synced) before it is sent; one sync per order keeps submit → acknowledgement short. Commands (submit,
cancel, modify, kill switch) that cannot be journaled fail and change nothing; facts the venue
reports (fills, cancels) are applied even if the journal fails, because they already happened,
and are recovered from the venue by `reconcile` after a restart.

A retried submit (same client order id, same order) returns the existing order and never sends a
second one, also across restarts. Cancels and exits go ahead of entries through the Angel rate
limiter when the venue has one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgspec

from actors.angel.common import EndpointGroup
from actors.angel.limits import Priority, RateLimiter
from actors.execution.order_state import OrderStateMachine
from actors.execution.records import (
    CancelRequested,
    ExecutionRecord,
    HoldingsSet,
    KillSwitchSet,
    ListenerRegistered,
    ModifyRequested,
    OrderAccepted,
    OrderAcknowledged,
    OrderCancelled,
    OrderEvent,
    OrderFilled,
    OrderModified,
    OrderRefused,
    OrderRejected,
    OrderSent,
    OrderTriggered,
    Record,
    VenueOwnFill,
)
from actors.execution.risk import Exposure, KillSwitch, PreTradeRisk, RiskState
from actors.execution.venue import Venue, VenueAck, VenueEvent, VenueOrderEvent, VenueOrderState
from actors.journal.journal import Journal, JournalWriteError
from actors.orders import Fill, OrderRequest, OrderStatus, OrderUpdate, Product, Side
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

UpdateListener = Callable[[OrderUpdate], None]
# Called with the engaged kill switches' reasons by book (None: the global switch).
KillSwitchListener = Callable[[dict[str | None, str]], None]

LOST_BEFORE_SENDING = "not sent before the execution actor restarted; resubmit it if still wanted"
LOST_AT_VENUE = "the venue has no record of it after the execution actor restarted"


class ExecutionError(ShardlineError):
    """An order command that could not be carried out; nothing was changed."""


class DuplicateClientOrderId(ExecutionError):
    """A client order id reused for a different order."""


class RiskRefusal(ExecutionError):
    """An order pre-trade risk refuses (`vet`); the message is the reason `submit` would give."""


@dataclass
class ExecutionStats:
    submitted: int = 0
    accepted: int = 0
    refused: int = 0  # by risk or validation
    rejected_by_venue: int = 0
    idempotent_replies: int = 0  # retried submits answered with the existing order
    fills: int = 0
    duplicate_fills: int = 0
    cancels: int = 0
    modifies: int = 0
    illegal_events: int = 0  # venue reports that did not fit an order's state
    unknown_events: int = 0  # venue reports for orders this engine does not know
    venue_errors: int = 0
    journal_failures: int = 0
    replayed: int = 0
    kill_switch_trips: int = 0


class ExecutionEngine:
    """Pre-trade risk, write-ahead journal, order state machine and venue, combined.

    Parameters
    ----------
    journal
        Where every state change is written before it is applied.
    venue
        Where orders go.
    risk
        The pre-trade checks and the kill switches.
    limiter
        Angel's rate limiter (for a broker venue); None for a paper venue.
    clock
        Nanosecond wall clock for record timestamps.
    classify_reason
        Maps a rejection sentence to a small class (for `rejections`).
    """

    def __init__(
        self,
        journal: Journal,
        venue: Venue,
        risk: PreTradeRisk,
        *,
        limiter: RateLimiter | None = None,
        clock: Callable[[], int] = time.time_ns,
        classify_reason: Callable[[str], str] = lambda reason: "all",
    ) -> None:
        self.journal = journal
        self.venue = venue
        self.risk = risk
        self.limiter = limiter
        self.stats = ExecutionStats()
        self._clock = clock
        self._classify = classify_reason
        # Rejections by source ("risk", "venue") and class, for metrics with a bounded label set.
        self.rejections: dict[str, dict[str, int]] = {"risk": {}, "venue": {}}
        self._orders: dict[str, OrderStateMachine] = {}
        self._working: dict[tuple[str, str], set[str]] = defaultdict(set)  # (book, instrument) -> ids
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[UpdateListener] = []
        self._kill_switch_listeners: list[KillSwitchListener] = []
        self._background: set[asyncio.Task[Any]] = set()
        # Actor names that get order updates, by book (None: every book); journaled, so they
        # survive a restart of the actor that holds this engine.
        self.subscribers: dict[str | None, set[str]] = defaultdict(set)
        self._venue_own_trades: set[str] = set()  # trade ids of the venue's own orders, booked once
        venue.attach(self.on_venue_event)

    def add_listener(self, listener: UpdateListener) -> None:
        """Call `listener` with every order update (state changes and fills)."""
        self._listeners.append(listener)

    def add_kill_switch_listener(self, listener: KillSwitchListener) -> None:
        """Call `listener` with the engaged kill switches whenever one is engaged or released."""
        self._kill_switch_listeners.append(listener)

    # -- restart -----------------------------------------------------------------------------

    def restore(self) -> int:
        """Replay the journal into this (fresh) engine; returns how many records were applied."""
        if self._orders:
            raise ExecutionError("restore must run on a fresh engine, before any order")
        count = 0
        for entry in self.journal.replay(record_type=Record):
            self._apply(entry.record)
            count += 1
        self.stats.replayed = count
        self.risk.evaluate()  # re-arm the loss edges from the restored P&L (switches come from records)
        if count:
            log.info(
                "restored %d records: %d orders, %d working", count, len(self._orders), self._open_count()
            )
        return count

    async def reconcile(self) -> int:
        """Settle orders a restart left in doubt by asking the venue; returns how many were settled.

        Accepted orders that were never sent are rejected (the market has moved on); sent ones
        take the venue's state, fills included; sent ones the venue never heard of are rejected.
        """
        settled = 0
        for order in [o for o in self._orders.values() if not o.is_terminal]:
            if not order.sent:
                self._record_fact(
                    OrderRejected(
                        ts_ns=self._clock(), client_order_id=order.client_order_id, reason=LOST_BEFORE_SENDING
                    )
                )
                settled += 1
                continue
            try:
                state = await self.venue.find(order.request, order.venue_order_id)
            except Exception as err:
                self.stats.venue_errors += 1
                log.warning("reconcile %s: the venue did not answer: %r", order.client_order_id, err)
                continue
            if state is None:
                if order.venue_order_id is None:
                    self._record_fact(
                        OrderRejected(
                            ts_ns=self._clock(), client_order_id=order.client_order_id, reason=LOST_AT_VENUE
                        )
                    )
                    settled += 1
                else:
                    log.warning(
                        "reconcile %s: venue order %s is unknown to the venue",
                        order.client_order_id,
                        order.venue_order_id,
                    )
                continue
            self._adopt(order, state)
            settled += 1
        return settled

    # -- commands ----------------------------------------------------------------------------

    async def submit(self, request: OrderRequest) -> OrderUpdate:
        """Check, journal and send `request`; returns its state once the venue has answered.

        Refused orders come back REJECTED with the reason. A retried submit returns the existing
        order (after its first submit has been answered).
        """
        self.stats.submitted += 1
        coid = request.client_order_id
        if not coid:
            raise ExecutionError("an order needs a client_order_id")
        existing = self._orders.get(coid)
        if existing is not None:
            if existing.original_request != request:
                raise DuplicateClientOrderId(
                    f"client order id {coid} is already used by a different order "
                    f"({existing.original_request.side} {existing.original_request.quantity} "
                    f"{existing.original_request.instrument}); use a new id"
                )
            self.stats.idempotent_replies += 1
            async with self._lock(coid):  # the first submit's answer, not a half-sent state
                return existing.update()
        problem = self.risk.check(request, self.exposure(request.book, request.instrument))
        if problem:
            self._record_command(OrderRefused(ts_ns=self._clock(), request=request, reason=problem))
            self._count_rejection("risk", problem)
            return self._notify(self._orders[coid].update())
        async with self._lock(coid):
            # Synced by OrderSent just below: accepted-but-never-sent needs no disk of its own.
            self._record_command(OrderAccepted(ts_ns=self._clock(), request=request), sync=False)
            self.stats.accepted += 1
            order = self._orders[coid]
            self._notify(order.update())
            urgent = request.is_exit or self.risk.reduces_position(
                request, self.exposure(request.book, request.instrument, excluding=coid)
            )
            await self._pace(urgent)
            try:
                self._record_command(OrderSent(ts_ns=self._clock(), client_order_id=coid))
            except ExecutionError:
                # Not sent and now never will be: a restart would reject it the same way.
                order.reject("not sent: the journal failed", self._clock())
                self._unlist(order)
                raise
            try:
                # A venue that paces itself (the Angel client) reads the priority from is_exit.
                outgoing = msgspec.structs.replace(order.request, is_exit=True) if urgent else order.request
                ack: VenueAck | None = await self.venue.submit(outgoing)
            except Exception as err:
                ack = await self._recover_submit(order, err)
            if ack is not None:
                self._apply_submit_ack(order, ack)
            return order.update()

    def vet(self, request: OrderRequest, *, deferred: bool = False) -> None:
        """Raise `RiskRefusal` if `submit` would refuse `request` now; nothing is journaled or sent.

        For what is made elsewhere and placed later (GTT rules, brackets): the kill switches and
        limits apply to it when it is made. `deferred` as in `PreTradeRisk.check`.
        """
        problem = self.risk.check(request, self.exposure(request.book, request.instrument), deferred=deferred)
        if problem:
            raise RiskRefusal(problem)

    async def cancel(self, client_order_id: str) -> OrderUpdate | None:
        """Cancel an order; None if no such order.

        Returns the order's state; a refused cancel comes back with status REJECTED and the
        reason, leaving the order itself as it was.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            return None
        if order.is_terminal:
            return _refusal(order, f"order {client_order_id} is already {order.status}; nothing to cancel")
        self._record_command(CancelRequested(ts_ns=self._clock(), client_order_id=client_order_id))
        self.stats.cancels += 1
        async with self._lock(client_order_id):  # after the submit's answer
            if order.is_terminal:
                return order.update()
            if order.venue_order_id is None:
                return _refusal(order, f"order {client_order_id} has no answer from the venue yet; try again")
            await self._pace(urgent=True)
            try:
                ack = await self.venue.cancel(order.request, order.venue_order_id)
            except Exception as err:
                self.stats.venue_errors += 1
                return _refusal(order, f"the venue did not answer the cancel: {err}")
            if not ack.accepted:
                return _refusal(order, ack.reason or "the venue refused the cancel")
            if ack.status is OrderStatus.CANCELLED and not order.is_terminal:
                self._record_fact(
                    OrderCancelled(
                        ts_ns=self._clock(), client_order_id=client_order_id, reason="cancelled on request"
                    )
                )
            return order.update()

    async def modify(
        self,
        client_order_id: str,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
    ) -> OrderUpdate | None:
        """Change a working order's quantity or prices; None if no such order.

        A refused modification comes back with status REJECTED and the reason; the order keeps
        its terms.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            return None
        if quantity is None and price is None and trigger_price is None:
            return _refusal(order, "nothing to modify: give a quantity, price or trigger price")
        problem = self._modify_problem(order, quantity, price, trigger_price)
        if problem:
            return _refusal(order, problem)
        self._record_command(
            ModifyRequested(
                ts_ns=self._clock(),
                client_order_id=client_order_id,
                quantity=quantity,
                price=price,
                trigger_price=trigger_price,
            )
        )
        self.stats.modifies += 1
        async with self._lock(client_order_id):
            problem = self._modify_problem(order, quantity, price, trigger_price)
            if problem:
                return _refusal(order, problem)
            if order.venue_order_id is None:
                return _refusal(order, f"order {client_order_id} has no answer from the venue yet; try again")
            terms = {
                k: v
                for k, v in (("quantity", quantity), ("price", price), ("trigger_price", trigger_price))
                if v is not None
            }
            await self._pace(order.request.is_exit)
            try:
                ack = await self.venue.modify(
                    msgspec.structs.replace(order.request, **terms), order.venue_order_id
                )
            except Exception as err:
                self.stats.venue_errors += 1
                return _refusal(order, f"the venue did not answer the modification: {err}")
            if not ack.accepted:
                return _refusal(order, ack.reason or "the venue refused the modification")
            if not order.is_terminal and order.check_modify(quantity, price, trigger_price) is None:
                self._record_fact(
                    OrderModified(
                        ts_ns=self._clock(),
                        client_order_id=client_order_id,
                        quantity=quantity,
                        price=price,
                        trigger_price=trigger_price,
                    )
                )
                self._notify(order.update())
            return order.update()

    async def set_kill_switch(self, book: str | None, engaged: bool, reason: str = "") -> KillSwitch:
        """Engage or release a book's (or, with None, the global) kill switch.

        Engaging it also cancels the scope's working orders that do not reduce a position.
        """
        scope = "all books" if book is None else f"book {book}"
        reason = reason or ("engaged by an operator" if engaged else "released by an operator")
        self._record_command(KillSwitchSet(ts_ns=self._clock(), book=book, engaged=engaged, reason=reason))
        log.warning("kill switch for %s %s: %s", scope, "engaged" if engaged else "released", reason)
        self._notify_kill_switches()
        if engaged:
            await self._cancel_entries(book)
        return self.risk.kill_switch(book)

    def set_holdings(self, book: str, instrument: str, quantity: int) -> None:
        """Record the DELIVERY holdings a book starts the day with."""
        if quantity < 0:
            raise ExecutionError(f"holdings cannot be negative: {instrument} {quantity}")
        self._record_command(
            HoldingsSet(ts_ns=self._clock(), book=book, instrument=instrument, quantity=quantity)
        )

    def subscribe(self, actor_name: str, book: str | None = None) -> bool:
        """Send `book`'s order updates (every book's with None) to `actor_name`; False if already."""
        if actor_name in self.subscribers.get(book, ()):
            return False
        self._record_command(ListenerRegistered(ts_ns=self._clock(), book=book, actor_name=actor_name))
        return True

    def subscribers_of(self, book: str) -> set[str]:
        return self.subscribers.get(book, set()) | self.subscribers.get(None, set())

    def update_marks(self, marks: Mapping[str, int]) -> None:
        """Last prices (minor units) for the price band, market order values and P&L."""
        for instrument, price in marks.items():
            self.risk.mark(instrument, int(price))
        self._check_loss_limits()

    # -- venue reports -----------------------------------------------------------------------

    def on_venue_event(self, event: VenueEvent) -> None:
        """A fill or status change from the venue: checked, journaled, applied, reported."""
        order = self._orders.get(event.client_order_id)
        if order is None:
            self.stats.unknown_events += 1
            log.warning("venue report for unknown order %s: %r", event.client_order_id, event)
            return
        if isinstance(event, Fill):
            self._on_fill(order, event)
        else:
            self._on_status(order, event)

    def on_venue_own_fill(self, fill: Fill) -> bool:
        """A fill of an order the venue placed itself (GTT leg, bracket leg, square-off, expiry):
        journaled and booked into the book's risk position, P&L and charges, once per trade id.

        Such orders never pass through here, but what they fill moves the position that the
        limits, the loss switches and "only orders that reduce a position" are judged on.
        Returns False for a trade already booked (or a client order id of ours: those come as
        `on_venue_event`).
        """
        if self._known_venue_own_fill(fill):
            self.stats.duplicate_fills += 1
            return False
        self._book_venue_own_fill(fill)
        return True

    def catch_up_venue_own_fills(self, fills: Iterable[Fill]) -> list[Fill]:
        """Book the venue's own fills this engine has not seen (from the venue's list of all of
        them, at start); returns those that were new. Known ones are not counted as duplicates."""
        missed: list[Fill] = []
        for fill in fills:
            if not self._known_venue_own_fill(fill):  # asked per fill: a list may repeat one
                self._book_venue_own_fill(fill)
                missed.append(fill)
        return missed

    def _known_venue_own_fill(self, fill: Fill) -> bool:
        return fill.trade_id in self._venue_own_trades or fill.client_order_id in self._orders

    def _book_venue_own_fill(self, fill: Fill) -> None:
        self._record_fact(VenueOwnFill(ts_ns=self._clock(), fill=fill))
        self._check_loss_limits()

    def _on_fill(self, order: OrderStateMachine, fill: Fill) -> None:
        if fill.trade_id in order.trade_ids:
            self.stats.duplicate_fills += 1
            return
        problem = order.fill_problem(fill)
        if problem:
            self.stats.illegal_events += 1
            log.error("refused a fill from the venue: %s", problem)
            return
        self._record_fact(OrderFilled(ts_ns=self._clock(), fill=fill))
        self.stats.fills += 1
        self._notify(order.update(fill=fill))
        self._check_loss_limits()

    def _on_status(self, order: OrderStateMachine, event: VenueOrderEvent) -> None:
        coid = order.client_order_id
        ts = event.ts_ns or self._clock()
        record: ExecutionRecord | None = None
        status = event.status
        if status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING) and order.status is OrderStatus.PENDING:
            record = OrderAcknowledged(
                ts_ns=ts, client_order_id=coid, venue_order_id=event.venue_order_id or "", status=status
            )
        elif status is OrderStatus.OPEN and order.status is OrderStatus.TRIGGER_PENDING:
            record = OrderTriggered(ts_ns=ts, client_order_id=coid)
        elif status is OrderStatus.CANCELLED and order.can_move(status):
            record = OrderCancelled(ts_ns=ts, client_order_id=coid, reason=event.reason)
        elif status is OrderStatus.REJECTED and order.can_move(status):
            record = OrderRejected(
                ts_ns=ts, client_order_id=coid, reason=event.reason or "rejected by the venue"
            )
            self._count_rejection("venue", record.reason)
        elif status is order.status or status in (
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.OPEN,
        ):
            return  # nothing new (fills come as fills)
        if record is None:
            self.stats.illegal_events += 1
            log.error("refused a venue report: order %s is %s, the venue says %s", coid, order.status, status)
            return
        self._record_fact(record)
        self._notify(order.update())

    # -- queries -----------------------------------------------------------------------------

    def order(self, client_order_id: str) -> OrderUpdate | None:
        order = self._orders.get(client_order_id)
        return None if order is None else order.update()

    def orders(self, book: str | None = None) -> list[OrderUpdate]:
        return [o.update() for o in self._orders.values() if book is None or o.request.book == book]

    def exposure(self, book: str, instrument: str, excluding: str | None = None) -> Exposure:
        """Remaining quantities of a book's working orders in one instrument."""
        buy = sell = delivery_sell = 0
        for coid in self._working.get((book, instrument), ()):
            if coid == excluding:
                continue
            order = self._orders[coid]
            if order.request.side is Side.BUY:
                buy += order.remaining
            else:
                sell += order.remaining
                if order.request.product is Product.DELIVERY:
                    delivery_sell += order.remaining
        return Exposure(buy, sell, delivery_sell)

    def risk_state(self) -> RiskState:
        return self.risk.state()

    def stats_dict(self) -> dict[str, Any]:
        journal = self.journal.stats()
        return {
            **asdict(self.stats),
            "orders": len(self._orders),
            "working": self._open_count(),
            "journal": msgspec.to_builtins(journal),
            "venue": self.venue.name,
        }

    # -- internals ---------------------------------------------------------------------------

    def _record_command(self, record: ExecutionRecord, sync: bool = True) -> None:
        """Journal, then apply; if the journal fails nothing is applied and the caller is told."""
        try:
            self.journal.append(record, sync=sync)
        except JournalWriteError as err:
            self.stats.journal_failures += 1
            raise ExecutionError(f"not done: the journal could not record it ({err})") from err
        self._apply(record)

    def _record_fact(self, record: ExecutionRecord) -> None:
        """Journal, then apply; a fact from the venue is applied even if the journal fails.

        Facts are not synced on their own: they survive a process crash, and what an OS crash
        could lose the venue tells again (`reconcile`); the next command's sync covers them.
        """
        try:
            self.journal.append(record, sync=False)
        except JournalWriteError as err:
            self.stats.journal_failures += 1
            log.error(
                "journal failed for %s; applied anyway, reconcile recovers it: %s", type(record).__name__, err
            )
        self._apply(record)

    def _apply(self, record: ExecutionRecord) -> None:
        """The only place state changes."""
        ts = record.ts_ns
        if isinstance(record, OrderAccepted | OrderRefused):
            order = OrderStateMachine(record.request, ts)
            self._orders[order.client_order_id] = order
            if isinstance(record, OrderRefused):
                order.reject(record.reason, ts)
            else:
                self._working[(order.request.book, order.request.instrument)].add(order.client_order_id)
            return
        if isinstance(record, KillSwitchSet):
            self.risk.set_kill_switch(record.book, record.engaged, record.reason, ts)
            return
        if isinstance(record, HoldingsSet):
            self.risk.set_holdings(record.book, record.instrument, record.quantity)
            return
        if isinstance(record, ListenerRegistered):
            self.subscribers[record.book].add(record.actor_name)
            return
        if isinstance(record, VenueOwnFill):
            self._venue_own_trades.add(record.fill.trade_id)
            self.risk.on_fill(record.fill)
            return
        if isinstance(record, OrderFilled):
            order = self._orders[record.fill.client_order_id]
            if order.apply_fill(record.fill):
                self.risk.on_fill(record.fill)
        elif isinstance(record, OrderEvent):
            order = self._orders[record.client_order_id]
            if isinstance(record, OrderSent):
                order.sent = True
            elif isinstance(record, OrderAcknowledged):
                order.acknowledge(record.venue_order_id, record.status, ts)
            elif isinstance(record, OrderTriggered):
                order.trigger(ts)
            elif isinstance(record, OrderRejected):
                order.reject(record.reason, ts)
            elif isinstance(record, OrderCancelled):
                order.cancel(record.reason, ts)
            elif isinstance(record, OrderModified):
                order.modify(record.quantity, record.price, record.trigger_price, ts)
            # CancelRequested and ModifyRequested are for the audit trail only.
        else:
            raise TypeError(f"not an execution record: {record!r}")
        if order.is_terminal:
            self._unlist(order)

    def _apply_submit_ack(self, order: OrderStateMachine, ack: VenueAck) -> None:
        coid = order.client_order_id
        if not ack.accepted:
            if order.can_move(OrderStatus.REJECTED):
                self._count_rejection("venue", ack.reason or "rejected by the venue")
                self._record_fact(
                    OrderRejected(
                        ts_ns=self._clock(),
                        client_order_id=coid,
                        reason=ack.reason or "rejected by the venue",
                    )
                )
                self._notify(order.update())
            return
        status = (
            ack.status if ack.status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING) else OrderStatus.OPEN
        )
        was = order.status
        self._record_fact(
            OrderAcknowledged(
                ts_ns=self._clock(),
                client_order_id=coid,
                venue_order_id=ack.venue_order_id or "",
                status=status,
            )
        )
        if order.status is not was:
            self._notify(order.update())

    async def _recover_submit(self, order: OrderStateMachine, err: Exception) -> VenueAck | None:
        """The venue call failed: did the order get there? Ask; None if that is unknown too."""
        self.stats.venue_errors += 1
        log.warning("submit %s: no answer from the venue: %r", order.client_order_id, err)
        try:
            state = await self.venue.find(order.request, order.venue_order_id)
        except Exception as again:
            log.error(
                "submit %s: outcome unknown; asking the venue until it answers: %r",
                order.client_order_id,
                again,
            )
            self._spawn(self._settle_when_the_venue_answers(order))
            return None
        if state is None:
            return VenueAck(accepted=False, reason=f"the venue did not take the order: {err}")
        self._adopt(order, state)
        return None

    async def _settle_when_the_venue_answers(self, order: OrderStateMachine) -> None:
        """A submit whose fate the venue could not tell (e.g. it was restarting): ask again, with
        back-off, until it can; otherwise the order would stay PENDING until the next restart."""
        pause = 0.5
        while order.status is OrderStatus.PENDING:
            await asyncio.sleep(pause)  # back-off while the venue comes back
            pause = min(pause * 2, 5.0)
            try:
                state = await self.venue.find(order.request, order.venue_order_id)
            except Exception:  # still unreachable (logged once above): ask again after the pause
                continue
            async with self._lock(order.client_order_id):
                if order.status is not OrderStatus.PENDING:
                    return
                if state is None:
                    self._record_fact(
                        OrderRejected(
                            ts_ns=self._clock(), client_order_id=order.client_order_id, reason=LOST_AT_VENUE
                        )
                    )
                    self._notify(order.update())
                else:
                    self._adopt(order, state)
            return

    def _adopt(self, order: OrderStateMachine, state: VenueOrderState) -> None:
        """Take the venue's view of an order: its id and status, and any fills we missed."""
        coid = order.client_order_id
        if order.status is OrderStatus.PENDING and state.status not in (OrderStatus.REJECTED,):
            status = state.status if state.status is OrderStatus.TRIGGER_PENDING else OrderStatus.OPEN
            self._record_fact(
                OrderAcknowledged(
                    ts_ns=self._clock(),
                    client_order_id=coid,
                    venue_order_id=state.venue_order_id,
                    status=status,
                )
            )
        for fill in state.fills:
            self.on_venue_event(fill)
        if state.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED) or (
            state.status is OrderStatus.OPEN and order.status is OrderStatus.TRIGGER_PENDING
        ):
            self.on_venue_event(
                VenueOrderEvent(
                    client_order_id=coid,
                    venue_order_id=state.venue_order_id,
                    status=state.status,
                    reason=state.reason,
                )
            )
        self._notify(order.update())

    def _modify_problem(
        self, order: OrderStateMachine, quantity: int | None, price: int | None, trigger_price: int | None
    ) -> str | None:
        problem = order.check_modify(quantity, price, trigger_price)
        if problem:
            return problem
        terms = {
            k: v
            for k, v in (("quantity", quantity), ("price", price), ("trigger_price", trigger_price))
            if v is not None
        }
        proposed = msgspec.structs.replace(order.request, **terms)
        exposure = self.exposure(proposed.book, proposed.instrument, excluding=order.client_order_id)
        return self.risk.check(proposed, exposure)

    def _count_rejection(self, source: str, reason: str) -> None:
        if source == "risk":
            self.stats.refused += 1
        else:
            self.stats.rejected_by_venue += 1
        kind = self._classify(reason)
        self.rejections[source][kind] = self.rejections[source].get(kind, 0) + 1

    def _check_loss_limits(self) -> None:
        for trip in self.risk.evaluate():
            self.stats.kill_switch_trips += 1
            scope = "all books" if trip.book is None else f"book {trip.book}"
            log.error("kill switch for %s engaged: %s", scope, trip.reason)
            self._record_fact(
                KillSwitchSet(ts_ns=self._clock(), book=trip.book, engaged=True, reason=trip.reason)
            )
            self._notify_kill_switches()
            self._spawn(self._cancel_entries(trip.book))

    async def _cancel_entries(self, book: str | None) -> None:
        for order in list(self._orders.values()):
            if order.is_terminal or (book is not None and order.request.book != book):
                continue
            exposure = self.exposure(
                order.request.book, order.request.instrument, excluding=order.client_order_id
            )
            if self.risk.reduces_position(order.request, exposure):
                continue
            try:
                await self.cancel(order.client_order_id)
            except ExecutionError as err:
                log.error("kill switch could not cancel %s: %s", order.client_order_id, err)

    async def _pace(self, urgent: bool) -> None:
        if self.limiter is not None:
            await self.limiter.acquire(EndpointGroup.ORDERS, Priority.URGENT if urgent else Priority.NORMAL)

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:
            coroutine.close()  # no loop (replay or plain use): nothing to cancel against
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, client_order_id: str) -> asyncio.Lock:
        lock = self._locks.get(client_order_id)
        if lock is None:
            lock = self._locks[client_order_id] = asyncio.Lock()
        return lock

    def _unlist(self, order: OrderStateMachine) -> None:
        key = (order.request.book, order.request.instrument)
        working = self._working.get(key)
        if working is not None:
            working.discard(order.client_order_id)
            if not working:
                del self._working[key]
        self._locks.pop(order.client_order_id, None) if not self._lock_in_use(order.client_order_id) else None

    def _lock_in_use(self, client_order_id: str) -> bool:
        lock = self._locks.get(client_order_id)
        return lock is not None and lock.locked()

    def _open_count(self) -> int:
        return sum(len(ids) for ids in self._working.values())

    def _notify_kill_switches(self) -> None:
        engaged = self.risk.engaged_kill_switches()
        for listener in self._kill_switch_listeners:
            try:
                listener(engaged)
            except Exception:  # the switch is journaled and in force; a listener's failure must not undo that
                log.exception("kill switch listener failed")

    def _notify(self, update: OrderUpdate) -> OrderUpdate:
        for listener in self._listeners:
            try:
                listener(update)
            except Exception:
                log.exception("order update listener failed")
        return update


def _refusal(order: OrderStateMachine, reason: str) -> OrderUpdate:
    """The answer to a refused cancel or modification: REJECTED with the reason; the order is unchanged."""
    return msgspec.structs.replace(order.update(), status=OrderStatus.REJECTED, reason=reason)
