"""Simulator benchmarks: feed throughput over loopback, and the server's send paths compared.

The server runs in its own process so that server and client each have a core, as they would in
use. Results are plain dicts (the CLI prints them as JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.angel.packets import EXCHANGE_TYPE, PACKET_SIZE, SNAP_QUOTE_DTYPE
from actors.ticks import FeedMode
from cluster.config import SimConfig

# Token and sequence number, the part of every packet the loss check reads (bytes 2..34).
_HEAD_DTYPE = np.dtype([("token", "S25"), ("seq", "<i8")])
_REST_HEADERS = {"X-UserType": "USER", "X-SourceID": "WEB", "Content-Type": "application/json"}


def _server_main(config_json: str, ready: Any, stop: Any) -> None:
    """Child process: run the simulator until told to stop."""
    from actors.sim.server import SimServer

    async def main() -> None:
        sim = SimServer(SimConfig.model_validate_json(config_json))
        await sim.start()
        tokens = [(i.exchange, i.token) for i in sim.instruments]
        ready.put(
            {
                "rest": sim.rest_url,
                "stream": sim.stream_url,
                "totp_secret": sim.config.totp_secret,
                "tokens": tokens,
            }
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stop.wait)
        await sim.stop()

    asyncio.run(main())


class ServerProcess:
    """The simulator in a child process (spawned, so no state is shared with the caller)."""

    def __init__(self, config: SimConfig) -> None:
        ctx = mp.get_context("spawn")
        self._ready = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_server_main, args=(config.model_dump_json(), self._ready, self._stop)
        )
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        self.info = self._ready.get(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()


async def _login(http: Any, rest: str, config: SimConfig, totp_secret: str) -> dict[str, str]:
    import pyotp

    body = {"clientcode": config.client_code, "password": config.pin, "totp": pyotp.TOTP(totp_secret).now()}
    headers = {**_REST_HEADERS, "X-PrivateKey": config.api_key}
    async with http.post(
        f"{rest}/rest/auth/angelbroking/user/v1/loginByPassword", json=body, headers=headers
    ) as r:
        answer = await r.json()
    if not answer.get("status"):
        raise RuntimeError(f"simulator login failed: {answer}")
    return dict(answer["data"])


def run_stream_bench(
    rate: int, seconds: float, instruments: int, mode: int, connections: int, client: str = "bulk"
) -> dict[str, Any]:
    """Feed throughput, loss and latency. ``client``: "bulk" reads the socket in large chunks and
    splits frames with numpy (as a vectorised feed decoder would); "aiohttp" takes one message per
    await (one Python step per tick, so it measures the client as much as the server)."""
    config = SimConfig(tick_rate=rate, instruments=instruments, enforce_rate_limits=False)
    with ServerProcess(config) as server:
        if client == "bulk":
            return asyncio.run(_bulk_client(server.info, config, seconds, mode, connections))
        return asyncio.run(_stream_client(server.info, config, seconds, mode, connections))


def _subscriptions(tokens: list[tuple[str, str]], n: int, connections: int, mode: int) -> str:
    groups: dict[int, list[str]] = {}
    for exchange, token in tokens[n::connections][:1000]:
        groups.setdefault(EXCHANGE_TYPE[exchange], []).append(token)
    token_list = [{"exchangeType": k, "tokens": v} for k, v in groups.items()]
    return json.dumps(
        {"correlationID": f"b{n}", "action": 1, "params": {"mode": mode, "tokenList": token_list}}
    )


def _masked_text_frame(text: str) -> bytes:
    """A client-to-server text frame (clients must mask their frames)."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return bytes([0x81]) + length + mask + masked


