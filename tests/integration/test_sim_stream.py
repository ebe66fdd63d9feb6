"""SmartStream V2 and the order-update socket of the simulator, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from actors.angel.packets import EXCHANGE_TYPE, LTP_DTYPE, PACKET_SIZE
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from actors.ticks import FeedMode
from cluster.config import SimConfig

INSTRUMENTS = synthetic_universe(1_200, seed=5)
NSE = [i for i in INSTRUMENTS if i.exchange == "NSE"]
HEAD = np.dtype([("token", "S25"), ("seq", "<i8")])


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(SimConfig(enforce_rate_limits=False, tick_rate=5_000, seed=5), INSTRUMENTS)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def login(http: aiohttp.ClientSession, sim: SimServer) -> dict[str, str]:
    headers = {"X-PrivateKey": sim.config.api_key, "X-UserType": "USER", "X-SourceID": "WEB"}
    body = {"clientcode": sim.config.client_code, "password": sim.config.pin, "totp": sim.totp()}
    async with http.post(
        f"{sim.rest_url}/rest/auth/angelbroking/user/v1/loginByPassword", json=body, headers=headers
    ) as r:
        answer = await r.json()
    assert answer["status"] is True
    return dict(answer["data"])


def stream_headers(sim: SimServer, tokens: dict[str, str]) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {tokens['jwtToken']}",
        "x-api-key": sim.config.api_key,
        "x-client-code": sim.config.client_code,
        "x-feed-token": tokens["feedToken"],
    }


def subscribe_message(instruments: list[Any], mode: int, action: int = 1) -> str:
    groups: dict[int, list[str]] = {}
    for inst in instruments:
        groups.setdefault(EXCHANGE_TYPE[inst.exchange], []).append(inst.token)
    token_list = [{"exchangeType": k, "tokens": v} for k, v in groups.items()]
    return json.dumps(
        {"correlationID": "t1", "action": action, "params": {"mode": mode, "tokenList": token_list}}
    )


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse,
    done: Callable[[], bool],
    on_binary: Callable[[bytes], None],
    on_text: Callable[[str], None] | None = None,
    timeout_s: float = 20.0,
) -> None:
    """Read messages until ``done()`` holds; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("condition not met before the deadline")
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        if msg.type is aiohttp.WSMsgType.BINARY:
            on_binary(msg.data)
        elif msg.type is aiohttp.WSMsgType.TEXT and on_text is not None:
            on_text(msg.data)
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
            raise ConnectionError(f"socket closed: {msg}")


@pytest.mark.parametrize(
    ("spoil", "status"),
    [
        ("Authorization", 401),
        ("x-api-key", 401),
        ("x-client-code", 401),
        ("x-feed-token", 401),
    ],
)
async def test_handshake_checks_every_header(
    sim: SimServer, http: aiohttp.ClientSession, spoil: str, status: int
) -> None:
    headers = stream_headers(sim, await login(http, sim))
    headers[spoil] = "wrong"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(sim.stream_url, headers=headers)
    assert err.value.status == status
    del headers[spoil]
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(sim.stream_url, headers=headers)


