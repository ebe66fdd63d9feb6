"""The order-update socket client against the simulator: every order change arrives as our
status, in order, and the socket comes back (and says so) after it is cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.angel.auth import AngelCredentials
from actors.angel.factories import AngelConnection, AngelEndpoints, connect
from actors.angel.order_updates import OrderUpdateClient
from actors.angel.schemas import BrokerOrder
from actors.orders import OrderRequest, OrderStatus, OrderType, Side
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.config import FeedConfig, SimConfig

INSTRUMENTS = synthetic_universe(20, seed=9)
EQUITY = INSTRUMENTS[0]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    config = SimConfig(tick_rate=1_000, seed=9, enforce_rate_limits=False)
    with SimServer(config, INSTRUMENTS).run_in_thread() as server:
        yield server


@pytest.fixture
async def angel(sim: SimServer, tmp_path: Path) -> Any:
    conn = connect(
        AngelCredentials.for_simulator(sim.config),
        AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url),
        tmp_path,
    )
    yield conn
    await conn.close()


async def eventually(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def statuses(updates: list[BrokerOrder], order_id: str) -> list[OrderStatus]:
    return [u.status for u in updates if u.venue_order_id == order_id]


async def test_order_changes_arrive_as_our_statuses(angel: AngelConnection) -> None:
    updates: list[BrokerOrder] = []
    client = angel.order_update_client(updates.append)
    await client.start()
    try:
        await client.wait_connected()
        await eventually(lambda: client.counts["greetings"] == 1, what="the AB00 greeting")
        (quote,) = await angel.rest.quote([EQUITY.key])
        resting = max(quote.lower_circuit, quote.ltp * 97 // 100 // EQUITY.tick_size * EQUITY.tick_size)
        limit = await angel.rest.place_order(
            OrderRequest(
                client_order_id="l1",
                book="manual",
                instrument=EQUITY.key,
                side=Side.BUY,
                quantity=2,
                order_type=OrderType.LIMIT,
                price=resting,
            ),
            EQUITY.symbol,
        )
        await angel.rest.cancel_order(limit.orderid)
        market = await angel.rest.place_order(
            OrderRequest(
                client_order_id="m1", book="manual", instrument=EQUITY.key, side=Side.BUY, quantity=3
            ),
            EQUITY.symbol,
        )
        await eventually(
            lambda: (
                statuses(updates, limit.orderid)[-1:] == [OrderStatus.CANCELLED]
                and statuses(updates, market.orderid)[-1:] == [OrderStatus.FILLED]
            ),
            what="the cancel and the fill",
        )
    finally:
        await client.stop()
    assert statuses(updates, limit.orderid) == [OrderStatus.OPEN, OrderStatus.CANCELLED]
    assert statuses(updates, market.orderid)[0] == OrderStatus.OPEN
    filled = [u for u in updates if u.venue_order_id == market.orderid][-1]
    assert filled.filled_quantity == 3 and filled.avg_price > 0
    limit_update = next(u for u in updates if u.venue_order_id == limit.orderid)
    assert (limit_update.price, limit_update.instrument, limit_update.side) == (resting, EQUITY.key, Side.BUY)
    assert client.counts["malformed"] == 0


async def test_socket_comes_back_after_a_cut_and_asks_for_reconciliation(
    angel: AngelConnection, sim: SimServer
) -> None:
    updates: list[BrokerOrder] = []
    reconciled = []

    async def reconcile() -> None:
        reconciled.append(len(await angel.rest.order_book()))

    client = OrderUpdateClient(
        sim.order_url,
        angel.order_update_headers,
        updates.append,
        FeedConfig(reconnect_initial_s=0.05),
        on_auth_refused=angel.renew_session,
        on_reconnected=reconcile,
    )
    await client.start()
    try:
        await client.wait_connected()
        assert sim.drop_connections() >= 1
        await eventually(
            lambda: client.counts["reconnects"] == 1 and client.connected.is_set(), what="reconnect"
        )
        await eventually(lambda: reconciled == [0], what="the reconcile hook")
        placed = await angel.rest.place_order(
            OrderRequest(
                client_order_id="m2", book="manual", instrument=EQUITY.key, side=Side.SELL, quantity=1
            ),
            EQUITY.symbol,
        )
        await eventually(lambda: OrderStatus.FILLED in statuses(updates, placed.orderid), what="the fill")
    finally:
        await client.stop()
    assert client.counts["connects"] == 2
