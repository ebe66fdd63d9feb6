"""Orders through the ExecutionEngine: journal first, idempotent ids, restore, reconcile, priorities."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import msgspec
import pytest

from actors.angel.common import EndpointGroup, RateLimit
from actors.angel.limits import RateLimiter
from actors.execution.engine import DuplicateClientOrderId, ExecutionEngine, ExecutionError
from actors.execution.records import (
    OrderAccepted,
    OrderAcknowledged,
    OrderFilled,
    OrderSent,
    Record,
    VenueOwnFill,
)
from actors.execution.risk import PreTradeRisk
from actors.execution.venue import (
    LocalPaperVenue,
    VenueAck,
    VenueOrderEvent,
)
from actors.journal.file_journal import FileJournal
from actors.orders import Fill, OrderRequest, OrderStatus, OrderType, OrderUpdate, Product, Side
from cluster.config import RiskConfig

SBIN = "NSE:3045"
TCS = "NSE:11536"
S = OrderStatus


def order(coid: str, **kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_order_id": coid,
        "book": "manual",
        "instrument": SBIN,
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.MARKET,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


async def settle() -> None:
    """Let the venue's queued reports (delivered on the next loop turns) arrive."""
    for _ in range(3):
        await asyncio.sleep(0)


class Harness:
    def __init__(self, path: Path, venue: LocalPaperVenue | None = None, **risk: object) -> None:
        self.path = path
        self.clock = itertools.count(1_000).__next__
        self.venue = venue or LocalPaperVenue(clock=self.clock)
        self.venue.set_quote(SBIN, ltp=80_000, bid=79_995, ask=80_005)
        self.venue.set_quote(TCS, ltp=350_000, bid=349_990, ask=350_010)
        self.risk_config = RiskConfig(**risk)  # type: ignore[arg-type]
        self.engine = self.open()
        self.updates: list[OrderUpdate] = []
        self.engine.add_listener(self.updates.append)

    def open(self) -> ExecutionEngine:
        journal = FileJournal(self.path / "execution.jsonl", clock=self.clock, lock_timeout_s=0.1)
        engine = ExecutionEngine(
            journal, self.venue, PreTradeRisk.from_config(self.risk_config), clock=self.clock
        )
        engine.update_marks({SBIN: 80_000, TCS: 350_000})
        return engine

    def reopen(self) -> ExecutionEngine:
        """A restarted engine: the journal closed and replayed into a fresh one, the venue unchanged."""
        self.engine.journal.close()
        self.engine = self.open()
        self.engine.restore()
        return self.engine

    def records(self) -> list[object]:
        journal = self.engine.journal
        return [e.record for e in journal.replay(record_type=Record)]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_a_market_order_is_journaled_before_it_is_sent_and_reports_each_step(h: Harness) -> None:
    update = await h.engine.submit(order("a"))
    assert update.status is S.OPEN and update.venue_order_id == "P1"
    await settle()
    final = h.engine.order("a")
    assert final is not None and final.status is S.FILLED and final.avg_price == 80_005
    kinds = [type(r) for r in h.records()]
    assert kinds == [OrderAccepted, OrderSent, OrderAcknowledged, OrderFilled]
    assert [u.status for u in h.updates] == [S.PENDING, S.OPEN, S.FILLED]
    assert h.updates[-1].fill is not None and h.updates[-1].fill.quantity == 10


async def test_a_refused_order_is_rejected_with_the_reason_and_never_sent(h: Harness) -> None:
    update = await h.engine.submit(order("big", quantity=200_000))
    assert update.status is S.REJECTED and "exceeds the global maximum order quantity" in update.reason
    assert await h.venue.find(order("big", quantity=200_000)) is None
    assert h.engine.stats.refused == 1 and h.engine.rejections["risk"] == {"all": 1}
    again = await h.engine.submit(order("big", quantity=200_000))  # a retry gets the same answer
    assert again == update


async def test_a_retried_submit_returns_the_existing_order_and_sends_nothing_twice(h: Harness) -> None:
    first, second = await asyncio.gather(h.engine.submit(order("a")), h.engine.submit(order("a")))
    assert first.client_order_id == second.client_order_id == "a"
    assert second.status is not S.PENDING  # answered after the first submit's acknowledgement
    await settle()
    assert len([r for r in h.records() if isinstance(r, OrderAccepted)]) == 1
    assert h.engine.stats.idempotent_replies == 1
    with pytest.raises(DuplicateClientOrderId, match="already used by a different order"):
        await h.engine.submit(order("a", quantity=11))


