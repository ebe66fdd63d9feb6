from __future__ import annotations

import itertools
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve.conflation import ConflatingOutbox


def test_latest_state_wins_and_is_counted() -> None:
    box = ConflatingOutbox(max_rate_hz=10)
    box.offer("quote:NSE:1", "", "q1")
    box.offer("quote:NSE:1", "", "q2")
    box.offer("quote:NSE:2", "", "r1")
    assert box.take_due(0.0) == ["q2", "r1"]
    assert (box.stats.offered, box.stats.conflated, box.stats.sent) == (3, 1, 2)


def test_each_key_of_a_channel_keeps_its_own_latest_state() -> None:
    box = ConflatingOutbox(max_rate_hz=10)
    box.offer("orders", "A", "A-open")
    box.offer("orders", "B", "B-open")
    box.offer("orders", "A", "A-filled")
    assert sorted(str(m) for m in box.take_due(0.0)) == ["A-filled", "B-open"]


def test_a_channel_is_released_at_most_once_per_interval() -> None:
    box = ConflatingOutbox(max_rate_hz=10)  # 100 ms
    box.offer("quote:NSE:1", "", "a")
    assert box.take_due(1.00) == ["a"]
    box.offer("quote:NSE:1", "", "b")
    assert box.take_due(1.05) == []
    assert box.seconds_until_due(1.05) == pytest.approx(0.05)
    box.offer("quote:NSE:1", "", "c")
    assert box.take_due(1.10) == ["c"]
    assert box.seconds_until_due(1.10) is None


def test_urgent_messages_go_first_and_ignore_the_rate() -> None:
    box = ConflatingOutbox(max_rate_hz=1)
    box.offer("quote:NSE:1", "", "update")
    box.take_due(0.0)
    box.offer("quote:NSE:1", "", "update2")
    box.put_first("snapshot")
    assert box.seconds_until_due(0.1) == 0.0
    assert box.take_due(0.1) == ["snapshot"]
    assert box.take_due(1.0) == ["update2"]


def test_too_many_keys_evict_the_oldest() -> None:
    box = ConflatingOutbox(max_rate_hz=1, max_keys_per_channel=2)
    for key in "abc":
        box.offer("alerts", key, key)
    assert box.take_due(0.0) == ["b", "c"]
    assert box.stats.dropped == 1


def test_discard_forgets_a_channel() -> None:
    box = ConflatingOutbox(max_rate_hz=1)
    box.offer("quote:NSE:1", "", "x")
    box.discard("quote:NSE:1")
    assert len(box) == 0
    assert box.take_due(0.0) == []


@pytest.mark.parametrize(("rate", "keys"), [(0, 10), (10, 0)])
def test_settings_are_checked(rate: float, keys: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ConflatingOutbox(rate, keys)


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(["k1", "k2"]), st.floats(0, 0.2)),
        min_size=1,
        max_size=200,
    )
)
def test_property_rate_bounded_and_nothing_but_the_latest_is_lost(
    events: list[tuple[str, str, float]],
) -> None:
    box = ConflatingOutbox(max_rate_hz=20)
    now = 0.0
    latest: dict[tuple[str, str], int] = {}
    delivered: dict[tuple[str, str], int] = {}
    releases: dict[str, list[float]] = {}
    for i, (channel, key, gap) in enumerate(events):
        now += gap
        box.offer(channel, key, (channel, key, i))
        latest[(channel, key)] = i
        for message in box.take_due(now):
            ch, k, n = cast(tuple[str, str, int], message)
            delivered[(ch, k)] = n
            releases.setdefault(ch, []).append(now)
    now += 1.0
    for message in box.take_due(now):
        ch, k, n = cast(tuple[str, str, int], message)
        delivered[(ch, k)] = n
    assert delivered == latest  # the last state of every key always arrives
    for times in releases.values():
        distinct = sorted(set(times))
        assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(distinct))
