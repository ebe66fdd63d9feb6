"""Simulator access control: rate-limit answers, logins, token expiry and refresh."""

from __future__ import annotations

import pyotp
import pytest

from actors.angel.common import RATE_LIMITS, EndpointGroup
from actors.sim.rate_limits import SlidingWindowLimiter
from actors.sim.sessions import LoginError, SessionStore
from cluster.config import SimConfig

# ----------------------------------------------------------------------------------------- limits


def angel_limiter() -> SlidingWindowLimiter:
    return SlidingWindowLimiter({group: limit.windows() for group, limit in RATE_LIMITS.items()})


@pytest.mark.parametrize(
    ("group", "calls_at", "allowed"),
    [
        # one order-book call a second: the second within the same second is refused
        (EndpointGroup.BOOKS, [0.0, 0.5, 1.0, 1.2, 2.01], [True, False, True, False, True]),
        # three candle calls a second
        (EndpointGroup.CANDLES, [0.0, 0.1, 0.2, 0.3, 1.05], [True, True, True, False, True]),
        # 20 orders a second: the 21st in the same second is refused
        (EndpointGroup.ORDERS, [i * 0.01 for i in range(21)], [True] * 20 + [False]),
    ],
)
def test_per_second_windows(group: EndpointGroup, calls_at: list[float], allowed: list[bool]) -> None:
    limiter = angel_limiter()
    assert [limiter.allow("jwt", group, t) for t in calls_at] == allowed


def test_minute_cap_binds_even_when_every_second_is_within_limits() -> None:
    limiter = angel_limiter()
    # 10 market-data calls a second for 50 s = 500 = the per-minute cap; the next second refuses
    answers = [
        limiter.allow("jwt", EndpointGroup.MARKET_DATA, s + i / 16) for s in range(50) for i in range(10)
    ]
    assert all(answers)
    assert not limiter.allow("jwt", EndpointGroup.MARKET_DATA, 50.5)
    assert limiter.allow("jwt", EndpointGroup.MARKET_DATA, 60.01)  # the first second left the window


def test_hour_cap_on_orders() -> None:
    limiter = angel_limiter()
    t = 0.0
    for _ in range(1000):  # 1000 orders spread under the second and minute caps
        assert limiter.allow("jwt", EndpointGroup.ORDERS, t)
        t += 0.125  # 8 a second, 480 a minute
    assert not limiter.allow("jwt", EndpointGroup.ORDERS, t)
    assert limiter.allow("jwt", EndpointGroup.ORDERS, 3600.001)


def test_refused_calls_do_not_count_and_callers_and_groups_are_separate() -> None:
    limiter = angel_limiter()
    assert limiter.allow("a", EndpointGroup.BOOKS, 0.0)
    for t in (0.1, 0.2, 0.3):
        assert not limiter.allow("a", EndpointGroup.BOOKS, t)
    assert limiter.allow("a", EndpointGroup.BOOKS, 1.0)  # refusals did not push the window on
    assert limiter.allow("b", EndpointGroup.BOOKS, 0.5)
    assert limiter.allow("a", EndpointGroup.PROFILE, 0.5)
    assert limiter.allow("a", "no such group", 0.5)


def test_limiter_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        SlidingWindowLimiter({"x": [(1.0, 0)]})


# ----------------------------------------------------------------------------------------- logins


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> SessionStore:
    return SessionStore(SimConfig(session_ttl_s=600), now=clock)


def current_totp(clock: Clock) -> str:
    return pyotp.TOTP(SimConfig().totp_secret).at(int(clock.now))


@pytest.mark.parametrize(
    ("client", "pin", "totp_shift_s", "code"),
    [
        ("SIM001", "0000", 0, "AB1007"),
        ("SIM002", "1234", 0, "AB1007"),
        ("SIM001", "1234", 300, "AB1050"),  # a code from five minutes away
    ],
)
def test_login_refusals(
    store: SessionStore, clock: Clock, client: str, pin: str, totp_shift_s: int, code: str
) -> None:
    totp = pyotp.TOTP(SimConfig().totp_secret).at(int(clock.now) + totp_shift_s)
    with pytest.raises(LoginError) as err:
        store.login(client, pin, totp)
    assert err.value.code == code


def test_the_previous_totp_window_is_still_accepted(store: SessionStore, clock: Clock) -> None:
    previous = pyotp.TOTP(SimConfig().totp_secret).at(int(clock.now) - 30)
    assert store.login("SIM001", "1234", previous).client_code == "SIM001"


def test_token_lifecycle(store: SessionStore, clock: Clock) -> None:
    session = store.login("SIM001", "1234", current_totp(clock))
    assert store.check(f"Bearer {session.jwt_token}") == session
    assert store.check(session.jwt_token) == session  # the SDK's stream client sends it bare
    assert store.check_feed_token(session.feed_token)
    clock.now += 599
    assert store.check(session.jwt_token) == session
    clock.now += 2
    with pytest.raises(LoginError) as err:
        store.check(session.jwt_token)
    assert (err.value.code, err.value.message) == ("AG8001", "Invalid Token")
    assert not store.check_feed_token(session.feed_token)


@pytest.mark.parametrize(("header", "code"), [(None, "AG8003"), ("", "AG8003"), ("Bearer abc", "AG8001")])
def test_missing_or_unknown_tokens(store: SessionStore, header: str | None, code: str) -> None:
    with pytest.raises(LoginError) as err:
        store.check(header)
    assert err.value.code == code


def test_refresh_replaces_the_session_and_logout_ends_it(store: SessionStore, clock: Clock) -> None:
    first = store.login("SIM001", "1234", current_totp(clock))
    second = store.refresh(first.refresh_token)
    assert second.jwt_token != first.jwt_token
    with pytest.raises(LoginError, match="Invalid Token"):
        store.check(first.jwt_token)
    with pytest.raises(LoginError) as err:
        store.refresh(first.refresh_token)
    assert err.value.code == "AB8050"
    store.logout(second)
    with pytest.raises(LoginError):
        store.check(second.jwt_token)


def test_store_refuses_a_bad_totp_secret() -> None:
    with pytest.raises(ValueError, match="totp_secret is not valid base32"):
        SessionStore(SimConfig(totp_secret="not base32 at all!"), now=lambda: 0.0)
