"""The kill switch reaches what the paper portfolio places itself, on a real local Ray.

The execution actor and the portfolio actor run under their real names ("execution", "portfolio"),
so the terminal's REST edge (in process, over the real `ActorDirectory`) finds them as it does in a
deployment.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.execution.actor import start_execution
from actors.orders import OrderStatus
from actors.portfolio.actor import PaperPortfolioActor, ShiftedClock
from actors.portfolio.gtt import GttStatus
from actors.portfolio.instruments import InstrumentKind, InstrumentSpec
from actors.portfolio.portfolio import MarketQuote
from cluster.config import load_config, parse_config
from cluster.topology import EXECUTION, NAMESPACE, PORTFOLIO

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_session")

IST = timezone(timedelta(hours=5, minutes=30))
SBIN = InstrumentSpec(key="NSE:3045", symbol="SBIN-EQ", kind=InstrumentKind.EQUITY, tick_size=5)
SECRET = "integration-secret-0123456789-0123456789"
HALTED = "the kill switch for book manual is engaged ({}); only orders that reduce a position are {}"
_streams = itertools.count()


class Desk:
    """The execution actor with the paper portfolio actor as its venue, both under their real names."""

    def __init__(self, tmp_path: Path, wait_until: Callable[..., Any]) -> None:
        for name in (EXECUTION, PORTFOLIO):  # another module's topology may still be going away
            wait_until(lambda name=name: not _running(name), 60, f"the name {name!r} to be free")
        config = parse_config({"data_dir": str(tmp_path), "portfolio": {"slippage_ticks": 0}})
        stream = f"kill-switch-it-{next(_streams)}-{time.time_ns()}"
        session_hour = int(datetime(2026, 7, 6, 10, 0, tzinfo=IST).timestamp()) * 10**9
        self.wait_until = wait_until
        self.portfolio_actor: Any = (
            ray.remote(PaperPortfolioActor)
            .options(name=PORTFOLIO, namespace=NAMESPACE, max_restarts=-1, num_cpus=0)
            .remote(
                config,
                journal_stream=f"portfolio-{stream}",
                instruments=[SBIN],
                clock=ShiftedClock(session_hour),
                publish=False,
            )
        )
        self.portfolio("stats")
        self.config, self.stream = config, stream
        self.others: list[Any] = []  # actors a test adds, killed with the desk
        self.execution_actor = self.start_execution()
        self.execution("update_marks", {SBIN.key: 80_000})
        self.market(80_000)

    def start_execution(self) -> Any:
        """The execution actor over its journal (the same one each time), the portfolio its venue."""
        return start_execution(
            self.config,
            options={"num_cpus": 0},
            venue=PORTFOLIO,
            journal_stream=f"execution-{self.stream}",
            redis_url="",
            load_catalog=False,
        )

    def portfolio(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(getattr(self.portfolio_actor, method).remote(*args, **kwargs), timeout=60)

    def execution(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(getattr(self.execution_actor, method).remote(*args, **kwargs), timeout=60)

    def market(self, ltp: int) -> None:
        quote = MarketQuote(instrument=SBIN.key, ltp=ltp, bid=ltp - 5, ask=ltp + 5, ts_ns=0)
        self.portfolio("on_market", [quote])

    def gtt(self, gtt_id: str) -> Any:
        return next(g for g in self.portfolio("gtt_list") if g.gtt_id == gtt_id)

    def risk_position(self, book: str = "manual") -> dict[str, int]:
        """The book's net positions as the execution actor's risk sees them."""
        from cluster.bench_orders_rest import execution_net_positions

        return execution_net_positions(self.execution("risk_state"), book)

    def halts_become(self, halts: dict[str | None, str]) -> None:
        self.wait_until(lambda: self.portfolio("entry_halts") == halts, 30, f"the portfolio's halts {halts}")

    def restart(self, handle: Any) -> None:
        """Kill an actor's process; Ray starts a new one, which rebuilds from its journal."""
        before = ray.get(handle.stats.remote(), timeout=60)["pid"]
        ray.kill(handle, no_restart=False)

        def back() -> bool:
            try:
                return bool(ray.get(handle.stats.remote(), timeout=10)["pid"] != before)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return False

        self.wait_until(back, 60, "the actor's restart")

    def close(self) -> None:
        for handle in (self.execution_actor, self.portfolio_actor, *self.others):
            ray.kill(handle, no_restart=True)
        for name in (EXECUTION, PORTFOLIO):
            self.wait_until(lambda name=name: not _running(name), 60, f"{name} to go")


