"""`ShardExecutionClient`: the Nautilus execution client that sends a shard's orders to `execution`.

One client serves every exchange segment (Angel One is one broker, one account): it is the
engine's default client, with venue ``None``, and its account `ANGEL-<book>-<k>` stands for all
venues (`cache.set_specific_venue`, as Nautilus does for multi-exchange brokers). OMS NETTING, a
MARGIN account in INR (pre-trade risk is the execution actor's; the engine's cash checks would
only duplicate it without the real margins).

Orders go out as `actors.orders.OrderRequest` (client order id = the Nautilus ClientOrderId,
book = the deployment, tag = the strategy id). `OrderUpdate`s come back twice — as the answer of
`submit` and as pushes to the shard — in any order; `apply_update` turns each into the Nautilus
events it implies, once: accepted before anything else, a fill once per trade id, nothing after
the order is closed. Fills of orders the venue placed on the book itself (square-offs, GTT
and bracket legs) come as `apply_venue_fill`, reported to the engine as orders the strategy
claims.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution.messages import (
    BatchCancelOrders,
    CancelAllOrders,
    CancelOrder,
    GenerateFillReports,
    GenerateOrderStatusReport,
    GenerateOrderStatusReports,
    GeneratePositionStatusReports,
    ModifyOrder,
    SubmitOrder,
    SubmitOrderList,
)
from nautilus_trader.execution.reports import FillReport, OrderStatusReport, PositionStatusReport
from nautilus_trader.live.execution_client import LiveExecutionClient
from nautilus_trader.model.currencies import INR
from nautilus_trader.model.enums import (
    AccountType,
    LiquiditySide,
    OmsType,
    TimeInForce,
)
from nautilus_trader.model.enums import OrderSide as NautilusSide
from nautilus_trader.model.enums import OrderStatus as NautilusOrderStatus
from nautilus_trader.model.enums import OrderType as NautilusOrderType
from nautilus_trader.model.identifiers import (
    AccountId,
    ClientId,
    ClientOrderId,
    InstrumentId,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from nautilus_trader.model.objects import FIXED_PRECISION, AccountBalance, Money, Price, Quantity
from nautilus_trader.model.orders import Order

from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Product, Side, Validity
from actors.shard.data import BROKER
from actors.shard.universe import ShardInstrument

log = logging.getLogger(__name__)

_ORDER_TYPES = {
    NautilusOrderType.MARKET: OrderType.MARKET,
    NautilusOrderType.LIMIT: OrderType.LIMIT,
    NautilusOrderType.STOP_MARKET: OrderType.SL_M,
    NautilusOrderType.STOP_LIMIT: OrderType.SL,
}
# Angel orders are day orders: GTC (Nautilus's default) is sent as DAY.
_VALIDITY = {TimeInForce.DAY: Validity.DAY, TimeInForce.GTC: Validity.DAY, TimeInForce.IOC: Validity.IOC}
PRODUCT_TAG = "product:"


class OrderGateway(Protocol):
    """Where a shard's orders go: the execution actor (through Ray) or an in-process stand-in."""

    async def submit(self, order: OrderRequest) -> OrderUpdate: ...

    async def cancel(self, client_order_id: str) -> OrderUpdate | None: ...

    async def modify(
        self,
        client_order_id: str,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
    ) -> OrderUpdate | None: ...


class OrderNotSupported(ValueError):
    """A Nautilus order the broker cannot take (type, validity, fractional quantity, ...)."""


@dataclass
class _Tracked:
    strategy_id: StrategyId
    instrument: ShardInstrument
    side: NautilusSide
    order_type: NautilusOrderType
    quantity: int
    venue_order_id: VenueOrderId | None = None
    accepted: bool = False
    trigger_pending: bool = False
    closed: bool = False
    filled: int = 0
    filled_value: int = 0  # paise × units, for fills inferred from an average price
    trade_ids: set[str] = field(default_factory=set)
    pending_modify: tuple[int | None, int | None, int | None] | None = None


