"""The SmartStream V2 client against the simulator over real sockets: decoded ticks in feed order,
both websocket libraries, Angel's subscription limits, a socket killed mid-stream, a stalled
socket, refused credentials, duplicates replayed after a reconnect and malformed frames.

Some tests put a loopback TCP relay between the client and the simulator: it can freeze (a
socket that stays open but goes silent) and can slip extra frames into a connection right after
the handshake (replayed or malformed packets), which the simulator itself never sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.angel.auth import AngelCredentials
from actors.angel.codec import DEPTH_DTYPE
from actors.angel.factories import AngelConnection, AngelEndpoints, connect
from actors.angel.packets import EXCHANGE_TYPE, PACKET_DTYPE, encode_packets
from actors.angel.stream import ReceivePath, SmartStreamClient, SubscriptionLimitError
from actors.sim.server import SimServer
from actors.sim.universe import synthetic_universe
from actors.ticks import FeedMode, empty_ticks
from cluster.config import FeedConfig, SimConfig

INSTRUMENTS = synthetic_universe(60, seed=3)
IID = {inst.key: iid for iid, inst in enumerate(INSTRUMENTS)}
KEYS = list(IID)
FAST_RECOVERY: dict[str, Any] = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.5}


@pytest.fixture
def sim() -> Iterator[SimServer]:
    config = SimConfig(tick_rate=4_000, seed=3, enforce_rate_limits=False)
    with SimServer(config, INSTRUMENTS).run_in_thread() as server:
        yield server


@pytest.fixture
async def angel(sim: SimServer, tmp_path: Path) -> Any:
    conn = connect(
        AngelCredentials.for_simulator(sim.config),
        AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url),
        tmp_path,
    )
    yield conn
    await conn.close()


async def eventually(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


class Collected:
    """Every batch the client delivered."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, ticks: np.ndarray) -> None:
        self.batches.append(ticks.copy())

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches)

    def all(self) -> np.ndarray:
        return np.concatenate(self.batches) if self.batches else empty_ticks()

    def since(self, start: int) -> np.ndarray:
        ticks = self.all()
        return ticks[start:]


def assert_feed_order_without_duplicates(ticks: np.ndarray) -> None:
    for iid in np.unique(ticks["iid"]):
        for mode in np.unique(ticks["mode"][ticks["iid"] == iid]):
            seqs = ticks["seq"][(ticks["iid"] == iid) & (ticks["mode"] == mode)]
            assert np.all(np.diff(seqs) > 0), f"iid {iid} mode {mode}: sequence not strictly increasing"


def stream(
    angel: AngelConnection,
    sink: Collected,
    url: str | None = None,
    receive_path: ReceivePath | None = None,
    **config: Any,
) -> SmartStreamClient:
    client = angel.stream_client(IID, sink, FeedConfig(**{**FAST_RECOVERY, **config}), receive_path)
    if url is not None:
        client.url = url
    return client


# ----------------------------------------------------------------------------------- relay


def server_frame(payload: bytes | str) -> bytes:
    """An unmasked server-to-client WebSocket frame (binary for bytes, text for str)."""
    data = payload.encode() if isinstance(payload, str) else payload
    opcode = 0x81 if isinstance(payload, str) else 0x82
    if len(data) < 126:
        return bytes([opcode, len(data)]) + data
    return bytes([opcode, 126]) + len(data).to_bytes(2, "big") + data


class Relay:
    """Loopback TCP relay to the simulator's stream port."""

    def __init__(self, upstream_url: str) -> None:
        hostport = upstream_url.removeprefix("ws://").split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.inject: list[bytes] = []  # frames for the next connection, right after its handshake
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/smart-stream"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_r, up_w = await asyncio.open_connection(self.host, self.port)
        frames, self.inject = self.inject, []
        for coro in (self._pipe(client_r, up_w, []), self._pipe(up_r, client_w, frames)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inject: list[bytes]
    ) -> None:
        try:
            if inject:  # downstream: pass the HTTP 101 answer, then the extra frames
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(head + b"".join(inject))
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.thawed.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def relay(sim: SimServer) -> Any:
    r = Relay(sim.stream_url)
    r.url = await r.start()  # type: ignore[attr-defined]
    yield r
    await r.stop()


