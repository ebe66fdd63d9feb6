"""The pure parts of the SmartStream client: subscription plan, messages, sequence tracking."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.angel.packets import PACKET_SIZE
from actors.angel.stream import (
    SequenceTracker,
    SubscriptionLimitError,
    SubscriptionPlan,
    _client_frame,
    _FrameBuffer,
    _RawLink,
    reconnect_delay,
    subscription_message,
)
from actors.ticks import TICK_DTYPE, FeedMode
from cluster.config import FeedConfig

LTP, SNAP = FeedMode.LTP, FeedMode.SNAP_QUOTE


def keys(n: int, start: int = 0, exchange: str = "NSE") -> list[str]:
    return [f"{exchange}:{i}" for i in range(start, start + n)]


def test_plan_fills_one_socket_before_opening_the_next() -> None:
    plan = SubscriptionPlan(per_connection=1000, connections=3)
    assert plan.add(keys(999), SNAP) == {0: keys(999)}
    assert plan.add(keys(3, 999), SNAP) == {0: ["NSE:999"], 1: ["NSE:1000", "NSE:1001"]}
    assert plan.load() == [1000, 2, 0]


def test_each_mode_is_its_own_subscription() -> None:
    plan = SubscriptionPlan(per_connection=2, connections=3)
    plan.add(["NSE:1", "NSE:2"], LTP)
    plan.add(["NSE:1", "NSE:2"], SNAP)
    assert plan.load() == [2, 2, 0]
    assert plan.of_connection(0) == {LTP: ["NSE:1", "NSE:2"]}
    assert plan.of_connection(1) == {SNAP: ["NSE:1", "NSE:2"]}


def test_subscribing_again_changes_nothing() -> None:
    plan = SubscriptionPlan(per_connection=10, connections=3)
    plan.add(keys(5), SNAP)
    assert plan.add(keys(5) + keys(5), SNAP) == {}
    assert len(plan) == 5


def test_past_the_login_limit_is_refused_whole_with_the_reason() -> None:
    plan = SubscriptionPlan(per_connection=1000, connections=3)
    plan.add(keys(2990), SNAP)
    with pytest.raises(
        SubscriptionLimitError, match=r"cannot subscribe 11 more SNAP_QUOTE.*2990 of 3000"
    ) as err:
        plan.add(keys(11, 5000), SNAP)
    assert "3 connections × 1000" in str(err.value)
    assert len(plan) == 2990  # nothing of the refused request was placed
    plan.add(keys(10, 5000), SNAP)
    assert plan.load() == [1000, 1000, 1000]


def test_removing_frees_room_on_that_socket() -> None:
    plan = SubscriptionPlan(per_connection=2, connections=2)
    plan.add(keys(4), LTP)
    assert plan.remove(["NSE:0", "NSE:3", "NSE:77"], LTP) == {0: ["NSE:0"], 1: ["NSE:3"]}
    assert plan.add(["BSE:9"], LTP) == {0: ["BSE:9"]}


@pytest.mark.parametrize("bad", ["3045", "XNAS:1", "NSE:"])
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        SubscriptionPlan(10, 1).add([bad], LTP)


def test_subscription_message_groups_tokens_by_exchange_type() -> None:
    text = subscription_message(1, SNAP, ["NSE:3045", "NFO:61093", "NSE:2885", "MCX:234230"], "c7")
    assert json.loads(text) == {
        "correlationID": "c7",
        "action": 1,
        "params": {
            "mode": 3,
            "tokenList": [
                {"exchangeType": 1, "tokens": ["3045", "2885"]},
                {"exchangeType": 2, "tokens": ["61093"]},
                {"exchangeType": 5, "tokens": ["234230"]},
            ],
        },
    }


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 10, 40])
def test_reconnect_delay_grows_with_jitter_up_to_the_cap(failures: int) -> None:
    config = FeedConfig(reconnect_initial_s=0.2, reconnect_max_s=10.0)
    ceiling = min(10.0, 0.2 * 2 ** (failures - 1))
    delays = [reconnect_delay(config, failures) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def ticks_of(rows: list[tuple[int, int, int]]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=TICK_DTYPE)
    for i, (iid, mode, seq) in enumerate(rows):
        out[i]["iid"], out[i]["mode"], out[i]["seq"] = iid, mode, seq
    return out


class ReferenceTracker:
    """One tick at a time, the obvious way."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, int], int] = {}
        self.duplicates = self.missed = 0

    def filter(self, rows: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        kept = []
        for iid, mode, seq in rows:
            last = self.last.get((iid, mode))
            if last is not None and seq <= last:
                self.duplicates += 1
                continue
            if last is not None:
                self.missed += seq - last - 1
            self.last[(iid, mode)] = seq
            kept.append((iid, mode, seq))
        return kept


ROWS = st.tuples(st.integers(0, 6), st.sampled_from([1, 3]), st.integers(0, 40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ROWS, max_size=30), max_size=8), st.booleans())
def test_tracker_matches_one_at_a_time_reference(
    batches: list[list[tuple[int, int, int]]], ordered: bool
) -> None:
    if ordered:  # the common case: each instrument's ticks arrive in sequence order
        batches = [sorted(b, key=lambda r: (r[0], r[1], r[2])) for b in batches]
    tracker, reference = SequenceTracker(2), ReferenceTracker()
    for rows in batches:
        got = tracker.filter(ticks_of(rows))
        want = reference.filter(rows)
        assert [(int(t["iid"]), int(t["mode"]), int(t["seq"])) for t in got] == want
    assert tracker.duplicates == reference.duplicates
    assert tracker.missed == reference.missed


