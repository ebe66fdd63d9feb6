"""The local Angel One simulator: REST, SmartStream V2 and order updates on loopback ports.

Use it in-process from async code::

    sim = SimServer(config.sim)
    await sim.start()
    ...  # sim.rest_url, sim.stream_url, sim.order_url
    await sim.stop()

or from synchronous code (SDK tests, Ray actors) on its own thread::

    with SimServer(config.sim).run_in_thread() as sim:
        sim.set_tick_rate(50_000)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import pyotp
from aiohttp import web

from actors.sim.exchange import SimExchange
from actors.sim.market import MarketModel, ReplaySource
from actors.sim.market_hours import MarketHours
from actors.sim.order_updates import OrderUpdateHub
from actors.sim.rest import SmartApiRest
from actors.sim.sessions import SessionStore
from actors.sim.stream import SmartStreamHub
from actors.sim.universe import SimInstrument, load_universe
from cluster.config import SimConfig

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def build_instruments(config: SimConfig, catalog_config: object | None = None) -> list[SimInstrument]:
    """The simulated universe: from the catalog (or a synthetic one), plus any replayed instruments."""
    instruments = load_universe(config.instruments, config.seed, catalog_config)
    if not config.replay_path:
        return instruments
    source = ReplaySource(config.replay_path)
    known = {i.key for i in instruments}
    for key, price in source.first_prices().items():
        if key not in known:
            exchange, token = key.split(":", 1)
            # Recorded instruments outside the universe: a one-paisa grid takes any recorded price.
            instruments.append(SimInstrument(exchange, token, token, 1, 1, max(price, 1)))
    return instruments


class SimServer:
    """One simulated Angel One account and market, served over loopback.

    Parameters
    ----------
    config : SimConfig
        Ports, rate, seed, session hours, demo credentials.
    instruments : sequence of SimInstrument, optional
        The universe; by default the catalog's first ``config.instruments`` (or a synthetic set).
    clock_ns : callable, optional
        Wall clock in ns (exchange timestamps, session expiry, market hours).
    """

    def __init__(
        self,
        config: SimConfig,
        instruments: Sequence[SimInstrument] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.clock_ns = clock_ns
        self.instruments = list(instruments) if instruments is not None else build_instruments(config)
        self.market = MarketModel(self.instruments, config.seed)
        self.hours = MarketHours(config.session_hours)
        self.sessions = SessionStore(config, now=lambda: self.clock_ns() / 1e9)
        self.exchange = SimExchange(
            self.market, config.client_code, self.hours.is_open, partial_fills=config.partial_fills
        )
        self.rest = SmartApiRest(
            self.exchange,
            self.sessions,
            config.api_key,
            config.enforce_rate_limits,
            clock_ns,
            seed=config.seed,
        )
        self.order_updates = OrderUpdateHub(self.sessions)
        self.exchange.listeners.append(self.order_updates.publish)
        self.replay = ReplaySource(config.replay_path) if config.replay_path else None
        self.stream: SmartStreamHub | None = None
        self._runners: list[web.AppRunner] = []
        self.rest_url = self.stream_url = self.order_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the three ports and start the tick pump."""
        self._loop = asyncio.get_running_loop()
        self.stream = SmartStreamHub(
            self.market,
            self.sessions,
            self.config.api_key,
            self.config.tick_rate,
            on_ticks=self.exchange.on_ticks,
            is_open=self.hours.is_open,
            clock_ns=self.clock_ns,
            replay=self.replay,
            on_close=self.exchange.end_of_day,
        )
        host = self.config.host
        rest_app = web.Application(client_max_size=1 << 20)
        rest_app.add_routes(self.rest.routes())
        # Simulator controls (not Angel routes): for tests and load runs against an out-of-process sim.
        rest_app.router.add_get("/sim/v1/counters", self._counters_route)
        rest_app.router.add_post("/sim/v1/tick-rate", self._tick_rate_route)
        rest_app.router.add_post("/sim/v1/drop-connections", self._drop_route)
        stream_app = web.Application()
        stream_app.router.add_get("/smart-stream", self.stream.handle)
        order_app = web.Application()
        order_app.router.add_get("/smart-order-update", self.order_updates.handle)
        rest_port = await self._serve(rest_app, host, self.config.rest_port)
        stream_port = await self._serve(stream_app, host, self.config.stream_port)
        order_port = await self._serve(order_app, host, self.config.order_port)
        self.rest_url = f"http://{host}:{rest_port}"
        self.stream_url = f"ws://{host}:{stream_port}/smart-stream"
        self.order_url = f"ws://{host}:{order_port}/smart-order-update"
        self.stream.start()
        log.info(
            "simulator up: %d instruments, %d ticks/s, seed %d, REST %s, stream %s, orders %s",
            len(self.instruments),
            self.config.tick_rate,
            self.config.seed,
            self.rest_url,
            self.stream_url,
            self.order_url,
        )

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        await self.order_updates.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    # ------------------------------------------------------------------------------- controls

    async def _counters_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters())

    async def _tick_rate_route(self, request: web.Request) -> web.Response:
        try:
            rate = int((await request.json())["rate"])
            self._hub().set_rate(rate)
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response(
                {"error": f'send {{"rate": <ticks per second, >= 0>}}: {err}'}, status=400
            )
        return web.json_response({"rate": rate})

    async def _drop_route(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": self.drop_connections()})

    def set_tick_rate(self, rate: int) -> None:
        """Total ticks per second across the subscribed instruments (0 pauses the feed)."""
        self._call(lambda: self._hub().set_rate(rate))

    def drop_connections(self) -> int:
        """Cut every stream and order-update socket without a close handshake."""
        return self._call(lambda: self._hub().drop_connections() + self.order_updates.drop_connections())

    def last_seq(self, key: str) -> int:
        """The last sequence number generated (and sent to every subscriber) for an instrument."""
        return self._call(lambda: int(self.market.seq[self.market.index[key]]))

    def counters(self) -> dict[str, Any]:
        """Ticks generated, sent and dropped; open connections; REST calls."""

        def read() -> dict[str, Any]:
            out = self._hub().counters()
            out["rest_calls"] = self.rest.calls
            out["order_updates"] = self.order_updates.published
            out["order_update_connections"] = len(self.order_updates.connections)
            return out

        return self._call(read)

    def totp(self) -> str:
        """The current TOTP for the demo login (what an authenticator app would show)."""
        return pyotp.TOTP(self.config.totp_secret).at(int(self.clock_ns() / 1e9))

    def credentials(self) -> dict[str, str]:
        cfg = self.config
        return {
            "api_key": cfg.api_key,
            "client_code": cfg.client_code,
            "pin": cfg.pin,
            "totp_secret": cfg.totp_secret,
        }

    def _hub(self) -> SmartStreamHub:
        if self.stream is None:
            raise RuntimeError("the simulator is not started")
        return self.stream

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the server's loop: directly on that loop, marshalled from any other thread."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return fn()

        async def run() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=10)

    # ------------------------------------------------------------------------------- thread mode

    def run_in_thread(self) -> SimServer:
        """Start on a background thread with its own event loop; returns once the ports are bound."""
        started: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as err:
                started.set_exception(err)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="angel-sim", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        return self

    def stop_thread(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the server's loop from another thread and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)