class BookListener:
    """Stands in for a shard subscribed to a book: keeps the venue fills it is sent."""

    def __init__(self) -> None:
        self.fills: list[Any] = []

    def on_order_updates(self, updates: list[Any]) -> int:
        return 0

    def on_venue_fills(self, fills: list[Any]) -> int:
        self.fills += fills
        return len(fills)

    def venue_fills(self) -> list[Any]:
        return self.fills


def book_listener(desk: Desk, book: str) -> Any:
    name = f"book-listener-{next(_streams)}"
    listener = ray.remote(BookListener).options(name=name, namespace=NAMESPACE, num_cpus=0).remote()
    ray.get(listener.venue_fills.remote(), timeout=60)
    assert desk.execution("register_book", book, name)
    desk.others.append(listener)
    return listener


def _running(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


@pytest.fixture
def desk(tmp_path: Path, wait_until: Callable[..., Any]) -> Iterator[Desk]:
    d = Desk(tmp_path, wait_until)
    yield d
    d.close()


def test_a_gtt_that_triggers_while_the_switch_is_engaged_is_rejected(desk: Desk) -> None:
    rule = desk.portfolio("gtt_create", "manual", SBIN.key, "BUY", 10, "DELIVERY", [(82_000, 82_100)])
    desk.execution("kill_switch", "manual", True, "desk closed")
    desk.halts_become({"manual": "desk closed"})
    desk.restart(desk.portfolio_actor)  # the halt is in the portfolio's journal
    assert desk.portfolio("entry_halts") == {"manual": "desk closed"}

    desk.market(82_000)
    fired = desk.gtt(rule.gtt_id)
    assert fired.status is GttStatus.TRIGGERED and fired.order_id is not None
    order = desk.portfolio("order", fired.order_id)
    assert (order.status, order.reason) == (OrderStatus.REJECTED, HALTED.format("desk closed", "placed"))
    assert desk.portfolio("positions") == [] and desk.portfolio("trades") == []

    desk.execution("kill_switch", "manual", False)
    desk.halts_become({})
    again = desk.portfolio("gtt_create", "manual", SBIN.key, "BUY", 10, "DELIVERY", [(83_000, 83_100)])
    desk.market(83_000)
    fired = desk.gtt(again.gtt_id)
    assert desk.portfolio("order", fired.order_id).status is OrderStatus.FILLED


def test_fills_of_the_portfolios_own_orders_reach_the_execution_actors_risk(desk: Desk) -> None:
    listener = book_listener(desk, "manual")
    rule = desk.portfolio("gtt_create", "manual", SBIN.key, "BUY", 10, "INTRADAY", [(82_000, 82_100)])
    desk.market(82_000)
    fired = desk.gtt(rule.gtt_id)
    assert desk.portfolio("order", fired.order_id).status is OrderStatus.FILLED

    desk.wait_until(
        lambda: desk.risk_position() == {SBIN.key: 10}, 30, "the GTT fill in the execution's risk"
    )
    # The strategies trading the book hear of it too, so their positions follow the book's.
    desk.wait_until(
        lambda: [f.client_order_id for f in ray.get(listener.venue_fills.remote())] == [fired.order_id],
        30,
        "the GTT fill at the book's subscriber",
    )
    # With the switch engaged, selling what the GTT bought only reduces a position: it goes.
    desk.execution("kill_switch", "manual", True, "desk closed")
    exit_order = desk.execution("submit", _market("exit-1", "SELL", 10))
    assert exit_order.status is not OrderStatus.REJECTED, exit_order.reason
    desk.wait_until(lambda: desk.risk_position() == {}, 30, "the exit in the execution's risk")  # flat
    desk.restart(desk.execution_actor)  # each fill booked once, from its journal
    assert desk.risk_position() == {}
    realized = desk.execution("risk_state").books["manual"].realized_pnl
    assert realized == Decimal("-1.00")  # 10 bought at 820.05 (the ask), sold at 819.95 (the bid)


def test_fills_made_while_the_execution_actor_was_gone_reach_its_risk_when_it_returns(desk: Desk) -> None:
    listener = book_listener(desk, "manual")  # a subscription the journal keeps
    rule = desk.portfolio("gtt_create", "manual", SBIN.key, "BUY", 10, "INTRADAY", [(82_000, 82_100)])
    ray.kill(desk.execution_actor, no_restart=True)  # gone for good: nobody hears of the fill
    desk.wait_until(lambda: not _running(EXECUTION), 60, "the execution actor to go")
    desk.market(82_000)
    fired = desk.gtt(rule.gtt_id)
    assert desk.portfolio("order", fired.order_id).status is OrderStatus.FILLED
    [fill] = desk.portfolio("own_fills")
    assert (fill.client_order_id, fill.quantity, fill.price) == (fired.order_id, 10, 82_005)

    desk.execution_actor = desk.start_execution()  # a new one, over the same journal
    # Its first command asks the portfolio for the fills it missed: with the switch engaged,
    # selling the 10 the GTT bought only reduces a position, so it goes, and a larger sale does not.
    desk.execution("kill_switch", "manual", True, "desk closed")
    assert desk.risk_position() == {SBIN.key: 10}
    desk.wait_until(
        lambda: ray.get(listener.venue_fills.remote()) == [fill], 30, "the fill at the book's subscriber"
    )
    too_many = desk.execution("submit", _market("exit-11", "SELL", 11))
    assert too_many.status is OrderStatus.REJECTED and "only orders that reduce" in too_many.reason
    exit_order = desk.execution("submit", _market("exit-10", "SELL", 10))
    assert exit_order.status is not OrderStatus.REJECTED, exit_order.reason
    desk.restart(desk.execution_actor)  # the caught-up fill is journaled: booked once, not again
    desk.execution("kill_switch", "manual", True, "desk closed")
    desk.wait_until(lambda: desk.risk_position() == {}, 30, "flat after the exit")
    assert desk.execution("stats")["duplicate_fills"] == 0


def _market(client_order_id: str, side: str, quantity: int) -> Any:
    from actors.orders import OrderRequest, OrderType, Product, Side

    return OrderRequest(
        client_order_id=client_order_id, book="manual", instrument=SBIN.key, side=Side(side),
        quantity=quantity, order_type=OrderType.MARKET, product=Product.INTRADAY,
    )  # fmt: skip


def test_a_restarted_execution_actor_brings_the_portfolio_to_its_switches(desk: Desk) -> None:
    desk.execution("kill_switch", None, True, "engaged by an operator")
    desk.halts_become({None: "engaged by an operator"})
    # A halt the execution actor does not hold (say, yesterday's): its next start lifts it.
    assert desk.portfolio("set_entry_halts", {"ema-equities": "yesterday's loss"}, time.time_ns())
    desk.restart(desk.execution_actor)
    desk.halts_become({None: "engaged by an operator"})


def test_the_terminal_refuses_gtt_and_brackets_while_the_switch_is_engaged(desk: Desk) -> None:
    from serve.api import create_api
    from serve.service import ActorDirectory, CatalogLookup, TerminalService

    config = load_config()
    service = TerminalService(config, CatalogLookup.load(config), ActorDirectory())
    gtt = {"instrument": SBIN.key, "side": "BUY", "quantity": 10, "trigger_price": "820", "price": "821"}
    bracket = {
        "instrument": SBIN.key, "side": "BUY", "quantity": 10, "price": "795", "stop_loss": "780",
        "target": "820",
    }  # fmt: skip
    with TestClient(create_api(config, service, SECRET, feed=None, heartbeat_s=3600)) as client:
        admin, trader = (_sign_in(client, user) for user in ("admin", "trader"))
        engaged = client.post(
            "/api/v1/risk/kill-switch", json={"engaged": True, "book": "manual"}, headers=admin
        )
        assert engaged.status_code == 200, engaged.text
        reason = HALTED.format("engaged by an operator", "accepted")

        refused = client.post("/api/v1/gtt", json=gtt, headers=trader)
        assert (refused.status_code, refused.json()["message"]) == (422, f"GTT refused: {reason}")
        refused = client.post("/api/v1/brackets", json=bracket, headers=trader)
        assert (refused.status_code, refused.json()["message"]) == (422, f"bracket refused: {reason}")
        assert client.get("/api/v1/gtt", headers=trader).json() == []
        assert client.get("/api/v1/brackets", headers=trader).json() == []
        other_book = client.post("/api/v1/gtt", json=gtt | {"book": "ema-equities"}, headers=trader)
        assert other_book.status_code == 201, other_book.text

        released = client.post(
            "/api/v1/risk/kill-switch", json={"engaged": False, "book": "manual"}, headers=admin
        )
        assert released.status_code == 200, released.text
        created = client.post("/api/v1/gtt", json=gtt, headers=trader)
        assert (created.status_code, created.json()["status"]) == (201, "ACTIVE")
        placed = client.post("/api/v1/brackets", json=bracket, headers=trader)
        assert (placed.status_code, placed.json()["status"]) == (201, "PENDING")


def _sign_in(client: TestClient, user: str) -> dict[str, str]:
    answer = client.post("/api/v1/auth/login", json={"username": user, "password": f"{user}-local"})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}