def packet(key: str, seq: int, mode: FeedMode = FeedMode.SNAP_QUOTE, ltp: int = 100_00) -> bytes:
    exchange, token = key.split(":")
    record = np.zeros(1, dtype=PACKET_DTYPE[mode])
    record["mode"], record["exchange_type"], record["token"] = mode, EXCHANGE_TYPE[exchange], token.encode()
    record["seq"], record["ltp"], record["ts_exchange_ms"] = seq, ltp, int(time.time() * 1000)
    return encode_packets(record)[0]


# ----------------------------------------------------------------------------------- tests


RECEIVE_PATHS = ["raw", "aiohttp", "websockets"]


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_ticks_arrive_decoded_in_feed_order(
    angel: AngelConnection, sim: SimServer, receive_path: ReceivePath
) -> None:
    sink = Collected()
    client = stream(angel, sink, receive_path=receive_path)
    await client.start()
    wanted = KEYS[:30]
    try:
        await client.subscribe(wanted, FeedMode.SNAP_QUOTE)
        await eventually(lambda: sink.count >= 3000, what="3000 ticks")
    finally:
        await client.stop()
    ticks = sink.all()
    assert set(ticks["iid"].tolist()) == {IID[k] for k in wanted}
    assert np.all(ticks["mode"] == FeedMode.SNAP_QUOTE)
    assert np.all((ticks["bid"] > 0) & (ticks["bid"] < ticks["ask"]))
    assert np.all(ticks["ts_recv_ns"] >= ticks["ts_exchange_ns"] - 10**9)
    assert_feed_order_without_duplicates(ticks)
    counters = client.counters()
    assert counters["missed_by_sequence"] == 0 and counters["duplicates_dropped"] == 0
    assert counters["decoded"] == counters["ticks_delivered"] == len(ticks)
    assert counters["dropped_unknown_token"] == counters["dropped_short"] == 0
    assert counters["open_connections"] == 0 and counters["connects"] == 1
    for key in wanted:
        last = ticks["seq"][ticks["iid"] == IID[key]].max()
        assert last <= sim.last_seq(key)


async def test_each_mode_delivers_its_own_fields(angel: AngelConnection) -> None:
    sink = Collected()
    client = stream(angel, sink)
    await client.start()
    try:
        await client.subscribe(KEYS[:4], FeedMode.LTP)
        await client.subscribe(KEYS[4:8], FeedMode.QUOTE)
        await client.subscribe(KEYS[8:12], FeedMode.SNAP_QUOTE)
        await eventually(lambda: len(set(sink.all()["mode"].tolist())) == 3, what="3 modes")
    finally:
        await client.stop()
    ticks = sink.all()
    by_mode = {mode: ticks[ticks["mode"] == mode] for mode in FeedMode}
    assert set(by_mode[FeedMode.LTP]["iid"].tolist()) <= {IID[k] for k in KEYS[:4]}
    ltp = by_mode[FeedMode.LTP]
    assert len(ltp) and np.all(
        (ltp["bid"] == 0) & (ltp["ask"] == 0) & (ltp["volume"] == 0) & (ltp["ltp"] > 0)
    )
    assert np.all(by_mode[FeedMode.QUOTE]["volume"] > 0) and np.all(by_mode[FeedMode.QUOTE]["bid"] == 0)
    assert np.all(by_mode[FeedMode.SNAP_QUOTE]["ask"] > 0)


