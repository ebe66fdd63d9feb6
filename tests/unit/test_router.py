from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.router.ring import ConsistentHashRing
from actors.router.router import NOT_IN_UNIVERSE, QuoteBoard, RouterError, TickRouter
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.config import FlowPolicy, RouterConfig


def universe(iids: range) -> dict[int, str]:
    return {i: f"NSE:{10_000 + i}" for i in iids}


def ticks(iids: list[int] | np.ndarray, seq_start: int = 0, mode: int = FeedMode.LTP) -> np.ndarray:
    out = np.zeros(len(iids), dtype=TICK_DTYPE)
    out["iid"] = iids
    out["seq"] = np.arange(seq_start, seq_start + len(iids))
    out["ltp"] = 10_000 + out["seq"]
    out["mode"] = mode
    return out


def router(buffer_ticks: int = 1000, virtual_nodes: int = 32, **kwargs: int) -> TickRouter:
    return TickRouter(RouterConfig(buffer_ticks=buffer_ticks, virtual_nodes=virtual_nodes), **kwargs)


def drain(r: TickRouter, name: str, index: int) -> np.ndarray:
    parts = []
    while (d := r.take(name, index)) is not None:
        r.complete(d)
        parts.append(d.ticks)
    return np.concatenate(parts) if parts else np.empty(0, TICK_DTYPE)


def test_each_tick_goes_to_the_shard_its_key_hashes_to_in_feed_order() -> None:
    r = router(buffer_ticks=10_000)
    u = universe(range(50))
    r.add_deployment("ema", u, shards=3)
    for k in range(3):
        r.shard_up("ema", k)
    batch = ticks(np.random.default_rng(1).integers(0, 50, 3000))
    assert r.push(batch).accepted == 3000
    ring = ConsistentHashRing(range(3), virtual_nodes=32)
    expected_owner = {iid: ring.assign(key) for iid, key in u.items()}
    seen = 0
    for k in range(3):
        got = drain(r, "ema", k)
        seen += len(got)
        assert {expected_owner[i] for i in got["iid"].tolist()} <= {k}
        assert np.all(np.diff(got["seq"]) > 0)  # batch order kept inside a shard
        assert r.owner("ema", int(got["iid"][0])) == k
    assert seen == 3000
    assert r.owner("ema", 999) == NOT_IN_UNIVERSE


def test_deployments_get_their_own_copy_and_unrouted_ticks_are_counted() -> None:
    r = router()
    r.add_deployment("a", universe(range(0, 10)), shards=1)
    r.add_deployment("b", universe(range(5, 15)), shards=2, policy="conflate")
    r.push(ticks(list(range(20))))
    stats = r.stats()
    assert stats.received == 20
    assert stats.unrouted == 5  # iids 15..19 are in no universe
    assert stats.deployments["a"].ticks_in == 10
    assert stats.deployments["b"].ticks_in == 10
    assert stats.deployments["b"].policy == "conflate"


def test_block_policy_accepts_only_what_fits_and_the_rest_after_a_drain() -> None:
    r = router(buffer_ticks=10)
    r.add_deployment("ema", universe(range(4)), shards=1)
    r.shard_up("ema", 0)
    batch = ticks([0, 1, 2, 3] * 6)
    first = r.push(batch)
    assert first.accepted == 10
    assert r.push(batch[first.accepted :]).accepted == 0  # full: nothing more
    delivery = r.take("ema", 0, limit=4)
    assert delivery is not None and len(delivery.ticks) == 4
    r.complete(delivery)
    assert r.push(batch[first.accepted :]).accepted == 4
    stats = r.stats().deployments["ema"]
    counts = (stats.ticks_in, stats.ticks_out, stats.buffered, stats.dropped, stats.conflated)
    assert counts == (14, 4, 10, 0, 0)


def test_block_prefix_is_limited_by_the_fullest_shard_of_any_block_deployment() -> None:
    r = router(buffer_ticks=3)
    r.add_deployment("a", universe(range(2)), shards=1)
    r.add_deployment("b", universe(range(2)), shards=1, policy="conflate")
    # Deployment "a" takes 3 ticks; the fourth tick (index 3) would overflow it.
    assert r.push(ticks([0, 1, 0, 1, 0])).accepted == 3
    assert r.stats().deployments["b"].ticks_in == 3  # the same prefix everywhere


def test_conflate_policy_keeps_the_latest_tick_per_instrument_and_counts_the_rest() -> None:
    r = router(buffer_ticks=4)
    r.add_deployment("q", universe(range(3)), shards=1, policy=FlowPolicy.CONFLATE)
    r.shard_up("q", 0)
    batch = ticks([0, 1, 0, 1, 2, 0])
    assert r.push(batch).accepted == 6
    got = drain(r, "q", 0)
    assert got["iid"].tolist() == [1, 2, 0]  # each instrument's latest, in the order of those
    assert got["seq"].tolist() == [3, 4, 5]
    stats = r.stats().deployments["q"]
    assert (stats.ticks_in, stats.ticks_out, stats.conflated, stats.dropped) == (6, 3, 3, 0)


