"""The REST client over the real smartapi-python SDK against the simulator, over real sockets:
login and its failures, session renewal, every order call, books, market data, candles, GTT
rules, and backing off when the broker says we went too fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyotp
import pytest
from cryptography.fernet import Fernet

from actors.angel.auth import AngelCredentials, SessionCache
from actors.angel.common import CandleInterval, EndpointGroup, GttStatus, RateLimit
from actors.angel.errors import BrokerRejectedError, LoginError, LoginFailure, OrderNotFoundError
from actors.angel.factories import AngelConnection, AngelEndpoints, connect
from actors.angel.limits import RateLimiter
from actors.angel.rest import RetryPolicy
from actors.angel.schemas import GttRuleSpec
from actors.orders import OrderRequest, OrderStatus, OrderType, Product, Side
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.config import SimConfig

INSTRUMENTS = synthetic_universe(120, seed=5)
EQUITY = INSTRUMENTS[0]  # NSE cash, tick 5 paise, lot 1
FUTURE = INSTRUMENTS[7]  # NFO index future, lot 65


class WallClock:
    """Wall time the test can move forward; the simulator and the client each get one."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def ns(self) -> int:
        return int(self() * 1e9)


@pytest.fixture
def sim_clock() -> WallClock:
    return WallClock()


@pytest.fixture
def sim(sim_clock: WallClock) -> Iterator[SimServer]:
    config = SimConfig(tick_rate=2_000, seed=5, session_ttl_s=3600, enforce_rate_limits=True)
    with SimServer(config, INSTRUMENTS, clock_ns=sim_clock.ns).run_in_thread() as server:
        yield server


def endpoints(sim: SimServer) -> AngelEndpoints:
    return AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url)


@pytest.fixture
async def angel(sim: SimServer, tmp_path: Path) -> Any:
    conn = connect(AngelCredentials.for_simulator(sim.config), endpoints(sim), tmp_path)
    yield conn
    await conn.close()


