"""Feed benchmarks: the SmartStream client over loopback against the simulator, and pure decode.

The simulator runs in its own process (so each side has a core, as in use); the feed client runs
here on uvloop. Results are plain dicts; the CLI prints them as JSON.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import uvloop

from actors.angel.auth import AngelCredentials
from actors.angel.codec import TickDecoder
from actors.angel.factories import AngelEndpoints, connect
from actors.angel.packets import EXCHANGE_TYPE, PACKET_DTYPE, encode_packets
from actors.angel.stream import FEED_MODES, ReceivePath
from actors.ticks import FeedMode
from cluster.config import FeedConfig, SimConfig

WARMUP_S = 1.0


def run_decode_bench(instruments: int = 1000, seconds: float = 1.0) -> dict[str, Any]:
    """Decode cost on prepared frames, per mode and batch size (no sockets), in CPU time."""
    keys = {f"NSE:{10_000 + i}": i for i in range(instruments)}
    decoder = TickDecoder.from_keys(keys)
    out: dict[str, Any] = {}
    for mode in FeedMode:
        records = np.zeros(4096, dtype=PACKET_DTYPE[mode])
        records["mode"] = mode
        records["exchange_type"] = EXCHANGE_TYPE["NSE"]
        records["token"] = [str(10_000 + i % instruments).encode() for i in range(len(records))]
        records["seq"] = np.arange(len(records))
        frames = encode_packets(records)
        for batch in (4096, 256):
            chunk = frames[:batch]
            decoder.decode(chunk, 0)  # warm-up: first-call costs are not decode costs
            done, started, cpu_started = 0, time.perf_counter(), time.thread_time()
            while time.perf_counter() - started < seconds / 6:
                decoder.decode(chunk, 0)
                done += batch
            # CPU time, not wall time: on a shared machine other processes' load would count.
            cpu = time.thread_time() - cpu_started
            out[f"{mode.name.lower()}_batch{batch}_ticks_per_cpu_s"] = round(done / cpu)
            out[f"{mode.name.lower()}_batch{batch}_ns_per_tick"] = round(cpu / done * 1e9, 1)
    return out


def run_feed_bench(
    rate: int, seconds: float, instruments: int, mode: str, receive_path: ReceivePath
) -> dict[str, Any]:
    """The simulator streaming to the feed client over loopback for `seconds` after a warm-up."""
    from actors.sim.bench import ServerProcess

    config = SimConfig(tick_rate=rate, instruments=instruments, enforce_rate_limits=False)
    with ServerProcess(config) as server:
        children = psutil.Process().children(recursive=True)
        result = uvloop.run(
            _feed_client(server.info, config, seconds, FEED_MODES[mode], receive_path, children)
        )
    result.update(
        {"rate_target": rate, "instruments": instruments, "mode": mode, "receive_path": receive_path}
    )
    return result


async def _feed_client(
    info: dict[str, Any],
    config: SimConfig,
    seconds: float,
    mode: FeedMode,
    receive_path: ReceivePath,
    children: list[psutil.Process],
) -> dict[str, Any]:
    keys = [f"{exchange}:{token}" for exchange, token in info["tokens"]]
    iid_by_key = {key: iid for iid, key in enumerate(keys)}
    creds = AngelCredentials(
        client_code=config.client_code,
        api_key=config.api_key,
        pin=config.pin,
        totp_secret=info["totp_secret"],
    )
    latencies: list[np.ndarray] = []
    counted = [0]
    measuring = [False]

    def on_ticks(ticks: np.ndarray) -> None:
        counted[0] += len(ticks)
        if measuring[0]:
            latencies.append(time.time_ns() - ticks["ts_exchange_ns"][::16])

    with tempfile.TemporaryDirectory() as data_dir:
        conn = connect(creds, AngelEndpoints(info["rest"], info["stream"], ""), Path(data_dir))
        client = conn.stream_client(iid_by_key, on_ticks, FeedConfig(), receive_path)
        try:
            await client.start()
            await client.subscribe(keys, mode)
            await client.wait_connected(30)
            await asyncio.sleep(WARMUP_S)  # let the pump reach its rate before measuring
            before = client.counters()
            ticks_before, me, sims = counted[0], psutil.Process(), children
            cpu_me, cpu_sim = me.cpu_times(), [p.cpu_times() for p in sims]
            measuring[0] = True
            started = time.perf_counter()
            await asyncio.sleep(seconds)
            elapsed = time.perf_counter() - started
            measuring[0] = False
            after = client.counters()
            ticks = counted[0] - ticks_before
            cpu_me_after, cpu_sim_after = me.cpu_times(), [p.cpu_times() for p in sims]
            sim_counters = await _sim_counters(info["rest"])
        finally:
            await client.stop()
            await conn.close()

    def busy(a: Any, b: Any) -> float:
        return (b.user - a.user) + (b.system - a.system)

    lags = np.concatenate(latencies) / 1e6 if latencies else np.zeros(1)
    decoded = after["decoded"] - before["decoded"]
    return {
        "bench": "feed",
        "seconds": round(elapsed, 2),
        "connections": after["open_connections"],
        "ticks": ticks,
        "ticks_per_s": round(ticks / elapsed),
        "frames_lost_by_sequence": after["missed_by_sequence"] - before["missed_by_sequence"],
        "duplicates_dropped": after["duplicates_dropped"] - before["duplicates_dropped"],
        "reconnects": after["reconnects"],
        "sim_dropped_for_slow_client": sim_counters.get("dropped"),
        "decode_ns_per_tick": round((after["decode_ns"] - before["decode_ns"]) / max(decoded, 1), 1),
        "batches_per_s": round((after["batches"] - before["batches"]) / elapsed),
        "feed_to_callback_ms": {
            "p50": round(float(np.percentile(lags, 50)), 2),
            "p99": round(float(np.percentile(lags, 99)), 2),
            "max": round(float(lags.max()), 2),
        },
        "client_cpu_us_per_tick": round(busy(cpu_me, cpu_me_after) / max(ticks, 1) * 1e6, 2),
        "cpu_percent": {
            "feed_client": round(100 * busy(cpu_me, cpu_me_after) / elapsed, 1),
            "simulator": round(
                100 * sum(busy(a, b) for a, b in zip(cpu_sim, cpu_sim_after, strict=True)) / elapsed, 1
            ),
        },
        "cores": os.cpu_count(),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the machine
    }


async def _sim_counters(rest_url: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{rest_url}/sim/v1/counters")
    data: dict[str, Any] = answer.json()
    return data