def test_conflate_drops_the_oldest_when_there_are_more_instruments_than_room() -> None:
    r = router(buffer_ticks=2)
    r.add_deployment("q", universe(range(5)), shards=1, policy="conflate")
    r.shard_up("q", 0)
    r.push(ticks([0, 1, 2, 3, 4]))
    stats = r.stats().deployments["q"]
    assert (stats.buffered, stats.dropped, stats.conflated) == (2, 3, 0)
    assert drain(r, "q", 0)["iid"].tolist() == [3, 4]


def test_a_down_shard_holds_its_share_and_a_stale_failure_does_not_mark_it_down_again() -> None:
    r = router()
    r.add_deployment("ema", universe(range(10)), shards=1)
    generation = r.shard_up("ema", 0)
    r.push(ticks(list(range(10))))
    delivery = r.take("ema", 0, limit=4)
    assert delivery is not None and delivery.generation == generation
    assert r.take("ema", 0) is None  # one delivery in flight at a time by default
    assert r.fail(delivery) is True
    r.push(ticks(list(range(10)), seq_start=10))
    assert r.take("ema", 0) is None  # held while down
    r.shard_up("ema", 0)
    assert len(drain(r, "ema", 0)) == 16
    stats = r.stats().deployments["ema"].shards[0]
    assert (stats.dropped, stats.dropped_at_failure, stats.ticks_out) == (4, 4, 16)
    # A failure of a delivery taken before a re-registration is counted but does not hold the shard.
    r.push(ticks([1]))
    old = r.take("ema", 0)
    assert old is not None
    r.shard_up("ema", 0)
    assert r.fail(old) is False
    assert r.stats().deployments["ema"].shards[0].up


def test_fail_over_moves_the_share_in_order_and_restoring_moves_it_back() -> None:
    r = router(virtual_nodes=16)
    u = universe(range(40))
    r.add_deployment("ema", u, shards=2)
    for k in range(2):
        r.shard_up("ema", k)
    r.push(ticks(list(range(40)) * 3))
    r.shard_down("ema", 0)
    held = r.pending("ema", 0)
    assert held > 0
    assert r.fail_over("ema", 0)
    assert r.pending("ema", 0) == 0
    assert all(r.owner("ema", i) == 1 for i in u)
    got = drain(r, "ema", 1)
    assert len(got) == 120
    for iid in u:
        assert np.all(np.diff(got["seq"][got["iid"] == iid]) > 0)
    r.push(ticks(list(range(40)), seq_start=1000))
    r.shard_up("ema", 0)  # back: the ring is restored and its instruments' ticks move back
    ring = ConsistentHashRing(range(2), virtual_nodes=16)
    assert [r.owner("ema", i) for i in u] == [ring.assign(k) for k in u.values()]
    back = drain(r, "ema", 0)
    assert len(back) > 0 and set(back["iid"].tolist()) == {i for i in u if ring.assign(u[i]) == 0}
    stats = r.stats().deployments["ema"]
    assert stats.balanced and stats.ticks_in == 160
    assert not r.fail_over("ema", 0) or r.fail_over("ema", 1) is False  # never empties the ring


def test_swap_switches_routing_between_two_batches() -> None:
    r = router()
    r.add_deployment("v1", universe(range(5)), shards=1)
    r.add_deployment("v2", universe(range(5)), shards=1, active=False)
    r.push(ticks([0, 1, 2]))
    r.swap("v1", "v2")
    r.push(ticks([3, 4], seq_start=3))
    assert r.stats().deployments["v1"].ticks_in == 3
    assert r.stats().deployments["v2"].ticks_in == 2
    r.set_active("v1", True)
    r.push(ticks([0], seq_start=5))
    assert r.stats().deployments["v1"].ticks_in == 4


def test_removing_a_deployment_counts_its_buffered_and_in_flight_ticks_as_dropped() -> None:
    r = router()
    r.add_deployment("ema", universe(range(5)), shards=1)
    r.shard_up("ema", 0)
    r.push(ticks([0, 1, 2, 3, 4]))
    delivery = r.take("ema", 0, limit=2)
    assert delivery is not None
    final = r.remove_deployment("ema")
    assert (final.dropped, final.buffered, final.in_flight) == (5, 0, 0) and final.balanced
    r.complete(delivery)  # a late answer for a removed deployment is ignored
    assert "ema" not in r.stats().deployments