async def test_subscriptions_stay_within_angels_limits(angel: AngelConnection, sim: SimServer) -> None:
    sink = Collected()
    client = stream(angel, sink, max_subscriptions_per_connection=4, max_connections=2)
    await client.start()
    try:
        await client.subscribe(KEYS[:8], FeedMode.SNAP_QUOTE)
        await client.wait_connected()
        assert client.open_connections() == 2 and sim.counters()["connections"] == 2
        with pytest.raises(SubscriptionLimitError, match="2 connections × 4"):
            await client.subscribe(KEYS[8:9], FeedMode.LTP)
        await client.unsubscribe(KEYS[:2], FeedMode.SNAP_QUOTE)
        await client.subscribe(KEYS[8:10], FeedMode.SNAP_QUOTE)
        start = sink.count
        await eventually(lambda: {IID[KEYS[8]], IID[KEYS[9]]} <= set(sink.since(start)["iid"].tolist()))
        later = sink.count
        await eventually(lambda: sink.count - later > 500)
        assert not {IID[KEYS[0]], IID[KEYS[1]]} & set(sink.since(later + 100)["iid"].tolist())
    finally:
        await client.stop()


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_socket_killed_mid_stream_reconnects_and_resubscribes(
    angel: AngelConnection, sim: SimServer, receive_path: ReceivePath
) -> None:
    sink = Collected()
    client = stream(angel, sink, receive_path=receive_path)
    await client.start()
    wanted = KEYS[:20]
    try:
        await client.subscribe(wanted, FeedMode.SNAP_QUOTE)
        await eventually(lambda: sink.count >= 1000)
        assert sim.drop_connections() >= 1
        await eventually(lambda: client.counters()["reconnects"] >= 1, what="a reconnect")
        after = sink.count
        await eventually(
            lambda: set(sink.since(after)["iid"].tolist()) == {IID[k] for k in wanted},
            what="ticks for every instrument after the reconnect",
        )
    finally:
        await client.stop()
    assert_feed_order_without_duplicates(sink.all())
    assert client.counters()["connects"] >= 2


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_ticks_replayed_after_a_reconnect_are_dropped(
    angel: AngelConnection, sim: SimServer, relay: Any, receive_path: ReceivePath
) -> None:
    sink = Collected()
    client = stream(angel, sink, url=relay.url, receive_path=receive_path)
    await client.start()
    key = KEYS[0]
    try:
        await client.subscribe([key], FeedMode.SNAP_QUOTE)
        await eventually(lambda: sink.count >= 50)
        last = int(sink.all()["seq"].max())
        # The new connection first repeats the last three ticks it already delivered.
        relay.inject = [server_frame(packet(key, seq)) for seq in (last - 2, last - 1, last)]
        sim.drop_connections()
        await eventually(lambda: client.counters()["reconnects"] >= 1 and sink.all()["seq"].max() > last + 20)
    finally:
        await client.stop()
    assert client.counters()["duplicates_dropped"] >= 3
    assert_feed_order_without_duplicates(sink.all())


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_a_silent_socket_is_noticed_and_replaced(
    angel: AngelConnection, relay: Any, receive_path: ReceivePath
) -> None:
    sink = Collected()
    client = stream(
        angel, sink, url=relay.url, receive_path=receive_path, stall_timeout_s=0.6, heartbeat_s=30
    )
    await client.start()
    try:
        await client.subscribe(KEYS[:10], FeedMode.LTP)
        await eventually(lambda: sink.count >= 200)
        relay.thawed.clear()  # the socket stays open; nothing gets through, not even pongs
        await eventually(lambda: client.counters()["stalls"] >= 1, what="the stall watchdog")
        relay.thawed.set()
        after = sink.count
        await eventually(lambda: sink.count > after + 200, what="ticks on the new socket")
    finally:
        await client.stop()
    assert relay.connections >= 2
    assert_feed_order_without_duplicates(sink.all())


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_malformed_frames_are_counted_and_skipped(
    angel: AngelConnection, relay: Any, receive_path: ReceivePath
) -> None:
    sink = Collected()
    relay.inject = [
        server_frame("not a packet"),
        server_frame(b"\x03\x01short"),
        server_frame(bytes([9]) + packet(KEYS[0], 1)[1:]),  # no such mode
        server_frame(packet(KEYS[0], 1, FeedMode.LTP) + b"\x00\x00"),  # LTP with trailing bytes
        server_frame(packet("NSE:777777", 1)),  # a token nobody subscribed
        server_frame(
            '{"correlationID": null, "errorCode": "E1001", "errorMessage": "Invalid Request Payload"}'
        ),
    ]
    client = stream(angel, sink, url=relay.url, receive_path=receive_path)
    await client.start()
    try:
        await client.subscribe(KEYS[:5], FeedMode.SNAP_QUOTE)
        await eventually(lambda: sink.count >= 500)
    finally:
        await client.stop()
    counters = client.counters()
    assert counters["dropped_text"] == 1
    assert counters["dropped_short"] == 1
    assert counters["dropped_wrong_mode"] == 1
    assert counters["dropped_wrong_length"] == 1
    assert counters["dropped_unknown_token"] == 1
    assert counters["server_errors"] == 1
    assert set(sink.all()["iid"].tolist()) == {IID[k] for k in KEYS[:5]}


