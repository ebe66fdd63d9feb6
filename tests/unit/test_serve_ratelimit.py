from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve.ratelimit import RateLimited, UserRateLimiter


def test_burst_then_refusal_with_retry_after() -> None:
    limiter = UserRateLimiter(rate_per_s=5)
    for _ in range(5):
        limiter.check("asha", 100.0)
    with pytest.raises(RateLimited, match="5/s reached for asha") as err:
        limiter.check("asha", 100.0)
    assert err.value.retry_after_s == pytest.approx(0.2)
    limiter.check("asha", 100.2)  # one token refilled after 1/rate seconds


def test_users_have_separate_buckets() -> None:
    limiter = UserRateLimiter(rate_per_s=1)
    limiter.check("asha", 0.0)
    limiter.check("ravi", 0.0)
    with pytest.raises(RateLimited):
        limiter.check("asha", 0.5)


def test_a_clock_going_backwards_does_not_mint_tokens() -> None:
    limiter = UserRateLimiter(rate_per_s=1)
    limiter.check("asha", 10.0)
    with pytest.raises(RateLimited):
        limiter.check("asha", 5.0)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        UserRateLimiter(0)


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_accepted_requests_never_exceed_burst_plus_rate_times_elapsed(rate: float, gaps: list[float]) -> None:
    limiter = UserRateLimiter(rate_per_s=rate)
    now, accepted = 0.0, 0
    for gap in gaps:
        now += gap
        try:
            limiter.check("u", now)
            accepted += 1
        except RateLimited as err:
            assert err.retry_after_s > 0
    assert accepted <= max(1.0, rate) + rate * now + 1e-9