async def test_restore_rebuilds_exactly_the_state_and_keeps_ids_idempotent(h: Harness) -> None:
    await h.engine.submit(order("filled"))
    await h.engine.submit(order("resting", order_type=OrderType.LIMIT, price=79_000, side=Side.BUY))
    await h.engine.submit(order("sold", side=Side.SELL, quantity=4))
    await h.engine.submit(order("cancelled", order_type=OrderType.LIMIT, price=349_000, instrument=TCS))
    await h.engine.submit(order("refused", quantity=10**6))
    await settle()
    await h.engine.cancel("cancelled")
    await h.engine.modify("resting", price=79_100)
    await h.engine.set_kill_switch("other-book", True, "testing")
    h.engine.set_holdings("manual", TCS, 25)
    before = (h.engine.orders(), h.engine.risk_state(), h.engine.exposure("manual", SBIN))
    assert {u.client_order_id: u.status for u in before[0]} == {
        "filled": S.FILLED,
        "resting": S.OPEN,
        "sold": S.FILLED,
        "cancelled": S.CANCELLED,
        "refused": S.REJECTED,
    }
    engine = h.reopen()
    assert engine.orders() == before[0]
    assert engine.risk_state() == before[1]
    assert engine.exposure("manual", SBIN) == before[2]
    assert await engine.reconcile() == 1  # the resting order: the venue still has it
    assert engine.orders() == before[0]
    replay = await engine.submit(order("filled"))
    assert replay.status is S.FILLED and engine.stats.idempotent_replies == 1
    assert h.venue.submissions == 4  # filled, resting, sold, cancelled: the retry sent nothing


@pytest.mark.parametrize(
    ("crash_after", "venue_has_it", "expected", "reason"),
    [
        ("accepted", False, S.REJECTED, "not sent before the execution actor restarted"),
        ("sent", False, S.REJECTED, "the venue has no record of it"),
        ("sent", True, S.FILLED, ""),
    ],
)
async def test_reconcile_settles_what_a_crash_left_in_doubt(
    tmp_path: Path, crash_after: str, venue_has_it: bool, expected: OrderStatus, reason: str
) -> None:
    h = Harness(tmp_path)
    request = order("x")
    journal = h.engine.journal
    journal.append(OrderAccepted(ts_ns=1, request=request))
    if crash_after == "sent":
        journal.append(OrderSent(ts_ns=2, client_order_id="x"))
    if venue_has_it:
        await h.venue.submit(request)  # it got there, then the engine died before hearing back
    engine = h.reopen()
    assert engine.order("x") is not None and engine.order("x").status is S.PENDING  # type: ignore[union-attr]
    await engine.reconcile()
    await settle()
    state = engine.order("x")
    assert state is not None and state.status is expected and reason in state.reason
    if venue_has_it:
        assert state.filled_quantity == 10 and state.venue_order_id == "P1"


async def test_a_command_the_journal_cannot_record_changes_nothing(h: Harness) -> None:
    await h.engine.submit(order("a"))
    h.engine.journal.close()  # every append now fails with a real OS error
    with pytest.raises(ExecutionError, match="the journal could not record it"):
        await h.engine.submit(order("b"))
    assert h.engine.order("b") is None
    assert h.engine.stats.journal_failures == 1


class CrossingVenue(LocalPaperVenue):
    """Reports the fill before it answers the submit, as a fast exchange sometimes does."""

    name = "crossing"

    async def submit(self, order: OrderRequest) -> VenueAck:
        sink = self._sink
        self._sink = None
        ack = await super().submit(order)
        self._sink = sink
        assert sink is not None
        for fill in (await self.find(order)).fills:  # type: ignore[union-attr]
            sink(fill)
        return ack


async def test_a_fill_that_arrives_before_the_acknowledgement(tmp_path: Path) -> None:
    h = Harness(tmp_path, venue=CrossingVenue())
    update = await h.engine.submit(order("a"))
    assert update.status is S.FILLED and update.venue_order_id == "P1"
    assert [u.status for u in h.updates] == [S.PENDING, S.FILLED]


