"""Hot swaps on a real local Ray, under a running tick stream: every tick reaches exactly one
version (checked from the feed sequence numbers each version saw), no order is duplicated or
orphaned, and a new version that fails to start or to take the state rolls back to the old one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray
from test_deployments import Desk, check_spec

from actors.journal.file_journal import FileJournal
from cluster import jobs
from cluster.deployments import DeploymentError, DeploymentRegistry, order_trader_tag
from cluster.swap import SwapFailed, audit_sequences

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def desk(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    d = Desk(tmp_path_factory.mktemp("swaps"))
    yield d
    d.close()


@pytest.fixture(autouse=True)
def _quiet_streams(desk: Desk) -> Iterator[None]:
    yield
    desk.stop_streams()


def finish(desk: Desk, name: str, stream: Any, wait_until: Callable[..., Any]) -> Any:
    """Stop the stream, let every tick be handled, and audit what the current version carries."""
    stream.stop()
    wait_until(lambda: desk.drained(name), 60, "the router to deliver every tick")
    return audit_sequences(desk.states(name), stream.last_seq_by_instrument())


def test_a_hot_swap_under_a_stream_is_exactly_once(desk: Desk, wait_until: Callable[..., Any]) -> None:
    universe = desk.universe(8)
    desk.call("start", check_spec("swappy", universe, config={"order_every": 40}))
    stream = desk.stream(universe, rate=2_000)
    stream.wait_for(2_000)

    report = desk.call(
        "swap", "swappy", strategy="test_deployments:SequenceCheckV2", config={"order_every": 30}
    )
    assert report["generation"] == 1 and report["shards"] == ["shard-swappy.1-0", "shard-swappy.1-1"]
    assert report["from_strategy"] == "cluster.swap:SequenceCheck"
    assert report["to_strategy"] == "test_deployments:SequenceCheckV2"
    assert all(size > 0 for size in report["state_moved"].values())
    # the old version's orders all reached the execution actor before it was stopped
    retired = report["retired"]
    assert retired["orders_in_execution"] == retired["orders_sent"] > 0
    assert not desk.shard_exists("shard-swappy-0") and not desk.shard_exists("shard-swappy-1")

    stream.wait_for(2_000)
    second = desk.call("swap", "swappy", strategy="cluster.swap:SequenceCheck", config={"order_every": 40})
    assert second["generation"] == 2
    stream.wait_for(1_000)
    audit = finish(desk, "swappy", stream, wait_until)
    assert audit.seen == audit.expected == stream.sent
    assert (audit.lost, audit.duplicated) == (0, 0)

    doc = desk.call("show", "swappy")
    assert (doc["state"], doc["generation"], doc["strategy"]) == ("running", 2, "cluster.swap:SequenceCheck")
    assert any("swapped" in h for h in doc["history"])
    sent_now = sum(s["orders_sent"] for s in doc["shard_detail"])
    book = ray.get(desk.execution.orders.remote("swappy"))
    ids = [o.client_order_id for o in book]
    # every order any version sent is in the book once; each version's ids carry its own tag
    assert len(ids) == len(set(ids)) == retired["orders_sent"] + second["retired"]["orders_sent"] + sent_now
    assert {order_trader_tag(i) for i in ids} <= {"000", "001", "1G000", "1G001", "2G000", "2G001"}
    desk.call("stop", "swappy")


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [
        ("test_deployments:FailsOnStart", "cannot warm up: no model file"),  # fails in warm-up
        ("test_deployments:FailsOnLoad", "state from an incompatible version"),  # fails after the hold
    ],
)
def test_a_failed_swap_rolls_back_to_the_old_version_losing_nothing(
    desk: Desk, wait_until: Callable[..., Any], strategy: str, reason: str
) -> None:
    universe = desk.universe(6, skip=20)
    name = f"keep-{strategy.rpartition(':')[2].lower()}"
    desk.call("start", check_spec(name, universe))
    stream = desk.stream(universe, rate=2_000)
    stream.wait_for(1_500)
    with pytest.raises(SwapFailed) as err:
        desk.call("swap", name, strategy=strategy, config={})
    assert reason in str(err.value) and "the old" in str(err.value)
    assert not desk.shard_exists(f"shard-{name}.1-0") and not desk.shard_exists(f"shard-{name}.1-1")
    stream.wait_for(1_500)  # the old version goes on taking ticks, the held ones first
    audit = finish(desk, name, stream, wait_until)
    assert audit.seen == stream.sent and (audit.lost, audit.duplicated) == (0, 0)
    doc = desk.call("show", name)
    assert (doc["state"], doc["generation"], doc["strategy"]) == ("running", 0, "cluster.swap:SequenceCheck")
    assert "failed, old version kept" in doc["history"][-1]
    desk.call("stop", name)


def test_a_swap_into_warm_spares_only_waits_for_the_node(desk: Desk, wait_until: Callable[..., Any]) -> None:
    universe = desk.universe(6, skip=40)
    desk.call("start", check_spec("warm", universe, warm_spares=True))
    wait_until(lambda: desk.call("show", "warm")["spares"] == {"count": 2, "ready": 2}, 120, "two spares")
    assert ray.get(desk.shard("shard-warm.1-0").stats.remote())["state"] == "spare"
    stream = desk.stream(universe, rate=2_000)
    stream.wait_for(1_000)
    report = desk.call(
        "swap", "warm", strategy="test_deployments:SequenceCheckV2", config={"order_every": 50}
    )
    assert report["warm_spares"] is True and report["shards"] == ["shard-warm.1-0", "shard-warm.1-1"]
    # the next generation's spares are on their way
    wait_until(lambda: desk.call("show", "warm")["spares"] == {"count": 2, "ready": 2}, 120, "new spares")
    assert desk.shard_exists("shard-warm.2-0")
    stream.wait_for(1_000)
    audit = finish(desk, "warm", stream, wait_until)
    assert (audit.lost, audit.duplicated) == (0, 0) and audit.seen == stream.sent
    desk.call("stop", "warm")
    assert not desk.shard_exists("shard-warm.2-0")  # stopping also stops the spares


@pytest.mark.parametrize("keep", [False, True])
def test_the_old_versions_working_orders_are_cancelled_unless_kept(
    desk: Desk, wait_until: Callable[..., Any], keep: bool
) -> None:
    universe = desk.universe(3, skip=60)
    name = f"orders-{'kept' if keep else 'cancelled'}"
    desk.call(
        "start", check_spec(name, universe, strategy="test_deployments:RestingOrders", config={}, shards=1)
    )
    stream = desk.stream(universe, rate=300)
    resting = wait_until(
        lambda: len(o := ray.get(desk.execution.orders.remote(name))) == 3 and o, 60, "three resting orders"
    )
    report = desk.call(
        "swap", name, strategy="cluster.swap:SequenceCheck", config={}, cancel_old_orders=not keep
    )
    stream.stop()
    book = {o.client_order_id: o.status.value for o in ray.get(desk.execution.orders.remote(name))}
    old = [o.client_order_id for o in resting]
    if keep:
        assert report["retired"]["orders_cancelled"] == []
        assert {book[c] for c in old} == {"OPEN"}
    else:
        assert sorted(report["retired"]["orders_cancelled"]) == sorted(old)
        assert {book[c] for c in old} == {"CANCELLED"}
    desk.call("stop", name)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shards": 3}, "a swap keeps the shard count"),
        ({"flow": "conflate"}, "a swap keeps the flow policy"),
        ({"universe": {"query": "NSE equities", "limit": 3}}, "a swap keeps the universe"),
        ({"name": "other"}, "the new version is named 'other'"),
        ({"strategy": "no_such_module:Thing"}, "cannot import module 'no_such_module'"),
    ],
)
def test_a_swap_to_an_incompatible_version_is_refused_before_it_starts(
    desk: Desk, changes: dict[str, Any], message: str
) -> None:
    universe = desk.universe(2, skip=80)
    if "same" not in [d["name"] for d in desk.call("summaries") if d["state"] == "running"]:
        desk.call("start", check_spec("same", universe))
    with pytest.raises(DeploymentError) as err:
        desk.call("swap", "same", spec=check_spec("same", universe, **changes))
    assert message in str(err.value)
    assert not desk.shard_exists("shard-same.1-0")
    assert desk.call("show", "same")["generation"] == 0


def test_a_restarted_manager_releases_a_swap_its_predecessor_left_holding(
    desk: Desk, wait_until: Callable[..., Any]
) -> None:
    """The deployments actor dies mid-swap, after the router's hold: its successor, reading the
    journal, gives the held ticks back to the old version (and the feed is not left waiting)."""
    universe = desk.universe(4, skip=100)
    desk.call("start", check_spec("crashy", universe))
    stream = desk.stream(universe, rate=1_000)
    stream.wait_for(500)
    # what a swap has done when its manager dies: journaled the intent, held the route
    ray.kill(desk.deployments, no_restart=True)
    wait_until(lambda: not desk.shard_exists("deployments"), 60, "the deployments actor to be gone")
    journal = FileJournal(desk.config.data_path / "journal" / "deployments.jsonl", lock_timeout_s=60)
    registry = DeploymentRegistry(journal)
    record = registry.get("crashy")
    record.operation = "swapping to generation 1"
    record.pending_spec = {**record.spec, "strategy": "test_deployments:SequenceCheckV2"}
    registry.put(record)
    registry.close()
    ray.get(desk.router.hold.remote("crashy"))
    stream.wait_for(500)
    held = desk.route("crashy")
    assert held is not None and held["buffered"] > 0  # nobody takes them now

    desk.deployments = jobs.start_deployments_actor(desk.config, redis_url="")
    doc = desk.call("show", "crashy")  # the first call waits for the recovery
    assert doc["operation"] == "" and doc["generation"] == 0
    assert "recovered after a restart (undo) from: swapping to generation 1" in doc["history"][-1]
    stream.wait_for(500)
    audit = finish(desk, "crashy", stream, wait_until)
    assert (audit.seen, audit.lost, audit.duplicated) == (stream.sent, 0, 0)
    desk.call("stop", "crashy")
