"""The unmodified smartapi-python SDK against the simulator: REST over real sockets, and the
SmartStream V2 client parsing every packet the simulator sends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from actors.angel.sdk import new_smart_connect, sdk_exceptions
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from cluster.config import SimConfig

INSTRUMENTS = synthetic_universe(30, seed=11)
EQUITY = INSTRUMENTS[0]  # NSE cash, tick 5 paise, lot 1
FUTURE = INSTRUMENTS[7]  # NFO index future, lot 65


class Clock:
    """A wall clock the test can move forward (session expiry)."""

    def __init__(self) -> None:
        import time

        self.ns = time.time_ns()

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Iterator[SimServer]:
    config = SimConfig(enforce_rate_limits=False, tick_rate=2_000, seed=11, session_ttl_s=3600)
    with SimServer(config, INSTRUMENTS, clock_ns=clock).run_in_thread() as server:
        yield server


def connect(sim: SimServer, tmp_path: Path, login: bool = True) -> Any:
    conn = new_smart_connect(sim.config.api_key, sim.rest_url, tmp_path / "sdk-logs")
    if login:
        answer = conn.generateSession(sim.config.client_code, sim.config.pin, sim.totp())
        assert answer["status"] is True, answer
    return conn


def order_params(inst: Any = EQUITY, **changes: Any) -> dict[str, Any]:
    params = {
        "variety": "NORMAL",
        "tradingsymbol": inst.symbol,
        "symboltoken": inst.token,
        "transactiontype": "BUY",
        "exchange": inst.exchange,
        "ordertype": "LIMIT",
        "producttype": "INTRADAY",
        "duration": "DAY",
        "price": "1.00",
        "quantity": str(inst.lot_size),
    }
    params.update(changes)
    return params


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def test_sdk_logs_in_and_reads_the_profile(sim: SimServer, tmp_path: Path) -> None:
    conn = new_smart_connect(sim.config.api_key, sim.rest_url, tmp_path / "sdk-logs")
    user = conn.generateSession(sim.config.client_code, sim.config.pin, sim.totp())
    assert user["status"] is True and user["data"]["clientcode"] == sim.config.client_code
    assert user["data"]["jwtToken"].startswith("Bearer ") and user["data"]["feedToken"]
    assert conn.getProfile(conn.refresh_token)["data"]["clientcode"] == sim.config.client_code


@pytest.mark.parametrize(
    ("client_code", "pin", "totp", "code"),
    [
        ("SIM001", "9999", None, "AB1007"),  # wrong PIN
        ("NOBODY", "1234", None, "AB1007"),  # unknown client code
        ("SIM001", "1234", "000000", "AB1050"),  # TOTP that is not the current one
    ],
)
def test_sdk_login_refusals(
    sim: SimServer, tmp_path: Path, client_code: str, pin: str, totp: str | None, code: str
) -> None:
    conn = connect(sim, tmp_path, login=False)
    if totp == "000000" and sim.totp() == "000000":  # one in a million: pick another wrong code
        totp = "000001"
    answer = conn.generateSession(client_code, pin, totp or sim.totp())
    assert answer["status"] is False and answer["errorcode"] == code


def test_totp_from_the_documented_secret_is_accepted(sim: SimServer, tmp_path: Path, clock: Clock) -> None:
    conn = connect(sim, tmp_path, login=False)
    code = pyotp.TOTP("SHARDLINESIMULATORDEMOTOTPSECRET").at(clock.ns // 1_000_000_000)
    assert conn.generateSession("SIM001", "1234", code)["status"] is True


def test_sdk_places_modifies_cancels_and_lists_orders(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    orderid = conn.placeOrder(order_params(price=rupees(EQUITY.base_price - 500)))
    assert orderid and orderid.isdigit()
    book = conn.orderBook()["data"]
    assert [(o["orderid"], o["status"]) for o in book] == [(orderid, "open")]

    new_price = EQUITY.base_price - 400
    answer = conn.modifyOrder(order_params(orderid=orderid, price=rupees(new_price), quantity="3"))
    assert answer["status"] is True and answer["data"]["orderid"] == orderid
    row = conn.orderBook()["data"][0]
    assert row["quantity"] == "3" and row["price"] == new_price / 100

    answer = conn.cancelOrder(orderid, "NORMAL")
    assert answer["status"] is True
    row = conn.orderBook()["data"][0]
    assert row["status"] == "cancelled" and row["unfilledshares"] == "3"

    again = conn.cancelOrder(orderid, "NORMAL")
    assert again["status"] is False and "already cancelled" in again["message"]


def test_sdk_market_order_fills_and_shows_in_trades_and_positions(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    orderid = conn.placeOrder(order_params(FUTURE, ordertype="MARKET", price="0", quantity="130"))
    row = next(o for o in conn.orderBook()["data"] if o["orderid"] == orderid)
    assert row["status"] == "complete" and row["filledshares"] == "130"
    trades = conn.tradeBook()["data"]
    assert [(t["orderid"], t["fillsize"]) for t in trades] == [(orderid, "130")]
    assert trades[0]["fillprice"] == row["averageprice"]
    positions = conn.position()["data"]
    assert [(p["symboltoken"], p["netqty"]) for p in positions] == [(FUTURE.token, "130")]


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"price": "1.03"}, "not a multiple of the tick size"),
        ({"quantity": "1", "price": "0", "ordertype": "MARKET"}, "lot size 65"),
    ],
)
def test_exchange_rejections_show_as_rejected_orders(
    sim: SimServer, tmp_path: Path, changes: dict[str, str], text: str
) -> None:
    conn = connect(sim, tmp_path)
    inst = EQUITY if "price" in changes and changes["price"] == "1.03" else FUTURE
    orderid = conn.placeOrder(order_params(inst, **changes))
    row = next(o for o in conn.orderBook()["data"] if o["orderid"] == orderid)
    assert row["status"] == "rejected" and text in row["text"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"variety": "SPECIAL"}, "AB1008"),
        ({"producttype": "LEVERAGED"}, "AB1012"),
        ({"symboltoken": "99999999"}, "AB1009"),
        ({"ordertag": "x" * 21}, "AB4008"),
        ({"price": "abc"}, "AB1007"),
    ],
)
def test_malformed_orders_are_refused_with_angel_codes(
    sim: SimServer, tmp_path: Path, changes: dict[str, str], code: str
) -> None:
    conn = connect(sim, tmp_path)
    answer = conn.placeOrderFullResponse(order_params(**changes))
    assert answer["status"] is False and answer["errorcode"] == code and answer["message"]


def test_missing_api_key_and_bad_token(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    conn.privateKey = "wrong-key"
    answer = conn.orderBook()
    assert answer["status"] is False and answer["errorcode"] == "AG8004"
    conn.privateKey = sim.config.api_key
    conn.setAccessToken("not-a-token")
    answer = conn.orderBook()
    assert answer["status"] is False and answer["errorcode"] == "AG8001"


def test_session_expires_after_its_ttl_and_refresh_renews_it(
    sim: SimServer, tmp_path: Path, clock: Clock
) -> None:
    conn = connect(sim, tmp_path)
    assert conn.orderBook()["status"] is True
    clock.ns += 3600 * 1_000_000_000 - 1_000_000_000
    assert conn.orderBook()["status"] is True  # a second before expiry
    clock.ns += 2_000_000_000
    answer = conn.orderBook()
    assert (
        answer["status"] is False and answer["errorcode"] == "AG8001" and answer["message"] == "Invalid Token"
    )


def test_generate_tokens_gives_a_working_session(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    old = conn.access_token
    conn.generateToken(conn.refresh_token)
    assert conn.access_token != old and conn.orderBook()["status"] is True
    conn.setAccessToken(old)
    assert conn.orderBook()["errorcode"] == "AG8001"  # the old token was retired


def test_logout_ends_the_session(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    assert conn.terminateSession(sim.config.client_code)["status"] is True
    assert conn.orderBook()["errorcode"] == "AG8001"


def test_quotes_ltp_and_the_fifty_token_cap(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    ltp = conn.ltpData(EQUITY.exchange, EQUITY.symbol, EQUITY.token)["data"]
    assert ltp["symboltoken"] == EQUITY.token and ltp["ltp"] > 0
    full = conn.getMarketData("FULL", {"NSE": [EQUITY.token, "424242"]})["data"]
    row = full["fetched"][0]
    assert row["depth"]["buy"][0]["price"] < row["depth"]["sell"][0]["price"]
    assert row["lowerCircuit"] <= row["ltp"] <= row["upperCircuit"]
    assert full["unfetched"][0]["symbolToken"] == "424242"
    ohlc = conn.getMarketData("OHLC", {"NSE": [EQUITY.token]})["data"]["fetched"][0]
    assert set(ohlc) == {"exchange", "tradingSymbol", "symbolToken", "ltp", "open", "high", "low", "close"}
    too_many = conn.getMarketData("LTP", {"NSE": [str(i) for i in range(51)]})
    assert too_many["status"] is False and "At most 50 tokens" in too_many["message"]


@pytest.mark.parametrize(
    ("interval", "days", "ok"),
    [("ONE_MINUTE", 30, True), ("ONE_MINUTE", 31, False), ("ONE_HOUR", 400, True), ("ONE_DAY", 2001, False)],
)
def test_candles_enforce_days_per_interval(
    sim: SimServer, tmp_path: Path, interval: str, days: int, ok: bool
) -> None:
    from datetime import datetime, timedelta

    conn = connect(sim, tmp_path)
    end = datetime(2026, 7, 10, 15, 30)
    params = {
        "exchange": "NSE",
        "symboltoken": EQUITY.token,
        "interval": interval,
        "fromdate": (end - timedelta(days=days)).strftime("%Y-%m-%d %H:%M"),
        "todate": end.strftime("%Y-%m-%d %H:%M"),
    }
    answer = conn.getCandleData(params)
    assert answer["status"] is ok
    if ok:
        assert answer["data"] and all(len(c) == 6 for c in answer["data"])
        assert answer == conn.getCandleData(params)  # deterministic
    else:
        assert "at most" in answer["message"]


def test_gtt_rules_with_and_without_the_service_prefix(sim: SimServer, tmp_path: Path) -> None:
    conn = connect(sim, tmp_path)
    trigger = EQUITY.base_price - 1000
    rule = {
        "tradingsymbol": EQUITY.symbol,
        "symboltoken": EQUITY.token,
        "exchange": "NSE",
        "producttype": "DELIVERY",
        "transactiontype": "BUY",
        "price": rupees(trigger),
        "qty": "2",
        "disclosedqty": "0",
        "triggerprice": rupees(trigger),
        "timeperiod": "365",
    }
    rule_id = conn.gttCreateRule(dict(rule))  # SDK route: /gtt-service/...
    assert conn.gttModifyRule({**rule, "id": rule_id, "qty": "4"}) == rule_id
    details = conn.gttDetails(rule_id)["data"]  # SDK route: no prefix
    assert details["qty"] == "4" and details["status"] == "NEW"
    assert [r["id"] for r in conn.gttLists(["NEW"], 1, 10)["data"]] == [rule_id]
    conn.gttCancelRule({"id": rule_id, "symboltoken": EQUITY.token, "exchange": "NSE"})
    assert conn.gttLists(["CANCELLED"], 1, 10)["data"][0]["status"] == "CANCELLED"
    bad = conn._postRequest("api.gtt.create", {**rule, "exchange": "NFO", "symboltoken": FUTURE.token})
    assert bad["status"] is False and "NSE and BSE" in bad["message"]


def test_rate_limits_answer_like_angel(tmp_path: Path, clock: Clock) -> None:
    config = SimConfig(enforce_rate_limits=True, tick_rate=100, seed=11)
    with SimServer(config, INSTRUMENTS, clock_ns=clock).run_in_thread() as sim:
        conn = connect(sim, tmp_path)
        assert conn.orderBook()["status"] is True
        with pytest.raises(sdk_exceptions().DataException, match="exceeding access rate"):
            conn.orderBook()  # the order book allows one call per second


def test_sdk_stream_parses_every_packet_in_every_mode(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait_until: Callable[..., Any]
) -> None:
    from SmartApi.smartWebSocketV2 import SmartWebSocketV2  # loaded by actors.angel.sdk already

    monkeypatch.chdir(tmp_path)  # the SDK's socket client writes logs/ into the cwd
    # websocket-client reconnects a dropped socket by itself every 5 s unless told otherwise
    monkeypatch.setattr("websocket._app.RECONNECT", 0)
    conn = connect(sim, tmp_path)
    modes = {1: INSTRUMENTS[1], 2: INSTRUMENTS[2], 3: FUTURE}
    received: list[dict[str, Any]] = []
    errors: list[Any] = []
    # No retries: after an error or its own close the SDK sleeps 10 s and reconnects if it may,
    # which would outlive the test and hold the simulator's shutdown; without them it stops.
    client = SmartWebSocketV2(
        conn.access_token, sim.config.api_key, sim.config.client_code, conn.feed_token, max_retry_attempt=0
    )
    client.ROOT_URI = sim.stream_url
    client.input_request_dict = {}  # a class attribute in the SDK: keep this test's subscriptions its own

    def on_open(wsapp: Any) -> None:
        for mode, inst in modes.items():
            client.subscribe(
                f"m{mode}",
                mode,
                [{"exchangeType": 2 if inst.exchange == "NFO" else 1, "tokens": [inst.token]}],
            )

    client.on_open = on_open
    client.on_data = lambda wsapp, data: received.append(data)
    client.on_error = lambda *args: errors.append(args)
    thread = threading.Thread(target=client.connect, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: {d["subscription_mode"] for d in received} == {1, 2, 3} and len(received) > 60,
            30,
            "packets",
        )
    finally:
        streaming_errors = list(errors)
        # With no retries and no reconnects, the SDK's thread ends once the connection is gone. Its
        # reader can sit in poll() until the simulator drops the socket (the closing thread reads
        # the close reply itself), so the test does not wait for it: it cannot reconnect.
        client.close_connection()
    assert not streaming_errors
    by_mode: dict[int, list[dict[str, Any]]] = {}
    for packet in received:
        by_mode.setdefault(packet["subscription_mode"], []).append(packet)
    for mode, inst in modes.items():
        packets = by_mode[mode]
        assert {p["token"] for p in packets} == {inst.token}
        seqs = [p["sequence_number"] for p in packets]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # per token, no gaps, no repeats
        assert all(p["last_traded_price"] % inst.tick_size == 0 for p in packets)
    snap = by_mode[3][-1]
    assert snap["exchange_type"] == 2 and snap["open_interest"] > 0
    assert snap["lower_circuit_limit"] <= snap["last_traded_price"] <= snap["upper_circuit_limit"]
    best_bid = snap["best_5_buy_data"][0]["price"]
    best_ask = snap["best_5_sell_data"][0]["price"]
    assert len(snap["best_5_buy_data"]) == 5 and best_bid < best_ask
    quote = by_mode[2][-1]
    assert quote["high_price_of_the_day"] >= quote["last_traded_price"] >= quote["low_price_of_the_day"]
    assert "open_interest" not in quote and "last_traded_quantity" not in by_mode[1][-1]


def test_session_hours_close_the_market_and_expire_day_orders(
    tmp_path: Path, wait_until: Callable[..., Any]
) -> None:
    from datetime import datetime

    from actors.sim.market_hours import IST

    clock = Clock()
    clock.ns = int(datetime(2026, 7, 6, 15, 29, tzinfo=IST).timestamp()) * 1_000_000_000  # a Monday
    config = SimConfig(enforce_rate_limits=False, tick_rate=1_000, seed=11, session_hours=True)
    with SimServer(config, INSTRUMENTS, clock_ns=clock).run_in_thread() as sim:
        conn = connect(sim, tmp_path)
        orderid = conn.placeOrder(order_params(price=rupees(EQUITY.base_price - 500)))
        assert conn.orderBook()["data"][0]["status"] == "open"
        clock.ns += 61 * 1_000_000_000  # 15:30:01: the session is over

        def expired() -> bool:
            row = conn.orderBook()["data"][0]
            return row["status"] == "cancelled" and row["text"] == "the trading day ended"

        wait_until(expired, 15, "the DAY order to expire at the close")
        late = conn.placeOrder(order_params(price=rupees(EQUITY.base_price - 500)))
        row = next(o for o in conn.orderBook()["data"] if o["orderid"] == late)
        assert late != orderid and row["status"] == "rejected" and "market is closed" in row["text"]