async def test_cancel_and_modify(h: Harness) -> None:
    await h.engine.submit(order("m", order_type=OrderType.LIMIT, price=79_000))
    await h.engine.submit(order("r", order_type=OrderType.LIMIT, price=78_000))
    modified = await h.engine.modify("m", quantity=20, price=79_500)
    assert modified is not None and modified.status is S.OPEN
    refused = await h.engine.modify("m", price=95_000)
    assert refused is not None and refused.status is S.REJECTED and "band" in refused.reason
    assert h.engine.order("m").status is S.OPEN  # type: ignore[union-attr]
    h.venue.set_quote(SBIN, ltp=79_450, bid=79_400, ask=79_450)  # crosses 79,500 but not 79,000
    await settle()
    filled = h.engine.order("m")
    assert filled is not None and (filled.status, filled.filled_quantity, filled.avg_price) == (
        S.FILLED,
        20,
        79_450,
    )
    cancelled = await h.engine.cancel("r")
    assert cancelled is not None and cancelled.status is S.CANCELLED
    again = await h.engine.cancel("r")
    assert again is not None and again.status is S.REJECTED and "already CANCELLED" in again.reason
    assert await h.engine.cancel("nope") is None
    assert await h.engine.modify("nope", price=1) is None


async def test_venue_reports_that_do_not_fit_are_refused_and_counted(h: Harness) -> None:
    await h.engine.submit(order("r", order_type=OrderType.LIMIT, price=79_000))
    fill = Fill(
        client_order_id="r",
        venue_order_id="P1",
        trade_id="x1",
        book="manual",
        instrument=SBIN,
        side=Side.BUY,
        quantity=11,
        price=79_000,
        product=Product.INTRADAY,
        ts_ns=5,
    )
    h.engine.on_venue_event(fill)  # 11 of 10
    h.engine.on_venue_event(msgspec.structs.replace(fill, client_order_id="ghost"))
    h.engine.on_venue_event(msgspec.structs.replace(fill, quantity=4))
    h.engine.on_venue_event(msgspec.structs.replace(fill, quantity=4))  # the same trade again
    assert h.engine.stats.illegal_events == 1
    assert h.engine.stats.unknown_events == 1
    assert h.engine.stats.duplicate_fills == 1
    state = h.engine.order("r")
    assert state is not None and state.filled_quantity == 4 and state.status is S.PARTIALLY_FILLED
    h.engine.on_venue_event(VenueOrderEvent(client_order_id="r", status=S.CANCELLED, reason="exchange"))
    h.engine.on_venue_event(msgspec.structs.replace(fill, trade_id="x2", quantity=6))  # crossed on the wire
    state = h.engine.order("r")
    assert state is not None and state.status is S.CANCELLED and state.filled_quantity == 10


async def test_kill_switch_cancels_entries_refuses_new_ones_and_lets_exits_go(h: Harness) -> None:
    await h.engine.submit(order("long", quantity=100))
    await settle()
    await h.engine.submit(order("entry", order_type=OrderType.LIMIT, price=79_000))
    await h.engine.set_kill_switch("manual", True, "desk closed")
    assert h.engine.order("entry").status is S.CANCELLED  # type: ignore[union-attr]
    refused = await h.engine.submit(order("more"))
    assert (
        refused.status is S.REJECTED
        and "kill switch for book manual is engaged (desk closed)" in refused.reason
    )
    exit_ = await h.engine.submit(order("exit", side=Side.SELL, quantity=100, is_exit=True))
    assert exit_.status is not S.REJECTED
    await h.engine.set_kill_switch("manual", False)
    assert (await h.engine.submit(order("again"))).status is not S.REJECTED


async def test_a_loss_past_the_limit_engages_the_switch_and_it_survives_a_restart(h: Harness) -> None:
    h.risk_config = RiskConfig(daily_loss_limit_rupees=500, global_daily_loss_limit_rupees=10_000)
    h.engine = h.reopen()
    await h.engine.submit(order("long", quantity=100))
    await settle()
    h.engine.update_marks({SBIN: 79_000})  # 100 × ₹10.05 down
    switch = h.engine.risk.kill_switch("manual")
    assert switch.engaged and "daily loss ₹1,005.00 reached the limit ₹500.00" in switch.reason
    engine = h.reopen()
    assert engine.risk.kill_switch("manual") == switch