async def eventually(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def buy(instrument: Any = EQUITY, **fields: Any) -> OrderRequest:
    return OrderRequest(
        client_order_id=fields.pop("client_order_id", "c1"),
        book="manual",
        instrument=instrument.key,
        side=fields.pop("side", Side.BUY),
        quantity=fields.pop("quantity", instrument.lot_size),
        **fields,
    )


async def resting_price(angel: AngelConnection, instrument: Any = EQUITY, below: bool = True) -> int:
    """A limit price ~3% away from the market, on the tick grid and inside the circuit band."""
    (quote,) = await angel.rest.quote([instrument.key])
    tick = instrument.tick_size
    if below:
        return max(quote.lower_circuit, (quote.ltp * 97 // 100) // tick * tick)
    return min(quote.upper_circuit, (quote.ltp * 103 // 100) // tick * tick)


# ----------------------------------------------------------------------------------- login


async def test_first_call_logs_in_and_later_calls_reuse_the_session(angel: AngelConnection) -> None:
    assert angel.auth.session is None
    await angel.rest.order_book()
    session = angel.auth.session
    assert session is not None and session.client_code == "SIM001"
    await angel.rest.positions()
    assert angel.auth.logins == 1 and angel.auth.session is session


@pytest.mark.parametrize(
    ("change", "reason", "hint"),
    [
        ({"pin": "9999"}, LoginFailure.WRONG_PIN, "ANGEL_PIN"),
        ({"client_code": "NOBODY"}, LoginFailure.WRONG_PIN, "ANGEL_CLIENT_CODE"),
        ({"totp_secret": pyotp.random_base32()}, LoginFailure.BAD_TOTP, "ANGEL_TOTP_SECRET"),
        ({"api_key": "wrong-key"}, LoginFailure.INVALID_API_KEY, "ANGEL_API_KEY"),
    ],
)
async def test_failed_login_says_why_and_never_shows_secrets(
    sim: SimServer, tmp_path: Path, change: dict[str, str], reason: LoginFailure, hint: str
) -> None:
    fields = {**sim.credentials(), **change}
    creds = AngelCredentials(**fields)
    conn = connect(creds, endpoints(sim), tmp_path)
    try:
        with pytest.raises(LoginError) as err:
            await conn.rest.order_book()
    finally:
        await conn.close()
    assert err.value.reason is reason
    message = str(err.value)
    assert hint in message
    for secret in (creds.pin, creds.totp_secret, creds.api_key):
        assert secret not in message


async def test_a_clock_that_is_off_is_named_as_the_cause(sim: SimServer, tmp_path: Path) -> None:
    skewed = WallClock()
    skewed.offset_s = 300.0  # TOTP codes from five minutes in the future
    conn = connect(AngelCredentials.for_simulator(sim.config), endpoints(sim), tmp_path, clock=skewed)
    try:
        with pytest.raises(LoginError) as err:
            await conn.auth.ensure_session()
    finally:
        await conn.close()
    assert err.value.reason is LoginFailure.CLOCK_SKEW
    assert "s ahead of the broker's" in str(err.value)


async def test_session_is_renewed_before_it_expires(
    sim: SimServer, sim_clock: WallClock, tmp_path: Path
) -> None:
    conn = connect(AngelCredentials.for_simulator(sim.config), endpoints(sim), tmp_path, clock=sim_clock)
    try:
        first = await conn.auth.ensure_session()
        sim_clock.offset_s = 3600 - 60  # inside the renewal margin, before expiry
        await conn.rest.order_book()
        renewed = conn.auth.session
        assert renewed is not None and renewed.jwt_token != first.jwt_token
        assert renewed.expires_at > first.expires_at
        assert (conn.auth.logins, conn.auth.renewals) == (1, 1)
    finally:
        await conn.close()


async def test_an_invalid_token_answer_renews_and_retries_the_call_once(
    angel: AngelConnection, sim: SimServer
) -> None:
    await angel.rest.order_book()
    session = angel.auth.session
    assert session is not None

    async def revoke() -> None:  # the broker drops the session (as it does at its daily reset)
        sim.sessions.logout(sim.sessions.check(session.bearer))

    sim.submit(revoke())
    book = await angel.rest.order_book()
    assert book == []
    assert angel.rest.retries["token"] == 1
    assert angel.auth.logins == 2  # the refresh token went with the session, so a fresh login
    assert angel.auth.session is not None and angel.auth.session.jwt_token != session.jwt_token


async def test_the_session_cache_spares_a_login_and_stays_encrypted(sim: SimServer, tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    creds = AngelCredentials.for_simulator(sim.config)
    first = connect(creds, endpoints(sim), tmp_path, cache=SessionCache(tmp_path / "session", key))
    try:
        await first.rest.order_book()
    finally:
        await first.close()
    assert first.auth.session is not None
    assert first.auth.session.jwt_token.encode() not in (tmp_path / "session").read_bytes()
    second = connect(creds, endpoints(sim), tmp_path, cache=SessionCache(tmp_path / "session", key))
    try:
        await second.rest.positions()
        assert second.auth.logins == 0
    finally:
        await second.close()


# ----------------------------------------------------------------------------------- orders


async def test_limit_order_place_modify_cancel(angel: AngelConnection) -> None:
    price = await resting_price(angel)
    placed = await angel.rest.place_order(
        buy(order_type=OrderType.LIMIT, price=price, quantity=3, tag="t-limit"), EQUITY.symbol
    )
    (open_order,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert open_order.status is OrderStatus.OPEN
    assert (open_order.price, open_order.quantity, open_order.tag) == (price, 3, "t-limit")

    lower = price - 4 * EQUITY.tick_size
    change = buy(order_type=OrderType.LIMIT, price=lower, quantity=5)
    modified = await angel.rest.modify_order(angel.rest.modify_params(open_order, change))
    assert modified.orderid == placed.orderid
    (after_modify,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert (after_modify.price, after_modify.quantity) == (lower, 5)

    await angel.rest.cancel_order(placed.orderid)
    (cancelled,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert cancelled.status is OrderStatus.CANCELLED


async def test_market_order_fills_into_trades_and_positions(angel: AngelConnection) -> None:
    placed = await angel.rest.place_order(buy(FUTURE, quantity=2 * FUTURE.lot_size), FUTURE.symbol)
    (order,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert order.status is OrderStatus.FILLED and order.filled_quantity == 130
    trades = [t for t in await angel.rest.trade_book() if t.venue_order_id == placed.orderid]
    assert sum(t.quantity for t in trades) == 130
    assert all(t.price > 0 and t.price % FUTURE.tick_size == 0 for t in trades)
    (position,) = [p for p in await angel.rest.positions() if p.instrument == FUTURE.key]
    assert position.net_quantity == 130 and position.buy_quantity == 130


async def test_stop_order_waits_for_its_trigger(angel: AngelConnection) -> None:
    trigger = await resting_price(angel, below=True)
    placed = await angel.rest.place_order(
        buy(side=Side.SELL, order_type=OrderType.SL_M, trigger_price=trigger, is_exit=True), EQUITY.symbol
    )
    (order,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert order.status is OrderStatus.TRIGGER_PENDING
    assert order.trigger_price == trigger and order.variety == "STOPLOSS"
    await angel.rest.cancel_order(placed.orderid, order.variety)


async def test_exchange_refusal_shows_as_a_rejected_order_with_the_reason(angel: AngelConnection) -> None:
    (quote,) = await angel.rest.quote([EQUITY.key])
    above_band = quote.upper_circuit + 20 * EQUITY.tick_size
    placed = await angel.rest.place_order(buy(order_type=OrderType.LIMIT, price=above_band), EQUITY.symbol)
    (order,) = [o for o in await angel.rest.order_book() if o.venue_order_id == placed.orderid]
    assert order.status is OrderStatus.REJECTED
    assert order.reason


async def test_broker_refusals_raise_typed_errors_with_the_brokers_words(angel: AngelConnection) -> None:
    with pytest.raises(BrokerRejectedError) as unknown:
        await angel.rest.place_order(
            OrderRequest(
                client_order_id="x", book="manual", instrument="NSE:424242", side=Side.BUY, quantity=1
            ),
            "NOPE-EQ",
        )
    assert unknown.value.code == "AB1009"
    with pytest.raises(OrderNotFoundError) as missing:
        await angel.rest.cancel_order("999999999")
    assert missing.value.code == "AB1013" and "999999999" in missing.value.broker_message


# ----------------------------------------------------------------------------------- market data


async def test_ltp_and_quotes_in_paise(angel: AngelConnection) -> None:
    ltp = await angel.rest.ltp(EQUITY.key, EQUITY.symbol)
    assert ltp > 0 and ltp % EQUITY.tick_size == 0
    keys = [i.key for i in INSTRUMENTS[:60]]  # more than one request's 50
    quotes = await angel.rest.quote(keys)
    assert [q.instrument for q in quotes] == keys
    full = quotes[0]
    assert full.lower_circuit < full.ltp < full.upper_circuit
    assert len(full.bids) == 5 and len(full.asks) == 5
    assert full.bids[0][0] < full.asks[0][0]


async def test_candles_over_more_days_than_one_request_allows(angel: AngelConnection) -> None:
    start, end = datetime(2026, 9, 1, 9, 15), datetime(2026, 11, 13, 15, 29)  # 73 days of ONE_MINUTE
    before = angel.rest.gateway.calls
    bars = await angel.rest.candles(EQUITY.key, CandleInterval.ONE_MINUTE, start, end)
    assert angel.rest.gateway.calls - before >= 3  # 30-day windows
    stamps = [b.ts_ns for b in bars]
    assert stamps == sorted(set(stamps))
    weekdays = {datetime.fromtimestamp(t / 1e9).date() for t in stamps}
    assert len(weekdays) > 45
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


# ----------------------------------------------------------------------------------- GTT


async def test_gtt_rule_create_details_list_modify_cancel(angel: AngelConnection) -> None:
    ltp = await angel.rest.ltp(EQUITY.key, EQUITY.symbol)
    tick = EQUITY.tick_size
    spec = GttRuleSpec(
        instrument=EQUITY.key,
        tradingsymbol=EQUITY.symbol,
        side=Side.SELL,
        product=Product.DELIVERY,
        quantity=4,
        price=(ltp * 108 // 100) // tick * tick,
        trigger_price=(ltp * 109 // 100) // tick * tick,
    )
    rule_id = await angel.rest.create_gtt(spec)
    rule = await angel.rest.gtt_details(rule_id)
    assert (rule.rule_id, rule.instrument, rule.quantity, rule.price, rule.trigger_price, rule.status) == (
        rule_id,
        EQUITY.key,
        4,
        spec.price,
        spec.trigger_price,
        "NEW",
    )
    assert rule_id in [r.rule_id for r in await angel.rest.gtt_list([GttStatus.NEW])]

    changed = msgspec.structs.replace(
        spec, quantity=6, price=spec.price + tick, trigger_price=spec.trigger_price + tick
    )
    assert await angel.rest.modify_gtt(rule_id, changed) == rule_id
    after = await angel.rest.gtt_details(rule_id)
    assert (after.quantity, after.price, after.trigger_price) == (
        6,
        spec.price + tick,
        spec.trigger_price + tick,
    )

    assert await angel.rest.cancel_gtt(rule_id, EQUITY.key) == rule_id
    assert (await angel.rest.gtt_details(rule_id)).status == "CANCELLED"
    assert rule_id not in [r.rule_id for r in await angel.rest.gtt_list([GttStatus.NEW])]


# ----------------------------------------------------------------------------------- rate limits


async def test_broker_rate_limit_refusals_back_off_and_lose_nothing(sim: SimServer, tmp_path: Path) -> None:
    # A client limiter far looser than the broker's 10/s, so the broker refuses some calls.
    loose = RateLimiter({group: RateLimit(1000) for group in EndpointGroup})
    conn = connect(
        AngelCredentials.for_simulator(sim.config),
        endpoints(sim),
        tmp_path,
        limiter=loose,
        retry=RetryPolicy(rate_limit_retries=20, backoff_initial_s=0.2, backoff_max_s=1.0),
    )
    try:
        await conn.auth.ensure_session()
        prices = await asyncio.gather(*(conn.rest.ltp(i.key, i.symbol) for i in INSTRUMENTS[:25]))
    finally:
        await conn.close()
    assert len(prices) == 25 and all(p > 0 for p in prices)
    assert conn.rest.retries["rate_limit"] > 0
    assert loose.backoffs[EndpointGroup.MARKET_DATA] > 0


async def test_angels_own_table_keeps_the_client_under_the_brokers_limit(angel: AngelConnection) -> None:
    await angel.auth.ensure_session()
    prices = await asyncio.gather(*(angel.rest.ltp(i.key, i.symbol) for i in INSTRUMENTS[:25]))
    assert all(p > 0 for p in prices)
    assert angel.rest.retries["rate_limit"] == 0
    assert angel.rest.limiter.waited[EndpointGroup.MARKET_DATA] > 0
