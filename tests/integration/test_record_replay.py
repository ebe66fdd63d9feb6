"""A recording's raw file played back by the simulator's replay mode, received over SmartStream by
the feed's own client: the same prices and books, in the order they were recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from actors.angel.auth import AngelCredentials
from actors.angel.factories import AngelEndpoints, connect
from actors.shard.baseline import random_walk_ticks
from actors.shard.universe import ShardInstrument
from actors.sim.server import SimServer
from actors.sim.universe import SimInstrument
from actors.ticks import FeedMode
from cluster.config import FeedConfig, SimConfig
from cluster.record import TickRecording

INSTRUMENTS = [ShardInstrument.equity(i, f"RP{i}-EQ", str(7000 + i)) for i in range(3)]


def _contiguous_in(needle: list[tuple[int, int, int]], haystack: list[tuple[int, int, int]]) -> bool:
    n = len(needle)
    return any(haystack[k : k + n] == needle for k in range(len(haystack) - n + 1))


async def test_the_simulator_replays_a_recording_in_recorded_order(tmp_path: Path) -> None:
    ticks = random_walk_ticks(INSTRUMENTS, 3_000, seed=41, mode=FeedMode.SNAP_QUOTE)
    recording = TickRecording(INSTRUMENTS, tmp_path / "catalog", "replayed")
    for start in range(0, len(ticks), 256):
        recording.write(ticks[start : start + 256])
    recording.close(import_to_catalog=False)

    universe = [
        SimInstrument("NSE", i.key.split(":")[1], i.instrument_id.symbol.value, 5, 1, 100_000)
        for i in INSTRUMENTS
    ]
    config = SimConfig(
        tick_rate=3_000, seed=41, enforce_rate_limits=False, replay_path=str(recording.raw_path)
    )
    received: list[np.ndarray] = []
    with SimServer(config, universe).run_in_thread() as sim:
        connection = connect(
            AngelCredentials.for_simulator(config),
            AngelEndpoints(sim.rest_url, sim.stream_url, sim.order_url),
            tmp_path,
        )
        client = connection.stream_client(
            {i.key: i.iid for i in INSTRUMENTS}, lambda batch: received.append(batch.copy()), FeedConfig()
        )
        try:
            await client.start()
            await client.subscribe([i.key for i in INSTRUMENTS], FeedMode.SNAP_QUOTE)
            deadline = time.monotonic() + 60
            while sum(len(b) for b in received) < 1_500:  # a good part of the recording, once subscribed
                assert time.monotonic() < deadline, "the replay did not arrive"
                await asyncio.sleep(0.05)  # the stream fills `received` from its own task
        finally:
            await client.stop()
            await connection.close()
    got = np.concatenate(received)
    for inst in INSTRUMENTS:
        recorded = ticks[ticks["iid"] == inst.iid]
        replayed = got[got["iid"] == inst.iid]
        assert len(replayed) > 200
        expected = list(
            zip(recorded["ltp"].tolist(), recorded["bid"].tolist(), recorded["ask"].tolist(), strict=True)
        )
        seen = list(
            zip(replayed["ltp"].tolist(), replayed["bid"].tolist(), replayed["ask"].tolist(), strict=True)
        )
        # What arrived after the subscription is a stretch of the recording, in order, with nothing skipped.
        assert _contiguous_in(seen, expected)
        assert (np.diff(replayed["seq"]) == 1).all()
