"""The execution journal's records: each state change, written before the engine acts on it.

The engine changes state only by applying one of these, so replaying the journal through
`ExecutionEngine.restore` rebuilds exactly the orders, positions and kill switches that wrote it.
"""

from __future__ import annotations

import msgspec

from actors.orders import Fill, OrderRequest, OrderStatus


class ExecutionRecord(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    ts_ns: int


class OrderEvent(ExecutionRecord, frozen=True):
    """A record about one existing order."""

    client_order_id: str


class OrderAccepted(ExecutionRecord, tag="accepted", frozen=True):
    """Passed risk; PENDING until the venue answers."""

    request: OrderRequest


class OrderRefused(ExecutionRecord, tag="refused", frozen=True):
    """Refused before it reached a venue (risk or validation): REJECTED, never sent."""

    request: OrderRequest
    reason: str


class OrderSent(OrderEvent, tag="sent", frozen=True):
    """About to be handed to the venue; after a restart its outcome is asked of the venue."""


class OrderAcknowledged(OrderEvent, tag="acknowledged", frozen=True):
    venue_order_id: str
    status: OrderStatus  # OPEN or TRIGGER_PENDING


class OrderTriggered(OrderEvent, tag="triggered", frozen=True):
    """A stop order's trigger was reached; it now works as an open order."""


class OrderFilled(ExecutionRecord, tag="filled", frozen=True):
    fill: Fill


class OrderRejected(OrderEvent, tag="rejected", frozen=True):
    """Rejected by the venue or the exchange (or lost across a restart)."""

    reason: str


class CancelRequested(OrderEvent, tag="cancel_requested", frozen=True):
    """A cancel was asked for (audit trail); `OrderCancelled` follows when the venue confirms."""


class OrderCancelled(OrderEvent, tag="cancelled", frozen=True):
    reason: str = ""


class ModifyRequested(OrderEvent, tag="modify_requested", frozen=True):
    quantity: int | None = None
    price: int | None = None
    trigger_price: int | None = None


class OrderModified(OrderEvent, tag="modified", frozen=True):
    quantity: int | None = None
    price: int | None = None
    trigger_price: int | None = None


class KillSwitchSet(ExecutionRecord, tag="kill_switch", frozen=True):
    book: str | None  # None: the global switch
    engaged: bool
    reason: str


class HoldingsSet(ExecutionRecord, tag="holdings", frozen=True):
    """DELIVERY holdings a book starts the day with (the naked-short check counts on them)."""

    book: str
    instrument: str
    quantity: int


class VenueOwnFill(ExecutionRecord, tag="venue_own_fill", frozen=True):
    """A fill of an order the venue placed itself (a GTT leg, a bracket leg, a square-off): no
    order of ours, but it moves the book's position, P&L and charges all the same."""

    fill: Fill


class ListenerRegistered(ExecutionRecord, tag="listener", frozen=True):
    """An actor that gets order updates: of one book, or of every book (`book` None)."""

    book: str | None
    actor_name: str


Record = (
    OrderAccepted
    | OrderRefused
    | OrderSent
    | OrderAcknowledged
    | OrderTriggered
    | OrderFilled
    | OrderRejected
    | CancelRequested
    | OrderCancelled
    | ModifyRequested
    | OrderModified
    | KillSwitchSet
    | HoldingsSet
    | VenueOwnFill
    | ListenerRegistered
)
