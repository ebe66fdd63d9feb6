"""`shardline bench ui`: price updates through the whole terminal path into a real browser, then
to many WebSocket clients at once.

A private local Ray runs the terminal (one Serve replica) and the hub; this process publishes quotes
for N instruments at R updates a second each into the hub, as the router does; headless Chromium
signs in, watches those instruments and reports its own counters (`window.__shardlinePerf`):
message arrival to the end of the frame that painted it, DOM write time per frame, and handler
time per message.

Then (`clients` > 0) that many WebSocket clients sign in to the same replica, each watching a
watchlist of `client_symbols` of those instruments, acknowledging frames as the terminal does.
Each update's lag is its arrival at a client minus the time the publisher stamped on it, so it
covers hub, replica, Serve's proxy and the client's own event loop; the CPU of the replica, the
proxy and this process over the measured window says where the time went.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cluster.config import Secrets, ShardlineConfig, load_config
from cluster.errors import ShardlineError

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class UiBenchConfig:
    symbols: int = 50
    rate_hz: float = 20.0  # updates per symbol per second
    seconds: float = 20.0
    warmup_s: float = 3.0
    user: str = "trader"
    password: str = "trader-local"
    config_path: Path | None = None
    screenshot: Path | None = None
    clients: int = 100  # concurrent WebSocket clients after the browser part; 0: none
    client_symbols: int = 10  # instruments each client watches

    def __post_init__(self) -> None:
        if not 1 <= self.symbols <= 500:
            raise ShardlineError("--symbols must be between 1 and 500")
        if not 0 <= self.clients <= 1000:
            raise ShardlineError("--clients must be between 0 and 1000")
        if not 1 <= self.client_symbols <= self.symbols:
            raise ShardlineError("--client-symbols must be between 1 and --symbols")
        if not 0 < self.rate_hz <= 100:
            raise ShardlineError("--rate must be in (0, 100] updates per symbol per second")
        if self.seconds <= 0 or self.warmup_s < 0:
            raise ShardlineError("--seconds must be positive and --warmup not negative")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class QuotePublisher(threading.Thread):
    """Publishes a random walk for each instrument at a fixed rate, one hub call per round."""

    def __init__(self, publisher: Any, keys: list[str], rate_hz: float, seed: int = 7) -> None:
        super().__init__(daemon=True, name="bench-quotes")
        self._publisher = publisher
        self._keys = keys
        self._interval = 1.0 / rate_hz
        self._rng = random.Random(seed)
        self._prices = {k: 100_000 + self._rng.randrange(0, 400_000, 5) for k in keys}
        self._closes = dict(self._prices)
        self._volume = dict.fromkeys(keys, 0)
        self.stopping = threading.Event()
        self.published = 0

    def run(self) -> None:
        next_round = time.monotonic()
        while not self.stopping.is_set():
            updates = []
            now_ns = time.time_ns()
            for key in self._keys:
                self._prices[key] = max(5, self._prices[key] + 5 * self._rng.randint(-3, 3))
                self._volume[key] += self._rng.randint(1, 50)
                data = {
                    "ltp": self._prices[key],
                    "volume": self._volume[key],
                    "ts_ns": now_ns,
                    "close": self._closes[key],  # so the terminal shows the day's change, as live
                }
                updates.append((f"quote:{key}", "", data))
            self._publisher.publish(updates)
            self.published += len(updates)
            next_round += self._interval
            # Pace to the wall clock; a late round goes at once rather than bunching up.
            self.stopping.wait(max(0.0, next_round - time.monotonic()))


def run_ui_bench(bench: UiBenchConfig) -> dict[str, Any]:
    """Run the benchmark and return its figures (a JSON-able dict)."""
    import ray
    from playwright.sync_api import sync_playwright
    from pydantic import SecretStr
    from ray import serve

    from catalog.sources import load_default_catalog
    from serve.app import run as run_terminal
    from serve.hub import RayHubPublisher, get_or_create_hub_actor

    base = load_config(bench.config_path)
    port = _free_port()
    config = _bench_config(base, port, bench.rate_hz)
    keys = [i.key for i in load_default_catalog(config).select("NSE equities", bench.symbols)]
    if len(keys) < bench.symbols:
        raise ShardlineError(f"the catalog has only {len(keys)} NSE equities")

    ray.init(
        address="local",
        num_cpus=2,
        namespace="shardline",
        include_dashboard=False,
        log_to_driver=False,
        resources={config.execution.pin_resource: 1.0},
    )
    publisher: QuotePublisher | None = None
    try:
        run_terminal(config, Secrets(shardline_jwt_secret=SecretStr(secrets.token_urlsafe(48))))
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url)
        publisher = QuotePublisher(RayHubPublisher(get_or_create_hub_actor()), keys, bench.rate_hz)
        publisher.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                console_errors: list[str] = []
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                watchlist = str(keys).replace("'", '"')
                page.add_init_script(f"localStorage.setItem('shardline.watchlist', '{watchlist}')")
                page.goto(url)
                page.fill("#login-form input[name=username]", bench.user)
                page.fill("#login-form input[name=password]", bench.password)
                page.press("#login-form input[name=password]", "Enter")
                page.wait_for_function("() => window.__shardlineReady === true", timeout=60_000)
                page.wait_for_function(
                    f"() => document.querySelectorAll('#watchlist li').length >= {len(keys)}", timeout=60_000
                )
                page.wait_for_function("() => window.__shardlinePerf.updates > 0", timeout=30_000)
                page.wait_for_timeout(bench.warmup_s * 1000)
                page.evaluate("() => window.__shardlinePerf.reset()")
                published_before = publisher.published
                started = time.monotonic()
                page.wait_for_timeout(bench.seconds * 1000)
                elapsed = time.monotonic() - started
                summary = page.evaluate("() => window.__shardlinePerf.summary()")
                published = publisher.published - published_before
                if bench.screenshot is not None:
                    bench.screenshot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(bench.screenshot))
            finally:
                browser.close()
        clients = _measure_clients(bench, url, keys) if bench.clients else None
    finally:
        if publisher is not None:
            publisher.stopping.set()
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return {
        "bench": "ui",
        "symbols": bench.symbols,
        "rate_hz_per_symbol": bench.rate_hz,
        "seconds": round(elapsed, 2),
        "published": published,
        "published_per_s": round(published / elapsed, 1),
        "updates_handled": summary["updates"],
        "updates_handled_per_s": round(summary["updates"] / elapsed, 1),
        "frames": summary["frames"],
        "frames_per_s": round(summary["frames"] / elapsed, 1),
        "arrival_to_painted_ms": _rounded(summary["latency_ms"]),
        "dom_write_per_frame_ms": _rounded(summary["render_ms"]),
        "handler_per_message_ms": _rounded(summary["handler_ms"]),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "console_errors": len(console_errors),
        "console_error_samples": sorted(set(console_errors))[:5],
        "note": "arrival_to_painted includes waiting for the next animation frame (up to ~16.7 ms at 60 Hz)",
        "clients": clients,
    }


class ClientLoad:
    """Many terminal WebSocket clients in one event loop, recording each update's lag."""

    def __init__(self, ws_url: str, token: str, watchlists: list[list[str]]) -> None:
        self._ws_url = ws_url
        self._token = token
        self._watchlists = watchlists
        self.connected = 0
        self.measuring = False
        self.lags_ms: list[float] = []
        self.updates = 0
        self.frames = 0
        self.errors: list[str] = []

    async def run(self, warmup_s: float, seconds: float) -> float:
        """Connect every client, measure for `seconds` after `warmup_s`; the measured wall time."""
        import asyncio

        tasks = [asyncio.create_task(self._client(channels)) for channels in self._watchlists]
        try:
            deadline = time.monotonic() + 60
            while self.connected < len(tasks) and time.monotonic() < deadline and not self.errors:
                await asyncio.sleep(0.05)  # the clients are signing in
            if self.connected < len(tasks):
                raise ShardlineError(
                    f"only {self.connected} of {len(tasks)} clients subscribed: {self.errors[:3]}"
                )
            await asyncio.sleep(warmup_s)
            self.measuring, started = True, time.monotonic()
            await asyncio.sleep(seconds)
            self.measuring = False
            return time.monotonic() - started
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, channels: list[str]) -> None:
        import json

        from websockets.asyncio.client import connect

        try:
            async with connect(self._ws_url, max_size=None, open_timeout=30) as socket:
                await socket.send(json.dumps({"type": "auth", "token": self._token}))
                await socket.send(json.dumps({"type": "subscribe", "channels": channels, "id": 1}))
                subscribed = False
                frames = 0
                async for raw in socket:
                    now_ns = time.time_ns()
                    frames += 1
                    decoded = json.loads(raw)
                    for message in decoded if isinstance(decoded, list) else [decoded]:
                        kind = message.get("type")
                        if kind == "update" and self.measuring:
                            self.updates += 1
                            self.lags_ms.append((now_ns - int(message["data"]["ts_ns"])) / 1e6)
                        elif kind == "snapshot" and not subscribed:
                            subscribed = True
                            self.connected += 1
                        elif kind == "error":
                            self.errors.append(str(message.get("message")))
                    if self.measuring:
                        self.frames += 1
                    if frames % 8 == 0:  # the terminal's acknowledgement, so the replica keeps sending
                        await socket.send(json.dumps({"type": "ack", "frames": frames}))
        except Exception as err:  # counted: the run fails if a client never subscribed
            self.errors.append(f"{type(err).__name__}: {err}")


