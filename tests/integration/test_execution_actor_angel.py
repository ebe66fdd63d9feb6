"""The execution engine through `AngelVenue`: the real smartapi-python SDK against the simulator
(sim-live), real sockets. Fills carry the broker's trade ids; a restarted engine catches up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.angel.auth import AngelCredentials
from actors.angel.factories import AngelEndpoints, connect
from actors.execution.angel_venue import AngelVenue
from actors.execution.engine import ExecutionEngine
from actors.execution.records import OrderFilled, Record
from actors.execution.risk import PreTradeRisk
from actors.journal.file_journal import FileJournal
from actors.orders import OrderRequest, OrderStatus, OrderType, Side
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.config import RiskConfig, SimConfig

INSTRUMENTS = synthetic_universe(30, seed=11)
EQUITY = INSTRUMENTS[0]
SYMBOLS = {i.key: i.symbol for i in INSTRUMENTS}
S = OrderStatus


@pytest.fixture
def sim() -> Iterator[SimServer]:
    config = SimConfig(tick_rate=500, seed=11, enforce_rate_limits=False)
    with SimServer(config, INSTRUMENTS).run_in_thread() as server:
        yield server


class Broker:
    """An execution engine wired to the simulator through AngelVenue; `restart` builds a new one."""

    def __init__(self, sim: SimServer, path: Path) -> None:
        self.sim = sim
        self.path = path
        self.engine = self._open()

    def _open(self) -> ExecutionEngine:
        conn = connect(
            AngelCredentials.for_simulator(self.sim.config),
            AngelEndpoints(self.sim.rest_url, self.sim.stream_url, self.sim.order_url),
            self.path,
        )
        self.venue = AngelVenue(conn, SYMBOLS.get, book_ttl_s=0.0)
        journal = FileJournal(self.path / "execution.jsonl", lock_timeout_s=1)
        return ExecutionEngine(journal, self.venue, PreTradeRisk.from_config(RiskConfig()))

    async def restart(self) -> ExecutionEngine:
        await self.close()
        self.engine = self._open()
        self.engine.restore()
        await self.venue.start()
        await self.engine.reconcile()
        return self.engine

    async def close(self) -> None:
        await self.venue.close()
        self.engine.journal.close()


@pytest.fixture
async def broker(sim: SimServer, tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(sim, tmp_path)
    await b.venue.start()
    (quote,) = await b.venue._conn.rest.quote([EQUITY.key])
    b.engine.update_marks({EQUITY.key: quote.ltp})
    b.quote = quote  # type: ignore[attr-defined]
    yield b
    await b.close()


async def eventually(condition: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


def order(coid: str, **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": coid,
        "book": "manual",
        "instrument": EQUITY.key,
        "side": Side.BUY,
        "quantity": 5,
        "order_type": OrderType.MARKET,
        "tag": "it",
    }
    fields.update(kw)
    return OrderRequest(**fields)


def status(engine: ExecutionEngine, coid: str) -> OrderStatus | None:
    update = engine.order(coid)
    return None if update is None else update.status


def resting(broker: Broker) -> int:
    """A buy limit ~3% under the market, on the tick grid and inside the circuit band."""
    quote = broker.quote  # type: ignore[attr-defined]
    return max(quote.lower_circuit, quote.ltp * 97 // 100 // EQUITY.tick_size * EQUITY.tick_size)


async def test_a_market_order_fills_with_the_brokers_trade_ids(broker: Broker) -> None:
    engine = broker.engine
    ack = await engine.submit(order("m1"))
    assert ack.status in (S.OPEN, S.FILLED) and ack.venue_order_id
    await eventually(lambda: status(engine, "m1") is S.FILLED, what="the fill from the trade book")
    trades = await broker.venue._conn.rest.trade_book()
    broker_ids = {t.trade_id for t in trades if t.venue_order_id == ack.venue_order_id}
    journaled = [
        e.record for e in engine.journal.replay(record_type=Record) if isinstance(e.record, OrderFilled)
    ]
    assert {r.fill.trade_id for r in journaled} == broker_ids
    assert sum(r.fill.quantity for r in journaled) == 5


async def test_limit_order_modify_and_cancel_confirmed_by_the_socket(broker: Broker) -> None:
    engine = broker.engine
    price = resting(broker)
    ack = await engine.submit(order("l1", order_type=OrderType.LIMIT, price=price))
    assert ack.status is S.OPEN
    lower = price - 2 * EQUITY.tick_size
    modified = await engine.modify("l1", price=lower, quantity=7)
    assert modified is not None and modified.status is S.OPEN
    (row,) = [o for o in await broker.venue._conn.rest.order_book() if o.venue_order_id == ack.venue_order_id]
    assert (row.price, row.quantity) == (lower, 7)
    await engine.cancel("l1")
    await eventually(lambda: status(engine, "l1") is S.CANCELLED, what="the AB02 cancel confirmation")


async def test_a_broker_rejection_comes_back_with_the_brokers_reason(broker: Broker) -> None:
    engine = broker.engine
    quote = broker.quote  # type: ignore[attr-defined]
    above_circuit = (quote.upper_circuit // EQUITY.tick_size + 2) * EQUITY.tick_size
    engine.update_marks({EQUITY.key: above_circuit})  # our band check passes; the exchange's does not
    update = await engine.submit(order("r1", order_type=OrderType.LIMIT, price=above_circuit))
    await eventually(lambda: status(engine, "r1") is S.REJECTED, what="the rejection")
    final = engine.order("r1")
    assert update.client_order_id == "r1"
    assert final is not None and "above the upper circuit" in final.reason


async def test_a_restarted_engine_finds_its_working_order_and_the_fill_it_missed(broker: Broker) -> None:
    price = resting(broker)
    ack = await broker.engine.submit(order("w1", order_type=OrderType.LIMIT, price=price))
    await broker.close()
    # While no engine listens, the order fills at the broker.
    conn = connect(
        AngelCredentials.for_simulator(broker.sim.config),
        AngelEndpoints(broker.sim.rest_url, broker.sim.stream_url, broker.sim.order_url),
        broker.path / "side",
    )
    try:
        await conn.rest.modify_order(
            conn.rest.modify_params(
                next(o for o in await conn.rest.order_book() if o.venue_order_id == ack.venue_order_id),
                order(
                    "w1",
                    order_type=OrderType.LIMIT,
                    price=broker.quote.upper_circuit // EQUITY.tick_size * EQUITY.tick_size,
                ),  # type: ignore[attr-defined]
            )
        )
    finally:
        await conn.close()
    engine = await broker.restart()
    await eventually(lambda: status(engine, "w1") is S.FILLED, what="the fill found by reconcile")
    update = engine.order("w1")
    assert update is not None and update.filled_quantity == 5 and update.venue_order_id == ack.venue_order_id