def test_completing_a_delivery_twice_is_refused() -> None:
    r = router()
    r.add_deployment("ema", universe(range(5)), shards=1)
    r.shard_up("ema", 0)
    r.push(ticks([0]))
    delivery = r.take("ema", 0)
    assert delivery is not None
    r.complete(delivery)
    with pytest.raises(RouterError, match="already completed"):
        r.complete(delivery)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.push(np.zeros(3, dtype=np.int64)), "TICK_DTYPE"),
        (lambda r: r.push([1, 2]), "TICK_DTYPE"),
        (lambda r: r.add_deployment("ema", universe(range(2)), 1), "already exists"),
        (lambda r: r.add_deployment("x", {}, 1), "empty"),
        (lambda r: r.add_deployment("x", {1: "NSE3045"}, 1), "EXCH:token"),
        (lambda r: r.add_deployment("x", {1: "NSE:1", 2: "NSE:1"}, 1), "share one key"),
        (lambda r: r.add_deployment("x", {-1: "NSE:1"}, 1), "out of range"),
        (lambda r: r.add_deployment("x", {1: "NSE:1"}, 0), "shards must be"),
        (lambda r: r.add_deployment("x", {1: "NSE:1"}, 1, policy="drop"), "block' or 'conflate"),
        (lambda r: r.shard_up("nope", 0), "no deployment named 'nope'"),
        (lambda r: r.shard_up("ema", 5), "shards 0..0"),
    ],
)
def test_bad_calls_say_what_is_wrong(call, message: str) -> None:  # type: ignore[no-untyped-def]
    r = router()
    r.add_deployment("ema", universe(range(2)), shards=1)
    with pytest.raises(RouterError, match=message):
        call(r)


def test_out_of_range_iids_are_counted_not_routed() -> None:
    r = TickRouter(RouterConfig(), max_iid=100)
    r.add_deployment("ema", universe(range(5)), shards=1)
    r.push(ticks([-3, 0, 101, 5000]))
    stats = r.stats()
    assert (stats.received, stats.rejected_iids, stats.unrouted) == (4, 3, 0)
    assert stats.deployments["ema"].ticks_in == 1


def test_quote_board_keeps_the_latest_values_and_bid_ask_only_from_snap_quotes() -> None:
    board = QuoteBoard(min_interval_ns=100)
    snap = ticks([1, 2], mode=FeedMode.SNAP_QUOTE)
    snap["bid"], snap["ask"] = [99, 199], [101, 201]
    board.update(snap)
    ltp_only = ticks([1, 1], seq_start=10, mode=FeedMode.LTP)
    board.update(ltp_only)
    quotes = {int(q["iid"]): q for q in board.snapshot()}
    assert int(quotes[1]["ltp"]) == 10_011 and int(quotes[1]["bid"]) == 99 and int(quotes[1]["ask"]) == 101
    assert int(quotes[2]["ltp"]) == 10_001
    assert board.snapshot([2, 7, -1])["iid"].tolist() == [2]


def test_quote_board_publishes_only_changes_and_at_a_bounded_rate() -> None:
    board = QuoteBoard(min_interval_ns=1_000)
    board.update(ticks([1, 2, 3]))
    first = board.publish_due(now_ns=0)
    assert first is not None and sorted(first["iid"].tolist()) == [1, 2, 3]
    board.update(ticks([2], seq_start=5))
    assert board.publish_due(now_ns=500) is None  # too soon
    second = board.publish_due(now_ns=1_000)
    assert second is not None and second["iid"].tolist() == [2] and int(second["ltp"][0]) == 10_005
    assert board.publish_due(now_ns=5_000) is None  # nothing changed


def test_resize_moves_buffered_ticks_to_their_new_owners_in_order() -> None:
    r = router(virtual_nodes=16)
    u = universe(range(40))
    r.add_deployment("ema", u, shards=2)
    for k in range(2):
        r.shard_up("ema", k)
    r.push(ticks(list(range(40)) * 3))
    r.resize_deployment("ema", 3)
    ring = ConsistentHashRing(range(3), virtual_nodes=16)
    assert [r.owner("ema", i) for i in u] == [ring.assign(k) for k in u.values()]
    assert r.take("ema", 2) is None  # a new shard's ticks wait for it to register
    r.shard_up("ema", 2)
    r.push(ticks(list(range(40)), seq_start=120))
    got = np.concatenate([drain(r, "ema", k) for k in range(3)])
    assert len(got) == 160
    for iid in u:
        assert np.all(np.diff(got["seq"][got["iid"] == iid]) > 0)
    r.push(ticks(list(range(40)), seq_start=200))
    busy = r.take("ema", 2)
    with pytest.raises(RouterError, match="hold them before removing"):
        r.resize_deployment("ema", 1)
    assert busy is not None
    r.complete(busy)
    r.resize_deployment("ema", 1)
    assert all(r.owner("ema", i) == 0 for i in u)
    assert len(drain(r, "ema", 0)) == 40 - len(busy.ticks)
    stats = r.stats().deployments["ema"]
    assert stats.balanced and (stats.ticks_in, stats.ticks_out) == (200, 200) and len(stats.shards) == 1