async def test_cancels_and_exits_go_ahead_of_queued_entries_through_the_rate_limiter(tmp_path: Path) -> None:
    now = [0.0]

    async def advance(seconds: float) -> None:  # a clock that moves only when the limiter waits
        await asyncio.sleep(0)
        now[0] += seconds

    limiter = RateLimiter(
        {EndpointGroup.ORDERS: RateLimit(1, None, None)}, clock=lambda: now[0], sleep=advance
    )
    h = Harness(tmp_path)
    h.engine.limiter = limiter
    calls: list[str] = []
    original_submit, original_cancel = h.venue.submit, h.venue.cancel

    async def submit(request: OrderRequest) -> VenueAck:
        calls.append(f"submit {request.client_order_id}")
        return await original_submit(request)

    async def cancel(request: OrderRequest, venue_order_id: str) -> VenueAck:
        calls.append(f"cancel {request.client_order_id}")
        return await original_cancel(request, venue_order_id)

    h.venue.submit = submit  # type: ignore[method-assign]
    h.venue.cancel = cancel  # type: ignore[method-assign]
    await h.engine.submit(order("rest", order_type=OrderType.LIMIT, price=79_000))  # uses this second's call
    queued = [asyncio.ensure_future(h.engine.submit(order(f"e{n}"))) for n in range(3)]
    await asyncio.sleep(0)
    urgent = asyncio.ensure_future(h.engine.cancel("rest"))
    await asyncio.gather(*queued, urgent)
    assert calls[0] == "submit rest"
    assert calls[1] == "cancel rest"  # the cancel overtook the three queued entries
    assert sorted(calls[2:]) == ["submit e0", "submit e1", "submit e2"]


async def test_listeners_that_fail_do_not_break_the_engine(h: Harness) -> None:
    def broken(update: OrderUpdate) -> None:
        raise RuntimeError("listener down")

    h.engine.add_listener(broken)
    update = await h.engine.submit(order("a"))
    assert update.status is S.OPEN


async def test_a_fill_of_the_venues_own_order_moves_the_books_risk_position_once(h: Harness) -> None:
    # A GTT leg the venue placed itself bought 10 SBIN at 800.00 for the manual book.
    own = Fill(
        client_order_id="GTT-1-L1", venue_order_id="PV9", trade_id="PT9", book="manual", instrument=SBIN,
        side=Side.BUY, quantity=10, price=80_000, product=Product.INTRADAY, ts_ns=5, commission=120,
    )  # fmt: skip
    assert h.engine.on_venue_own_fill(own)
    assert not h.engine.on_venue_own_fill(own)  # delivered twice: booked once
    assert h.engine.risk.book_pnl("manual") == (0, 0, 120)
    # The position it made is one that a sell of 10 only reduces: that passes an engaged switch.
    await h.engine.set_kill_switch("manual", True, "drawdown")
    assert h.engine.risk.reduces_position(order("x", side=Side.SELL, quantity=10))
    assert not h.engine.risk.reduces_position(order("y", side=Side.SELL, quantity=11))
    exit_order = await h.engine.submit(order("exit", side=Side.SELL, quantity=10))
    assert exit_order.status is not S.REJECTED
    # Journaled: a restarted engine knows the position, and the trade id, as before.
    await settle()
    state = h.engine.risk_state()
    engine = h.reopen()
    assert engine.risk_state() == state
    assert not engine.on_venue_own_fill(own)
    assert [type(r) for r in h.records()].count(VenueOwnFill) == 1


async def test_catching_up_on_the_venues_own_fills_books_only_the_missed_ones(h: Harness) -> None:
    def own(trade_id: str, quantity: int) -> Fill:
        return Fill(
            client_order_id=f"GTT-{trade_id}", venue_order_id="PV1", trade_id=trade_id,
            book="manual", instrument=SBIN, side=Side.BUY, quantity=quantity, price=80_000,
            product=Product.INTRADAY, ts_ns=5,
        )  # fmt: skip

    assert h.engine.on_venue_own_fill(own("T1", 10))  # delivered as it happened
    assert h.engine.catch_up_venue_own_fills([own("T1", 10), own("T2", 5)]) == [own("T2", 5)]  # missed
    assert h.engine.catch_up_venue_own_fills([own("T1", 10), own("T2", 5)]) == []
    assert h.engine.stats.duplicate_fills == 0  # a catch-up's known fills are not duplicates
    assert h.engine.risk.reduces_position(order("s", side=Side.SELL, quantity=15))
    assert not h.engine.risk.reduces_position(order("s2", side=Side.SELL, quantity=16))


async def test_an_own_fill_with_a_client_order_id_of_ours_is_not_booked_twice(h: Harness) -> None:
    await h.engine.submit(order("a"))
    await settle()
    ours = h.engine.order("a")
    assert ours is not None and ours.status is S.FILLED
    fill = Fill(
        client_order_id="a", venue_order_id="P1", trade_id="other", book="manual", instrument=SBIN,
        side=Side.BUY, quantity=10, price=80_005, product=Product.INTRADAY, ts_ns=6,
    )  # fmt: skip
    assert not h.engine.on_venue_own_fill(fill)
    assert h.engine.risk.reduces_position(order("s", side=Side.SELL, quantity=10))
    assert not h.engine.risk.reduces_position(order("s2", side=Side.SELL, quantity=11))
