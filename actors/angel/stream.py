"""SmartStream V2 client: subscriptions over up to three sockets, batched vectorised decoding.

Frames are appended to one buffer as they arrive (no per-frame parsing) and flushed to the
decoder every `flush_interval_ms` or `flush_max_ticks` frames, whichever comes first; the decoded
ticks go to the callback in feed order. Duplicate ticks (sequence number not above the last one
seen for that instrument and mode, e.g. replayed after a reconnect) are dropped, and gaps in the
sequence are counted. Each socket has a `ping` heartbeat and a stall watchdog; a socket that
closes or stalls is reopened with exponential back-off and jitter, and everything it carried is
subscribed again. Angel's limits hold: at most 1000 token×mode subscriptions per socket and three
sockets per login; a subscription beyond that is refused with an error saying so.

Three receive paths can carry the frames: `aiohttp` (the default), `websockets`, and `raw`
(framing done here, splitting each socket read into packets with numpy); the feed benchmark
measures them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import itertools
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect

from actors.angel.codec import FrameRecords, TickDecoder, depth_from
from actors.angel.errors import LoginError
from actors.angel.packets import EXCHANGE_TYPE
from actors.ticks import FeedMode
from cluster.config import FeedConfig
from cluster.errors import ShardlineError

log = logging.getLogger(__name__)

SUBSCRIBE, UNSUBSCRIBE = 1, 0
FEED_MODES = {"ltp": FeedMode.LTP, "quote": FeedMode.QUOTE, "snap_quote": FeedMode.SNAP_QUOTE}
ReceivePath = Literal["raw", "aiohttp", "websockets"]
TickSink = Callable[[np.ndarray], Awaitable[None] | None]
HeaderSource = Callable[[], Awaitable[Mapping[str, str]]]

_MAX_FRAME = 1 << 20
_UNSEEN = np.iinfo(np.int64).min


class SubscriptionLimitError(ShardlineError):
    """More token×mode subscriptions than Angel allows one login."""


class StreamAuthError(Exception):
    """The server refused the socket's credentials (HTTP 401 at the handshake)."""


def reconnect_delay(config: FeedConfig, failures: int) -> float:
    """Exponential back-off with jitter: 0.5-1 × min(max, initial × 2^(failures-1))."""
    ceiling = min(config.reconnect_max_s, config.reconnect_initial_s * 2 ** (failures - 1))
    return ceiling * random.uniform(0.5, 1.0)


def subscription_message(action: int, mode: FeedMode, keys: Iterable[str], correlation_id: str) -> str:
    """The JSON text that (un)subscribes `keys` ("EXCH:token") in `mode`."""
    by_type: dict[int, list[str]] = {}
    for key in keys:
        exchange, _, token = key.partition(":")
        by_type.setdefault(EXCHANGE_TYPE[exchange], []).append(token)
    return json.dumps(
        {
            "correlationID": correlation_id,
            "action": action,
            "params": {
                "mode": int(mode),
                "tokenList": [{"exchangeType": t, "tokens": tokens} for t, tokens in sorted(by_type.items())],
            },
        }
    )


