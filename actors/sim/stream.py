"""SmartStream V2 for the simulator: subscriptions, the tick pump and the binary send path.

Speed comes from never handling a tick alone: each timer slice makes every due tick in one numpy
call, and each connection gets all of its packets of a slice as *one* socket write of
pre-framed WebSocket messages (server frames are unmasked, so a frame is a 2- or 4-byte header
plus the packet). The websocket library still owns the handshake, control frames and text
replies; both write whole frames, so the byte stream stays well formed. Compression is refused
at the handshake, which is what makes raw frames valid.

A client that cannot keep up is not waited for (a real exchange does not wait either): while
its socket buffer is over `MAX_BUFFERED_BYTES`, its packets are dropped and counted, and the gap
shows in its sequence numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from actors.angel.packets import EXCHANGE_BY_TYPE, PACKET_SIZE, SNAP_QUOTE_DTYPE
from actors.sim.market import MarketModel, ReplaySource, RoundRobin
from actors.sim.sessions import LoginError, SessionStore
from actors.ticks import FeedMode

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 1000  # token x mode per connection
MAX_CONNECTIONS = 3  # per client code
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
SLICE_S = 0.002  # timer slice at high rates
MAX_SLICE_TICKS = 50_000  # catch-up cap after a stall, so one slice never balloons
IDLE_RATE = 1_000  # ticks/s when nobody subscribes, to keep prices (and resting orders) moving
MODES = (FeedMode.LTP, FeedMode.QUOTE, FeedMode.SNAP_QUOTE)


def frame_header(size: int) -> bytes:
    """The header of an unmasked, final, binary WebSocket frame carrying ``size`` bytes."""
    if size < 126:
        return bytes([0x82, size])
    if size < 1 << 16:
        return bytes([0x82, 126]) + size.to_bytes(2, "big")
    return bytes([0x82, 127]) + size.to_bytes(8, "big")


_HEADERS = {mode: np.frombuffer(frame_header(size), dtype=np.uint8) for mode, size in PACKET_SIZE.items()}


def frame_packets(raw: np.ndarray, mode: FeedMode) -> bytes:
    """Rows of SNAP_QUOTE bytes (n x 379) as consecutive WebSocket frames of ``mode`` packets.

    LTP and QUOTE packets are prefixes of the SNAP_QUOTE record with their own mode byte.
    """
    header = _HEADERS[mode]
    size = PACKET_SIZE[mode]
    h = len(header)
    out = np.empty((len(raw), h + size), dtype=np.uint8)
    out[:, :h] = header
    out[:, h:] = raw[:, :size]
    out[:, h] = mode
    return out.tobytes()


@dataclass(eq=False)
class StreamConnection:
    """One SmartStream client socket and what it subscribed to."""

    client_code: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    n_instruments: int
    masks: dict[FeedMode, np.ndarray] = field(init=False)
    subscriptions: int = 0
    sent: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.masks = {mode: np.zeros(self.n_instruments, dtype=bool) for mode in MODES}

    def send_batch(self, indices: np.ndarray, raw: np.ndarray) -> None:
        if self.transport.is_closing():
            return
        for mode in MODES:
            mask = self.masks[mode]
            if not self.subscriptions:
                break
            picked = mask[indices]
            count = int(np.count_nonzero(picked))
            if not count:
                continue
            if self.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
                self.dropped += count
                continue
            self.transport.write(frame_packets(raw[picked], mode))
            self.sent += count


class SmartStreamHub:
    """Serves ``/smart-stream`` and drives the tick pump for every connection.

    Parameters
    ----------
    market : MarketModel
        Prices and packet records.
    sessions : SessionStore
        Checks the JWT and the feed token of each connection.
    api_key : str
        The value ``x-api-key`` must carry.
    rate : int
        Total ticks per second across the subscribed instruments.
    on_ticks : callable
        Called with (indices, records) for every slice, before sending (the matching engine).
    is_open : callable
        ``is_open(ts_ns)``: no ticks while the market is closed.
    clock_ns : callable
        Wall clock for exchange timestamps.
    replay : ReplaySource, optional
        Play recorded ticks instead of the random walk.
    on_close : callable, optional
        Called with the time when the market is found closed after being open (checked each slice).
    """

    def __init__(
        self,
        market: MarketModel,
        sessions: SessionStore,
        api_key: str,
        rate: int,
        on_ticks: Callable[[np.ndarray, np.ndarray], None],
        is_open: Callable[[int], bool],
        clock_ns: Callable[[], int],
        replay: ReplaySource | None = None,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        self.market = market
        self.sessions = sessions
        self.api_key = api_key
        self.rate = rate
        self.on_ticks = on_ticks
        self.is_open = is_open
        self.clock_ns = clock_ns
        self.replay = replay
        self.on_close = on_close
        self._was_open = False
        self.connections: list[StreamConnection] = []
        self.rotation = RoundRobin()
        self._active: np.ndarray | None = None  # cached union of subscribed instruments
        self._task: asyncio.Task[None] | None = None
        self._rate_changed = asyncio.Event()
        self.slices = 0
        self._closed_sent = 0  # totals of connections that have gone
        self._closed_dropped = 0

    # ------------------------------------------------------------------------------- control

    def set_rate(self, rate: int) -> None:
        """Ticks per second in total; 0 pauses the pump."""
        if rate < 0:
            raise ValueError(f"tick rate must be >= 0, got {rate}")
        self.rate = rate
        self._rate_changed.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump(), name="sim-tick-pump")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in list(self.connections):
            await conn.ws.close()

    def drop_connections(self) -> int:
        """Cut every socket at once, with no close handshake (as a network failure would)."""
        cut = 0
        for conn in list(self.connections):
            conn.transport.abort()
            cut += 1
        return cut

    def counters(self) -> dict[str, Any]:
        return {
            "generated": int(self.market.ticks_made),
            "sent": sum(c.sent for c in self.connections) + self._closed_sent,
            "dropped": sum(c.dropped for c in self.connections) + self._closed_dropped,
            "connections": len(self.connections),
            "slices": self.slices,
            "rate": self.rate,
        }

    # ------------------------------------------------------------------------------- sockets

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers, query = request.headers, request.query
        auth = headers.get("Authorization") or query.get("jwtToken")
        api_key = headers.get("x-api-key") or query.get("apiKey")
        client_code = headers.get("x-client-code") or query.get("clientCode")
        feed_token = headers.get("x-feed-token") or query.get("feedToken")
        try:
            session = self.sessions.check(auth)
        except LoginError as err:
            return web.Response(status=401, text=f"{err.code}: {err.message}")
        if api_key != self.api_key:
            return web.Response(status=401, text="AG8004: Invalid API Key (x-api-key)")
        if client_code != session.client_code:
            return web.Response(status=401, text="x-client-code does not match the logged-in client")
        if not self.sessions.check_feed_token(feed_token):
            return web.Response(status=401, text="Invalid feed token (x-feed-token)")
        mine = [c for c in self.connections if c.client_code == session.client_code]
        if len(mine) >= MAX_CONNECTIONS:
            return web.Response(
                status=429,
                text=f"Connection limit exceeded: at most {MAX_CONNECTIONS} connections per client code",
            )
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        conn = StreamConnection(session.client_code, ws, transport, len(self.market))
        self.connections.append(conn)
        log.info("stream: %s connected (%d open)", conn.client_code, len(self.connections))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.connections.remove(conn)
            self._closed_sent += conn.sent
            self._closed_dropped += conn.dropped
            self._active = None
            log.info(
                "stream: %s disconnected; sent %d, dropped %d", conn.client_code, conn.sent, conn.dropped
            )
        return ws

    async def _on_text(self, conn: StreamConnection, text: str) -> None:
        if text == "ping":
            await conn.ws.send_str("pong")
            return
        try:
            request = json.loads(text)
            action = int(request["action"])
            params = request["params"]
            mode = FeedMode(int(params["mode"]))
            token_list = params["tokenList"]
            if action not in (0, 1) or not isinstance(token_list, list):
                raise ValueError("action must be 0 or 1 and tokenList a list")
        except (ValueError, KeyError, TypeError) as err:
            await self._error(conn, None, "E1001", f"Invalid Request Payload: {err}")
            return
        correlation = request.get("correlationID")
        found: list[int] = []
        unknown: list[str] = []
        for group in token_list:
            exchange = EXCHANGE_BY_TYPE.get(int(group.get("exchangeType", -1)))
            for token in group.get("tokens", []):
                index = self.market.index.get(f"{exchange}:{token}") if exchange else None
                if index is None:
                    unknown.append(f"{group.get('exchangeType')}:{token}")
                else:
                    found.append(index)
        mask = conn.masks[mode]
        if action == 1:
            new = np.unique(np.array(found, dtype=np.int64))
            new = new[~mask[new]] if len(new) else new
            if conn.subscriptions + len(new) > MAX_SUBSCRIPTIONS:
                await self._error(
                    conn,
                    correlation,
                    "E1002",
                    f"Invalid Request. Subscription Limit Exceeded: {conn.subscriptions} held + {len(new)} "
                    f"new > {MAX_SUBSCRIPTIONS} token x mode per connection",
                )
                return
            mask[new] = True
            conn.subscriptions += len(new)
        else:
            gone = np.unique(np.array(found, dtype=np.int64))
            gone = gone[mask[gone]] if len(gone) else gone
            mask[gone] = False
            conn.subscriptions -= len(gone)
        self._active = None
        if unknown:
            await self._error(
                conn, correlation, "E1003", f"Unknown tokens ignored: {', '.join(unknown[:20])}"
            )

    @staticmethod
    async def _error(conn: StreamConnection, correlation: Any, code: str, message: str) -> None:
        payload = {"correlationID": correlation, "errorCode": code, "errorMessage": message}
        await conn.ws.send_str(json.dumps(payload))

    # ------------------------------------------------------------------------------- pump

    def active_indices(self) -> np.ndarray:
        """Instruments someone subscribed to (any mode, any connection); all of them if none."""
        if self._active is None:
            union = np.zeros(len(self.market), dtype=bool)
            for conn in self.connections:
                for mask in conn.masks.values():
                    union |= mask
            self._active = np.flatnonzero(union)
        return self._active

    def tick_once(self, count: int) -> int:
        """Make and send ``count`` ticks now; returns how many were made."""
        now_ns = self.clock_ns()
        open_now = self.is_open(now_ns)
        if self._was_open and not open_now and self.on_close is not None:
            self.on_close(now_ns)  # the session just ended: DAY orders expire
        self._was_open = open_now
        if count <= 0 or not open_now:
            return 0
        if self.replay is not None:
            if self.replay.exhausted:
                return 0
            indices, records = self.replay.play(self.market, count)
        else:
            active = self.active_indices()
            if len(active) == 0:
                active = np.arange(len(self.market))
            indices = self.rotation.take(active, count)
            records = self.market.step(indices, now_ns // 1_000_000)
        self.on_ticks(indices, records)
        raw = records.view(np.uint8).reshape(len(records), SNAP_QUOTE_DTYPE.itemsize)
        for conn in self.connections:
            if conn.subscriptions:
                conn.send_batch(indices, raw)
        self.slices += 1
        return len(indices)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._rate_changed.clear()
            rate = self.rate
            if rate <= 0:
                await self._rate_changed.wait()
                continue
            epoch = loop.time()
            made = 0
            while not self._rate_changed.is_set():
                subscribed = any(c.subscriptions for c in self.connections)
                target = rate if subscribed or self.replay is not None else min(rate, IDLE_RATE)
                due = int((loop.time() - epoch) * target) - made
                if due > MAX_SLICE_TICKS:  # fell behind (a stall): skip ahead rather than burst
                    made += due - MAX_SLICE_TICKS
                    due = MAX_SLICE_TICKS
                if due > 0:
                    try:
                        self.tick_once(due)
                    except Exception:  # a bug must not kill the feed silently
                        log.exception("stream: tick pump slice failed")
                    made += due
                wait = max((made + 1) / target - (loop.time() - epoch), SLICE_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rate_changed.wait(), timeout=min(wait, 0.5))
