"""The execution actor on a real local Ray: killed and rebuilt from its journal (files and Redis)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.execution.actor import PaperVenueActor, start_execution
from actors.orders import OrderRequest, OrderStatus, OrderType, OrderUpdate, Side
from cluster.config import ShardlineConfig, parse_config
from cluster.topology import NAMESPACE

pytestmark = pytest.mark.usefixtures("ray_session")

SBIN, TCS = "NSE:3045", "NSE:11536"
S = OrderStatus
_names = itertools.count()


@ray.remote(num_cpus=0)
class Book:
    """Stands in for a strategy shard: registers its book and records the updates pushed to it."""

    def __init__(self, execution: str, book: str, name: str) -> None:
        self.updates: list[OrderUpdate] = []
        ray.get(ray.get_actor(execution, namespace=NAMESPACE).register_book.remote(book, name))

    def on_order_updates(self, updates: list[OrderUpdate]) -> int:
        self.updates.extend(updates)
        return len(updates)

    def seen(self) -> list[tuple[str, str]]:
        return [(u.client_order_id, u.status.value) for u in self.updates]


def order(coid: str, **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_order_id": coid,
        "book": "manual",
        "instrument": SBIN,
        "side": Side.BUY,
        "quantity": 10,
        "order_type": OrderType.MARKET,
    }
    fields.update(kw)
    return OrderRequest(**fields)


class Desk:
    """An execution actor with a paper venue actor, both uniquely named for one test."""

    def __init__(self, config: ShardlineConfig, redis_url: str | None) -> None:
        n = next(_names)
        self.name = f"execution-it-{n}"
        self.venue_name = f"paper-venue-it-{n}"
        self.venue = (
            ray.remote(PaperVenueActor)
            .options(name=self.venue_name, namespace=NAMESPACE, num_cpus=0)
            .remote(self.name)
        )
        ray.get(self.venue.set_quote.remote(SBIN, 80_000, 79_995, 80_005))
        ray.get(self.venue.set_quote.remote(TCS, 350_000, 349_990, 350_010))
        self.actor = start_execution(
            config,
            options={"name": self.name, "num_cpus": 0},
            venue=self.venue_name,
            journal_stream=f"execution-it-{n}",
            redis_url=redis_url or "",
            load_catalog=False,
        )
        self.marks = {SBIN: 80_000, TCS: 350_000}
        ray.get(self.actor.update_marks.remote(self.marks))

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return ray.get(getattr(self.actor, method).remote(*args, **kwargs))

    def pid(self) -> int | None:
        try:
            return int(ray.get(self.actor.stats.remote(), timeout=5)["pid"])
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return None

    def close(self) -> None:
        for handle in (self.actor, self.venue):
            ray.kill(handle, no_restart=True)


@pytest.fixture(params=["file", "redis"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    config = parse_config({"data_dir": str(tmp_path / "data")})
    d = Desk(config, redis_url)
    yield d
    d.close()


def test_killed_and_rebuilt_from_the_journal_with_exact_state(
    desk: Desk, wait_until: Callable[..., Any]
) -> None:
    book = Book.options(name=f"{desk.name}-book", namespace=NAMESPACE).remote(
        desk.name, "manual", f"{desk.name}-book"
    )
    assert ray.get(book.seen.remote()) == []  # registered (as a shard does in its __init__) before trading
    assert desk.call("submit", order("mkt")).status in (S.OPEN, S.FILLED)  # the fill may overtake the answer
    desk.call("submit", order("rest", order_type=OrderType.LIMIT, price=79_000))
    desk.call("submit", order("gone", order_type=OrderType.LIMIT, price=349_000, instrument=TCS))
    desk.call("submit", order("sold", side=Side.SELL, quantity=4))
    refused = desk.call("submit", order("huge", quantity=10**6))
    assert refused.status is S.REJECTED and "maximum order quantity" in refused.reason
    assert desk.call("cancel", "gone").status is S.CANCELLED
    assert desk.call("modify", "rest", price=79_100).status is S.OPEN
    desk.call("kill_switch", "other-book", True, "testing the switch")
    wait_until(lambda: desk.call("order", "sold").status is S.FILLED, 30, "fills pushed by the venue")
    wait_until(lambda: ("sold", "FILLED") in ray.get(book.seen.remote()), 30, "the book hears of its fills")
    before_orders, before_risk = desk.call("orders"), desk.call("risk_state")
    before_pid = desk.pid()

    ray.kill(desk.actor, no_restart=False)  # Ray restarts it; it replays its journal
    wait_until(lambda: (p := desk.pid()) is not None and p != before_pid, 60, "the restart")
    desk.call("update_marks", before_risk.marks)  # market data is not journaled: the feed sends it again
    assert desk.call("orders") == before_orders
    assert desk.call("risk_state") == before_risk
    stats = desk.call("stats")
    assert stats["replayed"] > 0 and stats["submitted"] == 0

    # A retry of an order sent before the restart returns it; the venue never sees it twice.
    submissions = ray.get(desk.venue.stats.remote())["submissions"]
    again = desk.call("submit", order("mkt"))
    assert again.status is S.FILLED and again.filled_quantity == 10
    assert ray.get(desk.venue.stats.remote())["submissions"] == submissions
    # The resting order lives on at the venue; its fill reaches the new incarnation and the book.
    ray.get(desk.venue.set_quote.remote(SBIN, 79_050, 79_000, 79_050))
    wait_until(lambda: desk.call("order", "rest").status is S.FILLED, 30, "the resting order's fill")
    wait_until(lambda: ("rest", "FILLED") in ray.get(book.seen.remote()), 30, "book registration survived")
    assert desk.call("risk_state").books["other-book"].kill_switch.engaged
    ray.kill(book, no_restart=True)


def test_a_submit_retried_across_a_restart_is_answered_from_the_journal(
    desk: Desk, wait_until: Callable[..., Any]
) -> None:
    first = desk.call("submit", order("once", order_type=OrderType.LIMIT, price=79_500))
    before_pid = desk.pid()
    ray.kill(desk.actor, no_restart=False)
    wait_until(lambda: (p := desk.pid()) is not None and p != before_pid, 60, "the restart")
    retried = desk.call("submit", order("once", order_type=OrderType.LIMIT, price=79_500))
    assert retried.client_order_id == first.client_order_id and retried.venue_order_id == first.venue_order_id
    assert ray.get(desk.venue.stats.remote())["submissions"] == 1
    with pytest.raises(ray.exceptions.RayTaskError, match="already used by a different order"):
        desk.call("submit", order("once", quantity=99))


def test_the_execution_actor_is_pinned_to_the_broker_ip_resource(desk: Desk) -> None:
    node = desk.call("stats")["node"]
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    assert nodes[node]["Resources"].get("broker_ip", 0) > 0
