"""The paper portfolio: a simulated broker account with exact accounting, GTT rules and brackets.

`PaperPortfolio` is the paper venue behind the execution actor and the manual-trading service.
Orders are matched by the simulator's `MatchingEngine` against the latest quote of each
instrument; everything else (margin, charges, positions, GTT triggers, bracket legs, the intraday
square-off and derivative expiry) is decided here.

Every state change is a record (`actors.portfolio.records`) that is journaled before it is applied,
and applying records is the only way state changes, so `restore` rebuilds the exact state from a
journal. The matching engine's resting orders are rebuilt from the restored open orders.

The execution actor's kill switches reach the orders placed here (GTT legs, bracket entries), which
never pass through it, as entry halts (`set_entry_halts`): while one is engaged such an order is not
placed if it would open or add to a position; exits still go.

The class reads no clock: every call carries ``ts_ns``, and quotes carry their own.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec

from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Product, Side, Validity
from actors.portfolio.brackets import Bracket, BracketError, BracketSpec, BracketStatus, check_levels
from actors.portfolio.charges import NO_CHARGES, ChargeModel, Charges
from actors.portfolio.gtt import (
    MAX_VALIDITY_NS,
    GttError,
    GttRule,
    GttState,
    GttStatus,
    build_legs,
    check_expiry,
    check_quantity,
    fired_leg,
)
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.margin import MarginPolicy
from actors.portfolio.money import format_rupees, rupees_to_paise
from actors.portfolio.positions import Position
from actors.portfolio.records import (
    AnyRecord,
    BracketClosed,
    BracketModified,
    BracketPlaced,
    BracketStopMoved,
    EntryHaltSet,
    FillBooked,
    GttClosed,
    GttCreated,
    GttModified,
    GttTriggered,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderRole,
    OrderTriggered,
    OrderWorking,
    PositionSettled,
    SessionStarted,
    SquareOffStarted,
    decode_record,
)
from actors.portfolio.state import PaperOrder, PortfolioState
from actors.portfolio.views import (
    BookSummary,
    BracketView,
    GttView,
    PortfolioSummary,
    PositionView,
    TradeView,
    charge_breakdown,
)
from actors.sim.matching import InstrumentRules, MatchEvent, MatchingEngine
from actors.sim.matching import OrderAccepted as EngineAccepted
from actors.sim.matching import OrderCancelled as EngineCancelled
from actors.sim.matching import OrderFilled as EngineFilled
from actors.sim.matching import OrderModified as EngineModified
from actors.sim.matching import OrderRejected as EngineRejected
from actors.sim.matching import OrderTriggered as EngineTriggered
from cluster.config import PortfolioConfig
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

IST = timezone(timedelta(hours=5, minutes=30), "IST")
MARKET_CLOSE = time(15, 30)
# Depth to assume when a quote shows none and partial fills are on: an LTP-only feed says nothing
# about size, so the whole order fills.
_UNKNOWN_DEPTH = 10**12
# Each follow-up settles a bracket in a few steps; this many means a loop, which must fail loudly.
_MAX_FOLLOW_UPS = 10_000
# Orders placed here that can open a position: the execution actor's kill switch never sees them.
_HALTED_ROLES = frozenset({OrderRole.GTT, OrderRole.ENTRY})

InstrumentLookup = Callable[[str], InstrumentSpec | None]
JournalAppend = Callable[[AnyRecord], object]
P = ParamSpec("P")
R = TypeVar("R")


def _group_commit(
    method: Callable[Concatenate[PaperPortfolio, P], R],
) -> Callable[Concatenate[PaperPortfolio, P], R]:
    """Make what a call journaled durable before it returns: one sync per call, not per record.

    Records are written as they are made (so a crashed process loses nothing it applied); what the
    caller is told, and the events it drains, come after the sync.
    """

    @functools.wraps(method)
    def durable(self: PaperPortfolio, *args: P.args, **kwargs: P.kwargs) -> R:
        self._depth += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._depth -= 1
            if self._depth == 0 and self._unsynced and self._journal_sync is not None:
                self._unsynced = False
                self._journal_sync()

    return durable


class PortfolioError(ShardlineError, ValueError):
    """A request the portfolio refuses; the message says what and why (an HTTP 422 at the edge)."""


class UnknownId(PortfolioError, LookupError):
    """No order, GTT rule or bracket with that id (an HTTP 404 at the edge)."""


class MarketQuote(msgspec.Struct, frozen=True, kw_only=True):
    """The latest market for one instrument, in paise; bid/ask of 0 mean an LTP-only feed."""

    instrument: str
    ltp: int
    ts_ns: int
    bid: int = 0
    ask: int = 0
    bid_qty: int = 0
    ask_qty: int = 0
    upper_circuit: int = 0
    lower_circuit: int = 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ist(ts_ns: int) -> datetime:
    """India time of a nanosecond timestamp (IST has no daylight saving)."""
    return (_EPOCH + timedelta(microseconds=ts_ns // 1000)).astimezone(IST)


def _percent(rate: Fraction) -> str:
    return f"{(Decimal(rate.numerator) * 100 / Decimal(rate.denominator)).normalize():f}%"


def parse_clock_time(text: str) -> time:
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(f"square_off_time_ist must be HH:MM (24-hour, IST), got {text!r}") from None


class PaperPortfolio:
    """A paper broker account: positions per book and product, cash and margin, orders, GTT, brackets.

    Parameters
    ----------
    config
        Starting cash, margin fractions, slippage, the square-off time and the broker plan.
    instruments
        ``key -> InstrumentSpec | None`` (or a mapping); an unknown key is refused with its name.
    journal
        Called with each record before it takes effect; it must raise if the record cannot be written.
    journal_sync
        Makes what `journal` wrote durable; called once at the end of each call that journaled
        (group commit). Without it, `journal` must make each record durable itself.
    allow_short_delivery
        Allow selling equity for DELIVERY beyond what the book holds (exchanges do not).
    partial_fills
        Fill no more than the quantity shown at the touch, when the quote shows it.
    max_order_qty, max_order_value
        Limits (units; paise) for the GTT rules and brackets made here: their orders do not pass the
        execution actor's pre-trade checks, so the order-size limits are applied when they are made.
    """

    def __init__(
        self,
        config: PortfolioConfig,
        instruments: InstrumentLookup | Mapping[str, InstrumentSpec],
        *,
        journal: JournalAppend | None = None,
        journal_sync: Callable[[], object] | None = None,
        allow_short_delivery: bool = False,
        partial_fills: bool = False,
        max_order_qty: int | None = None,
        max_order_value: int | None = None,
    ) -> None:
        self.config = config
        self._lookup: InstrumentLookup = instruments.get if isinstance(instruments, Mapping) else instruments
        self._journal = journal
        self._journal_sync = journal_sync
        self._unsynced = False
        self._depth = 0  # nesting of public calls: only the outermost syncs
        self._charge_model = ChargeModel.for_plan(config.broker_plan)
        self._margin = MarginPolicy.from_fractions(
            config.intraday_margin_fraction, config.fno_margin_fraction
        )
        self._square_off_at = parse_clock_time(config.square_off_time_ist)
        self._allow_short_delivery = allow_short_delivery
        self._max_order_qty = max_order_qty
        self._max_order_value = max_order_value
        self._partial_fills = partial_fills
        self.starting_cash = rupees_to_paise(config.starting_cash_rupees)
        self._state = PortfolioState()
        # Market state is not journaled: it comes back with the next quotes.
        self._quotes: dict[str, MarketQuote] = {}
        self._engine = MatchingEngine(self._rules, partial_fills=partial_fills)
        self._events: list[OrderUpdate] = []
        # Brackets whose orders changed, to be looked at once the current step's records are applied.
        self._pending_brackets: list[str] = []
        self._scanned_second = -1
        log.info(
            "paper portfolio: cash %s, plan %s, intraday margin %s, F&O margin %s, slippage %d ticks, "
            "square-off %s IST",
            format_rupees(self.starting_cash),
            config.broker_plan,
            config.intraday_margin_fraction,
            config.fno_margin_fraction,
            config.slippage_ticks,
            config.square_off_time_ist,
        )

    # =============================================================================== the venue

    @_group_commit
    def submit(self, request: OrderRequest, ts_ns: int) -> OrderUpdate:
        """Accept or refuse an order, match it against the current quote, and report its state.

        Resending an order id with the same request returns the order's current state (the call is
        idempotent); reusing an id for a different request is refused.
        """
        self.advance_clock(ts_ns)
        known = self._state.orders.get(request.client_order_id)
        if known is not None:
            if not self._same_order(known, request):
                raise PortfolioError(
                    f"order id {request.client_order_id!r} is already used by a different order"
                )
            return known.update(ts_ns)
        order = self._place(request, ts_ns, OrderRole.CLIENT, "")
        self._run_pending(ts_ns)
        return order.update(ts_ns)

    @_group_commit
    def modify(
        self,
        client_order_id: str,
        ts_ns: int,
        *,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
        order_type: OrderType | None = None,
    ) -> OrderUpdate:
        """Change a working order's quantity, prices or type; refused with the reason if it cannot."""
        self.advance_clock(ts_ns)
        order = self._order(client_order_id)
        self._modify(
            order, ts_ns, quantity=quantity, price=price, trigger_price=trigger_price, order_type=order_type
        )
        self._run_pending(ts_ns)
        return order.update(ts_ns)

    @_group_commit
    def cancel(self, client_order_id: str, ts_ns: int, reason: str = "cancelled by the user") -> OrderUpdate:
        self.advance_clock(ts_ns)
        order = self._order(client_order_id)
        if not order.is_active:
            raise PortfolioError(
                f"cannot cancel {client_order_id}: it is already {order.status.value.lower()}"
            )
        self._cancel_order(order, ts_ns, reason)
        self._run_pending(ts_ns)
        return order.update(ts_ns)

    @_group_commit
    def apply_fill(self, fill: Fill) -> TradeView | None:
        """Book a fill made elsewhere (a broker in live trading, another venue) into the accounts.

        Charges come from this portfolio's model; a trade id already booked is ignored (None), so
        a fill delivered twice counts once.
        """
        if fill.trade_id in self._state.trade_ids:
            return None
        spec = self._spec(fill.instrument)
        if fill.quantity <= 0 or fill.price <= 0:
            raise PortfolioError(f"fill {fill.trade_id}: quantity and price must be positive")
        problem = spec.product_error(fill.product)
        if problem:
            raise PortfolioError(f"fill {fill.trade_id}: {problem}")
        self.advance_clock(fill.ts_ns)
        before = sum(
            t.quantity * t.price for t in self._state.trades if t.client_order_id == fill.client_order_id
        )
        charges = self._charge_model.for_fill(
            spec, fill.product, fill.side, fill.quantity, fill.price, before
        )
        self._commit(FillBooked(ts_ns=fill.ts_ns, fill=fill, charges=charges))
        return TradeView.of(self._state.trades[-1])

    @_group_commit
    def on_quote(self, quote: MarketQuote) -> None:
        """A new market for one instrument: match resting orders, trail and fire stops, fire GTTs."""
        spec = self._lookup(quote.instrument)
        if spec is None or quote.ltp <= 0:
            return
        ts_ns = quote.ts_ns
        self.advance_clock(ts_ns)
        self._quotes[quote.instrument] = quote
        bid, ask = self._touch(spec, quote)
        bid_qty, ask_qty = quote.bid_qty, quote.ask_qty
        if self._partial_fills and not (quote.bid and quote.ask and bid_qty and ask_qty):
            bid_qty = ask_qty = _UNKNOWN_DEPTH
        events = self._engine.on_quote(quote.instrument, bid, ask, quote.ltp, ts_ns, bid_qty, ask_qty)
        self._record_engine_events(events, ts_ns)
        self._run_pending(ts_ns)
        self._check_brackets(quote.instrument, quote.ltp, ts_ns)
        self._check_gtts(quote.instrument, quote.ltp, ts_ns)

    @_group_commit
    def advance_clock(self, ts_ns: int) -> None:
        """Time passes: start a new session, square off intraday, settle expiries, expire GTTs."""
        now = ist(ts_ns)
        today = now.date()
        if self._state.session is None or today > self._state.session:
            if self._state.session is not None:
                self._end_session(ts_ns)
            self._commit(SessionStarted(ts_ns=ts_ns, session=today))
        if now.time() >= self._square_off_at and self._state.squared_off != today:
            self._commit(SquareOffStarted(ts_ns=ts_ns, session=today))
            self._square_off_intraday(ts_ns)
        second = ts_ns // 10**9
        if second == self._scanned_second:  # expiries are checked once a second, not on every quote
            return
        self._scanned_second = second
        self._settle_expiries(today, now.time(), ts_ns)
        for gtt_id in [g for ids in self._state.active_gtts.values() for g in ids]:
            state = self._state.gtts[gtt_id]
            if ts_ns >= state.rule.expires_ts_ns:
                self._commit(
                    GttClosed(
                        ts_ns=ts_ns, gtt_id=state.rule.gtt_id, status=GttStatus.EXPIRED, reason="expired"
                    )
                )

    def drain_events(self) -> list[OrderUpdate]:
        """Order updates (with fills) since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    @_group_commit
    def set_entry_halts(self, halts: Mapping[str | None, str], ts_ns: int) -> None:
        """Take the execution actor's engaged kill switches: their reasons by book (None: every book).

        A halt not named is lifted. While a book is halted, a GTT leg or bracket entry that would open
        or add to a position is rejected with the halt's reason, and one already working is
        cancelled; orders that only reduce a position (exits, square-off, settlement) still go.
        """
        self.advance_clock(ts_ns)
        for book in [b for b in self._state.entry_halts if b not in halts]:
            self._commit(EntryHaltSet(ts_ns=ts_ns, book=book, engaged=False, reason=""))
        for book, reason in halts.items():
            if self._state.entry_halts.get(book) != reason:
                self._commit(EntryHaltSet(ts_ns=ts_ns, book=book, engaged=True, reason=reason))
        for order in list(self._state.orders.values()):
            if order.is_active and order.role in _HALTED_ROLES:
                halted = self._halt_reason(order.request, order)
                if halted is not None:
                    self._cancel_order(order, ts_ns, halted)
        self._run_pending(ts_ns)

    def entry_halts(self) -> dict[str | None, str]:
        """The engaged kill switches this venue holds its own entries to, by book (None: every book)."""
        return dict(self._state.entry_halts)

    # ====================================================================== manual-trading API

    @_group_commit
    def square_off(self, book: str, ts_ns: int, instrument: str | None = None) -> list[OrderUpdate]:
        """Close a book's positions (one instrument, or all) at market.

        Its working orders, brackets and GTT rules on those instruments are cancelled first, so
        nothing reopens what the exits close.
        """
        self.advance_clock(ts_ns)
        exits = self._square_off(book, instrument, ts_ns, "squared off")
        self._run_pending(ts_ns)
        return [order.update(ts_ns) for order in exits]

    @_group_commit
    def flatten(self, book: str | None, ts_ns: int) -> list[OrderUpdate]:
        """The kill switch: square off every instrument of one book, or of every book."""
        self.advance_clock(ts_ns)
        books = [book] if book is not None else self._state.books()
        exits: list[PaperOrder] = []
        for name in books:
            exits += self._square_off(name, None, ts_ns, "flattened")
        self._run_pending(ts_ns)
        return [order.update(ts_ns) for order in exits]

    @_group_commit
    def gtt_create(
        self,
        *,
        book: str,
        instrument: str,
        side: Side,
        quantity: int,
        product: Product,
        legs: list[tuple[int, int]],
        ts_ns: int,
        expires_ts_ns: int | None = None,
    ) -> GttView:
        """A single rule (one (trigger, price) leg) or an OCO (two legs) on a holding.

        An OCO must close an existing position of the book: a SELL OCO needs a long position of at
        least `quantity`, a BUY OCO a short one.
        """
        self.advance_clock(ts_ns)
        spec = self._spec(instrument)
        ltp = self._last_price(spec)
        expires = expires_ts_ns if expires_ts_ns is not None else ts_ns + MAX_VALIDITY_NS
        try:
            self._check_product(spec, product)
            check_quantity(spec, quantity)
            check_expiry(ts_ns, expires)
            built = build_legs(spec, side, ltp, legs)
            for leg in built:
                self._check_order_size(quantity, leg.price)
            if len(built) == 2:
                self._check_holding(book, spec, side, quantity, product)
        except (GttError, PortfolioError) as err:
            raise PortfolioError(f"GTT refused: {err}") from None
        gtt_id = f"GTT-{self._state.counters.gtts + 1}"
        rule = GttRule(
            gtt_id=gtt_id,
            book=book,
            instrument=instrument,
            side=side,
            quantity=quantity,
            product=product,
            legs=built,
            reference_price=ltp,
            created_ts_ns=ts_ns,
            expires_ts_ns=expires,
        )
        self._commit(GttCreated(ts_ns=ts_ns, rule=rule))
        return GttView.of(self._state.gtts[gtt_id])

    @_group_commit
    def gtt_modify(
        self,
        gtt_id: str,
        ts_ns: int,
        *,
        quantity: int | None = None,
        legs: list[tuple[int, int]] | None = None,
        expires_ts_ns: int | None = None,
    ) -> GttView:
        """Change an active rule's quantity, legs or expiry; the legs are checked against the last price."""
        self.advance_clock(ts_ns)
        state = self._gtt(gtt_id)
        if not state.is_active:
            raise PortfolioError(f"cannot modify {gtt_id}: it is {state.status.value.lower()}")
        rule = state.rule
        spec = self._spec(rule.instrument)
        ltp = self._last_price(spec)
        new_quantity = quantity if quantity is not None else rule.quantity
        new_legs = legs if legs is not None else [(leg.trigger_price, leg.price) for leg in rule.legs]
        expires = expires_ts_ns if expires_ts_ns is not None else rule.expires_ts_ns
        try:
            check_quantity(spec, new_quantity)
            check_expiry(rule.created_ts_ns, expires)
            built = build_legs(spec, rule.side, ltp, new_legs)
            for leg in built:
                self._check_order_size(new_quantity, leg.price)
            if len(built) == 2:
                self._check_holding(rule.book, spec, rule.side, new_quantity, rule.product)
        except (GttError, PortfolioError) as err:
            raise PortfolioError(f"GTT modify refused: {err}") from None
        changed = msgspec.structs.replace(
            rule, quantity=new_quantity, legs=built, reference_price=ltp, expires_ts_ns=expires
        )
        self._commit(GttModified(ts_ns=ts_ns, rule=changed))
        return GttView.of(state)

    @_group_commit
    def gtt_cancel(self, gtt_id: str, ts_ns: int) -> GttView:
        self.advance_clock(ts_ns)
        state = self._gtt(gtt_id)
        if not state.is_active:
            raise PortfolioError(f"cannot cancel {gtt_id}: it is {state.status.value.lower()}")
        self._commit(
            GttClosed(ts_ns=ts_ns, gtt_id=gtt_id, status=GttStatus.CANCELLED, reason="cancelled by the user")
        )
        return GttView.of(state)

    def gtt_list(self, book: str | None = None, *, active_only: bool = False) -> list[GttView]:
        return [
            GttView.of(state)
            for state in self._state.gtts.values()
            if (book is None or state.rule.book == book) and (state.is_active or not active_only)
        ]

    @_group_commit
    def bracket_place(
        self,
        *,
        book: str,
        instrument: str,
        side: Side,
        quantity: int,
        product: Product,
        stop_loss: int,
        target: int,
        ts_ns: int,
        entry_type: OrderType = OrderType.LIMIT,
        entry_price: int = 0,
        trailing_stop: int = 0,
    ) -> BracketView:
        """An entry (MARKET or LIMIT) with a stop-loss and a target that protect whatever fills."""
        self.advance_clock(ts_ns)
        spec = self._spec(instrument)
        if entry_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise PortfolioError(f"a bracket's entry is MARKET or LIMIT, not {entry_type.value}")
        if entry_type is OrderType.LIMIT and entry_price <= 0:
            raise PortfolioError("a LIMIT entry needs a price above zero")
        if entry_type is OrderType.MARKET and entry_price:
            raise PortfolioError("a MARKET entry takes no price")
        reference = entry_price if entry_type is OrderType.LIMIT else self._last_price(spec)
        try:
            self._check_product(spec, product)
            check_quantity(spec, quantity)
            self._check_order_size(quantity, reference)
            check_levels(spec, side, reference, stop_loss, target, trailing_stop)
        except (BracketError, GttError, PortfolioError) as err:
            raise PortfolioError(f"bracket refused: {err}") from None
        bracket_id = f"BRK-{self._state.counters.brackets + 1}"
        spec_record = BracketSpec(
            bracket_id=bracket_id,
            book=book,
            instrument=instrument,
            side=side,
            quantity=quantity,
            product=product,
            entry_type=entry_type,
            entry_price=entry_price,
            stop_loss=stop_loss,
            target=target,
            trailing_stop=trailing_stop,
            created_ts_ns=ts_ns,
        )
        self._commit(BracketPlaced(ts_ns=ts_ns, spec=spec_record))
        entry = OrderRequest(
            client_order_id=self._next_order_id(OrderRole.ENTRY, bracket_id),
            book=book,
            instrument=instrument,
            side=side,
            quantity=quantity,
            order_type=entry_type,
            product=product,
            price=entry_price,
            tag=bracket_id,
        )
        self._place(entry, ts_ns, OrderRole.ENTRY, bracket_id)
        self._run_pending(ts_ns)
        quote = self._quotes.get(instrument)
        if quote is not None:  # the entry may have filled straight into a stop already
            self._check_brackets(instrument, quote.ltp, ts_ns)
        return BracketView.of(self._state.brackets[bracket_id])

    @_group_commit
    def bracket_modify(
        self,
        bracket_id: str,
        ts_ns: int,
        *,
        stop_loss: int | None = None,
        target: int | None = None,
        trailing_stop: int | None = None,
    ) -> BracketView:
        """Move the stop-loss, the target or the trail of a live bracket."""
        self.advance_clock(ts_ns)
        bracket = self._bracket(bracket_id)
        if not bracket.is_live or bracket.stop_fired:
            raise PortfolioError(f"cannot modify {bracket_id}: it is {self._bracket_state_words(bracket)}")
        spec = self._spec(bracket.spec.instrument)
        new_stop = stop_loss if stop_loss is not None else bracket.stop_loss
        new_target = target if target is not None else bracket.target
        new_trail = trailing_stop if trailing_stop is not None else bracket.trailing_stop
        reference = (
            self._last_price(spec)
            if bracket.status is BracketStatus.ACTIVE or bracket.spec.entry_type is OrderType.MARKET
            else bracket.spec.entry_price
        )
        try:
            check_levels(spec, bracket.spec.side, reference, new_stop, new_target, new_trail)
        except BracketError as err:
            raise PortfolioError(f"bracket modify refused: {err}") from None
        target_order = self._state.orders.get(bracket.target_order_id or "")
        if new_target != bracket.target and target_order is not None and target_order.is_active:
            self._modify(target_order, ts_ns, price=new_target)
        self._commit(
            BracketModified(
                ts_ns=ts_ns,
                bracket_id=bracket_id,
                stop_loss=new_stop,
                target=new_target,
                trailing_stop=new_trail,
            )
        )
        self._run_pending(ts_ns)
        return BracketView.of(bracket)

    @_group_commit
    def bracket_cancel(self, bracket_id: str, ts_ns: int) -> BracketView:
        """Cancel the unfilled entry. Before any fill that cancels the bracket; after one, the exits
        stay to protect what filled (square off to exit it)."""
        self.advance_clock(ts_ns)
        bracket = self._bracket(bracket_id)
        if not bracket.is_live:
            raise PortfolioError(f"cannot cancel {bracket_id}: it is {self._bracket_state_words(bracket)}")
        entry = self._state.orders.get(bracket.entry_order_id)
        if entry is not None and entry.is_active:
            self._cancel_order(entry, ts_ns, f"bracket {bracket_id} cancelled by the user")
        elif bracket.status is BracketStatus.ACTIVE:
            raise PortfolioError(
                f"cannot cancel {bracket_id}: its entry has filled; square off the position to exit it"
            )
        self._run_pending(ts_ns)
        return BracketView.of(bracket)

    @_group_commit
    def bracket_square_off(self, bracket_id: str, ts_ns: int) -> BracketView:
        """Exit a bracket at market: the remaining leg and any unfilled entry are cancelled first."""
        self.advance_clock(ts_ns)
        bracket = self._bracket(bracket_id)
        if not bracket.is_live:
            raise PortfolioError(
                f"cannot square off {bracket_id}: it is {self._bracket_state_words(bracket)}"
            )
        self._close_bracket(bracket, ts_ns, "squared off", exit_at_market=True)
        self._run_pending(ts_ns)
        return BracketView.of(bracket)

    def bracket_list(self, book: str | None = None, *, live_only: bool = False) -> list[BracketView]:
        return [
            BracketView.of(b)
            for b in self._state.brackets.values()
            if (book is None or b.spec.book == book) and (b.is_live or not live_only)
        ]

    # ==================================================================================== views

    def positions(self, book: str | None = None, *, open_only: bool = False) -> list[PositionView]:
        return [
            PositionView.of(p, self._symbol(p.instrument), self._mark(p.instrument), self._position_margin(p))
            for p in self._state.positions.select(book, open_only=open_only)
        ]

    def trades(self, book: str | None = None) -> list[TradeView]:
        return [TradeView.of(t) for t in self._state.trades if book is None or t.book == book]

    def orders(self, book: str | None = None, *, active_only: bool = False) -> list[OrderUpdate]:
        return [
            order.update()
            for order in self._state.orders.values()
            if (book is None or order.request.book == book) and (order.is_active or not active_only)
        ]

    def order(self, client_order_id: str) -> OrderUpdate:
        return self._order(client_order_id).update()

    def own_fills(self) -> list[Fill]:
        """Fills of the orders this venue placed itself (GTT and bracket legs, exits) and its
        settlements, in booking order: what the execution actor's risk counts but never sent.
        Fills booked from elsewhere (`apply_fill`) are not among them."""
        return [
            trade.as_fill()
            for trade in self._state.trades
            if trade.reason != "booked" and self.order_role(trade.client_order_id) is not OrderRole.CLIENT
        ]

    def order_role(self, client_order_id: str) -> OrderRole | None:
        """Who placed an order: the execution actor (CLIENT), a GTT rule, a bracket, or an exit."""
        order = self._state.orders.get(client_order_id)
        return order.role if order is not None else None

    def quote(self, instrument: str) -> MarketQuote | None:
        """The latest quote the venue has for an instrument (what its fills are made against)."""
        return self._quotes.get(instrument)

    def order_request(self, client_order_id: str) -> OrderRequest | None:
        """The order as currently working (after any modifications), or None if unknown."""
        order = self._state.orders.get(client_order_id)
        return order.request if order is not None else None

    def watched_instruments(self) -> set[str]:
        """Instruments whose quotes can change something: working orders, positions, rules, brackets."""
        keys = {o.request.instrument for o in self._state.orders.values() if o.is_active}
        for position in self._state.positions:
            if position.quantity:
                keys.add(position.instrument)
                spec = self._lookup(position.instrument)
                if spec is not None and spec.underlying:  # an option settles against it at expiry
                    keys.add(spec.underlying)
        keys.update(self._state.active_gtts)
        keys.update(self._state.live_brackets)
        return keys

    def summary(self) -> PortfolioSummary:
        books = [self._book_summary(name) for name in self._state.books()]
        realized = sum((p.realized_pnl for p in self._state.positions), Fraction(0))
        unrealized = sum(
            (p.unrealized_pnl(self._mark(p.instrument)) for p in self._state.positions), Fraction(0)
        )
        charges = sum((p.charges for p in self._state.positions), NO_CHARGES)
        cash = self.cash
        return PortfolioSummary(
            starting_cash=self.starting_cash,
            cash=cash,
            margin_used=self.margin_used,
            margin_blocked=self.margin_blocked,
            margin_available=self.available,
            equity=cash + unrealized,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            charges=charges.total,
            charge_breakdown=charge_breakdown(charges),
            net_pnl=realized + unrealized - charges.total,
            gross_exposure=sum(b.gross_exposure for b in books),
            net_exposure=sum(b.net_exposure for b in books),
            books=books,
        )

    @property
    def cash(self) -> Fraction:
        """Starting cash plus realized P&L less charges (premium and delivery cost sit in margin)."""
        realized = sum((p.realized_pnl for p in self._state.positions), Fraction(0))
        charges = sum(p.charges.total for p in self._state.positions)
        return self.starting_cash + realized - charges

    @property
    def margin_used(self) -> int:
        return sum(self._position_margin(p) for p in self._state.positions)

    @property
    def margin_blocked(self) -> int:
        return sum(order.blocked_margin for order in self._state.orders.values())

    @property
    def available(self) -> Fraction:
        mtm_loss = Fraction(0)
        for p in self._state.positions:
            spec = self._lookup(p.instrument)
            if p.quantity and spec is not None and self._margin.is_leveraged(spec, p.product, p.quantity):
                mtm_loss += min(Fraction(0), p.unrealized_pnl(self._mark(p.instrument)))
        return self.cash - self.margin_used - self.margin_blocked + mtm_loss

    def snapshot(self) -> dict[str, Any]:
        """Everything the journal determines (not the market), to compare two rebuilt portfolios."""
        state = copy.deepcopy(self._state)
        return {
            "positions": state.positions.select(),
            # The engine offset is how the matching engine last received an order, not its state.
            "orders": {oid: dataclasses.replace(o, engine_offset=0) for oid, o in state.orders.items()},
            "trades": state.trades,
            "gtts": state.gtts,
            "brackets": state.brackets,
            "counters": state.counters,
            "session": (state.session, state.squared_off),
            "entry_halts": state.entry_halts,
            "cash": self.cash,
            "margin": (self.margin_used, self.margin_blocked),
        }

    # ================================================================================== restore

    @_group_commit
    def restore(self, records: Iterable[AnyRecord | Mapping[str, Any]]) -> int:
        """Rebuild from a journal (records or their builtin form) into this fresh portfolio.

        Returns the number of records applied. Open orders are handed back to the matching engine;
        they fill again on the next quotes.
        """
        if not self._state.is_empty:
            raise PortfolioError("restore needs a fresh portfolio")
        count = 0
        for data in records:
            self._state.apply(decode_record(data))  # replayed: nothing is reported or followed up
            count += 1
        self._rebuild_engine()
        log.info(
            "paper portfolio restored from %d records: %d orders (%d open), %d trades, %d GTT, %d brackets",
            count,
            len(self._state.orders),
            sum(o.is_active for o in self._state.orders.values()),
            len(self._state.trades),
            len(self._state.gtts),
            len(self._state.brackets),
        )
        return count

    def _rebuild_engine(self) -> None:
        ts_ns = max((o.ts_ns for o in self._state.orders.values()), default=0)
        for order in self._state.orders.values():
            if not order.is_active:
                continue
            request = msgspec.structs.replace(order.request, quantity=order.leaves_quantity)
            if order.triggered:  # a stop that already fired works as the order it turned into
                as_type = OrderType.LIMIT if request.order_type is OrderType.SL else OrderType.MARKET
                price = request.price if as_type is OrderType.LIMIT else 0
                request = msgspec.structs.replace(request, order_type=as_type, price=price, trigger_price=0)
            order.engine_offset = order.filled_quantity
            events = self._engine.submit(request, ts_ns)
            refused = next((e for e in events if isinstance(e, EngineRejected)), None)
            if refused is not None:
                self._commit(
                    OrderCancelled(
                        ts_ns=ts_ns,
                        client_order_id=order.client_order_id,
                        reason=f"could not be restored to the venue: {refused.reason}",
                    )
                )

    # ============================================================================ the order path

    def _place(self, request: OrderRequest, ts_ns: int, role: OrderRole, parent: str) -> PaperOrder:
        """Check an order, journal its acceptance or rejection, and hand it to the matching engine."""
        spec = self._lookup(request.instrument)
        venue_order_id = f"PV{self._state.counters.orders + 1:08d}"
        margin = 0
        halted = self._halt_reason(request) if role in _HALTED_ROLES else None
        reason = halted or self._venue_check(request, spec)
        if reason is None:
            assert spec is not None
            margin, reason = self._margin_check(request, spec)
        if reason is not None:
            self._commit(
                OrderRejected(
                    ts_ns=ts_ns,
                    request=request,
                    venue_order_id=venue_order_id,
                    reason=reason,
                    role=role,
                    parent=parent,
                )
            )
            return self._state.orders[request.client_order_id]
        self._commit(
            OrderAccepted(
                ts_ns=ts_ns,
                request=request,
                venue_order_id=venue_order_id,
                margin=margin,
                role=role,
                parent=parent,
            )
        )
        order = self._state.orders[request.client_order_id]
        self._record_engine_events(self._engine.submit(request, ts_ns), ts_ns)
        return order

    def _halt_reason(self, request: OrderRequest, working: PaperOrder | None = None) -> str | None:
        """Why an entry halt stops this order (`working`: the order itself, already placed), or None."""
        halts = self._state.entry_halts
        if None in halts:
            switch, reason = "the global kill switch", halts[None]
        elif request.book in halts:
            switch, reason = f"the kill switch for book {request.book}", halts[request.book]
        else:
            return None
        if self._opening_quantity(request, working) == 0:
            return None
        return f"{switch} is engaged ({reason}); only orders that reduce a position are placed"

    def _venue_check(self, request: OrderRequest, spec: InstrumentSpec | None) -> str | None:
        """What the venue refuses before the exchange rules: instrument, product, short delivery."""
        if spec is None:
            return f"unknown instrument {request.instrument!r}"
        product_error = spec.product_error(request.product)
        if product_error:
            return product_error
        if request.quantity <= 0:
            return f"quantity must be positive, got {request.quantity}"
        return self._short_delivery_check(request, spec)

    def _short_delivery_check(
        self, request: OrderRequest, spec: InstrumentSpec, replacing: PaperOrder | None = None
    ) -> str | None:
        """Equity sold for DELIVERY must be held (and not already on other sell orders)."""
        short_delivery = (
            spec.kind is InstrumentKind.EQUITY
            and request.product is Product.DELIVERY
            and request.side is Side.SELL
            and not self._allow_short_delivery
        )
        if not short_delivery:
            return None
        held = self._state.positions.net_quantity(request.book, request.instrument, Product.DELIVERY)
        selling = self._working_quantity(
            request.book, request.instrument, Product.DELIVERY, Side.SELL, replacing
        )
        quantity = request.quantity - (replacing.filled_quantity if replacing is not None else 0)
        if quantity <= held - selling:
            return None
        on_orders = f" ({selling} already on sell orders)" if selling else ""
        return (
            f"cannot sell {quantity} {spec.symbol} for DELIVERY: book {request.book} holds "
            f"{max(held, 0)}{on_orders}, and short selling in delivery is not allowed"
        )

    def _margin_check(
        self, request: OrderRequest, spec: InstrumentSpec, replacing: PaperOrder | None = None
    ) -> tuple[int, str | None]:
        """The margin the order blocks, or why it cannot be placed (with the numbers).

        `replacing` is the order being modified: its own block and quantity do not count against it.
        """
        opening = self._opening_quantity(request, replacing)
        if opening == 0:
            return 0, None
        price = self._reference_price(request, spec)
        if price is None:
            return 0, (
                f"no price yet for {spec.symbol}: a MARKET order needs a quote; wait for one or "
                "place a LIMIT order"
            )
        signed = opening if request.side is Side.BUY else -opening
        margin = self._margin.requirement(spec, request.product, signed, price)
        available = self.available + (replacing.blocked_margin if replacing is not None else 0)
        if margin > available:
            rate = self._margin.rate(spec, request.product, signed > 0)
            share = "" if rate == 1 else f"{_percent(rate)} of "
            basis = spec.strike if spec.kind is InstrumentKind.OPTION and signed < 0 else price
            return 0, (
                f"insufficient funds: {request.side.value} {request.quantity} {spec.symbol} "
                f"{request.product.value} needs {format_rupees(margin)} margin "
                f"({share}{format_rupees(opening * basis)}), "
                f"available {format_rupees(math.floor(available))}"
            )
        return margin, None

    def _reference_price(self, request: OrderRequest, spec: InstrumentSpec) -> int | None:
        if request.order_type in (OrderType.LIMIT, OrderType.SL):
            return request.price if request.price > 0 else None
        if request.order_type is OrderType.SL_M:
            return request.trigger_price if request.trigger_price > 0 else None
        quote = self._quotes.get(request.instrument)
        if quote is None:
            return None
        bid, ask = self._touch(spec, quote)
        return ask if request.side is Side.BUY else bid

    def _opening_quantity(self, request: OrderRequest, replacing: PaperOrder | None = None) -> int:
        """How much of an order adds exposure: what is left after closing the opposite position."""
        held = self._state.positions.net_quantity(request.book, request.instrument, request.product)
        buying = request.side is Side.BUY
        quantity = request.quantity - (replacing.filled_quantity if replacing is not None else 0)
        if held == 0 or (held > 0) == buying:
            return quantity
        closing_already = self._working_quantity(
            request.book, request.instrument, request.product, request.side, replacing
        )
        closable = max(0, abs(held) - closing_already)
        return max(0, quantity - closable)

    def _working_quantity(
        self, book: str, instrument: str, product: Product, side: Side, excluding: PaperOrder | None = None
    ) -> int:
        return sum(
            o.leaves_quantity
            for o in self._state.orders.values()
            if o.is_active
            and o is not excluding
            and o.request.book == book
            and o.request.instrument == instrument
            and o.request.product is product
            and o.request.side is side
        )

    def _modify(
        self,
        order: PaperOrder,
        ts_ns: int,
        *,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
        order_type: OrderType | None = None,
    ) -> None:
        if not order.is_active:
            raise PortfolioError(
                f"cannot modify {order.client_order_id}: it is already {order.status.value.lower()}"
            )
        spec = self._spec(order.request.instrument)
        proposed = msgspec.structs.replace(
            order.request,
            quantity=quantity if quantity is not None else order.quantity,
            price=price if price is not None else order.request.price,
            trigger_price=trigger_price if trigger_price is not None else order.request.trigger_price,
            order_type=order_type if order_type is not None else order.request.order_type,
        )
        reason = self._short_delivery_check(proposed, spec, order)
        margin = 0
        if reason is None:
            margin, reason = self._margin_check(proposed, spec, order)
        if reason is not None:
            raise PortfolioError(f"modify refused: {reason}")
        events = self._engine.modify(
            order.client_order_id,
            ts_ns,
            quantity=None if quantity is None else quantity - order.engine_offset,
            price=price,
            trigger_price=trigger_price,
            order_type=order_type,
        )
        refused = next((e for e in events if isinstance(e, EngineRejected)), None)
        if refused is not None:
            raise PortfolioError(refused.reason)
        for event in events:
            if isinstance(event, EngineModified):
                self._commit(
                    OrderModified(
                        ts_ns=ts_ns,
                        client_order_id=order.client_order_id,
                        quantity=proposed.quantity,
                        price=proposed.price,
                        trigger_price=proposed.trigger_price,
                        order_type=proposed.order_type,
                        margin=margin,
                    )
                )
            else:
                self._record_engine_events([event], ts_ns)

    def _cancel_order(self, order: PaperOrder, ts_ns: int, reason: str) -> None:
        events = self._engine.cancel(order.client_order_id, ts_ns, reason)
        refused = next((e for e in events if isinstance(e, EngineRejected)), None)
        if refused is not None:
            raise PortfolioError(refused.reason)
        self._record_engine_events(events, ts_ns)

    def _record_engine_events(self, events: list[MatchEvent], ts_ns: int) -> None:
        """Journal and apply what the matching engine did."""
        for event in events:
            order = self._state.orders.get(event.order_id)
            if order is None:
                log.warning("matching engine event for an unknown order %s: %r", event.order_id, event)
                continue
            if isinstance(event, EngineAccepted):
                self._commit(
                    OrderWorking(ts_ns=ts_ns, client_order_id=order.client_order_id, status=event.status)
                )
            elif isinstance(event, EngineRejected):
                self._commit(
                    OrderRejected(
                        ts_ns=ts_ns,
                        request=order.request,
                        venue_order_id=order.venue_order_id,
                        reason=event.reason,
                        role=order.role,
                        parent=order.parent,
                    )
                )
            elif isinstance(event, EngineTriggered):
                self._commit(OrderTriggered(ts_ns=ts_ns, client_order_id=order.client_order_id))
            elif isinstance(event, EngineFilled):
                spec = self._spec(order.request.instrument)
                charges = self._charge_model.for_fill(
                    spec, order.request.product, event.side, event.quantity, event.price, order.filled_value
                )
                self._commit(
                    OrderFilled(
                        ts_ns=ts_ns,
                        client_order_id=order.client_order_id,
                        trade_id=f"PT{self._state.counters.trades + 1:08d}",
                        quantity=event.quantity,
                        price=event.price,
                        charges=charges,
                    )
                )
            elif isinstance(event, EngineCancelled):
                self._commit(
                    OrderCancelled(ts_ns=ts_ns, client_order_id=order.client_order_id, reason=event.reason)
                )

    # ============================================================================ GTT, brackets

    def _check_gtts(self, instrument: str, ltp: int, ts_ns: int) -> None:
        for gtt_id in list(self._state.active_gtts.get(instrument, ())):
            state = self._state.gtts[gtt_id]
            leg = fired_leg(state, ltp)
            if leg is None:
                continue
            rule = state.rule
            request = OrderRequest(
                client_order_id=self._next_order_id(OrderRole.GTT, rule.gtt_id),
                book=rule.book,
                instrument=rule.instrument,
                side=rule.side,
                quantity=rule.quantity,
                order_type=OrderType.LIMIT,
                product=rule.product,
                validity=Validity.DAY,
                price=leg.price,
                tag=rule.gtt_id,
                is_exit=rule.is_oco,
            )
            # One record fires the leg and retires the rule: an OCO's other leg cannot fire after it.
            self._commit(
                GttTriggered(
                    ts_ns=ts_ns, gtt_id=rule.gtt_id, leg=leg.role, client_order_id=request.client_order_id
                )
            )
            self._place(request, ts_ns, OrderRole.GTT, rule.gtt_id)
        self._run_pending(ts_ns)

    def _check_brackets(self, instrument: str, ltp: int, ts_ns: int) -> None:
        for bracket_id in list(self._state.live_brackets.get(instrument, ())):
            bracket = self._state.brackets[bracket_id]
            if bracket.status is not BracketStatus.ACTIVE:
                continue
            if bracket.stop_fired or bracket.protected <= 0:
                continue
            trailed = bracket.trailed_stop(ltp)
            if trailed is not None:
                stop, anchor = trailed
                self._commit(
                    BracketStopMoved(
                        ts_ns=ts_ns, bracket_id=bracket.bracket_id, stop_loss=stop, anchor=anchor
                    )
                )
            if bracket.stop_reached(ltp):
                self._fire_stop(bracket, ts_ns)
        self._run_pending(ts_ns)

    def _fire_stop(self, bracket: Bracket, ts_ns: int) -> None:
        """The stop is reached: cancel the unfilled entry and the target, then exit at market."""
        for order_id in (bracket.entry_order_id, bracket.target_order_id):
            order = self._state.orders.get(order_id or "")
            if order is not None and order.is_active:
                self._cancel_order(order, ts_ns, f"bracket {bracket.bracket_id}: stop-loss reached")
        if bracket.protected <= 0:  # the target filled in full on the way
            return
        spec = bracket.spec
        request = OrderRequest(
            client_order_id=self._next_order_id(OrderRole.STOP, spec.bracket_id),
            book=spec.book,
            instrument=spec.instrument,
            side=spec.exit_side,
            quantity=bracket.protected,
            order_type=OrderType.MARKET,
            product=spec.product,
            tag=spec.bracket_id,
            is_exit=True,
        )
        self._place(request, ts_ns, OrderRole.STOP, spec.bracket_id)

    def _follow_up_bracket(self, bracket: Bracket, ts_ns: int) -> None:
        """Keep the target covering what is protected, and close the bracket when nothing is left."""
        if not bracket.is_live:
            return
        entry = self._state.orders.get(bracket.entry_order_id)
        entry_active = entry is not None and entry.is_active
        if bracket.entry_filled == 0:
            if entry is not None and not entry_active:
                why = entry.reason or entry.status.value.lower()
                self._commit(
                    BracketClosed(
                        ts_ns=ts_ns,
                        bracket_id=bracket.bracket_id,
                        status=BracketStatus.CANCELLED,
                        reason=f"entry {entry.status.value.lower()}: {why}",
                    )
                )
            return
        if bracket.protected == 0 and not entry_active:
            self._commit(
                BracketClosed(
                    ts_ns=ts_ns,
                    bracket_id=bracket.bracket_id,
                    status=BracketStatus.CLOSED,
                    reason=self._exit_reason(bracket),
                )
            )
            return
        if bracket.stop_fired or bracket.exit_order_ids:
            return
        target = self._state.orders.get(bracket.target_order_id or "")
        covered = target.leaves_quantity if target is not None and target.is_active else 0
        if covered == bracket.protected:
            return
        if target is not None and target.is_active:
            try:
                self._modify(target, ts_ns, quantity=target.filled_quantity + bracket.protected)
            except PortfolioError as err:  # the stop still covers all of it
                log.warning("bracket %s: target not resized: %s", bracket.bracket_id, err)
            return
        if target is not None and target.status is not OrderStatus.FILLED:
            return  # a target refused or cancelled is not placed again; the stop still covers it all
        spec = bracket.spec
        request = OrderRequest(
            client_order_id=self._next_order_id(OrderRole.TARGET, spec.bracket_id),
            book=spec.book,
            instrument=spec.instrument,
            side=spec.exit_side,
            quantity=bracket.protected,
            order_type=OrderType.LIMIT,
            product=spec.product,
            price=bracket.target,
            tag=spec.bracket_id,
            is_exit=True,
        )
        self._place(request, ts_ns, OrderRole.TARGET, spec.bracket_id)

    def _exit_reason(self, bracket: Bracket) -> str:
        if bracket.exit_order_ids:
            return "squared off"
        if bracket.stop_fired:
            return "stop-loss hit"
        return "target reached"

    def _close_bracket(self, bracket: Bracket, ts_ns: int, reason: str, *, exit_at_market: bool) -> None:
        """Cancel a bracket's working orders; exit what it protects at market if asked."""
        for order_id in (bracket.entry_order_id, bracket.target_order_id):
            order = self._state.orders.get(order_id or "")
            if order is not None and order.is_active:
                self._cancel_order(order, ts_ns, f"bracket {bracket.bracket_id} {reason}")
        if not bracket.is_live:
            return
        protected = bracket.protected
        if exit_at_market and protected > 0 and not bracket.stop_fired:
            spec = bracket.spec
            request = OrderRequest(
                client_order_id=self._next_order_id(OrderRole.EXIT, spec.bracket_id),
                book=spec.book,
                instrument=spec.instrument,
                side=spec.exit_side,
                quantity=protected,
                order_type=OrderType.MARKET,
                product=spec.product,
                tag=spec.bracket_id,
                is_exit=True,
            )
            self._place(request, ts_ns, OrderRole.EXIT, spec.bracket_id)
        if bracket.is_live and (bracket.protected == 0 or not exit_at_market):
            status = BracketStatus.CANCELLED if bracket.entry_filled == 0 else BracketStatus.CLOSED
            self._commit(
                BracketClosed(ts_ns=ts_ns, bracket_id=bracket.bracket_id, status=status, reason=reason)
            )

    def _run_pending(self, ts_ns: int) -> None:
        """Run the follow-ups that applied records asked for (bracket legs), until none are left."""
        for _ in range(_MAX_FOLLOW_UPS):
            if not self._pending_brackets:
                return
            bracket_id = self._pending_brackets.pop(0)
            bracket = self._state.brackets.get(bracket_id)
            if bracket is not None:
                self._follow_up_bracket(bracket, ts_ns)
        raise RuntimeError(f"bracket follow-ups did not settle: {self._pending_brackets[:5]}")

    # ================================================================== square-off and expiry

    def _square_off(self, book: str, instrument: str | None, ts_ns: int, reason: str) -> list[PaperOrder]:
        for bracket in list(self._state.brackets.values()):
            if (
                bracket.is_live
                and bracket.spec.book == book
                and instrument in (None, bracket.spec.instrument)
            ):
                self._close_bracket(bracket, ts_ns, reason, exit_at_market=False)
        for state in list(self._state.gtts.values()):
            if state.is_active and state.rule.book == book and instrument in (None, state.rule.instrument):
                self._commit(
                    GttClosed(
                        ts_ns=ts_ns, gtt_id=state.rule.gtt_id, status=GttStatus.CANCELLED, reason=reason
                    )
                )
        for order in list(self._state.orders.values()):
            if (
                order.is_active
                and order.request.book == book
                and instrument in (None, order.request.instrument)
            ):
                self._cancel_order(order, ts_ns, reason)
        return [
            self._exit_position(position, ts_ns)
            for position in self._state.positions.select(book, instrument, open_only=True)
        ]

    def _exit_position(self, position: Position, ts_ns: int) -> PaperOrder:
        request = OrderRequest(
            client_order_id=self._next_order_id(OrderRole.EXIT, ""),
            book=position.book,
            instrument=position.instrument,
            side=Side.SELL if position.quantity > 0 else Side.BUY,
            quantity=abs(position.quantity),
            order_type=OrderType.MARKET,
            product=position.product,
            is_exit=True,
        )
        return self._place(request, ts_ns, OrderRole.EXIT, "")

    def _square_off_intraday(self, ts_ns: int) -> None:
        """The broker's auto square-off: every INTRADAY order cancelled, every INTRADAY position closed."""
        reason = f"intraday auto square-off at {self.config.square_off_time_ist} IST"
        for bracket in list(self._state.brackets.values()):
            if bracket.is_live and bracket.spec.product is Product.INTRADAY:
                self._close_bracket(bracket, ts_ns, reason, exit_at_market=False)
        for order in list(self._state.orders.values()):
            if order.is_active and order.request.product is Product.INTRADAY:
                self._cancel_order(order, ts_ns, reason)
        for position in self._state.positions.select(open_only=True):
            if position.product is Product.INTRADAY:
                self._exit_position(position, ts_ns)
        self._run_pending(ts_ns)

    def _end_session(self, ts_ns: int) -> None:
        """The day is over: DAY orders expire; an intraday position still open closes at its last price."""
        self._record_engine_events(self._engine.expire_day(ts_ns), ts_ns)
        for position in self._state.positions.select(open_only=True):
            if position.product is not Product.INTRADAY:
                continue
            price = self._mark(position.instrument)
            if price is None:
                price = round(position.avg_price)
            spec = self._lookup(position.instrument)
            side = Side.SELL if position.quantity > 0 else Side.BUY
            charges = (
                self._charge_model.for_fill(spec, position.product, side, abs(position.quantity), price)
                if spec is not None
                else NO_CHARGES
            )
            self._settle(position, price, charges, ts_ns, "intraday position closed at the session's end")
        self._run_pending(ts_ns)

    def _settle_expiries(self, today: date, now: time, ts_ns: int) -> None:
        """Derivatives past expiry settle: futures at their last price, options at intrinsic value."""
        for position in self._state.positions.select(open_only=True):
            spec = self._lookup(position.instrument)
            if spec is None or spec.expiry is None:
                continue
            if today < spec.expiry or (today == spec.expiry and now < MARKET_CLOSE):
                continue
            price = self._settlement_price(spec)
            if price is None:
                continue
            charges = NO_CHARGES
            if spec.kind is InstrumentKind.OPTION and position.quantity > 0:
                charges = self._charge_model.for_exercise(spec, position.quantity, price)
            self._settle(position, price, charges, ts_ns, f"expired {spec.expiry.isoformat()}")

    def _settlement_price(self, spec: InstrumentSpec) -> int | None:
        if spec.kind is InstrumentKind.OPTION:
            underlying = self._mark(spec.underlying) if spec.underlying else None
            if underlying is not None:
                return spec.intrinsic_value(underlying)
            log.warning(
                "%s expired with no price for its underlying; settling at its own last price", spec.symbol
            )
        return self._mark(spec.key)

    def _settle(self, position: Position, price: int, charges: Charges, ts_ns: int, reason: str) -> None:
        for order in list(self._state.orders.values()):
            if (
                order.is_active
                and order.request.book == position.book
                and order.request.instrument == position.instrument
                and order.request.product is position.product
            ):
                self._cancel_order(order, ts_ns, reason)
        self._commit(
            PositionSettled(
                ts_ns=ts_ns,
                book=position.book,
                instrument=position.instrument,
                product=position.product,
                side=Side.SELL if position.quantity > 0 else Side.BUY,
                quantity=abs(position.quantity),
                price=price,
                trade_id=f"PT{self._state.counters.trades + 1:08d}",
                charges=charges,
                reason=reason,
            )
        )

    # ======================================================================== applying records

    def _commit(self, record: AnyRecord) -> None:
        """Journal a record, then apply it: nothing changes until it is durable."""
        if self._journal is not None:
            self._journal(record)
            self._unsynced = True
        applied = self._state.apply(record)
        if applied.update is not None:
            self._events.append(applied.update)
        if applied.bracket_id is not None and applied.bracket_id not in self._pending_brackets:
            self._pending_brackets.append(applied.bracket_id)

    # ================================================================================== helpers

    def _rules(self, key: str) -> InstrumentRules | None:
        spec = self._lookup(key)
        if spec is None:
            return None
        quote = self._quotes.get(key)
        return InstrumentRules(
            key=key,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
            lower_circuit=quote.lower_circuit if quote else 0,
            upper_circuit=quote.upper_circuit if quote else 0,
            symbol=spec.symbol,
        )

    def _touch(self, spec: InstrumentSpec, quote: MarketQuote) -> tuple[int, int]:
        """Best bid and ask; with only a last price, that price widened by the slippage model."""
        if quote.bid > 0 and quote.ask > 0:
            return quote.bid, quote.ask
        slip = self.config.slippage_ticks * spec.tick_size
        return max(spec.tick_size, quote.ltp - slip), quote.ltp + slip

    def _mark(self, instrument: str | None) -> int | None:
        quote = self._quotes.get(instrument or "")
        return quote.ltp if quote else None

    def _last_price(self, spec: InstrumentSpec) -> int:
        price = self._mark(spec.key)
        if price is None:
            raise PortfolioError(f"no price yet for {spec.symbol}; wait for a quote")
        return price

    def _symbol(self, instrument: str) -> str:
        spec = self._lookup(instrument)
        return spec.symbol if spec is not None else instrument

    def _spec(self, instrument: str) -> InstrumentSpec:
        spec = self._lookup(instrument)
        if spec is None:
            raise PortfolioError(f"unknown instrument {instrument!r}")
        return spec

    def _check_product(self, spec: InstrumentSpec, product: Product) -> None:
        problem = spec.product_error(product)
        if problem:
            raise PortfolioError(problem)

    def _check_order_size(self, quantity: int, price: int) -> None:
        if self._max_order_qty is not None and quantity > self._max_order_qty:
            raise PortfolioError(
                f"quantity {quantity} exceeds the maximum order quantity {self._max_order_qty}"
            )
        value = quantity * price
        if self._max_order_value is not None and value > self._max_order_value:
            limit = format_rupees(self._max_order_value)
            raise PortfolioError(f"order value {format_rupees(value)} exceeds the maximum {limit}")

    def _check_holding(
        self, book: str, spec: InstrumentSpec, side: Side, quantity: int, product: Product
    ) -> None:
        held = self._state.positions.net_quantity(book, spec.key, product)
        closes = held < 0 if side is Side.BUY else held > 0
        if not closes or abs(held) < quantity:
            direction = "short" if side is Side.BUY else "long"
            raise PortfolioError(
                f"an OCO {side.value} of {quantity} {spec.symbol} needs a {direction} {product.value} "
                f"position of at least {quantity} in book {book}; it holds {held}"
            )

    def _position_margin(self, position: Position) -> int:
        if not position.quantity:
            return 0
        spec = self._lookup(position.instrument)
        if spec is None:  # gone from the catalog: hold its full value, the safe side
            return math.ceil(abs(position.quantity) * position.avg_price)
        return self._margin.requirement(spec, position.product, position.quantity, position.avg_price)

    def _book_summary(self, book: str) -> BookSummary:
        positions = self._state.positions.select(book)
        realized = sum((p.realized_pnl for p in positions), Fraction(0))
        unrealized = sum((p.unrealized_pnl(self._mark(p.instrument)) for p in positions), Fraction(0))
        charges = sum(p.charges.total for p in positions)
        values = [p.quantity * (self._mark(p.instrument) or 0) for p in positions]
        orders = [o for o in self._state.orders.values() if o.is_active and o.request.book == book]
        return BookSummary(
            book=book,
            open_positions=sum(1 for p in positions if p.quantity),
            open_orders=len(orders),
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            charges=charges,
            net_pnl=realized + unrealized - charges,
            gross_exposure=sum(abs(v) for v in values),
            net_exposure=sum(values),
            margin=sum(self._position_margin(p) for p in positions) + sum(o.blocked_margin for o in orders),
        )

    def _next_order_id(self, role: OrderRole, parent: str) -> str:
        # Unique because the order counter only grows; it is the id the order will take.
        number = self._state.counters.orders + 1
        return f"{parent}-{role.value}-{number}" if parent else f"{role.value}-{number}"

    @staticmethod
    def _same_order(known: PaperOrder, request: OrderRequest) -> bool:
        """A resend names the same order if what cannot be modified matches (it may have been since)."""
        fixed = ("client_order_id", "book", "instrument", "side", "product", "validity")
        return all(getattr(known.request, name) == getattr(request, name) for name in fixed)

    def _order(self, client_order_id: str) -> PaperOrder:
        order = self._state.orders.get(client_order_id)
        if order is None:
            raise UnknownId(f"no order with id {client_order_id!r}")
        return order

    def _gtt(self, gtt_id: str) -> GttState:
        state = self._state.gtts.get(gtt_id)
        if state is None:
            raise UnknownId(f"no GTT rule with id {gtt_id!r}")
        return state

    def _bracket(self, bracket_id: str) -> Bracket:
        bracket = self._state.brackets.get(bracket_id)
        if bracket is None:
            raise UnknownId(f"no bracket with id {bracket_id!r}")
        return bracket

    @staticmethod
    def _bracket_state_words(bracket: Bracket) -> str:
        if bracket.stop_fired and bracket.is_live:
            return "exiting at its stop-loss"
        return bracket.status.value.lower()