def _measure_clients(bench: UiBenchConfig, url: str, keys: list[str]) -> dict[str, Any]:
    import asyncio

    import psutil

    response = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": bench.user, "password": bench.password}, timeout=30
    )
    response.raise_for_status()
    token = response.json()["access_token"]
    watchlists = [
        [f"quote:{keys[(c * bench.client_symbols + i) % len(keys)]}" for i in range(bench.client_symbols)]
        for c in range(bench.clients)
    ]
    load = ClientLoad(url.replace("http://", "ws://") + "/ws", token, watchlists)
    processes = {"replica": _serve_process("ServeReplica"), "proxy": _serve_process("ProxyActor")}
    processes["bench_clients"] = psutil.Process()
    before = {name: p.cpu_times() for name, p in processes.items()}
    elapsed = asyncio.run(load.run(bench.warmup_s, bench.seconds))
    cpu = {
        name: round(100 * (sum(p.cpu_times()[:2]) - sum(before[name][:2])) / elapsed, 1)
        for name, p in processes.items()
    }
    lags = sorted(load.lags_ms)
    offered = bench.clients * bench.client_symbols * bench.rate_hz
    return {
        "clients": bench.clients,
        "symbols_each": bench.client_symbols,
        "offered_updates_per_s": round(offered, 1),
        "updates_received_per_s": round(load.updates / elapsed, 1),
        "frames_per_s": round(load.frames / elapsed, 1),
        "lag_ms": {
            "p50": round(_quantile(lags, 0.5), 2),
            "p99": round(_quantile(lags, 0.99), 2),
            "max": round(lags[-1], 2) if lags else None,
        },
        "cpu_percent": cpu,
        "errors": len(load.errors),
        "note": "lag is publish to client arrival; fewer updates than offered means the replica "
        "conflated (latest state only) for clients that were behind",
    }


def _serve_process(class_prefix: str) -> Any:
    """This bench's own Ray worker process running a `class_prefix` actor (Ray titles it so)."""
    import psutil

    for process in psutil.Process().children(recursive=True):  # the private Ray started here
        with contextlib.suppress(psutil.Error, IndexError):
            if process.cmdline()[0].startswith(f"ray::{class_prefix}"):
                return process
    raise ShardlineError(f"no {class_prefix} process to measure among this bench's Ray workers")


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _bench_config(base: ShardlineConfig, port: int, rate_hz: float) -> ShardlineConfig:
    serve_section = base.serve.model_copy(
        update={
            "port": port,
            "host": "127.0.0.1",
            "autoscaling": base.serve.autoscaling.model_copy(update={"min_replicas": 1, "max_replicas": 1}),
            "ws_max_rate_hz": max(base.serve.ws_max_rate_hz, min(100.0, rate_hz)),
            "cors_origins": [f"http://127.0.0.1:{port}"],
        }
    )
    return base.model_copy(update={"serve": serve_section})


def _wait_healthy(url: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a server that is starting
    raise ShardlineError(f"the terminal did not answer at {url} within {timeout_s:.0f} s")


def _rounded(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in stats.items()}