async def _raw_socket(url: str, headers: dict[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand: the handshake, then the bare byte stream."""
    import base64
    from urllib.parse import urlparse

    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port, limit=1 << 24)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {parsed.path} HTTP/1.1",
        f"Host: {parsed.hostname}:{parsed.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = await reader.readuntil(b"\r\n\r\n")
    if not answer.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {answer.splitlines()[0]!r}")
    return reader, writer


async def _bulk_client(
    info: dict[str, Any], config: SimConfig, seconds: float, mode: int, connections: int
) -> dict[str, Any]:
    import aiohttp

    from actors.sim.stream import frame_header

    tokens: list[tuple[str, str]] = [tuple(t) for t in info["tokens"]]
    header = frame_header(PACKET_SIZE[FeedMode(mode)])
    frame = len(header) + PACKET_SIZE[FeedMode(mode)]
    frame_dtype = np.dtype(
        [
            ("header", f"S{len(header)}"),
            ("mode", "u1"),
            ("exchange_type", "u1"),
            ("token", "S25"),
            ("seq", "<i8"),
            ("ts_ms", "<i8"),
            ("rest", f"S{frame - len(header) - 43}"),
        ]
    )
    async with aiohttp.ClientSession() as http:
        session = await _login(http, info["rest"], config, info["totp_secret"])
        headers = {
            "Authorization": session["jwtToken"],
            "x-api-key": config.api_key,
            "x-client-code": config.client_code,
            "x-feed-token": session["feedToken"],
        }
        sockets = [await _raw_socket(info["stream"], headers) for _ in range(connections)]
        for n, (_, writer) in enumerate(sockets):
            writer.write(_masked_text_frame(_subscriptions(tokens, n, connections, mode)))
        columns: list[np.ndarray] = []
        latency: list[np.ndarray] = []
        counts = [0] * connections

        pendings = [b""] * connections  # a partial frame left over between reads, per socket

        async def read(n: int, reader: asyncio.StreamReader, until: Callable[[], bool]) -> None:
            pending = pendings[n]
            while not until():
                try:
                    chunk = await asyncio.wait_for(reader.read(1 << 20), timeout=1.0)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                data = pending + chunk
                whole = len(data) // frame * frame
                pending = pendings[n] = data[whole:]
                frames = np.frombuffer(data[:whole], dtype=frame_dtype)
                if len(frames) and not (frames["header"] == header).all():
                    raise RuntimeError("unexpected frame in the stream (not a packet of the subscribed mode)")
                now_ms = time.time_ns() // 1_000_000
                columns.append(frames[["token", "seq"]].copy())
                latency.append(now_ms - frames["ts_ms"])
                counts[n] += len(frames)

        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(read(n, r, lambda: time.perf_counter() >= deadline) for n, (r, _) in enumerate(sockets))
        )
        elapsed = time.perf_counter() - start
        measured = sum(counts)
        async with http.post(f"{info['rest']}/sim/v1/tick-rate", json={"rate": 0}) as r:
            await r.read()
        async with http.get(f"{info['rest']}/sim/v1/counters") as r:
            server = await r.json()
        drains = [read(n, r, lambda: sum(counts) >= server["sent"]) for n, (r, _) in enumerate(sockets)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*drains), timeout=20)
        for _, writer in sockets:
            writer.close()
    head = np.concatenate(columns) if columns else np.zeros(0, dtype=_HEAD_DTYPE)
    lat = np.concatenate(latency) if latency else np.zeros(0)
    return _summary("bulk", head, lat, server, measured, elapsed, config, mode, connections, len(tokens))


def _summary(
    client: str,
    head: np.ndarray,
    latency: np.ndarray,
    server: dict[str, Any],
    measured: int,
    elapsed: float,
    config: SimConfig,
    mode: int,
    connections: int,
    n_tokens: int,
) -> dict[str, Any]:
    order = np.lexsort((np.arange(len(head)), head["token"]))
    tok, seq = head["token"][order], head["seq"][order]
    gaps = int(np.count_nonzero((tok[1:] == tok[:-1]) & (np.diff(seq) != 1)))
    return {
        "bench": "sim-stream",
        "client": client,
        "mode": FeedMode(mode).name,
        "packet_bytes": PACKET_SIZE[FeedMode(mode)],
        "connections": connections,
        "instruments_subscribed": min(n_tokens, 1000 * connections),
        "target_rate": config.tick_rate,
        "achieved_rate": round(measured / elapsed),
        "seconds": round(elapsed, 2),
        "received": len(head),
        "server_sent": server["sent"],
        "server_dropped": server["dropped"],
        "lost": server["sent"] - len(head),
        "sequence_gaps": gaps,
        "latency_ms_p50": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_ms_p99": float(np.percentile(latency, 99)) if len(latency) else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


async def _stream_client(
    info: dict[str, Any], config: SimConfig, seconds: float, mode: int, connections: int
) -> dict[str, Any]:
    import aiohttp

    tokens: list[tuple[str, str]] = [tuple(t) for t in info["tokens"]]
    heads = bytearray()
    recv_ms: list[int] = []
    exch_ms = bytearray()
    counts = [0] * connections
    async with aiohttp.ClientSession() as http:
        session = await _login(http, info["rest"], config, info["totp_secret"])
        headers = {
            "Authorization": session["jwtToken"],
            "x-api-key": config.api_key,
            "x-client-code": config.client_code,
            "x-feed-token": session["feedToken"],
        }
        sockets = [
            await http.ws_connect(info["stream"], headers=headers, max_msg_size=0) for _ in range(connections)
        ]
        for n, ws in enumerate(sockets):
            mine = tokens[n::connections][:1000]
            groups: dict[int, list[str]] = {}
            for exchange, token in mine:
                groups.setdefault(EXCHANGE_TYPE[exchange], []).append(token)
            token_list = [{"exchangeType": k, "tokens": v} for k, v in groups.items()]
            await ws.send_str(
                json.dumps(
                    {"correlationID": f"b{n}", "action": 1, "params": {"mode": mode, "tokenList": token_list}}
                )
            )

        binary = aiohttp.WSMsgType.BINARY

        async def read(n: int, ws: Any, until: Callable[[], bool]) -> None:
            # One await per message and nothing else: this loop is what the bench measures.
            receive, now_ms = ws.receive, time.time_ns
            while not until():
                msg = await receive()
                if msg.type is binary:
                    data = msg.data
                    heads.extend(data[2:35])
                    exch_ms.extend(data[35:43])
                    recv_ms.append(now_ms() // 1_000_000)
                    counts[n] += 1
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return

        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(read(n, ws, lambda: time.perf_counter() >= deadline) for n, ws in enumerate(sockets))
        )
        elapsed = time.perf_counter() - start
        measured = sum(counts)
        # Stop the feed, then drain what is still in flight so the loss count is exact.
        async with http.post(f"{info['rest']}/sim/v1/tick-rate", json={"rate": 0}) as r:
            await r.read()
        async with http.get(f"{info['rest']}/sim/v1/counters") as r:
            server = await r.json()
        drains = [read(n, ws, lambda: sum(counts) >= server["sent"]) for n, ws in enumerate(sockets)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*drains), timeout=20)
        for ws in sockets:
            await ws.close()

    head = np.frombuffer(bytes(heads), dtype=_HEAD_DTYPE)
    latency = np.array(recv_ms, dtype=np.int64) - np.frombuffer(bytes(exch_ms), dtype="<i8")
    return _summary(
        "aiohttp", head, latency, server, measured, elapsed, config, mode, connections, len(tokens)
    )


# --------------------------------------------------------------------------------- send paths


def _count_client(url: str, expected: int, out: Any) -> None:
    """Child process: read ``expected`` binary messages, report the time from first to last."""
    import aiohttp

    async def main() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_str("go")
            got = 0
            first = 0.0
            while got < expected:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    if not got:
                        first = time.perf_counter()
                    got += 1
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            out.put({"received": got, "seconds": time.perf_counter() - first})

    asyncio.run(main())


def _packets(count: int) -> list[bytes]:
    rec = np.zeros(count, dtype=SNAP_QUOTE_DTYPE)
    rec["mode"] = 3
    rec["exchange_type"] = 1
    rec["token"] = b"3045"
    rec["seq"] = np.arange(1, count + 1)
    raw = rec.tobytes()
    size = SNAP_QUOTE_DTYPE.itemsize
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def run_send_path_bench(messages: int) -> dict[str, Any]:
    """Messages per second a client in another process receives, for each server send path."""
    packets = _packets(messages)
    result: dict[str, Any] = {
        "bench": "sim-send-paths",
        "messages": messages,
        "packet_bytes": len(packets[0]),
    }
    for name in ("aiohttp_send_bytes", "websockets_send", "bulk_frames"):
        result[f"{name}_per_s"] = asyncio.run(_one_path(name, packets))
    best = max(("aiohttp_send_bytes", "websockets_send", "bulk_frames"), key=lambda n: result[f"{n}_per_s"])
    result["fastest"] = best
    return result


async def _one_path(name: str, packets: list[bytes]) -> int:
    from aiohttp import web

    from actors.sim.stream import frame_header

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    started = asyncio.Event()
    done = asyncio.Event()

    async def send_all(write_one: Callable[[bytes], Any], drain: Callable[[], Any]) -> None:
        for p in packets:
            await write_one(p)
        await drain()

    if name == "websockets_send":
        import websockets

        async def ws_handler(conn: Any) -> None:
            await conn.recv()
            for p in packets:
                await conn.send(p)
            await done.wait()

        server = await websockets.serve(ws_handler, "127.0.0.1", 0, compression=None, max_queue=None)
        port = next(iter(server.sockets)).getsockname()[1]
        runner = None
    else:

        async def handler(request: web.Request) -> web.StreamResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            await ws.receive()
            if name == "aiohttp_send_bytes":
                for p in packets:
                    await ws.send_bytes(p)
            else:
                transport = request.transport
                assert transport is not None
                header = frame_header(len(packets[0]))
                for i in range(0, len(packets), 500):
                    transport.write(b"".join(header + p for p in packets[i : i + 500]))
                    while transport.get_write_buffer_size() > 4 << 20:
                        await asyncio.sleep(0.0005)
            started.set()
            await done.wait()
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        server = None

    client = ctx.Process(target=_count_client, args=(f"ws://127.0.0.1:{port}/", len(packets), out))
    client.start()
    loop = asyncio.get_running_loop()
    report = await loop.run_in_executor(None, out.get, True, 120)
    done.set()
    await loop.run_in_executor(None, client.join, 30)
    if runner is not None:
        await runner.cleanup()
    if server is not None:
        server.close()
        await server.wait_closed()
    return round(report["received"] / max(report["seconds"], 1e-9))
