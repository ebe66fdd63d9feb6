"""Vetting an order without placing it, and telling listeners when a kill switch changes."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from actors.execution.engine import ExecutionEngine, RiskRefusal
from actors.execution.records import Record
from actors.execution.risk import PreTradeRisk
from actors.execution.venue import LocalPaperVenue
from actors.journal.file_journal import FileJournal
from actors.orders import OrderRequest, OrderStatus, OrderType, Product, Side
from cluster.config import RiskConfig

SBIN = "NSE:3045"


def order(coid: str, **fields: object) -> OrderRequest:
    values: dict[str, object] = {
        "client_order_id": coid,
        "book": "manual",
        "instrument": SBIN,
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.LIMIT,
        "price": 80_000,
        "product": Product.DELIVERY,
    } | fields
    return OrderRequest(**values)  # type: ignore[arg-type]


async def settle() -> None:
    """Let the paper venue's fill reports (delivered on the next loop turns) arrive."""
    for _ in range(3):
        await asyncio.sleep(0)


class Desk:
    """An engine over a file journal and an in-process venue; it records what its listeners hear."""

    def __init__(self, path: Path, **risk: object) -> None:
        clock = itertools.count(1_000).__next__
        self.venue = LocalPaperVenue(clock=clock)
        self.venue.set_quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
        journal = FileJournal(path / "execution.jsonl", clock=clock, lock_timeout_s=0.1)
        limits = PreTradeRisk.from_config(RiskConfig(**risk))  # type: ignore[arg-type]
        self.engine = ExecutionEngine(journal, self.venue, limits, clock=clock)
        self.engine.update_marks({SBIN: 80_000})
        self.switches: list[dict[str | None, str]] = []
        self.engine.add_kill_switch_listener(self.switches.append)

    def records(self) -> list[object]:
        return [e.record for e in self.engine.journal.replay(record_type=Record)]


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


async def test_vet_refuses_what_submit_would_under_a_kill_switch_and_writes_nothing(desk: Desk) -> None:
    desk.engine.vet(order("gtt-leg"))  # passes while the switch is released
    await desk.engine.set_kill_switch("manual", True, "desk closed")
    journaled = desk.records()
    with pytest.raises(RiskRefusal) as refused:
        desk.engine.vet(order("gtt-leg"))
    assert desk.records() == journaled
    assert desk.engine.order("gtt-leg") is None
    assert desk.venue.submissions == 0
    submitted = await desk.engine.submit(order("same-order"))
    assert submitted.status is OrderStatus.REJECTED
    assert str(refused.value) == submitted.reason
    assert "the kill switch for book manual is engaged (desk closed)" in submitted.reason
    desk.engine.vet(order("other", book="ema-equities"))  # another book's switch is released
    await desk.engine.set_kill_switch("manual", False)
    desk.engine.vet(order("gtt-leg"))


async def test_vet_lets_an_order_that_reduces_a_position_through_the_switch(desk: Desk) -> None:
    await desk.engine.submit(order("long", order_type=OrderType.MARKET, price=0))
    await settle()
    await desk.engine.set_kill_switch(None, True, "engaged by an operator")
    desk.engine.vet(order("stop", side=Side.SELL, price=78_000))
    with pytest.raises(RiskRefusal, match=r"global kill switch is engaged \(engaged by an operator\)"):
        desk.engine.vet(order("stop", side=Side.SELL, quantity=11, price=78_000))


def test_a_deferred_order_is_not_held_to_todays_price_band_or_holdings(desk: Desk) -> None:
    far = order("gtt-leg", price=70_000)  # 12.5% below the last price
    with pytest.raises(RiskRefusal, match=r"is 12\.50% from the last price"):
        desk.engine.vet(far)
    desk.engine.vet(far, deferred=True)
    sell = order("gtt-sell", side=Side.SELL, price=85_000)
    with pytest.raises(RiskRefusal, match="short selling in delivery is not allowed"):
        desk.engine.vet(sell)
    desk.engine.vet(sell, deferred=True)
    with pytest.raises(RiskRefusal, match="exceeds the global maximum order quantity"):
        desk.engine.vet(order("huge", quantity=200_000), deferred=True)


async def test_listeners_hear_every_kill_switch_change(desk: Desk) -> None:
    await desk.engine.set_kill_switch("manual", True, "desk closed")
    await desk.engine.set_kill_switch(None, True, "engaged by an operator")
    await desk.engine.set_kill_switch("manual", False)
    assert desk.switches == [
        {"manual": "desk closed"},
        {"manual": "desk closed", None: "engaged by an operator"},
        {None: "engaged by an operator"},
    ]


async def test_listeners_hear_a_loss_trip(tmp_path: Path) -> None:
    desk = Desk(tmp_path, daily_loss_limit_rupees=500, global_daily_loss_limit_rupees=10_000)
    await desk.engine.submit(order("long", order_type=OrderType.MARKET, price=0, quantity=100))
    await settle()
    desk.engine.update_marks({SBIN: 79_000})  # 100 × ₹10.05 down
    assert desk.switches == [{"manual": "daily loss ₹1,005.00 reached the limit ₹500.00"}]