class RouterModel(RuleBasedStateMachine):
    """Any interleaving of pushes, deliveries, failures, fail-overs and returns keeps the books straight."""

    def __init__(self) -> None:
        super().__init__()
        self.r = router(buffer_ticks=12, virtual_nodes=8, max_in_flight=2, max_batch=5)
        self.u = universe(range(12))
        self.r.add_deployment("blk", self.u, shards=3, policy="block")
        self.r.add_deployment("cfl", dict(list(self.u.items())[:8]), shards=2, policy="conflate")
        for name, shards in (("blk", 3), ("cfl", 2)):
            for k in range(shards):
                self.r.shard_up(name, k)
        self.seq = 0
        self.routed: dict[str, list[int]] = defaultdict(list)
        self.delivered: dict[str, list[tuple[int, int]]] = defaultdict(list)  # (iid, seq) in take order
        self.failed: dict[str, list[int]] = defaultdict(list)
        self.open: list = []

    @rule(iids=st.lists(st.integers(min_value=0, max_value=14), min_size=1, max_size=20))
    def push(self, iids: list[int]) -> None:
        batch = ticks(iids, seq_start=self.seq)
        accepted = self.r.push(batch).accepted
        self.seq += len(iids)
        for name in ("blk", "cfl"):
            universe_of = self.u if name == "blk" else dict(list(self.u.items())[:8])
            self.routed[name] += [int(t["seq"]) for t in batch[:accepted] if int(t["iid"]) in universe_of]

    @rule(name=st.sampled_from(["blk", "cfl"]), index=st.integers(0, 2))
    def take(self, name: str, index: int) -> None:
        if index < self.r.shard_count(name) and (d := self.r.take(name, index)) is not None:
            self.delivered[name] += list(zip(d.ticks["iid"].tolist(), d.ticks["seq"].tolist(), strict=True))
            self.open.append(d)

    @precondition(lambda self: self.open)
    @rule(which=st.integers(0, 10), ok=st.booleans())
    def settle(self, which: int, ok: bool) -> None:
        d = self.open.pop(which % len(self.open))
        if ok:
            self.r.complete(d)
        else:
            self.r.fail(d)
            self.failed[d.deployment] += d.ticks["seq"].tolist()

    @rule(name=st.sampled_from(["blk", "cfl"]), index=st.integers(0, 2))
    def go_down_and_fail_over(self, name: str, index: int) -> None:
        if index < self.r.shard_count(name):
            self.r.shard_down(name, index)
            self.r.fail_over(name, index)

    @rule(name=st.sampled_from(["blk", "cfl"]), index=st.integers(0, 2))
    def come_back(self, name: str, index: int) -> None:
        if index < self.r.shard_count(name):
            self.r.shard_up(name, index)

    @rule(name=st.sampled_from(["blk", "cfl"]), shards=st.integers(1, 4))
    def resize(self, name: str, shards: int) -> None:
        busy = any(d.deployment == name and d.shard >= shards for d in self.open)
        try:
            self.r.resize_deployment(name, shards)
        except RouterError:
            assert busy or not any(
                self.r.stats().deployments[name].shards[k].on_ring
                for k in range(min(shards, self.r.shard_count(name)))
            )
            return
        assert not busy
        for k in range(shards):
            if not self.r.stats().deployments[name].shards[k].up:
                self.r.shard_up(name, k)

    @invariant()
    def counts_balance(self) -> None:
        stats = self.r.stats()
        for d in stats.deployments.values():
            assert d.balanced, d
            assert d.ticks_in == len(self.routed[d.name])
            assert d.in_flight == sum(len(x.ticks) for x in self.open if x.deployment == d.name)

    @invariant()
    def each_instrument_arrives_in_feed_order_never_twice(self) -> None:
        for pairs in self.delivered.values():
            by_iid: dict[int, list[int]] = defaultdict(list)
            for iid, seq in pairs:
                by_iid[iid].append(seq)
            for seqs in by_iid.values():
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    @invariant()
    def block_loses_nothing_but_what_died_in_flight(self) -> None:
        stats = self.r.stats().deployments["blk"]
        taken = {seq for _, seq in self.delivered["blk"]}
        assert len(taken) + stats.buffered == len(self.routed["blk"])
        assert stats.conflated == 0 and stats.dropped == len(self.failed["blk"])


TestRouterModel = RouterModel.TestCase
TestRouterModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