async def test_fourth_connection_is_refused_and_a_freed_slot_reopens(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    headers = stream_headers(sim, await login(http, sim))
    sockets = [await http.ws_connect(sim.stream_url, headers=headers) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(sim.stream_url, headers=headers)
    assert err.value.status == 429
    await sockets[0].close()
    deadline = time.monotonic() + 10
    while sim.counters()["connections"] != 2:
        assert time.monotonic() < deadline, "the closed socket was never released"
        await asyncio.sleep(0.01)
    sockets[0] = await http.ws_connect(sim.stream_url, headers=headers)
    for ws in sockets:
        await ws.close()


async def test_text_ping_gets_pong(sim: SimServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
        await ws.send_str("ping")
        assert (await ws.receive_str(timeout=5)) == "pong"


async def test_subscription_cap_and_unknown_tokens(sim: SimServer, http: aiohttp.ClientSession) -> None:
    sim.set_tick_rate(0)
    texts: list[dict[str, Any]] = []
    async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
        await ws.send_str(subscribe_message(NSE[:600], FeedMode.LTP))
        await ws.send_str(subscribe_message(NSE[:600], FeedMode.LTP))  # repeats do not count twice
        await ws.send_str(subscribe_message(INSTRUMENTS[:400], FeedMode.QUOTE))  # 600 + 400 = 1000: fine
        await ws.send_str(subscribe_message(INSTRUMENTS[400:401], FeedMode.QUOTE))  # the 1001st
        await receive_until(
            ws, lambda: len(texts) >= 1, lambda b: None, lambda t: texts.append(json.loads(t))
        )
        assert texts[0]["errorCode"] == "E1002" and "Subscription Limit Exceeded" in texts[0]["errorMessage"]
        bogus = {
            "correlationID": "u",
            "action": 1,
            "params": {"mode": 1, "tokenList": [{"exchangeType": 1, "tokens": ["nope"]}]},
        }
        await ws.send_str(json.dumps(bogus))
        await ws.send_str("{not json")
        await receive_until(
            ws, lambda: len(texts) >= 3, lambda b: None, lambda t: texts.append(json.loads(t))
        )
        assert texts[1]["errorCode"] == "E1003" and "1:nope" in texts[1]["errorMessage"]
        assert texts[2]["errorCode"] == "E1001"


async def test_every_tick_arrives_in_order_and_counts_balance(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    chosen = NSE[:150]
    heads = bytearray()
    sim.set_tick_rate(30_000)
    async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
        await ws.send_str(subscribe_message(chosen, FeedMode.LTP))
        got = [0]

        def keep(data: bytes) -> None:
            assert len(data) == PACKET_SIZE[FeedMode.LTP] and data[0] == FeedMode.LTP
            heads.extend(data[2:35])
            got[0] += 1

        await receive_until(ws, lambda: got[0] >= 20_000, keep)
        sim.set_tick_rate(0)
        last = {inst.token.encode(): sim.last_seq(inst.key) for inst in chosen}

        def caught_up() -> bool:
            head = np.frombuffer(bytes(heads), dtype=HEAD)
            newest: dict[bytes, int] = {}
            for token, seq in zip(head["token"].tolist(), head["seq"].tolist(), strict=True):
                newest[token] = seq
            return newest == last

        await receive_until(ws, caught_up, keep)
    head = np.frombuffer(bytes(heads), dtype=HEAD)
    for token in last:
        seqs = head["seq"][head["token"] == token]
        assert (np.diff(seqs) == 1).all(), f"gap or repeat for token {token!r}"
    counters = sim.counters()
    assert counters["dropped"] == 0 and counters["sent"] == len(head)


async def test_modes_per_token_and_unsubscribe(sim: SimServer, http: aiohttp.ClientSession) -> None:
    a, b = NSE[0], NSE[1]
    seen: dict[tuple[int, bytes], int] = {}

    def keep(data: bytes) -> None:
        packet = np.frombuffer(data[: LTP_DTYPE.itemsize], dtype=LTP_DTYPE)[0]
        assert len(data) == PACKET_SIZE[FeedMode(data[0])]
        key = (int(packet["mode"]), bytes(packet["token"]))
        seen[key] = seen.get(key, 0) + 1

    async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
        await ws.send_str(subscribe_message([a], FeedMode.SNAP_QUOTE))
        await ws.send_str(subscribe_message([a, b], FeedMode.QUOTE))
        await receive_until(ws, lambda: len(seen) == 3 and min(seen.values()) > 5, keep)
        assert set(seen) == {(3, a.token.encode()), (2, a.token.encode()), (2, b.token.encode())}
        await ws.send_str(subscribe_message([a], FeedMode.QUOTE, action=0))
        await ws.send_str(subscribe_message([a], FeedMode.SNAP_QUOTE, action=0))
        # The server answers in order: once "pong" is back, the unsubscribes have taken effect.
        await ws.send_str("ping")
        pongs: list[str] = []
        await receive_until(ws, lambda: bool(pongs), keep, pongs.append)
        seen.clear()
        await receive_until(ws, lambda: seen.get((2, b.token.encode()), 0) > 20, keep)
        assert set(seen) == {(2, b.token.encode())}


async def test_dropped_connections_reconnect_without_repeats(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    chosen = NSE[:20]
    tokens = await login(http, sim)
    seqs: list[tuple[bytes, int]] = []

    def keep(data: bytes) -> None:
        head = np.frombuffer(data[2:35], dtype=HEAD)[0]
        seqs.append((bytes(head["token"]), int(head["seq"])))

    ws = await http.ws_connect(sim.stream_url, headers=stream_headers(sim, tokens))
    await ws.send_str(subscribe_message(chosen, FeedMode.LTP))
    await receive_until(ws, lambda: len(seqs) > 200, keep)
    assert sim.drop_connections() == 1
    with pytest.raises(ConnectionError):
        await receive_until(ws, lambda: False, keep, timeout_s=10)
    before = len(seqs)
    ws = await http.ws_connect(sim.stream_url, headers=stream_headers(sim, tokens))
    await ws.send_str(subscribe_message(chosen, FeedMode.LTP))
    await receive_until(ws, lambda: len(seqs) > before + 200, keep)
    await ws.close()
    newest: dict[bytes, int] = {}
    for token, seq in seqs:
        assert seq > newest.get(token, 0), "a tick was delivered twice or out of order"
        newest[token] = seq


# ----------------------------------------------------------------------------------------- orders


async def test_order_update_socket_reports_each_change(sim: SimServer, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, sim)
    rest = {
        "X-PrivateKey": sim.config.api_key,
        "X-UserType": "USER",
        "X-SourceID": "WEB",
        "Authorization": f"Bearer {tokens['jwtToken']}",
    }
    updates: list[dict[str, Any]] = []
    inst = NSE[3]
    base = {
        "variety": "NORMAL",
        "tradingsymbol": inst.symbol,
        "symboltoken": inst.token,
        "exchange": "NSE",
        "transactiontype": "BUY",
        "producttype": "INTRADAY",
        "duration": "DAY",
        "quantity": "5",
    }

    async def call(route: str, body: dict[str, Any]) -> dict[str, Any]:
        async with http.post(
            f"{sim.rest_url}/rest/secure/angelbroking/order/v1/{route}", json=body, headers=rest
        ) as r:
            return dict(await r.json())

    async with http.ws_connect(
        sim.order_url, headers={"Authorization": f"Bearer {tokens['jwtToken']}"}
    ) as ws:
        hello = json.loads(await ws.receive_str(timeout=5))
        assert hello["order-status"] == "AB00" and hello["user-id"] == sim.config.client_code
        below = inst.base_price * 95 // 100 // 5 * 5  # 5% under: rests, inside the circuit band
        low = f"{below // 100}.{below % 100:02d}"
        placed = await call("placeOrder", {**base, "ordertype": "LIMIT", "price": low})
        orderid = placed["data"]["orderid"]
        await call(
            "modifyOrder", {**base, "orderid": orderid, "ordertype": "LIMIT", "price": low, "quantity": "7"}
        )
        await call("cancelOrder", {"variety": "NORMAL", "orderid": orderid})
        await call("placeOrder", {**base, "ordertype": "MARKET", "price": "0"})
        await call("placeOrder", {**base, "ordertype": "LIMIT", "price": "1.01"})  # off the tick grid

        def take(text: str) -> None:
            updates.append(json.loads(text))

        await receive_until(ws, lambda: len(updates) >= 6, lambda b: None, take)
    codes = [u["order-status"] for u in updates]
    # limit: open, modified, cancelled; market: open then complete; off-grid limit: rejected
    assert codes == ["AB01", "AB04", "AB02", "AB01", "AB05", "AB03"]
    assert updates[1]["orderData"]["quantity"] == "7" and updates[0]["orderData"]["orderid"] == orderid
    assert updates[4]["orderData"]["filledshares"] == "5"
    assert "tick size" in updates[5]["error-message"]


async def test_order_update_socket_needs_a_token_and_caps_connections(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(sim.order_url, headers={"Authorization": "Bearer nonsense"})
    assert err.value.status == 401
    tokens = await login(http, sim)
    headers = {"Authorization": tokens["jwtToken"]}  # the SDK sends it with or without "Bearer "
    sockets = [await http.ws_connect(sim.order_url, headers=headers) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(sim.order_url, headers=headers)
    assert err.value.status == 429
    for ws in sockets:
        await ws.close()


async def test_a_client_that_stops_reading_loses_ticks_visibly(
    sim: SimServer, http: aiohttp.ClientSession
) -> None:
    """The feed never waits for a slow reader: what it cannot take is dropped, counted and seen as gaps."""
    chosen = NSE[:50]
    sim.set_tick_rate(0)
    async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
        await ws.send_str(subscribe_message(chosen, FeedMode.SNAP_QUOTE))
        await ws.send_str("ping")
        assert (await ws.receive_str(timeout=5)) == "pong"  # answered in order: the subscription holds
        before = sum(sim.last_seq(inst.key) for inst in chosen)
        sim.set_tick_rate(60_000)
        deadline = time.monotonic() + 60
        while sim.counters()["dropped"] == 0:  # not reading: socket buffers fill, then drops start
            assert time.monotonic() < deadline, "the server never started dropping for a stalled client"
            await asyncio.sleep(0.05)
        heads = bytearray()
        got = [0]

        def keep(data: bytes) -> None:
            heads.extend(data[2:35])
            got[0] += 1

        # Read again while the feed runs: deliveries resume past the dropped stretch.
        resumed_at = sim.counters()["sent"] + 2_000
        await receive_until(ws, lambda: got[0] >= resumed_at, keep, timeout_s=60)
        sim.set_tick_rate(0)
        counters = sim.counters()
        await receive_until(ws, lambda: got[0] >= counters["sent"], keep, timeout_s=60)
    head = np.frombuffer(bytes(heads), dtype=HEAD)
    assert len(head) == counters["sent"]
    generated = sum(sim.last_seq(inst.key) for inst in chosen) - before
    assert counters["sent"] + counters["dropped"] == generated  # every tick accounted for
    gaps = sum(
        int(np.count_nonzero(np.diff(head["seq"][head["token"] == t.token.encode()]) > 1)) for t in chosen
    )
    assert gaps > 0


async def test_replay_plays_a_recording_in_order(tmp_path: Any, http: aiohttp.ClientSession) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from actors.ticks import TICK_SCHEMA, empty_ticks, ticks_to_batch

    keys = [("NSE", "1000"), ("NFO", "777777"), ("NSE", "1000"), ("NFO", "777777"), ("NSE", "1000")]
    prices = [250_000, 1_234_567, 250_005, 1_234_560, 249_995]  # NFO:777777 is not in the universe
    ticks = empty_ticks(len(keys))
    ticks["ltp"] = prices
    ticks["ltq"] = 1
    ticks["ts_exchange_ns"] = 1_790_000_000_000_000_000 + np.arange(len(keys)) * 1_000_000
    table = pa.Table.from_batches([ticks_to_batch(ticks)], schema=TICK_SCHEMA)
    table = table.append_column("exchange", pa.array([k[0] for k in keys]))
    table = table.append_column("token", pa.array([k[1] for k in keys]))
    path = tmp_path / "recording.parquet"
    pq.write_table(table, path)

    sim = SimServer(
        SimConfig(enforce_rate_limits=False, instruments=30, replay_path=str(path), tick_rate=1_000)
    )
    await sim.start()
    sim.set_tick_rate(0)  # hold the recording until the subscription is in
    try:
        async with http.ws_connect(sim.stream_url, headers=stream_headers(sim, await login(http, sim))) as ws:
            sub = {"exchangeType": 1, "tokens": ["1000"]}, {"exchangeType": 2, "tokens": ["777777"]}
            await ws.send_str(json.dumps({"action": 1, "params": {"mode": 1, "tokenList": list(sub)}}))
            await ws.send_str("ping")
            assert (await ws.receive_str(timeout=5)) == "pong"
            sim.set_tick_rate(1_000)
            played: list[tuple[str, int, int, int]] = []

            def keep(data: bytes) -> None:
                packet = np.frombuffer(data, dtype=LTP_DTYPE)[0]
                played.append(
                    (
                        packet["token"].decode(),
                        int(packet["seq"]),
                        int(packet["ltp"]),
                        int(packet["ts_exchange_ms"]),
                    )
                )

            await receive_until(ws, lambda: len(played) == len(keys), keep)
    finally:
        await sim.stop()
    assert [(t, p) for t, _, p, _ in played] == [(k[1], p) for k, p in zip(keys, prices, strict=True)]
    assert [s for t, s, _, _ in played if t == "1000"] == [1, 2, 3]
    assert played[0][3] == 1_790_000_000_000 and played[-1][3] == 1_790_000_000_004
