"""The portfolio actor on a real local Ray: the paper venue behind the real execution actor, GTT and
bracket flows, quotes from the real router, the heartbeat's square-off, and restarts from the journal."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from actors.execution.actor import start_execution
from actors.orders import OrderRequest, OrderStatus, OrderType, Product, Side
from actors.portfolio.actor import PaperPortfolioActor, ShiftedClock
from actors.portfolio.brackets import BracketStatus
from actors.portfolio.gtt import GttStatus
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.portfolio import MarketQuote, PortfolioError
from actors.router.actor import RouterActor
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.config import ShardlineConfig, parse_config
from cluster.topology import NAMESPACE

pytestmark = pytest.mark.usefixtures("ray_session")

IST = timezone(timedelta(hours=5, minutes=30))
SBIN = InstrumentSpec(key="NSE:3045", symbol="SBIN-EQ", kind=InstrumentKind.EQUITY)
INFY = InstrumentSpec(key="NSE:1594", symbol="INFY-EQ", kind=InstrumentKind.EQUITY)
NIFTY_FUT = InstrumentSpec(
    key="NFO:61093", symbol="NIFTY28JUL26FUT", kind=InstrumentKind.FUTURE, lot_size=65, tick_size=10,
    expiry=date(2026, 7, 28),
)  # fmt: skip
INSTRUMENTS = [SBIN, INFY, NIFTY_FUT]  # iids 0, 1, 2
_names = itertools.count()


def ist(hour: int, minute: int, second: int = 0) -> int:
    return int(datetime(2026, 7, 6, hour, minute, second, tzinfo=IST).timestamp()) * 10**9


def quote(spec: InstrumentSpec, ltp: int, bid: int = 0, ask: int = 0, **depth: int) -> MarketQuote:
    return MarketQuote(instrument=spec.key, ltp=ltp, bid=bid, ask=ask, ts_ns=0, **depth)


class Venue:
    """A portfolio actor named for one test, with its own journal, on a clock set to a session hour."""

    def __init__(
        self,
        config: ShardlineConfig,
        *,
        start: int = ist(10, 0),
        execution: str = "none",
        publish: bool = False,
    ) -> None:
        n = next(_names)
        self.name = f"portfolio-it-{n}"
        self.actor: Any = (
            ray.remote(PaperPortfolioActor)
            .options(name=self.name, namespace=NAMESPACE, max_restarts=-1, num_cpus=0)
            .remote(
                config,
                journal_stream=self.name,
                execution=execution,
                instruments=INSTRUMENTS,
                clock=ShiftedClock(start),
                publish=publish,
            )
        )

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(getattr(self.actor, method).remote(*args, **kwargs))

    def market(self, *quotes: MarketQuote) -> None:
        self("on_market", list(quotes))

    def restart(self, wait_until: Callable[..., Any]) -> None:
        """Kill the actor's process; Ray starts a new one, which rebuilds from the journal."""
        before = self("stats")["pid"]
        ray.kill(self.actor, no_restart=False)

        def back() -> bool:
            try:
                return bool(self("stats")["pid"] != before)
            except ray.exceptions.RayActorError:
                return False

        wait_until(back, 60, "the portfolio actor's restart")

    def close(self) -> None:
        ray.kill(self.actor, no_restart=True)


@pytest.fixture
def make_venue(tmp_path: Path) -> Iterator[Callable[..., Venue]]:
    venues: list[Venue] = []

    def make(
        portfolio: dict[str, Any] | None = None, sim: dict[str, Any] | None = None, **kwargs: Any
    ) -> Venue:
        config = parse_config(
            {
                "data_dir": str(tmp_path),
                "portfolio": {"starting_cash_rupees": 1_000_000, "slippage_ticks": 0, **(portfolio or {})},
                "sim": sim or {},
            }
        )
        venue = Venue(config, **kwargs)
        venues.append(venue)
        return venue

    yield make
    for venue in venues:
        venue.close()


def request(coid: str, spec: InstrumentSpec, side: Side, quantity: int, **kwargs: Any) -> OrderRequest:
    return OrderRequest(
        client_order_id=coid, book="manual", instrument=spec.key, side=side, quantity=quantity, **kwargs
    )