class SubscriptionPlan:
    """Which socket carries each (instrument, mode), within Angel's per-socket cap.

    Parameters
    ----------
    per_connection : int
        Token×mode subscriptions one socket may hold (Angel: 1000).
    connections : int
        Sockets one login may open (Angel: 3).
    """

    def __init__(self, per_connection: int, connections: int) -> None:
        self.per_connection = per_connection
        self.connections = connections
        self._where: dict[tuple[str, FeedMode], int] = {}
        self._load = [0] * connections

    def __len__(self) -> int:
        return len(self._where)

    def load(self) -> list[int]:
        return list(self._load)

    def add(self, keys: Sequence[str], mode: FeedMode) -> dict[int, list[str]]:
        """Place the new (key, mode) pairs; all or nothing. Returns the new keys per socket."""
        new = list(dict.fromkeys(k for k in keys if (k, mode) not in self._where))
        for key in new:
            exchange, sep, token = key.partition(":")
            if not sep or exchange not in EXCHANGE_TYPE or not token:
                raise ValueError(f"cannot subscribe {key!r}: not 'EXCH:token' with a known exchange")
        room = self.per_connection * self.connections - len(self._where)
        if len(new) > room:
            raise SubscriptionLimitError(
                f"cannot subscribe {len(new)} more {mode.name} instruments: {len(self._where)} of "
                f"{self.per_connection * self.connections} token×mode subscriptions are in use "
                f"({self.connections} connections × {self.per_connection}, Angel's limit per login)"
            )
        placed: dict[int, list[str]] = {}
        for key in new:
            # Fill the first socket with room: no more sockets open than the subscriptions need.
            conn = next(i for i, load in enumerate(self._load) if load < self.per_connection)
            self._where[(key, mode)] = conn
            self._load[conn] += 1
            placed.setdefault(conn, []).append(key)
        return placed

    def remove(self, keys: Sequence[str], mode: FeedMode) -> dict[int, list[str]]:
        """Forget (key, mode) pairs. Returns the removed keys per socket."""
        removed: dict[int, list[str]] = {}
        for key in dict.fromkeys(keys):
            conn = self._where.pop((key, mode), None)
            if conn is not None:
                self._load[conn] -= 1
                removed.setdefault(conn, []).append(key)
        return removed

    def of_connection(self, conn: int) -> dict[FeedMode, list[str]]:
        """Everything socket `conn` carries, by mode (what to send again after a reconnect)."""
        out: dict[FeedMode, list[str]] = {}
        for (key, mode), where in self._where.items():
            if where == conn:
                out.setdefault(mode, []).append(key)
        return out


