from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.router.ring import ConsistentHashRing, RingError, stable_hash

KEYS = [f"{exch}:{token}" for exch in ("NSE", "NFO", "BSE") for token in range(1000, 2000)]


def _assign(ring: ConsistentHashRing) -> np.ndarray:
    return ring.assign_many(KEYS)


def test_assignment_does_not_depend_on_insertion_order_or_instance() -> None:
    a = ConsistentHashRing([0, 1, 2, 3], virtual_nodes=64)
    b = ConsistentHashRing([3, 1], virtual_nodes=64)
    b.add(0)
    b.add(2)
    assert np.array_equal(_assign(a), _assign(b))
    assert [a.assign(k) for k in KEYS[:50]] == _assign(a)[:50].tolist()


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from actors.router.ring import ConsistentHashRing as R;"
        "r = R(range(5), virtual_nodes=32);"
        "print(','.join(str(r.assign(f'NSE:{t}')) for t in range(200)))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    ring = ConsistentHashRing(range(5), virtual_nodes=32)
    assert out.stdout.strip() == ",".join(str(ring.assign(f"NSE:{t}")) for t in range(200))


def test_stable_hash_is_blake2b_not_python_hash() -> None:
    assert stable_hash("NSE:3045") == stable_hash("NSE:3045")
    assert stable_hash("NSE:3045") != stable_hash("BSE:3045")  # tokens repeat across exchanges
    assert 0 <= stable_hash("x") < 2**64


@pytest.mark.parametrize("shards", [1, 2, 3, 8, 16])
def test_every_shard_gets_a_fair_share(shards: int) -> None:
    ring = ConsistentHashRing(range(shards), virtual_nodes=128)
    counts = np.bincount(_assign(ring), minlength=shards)
    assert counts.sum() == len(KEYS)
    share = counts / len(KEYS)
    assert share.min() > 0.5 / shards and share.max() < 1.6 / shards, share


@settings(max_examples=40, deadline=None)
@given(
    shards=st.integers(min_value=1, max_value=12),
    virtual_nodes=st.sampled_from([32, 64, 128, 256]),
)
def test_adding_a_shard_moves_about_one_in_n_keys_and_only_to_it(shards: int, virtual_nodes: int) -> None:
    ring = ConsistentHashRing(range(shards), virtual_nodes=virtual_nodes)
    before = _assign(ring)
    ring.add(shards)
    after = _assign(ring)
    moved = before != after
    assert set(after[moved].tolist()) <= {shards}  # only the new shard gains keys
    expected = 1 / (shards + 1)
    fraction = moved.mean()
    assert 0.4 * expected < fraction < 1.8 * expected, (fraction, expected)


@settings(max_examples=40, deadline=None)
@given(
    shards=st.integers(min_value=2, max_value=12),
    data=st.data(),
    virtual_nodes=st.sampled_from([32, 128]),
)
def test_removing_a_shard_moves_only_its_keys_and_restoring_it_moves_them_back(
    shards: int, data: st.DataObject, virtual_nodes: int
) -> None:
    leaving = data.draw(st.integers(min_value=0, max_value=shards - 1))
    ring = ConsistentHashRing(range(shards), virtual_nodes=virtual_nodes)
    before = _assign(ring)
    ring.remove(leaving)
    after = _assign(ring)
    moved = before != after
    assert np.array_equal(moved, before == leaving)
    assert leaving not in after
    ring.add(leaving)
    assert np.array_equal(_assign(ring), before)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda r: r.add(1), "already on the ring"),
        (lambda r: r.remove(7), "not on the ring"),
        (lambda r: r.add(-1), "non-negative"),
        (lambda r: ConsistentHashRing([], virtual_nodes=8).assign("NSE:1"), "no shards"),
        (lambda r: ConsistentHashRing([0], virtual_nodes=0), "virtual_nodes"),
    ],
)
def test_bad_ring_operations_say_what_is_wrong(action, message: str) -> None:  # type: ignore[no-untyped-def]
    ring = ConsistentHashRing([0, 1], virtual_nodes=8)
    with pytest.raises(RingError, match=message):
        action(ring)
