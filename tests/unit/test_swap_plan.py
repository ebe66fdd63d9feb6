"""Exactly-once checking for hot swaps, without Ray: the sequence audit, the `SequenceCheck`
strategy in real shards handing their state over, and the tick stream the checks are fed with."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.shard.baseline import random_walk_ticks
from actors.shard.instant_fills import InstantFillGateway
from actors.shard.shard import ShardSpec, StrategyShard
from actors.shard.universe import ShardInstrument
from cluster.errors import ShardlineError
from cluster.swap import TickStream, audit_sequences

INSTRUMENTS = tuple(ShardInstrument.equity(i, f"S{i}-EQ", str(3000 + i), lot_size=1) for i in range(4))
IDS = [i.instrument.id.value for i in INSTRUMENTS]


def state(runs: dict[str, list[list[int]]], out_of_order: int = 0) -> dict[str, bytes]:
    return {"runs": json.dumps(runs).encode(), "out_of_order": str(out_of_order).encode()}


@pytest.mark.parametrize(
    ("states", "last", "lost", "duplicated"),
    [
        ([state({"A": [[1, 10]]})], {"A": 10}, 0, 0),
        ([state({"A": [[1, 4]]}), state({"A": [[5, 10]]})], {"A": 10}, 0, 0),  # handed over cleanly
        ([state({"A": [[1, 4], [7, 10]]})], {"A": 10}, 2, 0),  # 5 and 6 never seen
        ([state({"A": [[1, 6]]}), state({"A": [[5, 10]]})], {"A": 10}, 0, 2),  # 5 and 6 seen twice
        ([state({"A": [[2, 10]]})], {"A": 10}, 1, 0),  # the first one missing
        ([state({"A": [[1, 8]]})], {"A": 10}, 2, 0),  # the last two missing
        ([state({"A": [[1, 10]]}, out_of_order=3)], {"A": 10}, 0, 3),  # repeats the strategy counted
        ([state({})], {"A": 3, "B": 2}, 5, 0),  # nothing arrived at all
        ([state({"A": [[1, 3]], "B": [[1, 2]]})], {"A": 3, "B": 2}, 0, 0),
    ],
)
def test_the_audit_finds_gaps_and_repeats(
    states: list[dict[str, bytes]], last: dict[str, int], lost: int, duplicated: int
) -> None:
    audit = audit_sequences(states, last)
    assert (audit.lost, audit.duplicated) == (lost, duplicated)
    assert audit.expected == sum(last.values()) and audit.seen == audit.expected - lost


@given(
    total=st.integers(1, 200),
    cuts=st.lists(st.integers(1, 200), max_size=5),
    dropped=st.sets(st.integers(1, 200), max_size=20),
    repeated=st.sets(st.integers(1, 200), max_size=20),
)
def test_the_audit_counts_what_a_handover_lost_or_repeated(
    total: int, cuts: list[int], dropped: set[int], repeated: set[int]
) -> None:
    """Split 1..total over versions at `cuts`, drop some numbers and let the next version see some
    of the previous one's again; the audit must count exactly those."""
    dropped = {d for d in dropped if d <= total}
    bounds = sorted({0, total, *(c for c in cuts if c < total)})
    states = []
    expected_repeats = 0
    for lo, hi in itertools.pairwise(bounds):
        mine = [n for n in range(lo + 1, hi + 1) if n not in dropped]
        again = sorted(n for n in repeated if n <= lo and n not in dropped)  # seen by an older version too
        expected_repeats += len(again)
        states.append(state({"A": runs_of(sorted(again)) + runs_of(mine)}))
    audit = audit_sequences(states, {"A": total})
    assert audit.lost == len(dropped) and audit.duplicated == expected_repeats