class SequenceTracker:
    """Drops ticks already seen and counts the ones missed, per (instrument, mode).

    A tick is new when its sequence number is above every earlier one of its instrument and
    mode. The first tick of an instrument sets the baseline; after that, a jump of k counts
    k - 1 missed ticks.
    """

    def __init__(self, instruments: int = 0) -> None:
        self._last = np.full(max(instruments, 1) * 4, _UNSEEN, dtype=np.int64)
        self._gaps = np.zeros(len(self._last), dtype=np.int64)
        self.duplicates = 0
        self.missed = 0

    def missed_for(self, iid: int, mode: FeedMode) -> int:
        slot = iid * 4 + int(mode)
        return int(self._gaps[slot]) if slot < len(self._gaps) else 0

    def last_seq(self, iid: int, mode: FeedMode) -> int | None:
        slot = iid * 4 + int(mode)
        if slot >= len(self._last) or self._last[slot] == _UNSEEN:
            return None
        return int(self._last[slot])

    def filter(self, ticks: np.ndarray) -> np.ndarray:
        """The ticks not seen before, in their original order."""
        keep = self.keep(ticks)
        return ticks if keep.all() else ticks[keep]

    def keep(self, ticks: np.ndarray) -> np.ndarray:
        """Which ticks are new (a boolean mask), recording them as seen."""
        n = len(ticks)
        if n == 0:
            return np.zeros(0, dtype=bool)
        slots = ticks["iid"].astype(np.int64) * 4 + ticks["mode"]
        self._grow(int(slots.max()) + 1)
        order = np.argsort(slots, kind="stable")
        s_slot, s_seq = slots[order], ticks["seq"][order]
        same = s_slot[1:] == s_slot[:-1]
        if not np.all(~same | (s_seq[1:] > s_seq[:-1])):
            return self._keep_slowly(ticks, slots)
        # Within each slot the batch is increasing, so the bar to clear is the previous tick of
        # the batch, or the last one seen before it for the slot's first tick.
        bar = self._last[s_slot]
        bar[1:] = np.where(same, np.maximum(bar[1:], s_seq[:-1]), bar[1:])
        keep = s_seq > bar
        seen = keep & (bar != _UNSEEN)
        gap = np.where(seen, s_seq - bar - 1, 0)
        self.duplicates += int(n - keep.sum())
        if gap.any():
            self.missed += int(gap.sum())
            np.add.at(self._gaps, s_slot, gap)
        group_end = np.append(~same, True)
        ends = s_slot[group_end]
        self._last[ends] = np.maximum(self._last[ends], s_seq[group_end])
        kept = np.empty(n, dtype=bool)
        kept[order] = keep
        return kept

    def _keep_slowly(self, ticks: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Out-of-order sequence numbers within one batch: one tick at a time."""
        kept = np.zeros(len(ticks), dtype=bool)
        last, gaps = self._last, self._gaps
        for row, (slot, seq) in enumerate(zip(slots.tolist(), ticks["seq"].tolist(), strict=True)):
            bar = int(last[slot])
            if seq > bar:
                kept[row] = True
                if bar != _UNSEEN and seq - bar > 1:
                    gaps[slot] += seq - bar - 1
                    self.missed += seq - bar - 1
                last[slot] = seq
            else:
                self.duplicates += 1
        return kept

    def _grow(self, size: int) -> None:
        if size <= len(self._last):
            return
        size = max(size, 2 * len(self._last))
        self._last = np.concatenate([self._last, np.full(size - len(self._last), _UNSEEN, dtype=np.int64)])
        self._gaps = np.concatenate([self._gaps, np.zeros(size - len(self._gaps), dtype=np.int64)])


class StreamStats:
    def __init__(self) -> None:
        self.frames = 0
        self.ticks_delivered = 0
        self.batches = 0
        self.connects = 0
        self.reconnects = 0
        self.stalls = 0
        self.auth_refusals = 0
        self.pongs = 0
        self.server_errors = 0
        self.last_server_error = ""
        self.decode_ns = 0  # CPU time spent decoding and de-duplicating, for the benchmark
        self.callback_errors = 0


class _FrameBuffer:
    """Where every socket puts its binary frames until the flusher takes them.

    An item is one frame (`bytes`) or a block of equal-sized packets (2-D uint8 array, one per
    row); `count` is in packets either way.
    """

    def __init__(self, max_ticks: int, clock_ns: Callable[[], int]) -> None:
        self.frames: list[bytes | np.ndarray] = []
        self.count = 0
        self.first_ns = 0
        self.max_ticks = max_ticks
        self.high_water = 4 * max_ticks
        self.has_frames = asyncio.Event()
        self.full = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self._clock_ns = clock_ns

    def add(self, frame: bytes) -> bool:
        """Keep a frame; True when the buffer is over its high-water mark (wait for `room`)."""
        self.frames.append(frame)
        self.count += 1
        n = self.count
        if n == 1:
            self.first_ns = self._clock_ns()
            self.has_frames.set()
        elif n == self.max_ticks:
            self.full.set()
        elif n >= self.high_water:
            self.room.clear()
            return True
        return False

    def add_block(self, block: np.ndarray) -> bool:
        """Keep a block of packets; True when over the high-water mark."""
        if self.count == 0:
            self.first_ns = self._clock_ns()
            self.has_frames.set()
        self.frames.append(block)
        self.count += len(block)
        if self.count >= self.max_ticks:
            self.full.set()
        if self.count >= self.high_water:
            self.room.clear()
            return True
        return False

    def take(self) -> tuple[list[bytes | np.ndarray], int, int]:
        """The items, how many packets they hold, and when the first arrived."""
        frames, count, first_ns = self.frames, self.count, self.first_ns
        self.frames = []
        self.count = 0
        self.has_frames.clear()
        self.full.clear()
        self.room.set()
        return frames, count, first_ns


class _Link:
    """One open socket, whichever library carries it."""

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def receive_into(
        self, buffer: _FrameBuffer, on_text: Callable[[str], None], counter: list[int]
    ) -> None:
        """Receive until the socket closes: binary frames into `buffer`, text to `on_text`."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _AiohttpLink(_Link):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]) -> _AiohttpLink:
        try:
            ws = await session.ws_connect(
                url,
                headers=dict(headers),
                # Pings answered here, not by aiohttp: its automatic answer raises once the server has
                # half-closed, and the messages already received after the ping are then lost.
                autoping=False,
                compress=0,
                max_msg_size=_MAX_FRAME,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 401:
                raise StreamAuthError(err.message) from None
            raise ConnectionError(f"handshake refused: HTTP {err.status} {err.message}") from None
        return cls(ws)

    async def send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive_into(
        self, buffer: _FrameBuffer, on_text: Callable[[str], None], counter: list[int]
    ) -> None:
        receive = self.ws.receive
        binary, text = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
        ping, pong = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG
        add = buffer.add
        while True:
            msg = await receive()
            counter[0] += 1
            kind = msg.type
            if kind is binary:
                if add(msg.data):
                    await buffer.room.wait()
            elif kind is text:
                on_text(msg.data)
            elif kind is ping:
                with contextlib.suppress(aiohttp.ClientError, ConnectionError):  # closing: read on
                    await self.ws.pong(msg.data)
            elif kind is not pong:  # CLOSE, CLOSING, CLOSED, ERROR
                return

    async def close(self) -> None:
        await self.ws.close()


class _WebsocketsLink(_Link):
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, headers: Mapping[str, str]) -> _WebsocketsLink:
        try:
            ws = await websockets_connect(
                url,
                additional_headers=dict(headers),
                compression=None,
                max_size=_MAX_FRAME,
                max_queue=4096,
                ping_interval=None,
                open_timeout=10,
                close_timeout=2,
            )
        except websockets.InvalidStatus as err:
            if err.response.status_code == 401:
                raise StreamAuthError(err.response.body.decode(errors="replace")) from None
            raise ConnectionError(f"handshake refused: HTTP {err.response.status_code}") from None
        except websockets.InvalidHandshake as err:
            raise ConnectionError(f"handshake failed: {err}") from None
        return cls(ws)

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def receive_into(
        self, buffer: _FrameBuffer, on_text: Callable[[str], None], counter: list[int]
    ) -> None:
        receive = self.ws.recv
        add = buffer.add
        try:
            while True:
                msg = await receive()
                counter[0] += 1
                if type(msg) is bytes:
                    if add(msg):
                        await buffer.room.wait()
                else:
                    on_text(msg)  # type: ignore[arg-type]
        except websockets.ConnectionClosed:
            return

    async def close(self) -> None:
        await self.ws.close()


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client-to-server frame (RFC 6455 requires clients to mask)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


class _RawLink(_Link):
    """WebSocket framing done here, on a plain asyncio stream.

    The libraries hand over one message per `await`; here every read of the socket is split at
    once, and a run of equal-sized binary frames (what SmartStream sends) becomes one 2-D array
    of packets with no Python step per frame. Text, ping, close and fragmented frames take a
    per-frame path. Handshake per RFC 6455, TLS for wss:// with certificate checks.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    @classmethod
    async def open(cls, url: str, headers: Mapping[str, str], timeout_s: float = 10.0) -> _RawLink:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConnectionError(f"not a websocket URL: {url!r}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        context = ssl.create_default_context() if secure else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=context, limit=_MAX_FRAME * 4), timeout_s
        )
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.hostname}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            writer.close()
            raise ConnectionError(f"handshake answer cut short: {err}") from None
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            writer.close()
            raise ConnectionError(f"handshake answer is not HTTP: {status_line[:80]!r}") from None
        if status != 101:
            body = b""
            with contextlib.suppress(Exception):
                length = min(int(fields.get("content-length", "0")), 1000)
                body = await asyncio.wait_for(reader.readexactly(length), 2.0) if length else b""
            writer.close()
            detail = body.decode(errors="replace") or status_line
            if status == 401:
                raise StreamAuthError(detail)
            raise ConnectionError(f"handshake refused: HTTP {status} {detail}")
        expected = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
        if fields.get("sec-websocket-accept") != expected:
            writer.close()
            raise ConnectionError("handshake answer has a wrong Sec-WebSocket-Accept")
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        self.writer.write(_client_frame(_OP_TEXT, text.encode()))
        await self.writer.drain()

    async def receive_into(
        self, buffer: _FrameBuffer, on_text: Callable[[str], None], counter: list[int]
    ) -> None:
        pending = b""
        read = self.reader.read
        while True:
            chunk = await read(1 << 18)
            if not chunk:
                return
            data = pending + chunk if pending else chunk
            used, over, closed = self._split(data, buffer, on_text, counter)
            pending = data[used:]
            if closed:
                return
            if over:
                await buffer.room.wait()

    def _split(
        self, data: bytes, buffer: _FrameBuffer, on_text: Callable[[str], None], counter: list[int]
    ) -> tuple[int, bool, bool]:
        """Frames out of `data`: (bytes used, buffer over high water, socket closed)."""
        pos, end, over = 0, len(data), False
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            if b1 & 0x80:
                raise ConnectionError("server sent a masked frame")
            size, head = b1 & 0x7F, 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if size > _MAX_FRAME:
                raise ConnectionError(f"frame of {size} bytes is over the {_MAX_FRAME} byte limit")
            stop = pos + head + size
            if stop > end:
                break
            opcode = b0 & 0x0F
            if b0 == 0x80 | _OP_BINARY:
                span = head + size
                whole = (end - pos) // span
                run = 1
                if whole > 1:
                    # A run of frames with this very header: one array, one row per packet.
                    rows = np.frombuffer(data, np.uint8, count=whole * span, offset=pos).reshape(whole, span)
                    same = (rows[:, :head] == rows[0, :head]).all(axis=1)
                    run = whole if same.all() else int(np.argmin(same))
                if run > 1:
                    over = buffer.add_block(np.ascontiguousarray(rows[:run, head:])) or over
                    counter[0] += run
                    pos += run * span
                    continue
                over = buffer.add(data[pos + head : stop]) or over
            elif opcode == _OP_TEXT and b0 & 0x80:
                on_text(data[pos + head : stop].decode("utf-8", "replace"))
            elif opcode == _OP_PING:
                self.writer.write(_client_frame(_OP_PONG, data[pos + head : stop]))
            elif opcode == _OP_CLOSE:
                with contextlib.suppress(Exception):
                    self.writer.write(_client_frame(_OP_CLOSE, data[pos + head : pos + head + 2]))
                return stop, over, True
            elif opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
                over = self._fragment(b0, data[pos + head : stop], buffer, on_text) or over
            counter[0] += 1
            pos = stop
        return pos, over, False

    def _fragment(
        self, b0: int, payload: bytes, buffer: _FrameBuffer, on_text: Callable[[str], None]
    ) -> bool:
        """A message sent in pieces: keep them until the final one."""
        opcode = b0 & 0x0F
        if opcode != _OP_CONTINUATION:
            self._fragment_opcode, self._fragments = opcode, []
        self._fragments.append(payload)
        if not b0 & 0x80:
            return False
        message = b"".join(self._fragments)
        self._fragments = []
        if self._fragment_opcode == _OP_TEXT:
            on_text(message.decode("utf-8", "replace"))
            return False
        return buffer.add(message)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(_client_frame(_OP_CLOSE, (1000).to_bytes(2, "big")))
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


class _Connection:
    """One socket's life: open, subscribe, receive, watch, reopen."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.link: _Link | None = None
        self.task: asyncio.Task[None] | None = None
        self.received = [0]  # a list, so the receive loop bumps it without an attribute lookup
        self.opened = 0
        self.ready = asyncio.Event()
        self.sending = asyncio.Lock()  # keeps (un)subscribe messages in the order they were decided


class SmartStreamClient:
    """The market-data client: subscribe, receive, decode, deliver tick batches.

    Parameters
    ----------
    url : str
        SmartStream V2 URL (Angel's, or the simulator's `stream_url`).
    headers : Callable[[], Awaitable[Mapping[str, str]]]
        The handshake headers (Authorization, x-api-key, x-client-code, x-feed-token), asked
        for before every (re)connect so a renewed session is picked up.
    decoder : TickDecoder
        Frames to ticks, with the catalog's iids.
    on_ticks : Callable[[np.ndarray], Awaitable[None] | None]
        Gets each batch of new ticks (`TICK_DTYPE`). An async callback is awaited before the
        next batch: a slow consumer holds the feed back instead of losing ticks.
    config : FeedConfig
        Limits, flush, heartbeat, stall and reconnect settings.
    on_auth_refused : Callable[[], Awaitable[None]], optional
        Called when the server refuses the handshake credentials (renew the session there).
    on_depth : Callable[[np.ndarray], Awaitable[None] | None], optional
        Gets the full picture of each new SNAP_QUOTE tick (`codec.DEPTH_DTYPE`: five levels a
        side, OHLC, circuits, 52-week range), before the tick batch it belongs to.
    receive_path : "raw" | "aiohttp" | "websockets", optional
        How frames come off the socket; `config.receive_path` unless given.
    """

    def __init__(
        self,
        url: str,
        headers: HeaderSource,
        decoder: TickDecoder,
        on_ticks: TickSink,
        config: FeedConfig | None = None,
        *,
        on_auth_refused: Callable[[], Awaitable[None]] | None = None,
        on_depth: TickSink | None = None,
        receive_path: ReceivePath | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.url = url
        self.config = config or FeedConfig()
        self.receive_path: ReceivePath = receive_path or self.config.receive_path
        if self.receive_path not in ("raw", "aiohttp", "websockets"):
            raise ValueError(
                f"receive_path must be 'raw', 'aiohttp' or 'websockets', not {self.receive_path!r}"
            )
        self.decoder = decoder
        self.tracker = SequenceTracker(decoder.index.max_iid + 1)
        self.stats = StreamStats()
        self.plan = SubscriptionPlan(
            self.config.max_subscriptions_per_connection, self.config.max_connections
        )
        self._headers = headers
        self._on_ticks = on_ticks
        self._on_auth_refused = on_auth_refused
        self._on_depth = on_depth
        self._clock_ns = clock_ns
        self._buffer = _FrameBuffer(self.config.flush_max_ticks, clock_ns)
        self._connections = [_Connection(i) for i in range(self.config.max_connections)]
        self._correlation = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._running = False
        self.fatal_error: LoginError | None = None  # set when a refused login stopped the sockets
        log.info(
            "SmartStream client: %s via %s, %d×%d subscriptions, flush %.1f ms / %d ticks",
            url,
            self.receive_path,
            self.config.max_connections,
            self.config.max_subscriptions_per_connection,
            self.config.flush_interval_ms,
            self.config.flush_max_ticks,
        )

    # ------------------------------------------------------------------------------- control

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self.fatal_error = None
        if self.receive_path == "aiohttp":
            self._http = aiohttp.ClientSession()
        self._flusher = asyncio.ensure_future(self._flush_loop())
        for conn in self._connections:
            if self.plan.of_connection(conn.index):
                self._launch(conn)

    async def stop(self) -> None:
        """Close every socket and deliver what was already received."""
        self._running = False
        tasks = [c.task for c in self._connections if c.task is not None]
        for conn in self._connections:
            if conn.task is not None:
                conn.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._connections:
            conn.task = None
        if self._flusher is not None:
            self._buffer.has_frames.set()  # wake it: it delivers what is left, then ends
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def subscribe(self, keys: Sequence[str], mode: FeedMode) -> None:
        """Subscribe instruments ("EXCH:token") in `mode`; refused past Angel's limits."""
        placed = self.plan.add(keys, FeedMode(mode))
        for index, added in placed.items():
            conn = self._connections[index]
            if conn.task is None:
                if self._running:
                    self._launch(conn)
                continue
            async with conn.sending:
                if conn.link is not None and conn.ready.is_set():
                    await self._send_subscriptions(conn, SUBSCRIBE, FeedMode(mode), added)

    async def unsubscribe(self, keys: Sequence[str], mode: FeedMode) -> None:
        removed = self.plan.remove(keys, FeedMode(mode))
        for index, gone in removed.items():
            conn = self._connections[index]
            async with conn.sending:
                if conn.link is not None and conn.ready.is_set():
                    await self._send_subscriptions(conn, UNSUBSCRIBE, FeedMode(mode), gone)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until every socket that has subscriptions is open and subscribed."""
        wanted = [c.ready.wait() for c in self._connections if c.task is not None]
        await asyncio.wait_for(asyncio.gather(*wanted), timeout)

    def open_connections(self) -> int:
        return sum(1 for c in self._connections if c.ready.is_set())

    def counters(self) -> dict[str, Any]:
        s = self.stats
        return {
            "frames": s.frames,
            "ticks_delivered": s.ticks_delivered,
            "batches": s.batches,
            "duplicates_dropped": self.tracker.duplicates,
            "missed_by_sequence": self.tracker.missed,
            "connects": s.connects,
            "reconnects": s.reconnects,
            "stalls": s.stalls,
            "auth_refusals": s.auth_refusals,
            "pongs": s.pongs,
            "server_errors": s.server_errors,
            "decode_ns": s.decode_ns,
            "callback_errors": s.callback_errors,
            "subscriptions": len(self.plan),
            "open_connections": self.open_connections(),
            "sockets_trying": sum(1 for c in self._connections if c.task is not None and not c.task.done()),
            **self.decoder.stats.as_dict(),
        }

    # ------------------------------------------------------------------------------- sockets

    def _launch(self, conn: _Connection) -> None:
        conn.task = asyncio.ensure_future(self._keep_open(conn))

    async def _keep_open(self, conn: _Connection) -> None:
        failures = 0
        while self._running:
            try:
                conn.link = await self._open()
            except StreamAuthError as err:
                self.stats.auth_refusals += 1
                log.warning(
                    "stream socket %d: credentials refused (%s); renewing the session", conn.index, err
                )
                failures += 1
                try:
                    if self._on_auth_refused is not None:
                        await self._on_auth_refused()
                except LoginError as login:
                    self._give_up(conn, login)
                    return
                except Exception as renew:  # e.g. the broker unreachable: try again later
                    log.warning("stream socket %d: session renewal failed: %s", conn.index, renew)
                await asyncio.sleep(self._backoff(failures))
                continue
            except LoginError as err:
                # Wrong PIN or TOTP: retrying would only lock the account. Say so and stop.
                self._give_up(conn, err)
                return
            except Exception as err:  # refused, unreachable, timed out, broker error: retry later
                failures += 1
                pause = self._backoff(failures)
                log.warning(
                    "stream socket %d: cannot connect (%s); retrying in %.2f s", conn.index, err, pause
                )
                await asyncio.sleep(pause)
                continue
            self.stats.connects += 1
            if conn.opened:
                self.stats.reconnects += 1
            conn.opened += 1
            try:
                try:
                    async with conn.sending:
                        # Ready first, then the snapshot: a subscribe() from here on sends its own
                        # message; one from before is in the snapshot.
                        conn.ready.set()
                        for mode, keys in self.plan.of_connection(conn.index).items():
                            await self._send_subscriptions(conn, SUBSCRIBE, mode, keys)
                except (ConnectionError, aiohttp.ClientError, websockets.ConnectionClosed) as err:
                    # Closed under the subscription: still read what arrived before the close.
                    log.info("stream socket %d: closed while subscribing: %s", conn.index, err)
                before = conn.received[0]
                await self._serve(conn)
                if conn.received[0] > before:
                    failures = 0  # it carried data: the next drop is a fresh problem
            except (ConnectionError, aiohttp.ClientError, websockets.ConnectionClosed) as err:
                log.info("stream socket %d: %s", conn.index, err)
            except Exception:  # a bug here must not end the feed: log it and reconnect
                log.exception("stream socket %d failed", conn.index)
            finally:
                conn.ready.clear()
                link, conn.link = conn.link, None
                with contextlib.suppress(Exception):
                    await link.close()
            if self._running:
                failures += 1
                pause = self._backoff(failures)
                log.info("stream socket %d closed; reconnecting in %.2f s", conn.index, pause)
                await asyncio.sleep(pause)

    def _give_up(self, conn: _Connection, err: LoginError) -> None:
        self.fatal_error = err
        log.error("stream socket %d: giving up, the login is refused: %s", conn.index, err)

    async def _open(self) -> _Link:
        headers = await self._headers()
        if self.receive_path == "aiohttp":
            assert self._http is not None
            return await _AiohttpLink.open(self._http, self.url, headers)
        if self.receive_path == "raw":
            return await _RawLink.open(self.url, headers)
        return await _WebsocketsLink.open(self.url, headers)

    def _backoff(self, failures: int) -> float:
        return reconnect_delay(self.config, failures)

    async def _serve(self, conn: _Connection) -> None:
        """Receive until the socket closes or stalls, with the heartbeat and watchdog beside it."""
        link = conn.link
        assert link is not None
        receiver = asyncio.ensure_future(link.receive_into(self._buffer, self._on_text, conn.received))
        helpers = [
            asyncio.ensure_future(self._heartbeat(link)),
            asyncio.ensure_future(self._watch(conn, receiver)),
        ]
        try:
            # `wait`, not `await receiver`: the watchdog cancelling the receiver is a stall to
            # recover from, not a cancellation of this task.
            await asyncio.wait({receiver})
            error = None if receiver.cancelled() else receiver.exception()
            if error is not None:
                raise error
        finally:
            for task in helpers:
                task.cancel()
            receiver.cancel()
            await asyncio.gather(receiver, *helpers, return_exceptions=True)

    async def _heartbeat(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            await link.send_text("ping")

    async def _watch(self, conn: _Connection, receiver: asyncio.Task[None]) -> None:
        """Stall watchdog: silence for half the timeout earns a `ping` probe; for all of it, a reconnect."""
        half = self.config.stall_timeout_s / 2
        seen = conn.received[0]
        probed = False
        while True:
            await asyncio.sleep(half)
            if conn.received[0] != seen:
                seen, probed = conn.received[0], False
                continue
            if not probed and conn.link is not None:
                probed = True
                with contextlib.suppress(Exception):
                    await conn.link.send_text("ping")
                continue
            self.stats.stalls += 1
            log.warning(
                "stream socket %d: nothing for %.1f s; reconnecting", conn.index, self.config.stall_timeout_s
            )
            receiver.cancel()
            return

    def _on_text(self, text: str) -> None:
        if text == "pong":
            self.stats.pongs += 1
            return
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if isinstance(message, dict) and ("errorCode" in message or "errorMessage" in message):
            self.stats.server_errors += 1
            self.stats.last_server_error = f"{message.get('errorCode')}: {message.get('errorMessage')}"
            log.error("SmartStream error: %s", self.stats.last_server_error)
            return
        self.decoder.stats.dropped["text"] += 1

    async def _send_subscriptions(
        self, conn: _Connection, action: int, mode: FeedMode, keys: Sequence[str]
    ) -> None:
        assert conn.link is not None
        # Angel takes a subscription list of any length within the cap; keep messages modest anyway.
        for start in range(0, len(keys), 500):
            text = subscription_message(
                action, mode, keys[start : start + 500], f"c{next(self._correlation)}"
            )
            await conn.link.send_text(text)

    # ------------------------------------------------------------------------------- batches

    async def _flush_loop(self) -> None:
        buffer = self._buffer
        interval = self.config.flush_interval_ms / 1000
        while True:
            await buffer.has_frames.wait()
            if self._running and len(buffer.frames) < buffer.max_ticks:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await buffer.full.wait()
            frames, count, first_ns = buffer.take()
            if frames:
                await self._deliver(frames, count, first_ns)
            if not self._running and not buffer.frames:
                return

    async def _deliver(self, frames: list[bytes | np.ndarray], count: int, first_ns: int) -> None:
        self.stats.frames += count
        started = time.thread_time_ns()  # CPU time: other processes' load does not count
        groups = self.decoder.split(frames)
        ticks = self.decoder.ticks_from(groups, first_ns)
        keep = self.tracker.keep(ticks)
        depth = self._depth_of(groups, ticks, keep) if self._on_depth is not None else None
        if not keep.all():
            ticks = ticks[keep]
        self.stats.decode_ns += time.thread_time_ns() - started
        if depth is not None and len(depth):
            await self._hand_over(self._on_depth, depth, "depth")
        step = self.config.flush_max_ticks
        for start in range(0, len(ticks), step):
            batch = ticks[start : start + step]
            self.stats.batches += 1
            self.stats.ticks_delivered += len(batch)
            await self._hand_over(self._on_ticks, batch, "tick")

    async def _hand_over(self, sink: TickSink | None, rows: np.ndarray, what: str) -> None:
        if sink is None:
            return
        try:
            result = sink(rows)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the consumer's bug: count it, keep the feed going
            self.stats.callback_errors += 1
            log.exception("%s callback failed on a batch of %d rows", what, len(rows))

    @staticmethod
    def _depth_of(groups: list[FrameRecords], ticks: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
        """Five-level depth of the new SNAP_QUOTE ticks (their rows, in the same order)."""
        snap = [g for g in groups if g.mode == FeedMode.SNAP_QUOTE]
        if not snap:
            return None
        # SNAP_QUOTE ticks appear in the batch in the order of their group's records.
        return depth_from(snap[0])[keep[ticks["mode"] == FeedMode.SNAP_QUOTE]]