async def test_unknown_token_gets_the_servers_error_and_the_rest_flows(angel: AngelConnection) -> None:
    sink = Collected()
    client = stream(angel, sink)
    await client.start()
    try:
        await client.subscribe([KEYS[0], "NSE:999999"], FeedMode.LTP)
        await eventually(lambda: client.counters()["server_errors"] == 1 and sink.count > 50)
    finally:
        await client.stop()
    assert "999999" in client.stats.last_server_error
    assert set(sink.all()["iid"].tolist()) == {IID[KEYS[0]]}


@pytest.mark.parametrize("receive_path", RECEIVE_PATHS)
async def test_refused_credentials_renew_the_session_and_reconnect(
    angel: AngelConnection, sim: SimServer, receive_path: ReceivePath
) -> None:
    sink = Collected()
    client = stream(angel, sink, receive_path=receive_path)
    await client.start()
    try:
        await client.subscribe(KEYS[:5], FeedMode.LTP)
        await eventually(lambda: sink.count >= 100)
        session = angel.auth.session
        assert session is not None

        async def revoke() -> None:
            sim.sessions.logout(sim.sessions.check(session.bearer))

        sim.submit(revoke())
        sim.drop_connections()
        await eventually(lambda: client.counters()["auth_refusals"] >= 1, what="a refused handshake")
        after = sink.count
        await eventually(lambda: sink.count > after + 100, what="ticks with the new session")
    finally:
        await client.stop()
    assert angel.auth.logins == 2


async def test_a_failing_consumer_does_not_stop_the_feed(angel: AngelConnection) -> None:
    sink = Collected()
    calls = [0]

    def flaky(ticks: np.ndarray) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("consumer bug")
        sink(ticks)

    client = angel.stream_client(IID, flaky, FeedConfig(**FAST_RECOVERY))
    await client.start()
    try:
        await client.subscribe(KEYS[:5], FeedMode.LTP)
        await eventually(lambda: sink.count >= 200)
    finally:
        await client.stop()
    assert client.counters()["callback_errors"] == 1
    assert client.counters()["connects"] == 1


async def test_a_refused_login_stops_the_sockets_instead_of_retrying(sim: SimServer, tmp_path: Path) -> None:
    creds = AngelCredentials(**{**sim.credentials(), "pin": "0000"})
    conn = connect(creds, AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url), tmp_path)
    client = conn.stream_client(IID, Collected(), FeedConfig(**FAST_RECOVERY))
    calls_before = sim.counters()["rest_calls"]
    await client.start()
    try:
        await client.subscribe(KEYS[:3], FeedMode.LTP)
        await eventually(lambda: client.fatal_error is not None, what="the refused login")
        await eventually(lambda: client.counters()["sockets_trying"] == 0, what="the socket to give up")
    finally:
        await client.stop()
        await conn.close()
    assert "wrong client code or PIN" in str(client.fatal_error)
    assert sim.counters()["rest_calls"] - calls_before == 1  # one login attempt, no retry storm


async def test_depth_comes_with_every_new_snap_quote_tick(angel: AngelConnection) -> None:
    sink, depths = Collected(), Collected()
    client = angel.stream_client(IID, sink, FeedConfig(**FAST_RECOVERY), on_depth=depths)
    await client.start()
    try:
        await client.subscribe(KEYS[:6], FeedMode.SNAP_QUOTE)
        await client.subscribe(KEYS[6:9], FeedMode.LTP)
        await eventually(lambda: sink.count >= 1500)
    finally:
        await client.stop()
    ticks, depth = sink.all(), np.concatenate(depths.batches)
    snap = ticks[ticks["mode"] == FeedMode.SNAP_QUOTE]
    assert depth.dtype == DEPTH_DTYPE
    assert depth["iid"].tolist() == snap["iid"].tolist() and depth["seq"].tolist() == snap["seq"].tolist()
    assert np.array_equal(depth["bids"]["price"][:, 0], snap["bid"])
    assert np.array_equal(depth["asks"]["qty"][:, 0], snap["ask_qty"])
    bids, asks = depth["bids"]["price"], depth["asks"]["price"]
    assert np.all(np.diff(bids, axis=1) < 0) and np.all(np.diff(asks, axis=1) > 0)  # best first
    assert np.all((depth["lower_circuit"] <= depth["low"]) & (depth["high"] <= depth["upper_circuit"]))
