"""`InstantFillGateway`: an in-process execution stand-in for baselines and tests, never for trading."""

from __future__ import annotations

import time

import numpy as np

from actors.orders import Fill, OrderRequest, OrderUpdate
from actors.orders import OrderStatus as ShardlineOrderStatus


class InstantFillGateway:
    """An in-process execution stand-in: every order fills at once, in full, at its limit or the last price.

    It answers `submit` with the FILLED update (one fill per order). Its last-price view comes from
    `mark(instrument_key, price)`; a market order for an instrument never marked is rejected.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._count = 0
        self.requests: list[OrderRequest] = []

    def mark(self, instrument_key: str, price: int) -> None:
        self._last[instrument_key] = price

    def mark_batch(self, keys_by_iid: dict[int, str], ticks: np.ndarray) -> None:
        """Remember each instrument's last traded price in a batch."""
        if not len(ticks):
            return
        iids = ticks["iid"]
        # The last row per iid: unique on the reversed array finds last occurrences.
        uniq, last_rev = np.unique(iids[::-1], return_index=True)
        last_rows = len(iids) - 1 - last_rev
        for iid, row in zip(uniq.tolist(), last_rows.tolist(), strict=True):
            key = keys_by_iid.get(iid)
            price = int(ticks["ltp"][row])
            if key is not None and price > 0:
                self._last[key] = price

    async def submit(self, order: OrderRequest) -> OrderUpdate:
        self.requests.append(order)
        self._count += 1
        venue_id = f"IF{self._count:08d}"
        price = order.price or self._last.get(order.instrument, 0)
        now = time.time_ns()
        if price <= 0:
            return OrderUpdate(
                client_order_id=order.client_order_id,
                venue_order_id=None,
                book=order.book,
                instrument=order.instrument,
                status=ShardlineOrderStatus.REJECTED,
                reason="no last price to fill at",
                ts_ns=now,
            )
        fill = Fill(
            client_order_id=order.client_order_id,
            venue_order_id=venue_id,
            trade_id=f"T{self._count:08d}",
            book=order.book,
            instrument=order.instrument,
            side=order.side,
            quantity=order.quantity,
            price=price,
            product=order.product,
            ts_ns=now,
        )
        return OrderUpdate(
            client_order_id=order.client_order_id,
            venue_order_id=venue_id,
            book=order.book,
            instrument=order.instrument,
            status=ShardlineOrderStatus.FILLED,
            filled_quantity=order.quantity,
            avg_price=price,
            ts_ns=now,
            fill=fill,
        )

    async def cancel(self, client_order_id: str) -> OrderUpdate | None:
        return None  # everything has filled already: nothing rests to cancel

    async def modify(
        self,
        client_order_id: str,
        quantity: int | None = None,
        price: int | None = None,
        trigger_price: int | None = None,
    ) -> OrderUpdate | None:
        return None