def runs_of(numbers: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


# ----------------------------------------------------------------------------------- the strategy in shards


@pytest.fixture
def shards() -> Iterator[list[StrategyShard]]:
    started: list[StrategyShard] = []
    yield started
    for shard in started:
        shard.stop()


def start(shards: list[StrategyShard], generation: int, order_every: int = 0) -> StrategyShard:
    spec = ShardSpec(
        deployment="seq",
        strategy="cluster.swap:SequenceCheck",
        config={"order_every": order_every},
        instruments=INSTRUMENTS,
        generation=generation,
    )
    shard = StrategyShard(spec, InstantFillGateway())
    shards.append(shard)
    return shard


def feed(shard: StrategyShard, ticks: np.ndarray) -> None:
    for k in range(0, len(ticks), 100):
        shard.submit_ticks(ticks[k : k + 100]).result(timeout=30)


def test_state_handed_from_one_version_to_the_next_sees_every_tick_once(shards: list[StrategyShard]) -> None:
    tape = random_walk_ticks(INSTRUMENTS, 800, seed=5)
    old = start(shards, generation=0)
    feed(old, tape[:333])
    saved = old.save_state()
    new = start(shards, generation=1)
    new.load_state(saved)
    feed(new, tape[333:])
    last = {key: 200 for key in IDS}  # 800 rows over 4 instruments, numbered from 1
    audit = audit_sequences([new.save_state()], last)
    assert (audit.seen, audit.lost, audit.duplicated) == (800, 0, 0)
    # a version started without the old one's state misses the old one's share
    fresh = start(shards, generation=2)
    feed(fresh, tape[333:])
    assert audit_sequences([fresh.save_state()], last).lost == 333


def test_a_batch_delivered_twice_is_caught(shards: list[StrategyShard]) -> None:
    tape = random_walk_ticks(INSTRUMENTS, 400, seed=6)
    shard = start(shards, generation=0)
    feed(shard, tape[:200])
    feed(shard, tape[150:])  # 50 rows again
    audit = audit_sequences([shard.save_state()], {key: 100 for key in IDS})
    assert (audit.lost, audit.duplicated) == (0, 50)


def test_the_check_strategy_orders_every_n_ticks(shards: list[StrategyShard]) -> None:
    shard = start(shards, generation=0, order_every=25)
    feed(shard, random_walk_ticks(INSTRUMENTS, 400, seed=7))
    assert shard.stats()["orders_sent"] == 400 // 25


# ----------------------------------------------------------------------------------- the stream


def test_the_stream_numbers_each_instrument_on_from_one() -> None:
    pushed: list[np.ndarray] = []
    stream = TickStream(pushed.append, INSTRUMENTS, rate=4_000, batches_per_s=100)
    batches = [stream.next_batch() for _ in range(5)]
    for instrument in INSTRUMENTS:
        seqs = np.concatenate([b["seq"][b["iid"] == instrument.iid] for b in batches])
        assert seqs.tolist() == list(range(1, len(seqs) + 1))
    assert stream.last_seq_by_instrument() == {key: 50 for key in IDS}


def test_stop_waits_for_the_push_in_flight_so_sent_is_final() -> None:
    pushed: list[np.ndarray] = []
    in_third_push = threading.Event()

    def push(batch: np.ndarray) -> None:
        if len(pushed) == 2:
            in_third_push.set()
            assert stream._stopping.wait(30), "stop was never called"  # lands only after stop began
        pushed.append(batch)

    stream = TickStream(push, INSTRUMENTS, rate=4_000, batches_per_s=100)
    runner = threading.Thread(target=stream.run, daemon=True)
    runner.start()
    assert in_third_push.wait(30)
    stream.stop()
    assert len(pushed) == 3 and stream.sent == sum(len(b) for b in pushed)
    runner.join(30)
    assert not runner.is_alive()


@pytest.mark.parametrize(("rate", "universe"), [(0, INSTRUMENTS), (100, ())])
def test_a_stream_needs_a_rate_and_instruments(rate: int, universe: tuple[ShardInstrument, ...]) -> None:
    with pytest.raises(ShardlineError, match="positive rate and at least one instrument"):
        TickStream(lambda _: None, universe, rate)