def test_the_paper_venue_behind_the_execution_actor(
    tmp_path: Path, make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    config = parse_config({"data_dir": str(tmp_path), "portfolio": {"starting_cash_rupees": 1_000_000}})
    execution_name = f"execution-portfolio-it-{next(_names)}"
    venue = make_venue(execution=execution_name)
    execution = start_execution(
        config,
        options={"name": execution_name, "num_cpus": 0},
        venue=venue.name,
        journal_stream=execution_name,
        redis_url="",
        load_catalog=False,
    )
    try:
        ray.get(execution.update_marks.remote({SBIN.key: 80_000}))
        venue.market(quote(SBIN, 80_000, 79_995, 80_005))
        ray.get(execution.submit.remote(request("t-1", SBIN, Side.BUY, 10)))
        filled = wait_until(
            lambda: (u := ray.get(execution.order.remote("t-1"))) and u.status is OrderStatus.FILLED and u,
            30,
            "the execution actor to hear of the fill",
        )
        assert (filled.filled_quantity, filled.avg_price) == (10, 80_005)
        [position] = venue("positions")
        assert (position.quantity, position.avg_price) == (10, 80_005)

        limit = request("t-2", SBIN, Side.BUY, 10, order_type=OrderType.LIMIT, price=79_000)
        ray.get(execution.submit.remote(limit))
        wait_until(lambda: venue("summary").margin_blocked == 158_000, 30, "the limit order's margin block")
        ray.get(execution.cancel.remote("t-2"))
        wait_until(
            lambda: ray.get(execution.order.remote("t-2")).status is OrderStatus.CANCELLED, 30, "the cancel"
        )
        assert venue("order", "t-2").status is OrderStatus.CANCELLED
        assert venue("summary").margin_blocked == 0
        assert venue("stats")["delivered"] >= 4  # open, filled, open, cancelled
    finally:
        ray.kill(execution, no_restart=True)


def test_an_oco_gtt_survives_a_restart_and_fires_one_leg(
    make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    venue = make_venue()
    venue.market(quote(SBIN, 80_000, 79_995, 80_005))
    venue("submit", request("h-1", SBIN, Side.BUY, 10, product=Product.DELIVERY))
    legs = [(85_000, 84_900), (78_000, 77_900)]
    rule = venue("gtt_create", "manual", SBIN.key, "SELL", 10, "DELIVERY", legs)
    assert [leg.role for leg in rule.legs] == ["STOP_LOSS", "TARGET"]
    with pytest.raises(PortfolioError, match="needs a long DELIVERY position of at least 20"):
        venue("gtt_create", "manual", SBIN.key, "SELL", 20, "DELIVERY", legs)
    before = (venue("gtt_list"), venue("positions"), venue("trades"), venue("summary"))

    venue.restart(wait_until)
    venue.market(quote(SBIN, 80_000, 79_995, 80_005))  # marks are market data, not journaled state
    assert (venue("gtt_list"), venue("positions"), venue("trades"), venue("summary")) == before

    venue.market(quote(SBIN, 77_900, 77_895, 77_905))  # the stop-loss leg's trigger
    [fired] = venue("gtt_list")
    assert (fired.status, fired.triggered_leg) == (GttStatus.TRIGGERED, "STOP_LOSS")
    assert venue("order", fired.order_id).status is OrderStatus.OPEN  # LIMIT ₹779 above the ₹778.95 bid
    venue.market(quote(SBIN, 85_000, 84_995, 85_005))  # the target's trigger: the rule is done
    assert venue("gtt_list")[0].triggered_leg == "STOP_LOSS"
    assert venue("order", fired.order_id).avg_price == 84_995  # the resting LIMIT sell filled
    assert venue("positions")[0].quantity == 0


def test_a_bracket_with_partial_fills_and_a_trailing_stop_across_a_restart(
    make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    venue = make_venue(sim={"partial_fills": True})
    venue.market(quote(SBIN, 80_000, 79_995, 80_005, bid_qty=100, ask_qty=100))
    placed = venue(
        "bracket_place", book="manual", instrument=SBIN.key, side="BUY", quantity=10, product="INTRADAY",
        entry_type="LIMIT", entry_price=79_500, stop_loss=78_500, target=83_000, trailing_stop=500,
    )  # fmt: skip
    assert placed.status is BracketStatus.PENDING
    venue.market(quote(SBIN, 79_500, 79_490, 79_500, bid_qty=100, ask_qty=4))
    live = venue("bracket_list")[0]
    assert (live.entry_filled, live.protected) == (4, 4)
    assert venue("order", live.target_order_id).status is OrderStatus.OPEN
    venue.market(quote(SBIN, 79_500, 79_490, 79_500, bid_qty=100, ask_qty=6))
    assert venue("bracket_list")[0].protected == 10
    # The trail: anchor ₹795 (the first entry fill); ₹805.50 is two ₹5 steps up: stop ₹785 -> ₹795.
    venue.market(quote(SBIN, 80_550, 80_545, 80_555, bid_qty=100, ask_qty=100))
    assert venue("bracket_list")[0].stop_loss == 79_500

    venue.restart(wait_until)
    restored = venue("bracket_list")[0]
    assert (restored.stop_loss, restored.protected, restored.status) == (79_500, 10, BracketStatus.ACTIVE)

    venue.market(quote(SBIN, 79_500, 79_490, 79_510))  # LTP at the trailed stop; depth unknown
    done = venue("bracket_list")[0]
    assert (done.status, done.reason, done.exited) == (BracketStatus.CLOSED, "stop-loss hit", 10)
    assert venue("order", live.target_order_id).status is OrderStatus.CANCELLED
    [position] = venue("positions")
    assert (position.quantity, position.realized_pnl) == (0, (79_490 - 79_500) * 10)


def test_quotes_from_the_real_router_pulled_and_pushed(
    make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    venue = make_venue()
    router_name = f"router-portfolio-it-{next(_names)}"
    router: Any = (
        ray.remote(RouterActor)
        .options(name=router_name, namespace=NAMESPACE, num_cpus=0)
        .remote(parse_config({"router": {"ui_snapshot_hz": 20}}).router)
    )
    try:
        ticks = np.zeros(1, dtype=TICK_DTYPE)
        ticks["iid"], ticks["ltp"], ticks["mode"] = 1, 150_000, FeedMode.LTP  # INFY
        ray.get(router.push.remote(ticks))
        venue("start_quote_pump", router_name, 20.0)
        venue.market(quote(INFY, 150_000))
        venue("gtt_create", "manual", INFY.key, "BUY", 5, "DELIVERY", [(152_000, 152_500)])
        ticks["ltp"] = 152_000
        ray.get(router.push.remote(ticks))
        wait_until(lambda: venue("gtt_list")[0].status is GttStatus.TRIGGERED, 30, "the pump to fire the GTT")
        wait_until(lambda: venue("positions"), 30, "the GTT's order to fill")
        assert venue("positions")[0].quantity == 5

        # Pushed by the router's quote publisher instead.
        ray.get(router.register_quote_listener.remote(venue.name, "on_quotes"))
        ticks["iid"], ticks["ltp"] = 0, 80_000  # SBIN: not watched, but pushed all the same
        ray.get(router.push.remote(ticks))
        pushed = wait_until(lambda: venue("quote", SBIN.key), 30, "a pushed quote")
        assert (pushed.ltp, pushed.bid, pushed.ask) == (80_000, 0, 0)
        assert venue("submit", request("p-1", SBIN, Side.BUY, 1)).accepted
        assert {p.instrument: p.quantity for p in venue("positions")} == {INFY.key: 5, SBIN.key: 1}
    finally:
        ray.kill(router, no_restart=True)


def test_the_heartbeat_squares_off_intraday_at_the_configured_time(
    make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    # The actor's clock reads 15:19:40 when the test makes it: room for a slow start on a busy machine.
    venue = make_venue(start=ist(15, 19, 40))
    venue.market(quote(SBIN, 80_000, 79_995, 80_005))
    venue("submit", request("i-1", SBIN, Side.BUY, 10))
    venue("submit", request("d-1", SBIN, Side.BUY, 5, product=Product.DELIVERY))
    assert venue("quote", SBIN.key).ts_ns < ist(15, 20), "the actor started too late to test the square-off"
    assert {p.product: p.quantity for p in venue("positions")} == {Product.INTRADAY: 10, Product.DELIVERY: 5}
    # No quote or call moves the clock past 15:20: the heartbeat does.
    squared = {Product.INTRADAY: 0, Product.DELIVERY: 5}
    wait_until(
        lambda: {p.product: p.quantity for p in venue("positions")} == squared,
        60,
        "the intraday auto square-off",
    )
    exit_trade = venue("trades")[-1]
    assert (exit_trade.side, exit_trade.quantity, exit_trade.price) == (Side.SELL, 10, 79_995)


def test_orders_the_venue_places_itself_reach_the_terminal_hub(
    make_venue: Callable[..., Venue], wait_until: Callable[..., Any]
) -> None:
    from serve.hub import get_or_create_hub_actor

    hub = get_or_create_hub_actor()
    venue = make_venue(publish=True)
    venue.market(quote(SBIN, 80_000, 79_995, 80_005))
    placed = venue(
        "bracket_place", book="manual", instrument=SBIN.key, side="BUY", quantity=10, product="INTRADAY",
        entry_type="MARKET", stop_loss=78_000, target=83_000,
    )  # fmt: skip
    seen: dict[tuple[str, str], dict[str, Any]] = {}

    def published() -> bool:
        _, updates = ray.get(hub.poll.remote(0, 1.0))
        seen.update({(u.channel, u.key): u.data for u in updates})
        return ("orders", placed.entry_order_id) in seen and (
            "positions",
            f"manual|{SBIN.key}|INTRADAY",
        ) in seen

    wait_until(published, 30, "the bracket's orders and position on the hub")
    entry = seen["orders", placed.entry_order_id]
    assert (entry["status"], entry["side"], entry["tag"], entry["avg_price"]) == (
        "FILLED",
        "BUY",
        "BRK-1",
        80_005,
    )
    position = seen["positions", f"manual|{SBIN.key}|INTRADAY"]
    assert (position["quantity"], position["avg_price"]) == (10, 80_005)