@dataclass
class ExecutionCounters:
    orders_sent: int = 0
    orders_rejected: int = 0
    fills: int = 0
    updates: int = 0
    updates_ignored: int = 0
    venue_fills: int = 0  # fills of orders the venue placed on the book itself
    gateway_errors: int = 0


class ShardExecutionClient(LiveExecutionClient):
    """Forwards a shard's orders to the execution actor and turns its updates into order events.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The node's event loop.
    msgbus, cache, clock
        The node's kernel components.
    gateway : OrderGateway
        Where orders go.
    book : str
        The deployment name (the execution actor's book).
    account_number : str
        The account id's number part, unique per shard (e.g. "ema-equities-0").
    instruments : Sequence[ShardInstrument]
        The shard's universe (instrument id → "EXCH:token" key and price scale).
    starting_balance_rupees : int
        The INR balance the account starts with (the book's cash as the engine sees it).
    default_product : Product
        The product of orders without a "product:<NAME>" tag.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        gateway: OrderGateway,
        book: str,
        account_number: str,
        instruments: Sequence[ShardInstrument],
        starting_balance_rupees: int,
        default_product: Product = Product.INTRADAY,
    ) -> None:
        super().__init__(
            loop=loop,
            client_id=ClientId(BROKER),
            venue=None,
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            base_currency=INR,
            instrument_provider=InstrumentProvider(),
            msgbus=msgbus,
            cache=cache,
            clock=clock,
        )
        self._gateway = gateway
        self._book = book
        self._by_id: dict[InstrumentId, ShardInstrument] = {i.instrument_id: i for i in instruments}
        self._by_key: dict[str, ShardInstrument] = {i.key: i for i in instruments}
        self._starting_balance = starting_balance_rupees
        self._default_product = default_product
        self._orders: dict[ClientOrderId, _Tracked] = {}
        self._unsent = 0  # commands taken from the engine whose gateway call has not started
        self.counters = ExecutionCounters()
        self._set_account_id(AccountId(f"{BROKER}-{account_number}"))

    # -- connection -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        balance = Money(self._starting_balance, INR)
        self.generate_account_state(
            balances=[AccountBalance(total=balance, locked=Money(0, INR), free=balance)],
            margins=[],
            reported=False,
            ts_event=self._clock.timestamp_ns(),
        )
        await self._await_account_registered()

    async def _disconnect(self) -> None:
        return None

    # -- commands -------------------------------------------------------------------------------

    @property
    def has_unsent_commands(self) -> bool:
        """Whether commands are scheduled here but not yet handed to the gateway."""
        return self._unsent > 0

    def submit_order(self, command: SubmitOrder) -> None:
        self._unsent += 1
        super().submit_order(command)

    def cancel_order(self, command: CancelOrder) -> None:
        self._unsent += 1
        super().cancel_order(command)

    def modify_order(self, command: ModifyOrder) -> None:
        self._unsent += 1
        super().modify_order(command)

    async def _submit_order(self, command: SubmitOrder) -> None:
        self._unsent = max(0, self._unsent - 1)
        order = command.order
        try:
            request = self.to_request(order, command.strategy_id)
        except OrderNotSupported as err:
            self.counters.orders_rejected += 1
            self.generate_order_rejected(
                command.strategy_id,
                order.instrument_id,
                order.client_order_id,
                str(err),
                self._clock.timestamp_ns(),
            )
            return
        self._orders[order.client_order_id] = _Tracked(
            strategy_id=command.strategy_id,
            instrument=self._by_id[order.instrument_id],
            side=order.side,
            order_type=order.order_type,
            quantity=request.quantity,
        )
        self.generate_order_submitted(
            command.strategy_id, order.instrument_id, order.client_order_id, self._clock.timestamp_ns()
        )
        self.counters.orders_sent += 1
        try:
            update = await self._gateway.submit(request)
        except Exception as err:  # the actor is gone or raised: the order did not get an answer
            self.counters.gateway_errors += 1
            log.warning("submit %s failed: %r", request.client_order_id, err)
            self._reject(order.client_order_id, f"execution actor unavailable: {err!r}")
            return
        self.apply_update(update)

    async def _submit_order_list(self, command: SubmitOrderList) -> None:
        # No contingent orders at the broker: each order of the list goes on its own.
        for order in command.order_list.orders:
            submit = SubmitOrder(
                trader_id=command.trader_id,
                strategy_id=command.strategy_id,
                order=order,
                command_id=command.id,
                ts_init=command.ts_init,
                position_id=command.position_id,
                client_id=command.client_id,
            )
            await self._submit_order(submit)

    async def _modify_order(self, command: ModifyOrder) -> None:
        self._unsent = max(0, self._unsent - 1)
        tracked = self._orders.get(command.client_order_id)
        if tracked is None or tracked.closed:
            self._modify_rejected(command, "order is not open in this shard")
            return
        scale = tracked.instrument.price_scale
        try:
            quantity = _units(command.quantity.as_decimal()) if command.quantity is not None else None
            price = _minor(command.price.as_decimal(), scale) if command.price is not None else None
            trigger = (
                _minor(command.trigger_price.as_decimal(), scale)
                if command.trigger_price is not None
                else None
            )
        except OrderNotSupported as err:
            self._modify_rejected(command, str(err))
            return
        tracked.pending_modify = (quantity, price, trigger)
        try:
            update = await self._gateway.modify(
                command.client_order_id.value, quantity=quantity, price=price, trigger_price=trigger
            )
        except Exception as err:
            self.counters.gateway_errors += 1
            tracked.pending_modify = None
            self._modify_rejected(command, f"execution actor unavailable: {err!r}")
            return
        if update is not None and update.status is OrderStatus.REJECTED:
            tracked.pending_modify = None
            self._modify_rejected(command, update.reason or "modify rejected")
            return
        if update is not None:
            self.apply_update(update)

    async def _cancel_order(self, command: CancelOrder) -> None:
        self._unsent = max(0, self._unsent - 1)
        tracked = self._orders.get(command.client_order_id)
        if tracked is None or tracked.closed:
            self._cancel_rejected(
                command.client_order_id, command.strategy_id, "order is not open in this shard"
            )
            return
        try:
            update = await self._gateway.cancel(command.client_order_id.value)
        except Exception as err:
            self.counters.gateway_errors += 1
            self._cancel_rejected(
                command.client_order_id, command.strategy_id, f"execution actor unavailable: {err!r}"
            )
            return
        if update is not None and update.status is OrderStatus.REJECTED:
            self._cancel_rejected(
                command.client_order_id, command.strategy_id, update.reason or "cancel rejected"
            )
            return
        if update is not None:
            self.apply_update(update)

    async def _cancel_all_orders(self, command: CancelAllOrders) -> None:
        for order in self._cache.orders_open(
            instrument_id=command.instrument_id, strategy_id=command.strategy_id
        ):
            if command.order_side in (NautilusSide.NO_ORDER_SIDE, order.side):
                await self._cancel_order(self._cancel_command(order, command))

    async def _batch_cancel_orders(self, command: BatchCancelOrders) -> None:
        for cancel in command.cancels:
            await self._cancel_order(cancel)

    def _cancel_command(self, order: Order, command: CancelAllOrders) -> CancelOrder:
        return CancelOrder(
            trader_id=command.trader_id,
            strategy_id=command.strategy_id,
            instrument_id=order.instrument_id,
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            command_id=command.id,
            ts_init=command.ts_init,
        )

    # -- updates from the execution actor -----------------------------------------------------

    def apply_update(self, update: OrderUpdate) -> bool:
        """Emit the Nautilus events `update` implies; return False if the order is not this shard's."""
        self.counters.updates += 1
        client_order_id = ClientOrderId(update.client_order_id)
        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.closed:
            self.counters.updates_ignored += 1
            return False
        inst = tracked.instrument
        ts = update.ts_ns or self._clock.timestamp_ns()
        venue_id = update.venue_order_id or (update.fill.venue_order_id if update.fill else None)
        if venue_id:
            tracked.venue_order_id = VenueOrderId(venue_id)
        status = update.status
        if status is OrderStatus.REJECTED:
            self.counters.orders_rejected += 1
            self._reject(client_order_id, update.reason or "rejected", ts)
            return True
        if status is OrderStatus.PENDING:
            return True  # journaled by the execution actor, not yet at the venue
        if not tracked.accepted:
            self.generate_order_accepted(
                tracked.strategy_id,
                inst.instrument_id,
                client_order_id,
                self._venue_id(tracked, client_order_id),
                ts,
            )
            tracked.accepted = True
        if status is OrderStatus.TRIGGER_PENDING:
            tracked.trigger_pending = True
        elif status is OrderStatus.OPEN and tracked.trigger_pending:
            tracked.trigger_pending = False
            self.generate_order_triggered(
                tracked.strategy_id,
                inst.instrument_id,
                client_order_id,
                self._venue_id(tracked, client_order_id),
                ts,
            )
        if status in (OrderStatus.OPEN, OrderStatus.TRIGGER_PENDING) and tracked.pending_modify is not None:
            self._emit_updated(tracked, client_order_id, ts)
        if update.fill is not None:
            self._emit_fill(
                tracked,
                client_order_id,
                update.fill.trade_id,
                update.fill.quantity,
                update.fill.price,
                update.fill.commission,
                update.fill.ts_ns or ts,
            )
        elif update.filled_quantity > tracked.filled:
            self._emit_inferred_fill(tracked, client_order_id, update, ts)
        if status is OrderStatus.CANCELLED and not tracked.closed:
            self.generate_order_canceled(
                tracked.strategy_id,
                inst.instrument_id,
                client_order_id,
                self._venue_id(tracked, client_order_id),
                ts,
            )
            tracked.closed = True
        return True

    def apply_venue_fill(self, fill: Fill) -> bool:
        """A fill of an order the venue placed on this book itself (an intraday square-off, a GTT
        or bracket leg, an expiry settlement); False if not on this shard's instruments, or known.

        The engine hears of it as an order of its own, reported accepted and then filled, one
        per fill (the venue's order may fill in parts this shard never sees whole). The strategy
        claims its instruments' external orders, so its position follows the book's.
        """
        inst = self._by_key.get(fill.instrument)
        if inst is None or fill.quantity <= 0:
            return False
        client_order_id = ClientOrderId(f"{fill.client_order_id}.{fill.trade_id}")
        if self._cache.order(client_order_id) is not None:
            return False  # delivered twice
        venue_order_id = VenueOrderId(client_order_id.value)
        side = NautilusSide.BUY if fill.side is Side.BUY else NautilusSide.SELL
        quantity = Quantity.from_raw(fill.quantity * 10**FIXED_PRECISION, inst.instrument.size_precision)
        now = self._clock.timestamp_ns()
        ts = fill.ts_ns or now
        self._send_order_status_report(
            OrderStatusReport(
                account_id=self.account_id,
                instrument_id=inst.instrument_id,
                client_order_id=client_order_id,
                venue_order_id=venue_order_id,
                order_side=side,
                order_type=NautilusOrderType.MARKET,
                time_in_force=TimeInForce.DAY,
                order_status=NautilusOrderStatus.ACCEPTED,
                quantity=quantity,
                filled_qty=Quantity.zero(inst.instrument.size_precision),
                report_id=UUID4(),
                ts_accepted=ts,
                ts_last=ts,
                ts_init=now,
            )
        )
        self._send_fill_report(
            FillReport(
                account_id=self.account_id,
                instrument_id=inst.instrument_id,
                venue_order_id=venue_order_id,
                trade_id=TradeId(fill.trade_id),
                order_side=side,
                last_qty=quantity,
                last_px=price_from_minor(fill.price, inst),
                commission=Money(Decimal(fill.commission) / 100, INR),
                liquidity_side=LiquiditySide.TAKER,
                report_id=UUID4(),
                ts_event=ts,
                ts_init=now,
                client_order_id=client_order_id,
            )
        )
        self.counters.venue_fills += 1
        return True

    def _emit_fill(
        self,
        tracked: _Tracked,
        client_order_id: ClientOrderId,
        trade_id: str,
        quantity: int,
        price: int,
        commission: int,
        ts: int,
    ) -> None:
        if trade_id in tracked.trade_ids or quantity <= 0:
            return
        tracked.trade_ids.add(trade_id)
        inst = tracked.instrument
        is_market = tracked.order_type == NautilusOrderType.MARKET
        liquidity = LiquiditySide.TAKER if is_market else LiquiditySide.NO_LIQUIDITY_SIDE
        self.generate_order_filled(
            strategy_id=tracked.strategy_id,
            instrument_id=inst.instrument_id,
            client_order_id=client_order_id,
            venue_order_id=self._venue_id(tracked, client_order_id),
            venue_position_id=None,
            trade_id=TradeId(trade_id),
            order_side=tracked.side,
            order_type=tracked.order_type,
            last_qty=Quantity.from_raw(quantity * 10**FIXED_PRECISION, inst.instrument.size_precision),
            last_px=price_from_minor(price, inst),
            quote_currency=inst.instrument.quote_currency,
            commission=Money(Decimal(commission) / 100, INR),
            liquidity_side=liquidity,
            ts_event=ts,
        )
        self.counters.fills += 1
        tracked.filled += quantity
        tracked.filled_value += quantity * price
        if tracked.filled >= tracked.quantity:
            tracked.closed = True

    def _emit_inferred_fill(
        self, tracked: _Tracked, client_order_id: ClientOrderId, update: OrderUpdate, ts: int
    ) -> None:
        # No per-trade detail: the new quantity's price follows from the change in average price.
        delta = update.filled_quantity - tracked.filled
        value = update.avg_price * update.filled_quantity - tracked.filled_value
        price = value // delta if value % delta == 0 else update.avg_price
        self._emit_fill(
            tracked, client_order_id, f"{client_order_id.value}-{update.filled_quantity}", delta, price, 0, ts
        )

    def _emit_updated(self, tracked: _Tracked, client_order_id: ClientOrderId, ts: int) -> None:
        assert tracked.pending_modify is not None
        quantity, price, trigger = tracked.pending_modify
        tracked.pending_modify = None
        order = self._cache.order(client_order_id)
        inst = tracked.instrument
        if quantity is not None:
            tracked.quantity = quantity
        new_price = order.price if order is not None and order.has_price else None
        if price is not None:
            new_price = price_from_minor(price, inst)
        new_trigger = order.trigger_price if order is not None and order.has_trigger_price else None
        if trigger is not None:
            new_trigger = price_from_minor(trigger, inst)
        self.generate_order_updated(
            strategy_id=tracked.strategy_id,
            instrument_id=inst.instrument_id,
            client_order_id=client_order_id,
            venue_order_id=self._venue_id(tracked, client_order_id),
            quantity=Quantity.from_int(tracked.quantity),
            price=new_price,
            trigger_price=new_trigger,
            ts_event=ts,
        )

    def _reject(self, client_order_id: ClientOrderId, reason: str, ts: int | None = None) -> None:
        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.closed:
            return
        tracked.closed = True
        self.generate_order_rejected(
            tracked.strategy_id,
            tracked.instrument.instrument_id,
            client_order_id,
            reason,
            ts or self._clock.timestamp_ns(),
        )

    def _modify_rejected(self, command: ModifyOrder, reason: str) -> None:
        self.generate_order_modify_rejected(
            command.strategy_id,
            command.instrument_id,
            command.client_order_id,
            command.venue_order_id,
            reason,
            self._clock.timestamp_ns(),
        )

    def _cancel_rejected(self, client_order_id: ClientOrderId, strategy_id: StrategyId, reason: str) -> None:
        tracked = self._orders.get(client_order_id)
        order = self._cache.order(client_order_id)
        if order is None:
            log.warning("cancel of unknown order %s: %s", client_order_id, reason)
            return
        self.generate_order_cancel_rejected(
            strategy_id,
            order.instrument_id,
            client_order_id,
            tracked.venue_order_id if tracked else order.venue_order_id,
            reason,
            self._clock.timestamp_ns(),
        )

    @staticmethod
    def _venue_id(tracked: _Tracked, client_order_id: ClientOrderId) -> VenueOrderId:
        # The execution actor may acknowledge before the venue numbers the order.
        return tracked.venue_order_id or VenueOrderId(f"PENDING-{client_order_id.value}")

    # -- mapping --------------------------------------------------------------------------------

    def to_request(self, order: Order, strategy_id: StrategyId) -> OrderRequest:
        """The broker order for a Nautilus order.

        Raises
        ------
        OrderNotSupported
            If the instrument is not in the universe, or the order type, validity, quantity or
            price cannot be expressed at the broker.
        """
        inst = self._by_id.get(order.instrument_id)
        if inst is None:
            raise OrderNotSupported(f"{order.instrument_id} is not in this shard's universe")
        order_type = _ORDER_TYPES.get(order.order_type)
        if order_type is None:
            raise OrderNotSupported(f"order type {order.type_string()} is not supported by the broker")
        validity = _VALIDITY.get(order.time_in_force)
        if validity is None:
            raise OrderNotSupported(f"time in force {order.tif_string()} is not supported by the broker")
        product = self._default_product
        for tag in order.tags or ():
            if tag.startswith(PRODUCT_TAG):
                try:
                    product = Product(tag[len(PRODUCT_TAG) :])
                except ValueError:
                    raise OrderNotSupported(f"unknown product in tag {tag!r}") from None
        return OrderRequest(
            client_order_id=order.client_order_id.value,
            book=self._book,
            instrument=inst.key,
            side=Side.BUY if order.side == NautilusSide.BUY else Side.SELL,
            quantity=_units(order.quantity.as_decimal()),
            order_type=order_type,
            product=product,
            validity=validity,
            price=_minor(order.price.as_decimal(), inst.price_scale) if order.has_price else 0,
            trigger_price=_minor(order.trigger_price.as_decimal(), inst.price_scale)
            if order.has_trigger_price
            else 0,
            tag=strategy_id.value,
            is_exit=order.is_reduce_only,
        )

    # -- reports: reconciliation is off (the execution actor's journal is the record) -------------

    async def generate_order_status_report(
        self, command: GenerateOrderStatusReport
    ) -> OrderStatusReport | None:
        return None

    async def generate_order_status_reports(
        self, command: GenerateOrderStatusReports
    ) -> list[OrderStatusReport]:
        return []

    async def generate_fill_reports(self, command: GenerateFillReports) -> list[FillReport]:
        return []

    async def generate_position_status_reports(
        self, command: GeneratePositionStatusReports
    ) -> list[PositionStatusReport]:
        return []


def price_from_minor(minor: int, inst: ShardInstrument) -> Price:
    """A transport price (minor units) as a Nautilus Price with the instrument's precision, exactly."""
    return Price.from_raw(minor * (10**FIXED_PRECISION // inst.price_scale), inst.instrument.price_precision)


def _units(quantity: Decimal) -> int:
    if quantity != quantity.to_integral_value() or quantity <= 0:
        raise OrderNotSupported(f"quantity {quantity} is not a positive whole number of units")
    return int(quantity)


def _minor(price: Decimal, scale: int) -> int:
    minor = price * scale
    if minor != minor.to_integral_value():
        raise OrderNotSupported(f"price {price} is finer than the exchange's unit 1/{scale}")
    return int(minor)
