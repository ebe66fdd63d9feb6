"""Fuzzing the SmartStream frame path: the decoder alone, then a hostile server over a real socket.

Malformed, truncated, oversized and wrongly typed frames must each be counted once under a drop
reason and skipped; the good packets around them must come through in order, exactly once; and
nothing may raise. The second half puts the real `SmartStreamClient` (all three receive paths)
against a loopback server that completes the WebSocket handshake and then sends a generated
stream: good packets, garbage binary frames, replays, text, pings, fragments, cut into arbitrary
socket writes, and sometimes a fatal tail (a masked frame, a frame announced over the size limit,
a frame cut off by EOF, a close). After the tail the client must reconnect and keep running.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.angel.codec import DROP_REASONS, TickDecoder
from actors.angel.packets import EXCHANGE_TYPE, PACKET_DTYPE, PACKET_SIZE, encode_packets
from actors.angel.stream import ReceivePath, SmartStreamClient
from actors.ticks import FeedMode
from cluster.config import FeedConfig

KNOWN = {f"NSE:{1000 + i}": i for i in range(6)} | {f"NFO:{52000 + i}": 6 + i for i in range(4)}
KEYS = sorted(KNOWN)
MODES = list(FeedMode)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def packet(key: str, seq: int, mode: FeedMode, ltp: int) -> bytes:
    exchange, token = key.split(":")
    record = np.zeros(1, dtype=PACKET_DTYPE[mode])
    record["mode"] = mode
    record["exchange_type"] = EXCHANGE_TYPE[exchange]
    record["token"] = token.encode()
    record["seq"] = seq
    record["ts_exchange_ms"] = 1_760_000_000_000 + seq
    record["ltp"] = ltp
    return encode_packets(record)[0]


# ----------------------------------------------------------------------------------- the decoder

_KEY_BYTES = {
    bytes([EXCHANGE_TYPE[k.split(":")[0]]]) + k.split(":")[1].encode(): iid for k, iid in KNOWN.items()
}


def expected_iid(frame: bytes) -> int | None:
    """The iid a well-formed frame decodes to, or None when it must be dropped (the reference)."""
    if not frame:
        return None
    size = {int(m): s for m, s in PACKET_SIZE.items()}.get(frame[0])
    if size is None or len(frame) != size:
        return None
    token = frame[2:27].split(b"\0", 1)[0]
    return _KEY_BYTES.get(frame[1:2] + token)


valid_packets = st.builds(
    packet,
    st.sampled_from(KEYS),
    st.integers(0, 2**40),
    st.sampled_from(MODES),
    st.integers(-(2**62), 2**62),
)


@st.composite
def bad_bytes(draw: Any) -> bytes:
    """A frame that must be dropped: truncated, extended, wrong mode, unknown token, or noise."""
    good = draw(valid_packets)
    kind = draw(st.sampled_from(["truncated", "extended", "wrong_mode", "unknown_token", "noise", "huge"]))
    if kind == "truncated":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "extended":
        return good + draw(st.binary(min_size=1, max_size=300))
    if kind == "wrong_mode":
        mode = draw(st.integers(0, 255).filter(lambda b: b not in (1, 2, 3)))
        return bytes([mode]) + good[1:]
    if kind == "unknown_token":
        return packet("NSE:99999", 1, FeedMode(good[0]), 1)
    if kind == "huge":
        return good + bytes(draw(st.integers(10_000, 300_000)))
    return draw(st.binary(max_size=600))


# What can reach the decoder besides bytes: text frames, and whatever a bug upstream might pass.
wrong_types = st.one_of(
    st.text(max_size=50), st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=3)
)


@st.composite
def packet_blocks(draw: Any) -> np.ndarray:
    """A 2-D uint8 block as the raw receive path makes from a run of equal frames (maybe corrupt)."""
    mode = draw(st.sampled_from(MODES))
    rows = [draw(valid_packets.filter(lambda p, m=mode: p[0] == m)) for _ in range(draw(st.integers(1, 4)))]
    block = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), PACKET_SIZE[mode]).copy()
    if draw(st.booleans()):
        block[draw(st.integers(0, len(rows) - 1)), 0] = draw(st.integers(0, 255))
    return block


frames = st.lists(
    st.one_of(valid_packets, bad_bytes(), wrong_types, packet_blocks(), st.binary(max_size=64)), max_size=40
)


def _reference(items: list[Any]) -> tuple[int, list[int]]:
    """(frames offered, iids expected in order): a block counts each of its rows."""
    offered, iids = 0, []
    for item in items:
        rows: list[Any] = [r.tobytes() for r in item] if isinstance(item, np.ndarray) else [item]
        offered += len(rows)
        for row in rows:
            iid = expected_iid(bytes(row)) if isinstance(row, bytes | bytearray) else None
            if iid is not None:
                iids.append(iid)
    return offered, iids


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_decoder_counts_every_frame_once_and_passes_only_good_packets_in_order(items: list[Any]) -> None:
    decoder = TickDecoder.from_keys(KNOWN)
    ticks = decoder.decode(items, ts_recv_ns=123)
    offered, iids = _reference(items)
    stats = decoder.stats
    assert stats.decoded + stats.dropped_total == offered, stats.as_dict()
    assert ticks["iid"].tolist() == iids
    assert (ticks["ts_recv_ns"] == 123).all()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "short"),
        (packet(KEYS[0], 1, FeedMode.SNAP_QUOTE, 1)[:200], "short"),
        (packet(KEYS[0], 1, FeedMode.LTP, 1) + b"\0", "wrong_length"),
        (packet(KEYS[0], 1, FeedMode.QUOTE, 1) + bytes(1 << 20), "wrong_length"),
        (b"\x07" + packet(KEYS[0], 1, FeedMode.LTP, 1)[1:], "wrong_mode"),
        (packet("NSE:424242", 1, FeedMode.LTP, 1), "unknown_token"),
        (packet("BSE:1000", 1, FeedMode.LTP, 1), "unknown_token"),  # right token, wrong exchange
        ('{"not": "binary"}', "text"),
        (None, "text"),
        (3.5, "text"),
    ],
)
def test_each_kind_of_bad_frame_has_its_reason(frame: Any, reason: str) -> None:
    decoder = TickDecoder.from_keys(KNOWN)
    good = packet(KEYS[1], 7, FeedMode.LTP, 555)
    ticks = decoder.decode([good, frame, good], ts_recv_ns=0)
    assert ticks["ltp"].tolist() == [555, 555]
    assert decoder.stats.dropped == {r: int(r == reason) for r in DROP_REASONS}


# ----------------------------------------------------------------------------------- over a socket


def ws_frame(payload: bytes, opcode: int = 0x2, final: bool = True, masked: bool = False) -> bytes:
    """A server-to-client WebSocket frame (RFC 6455); `masked` makes it one a server must not send."""
    first = (0x80 if final else 0) | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, mask_bit | size])
    elif size < 1 << 16:
        head = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    return head + (b"\0\0\0\0" + payload if masked else payload)


@dataclass
class HostileStream:
    """The bytes to send and what the client must make of them."""

    data: bytes = b""
    binary_frames: int = 0  # binary messages the client must count
    text_frames: int = 0
    expected: list[tuple[int, int, int]] = field(default_factory=list)  # (iid, mode, seq) delivered
    replays: int = 0
    fatal_tail: str = "none"


@st.composite
def hostile_streams(draw: Any) -> HostileStream:
    out = HostileStream()
    seq: dict[tuple[str, int], int] = {}
    sent: list[bytes] = []
    parts: list[bytes] = []
    kinds = ["good", "good", "bad", "replay", "text", "error_text", "pong", "ping", "fragmented"]
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=50)):
        if kind in ("good", "fragmented"):
            key, mode = draw(st.sampled_from(KEYS)), draw(st.sampled_from(MODES))
            n = seq[(key, mode)] = seq.get((key, mode), draw(st.integers(0, 1000))) + 1
            body = packet(key, n, mode, draw(st.integers(1, 10**9)))
            sent.append(body)
            out.expected.append((KNOWN[key], int(mode), n))
            out.binary_frames += 1
            if kind == "good":
                parts.append(ws_frame(body))
            else:
                cut = draw(st.integers(1, len(body) - 1))
                parts += [ws_frame(body[:cut], final=False), ws_frame(body[cut:], opcode=0x0)]
        elif kind == "bad":
            parts.append(ws_frame(draw(bad_bytes())))
            out.binary_frames += 1
        elif kind == "replay" and sent:
            parts.append(ws_frame(draw(st.sampled_from(sent))))
            out.binary_frames += 1
            out.replays += 1
        elif kind == "text":
            parts.append(ws_frame(draw(st.text(max_size=80)).encode(), opcode=0x1))
            out.text_frames += 1
        elif kind == "error_text":
            message = {"errorCode": "E1002", "errorMessage": draw(st.text(max_size=20))}
            parts.append(ws_frame(json.dumps(message).encode(), opcode=0x1))
            out.text_frames += 1
        elif kind == "pong":
            parts.append(ws_frame(b"pong", opcode=0x1))
            out.text_frames += 1
        elif kind == "ping":
            parts.append(ws_frame(draw(st.binary(max_size=20)), opcode=0x9))
    out.fatal_tail = draw(st.sampled_from(["none", "masked", "over_limit", "cut_off", "close"]))
    tail = {
        "none": b"",
        "masked": ws_frame(b"\x01" * 51, masked=True),
        "over_limit": bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"),
        "cut_off": ws_frame(packet(KEYS[0], 10**9, FeedMode.LTP, 1))[:30],
        "close": ws_frame((1000).to_bytes(2, "big"), opcode=0x8),
    }[out.fatal_tail]
    out.data = b"".join(parts) + tail
    return out


class HostileServer:
    """Completes the handshake, writes its stream to the first connection in the given cuts, then
    closes it; later connections get nothing and stay open (so the client sits reconnected)."""

    def __init__(self, stream: bytes, cuts: list[int]) -> None:
        self.stream = stream
        self.cuts = cuts
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/smart-stream"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        first = self.connections == 0
        self.connections += 1
        if not first:
            return
        at = 0
        for cut in [*self.cuts, len(self.stream)]:
            if at >= len(self.stream):
                break
            writer.write(self.stream[at : at + cut])
            at += cut
            await writer.drain()
        # The client may still be answering pings or closing; give it the end of the stream.
        writer.write_eof() if writer.can_write_eof() else writer.close()


async def wait_for(condition: Any, timeout_s: float, what: str, state: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}: {state()}")
        await asyncio.sleep(0.002)  # yield to the client's tasks on this loop


async def run_against(stream: HostileStream, cuts: list[int], path: ReceivePath) -> tuple[Any, list[Any]]:
    server = HostileServer(stream.data, cuts)
    url = await server.start()
    delivered: list[np.ndarray] = []

    async def headers() -> dict[str, str]:
        return {"Authorization": "Bearer fuzz", "x-api-key": "k", "x-client-code": "c", "x-feed-token": "f"}

    client = SmartStreamClient(
        url,
        headers,
        TickDecoder.from_keys(KNOWN),
        lambda ticks: delivered.append(ticks.copy()),
        # A short stall timeout: a half-closed socket that a library does not report (aiohttp after
        # a ping) is found by the watchdog, which is the designed recovery.
        FeedConfig(reconnect_initial_s=0.01, reconnect_max_s=0.05, flush_interval_ms=1, stall_timeout_s=0.6),
        receive_path=path,
    )
    await client.start()
    try:
        await client.subscribe(KEYS, FeedMode.SNAP_QUOTE)

        def settled() -> bool:
            c = client.counters()
            texts = c["dropped_text"] + c["server_errors"] + c["pongs"]
            # The server closes after its stream: a second connection proves the client survived.
            return c["frames"] >= stream.binary_frames and texts >= stream.text_frames and c["connects"] >= 2

        def state() -> str:
            c = client.counters()
            wanted = (
                f"want {stream.binary_frames} frames, {stream.text_frames} texts, tail {stream.fatal_tail}"
            )
            return f"{wanted}; have {c} after {server.connections} connections"

        await wait_for(settled, 30.0, "the client to count the whole stream and reconnect", state)
        return client.counters(), delivered
    finally:
        # The server first: it never answers a close frame, which a client would wait 2 s for.
        await server.stop()
        await client.stop()


@pytest.mark.parametrize("path", ["raw", "aiohttp", "websockets"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=hostile_streams(), cuts=st.lists(st.integers(1, 700), max_size=30))
def test_hostile_stream_is_counted_good_packets_arrive_once_in_order_and_the_client_reconnects(
    path: ReceivePath, stream: HostileStream, cuts: list[int]
) -> None:
    counters, delivered = asyncio.run(run_against(stream, cuts, path))
    received = [(int(t["iid"]), int(t["mode"]), int(t["seq"])) for batch in delivered for t in batch]
    assert received == stream.expected
    dropped = sum(counters[f"dropped_{r}"] for r in DROP_REASONS if r != "text")
    # aiohttp accepts a masked server frame (RFC 6455 says close); its payload is then a bad packet.
    lenient = 1 if path == "aiohttp" and stream.fatal_tail == "masked" else 0
    assert stream.binary_frames <= counters["frames"] <= stream.binary_frames + lenient
    assert counters["decoded"] + dropped == counters["frames"]
    assert counters["dropped_text"] + counters["server_errors"] + counters["pongs"] == stream.text_frames
    assert counters["duplicates_dropped"] == counters["decoded"] - len(stream.expected)
    assert counters["callback_errors"] == 0