def test_replayed_ticks_after_a_reconnect_are_dropped_and_the_outage_counted() -> None:
    tracker = SequenceTracker(10)
    first = tracker.filter(ticks_of([(1, 3, s) for s in range(1, 6)]))
    assert len(first) == 5
    # The socket dropped after seq 5; the new one replays 4..5 and continues at 9.
    again = tracker.filter(ticks_of([(1, 3, 4), (1, 3, 5), (1, 3, 9), (1, 3, 10)]))
    assert list(again["seq"]) == [9, 10]
    assert tracker.duplicates == 2
    assert tracker.missed == 3 and tracker.missed_for(1, SNAP) == 3 and tracker.missed_for(2, SNAP) == 0
    assert tracker.last_seq(1, SNAP) == 10 and tracker.last_seq(1, LTP) is None


def test_tracker_grows_for_iids_past_its_first_size() -> None:
    tracker = SequenceTracker(1)
    kept = tracker.filter(ticks_of([(500, 1, 1), (500, 1, 2), (3, 1, 1)]))
    assert len(kept) == 3 and tracker.last_seq(500, LTP) == 2


# ----------------------------------------------------------------------------------- raw framing


def server_frame(payload: bytes, opcode: int = 0x2, final: bool = True) -> bytes:
    """An unmasked server-to-client frame."""
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    if size < 126:
        return bytes([first, size]) + payload
    if size < 1 << 16:
        return bytes([first, 126]) + size.to_bytes(2, "big") + payload
    return bytes([first, 127]) + size.to_bytes(8, "big") + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of a masked client frame."""
    assert frame[1] & 0x80, "client frames must be masked"
    size, at = frame[1] & 0x7F, 2
    if size == 126:
        size, at = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, at = int.from_bytes(frame[2:10], "big"), 10
    mask = frame[at : at + 4]
    body = frame[at + 4 : at + 4 + size]
    assert len(body) == size
    return frame[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536])
def test_client_frames_are_masked_and_sized(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert unmask(_client_frame(0x1, payload)) == (0x1, payload)


def packets_of(n: int, mode: FeedMode = SNAP) -> list[bytes]:
    return [
        bytes([int(mode)])
        + i.to_bytes(4, "little") * (PACKET_SIZE[mode] // 4)
        + b"\x00" * (PACKET_SIZE[mode] % 4 - 1)
        for i in range(n)
    ]


def run_chunks(link: _RawLink, chunks: list[bytes], texts: list[str]) -> tuple[list[bytes], bool]:
    """Feed socket reads through the link's splitter as `receive_into` does."""
    buffer = _FrameBuffer(max_ticks=1 << 20, clock_ns=lambda: 0)
    counter = [0]
    pending, closed = b"", False
    for chunk in chunks:
        data = pending + chunk
        used, _, closed = link._split(data, buffer, texts.append, counter)
        pending = data[used:]
        if closed:
            break
    frames: list[bytes] = []
    for item in buffer.take()[0]:
        if isinstance(item, np.ndarray):
            frames.extend(row.tobytes() for row in item)
        else:
            frames.append(item)
    assert pending == b"" or closed
    return frames, closed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40), st.integers(0, 60), st.integers(0, 3))
