from __future__ import annotations

from serve.channels import CANDLE_INTERVALS
from serve.marketdata import ANGEL_INTERVALS, TtlCache


def test_cache_entries_expire_and_evict_the_least_recently_used() -> None:
    cache = TtlCache(ttl_s=10, max_entries=2)
    cache.put("a", 1, now=0)
    cache.put("b", 2, now=1)
    assert cache.get("a", now=5) == 1  # touching "a" makes "b" the oldest
    cache.put("c", 3, now=6)
    assert cache.get("b", now=6) is None
    assert cache.get("a", now=9.9) == 1
    assert cache.get("a", now=10) is None
    assert cache.get("c", now=15) == 3


def test_every_terminal_interval_has_an_angel_name() -> None:
    assert set(ANGEL_INTERVALS) == set(CANDLE_INTERVALS)
