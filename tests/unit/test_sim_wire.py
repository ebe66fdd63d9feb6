"""The simulator's bulk WebSocket framing, checked frame by frame and against the SDK's own parser."""

from __future__ import annotations

import numpy as np
import pytest

from actors.angel.packets import PACKET_SIZE, SNAP_QUOTE_DTYPE
from actors.angel.sdk import sdk_packet_parser
from actors.sim.market import MarketModel
from actors.sim.stream import frame_header, frame_packets
from actors.sim.universe import synthetic_universe
from actors.ticks import FeedMode


def split_frames(stream: bytes) -> list[tuple[int, bytes]]:
    """RFC 6455 server frames (unmasked) back into (opcode byte, payload)."""
    frames, pos = [], 0
    while pos < len(stream):
        first, second = stream[pos], stream[pos + 1]
        assert second & 0x80 == 0, "server frames must not be masked"
        length, pos = second & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(stream[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(stream[pos : pos + 8], "big"), pos + 8
        frames.append((first, stream[pos : pos + length]))
        pos += length
    return frames


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (51, bytes([0x82, 51])),
        (125, bytes([0x82, 125])),
        (126, bytes([0x82, 126, 0, 126])),
        (379, bytes([0x82, 126, 1, 123])),
        (70_000, bytes([0x82, 127]) + (70_000).to_bytes(8, "big")),
    ],
)
def test_frame_header(size: int, header: bytes) -> None:
    assert frame_header(size) == header


@pytest.fixture(scope="module")
def records() -> np.ndarray:
    market = MarketModel(synthetic_universe(20, 9), seed=9)
    market.step(np.arange(20), 1_000)
    return market.step(np.arange(20).repeat(3), 2_000)  # a few ticks per instrument


@pytest.mark.parametrize("mode", list(FeedMode))
def test_frames_carry_the_right_prefix_and_the_sdk_parses_them(records: np.ndarray, mode: FeedMode) -> None:
    raw = records.view(np.uint8).reshape(len(records), SNAP_QUOTE_DTYPE.itemsize)
    frames = split_frames(frame_packets(raw, mode))
    assert len(frames) == len(records)
    parse = sdk_packet_parser()
    for (opcode, payload), rec, row in zip(frames, records, raw, strict=True):
        assert opcode == 0x82 and len(payload) == PACKET_SIZE[mode]
        assert payload[0] == mode and payload[1:] == bytes(row[1 : PACKET_SIZE[mode]])
        parsed = parse(payload)
        assert parsed["subscription_mode"] == mode
        assert parsed["token"] == rec["token"].decode()
        assert parsed["sequence_number"] == rec["seq"]
        assert parsed["last_traded_price"] == rec["ltp"]
        assert parsed["exchange_timestamp"] == 2_000
        if mode >= FeedMode.QUOTE:
            assert parsed["volume_trade_for_the_day"] == rec["volume"]
            assert parsed["high_price_of_the_day"] == rec["high"] and parsed["closed_price"] == rec["close"]
            assert parsed["total_buy_quantity"] == rec["total_buy_qty"]
        if mode == FeedMode.SNAP_QUOTE:
            depth = rec["depth"]
            assert [d["price"] for d in parsed["best_5_buy_data"]] == depth["price"][:5].tolist()
            assert [d["price"] for d in parsed["best_5_sell_data"]] == depth["price"][5:].tolist()
            assert [d["quantity"] for d in parsed["best_5_buy_data"]] == depth["qty"][:5].tolist()
            assert parsed["upper_circuit_limit"] == rec["upper_circuit"]
            assert parsed["open_interest"] == rec["oi"]
        else:
            assert "best_5_buy_data" not in parsed


def test_an_empty_batch_frames_to_nothing() -> None:
    assert frame_packets(np.zeros((0, SNAP_QUOTE_DTYPE.itemsize), dtype=np.uint8), FeedMode.LTP) == b""