def test_frames_survive_any_split_of_the_byte_stream(cuts: list[int], snaps: int, ltps: int) -> None:
    snap, ltp = packets_of(snaps), packets_of(ltps, LTP)
    messages = [server_frame(p) for p in snap[: snaps // 2]]
    messages.append(server_frame(b"pong", opcode=0x1))
    messages += [server_frame(p) for p in ltp] + [server_frame(p) for p in snap[snaps // 2 :]]
    messages += [server_frame(b'{"errorCode"', opcode=0x1, final=False), server_frame(b": 1}", opcode=0x0)]
    stream_bytes = b"".join(messages)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(stream_bytes[at : at + cut])
        at += cut
    chunks.append(stream_bytes[at:])
    texts: list[str] = []
    frames, closed = run_chunks(_RawLink(None, None), [c for c in chunks if c], texts)  # type: ignore[arg-type]
    assert not closed
    assert frames == snap[: snaps // 2] + ltp + snap[snaps // 2 :]
    assert texts == ["pong", '{"errorCode": 1}']


def test_a_run_of_equal_frames_becomes_one_block() -> None:
    buffer = _FrameBuffer(max_ticks=1 << 20, clock_ns=lambda: 0)
    data = b"".join(server_frame(p) for p in packets_of(500))
    used, _, _ = _RawLink(None, None)._split(data, buffer, lambda _: None, [0])  # type: ignore[arg-type]
    assert used == len(data)
    (block,) = buffer.take()[0]
    assert isinstance(block, np.ndarray) and block.shape == (500, PACKET_SIZE[SNAP])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes([0x82, 0x80 | 5]) + b"\0" * 9, "masked frame"),
        (bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), "over the"),
    ],
)
def test_frames_a_server_must_not_send_end_the_connection(data: bytes, message: str) -> None:
    buffer = _FrameBuffer(max_ticks=10, clock_ns=lambda: 0)
    with pytest.raises(ConnectionError, match=message):
        _RawLink(None, None)._split(data, buffer, lambda _: None, [0])  # type: ignore[arg-type]


async def test_ping_gets_a_pong_and_close_ends_the_socket_over_a_real_socket_pair() -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    peer_reader, peer_writer = await asyncio.open_connection(sock=theirs)
    link = _RawLink(reader, writer)
    buffer = _FrameBuffer(max_ticks=10, clock_ns=lambda: 0)
    peer_writer.write(
        server_frame(b"hb", opcode=0x9)
        + server_frame(packets_of(1)[0])
        + server_frame(b"\x03\xe8", opcode=0x8)
    )
    await asyncio.wait_for(link.receive_into(buffer, lambda _: None, [0]), 5)
    assert buffer.take()[1] == 1
    pong_size = 2 + 4 + 2  # header, mask, payload; the close frame is the same size
    answer = await asyncio.wait_for(peer_reader.readexactly(2 * pong_size), 5)
    assert unmask(answer[:pong_size]) == (0xA, b"hb")
    assert unmask(answer[pong_size:]) == (0x8, b"\x03\xe8")
    await link.close()
    peer_writer.close()
