"""Rescaling a deployment in the router: the ring moves ~1/N of the instruments, no tick is lost,
repeated or reordered, and the counts balance (the plain `TickRouter`, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.router.router import RouterError, TickRouter
from actors.ticks import TICK_DTYPE
from cluster.config import RouterConfig
from cluster.swap import moved_instruments

UNIVERSE = {iid: f"NSE:{1000 + iid}" for iid in range(60)}


def ticks(iids: list[int], first_seq: dict[int, int]) -> np.ndarray:
    """One tick per entry, each instrument's seq continuing from `first_seq` (updated in place)."""
    out = np.zeros(len(iids), dtype=TICK_DTYPE)
    out["iid"] = iids
    for row, iid in enumerate(iids):
        first_seq[iid] = first_seq.get(iid, 0) + 1
        out["seq"][row] = first_seq[iid]
    return out


def router(shards: int, buffer: int = 10_000) -> TickRouter:
    r = TickRouter(RouterConfig(virtual_nodes=64, buffer_ticks=buffer))
    r.add_deployment("d", UNIVERSE, shards)
    for k in range(shards):
        r.shard_up("d", k)
    return r


def drain(r: TickRouter, seen: dict[int, list[int]], owners: dict[int, set[int]]) -> None:
    """Deliver everything buffered for every up shard, recording what each instrument got."""
    while True:
        took = False
        for k in range(r.shard_count("d")):
            delivery = r.take("d", k)
            if delivery is None:
                continue
            took = True
            for iid, seq in zip(delivery.ticks["iid"].tolist(), delivery.ticks["seq"].tolist(), strict=True):
                seen.setdefault(iid, []).append(seq)
                owners.setdefault(iid, set()).add(k)
            r.complete(delivery)
        if not took:
            return


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 2), (1, 4), (4, 1), (5, 8), (8, 5)])
def test_resize_moves_about_the_share_of_the_shards_added_or_removed(before: int, after: int) -> None:
    r = router(before)
    owner_before = {iid: r.owner("d", iid) for iid in UNIVERSE}
    for k in range(r.shard_count("d")):
        r.shard_down("d", k)
    r.resize_deployment("d", after)
    owner_after = {iid: r.owner("d", iid) for iid in UNIVERSE}
    moved = sum(owner_before[i] != owner_after[i] for i in UNIVERSE)
    assert moved == moved_instruments(list(UNIVERSE.values()), before, after, virtual_nodes=64)
    share = abs(after - before) / max(after, before)
    assert moved <= len(UNIVERSE) * min(1.0, share * 2 + 0.1)
    assert set(owner_after.values()) <= set(range(after))
    # consistent hashing: growing only moves instruments to the new shards, shrinking only from the removed
    for iid in UNIVERSE:
        if owner_before[iid] != owner_after[iid]:
            assert owner_after[iid] >= before if after > before else owner_before[iid] >= after


def test_a_shrink_moves_the_removed_shards_buffered_ticks_to_their_new_owners_in_order() -> None:
    r = router(3)
    seqs: dict[int, int] = {}
    for k in range(3):
        r.shard_down("d", k)  # held: everything stays buffered
    r.push(ticks(list(UNIVERSE) * 5, seqs))
    assert r.stats().deployments["d"].buffered == 300
    r.resize_deployment("d", 1)
    stats = r.stats().deployments["d"]
    assert stats.buffered == 300 and stats.balanced and len(stats.shards) == 1
    assert stats.shards[0].moved_in == 300 - stats.shards[0].ticks_in
    r.shard_up("d", 0)
    seen: dict[int, list[int]] = {}
    drain(r, seen, {})
    assert all(seen[i] == [1, 2, 3, 4, 5] for i in UNIVERSE)
    assert r.stats().deployments["d"].ticks_out == 300


def test_new_shards_hold_their_ticks_until_they_register() -> None:
    r = router(1)
    r.shard_down("d", 0)
    r.resize_deployment("d", 3)
    r.push(ticks(list(UNIVERSE), {}))
    assert r.take("d", 1) is None and r.take("d", 2) is None
    assert r.pending("d", 1) + r.pending("d", 2) > 0
    r.shard_up("d", 1)
    assert r.take("d", 1) is not None


def test_a_shard_with_ticks_in_flight_cannot_be_removed() -> None:
    r = router(2)
    r.push(ticks(list(UNIVERSE), {}))
    delivery = r.take("d", 1)
    assert delivery is not None
    with pytest.raises(RouterError, match=r"shards \[1\] have ticks in flight"):
        r.resize_deployment("d", 1)
    r.complete(delivery)
    r.shard_down("d", 1)
    r.resize_deployment("d", 1)
    assert r.shard_count("d") == 1


@pytest.mark.parametrize("shards", [0, -1, 40_000])
def test_a_resize_to_an_impossible_count_is_refused(shards: int) -> None:
    with pytest.raises(RouterError, match="shards must be between 1 and 32767"):
        router(2).resize_deployment("d", shards)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.lists(st.sampled_from(sorted(UNIVERSE)), min_size=1, max_size=80)),
            st.tuples(st.just("deliver"), st.integers(0, 7)),
            st.tuples(st.just("resize"), st.integers(1, 6)),
        ),
        max_size=40,
    )
)
def test_across_any_resizes_every_tick_arrives_once_and_in_order_per_instrument(steps: list[tuple]) -> None:
    r = router(2, buffer=1_000_000)
    seqs: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    for step in steps:
        if step[0] == "push":
            r.push(ticks(step[1], seqs))
        elif step[0] == "deliver":
            shard = step[1] % r.shard_count("d")
            delivery = r.take("d", shard)
            if delivery is not None:
                for iid, seq in zip(
                    delivery.ticks["iid"].tolist(), delivery.ticks["seq"].tolist(), strict=True
                ):
                    seen.setdefault(iid, []).append(seq)
                r.complete(delivery)
        else:
            # as a rescale does: hold every shard (nothing is in flight here), resize, attach all
            for k in range(r.shard_count("d")):
                r.shard_down("d", k)
            r.resize_deployment("d", step[1])
            for k in range(step[1]):
                r.shard_up("d", k)
        assert r.stats().deployments["d"].balanced
    drain(r, seen, {})
    assert seen == {iid: list(range(1, n + 1)) for iid, n in seqs.items()}
    stats = r.stats().deployments["d"]
    assert stats.ticks_in == stats.ticks_out == sum(seqs.values())
    assert stats.dropped == stats.conflated == stats.buffered == 0
